"""The windows the INT8 gate judges (compress/gate.py `gate_windows`, `--gate-train N`): the validation split plus up
to N training windows outside the calibration set, stratified by class; 0 judges on validation alone."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import copy_trained

from ecgtool.compress.gate import DEFAULT_GATE_TRAIN, gate_windows
from ecgtool.core.errors import BadInput


def _ds(n_train_per_class: int = 40, n_val: int = 30, k: int = 3):
    labels = np.concatenate([np.repeat(np.arange(k), n_train_per_class), np.arange(n_val) % k])
    train = np.arange(k * n_train_per_class)
    val = np.arange(k * n_train_per_class, len(labels))
    splits = {"train": train, "val": val, "test": np.array([], dtype=np.int64)}
    return SimpleNamespace(labels=labels, indices=lambda name: splits[name])


def test_validation_plus_a_stratified_sample_of_training_windows_outside_calibration():
    ds = _ds()
    calibration = np.arange(0, 120, 4)  # 30 training windows, 10 per class
    idx, n_train = gate_windows(ds, calibration, 45, seed=0)
    val = ds.indices("val")
    assert n_train == 45 and len(idx) == len(val) + 45 and np.all(np.diff(idx) > 0)
    assert set(val) <= set(idx) and not set(calibration) & set(idx)  # every validation window, no calibration one
    extra = np.setdiff1d(idx, val)
    assert np.array_equal(np.bincount(ds.labels[extra], minlength=3), [15, 15, 15])  # stratified by class
    assert np.array_equal(gate_windows(ds, calibration, 45, seed=0)[0], idx)  # same seed, same windows
    assert not np.array_equal(gate_windows(ds, calibration, 45, seed=1)[0], idx)


def test_all_spare_training_windows_when_fewer_than_asked_and_validation_alone_at_zero():
    ds = _ds()
    calibration = np.arange(0, 120, 4)
    idx, n_train = gate_windows(ds, calibration, DEFAULT_GATE_TRAIN)
    assert n_train == 90 and len(idx) == 120  # 120 training - 30 calibration, + 30 validation
    idx, n_train = gate_windows(ds, calibration, 0)
    assert n_train == 0 and np.array_equal(idx, ds.indices("val"))
    idx, n_train = gate_windows(ds, np.arange(120), 100)  # every training window calibrated on: none spare
    assert n_train == 0 and np.array_equal(idx, ds.indices("val"))


@pytest.mark.parametrize("bad", [-1, 2.5, True, "10"])
def test_count_must_be_whole(bad):
    with pytest.raises(BadInput, match=r"--gate-train .*whole number of training windows"):
        gate_windows(_ds(), [], bad)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, trained_source):
    return copy_trained(trained_source, tmp_path_factory.mktemp("gatewin"))


def _flip_one_training_window(monkeypatch, fp32, train):
    """INT8 predicts what FP32 predicts, except on the first training window it is shown (logits rolled by one class);
    the scan is replaced by one that keeps the first file, so that only the windows judged decide."""
    import ecgtool.compress.quantize as q

    real = q.onnx_logits

    def logits(path, signals, idx, threads, desc, **kw):
        if desc != "int8 gate":
            return real(path, signals, idx, threads, desc, **kw)
        out = real(fp32, signals, idx, threads, desc).copy()
        hit = np.flatnonzero(np.isin(idx, train))[:1]
        out[hit] = np.roll(out[hit], 1, axis=1)
        return out

    def no_scan(build, predict, judge_fn, groups, exclude, tmp, first, too_slow):
        return {"path": first[0], "verdict": first[1], "scan": [], "kept_fp32": [], "groups_fp32": [], "stopped": None}

    monkeypatch.setattr(q, "onnx_logits", logits)
    monkeypatch.setattr(q, "scan", no_scan)


def test_a_flip_on_a_training_window_counts_only_when_training_windows_are_judged(trained, tmp_path, monkeypatch):
    from ecgtool.compress.quantize import quantize_model
    from ecgtool.data.dataset import load_dataset

    folder, data = trained
    fp32 = folder / "model.onnx"
    if not fp32.exists():
        from ecgtool.export import export

        export(folder, "onnx", data=data)
    ds = load_dataset(data)
    _flip_one_training_window(monkeypatch, fp32, ds.indices("train"))
    kw = dict(target="x86-vnni", calib_size=21, calib_dir=tmp_path, gate_agreement=100, gate_macro=100, gate_class=100)
    r = quantize_model(fp32, data, tmp_path / "val-only.onnx", gate_train=0, **kw)
    g = r["gate"]
    assert g["split"] == "val" and g["n_train"] == 0 and g["n"] == g["n_val"] == len(ds.indices("val"))
    assert g["passed"] and g["before"]["agreement"] == 1.0  # the flipped window is not among those judged

    r = quantize_model(fp32, data, tmp_path / "with-train.onnx", **kw)
    g = r["gate"]
    spare = len(ds.indices("train")) - r["calibration"]["records"]
    assert g["split"] == "val+train" and g["n_train"] == min(DEFAULT_GATE_TRAIN, spare) > 0
    assert g["n"] == g["n_val"] + g["n_train"]
    assert not g["before"]["passed"] and f"1 of {g['n']} windows differ from FP32" in g["reason"]


def test_option_on_quantize_refused_with_qat_and_bounded_in_the_pipeline(trained, tmp_path):
    from ecgtool.cli.main import main
    from ecgtool.pipeline.run import load_config

    folder, data = trained
    res = CliRunner().invoke(main, ["quantize", str(folder), "--data", str(data), "--gate-train", "-1"])
    assert res.exit_code == 2 and "--gate-train -1" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["quantize", str(folder), "--data", str(data), "--qat", "--gate-train", "5"])
    assert res.exit_code == 2 and "--gate-train" in res.output and "quantisation-aware" in res.output
    res = CliRunner().invoke(main, ["quantize", str(folder), "--data", str(data), "--target", "x86-vnni",
                                    "--calib-size", "21", "--calib-dir", str(tmp_path), "--gate-train", "7"])
    assert res.exit_code == 0, res.output
    assert "validation n=" in res.output and "+ training n=7" in res.output
    assert load_config({"quantize": {"gate_train": 500}})["quantize"]["gate_train"] == 500
    with pytest.raises(BadInput, match="quantize.gate_train"):
        load_config({"quantize": {"gate_train": -3}})


def test_a_calibration_set_saved_without_its_indices_gets_them_back(tmp_path):
    from tiny_dataset import make_tiny_dataset

    from ecgtool.compress.calibration import calibration_set
    from ecgtool.core.files import read_json, write_json

    data = make_tiny_dataset(tmp_path / "data", per_class=6, seed=0)
    first = calibration_set(data, 10, 0, tmp_path / "cal")
    js = first.path.with_suffix(".json")
    meta = read_json(js)
    del meta["indices"]
    write_json(js, meta)
    again = calibration_set(data, 10, 0, tmp_path / "cal")
    assert again.meta["indices"] == first.meta["indices"] and len(first.meta["indices"]) == 10
