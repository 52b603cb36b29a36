"""`--keep-fp32 GROUP` (compress/gate.py KEEP_FP32_GROUPS): node groups kept FP32 from the start, resolved through
gate.candidate_groups on the FP32 graph, on `quantize`, the INT8 exports and the pipeline key `quantize.keep_fp32`;
recorded in the file's form label, gate metadata and FP32 node list."""

from __future__ import annotations

import json

import onnx
import pytest
from click.testing import CliRunner
from conftest import copy_trained
from onnx import TensorProto, helper

from ecgtool.compress.gate import candidate_groups, keep_fp32_names, keep_fp32_nodes
from ecgtool.compress.targets import form_for
from ecgtool.core.errors import BadInput


@pytest.fixture(scope="module")
def trained(tmp_path_factory, trained_source):
    return copy_trained(trained_source, tmp_path_factory.mktemp("keep"))


def _plain_graph(path):
    """A ResNet-like graph without squeeze-and-excitation: Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 1, 3], [0.1] * 12)
    fc = helper.make_tensor("fc", TensorProto.FLOAT, [4, 2], [0.1] * 8)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="stem"), helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"), helper.make_node("Gemm", ["f", "fc"], ["y"], name="head")]
    g = helper.make_graph(nodes, "plain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w, fc])
    onnx.save(helper.make_model(g), str(path))
    return path


def _props(path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def _float_weights(path, names) -> list[str]:
    """The Conv/Gemm nodes of `names` in a QDQ graph whose weights are float initialisers, not dequantised int8."""
    g = onnx.load(str(path), load_external_data=False).graph
    dq = {o for n in g.node if n.op_type == "DequantizeLinear" for o in n.output}
    inits = {t.name for t in g.initializer}
    return [n.name for n in g.node if n.name in names and n.op_type in ("Conv", "Gemm", "MatMul")
            and n.input[1] in inits and n.input[1] not in dq]


def test_names_resolve_and_refuse():
    assert keep_fp32_names(["classifier", "stem"]) == ("stem", "classifier")  # table order
    assert keep_fp32_names(["stem", "suspects"]) == ("suspects",)
    assert keep_fp32_names(["none"]) == () and keep_fp32_names(None) == ()
    with pytest.raises(BadInput, match=r"--keep-fp32 stems: unknown node group \(choose from stem, se-gates"):
        keep_fp32_names(["stems"])
    with pytest.raises(BadInput, match="--keep-fp32 none: given with stem"):
        keep_fp32_names(["none", "stem"])
    _, form = form_for("x86-vnni", keep_fp32=["classifier", "stem"])
    assert form.keep_fp32 == ("stem", "classifier") and form.label == "u8s8-asym-pc+fp32:stem,classifier"
    assert form_for("x86-vnni", keep_fp32=["suspects"])[1].label == "u8s8-asym-pc+fp32:suspects"
    assert form_for("x86-vnni")[1].label == "u8s8-asym-pc"


def test_group_without_nodes_is_one_line(tmp_path):
    path = _plain_graph(tmp_path / "plain.onnx")
    assert [g for g, _ in candidate_groups(path)] == ["stem conv", "classifier"]
    with pytest.raises(BadInput) as exc:
        keep_fp32_nodes(path, ["se-gates"])
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg and "--keep-fp32 se-gates: no SE gates node in this graph" in msg
    assert "its groups: stem, classifier" in msg
    assert keep_fp32_nodes(path, ["suspects"]) == (["stem conv", "classifier"], ["stem", "head"])  # whichever exist
    assert keep_fp32_nodes(path, ["stem"]) == (["stem conv"], ["stem"])


def _rr_graph(path):
    """The plain graph with a second input joined before the classifier, as `--rr-head` builds it: rr -> Mul ->
    Concat(trunk, rr) -> Gemm."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 1, 3], [0.1] * 12)
    k = helper.make_tensor("k", TensorProto.FLOAT, [1, 3], [0.5] * 3)
    fc = helper.make_tensor("fc", TensorProto.FLOAT, [7, 2], [0.1] * 14)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="stem"), helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"), helper.make_node("Mul", ["rr", "k"], ["m"], name="rr_norm"),
             helper.make_node("Concat", ["f", "m"], ["j"], name="join", axis=1),
             helper.make_node("Gemm", ["j", "fc"], ["y"], name="head")]
    g = helper.make_graph(nodes, "rr", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 16]),
                                        helper.make_tensor_value_info("rr", TensorProto.FLOAT, [1, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w, k, fc])
    onnx.save(helper.make_model(g), str(path))
    return path


def test_rr_fusion_group_is_the_path_from_the_rr_input_to_the_classifier(tmp_path):
    rr = _rr_graph(tmp_path / "rr.onnx")
    assert dict(candidate_groups(rr))["RR fusion"] == ["rr_norm", "join", "head"]
    assert keep_fp32_nodes(rr, ["rr-fusion"]) == (["RR fusion"], ["rr_norm", "join", "head"])
    with pytest.raises(BadInput, match="--keep-fp32 rr-fusion: no RR fusion node in this graph"):
        keep_fp32_nodes(_plain_graph(tmp_path / "plain.onnx"), ["rr-fusion"])
    # a second input that reaches no Concat is not an RR head: no group (not the rest of the graph kept FP32)
    g = onnx.load(str(rr))
    join = next(n for n in g.graph.node if n.op_type == "Concat")
    join.op_type = "Add"
    onnx.save(g, str(tmp_path / "add.onnx"))
    assert "RR fusion" not in dict(candidate_groups(tmp_path / "add.onnx"))


def test_kept_nodes_stay_float_and_are_recorded(trained, tmp_path):
    from ecgtool.core.files import read_json
    from ecgtool.export.int8 import quantize_folder

    folder, data = trained
    out = folder / "model.int8.onnx"  # in the run: recorded in its manifest
    r = quantize_folder(folder, data, target="x86-vnni", calib_size=21, calib_dir=tmp_path,
                        keep_fp32=["se-fc", "stem"], gate=False)
    fp32 = folder / "model.onnx"
    groups = dict(candidate_groups(fp32))
    kept = groups["stem conv"] + groups["SE fc"]
    assert r["keep_fp32_groups"] == ["stem conv", "SE fc"] and r["keep_fp32_nodes"] == kept
    assert sorted(_float_weights(out, kept)) == sorted(kept)  # really float weights in the QDQ graph
    assert not _float_weights(out, groups["classifier"])  # the others are quantised
    plain = tmp_path / "plain.onnx"
    quantize_folder(folder, data, out=plain, target="x86-vnni", calib_size=21, calib_dir=tmp_path, gate=False)
    assert not _float_weights(plain, kept)  # without the option they are int8
    props = _props(out)
    assert props["ecgtool.int8_form"] == "u8s8-asym-pc+fp32:stem,se-fc"
    assert set(kept) <= set(json.loads(props["ecgtool.int8_fp32_nodes"]))
    entry = read_json(folder.parent / "manifest.json")["artifacts"]["se_resnet18/model.int8.onnx"]
    assert entry["int8_form"] == "u8s8-asym-pc+fp32:stem,se-fc" and entry["quantization"]["keep_fp32"] == ["stem", "se-fc"]


def test_gate_works_on_top_and_bench_columns_show_it(trained, tmp_path):
    from ecgtool.bench.int8 import int8_columns
    from ecgtool.export.int8 import quantize_folder

    folder, data = trained
    out = tmp_path / "gated.onnx"
    r = quantize_folder(folder, data, out=out, target="x86-vnni", calib_size=21, calib_dir=tmp_path,
                        keep_fp32=["classifier"])
    head = dict(candidate_groups(folder / "model.onnx"))["classifier"]
    assert r["gate"]["keep_fp32"] == ["classifier"] and r["gate"]["keep_fp32_groups"] == ["classifier"]
    assert all(set(s["nodes"]).isdisjoint(head) for s in r["gate"]["scan"])  # the scan does not re-try them
    stamped = json.loads(_props(out)["ecgtool.int8_gate"])
    assert stamped["keep_fp32"] == ["classifier"]
    cols = int8_columns(out)
    assert cols["int8_form"] == "u8s8-asym-pc+fp32:classifier" and cols["int8_fp32_nodes"] >= len(head)


def test_cli_export_and_pipeline(trained, tmp_path):
    from ecgtool.cli.main import main
    from ecgtool.pipeline.run import load_config

    folder, data = trained
    res = CliRunner().invoke(main, ["quantize", str(folder), "--data", str(data), "--keep-fp32", "stemm",
                                    "--calib-dir", str(tmp_path)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert res.output.strip().count("\n") == 0 and "--keep-fp32 stemm: unknown node group" in res.output
    res = CliRunner().invoke(main, ["export", str(folder), "--format", "onnx-int8", "--data", str(data), "--target",
                                    "x86-vnni", "--keep-fp32", "stem", "--no-gate", "--calib-size", "21",
                                    "--calib-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    out = folder / "model.int8.onnx"
    assert _props(out)["ecgtool.int8_form"] == "u8s8-asym-pc+fp32:stem"
    stem = dict(candidate_groups(folder / "model.onnx"))["stem conv"]
    assert _float_weights(out, stem) == stem
    assert load_config({"quantize": {"keep_fp32": ["stem", "suspects"]}})["quantize"]["keep_fp32"] == ["stem", "suspects"]
    with pytest.raises(BadInput, match="quantize.keep_fp32"):
        load_config({"quantize": {"keep_fp32": ["stems"]}})
    with pytest.raises(BadInput, match="quantize.keep_fp32"):
        load_config({"quantize": {"keep_fp32": "stem"}})  # a list, as every list key


def test_pipeline_keep_fp32_is_narrowed_per_graph(tmp_path, monkeypatch, capsys):
    """quantize.keep_fp32 is run-wide: a plain ResNet has no SE gates, so its INT8 is built without them (one line
    says so) instead of refused; groups it has are kept; `suspects` and `none` pass through unchanged."""
    import ecgtool.export.int8 as int8
    from ecgtool.core.ui import set_quiet
    from ecgtool.pipeline.run import _keep_fp32_for

    set_quiet(False)  # an earlier test's `--quiet` would otherwise silence the line checked below
    plain = _plain_graph(tmp_path / "plain.onnx")
    monkeypatch.setattr(int8, "ensure_onnx", lambda folder, opts, files: plain)
    folder = tmp_path / "resnet18"
    assert _keep_fp32_for(folder, "onnx-int8", ["se-gates"], tmp_path) == ["none"]
    err = capsys.readouterr().err
    assert "resnet18 onnx-int8: quantize.keep_fp32 se-gates: not in this graph" in err
    assert "its groups: stem, classifier" in err
    assert _keep_fp32_for(folder, "onnx-int8", ["se-gates", "classifier"], tmp_path) == ["classifier"]
    assert "se-gates: not in this graph" in capsys.readouterr().err
    assert _keep_fp32_for(folder, "onnx-int8", ["stem"], tmp_path) == ["stem"]
    assert "not in this graph" not in capsys.readouterr().err
    assert _keep_fp32_for(folder, "onnx-int8", ["suspects"], tmp_path) == ["suspects"]
    assert _keep_fp32_for(folder, "onnx-int8", ["none"], tmp_path) == ["none"]
