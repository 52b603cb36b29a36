"""`data import --keep-leads` and `train --leads any`: a random lead per training record, the deployment lead elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import shared_data
from ecgtool.core.errors import BadInput
from ecgtool.data.classes import DEFAULT_CLASSES
from ecgtool.data.dataset import load_dataset, write_dataset
from ecgtool.data.importers.wfdb_read import select_leads
from ecgtool.data.splits import random_split
from ecgtool.train.fit import DeployLead, random_leads


def test_keep_leads_puts_the_deployment_lead_first():
    assert select_leads(["V5", "MLII"], "II+rest") == [1, 0]  # MIT-BIH record 114
    assert select_leads(["I", "II", "III"], "II+rest") == [1, 0, 2]
    with pytest.raises(Exception, match="lead missing"):
        select_leads(["V1", "V2"], "II+rest")


def test_keep_leads_import_of_the_challenge_sample(tmp_path):
    from ecgtool.data.importers import import_dataset

    src = shared_data("cinc2021-sample")
    recs = ["A0689", "HR06000", "JS01048"]
    one = load_dataset(import_dataset("challenge", src, tmp_path / "ii", records=recs, split="random"))
    all_ = load_dataset(import_dataset("challenge", src, tmp_path / "all", records=recs, split="random", keep_leads=True))
    assert all_.meta["keep_leads"] and all_.meta["lead"] == "II" and all_.signals.shape[1] == 12
    assert all_.meta["leads"][0] == "II"
    np.testing.assert_array_equal(all_.signals[:, 0], one.signals[:, 0])  # channel 0 is the lead-II import
    with pytest.raises(BadInput, match="not with --lead all"):
        import_dataset("challenge", src, tmp_path / "bad", lead="all", keep_leads=True)


def _three_lead_dataset(path: Path, per_class: int = 8, length: int = 256, fs: float = 100.0, seed: int = 0) -> Path:
    """Class k: a sinusoid of 0.8(k+1) Hz on lead 0, the same rhythm at other amplitudes/polarities on leads 1-2."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / fs
    x, y = [], []
    for k in range(len(DEFAULT_CLASSES)):
        for _ in range(per_class):
            s = np.sin(2 * np.pi * 0.8 * (k + 1) * t + rng.uniform(0, 6.3))
            leads = np.stack([s, -0.5 * s, 0.3 * s]) + 0.2 * rng.standard_normal((3, length))
            lo, hi = leads.min(axis=1, keepdims=True), leads.max(axis=1, keepdims=True)
            x.append((leads - lo) / (hi - lo))
            y.append(k)
    y = np.asarray(y)
    records = [{"record_id": f"r{i}", "patient_id": f"p{i}", "label": DEFAULT_CLASSES[c]} for i, c in enumerate(y)]
    return write_dataset(path, np.asarray(x, dtype=np.float32), y, DEFAULT_CLASSES, records, random_split(y, 0),
                         {"sampling_rate": fs, "source": "three-lead test set", "lead": "II",
                          "leads": ["II", "V1", "aVL"], "keep_leads": True})


def test_random_leads_draws_every_lead_and_keeps_features_aligned():
    x = torch.arange(6 * 3 * 4, dtype=torch.float32).view(6, 3, 4)
    rr = np.arange(6 * 3 * 2, dtype=np.float32).reshape(6, 3, 2)
    out, feats = random_leads(x, torch.Generator().manual_seed(0), rr, np.arange(6))
    assert out.shape == (6, 1, 4) and feats.shape == (6, 2)
    lead = [int(out[i, 0, 0] - x[i, 0, 0]) // 4 for i in range(6)]
    np.testing.assert_array_equal(feats.numpy(), rr[np.arange(6), lead])
    many = random_leads(x.repeat(20, 1, 1), torch.Generator().manual_seed(1))[0]
    assert len({int(v) % 12 // 4 for v in many[:, 0, 0]}) == 3  # every lead is drawn


def test_train_leads_any_is_a_one_lead_model_scored_on_the_deployment_lead(tmp_path):
    from ecgtool.evaluate.artifact import evaluate_artifact
    from ecgtool.train.run import train_models

    data = _three_lead_dataset(tmp_path / "data")
    assert isinstance(DeployLead(load_dataset(data)).signals, np.ndarray)
    train_models(data, ["se_resnet"], [18], tmp_path / "run", width=8, epochs=1, batch_size=16, device="cpu",
                 leads="any", threads=1)
    cfg = json.loads((tmp_path / "run" / "se_resnet18" / "config.json").read_text())
    assert cfg["in_channels"] == 1 and cfg["preprocessing"]["channels"] == 1 and cfg["extra"]["leads"] == "any"
    assert cfg["extra"]["train_leads"] == ["II", "V1", "aVL"]
    m = evaluate_artifact(tmp_path / "run" / "se_resnet18", data, split="test")
    assert m["n"] == len(load_dataset(data).indices("test"))

    single = tmp_path / "one"
    ds = load_dataset(data)
    write_dataset(single, np.asarray(ds.signals[:, :1]), ds.labels, ds.classes, ds.records,
                  ds.splits, {"sampling_rate": 100.0, "source": "one lead"})
    with pytest.raises(BadInput, match="--keep-leads"):
        train_models(single, ["se_resnet"], [18], tmp_path / "run2", width=8, epochs=1, leads="any")


# --- a `--leads any` model through quantize, evaluate, bench and bench --external (issue 9) -----------------

@pytest.fixture(scope="module")
def leads_any(tmp_path_factory):
    """(run, model folder, three-lead --keep-leads dataset): one tiny `--leads any` model, trained once."""
    from ecgtool.train.run import train_models

    root = tmp_path_factory.mktemp("leads_any")
    data = _three_lead_dataset(root / "data")
    train_models(data, ["se_resnet"], [18], root / "run", width=8, epochs=1, batch_size=16, device="cpu",
                 leads="any", threads=1)
    return root / "run", root / "run" / "se_resnet18", data


def test_deployment_signals_is_the_deployment_lead_of_a_keep_leads_dataset(tmp_path):
    from ecgtool.data.dataset import deployment_signals, model_channels

    ds = load_dataset(_three_lead_dataset(tmp_path / "data"))
    assert deployment_signals(ds, None) is ds.signals and deployment_signals(ds, {"in_channels": 3}) is ds.signals
    one = deployment_signals(ds, {"in_channels": 1, "preprocessing": {"lead": "II", "channels": 1}})
    assert one.shape == (len(ds), 1, ds.signals.shape[2])
    np.testing.assert_array_equal(one, ds.signals[:, :1])
    assert model_channels({"preprocessing": {"channels": 1}}) == 1 and model_channels({}) is None
    with pytest.raises(BadInput, match="deployed on lead V1"):
        deployment_signals(ds, {"in_channels": 1, "preprocessing": {"lead": "V1"}})
    with pytest.raises(BadInput, match="expects 4"):
        deployment_signals(ds, {"in_channels": 4})
    write_dataset(tmp_path / "plain", np.asarray(ds.signals), ds.labels, ds.classes, ds.records, ds.splits,
                  {"sampling_rate": 100.0, "source": "three leads, not --keep-leads"})
    with pytest.raises(BadInput, match="--keep-leads"):
        deployment_signals(load_dataset(tmp_path / "plain"), {"in_channels": 1})


def test_leads_any_model_quantises_on_one_lead_windows(leads_any, tmp_path):
    from ecgtool.export.int8 import quantize_folder

    _, model, data = leads_any
    ds = load_dataset(data)
    report = quantize_folder(model, data, calib_dir=tmp_path / "calib", calib_size=16, threads=1)
    with np.load(report["calibration"]["path"]) as z:
        calib = z["signals"]
    assert calib.shape == (16, 1, ds.signals.shape[2])  # one-lead windows for the one-lead graph
    idx = json.loads(Path(report["calibration"]["path"]).with_suffix(".json").read_text())
    assert idx["channels"] == 1 and idx["lead"] == "II"
    np.testing.assert_array_equal(calib, ds.signals[idx["indices"], :1])  # the deployment lead, channel 0
    assert report["gate"]["n_val"] == len(ds.indices("val")) and report["n"] == len(ds.indices("test"))
    assert report["gate"]["n"] == report["gate"]["n_val"] + report["gate"]["n_train"]
    assert (model / "model.int8.onnx").is_file()


def test_evaluate_bench_and_external_score_the_deployment_lead(leads_any, tmp_path):
    from tiny_run import BENCH_OPTIONS

    from ecgtool.bench.runner import bench
    from ecgtool.evaluate.artifact import evaluate_artifact
    from ecgtool.export import export

    run, model, data = leads_any
    export(model, "onnx", data=data)
    ext = _three_lead_dataset(tmp_path / "device", seed=1)
    own = {a: evaluate_artifact(a, data, split="test") for a in (model, model / "model.onnx")}
    far = {a: evaluate_artifact(a, ext, split="all") for a in own}
    rows = bench([model / "model.onnx", model], data, out=tmp_path / "bench", external=[ext], **BENCH_OPTIONS).rows
    by_kind = {r["kind"]: r for r in rows if r["variant"] == "fp32"}
    assert all(r["status"] == "ok" for r in rows) and set(by_kind) == {"pytorch", "onnxruntime"}, rows
    for kind, a in (("pytorch", model), ("onnxruntime", model / "model.onnx")):
        r = by_kind[kind]
        assert r["macro_f1"] == pytest.approx(own[a]["macro_f1"], abs=1e-6)
        assert r["ext_f1_device"] == pytest.approx(far[a]["macro_f1"], abs=1e-6)
        assert r["external"]["device"]["n"] == far[a]["n"] == len(load_dataset(ext))


def test_cli_quantize_evaluate_bench_of_a_leads_any_model(leads_any, tmp_path):
    from click.testing import CliRunner

    from ecgtool.cli.main import main as cli

    _, model, data = leads_any
    runner = CliRunner()
    r = runner.invoke(cli, ["quantize", str(model), "--data", str(data), "--calib-size", "16",
                            "--calib-dir", str(tmp_path / "calib"), "--out", str(tmp_path / "m.int8.onnx"), "-q"])
    assert r.exit_code == 0, r.output
    assert "gate" in r.output and (tmp_path / "m.int8.onnx").is_file()
    r = runner.invoke(cli, ["evaluate", str(model), "--data", str(data), "--out", str(tmp_path / "e.json"), "-q"])
    assert r.exit_code == 0, r.output
    assert "macro-F1" in r.output
    r = runner.invoke(cli, ["bench", str(model), "--data", str(data), "--external", str(data), "--threads", "1",
                            "--min-runs", "3", "--min-time", "0.02", "--warmup", "1", "--out", str(tmp_path / "b"), "-q"])
    assert r.exit_code == 0, r.output
    assert "ext_f1_data" in (tmp_path / "b" / "bench.md").read_text()
    plain = tmp_path / "plain"
    ds = load_dataset(data)
    write_dataset(plain, np.asarray(ds.signals), ds.labels, ds.classes, ds.records, ds.splits,
                  {"sampling_rate": 100.0, "source": "three leads, not --keep-leads"})
    r = runner.invoke(cli, ["evaluate", str(model), "--data", str(plain), "--out", str(tmp_path / "x.json")])
    assert r.exit_code == 2 and "Traceback" not in r.output and "--keep-leads" in r.output


def test_prune_of_a_leads_any_model_fine_tunes_on_random_leads_and_scores_the_deployment_lead(leads_any, tmp_path):
    from ecgtool.compress.prune import prune_artifact
    from ecgtool.evaluate.artifact import evaluate_artifact

    _, model, data = leads_any
    res = prune_artifact(model, data, 0.5, out=tmp_path / "p", fine_tune_epochs=1, batch_size=16, device="cpu")
    cfg = json.loads((tmp_path / "p" / "config.json").read_text())
    assert cfg["in_channels"] == 1 and cfg["extra"]["leads"] == "any"  # kept on top: a later prune or QAT reads it
    assert res["after"]["macro_f1"] == pytest.approx(evaluate_artifact(tmp_path / "p", data)["macro_f1"])
    assert res["after"]["params"] < res["before"]["params"]


def test_adapt_of_a_leads_any_model_reads_the_deployment_lead(leads_any, tmp_path):
    from ecgtool.evaluate.artifact import evaluate_artifact
    from ecgtool.train.adapt import adapt_model

    _, model, data = leads_any
    device = _three_lead_dataset(tmp_path / "device", seed=2)
    res = adapt_model(model, device, tmp_path / "adapted")
    assert res["windows"] == len(load_dataset(device).indices("train"))
    assert res["macro_f1_after"] == pytest.approx(evaluate_artifact(tmp_path / "adapted", device)["macro_f1"])
