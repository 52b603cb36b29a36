"""The classical RR-interval baseline: features, training, pickle-free save/load, runtime kind, CLI."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ecgtool.baseline import classifier as baseline
from ecgtool.baseline.classifier import FEATURE_NAMES, RRBaseline, detect_beats, load_baseline, window_features
from ecgtool.train.baseline import train_baseline
from ecgtool.data.dataset import write_dataset
from ecgtool.data.splits import random_split

FS = 200.0
L = 2000


def ecg_like(rr_s: np.ndarray, rng: np.random.Generator, qrs_ms: float = 25.0, p_wave: bool = True,
             noise: float = 0.01) -> np.ndarray:
    """A crude lead-II window at 200 Hz: Gaussian QRS spikes at the given RR intervals (s), P and T waves."""
    t = np.arange(L) / FS
    x = np.zeros(L)
    beat = 0.3 + rng.uniform(0, 0.2)
    while beat < t[-1] + 0.5:
        x += np.exp(-0.5 * ((t - beat) / (qrs_ms / 1000 / 2.355)) ** 2)
        x += 0.3 * np.exp(-0.5 * ((t - beat - 0.3) / 0.04) ** 2)
        if p_wave:
            x += 0.12 * np.exp(-0.5 * ((t - beat + 0.16) / 0.02) ** 2)
        beat += float(rr_s[int(beat) % len(rr_s)] if len(rr_s) else 1.0)
    x += noise * rng.standard_normal(L) + 0.05 * np.sin(2 * np.pi * 0.3 * t)
    return ((x - x.min()) / (x.max() - x.min())).astype(np.float32)


def regular(rng: np.random.Generator, hr: float = 70.0) -> np.ndarray:
    return ecg_like(np.full(20, 60.0 / hr) * (1 + 0.01 * rng.standard_normal(20)), rng)


def irregular(rng: np.random.Generator) -> np.ndarray:
    """AF-like: RR drawn independently (no pattern) and no P wave."""
    return ecg_like(rng.uniform(0.4, 1.1, 20), rng, p_wave=False, noise=0.03)


def make_dataset(root: Path, per_class: int = 30, seed: int = 0) -> Path:
    """Three classes a rhythm classifier must separate: Normal (70 bpm), AF (irregular), SB (45 bpm)."""
    rng = np.random.default_rng(seed)
    makers = [regular, irregular, lambda r: regular(r, hr=45.0)]
    sig, lab = [], []
    for k, make in enumerate(makers):
        for _ in range(per_class):
            sig.append(make(rng)[None])
            lab.append(k)
    labels = np.array(lab)
    records = [{"record_id": f"r{i}", "patient_id": f"p{i}", "source_label": str(y)} for i, y in enumerate(labels)]
    return write_dataset(root, np.stack(sig), labels, ["Normal", "AF", "SB"], records, random_split(labels, seed),
                         {"sampling_rate": FS, "seconds": 10, "source": "test"})


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("bl") / "data")


@pytest.fixture(scope="module")
def trained(small_data: Path, tmp_path_factory) -> tuple[Path, dict]:
    run = tmp_path_factory.mktemp("blrun")
    row = train_baseline(small_data, run, seed=0)
    return run, row


def feature(vec: np.ndarray, name: str) -> float:
    return float(vec[FEATURE_NAMES.index(name)])


def test_detects_the_beats_of_a_regular_rhythm():
    rng = np.random.default_rng(1)
    peaks = detect_beats(regular(rng, hr=60.0), FS)
    assert 9 <= len(peaks) <= 11  # 60 bpm for 10 s
    assert np.allclose(np.diff(peaks) / FS, 1.0, atol=0.05)


def test_irregular_rhythm_has_higher_irregularity_and_heart_rate_follows_rr():
    rng = np.random.default_rng(2)
    reg = window_features(regular(rng, hr=75.0), FS)
    irr = window_features(irregular(rng), FS)
    assert feature(reg, "hr_bpm") == pytest.approx(75.0, rel=0.05)
    for name in ("rr_cv", "rmssd_rel", "pnn50", "sd_entropy_bits"):
        assert feature(irr, name) > feature(reg, name), name
    assert feature(reg, "rr_cv") < 0.05 < feature(irr, "rr_cv")


@pytest.mark.parametrize("signal", [
    np.zeros(L, np.float32),                       # flat line
    np.full(L, 0.5, np.float32),                   # constant
    np.random.default_rng(3).random(L).astype(np.float32),  # noise, no beats
    np.r_[np.zeros(L - 100), np.ones(100)].astype(np.float32),  # a step
    np.full(L, np.nan, np.float32),                # non-finite
])
def test_degenerate_signals_give_nan_safe_features(signal):
    vec = window_features(signal, FS)
    assert vec.shape == (len(FEATURE_NAMES),)
    assert not np.isinf(vec).any()
    assert feature(vec, "n_beats") >= 0


def test_features_in_worker_processes_equal_one_process(monkeypatch):
    """extract_features split over forked processes (chunks, in any completion order) gives the matrix one
    process gives, row for row, for the windows `indices` selects; under PARALLEL_MIN windows it stays in one."""
    from ecgtool.baseline import features as F

    rng = np.random.default_rng(4)
    sig = np.stack([(regular(rng, hr=50 + 3 * i) if i % 3 else irregular(rng))[None] for i in range(21)])
    sig[5, 0] = 0.0  # a flat window: NaN features, in a worker too
    idx = np.array([20, 3, 5, 0, 11, 7, 1, 14, 9, 18, 2, 16, 5])
    one = F.extract_features(sig, FS, progress=False, indices=idx, workers=1)
    monkeypatch.setattr(F, "PARALLEL_MIN", 4)
    monkeypatch.setattr(F, "CHUNK", 3)
    assert F.feature_workers(2, len(idx)) == 2 and F.feature_workers(2, 3) == 1 and F.feature_workers(1, 99) == 1
    two = F.extract_features(sig, FS, progress=False, indices=idx, workers=2)
    assert np.isnan(one[2]).any()
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one[0], F.window_features(sig[20, 0], FS))
    # the RR head's inputs as the runtimes compute them (through extract_features) are the bundle's head_inputs
    from ecgtool.runtime.base import rr_head_inputs

    cfg = {"rr_features": F.HEAD_DIM, "preprocessing": {"sampling_rate": FS}}
    np.testing.assert_array_equal(rr_head_inputs(cfg, sig[idx]), F.head_inputs(sig[idx], FS))


def test_trains_above_chance_and_writes_a_model_folder(trained):
    run, row = trained
    folder = run / "rr_baseline"
    assert row["macro_f1"] > 0.8  # three separable rhythms; chance is ~0.33
    for name in ("features.npz", "config.json", "metrics.json", "confusion.png"):
        assert (folder / name).exists(), name
    assert not (folder / "model.safetensors").exists()  # the PyTorch loader must not claim it
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["arch"] == "rr_baseline" and cfg["classes"] == ["Normal", "AF", "SB"]
    assert cfg["preprocessing"]["classes"] == cfg["classes"] and cfg["preprocessing"]["window_len"] == cfg["length"]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["macro_f1"] == pytest.approx(row["macro_f1"])
    assert set(metrics["per_class"]) == {"Normal", "AF", "SB"}
    manifest = json.loads((run / "manifest.json").read_text())
    assert "rr_baseline/features.npz" in manifest["artifacts"]


def test_saved_weights_hold_no_pickled_objects(trained):
    folder = trained[0] / "rr_baseline"
    with zipfile.ZipFile(folder / "features.npz") as zf:
        assert sorted(zf.namelist()) == ["features.npy", "labels.npy"]
    with np.load(folder / "features.npz", allow_pickle=False) as npz:  # raises if anything needs unpickling
        assert npz["features"].dtype == np.float32 and npz["labels"].dtype == np.int64


def test_round_trip_reproduces_predictions(trained, small_data):
    from ecgtool.data.dataset import load_dataset

    folder = trained[0] / "rr_baseline"
    ds = load_dataset(small_data)
    x, y = ds.split("test")
    model, cfg = load_baseline(folder)
    again, _ = load_baseline(folder / "features.npz")
    a, b = model.predict_logits(x), again.predict_logits(x)
    assert a.shape == (len(x), 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert model.fingerprint(np.load(folder / "features.npz")["features"]) == pytest.approx(cfg["fit_check"], abs=1e-6)
    assert (a.argmax(1) == y).mean() > 0.8


def test_runtime_and_evaluate_open_the_folder(trained, small_data):
    from ecgtool.evaluate.artifact import evaluate_artifact
    from ecgtool.runtime import artifact_kind, load

    folder = trained[0] / "rr_baseline"
    assert artifact_kind(folder) == "baseline"
    pred = load(folder)
    assert pred.kind == "baseline" and pred.classes == ["Normal", "AF", "SB"]
    m = evaluate_artifact(folder, small_data)
    assert m["kind"] == "baseline"
    assert m["macro_f1"] == pytest.approx(trained[1]["macro_f1"])


def test_the_predictor_runs_the_bundles_onnx_trees_and_matches_scikit_learn(trained, small_data):
    """The folder as a predictor (evaluate, bench, predict) classifies with the skl2onnx graph in ONNX Runtime, the
    classifier a bundle ships, not scikit-learn's predict_proba: the same probabilities to 1e-4, the same argmax."""
    from ecgtool.baseline.onnx import OUTPUT
    from ecgtool.data.dataset import load_dataset
    from ecgtool.runtime import load

    pred = load(trained[0] / "rr_baseline")
    assert OUTPUT in [o.name for o in pred.session.get_outputs()]
    x = np.asarray(load_dataset(small_data).signals[:40])
    got, want = pred.predict(x), pred.model.predict_logits(x)
    np.testing.assert_allclose(np.exp(got), np.exp(want), atol=1e-4)
    assert (got.argmax(1) == want.argmax(1)).all()
    calls = []
    pred.model.clf.predict_proba = lambda *a, **k: calls.append(1)  # scikit-learn is not what scores it
    pred.predict(x[:3])
    assert not calls


def test_cross_dataset_class_mapping(trained, tmp_path):
    """A dataset with a class the baseline never saw: those records are reported, the rest scored."""
    from ecgtool.evaluate.artifact import evaluate_artifact

    rng = np.random.default_rng(5)
    sig = np.stack([regular(rng)[None] for _ in range(6)] + [irregular(rng)[None] for _ in range(6)])
    labels = np.array([0] * 6 + [1] * 6)  # "PVC" is unknown to the model
    idx = np.arange(12)
    data = write_dataset(tmp_path / "other", sig, labels, ["Normal", "PVC"], [{"record_id": str(i)} for i in idx],
                         {"train": idx[:0], "val": idx[:0], "test": idx}, {"sampling_rate": FS})
    m = evaluate_artifact(trained[0] / "rr_baseline", data)
    assert m["classes_missing_in_model"] == ["PVC"] and m["excluded_records"] == {"PVC": 6}
    assert m["n"] == 6


def test_features_come_from_the_dataset_cache_the_second_time(trained, small_data, tmp_path):
    """train_baseline writes every window's features to the dataset's cache (what `--rr-head` and `data info
    --rates` read); a second training on the same data reads them back and fits the same model."""
    from ecgtool.baseline.cache import cached_feature_table
    from ecgtool.data.dataset import load_dataset

    run, row = trained
    first = json.loads((run / "rr_baseline" / "metrics.json").read_text())
    assert first["features_from_cache"] is False and first["feature_ms_per_window"] > 0
    ds = load_dataset(small_data)
    table = cached_feature_table(ds, 0)
    assert table is not None and table.shape[0] == len(ds)
    again = train_baseline(small_data, tmp_path / "again", seed=0)
    second = json.loads((tmp_path / "again" / "rr_baseline" / "metrics.json").read_text())
    assert second["features_from_cache"] is True and second["feature_ms_per_window"] is None
    assert again["macro_f1"] == row["macro_f1"] and second["confusion_matrix"] == first["confusion_matrix"]
    cfg = json.loads((run / "rr_baseline" / "config.json").read_text())
    assert cfg["train_counts"] == {c: int(n) for c, n in zip(ds.classes, np.bincount(
        ds.labels[ds.indices("train")], minlength=len(ds.classes)))}


def test_corrupt_or_foreign_folder_is_bad_input(trained, tmp_path):
    from ecgtool.core.errors import BadInput
    from ecgtool.runtime import artifact_kind

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"arch": "se_resnet"}))
    np.savez(folder / "features.npz", features=np.zeros((2, 3)), labels=np.zeros(2, np.int64))
    assert artifact_kind(folder) is None
    (folder / "config.json").write_text(json.dumps({"arch": "rr_baseline", "classes": ["a", "b"]}))
    with pytest.raises(BadInput, match="features.npz"):
        load_baseline(folder)  # 3 feature columns, not this version's
    (folder / "features.npz").write_bytes(b"not a zip")
    with pytest.raises(BadInput, match="features.npz"):
        load_baseline(folder)


def test_single_class_training_data_is_refused():
    from ecgtool.core.errors import BadInput

    with pytest.raises(BadInput, match="at least 2"):
        RRBaseline(classes=["Normal", "AF"]).fit(np.zeros((5, len(FEATURE_NAMES))), np.zeros(5, np.int64))


def test_unseen_classes_get_zero_probability():
    rng = np.random.default_rng(6)
    feats = rng.normal(size=(40, len(FEATURE_NAMES))).astype(np.float32)
    labels = np.array([0, 2] * 20)
    model = RRBaseline(classes=["a", "b", "c"], params={**baseline.DEFAULT_PARAMS, "max_iter": 5}).fit(feats, labels)
    proba = model.predict_proba_features(feats)
    assert proba.shape == (40, 3) and np.all(proba[:, 1] == 0)
    assert np.allclose(proba.sum(1), 1)


def test_cli_train_and_evaluate_rr_baseline(small_data, tmp_path):
    from click.testing import CliRunner

    from ecgtool.cli.main import main

    runner = CliRunner()
    run = tmp_path / "run"
    res = runner.invoke(main, ["train", "--data", str(small_data), "--arch", "rr_baseline", "--out", str(run), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "rr_baseline" in res.output
    summary = (run / "summary.csv").read_text()
    assert summary.startswith("model,arch") and "rr_baseline" in summary
    res = runner.invoke(main, ["evaluate", str(run / "rr_baseline"), "--data", str(small_data), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "macro-F1" in res.output
    out = json.loads((run / "rr_baseline" / f"eval-{small_data.name}-test.json").read_text())
    assert out["kind"] == "baseline" and out["macro_f1"] > 0.8
    # a deep arch still needs a depth: one clear line, exit 2
    res = runner.invoke(main, ["train", "--data", str(small_data), "--arch", "resnet", "--out", str(tmp_path / "r2")])
    assert res.exit_code == 2 and "--depth" in res.output


def test_cli_evaluate_corrupt_baseline_exits_2(trained, small_data, tmp_path):
    import shutil

    from click.testing import CliRunner

    from ecgtool.cli.main import main

    folder = tmp_path / "rr_baseline"
    shutil.copytree(trained[0] / "rr_baseline", folder)
    (folder / "features.npz").write_bytes(b"\x00" * 10)
    res = CliRunner().invoke(main, ["evaluate", str(folder), "--data", str(small_data)])
    assert res.exit_code == 2
    assert "features.npz" in res.output


def test_package_ships_the_baseline_and_its_bundle_predicts_as_ecgtool_without_torch_or_sklearn(trained, small_data,
                                                                                                 tmp_path):
    """`ecgtool package RUN/rr_baseline`: the classifier as ONNX (skl2onnx, checked against scikit-learn, NaN
    included), the features computed by ecg_features.py; the bundle, with torch, ecgtool and scikit-learn blocked,
    gives the logits ecgtool's own baseline gives on the same windows."""
    import subprocess
    import sys

    from click.testing import CliRunner
    from test_rr_head import BLOCKED_LOGITS

    from ecgtool.cli.main import main
    from ecgtool.data.dataset import load_dataset
    from ecgtool.runtime import load

    run, _ = trained
    bundle = tmp_path / "bundle"
    res = CliRunner().invoke(main, ["package", str(run / "rr_baseline"), "--out", str(bundle), "-q"])
    assert res.exit_code == 0, res.output
    spec = json.loads((bundle / "model.json").read_text())
    assert spec["rr_classifier"]["features"] == list(FEATURE_NAMES) and spec["input"]["name"] == "features"
    assert spec["metrics"]["export_check"]["argmax_agreement"] == 1.0
    assert spec["metrics"]["export_check"]["max_abs_diff"] < 1e-4
    assert (bundle / "ecg_features.py").is_file() and "wfdb" in (bundle / "requirements.txt").read_text()
    ds = load_dataset(small_data)
    x = np.asarray(ds.signals[np.sort(ds.indices("test"))], dtype=np.float32)
    ref = load(run / "rr_baseline").predict(x)
    np.save(tmp_path / "x.npy", x)
    done = subprocess.run([sys.executable, "-c", BLOCKED_LOGITS, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                          cwd=bundle, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    got = np.load(tmp_path / "y.npy")
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert np.array_equal(got.argmax(1), ref.argmax(1))
    res = CliRunner().invoke(main, ["package", str(run / "rr_baseline"), "--out", str(tmp_path / "b2"),
                                    "--precision", "int8"])
    assert res.exit_code == 2 and "ships as it is" in res.output and not (tmp_path / "b2").exists()
    res = CliRunner().invoke(main, ["export", str(run / "rr_baseline"), "--format", "onnx", "--data", str(small_data)])
    assert res.exit_code == 2 and "`ecgtool package` it" in res.output  # export is for networks; the hint says how


def test_baseline_bundle_gives_unseen_classes_their_floor(tmp_path):
    """A class the classifier never saw gets log(1e-7) in the bundle, as in RRBaseline.predict_logits."""
    import onnxruntime as ort

    from ecgtool.baseline.onnx import classifier_onnx
    from ecgtool.deploy.bundle_runner import baseline_logits

    rng = np.random.default_rng(6)
    feats = rng.normal(size=(40, len(FEATURE_NAMES))).astype(np.float32)
    model = RRBaseline(classes=["a", "b", "c"], params={**baseline.DEFAULT_PARAMS, "max_iter": 5}).fit(
        feats, np.array([0, 2] * 20))
    info = classifier_onnx(model, tmp_path / "model.onnx", feats)
    assert info["class_index"] == [0, 2]
    seen = ort.InferenceSession(str(tmp_path / "model.onnx")).run(["probabilities"], {"features": feats})[0]
    want = np.log(np.clip(model.predict_proba_features(feats), 1e-7, 1.0))
    np.testing.assert_allclose(baseline_logits(seen, info["class_index"], 3), want, atol=1e-5)
