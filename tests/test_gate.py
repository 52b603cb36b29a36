"""The INT8 gate's window rule (compress/gate.py): a loss beyond the points limits fails the gate only when at
least `min_windows` windows carry it, net; the default is the fewest windows the exact McNemar test calls
significant; the decision and its reason are recorded in the artifact; the option reaches quantize, export
and the pipeline."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from conftest import copy_trained

from ecgtool.compress.gate import (DEFAULT_MIN_WINDOWS, MIN_WINDOWS_ALPHA, judge, mcnemar_p, smallest_significant_count,
                                   windows_changed)

CLASSES = ["Normal", "AF", "AFL", "FAB", "SB", "ST", "PVC"]
#: a validation split like the demo's: ~116 Normal, ~20 windows in each minority class
COUNTS = [116, 112, 20, 22, 22, 20, 18]


def _split() -> np.ndarray:
    return np.repeat(np.arange(len(CLASSES)), COUNTS)


def _flip(pred: np.ndarray, y: np.ndarray, src: int, dst: int, n: int) -> np.ndarray:
    """`pred` with the first `n` windows of true class `src` now predicted `dst`."""
    out = pred.copy()
    out[np.flatnonzero(y == src)[:n]] = dst
    return out


def test_default_is_the_fewest_windows_mcnemar_calls_significant():
    assert smallest_significant_count(MIN_WINDOWS_ALPHA) == DEFAULT_MIN_WINDOWS == 5
    assert mcnemar_p(4, 0) == pytest.approx(0.0625) and mcnemar_p(5, 0) == pytest.approx(0.03125)
    assert mcnemar_p(0, 0) == 1.0 and mcnemar_p(3, 3) > 0.5


def test_windows_changed_counts_one_vs_rest_per_class():
    y = _split()
    b = _flip(y, y, CLASSES.index("PVC"), CLASSES.index("AF"), 1)
    assert windows_changed(y, y, b) == (1, 0)  # overall: one window right -> wrong
    assert windows_changed(y, y, b, CLASSES.index("PVC")) == (1, 0)  # PVC missed it
    assert windows_changed(y, y, b, CLASSES.index("AF")) == (1, 0)  # AF newly claims it
    assert windows_changed(y, y, b, CLASSES.index("Normal")) == (0, 0)
    assert windows_changed(y, b, y, CLASSES.index("PVC")) == (0, 1)  # the reverse is a gain


def test_one_window_flip_on_a_small_class_passes_with_its_reason():
    y = _split()
    fp32 = y.copy()
    int8 = _flip(fp32, y, CLASSES.index("PVC"), CLASSES.index("AFL"), 1)
    strict = judge(y, fp32, int8, CLASSES, min_windows=0)  # points alone: one window fails it
    assert not strict.passed and strict.class_loss_points["PVC"] > 1 and strict.macro_loss_points > 0.5
    v = judge(y, fp32, int8, CLASSES)
    assert v.passed and not v.failures
    waived = " ".join(v.waived)
    assert "PVC lost" in waived and "AFL lost" in waived and "macro-F1 lost" in waived
    assert "on 1 window(s) net" in waived and "fewer than 5 windows" in waived
    assert v.reason.startswith("holds") and "waived" in v.reason and v.excess <= 0
    d = v.as_dict()
    assert d["passed"] and d["min_windows"] == 5 and d["class_windows_lost_gained"]["PVC"] == [1, 0] and d["reason"] == v.reason


def test_a_real_multi_window_loss_fails():
    y = _split()
    fp32 = y.copy()
    int8 = _flip(fp32, y, CLASSES.index("PVC"), CLASSES.index("AF"), 6)
    v = judge(y, fp32, int8, CLASSES)
    assert not v.passed and v.reason.startswith("fails")
    assert any(f.startswith("PVC lost") and "on 6 window(s) net" in f for f in v.failures)
    assert v.excess > 0


def test_a_loss_spread_over_classes_fails_on_macro():
    """Two windows from each of three small classes: no class reaches 5 windows, the macro-F1 loss (6) does."""
    y = _split()
    int8 = y.copy()
    for c in ("AFL", "FAB", "SB"):
        int8 = _flip(int8, y, CLASSES.index(c), CLASSES.index("Normal"), 2)
    v = judge(y, y, int8, CLASSES)
    assert not v.passed and any(f.startswith("macro-F1 lost") and "on 6 window(s) net" in f for f in v.failures)
    assert all(not f.startswith(("AFL", "FAB", "SB")) for f in v.failures)


def test_gains_offset_losses_in_the_count():
    y = _split()
    fp32 = _flip(y, y, CLASSES.index("ST"), CLASSES.index("Normal"), 3)  # FP32 misses 3 ST windows
    int8 = _flip(fp32, y, CLASSES.index("PVC"), CLASSES.index("AF"), 6)  # INT8 loses 6 PVC ...
    int8[np.flatnonzero(y == CLASSES.index("ST"))[:3]] = CLASSES.index("ST")  # ... and gets those ST right
    assert windows_changed(y, fp32, int8) == (6, 3)
    v = judge(y, fp32, int8, CLASSES)
    assert any(f.startswith("PVC lost") for f in v.failures)  # PVC's own count is 6: still fails
    assert not any(f.startswith("macro-F1") for f in v.failures)  # overall 6 lost - 3 gained = 3 < 5


@pytest.fixture(scope="module")
def trained(tmp_path_factory, trained_source):
    return copy_trained(trained_source, tmp_path_factory.mktemp("gate"))


def test_decision_recorded_in_the_file_and_the_manifest(trained, tmp_path):
    from ecgtool.core.files import read_json
    from ecgtool.core.names import ONNX_META_INT8_GATE
    from ecgtool.export.int8 import quantize_folder

    folder, data = trained
    r = quantize_folder(folder, data, target="x86-vnni", calib_size=21, calib_dir=tmp_path, gate_min_windows=3)
    g = r["gate"]
    assert g["min_windows"] == 3 and g["after"]["min_windows"] == 3 and g["reason"] == g["after"]["reason"]
    props = {p.key: p.value for p in onnx.load(r["path"], load_external_data=False).metadata_props}
    stamped = json.loads(props[ONNX_META_INT8_GATE])
    assert stamped["passed"] == g["passed"] and stamped["min_windows"] == 3 and stamped["reason"] == g["reason"]
    entry = read_json(folder.parent / "manifest.json")["artifacts"]["se_resnet18/model.int8.onnx"]
    assert entry["gate"]["reason"] == g["reason"] and entry["gate"]["min_windows"] == 3


def test_option_on_quantize_export_and_pipeline(trained, tmp_path):
    from ecgtool.cli.main import main
    from ecgtool.pipeline.run import load_config

    folder, data = trained
    res = CliRunner().invoke(main, ["quantize", str(folder), "--data", str(data), "--gate-min-windows", "-1",
                                    "--calib-dir", str(tmp_path)])
    assert res.exit_code == 2 and "--gate-min-windows -1" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["export", str(folder), "--format", "onnx-int8", "--data", str(data),
                                    "--gate-min-windows", "2", "--calib-size", "21", "--calib-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    props = {p.key: p.value for p in onnx.load(str(folder / "model.int8.onnx"), load_external_data=False).metadata_props}
    assert json.loads(props["ecgtool.int8_gate"])["min_windows"] == 2
    assert load_config({"quantize": {"gate_min_windows": 3}})["quantize"]["gate_min_windows"] == 3
