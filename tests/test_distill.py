"""Knowledge distillation: the loss against hand computations, a distilled student folder, ONNX teachers, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from conftest import copy_trained
from tiny_dataset import make_tiny_dataset

from ecgtool.core.files import read_json
from ecgtool.cli.main import main
from ecgtool.data.dataset import load_dataset
from ecgtool.data.preprocess import spec_from_meta
from ecgtool.train.distill import TEACHER_LOGITS, TeacherLogits, distill, distillation_loss
from ecgtool.evaluate.artifact import evaluate_artifact
from ecgtool.core.artifacts import is_model_folder
from ecgtool.runtime import load

FAST = {"width": 8, "epochs": 1, "batch_size": 32, "device": "cpu", "patience": 1}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory, trained_source: Path) -> tuple[Path, Path]:
    return copy_trained(trained_source, tmp_path_factory.mktemp("distill"))


def _logits(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(5, 7, generator=g) * 3, torch.randn(5, 7, generator=g) * 3, torch.randint(0, 7, (5,), generator=g)


def test_loss_is_cross_entropy_at_alpha_0() -> None:
    s, t, y = _logits(0)
    assert torch.allclose(distillation_loss(s, t, y, temperature=4.0, alpha=0.0), F.cross_entropy(s, y))


def test_loss_is_scaled_kl_at_alpha_1() -> None:
    s, t, y = _logits(1)
    temp = 3.0
    ps = np.exp(s.numpy() / temp) / np.exp(s.numpy() / temp).sum(1, keepdims=True)
    pt = np.exp(t.numpy() / temp) / np.exp(t.numpy() / temp).sum(1, keepdims=True)
    by_hand = temp**2 * np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), axis=1))
    got = float(distillation_loss(s, t, y, temperature=temp, alpha=1.0))
    assert got == pytest.approx(by_hand, rel=1e-5)
    mixed = float(distillation_loss(s, t, y, temperature=temp, alpha=0.25))
    assert mixed == pytest.approx(0.25 * by_hand + 0.75 * float(F.cross_entropy(s, y)), rel=1e-5)
    assert float(distillation_loss(t, t, y, temperature=temp, alpha=1.0)) == pytest.approx(0.0, abs=1e-6)


def test_teacher_logits_found_by_dataset_index() -> None:
    train_idx = np.array([3, 5, 8, 10, 11, 20])  # dataset indices of the training records
    logits = np.arange(6 * 3, dtype=np.float32).reshape(6, 3)
    lookup = TeacherLogits(train_idx, logits)
    assert torch.equal(lookup(np.array([11, 5])), torch.from_numpy(logits[[4, 1]]))
    with pytest.raises(RuntimeError):
        lookup(np.array([4]))  # not a training record


def test_distilled_student_folder_loads_and_evaluates(teacher: tuple[Path, Path]) -> None:
    folder, data = teacher
    r = distill(folder, "resnet18", data, **FAST)
    out = Path(r["out"])
    assert out == folder.parent / "resnet18-distilled" and is_model_folder(out)
    cfg = read_json(out / "config.json")
    assert cfg["arch"] == "resnet" and cfg["width"] == 8
    assert cfg["extra"]["teacher_sha256"] and cfg["extra"]["temperature"] == 4.0 and cfg["extra"]["alpha"] == 0.7
    ds = load_dataset(data)
    assert cfg["preprocessing"] == spec_from_meta(ds.meta) and cfg["preprocessing"]["window_len"] == 256
    cached = np.load(out / TEACHER_LOGITS)
    expect = load(folder).predict(np.asarray(ds.signals[np.sort(ds.indices("train"))]))
    np.testing.assert_allclose(cached, expect, atol=1e-4)
    metrics = evaluate_artifact(out, data)
    assert metrics["macro_f1"] == pytest.approx(read_json(out / "metrics.json")["macro_f1"])
    assert r["student"]["params"] < 200_000 and r["teacher"]["params"] > 0
    manifest = read_json(folder.parent / "manifest.json")["artifacts"]
    assert manifest["resnet18-distilled/model.safetensors"]["parent"] == "se_resnet18/model.safetensors"


def test_onnx_teacher(teacher: tuple[Path, Path], tmp_path: Path) -> None:
    from ecgtool.export import torch2onnx

    folder, data = teacher
    onnx = torch2onnx(folder, tmp_path / "teacher.onnx", length=256)
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())  # the ONNX's config beside it
    r = distill(onnx, "se_resnet18", data, out=tmp_path / "student", **FAST)
    extra = read_json(tmp_path / "student" / "config.json")["extra"]
    assert extra["teacher_kind"] == "onnxruntime" and extra["teacher"].endswith("teacher.onnx")
    assert r["teacher"]["size_mb"] == pytest.approx(onnx.stat().st_size / 1e6)
    assert load(tmp_path / "student").predict(np.zeros((2, 1, 256), np.float32)).shape == (2, 7)


def test_class_mismatch_is_exit_2(teacher: tuple[Path, Path], tmp_path: Path) -> None:
    folder, _ = teacher
    other = make_tiny_dataset(tmp_path / "other", per_class=6, length=256, classes=["Normal", "AF", "PVC"])
    out = tmp_path / "student"
    r = CliRunner().invoke(main, ["distill", "--teacher", str(folder), "--student", "resnet18", "--data", str(other),
                                  "--out", str(out), "--epochs", "1"])
    assert r.exit_code == 2
    assert str(folder) in r.output and "differ" in r.output
    assert not out.exists()


def test_cli_prints_teacher_and_student(teacher: tuple[Path, Path], tmp_path: Path) -> None:
    folder, data = teacher
    out = tmp_path / "kd"
    r = CliRunner().invoke(main, ["distill", "--teacher", str(folder), "--student", "resnet18", "--data", str(data),
                                  "--out", str(out), "--width", "8", "--epochs", "1", "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "(teacher" in r.output and "(student)" in r.output and is_model_folder(out)
    again = CliRunner().invoke(main, ["distill", "--teacher", str(folder), "--student", "resnet18", "--data", str(data),
                                      "--out", str(out)])
    assert again.exit_code == 2 and "already holds a model" in again.output
