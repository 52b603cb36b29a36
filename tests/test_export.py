"""Export: ONNX parity for every registered model, the format table, checks in manifest.json, bad input."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from conftest import copy_trained
from tiny_dataset import LENGTH

from ecgtool import __version__, runtime
from ecgtool.core.files import read_json, sha256
from ecgtool.cli.main import main
from ecgtool.core.errors import BadInput
from ecgtool.export.formats import FORMATS
from ecgtool.export import export, torch2onnx
from ecgtool.models import get_model, list_models, save_model
from ecgtool.runtime.onnxruntime import read_metadata


@pytest.fixture(scope="module")
def trained(tmp_path_factory, trained_source):
    return copy_trained(trained_source, tmp_path_factory.mktemp("export"))


@pytest.mark.parametrize("name", list_models())
def test_onnx_parity_every_registered_model(name, tmp_path):
    torch.manual_seed(0)
    model = get_model(name, width=8, extra={"input_length": 128}).eval()
    folder = save_model(tmp_path / name, model)
    path = torch2onnx(folder)
    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"  # dynamic batch axis
    x = np.random.default_rng(0).standard_normal((3, 1, 128)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = runtime.load(path).predict(x)
    assert got.shape == (3, 7) and np.isfinite(got).all()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(ref).max()))


def test_format_table_names_every_cli_format():
    assert set(FORMATS) == {"onnx", "onnx-int8", "onnx-fp16", "openvino-fp32", "openvino-bf16", "openvino-int8",
                            "tensorrt-fp32", "tensorrt-fp16", "tensorrt-int8", "litert-int8", "litert-fp32"}
    for f in FORMATS.values():  # a graph: the ONNX a TensorRT engine is built from, or the QDQ an OpenVINO INT8 IR is read from
        assert (f.runtime == "tensorrt") == (f.target == "tensorrt")
        assert (f.graph is not None) == (f.runtime == "tensorrt" or f.name == "openvino-int8")


def test_exports_are_checked_and_recorded(trained):
    folder, data = trained
    for fmt in ("onnx", "onnx-fp16", "openvino-fp32", "openvino-bf16"):
        res = export(folder, fmt, data=data)
        assert res.path == folder / FORMATS[fmt].artifact and res.path.exists()
        assert res.check["inputs"].startswith("test split, 28 records")
        if fmt == "openvino-bf16":  # 8-bit mantissa: a barely trained net's small logit margins may flip a record
            assert res.check["argmax_agreement"] >= 0.9 and res.check["max_abs_diff"] < 0.5, res.check
        else:
            assert res.check["status"] == "ok", (fmt, res.check)
    manifest = read_json(folder.parent / "manifest.json")["artifacts"]
    for rel in ("se_resnet18/model.onnx", "se_resnet18/model.fp16.onnx", "se_resnet18/openvino-fp32/model.xml",
                "se_resnet18/openvino-fp32/model.bin", "se_resnet18/openvino-bf16/model.xml"):
        entry = manifest[rel]
        assert entry["sha256"] == sha256(folder.parent / rel)
        assert entry["size_bytes"] == (folder.parent / rel).stat().st_size
    assert manifest["se_resnet18/model.onnx"]["parent"] == "se_resnet18/model.safetensors"
    assert manifest["se_resnet18/model.fp16.onnx"]["parent"] == "se_resnet18/model.onnx"
    assert manifest["se_resnet18/model.onnx"]["check"]["max_abs_diff"] < 1e-4
    assert manifest["se_resnet18/openvino-bf16/model.xml"]["check"]["precision"] == "bf16"
    config = read_json(folder / "config.json")
    for rel in ("model.onnx", "model.fp16.onnx"):  # the spec, the ecgtool version and the source's SHA-256
        meta = read_metadata(folder / rel)
        assert meta["config"]["preprocessing"] == meta["preprocessing"] == config["preprocessing"]
        assert meta["preprocessing"]["window_len"] == LENGTH
        assert meta["version"] == __version__ and meta["source_sha256"] == sha256(folder / "model.safetensors")
    sidecar = json.loads((folder / "openvino-bf16" / "ecgtool-openvino.json").read_text())
    assert sidecar["compile"]["INFERENCE_PRECISION_HINT"] == "bf16"


def test_fp16_graph_keeps_float32_io(trained):
    folder, data = trained
    path = export(folder, "onnx-fp16", data=data).path
    m = onnx.load(str(path))
    conv_weights = {n.input[1] for n in m.graph.node if n.op_type == "Conv"}
    types = {t.name: t.data_type for t in m.graph.initializer}
    assert conv_weights and all(types[w] == onnx.TensorProto.FLOAT16 for w in conv_weights if w in types)
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_export_without_data_checks_on_random_inputs(tmp_path):
    torch.manual_seed(0)
    folder = save_model(tmp_path / "m", get_model("resnet18", width=8, extra={"input_length": LENGTH}).eval())
    res = export(folder, "onnx")
    assert "random-normal inputs" in res.check["inputs"] and res.check["status"] == "ok"


@pytest.mark.parametrize("args, needle", [
    (["--format", "tflite"], "tflite: unknown format"),
    (["--format", "onnx", "--method", "entropy"], "--method do not apply"),
    (["--format", "onnx-int8"], "INT8 needs --data"),
])
def test_bad_usage_exits_2_with_one_line(trained, args, needle):
    folder, _ = trained
    before = sorted(p.name for p in folder.iterdir())
    r = CliRunner().invoke(main, ["export", str(folder), *args])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("ecgtool: error")]
    assert len(lines) == 1 and needle in lines[0]
    if "INT8" not in needle:
        assert sorted(p.name for p in folder.iterdir()) == before  # nothing written


def test_wrong_artifact_kind_and_bad_dataset_exit_2(trained, tmp_path):
    folder, data = trained
    onnx_path = export(folder, "onnx").path
    r = CliRunner().invoke(main, ["export", str(onnx_path), "--format", "onnx-fp16"])
    assert r.exit_code == 2 and "onnxruntime artifact" in r.stderr and str(onnx_path) in r.stderr
    (tmp_path / "notdata").mkdir()
    r = CliRunner().invoke(main, ["export", str(folder), "--format", "onnx", "--data", str(tmp_path / "notdata")])
    assert r.exit_code == 2 and "not a prepared dataset" in r.stderr
    with pytest.raises(BadInput, match="opset 13"):
        torch2onnx(folder, tmp_path / "x.onnx", opset=13)
    assert not (tmp_path / "x.onnx").exists()


def test_cli_export_prints_check(trained):
    folder, data = trained
    r = CliRunner().invoke(main, ["export", str(folder), "--format", "onnx", "--data", str(data), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "model.onnx" in r.stdout and "argmax agreement 100.00%" in r.stdout
