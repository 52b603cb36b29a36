"""The ONNX handed to TensorRT is what TensorRT 10 accepts, and the trtexec command beside it is right.

TensorRT itself cannot be installed here (see DESIGN.md), so these tests check the graphs' properties:
INT8 = QDQ with signed int8 activations and weights, zero points 0, float biases, opset >= 17, static
channel and length dims; FP16 = float16 weights; and that `export --format tensorrt-*` writes the ONNX
and the script, then exits 2 saying which of TensorRT / CUDA is missing.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from conftest import copy_trained
from tiny_dataset import LENGTH
from onnx import numpy_helper

from ecgtool.core.files import read_json
from ecgtool.cli.main import main


def _missing() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "skipped: TensorRT not installed"
    import torch

    return None if torch.cuda.is_available() else "skipped: no CUDA device"


@pytest.fixture(scope="module")
def trt_exports(tmp_path_factory, trained_source):
    folder, data = copy_trained(trained_source, tmp_path_factory.mktemp("trt"))
    results = {}
    for fmt in ("tensorrt-int8", "tensorrt-fp16", "tensorrt-fp32"):
        r = CliRunner().invoke(main, ["export", str(folder), "--format", fmt, "--data", str(data), "--calib-size", "42",
                                      "--calib-dir", str(folder.parent / "calib")] if fmt.endswith("int8") else
                               ["export", str(folder), "--format", fmt, "--data", str(data)])
        results[fmt] = r
    return folder, results


def test_export_writes_onnx_and_script_then_says_what_is_missing(trt_exports):
    folder, results = trt_exports
    reason = _missing()
    if reason is None:
        pytest.skip("TensorRT and CUDA present: engine building is tested in test_gpu.py")
    for fmt, r in results.items():
        assert r.exit_code == 2, (fmt, r.output)
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("ecgtool: error")]
        assert len(errors) == 1 and reason in errors[0], errors
        precision = fmt.split("-")[1]
        assert (folder / f"trtexec-{precision}.sh").exists()
        assert not (folder / f"model.{precision}.engine").exists()
    manifest = read_json(folder.parent / "manifest.json")["artifacts"]
    assert manifest["se_resnet18/model.trt-int8.onnx"]["check"]["precision"] == "int8"
    assert manifest["se_resnet18/trtexec-int8.sh"]["parent"] == "se_resnet18/model.trt-int8.onnx"


def test_int8_graph_is_signed_symmetric_qdq(trt_exports):
    folder, _ = trt_exports
    m = onnx.load(str(folder / "model.trt-int8.onnx"))
    onnx.checker.check_model(m, full_check=True)
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    qdq = [n for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert sum(n.op_type == "QuantizeLinear" for n in qdq) >= 10
    for n in qdq:
        assert len(n.input) == 3 and n.input[2] in inits, n.name  # explicit zero point
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), (n.name, zp.dtype)
    # every conv reads its weight through a DequantizeLinear (per-channel on axis 0 where given)
    dq_by_output = {n.output[0]: n for n in qdq if n.op_type == "DequantizeLinear"}
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    assert convs and all(c.input[1] in dq_by_output and c.input[0] in dq_by_output for c in convs)
    assert all(inits[dq_by_output[c.input[1]].input[0]].dtype == np.int8 for c in convs)


def test_graph_input_shapes_are_static_but_batch(trt_exports):
    folder, _ = trt_exports
    for name in ("model.trt-int8.onnx", "model.trt-fp16.onnx", "model.onnx"):
        dims = onnx.load(str(folder / name)).graph.input[0].type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [1, LENGTH], name


def test_fp16_graph_for_tensorrt(trt_exports):
    folder, _ = trt_exports
    m = onnx.load(str(folder / "model.trt-fp16.onnx"))
    weights = [t for t in m.graph.initializer if len(t.dims) == 3]  # conv kernels [out, in, k]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in m.graph.node)


def test_trtexec_scripts_name_the_right_files_and_shapes(trt_exports):
    folder, _ = trt_exports
    for precision, onnx_name in (("int8", "model.trt-int8.onnx"), ("fp16", "model.trt-fp16.onnx"), ("fp32", "model.onnx")):
        script = (folder / f"trtexec-{precision}.sh").read_text()
        cmd = script.strip().splitlines()[-1]
        assert cmd.startswith("exec trtexec ")
        for arg in (f"--onnx={onnx_name}", "--stronglyTyped", f"--saveEngine=model.{precision}.engine",
                    f"--minShapes=input:1x1x{LENGTH}", f"--maxShapes=input:64x1x{LENGTH}", "--timingCacheFile="):
            assert arg in cmd, (precision, arg)
        assert "--int8" not in cmd and "--fp16" not in cmd  # strongly typed: precision comes from the graph
        assert (folder / f"trtexec-{precision}.sh").stat().st_mode & 0o111
