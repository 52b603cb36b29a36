"""Bench rows of INT8 artifacts: target and form columns, delta and agreement against the FP32 parent, and the
TensorRT INT8 row's F1 simulated with ONNX Runtime's graph optimisations off."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import copy_trained

from ecgtool.bench.runner import bench
from ecgtool.export.int8 import quantize_folder


@pytest.fixture(scope="module")
def benched_int8(tmp_path_factory, trained_source):
    root = tmp_path_factory.mktemp("bint8")
    folder, data = copy_trained(trained_source, root)
    quantize_folder(folder, data, target="x86-avx2", calib_size=42, calib_dir=root / "calib", gate=False)
    quantize_folder(folder, data, target="tensorrt", calib_size=42, calib_dir=root / "calib", gate=False)
    result = bench([folder.parent], data, out=folder.parent, threads=1, warmup=1, min_runs=3, min_time_s=0.02,
                   throughput_batch=16)
    return folder.parent, result.rows


def _row(rows, runtime):
    return next(r for r in rows if r["precision"] == "int8" and r["runtime"] == runtime)


def test_ort_int8_row_has_form_delta_and_agreement(benched_int8):
    run, rows = benched_int8
    r = _row(rows, "ONNX Runtime")
    fp32 = next(x for x in rows if x["kind"] == "pytorch")
    assert r["int8_target"] == "x86-avx2" and r["int8_form"] == "u8s8-asym-pc-rr"
    assert 0.9 <= r["agreement_fp32"] <= 1.0
    assert set(r["f1_delta"]) == set(fp32["per_class_f1"])
    c = r["f1_delta_worst_class"]
    assert r["f1_delta_worst"] == pytest.approx(r["per_class_f1"][c] - fp32["per_class_f1"][c], abs=1e-5)
    assert r["f1_delta_macro"] == pytest.approx(r["macro_f1"] - fp32["macro_f1"], abs=1e-5)
    assert r["int8_gate"] in ("pass", "fail") and "_argmax" not in r
    lost, gained = r["f1_delta_worst_windows"]  # the windows of that class behind its delta
    assert lost >= 0 and gained >= 0 and (r["f1_delta_worst"] >= 0 or lost > 0)
    n = int(np.sum(r["confusion"]))  # a window counts for a class only where FP32 and INT8 disagree on it
    assert lost + gained <= round((1 - r["agreement_fp32"]) * n)
    md = (run / "bench.md").read_text()
    assert "## INT8 against FP32" in md and "u8s8-asym-pc-rr" in md


def test_tensorrt_int8_row_gets_simulated_f1(benched_int8):
    _, rows = benched_int8
    t = _row(rows, "TensorRT")
    assert t["status"].startswith("skipped: ") and t.get("p50_ms") is None  # no TensorRT latency here
    assert t["f1_source"] == "simulated-qdq" and 0 < t["macro_f1"] <= 1
    assert t["int8_target"] == "tensorrt" and t["agreement_fp32"] >= 0.9


def test_report_never_recommends_an_int8_row_that_breaks_the_gate():
    from ecgtool.report.build import recommend, recommendation_lines

    rows = [{"model": "m", "variant": "fp32", "runtime": "PyTorch", "status": "ok", "macro_f1": 0.90, "size_mb": 2.0,
             "p50_ms": 2.0},
            {"model": "m", "variant": "int8", "runtime": "ONNX Runtime", "status": "ok", "macro_f1": 0.895, "size_mb": 0.5,
             "p50_ms": 0.5, "int8_gate": "fail", "int8_form": "u8s8-asym-pc", "f1_delta_macro": -0.005,
             "f1_delta_worst": -0.03, "f1_delta_worst_class": "AF", "agreement_fp32": 0.97}]
    rec = recommend(rows, tolerance=1.0)
    assert rec["smallest"]["variant"] == rec["fastest"]["variant"] == "fp32"  # the smaller, faster INT8 is passed over
    text = " ".join(recommendation_lines(rec))
    assert "Passed over m int8 on ONNX Runtime" in text and "3.00 on AF" in text
    rows[1]["int8_gate"] = "pass"
    assert recommend(rows, tolerance=1.0)["smallest"]["variant"] == "int8"


def test_qat_tensorrt_file_is_benched_as_simulated_tensorrt_by_its_metadata(tmp_path, trained_source):
    """`quantize --qat --target tensorrt` writes TensorRT's form: bench must simulate it (QDQ as written) like the PTQ
    TensorRT graph, not run it as an ONNX Runtime row with fused x86 kernels; the file's metadata decides, not its name."""
    import shutil

    import numpy as np

    from ecgtool.core.names import QAT_TRT_INT8
    from ecgtool.data.dataset import load_dataset
    from ecgtool.evaluate.metrics import compute_metrics
    from ecgtool.export.int8 import qat_folder
    from ecgtool.runtime.onnxruntime import OnnxRuntimePredictor

    folder, data = copy_trained(trained_source, tmp_path)
    qat_folder(folder, data, target="tensorrt", qat_epochs=1, calib_size=21, calib_dir=tmp_path / "calib", threads=1)
    shutil.copy(folder / QAT_TRT_INT8, folder / "renamed.onnx")  # a name nothing in the table knows
    rows = bench([folder], data, threads=1, warmup=1, min_runs=3, min_time_s=0.02, throughput_batch=16).rows
    ds = load_dataset(data)
    x, y = ds.split("test")
    sim = OnnxRuntimePredictor(folder / QAT_TRT_INT8, threads=1, optimize=False).predict(np.asarray(x, np.float32))
    expected = compute_metrics(np.asarray(y), sim.argmax(1), ds.classes)["macro_f1"]
    for name in (QAT_TRT_INT8, "renamed.onnx"):
        r = [r for r in rows if r["path"].endswith(name)]
        assert len(r) == 1, (name, [(x["path"], x["runtime"]) for x in rows])
        r = r[0]
        assert r["runtime"] == "TensorRT" and r["status"].startswith("skipped: ") and r.get("p50_ms") is None
        assert r["f1_source"] == "simulated-qdq" and r["macro_f1"] == pytest.approx(expected, abs=1e-6)
        assert r["int8_target"] == "tensorrt" and r["int8_qat_epochs"] == 1 and r["agreement_fp32"] is not None
    assert not [r for r in rows if r["runtime"] == "ONNX Runtime" and r.get("int8_target") == "tensorrt"]


def test_bench_judges_an_int8_row_by_the_gate_rule_its_file_records():
    """compare_with_parents uses the thresholds the file was quantised under (its ecgtool.int8_gate metadata,
    read by int8_columns); a file that records none gets the gate's defaults, agreement floor included."""
    from ecgtool.bench.int8 import ARGMAX, GATE_RULE_KEY, compare_with_parents
    from ecgtool.compress.gate import DEFAULT_AGREEMENT

    classes = ["a", "b"]
    y = np.array([0] * 50 + [1] * 50)
    fp32 = y.copy()
    int8 = y.copy()
    int8[0] = 1  # one window of 100 moves: agreement 99 %, F1 losses about 1 point on one window

    def rows(rule):
        parent = {"model": "m", "kind": "pytorch", "macro_f1": 1.0, "per_class_f1": {"a": 1.0, "b": 1.0}, ARGMAX: fp32}
        row = {"model": "m", "precision": "int8", "macro_f1": 0.99, "per_class_f1": {"a": 0.99, "b": 0.99}, ARGMAX: int8}
        if rule is not None:
            row[GATE_RULE_KEY] = rule
        compare_with_parents([parent, row], classes, y)
        assert GATE_RULE_KEY not in row and ARGMAX not in row
        return row

    assert DEFAULT_AGREEMENT <= 99
    assert rows(None)["int8_gate"] == "pass"                                   # defaults: 1 window is waived, 99 % >= floor
    strict = rows({"agreement_floor": 99.5})
    assert strict["int8_gate"] == "fail" and "agree" in strict["int8_gate_reason"]
    assert rows({"min_windows": 1, "class_points": 0.5})["int8_gate"] == "fail"  # points counted from one window
