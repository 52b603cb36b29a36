"""Quantisation-aware training (`quantize --qat`): QDQ ONNX that ONNX Runtime and OpenVINO run, TensorRT's form,
recorded like post-training INT8, and bad input refused in one line."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from conftest import copy_trained

from ecgtool.cli.main import main
from ecgtool.compress.quantize import qdq_properties
from ecgtool.core.files import read_json
from ecgtool.core.names import ONNX_META_INT8_FORM, ONNX_META_INT8_QAT_EPOCHS, ONNX_META_INT8_TARGET, QAT_INT8, QAT_TRT_INT8
from ecgtool.data.dataset import load_dataset
from ecgtool.export.int8 import qat_folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory, trained_source):
    return copy_trained(trained_source, tmp_path_factory.mktemp("qat"))


@pytest.fixture(scope="module")
def qat_cpu(trained, tmp_path_factory):
    folder, data = trained
    return qat_folder(folder, data, target="x86-avx2", qat_epochs=1, calib_size=21,
                      calib_dir=tmp_path_factory.mktemp("calib"), threads=1)


def _props(path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def test_qat_onnx_is_qdq_runs_in_onnxruntime_and_has_its_f1(trained, qat_cpu):
    folder, data = trained
    out = folder / QAT_INT8
    assert qat_cpu["path"] == str(out)
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    q = qdq_properties(out)
    assert "uint8" in q["zero_point_types"] and "int8" in q["zero_point_types"]  # u8 activations, s8 weights
    weights = [t for t in onnx.load(str(out)).graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights, "weights are stored as int8 initializers (QuantizeLinear of constants folded)"
    ds = load_dataset(data)
    idx = np.sort(ds.indices("test"))
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"input": np.asarray(ds.signals[idx], dtype=np.float32)})[0]
    assert logits.shape == (len(idx), len(ds.classes)) and np.isfinite(logits).all()
    assert qat_cpu["n"] == len(idx) and 0.0 <= qat_cpu["int8_macro_f1"] <= 1.0
    assert qat_cpu["fp32_macro_f1"] > 0.3 and qat_cpu["top1_agreement"] >= 0.8  # the fixture learnt; QAT kept it
    f1 = float(np.mean([qat_cpu["per_class_f1"][c]["int8"] for c in ds.classes]))
    assert abs(f1 - qat_cpu["int8_macro_f1"]) < 1e-9  # the reported F1 is the per-class mean of this file's F1s
    assert qat_cpu["target"] == "x86-avx2" and qat_cpu["form"]["reduce_range"] and qat_cpu["qat"]["epochs_run"] == 1


def test_qat_artifact_is_recorded_like_int8(trained, qat_cpu):
    folder, _ = trained
    props = _props(folder / QAT_INT8)
    assert props[ONNX_META_INT8_TARGET] == "x86-avx2" and props[ONNX_META_INT8_FORM] == "u8s8-asym-pc-rr"
    assert props[ONNX_META_INT8_QAT_EPOCHS] == "1"
    entry = read_json(folder.parent / "manifest.json")["artifacts"][f"se_resnet18/{QAT_INT8}"]
    assert entry["parent"] == "se_resnet18/model.onnx" and entry["qat_epochs"] == 1
    assert entry["int8_form"] == "u8s8-asym-pc-rr" and entry["quantization"]["method"] == "qat"
    assert entry["gate"]["split"] == "val" and isinstance(entry["gate"]["passed"], bool)
    assert entry["check"]["precision"] == "int8"


def test_qat_tensorrt_form_is_symmetric_int8_and_openvino_reads_it(trained, tmp_path):
    folder, data = trained
    r = qat_folder(folder, data, target="tensorrt", qat_epochs=1, calib_size=21, calib_dir=tmp_path, threads=1)
    out = folder / QAT_TRT_INT8
    assert r["path"] == str(out) and r["evaluated"] == "simulated-qdq"
    q = qdq_properties(out)
    assert q["tensorrt_ready"] and q["zero_point_types"] == ["int8"] and q["nonzero_zero_points"] == 0
    ov = pytest.importorskip("openvino")
    compiled = ov.Core().compile_model(str(out), "CPU")
    x = np.asarray(load_dataset(data).signals[:4], dtype=np.float32)
    got = compiled(x)[compiled.output(0)]
    ref = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert got.shape == ref.shape and (got.argmax(1) == ref.argmax(1)).mean() >= 0.75


def _one_line_exit_2(args):
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    return lines[0]


def test_qat_bad_input_is_one_line_exit_2(trained, tmp_path):
    folder, data = trained
    onnx_file = folder / "model.onnx"
    assert onnx_file.exists()
    line = _one_line_exit_2(["quantize", str(onnx_file), "--data", str(data), "--qat"])
    assert "--qat" in line and "model.onnx" in line
    baseline = tmp_path / "rr_baseline"
    from ecgtool.train.baseline import train_baseline

    train_baseline(data, tmp_path, seed=0)
    assert (baseline / "config.json").exists()
    line = _one_line_exit_2(["quantize", str(baseline), "--data", str(data), "--qat"])
    assert "--qat" in line and "rr_baseline" in line
    assert "only with --qat" in _one_line_exit_2(["quantize", str(folder), "--data", str(data), "--qat-epochs", "2"])
    assert "--qat-epochs 0" in _one_line_exit_2(["quantize", str(folder), "--data", str(data), "--qat", "--qat-epochs", "0"])
    assert "do not apply" in _one_line_exit_2(["quantize", str(folder), "--data", str(data), "--qat", "--method", "auto"])


def test_bench_finds_the_qat_file_and_compares_it_with_its_fp32_parent(trained, qat_cpu, tmp_path):
    from tiny_run import BENCH_OPTIONS

    from ecgtool.bench.runner import bench

    folder, data = trained
    rows = bench([folder], data, out=tmp_path, **BENCH_OPTIONS).rows
    qat = [r for r in rows if r.get("int8_form") == "u8s8-asym-pc-rr"]
    assert len(qat) == 1 and qat[0]["int8_qat_epochs"] == 1 and qat[0]["int8_target"] == "x86-avx2"
    assert 0.0 <= qat[0]["agreement_fp32"] <= 1.0 and qat[0]["int8_gate"] in ("pass", "fail")
    assert qat[0]["f1_delta_macro"] == pytest.approx(qat[0]["macro_f1"] - next(
        r["macro_f1"] for r in rows if r.get("kind") == "pytorch"), abs=1e-6)
