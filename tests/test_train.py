"""Training: learning above chance, early stopping, resume, run folders, --init and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ecgtool.core.files import read_json, sha256
from ecgtool.cli.main import main
from ecgtool.data.dataset import load_dataset
from ecgtool.data.preprocess import spec_from_meta
from ecgtool.core.errors import BadInput
from ecgtool.evaluate.artifact import evaluate_artifact
from ecgtool.models import get_model, load_model, save_model
from ecgtool.train.fit import class_weight_vector, epoch_order, fit, validate
from ecgtool.train.run import init_from
from tiny_dataset import make_tiny_dataset

FAST = dict(epochs=8, batch_size=16, lr=3e-3, device="cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="module")
def trained_run(tiny, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "run"
    args = ["--quiet", "train", "--data", str(tiny), "--arch", "se_resnet", "--arch", "resnet", "--depth", "18",
            "--width", "8", "--epochs", "6", "--batch-size", "16", "--lr", "3e-3", "--out", str(run)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return run, args, result.output


def test_fit_learns_synthetic_rhythms_well_above_chance(tmp_path):
    from ecgtool.data.synth import write_synthetic_dataset

    data = load_dataset(write_synthetic_dataset(tmp_path / "synth", per_class=30, seed=0))
    torch.manual_seed(0)
    model, history = fit(get_model("se_resnet18", width=8, num_classes=7), data, patience=10, **dict(FAST, epochs=10))
    assert len(history) == 10 and {"train_loss", "val_loss", "val_macro_f1", "lr", "seconds"} <= set(history[0])
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    crit = torch.nn.CrossEntropyLoss()
    test = validate(model, data, np.sort(data.indices("test")), crit, torch.device("cpu"))
    assert test["val_macro_f1"] > 0.4  # chance is 1/7


def test_fit_separates_easy_classes(tiny):
    data = load_dataset(tiny)
    torch.manual_seed(0)
    model, _ = fit(get_model("se_resnet18", width=8, num_classes=7), data, patience=8, **FAST)
    test = validate(model, data, np.sort(data.indices("test")), torch.nn.CrossEntropyLoss(), torch.device("cpu"))
    assert test["val_macro_f1"] > 0.8


def test_early_stopping_restores_best_validation_weights(tmp_path):
    data = load_dataset(make_tiny_dataset(tmp_path / "d", shuffle_val_labels=True))
    kw = dict(FAST, epochs=12, patience=2, seed=3)
    torch.manual_seed(0)
    model, history = fit(get_model("resnet18", width=8), data, **kw)
    losses = [h["val_loss"] for h in history]
    best = int(np.argmin(losses)) + 1
    assert [h["epoch"] for h in history if h["best"]] == [best]
    assert len(history) == best + 2 < 12  # stopped `patience` epochs after the best
    again = validate(model, data, np.sort(data.indices("val")), torch.nn.CrossEntropyLoss(), torch.device("cpu"))
    assert again["val_loss"] == pytest.approx(losses[best - 1], rel=1e-5)
    assert again["val_loss"] != pytest.approx(losses[-1], rel=1e-3)
    # The same seed trained for exactly `best` epochs gives bit-identical weights.
    torch.manual_seed(0)
    ref, _ = fit(get_model("resnet18", width=8), data, **dict(kw, epochs=best, patience=99))
    for key, value in ref.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key


def test_resume_from_checkpoint_matches_uninterrupted(tiny, tmp_path):
    data = load_dataset(tiny)
    kw = dict(FAST, epochs=4, patience=99, augment=("noise", "shift"))
    torch.manual_seed(1)
    full, h_full = fit(get_model("se_resnet18", width=8), data, **kw)
    ckpt = tmp_path / "ck.pt"
    torch.manual_seed(1)
    fit(get_model("se_resnet18", width=8), data, **dict(kw, epochs=2), checkpoint_path=ckpt)
    assert ckpt.exists()
    resumed, h_res = fit(get_model("se_resnet18", width=8), data, **kw, checkpoint_path=ckpt, resume=True)
    assert [h["epoch"] for h in h_res] == [1, 2, 3, 4]
    assert [h["val_loss"] for h in h_res] == pytest.approx([h["val_loss"] for h in h_full])
    for key, value in full.state_dict().items():
        assert torch.allclose(value, resumed.state_dict()[key]), key


def test_class_weights_and_balanced_sampler():
    assert class_weight_vector(np.array([0, 0, 0, 1]), 3) == pytest.approx([4 / 6, 2.0, 1.0])
    labels = np.array([0] * 90 + [1] * 10)
    order = epoch_order(np.arange(100), labels, "balanced", seed=0, epoch=1)
    share = np.mean(labels[order] == 1)
    assert 0.35 < share < 0.65 and len(order) == 100
    plain = epoch_order(np.arange(100), labels, None, seed=0, epoch=1)
    assert sorted(plain.tolist()) == list(range(100))
    assert not np.array_equal(plain, epoch_order(np.arange(100), labels, None, seed=0, epoch=2))


def test_train_cli_writes_run_folder_and_side_by_side_table(trained_run, tiny):
    run, _, output = trained_run
    assert "se_resnet" in output and "resnet" in output and "macro_f1" in output
    manifest = read_json(run / "manifest.json")["artifacts"]
    for name in ("se_resnet18", "resnet18"):
        folder = run / name
        for f in ("model.safetensors", "config.json", "metrics.json", "history.csv", "training.png", "confusion.png"):
            assert (folder / f).exists(), f
            assert manifest[f"{name}/{f}"]["sha256"] == sha256(folder / f)
        assert not (folder / "checkpoint.pt").exists()
        cfg = read_json(folder / "config.json")
        assert cfg["classes"] == load_dataset(tiny).classes and cfg["width"] == 8
        assert cfg["extra"]["epochs"] == 6 and cfg["extra"]["lr"] == 3e-3 and cfg["extra"]["augment"] == []
        assert cfg["extra"]["input_length"] == 256 and cfg["extra"]["sampling_rate"] == 100.0
        # the preprocessing is frozen into the model (not looked up in the dataset later) and round-trips
        assert cfg["preprocessing"] == spec_from_meta(load_dataset(tiny).meta)
        assert (cfg["preprocessing"]["sampling_rate"], cfg["preprocessing"]["window_len"]) == (100, 256)
        assert load_model(folder).config.preprocessing == cfg["preprocessing"]
        assert len((folder / "history.csv").read_text().strip().splitlines()) == 1 + cfg["extra"]["epochs_run"]
        stored = read_json(folder / "metrics.json")
        assert stored["macro_f1"] == pytest.approx(evaluate_artifact(folder, tiny)["macro_f1"])
    summary = (run / "summary.csv").read_text().splitlines()
    assert len(summary) == 3 and "f1_AFL" in summary[0]


def test_rerun_refuses_and_resume_skips_finished(trained_run):
    run, args, _ = trained_run
    before = sha256(run / "se_resnet18" / "model.safetensors")
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "--resume" in again.output
    other = CliRunner().invoke(main, [*args[:-2], "--epochs", "3", "--out", str(run)])
    assert other.exit_code == 2 and "different run" in other.output and "epochs" in other.output
    resumed = CliRunner().invoke(main, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert sha256(run / "se_resnet18" / "model.safetensors") == before
    assert len((run / "summary.csv").read_text().splitlines()) == 3


def test_init_copies_backbone_and_resets_classifier_for_other_classes(trained_run):
    run, _, _ = trained_run
    src = load_model(run / "resnet18")
    model = get_model("resnet18", width=8, num_classes=3, classes=["Normal", "AF", "PVC"])
    fresh_fc = model.fc.weight.detach().clone()
    assert init_from(model, run / "resnet18") == ["fc.weight", "fc.bias"]
    assert torch.equal(model.stem[0].weight, src.stem[0].weight)
    assert torch.equal(model.fc.weight, fresh_fc)
    with pytest.raises(BadInput, match="do not fit"):
        init_from(get_model("resnet18", width=16), run / "resnet18")


def test_train_with_init_and_options_records_recipe(trained_run, tiny, tmp_path):
    run, _, _ = trained_run
    out = tmp_path / "ft"
    res = CliRunner().invoke(main, ["--quiet", "train", "--data", str(tiny), "--arch", "resnet", "--depth", "18",
                                    "--width", "8", "--epochs", "1", "--init", str(run / "resnet18"),
                                    "--class-weights", "auto", "--sampler", "balanced", "--augment", "default",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    extra = read_json(out / "resnet18" / "config.json")["extra"]
    assert extra["init"] == str((run / "resnet18").resolve()) and extra["init_fresh"] == []
    assert extra["class_weights"] == "auto" and extra["sampler"] == "balanced"
    assert extra["augment"] == ["amplitude", "baseline", "noise", "shift"]
    assert read_json(out / "manifest.json")["artifacts"]["resnet18/model.safetensors"]["parent"].endswith("resnet18")


@pytest.mark.parametrize("change, message", [
    (["--arch", "vgg"], "unknown architecture"),
    (["--depth", "20"], "unknown depth"),
    (["--augment", "wobble"], "unknown augmentation"),
])
def test_bad_options_exit_2(tiny, tmp_path, change, message):
    base = {"--arch": "resnet", "--depth": "18", "--augment": "none"}
    base[change[0]] = change[1]
    args = ["train", "--data", str(tiny), "--out", str(tmp_path / "r"), "--epochs", "1", "--width", "8"]
    for k, v in base.items():
        args += [k, v]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and message in res.output
    assert not (tmp_path / "r").exists()


def test_not_a_dataset_and_class_missing_from_train_exit_2(tmp_path):
    (tmp_path / "junk").mkdir()
    res = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "junk"), "--arch", "resnet", "--depth", "18",
                                    "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "not a prepared dataset" in res.output
    labels = np.repeat(np.arange(7), 10)
    idx = np.arange(70)
    splits = {"train": idx[labels != 2][::2], "val": idx[labels != 2][1::2], "test": idx[labels == 2]}
    bad = make_tiny_dataset(tmp_path / "bad", per_class=10, splits=splits)
    res = CliRunner().invoke(main, ["train", "--data", str(bad), "--arch", "resnet", "--depth", "18",
                                    "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "AFL" in res.output and "missing from train" in res.output
    assert not (tmp_path / "r").exists()


def test_existing_foreign_model_folder_is_not_overwritten(tiny, tmp_path):
    out = tmp_path / "r"
    save_model(out / "resnet18", get_model("resnet18", width=8))
    before = sha256(out / "resnet18" / "model.safetensors")
    res = CliRunner().invoke(main, ["train", "--data", str(tiny), "--arch", "resnet", "--depth", "18", "--width", "8",
                                    "--epochs", "1", "--out", str(out)])
    assert res.exit_code == 2 and "another run" in res.output
    assert sha256(out / "resnet18" / "model.safetensors") == before
    assert not (out / "run.json").exists()


def test_recalibrate_bn_sets_exact_statistics_of_the_records(tiny):
    from ecgtool.train.fit import recalibrate_bn

    data = load_dataset(tiny)
    model = get_model("resnet18", width=8)
    idx = np.arange(32)
    recalibrate_bn(model, data, idx, 16, torch.device("cpu"))
    with torch.no_grad():
        h = model.stem[0](torch.from_numpy(np.asarray(data.signals[idx])))
    bn = model.stem[1]
    assert torch.allclose(bn.running_mean, h.mean(dim=(0, 2)), atol=1e-5)
    assert bn.momentum == 0.1 and model.training  # settings restored


def test_shard_gives_every_rank_the_same_number_of_distinct_records():
    from ecgtool.train.distributed import shard

    order = np.random.default_rng(0).permutation(103)
    parts = [shard(order, r, 4) for r in range(4)]
    assert {len(p) for p in parts} == {25}
    assert len(set(np.concatenate(parts).tolist())) == 100
    assert shard(order, 0, 1) is order


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tiny, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "ecgtool", "--quiet", "train",
                           "--data", str(tiny), "--arch", "resnet", "--depth", "18", "--width", "8", "--epochs", "3",
                           "--batch-size", "16", "--lr", "3e-3", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("wrote") == 1  # only rank 0 reports
    history = (out / "resnet18" / "history.csv").read_text().strip().splitlines()
    assert len(history) == 4
    assert read_json(out / "resnet18" / "metrics.json")["n"] == len(load_dataset(tiny).indices("test"))


@pytest.mark.parametrize("content", [b"not a zip at all", "pickle"])
def test_resume_refuses_a_corrupt_or_pickled_checkpoint_in_one_line(tiny, tmp_path, content):
    from pathlib import PurePosixPath

    from ecgtool.core.errors import BadInput

    ckpt = tmp_path / "ck.pt"
    if content == "pickle":  # a pickle holding an object, not tensors: weights_only refuses it
        torch.save({"model": PurePosixPath("/etc/passwd")}, ckpt)
    else:
        ckpt.write_bytes(content)
    with pytest.raises(BadInput, match="not a checkpoint ecgtool wrote") as info:
        fit(get_model("se_resnet18", width=8), load_dataset(tiny), **dict(FAST, epochs=1), checkpoint_path=ckpt,
            resume=True)
    assert "\n" not in str(info.value) and "weights_only=False" not in str(info.value)


def test_resume_with_fewer_epochs_is_accepted(trained_run):
    """--resume with a smaller --epochs stops early with the best weights so far instead of being refused."""
    run, args, _ = trained_run
    fewer = [a if a != "6" else "3" for a in args]
    r = CliRunner().invoke(main, [*fewer, "--resume"])
    assert r.exit_code == 0, r.output
    assert read_json(run / "run.json")["recipe"]["epochs_requested_first"] == 6


def test_summary_row_has_no_f1_for_a_class_without_test_records():
    from ecgtool.core.ui import as_percent, format_cell
    from ecgtool.evaluate.metrics import compute_metrics
    from ecgtool.train.run import _summary_row

    m = compute_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["Normal", "AF", "PVC"])
    row = _summary_row("m", {}, "se_resnet", 18, 8, {"params": 1, "macs": 1}, m)
    assert row["f1_PVC"] is None and row["f1_AF"] == pytest.approx(0.8)
    shown = as_percent([row])[0]
    assert format_cell(shown["f1_PVC"]) == "-" and shown["f1_AF"] == 80.0
