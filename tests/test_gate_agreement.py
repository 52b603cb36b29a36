"""The INT8 gate's agreement floor (compress/gate.py, `--gate-agreement PCT`): INT8 must give FP32's argmax on at
least that % of validation windows; below it the scan keeps nodes FP32, ranked by the agreement each restores,
and stops when the speed gain is gone; the floor reaches quantize, export and the pipeline and is recorded in the
file and the manifest."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from conftest import copy_trained

from ecgtool.compress.gate import DEFAULT_AGREEMENT, judge, scan
from ecgtool.core.errors import BadInput

CLASSES = ["Normal", "AF", "AFL", "FAB", "SB", "ST", "PVC"]


def _split(n_per_class: int = 30) -> np.ndarray:
    return np.repeat(np.arange(len(CLASSES)), n_per_class)


def test_floor_fails_on_disagreement_the_f1_limits_let_through():
    """Two Normal windows swap to AF and two AF to Normal: the F1 losses rest on 4 windows (waived by the window
    rule), agreement is 4/210 lower."""
    y = _split()
    int8 = y.copy()
    normal, af = np.flatnonzero(y == 0)[:2], np.flatnonzero(y == 1)[:2]
    int8[normal], int8[af] = 1, 0
    assert judge(y, y, int8, CLASSES).passed  # no floor (judge's default): F1 losses of 4 windows are waived
    v = judge(y, y, int8, CLASSES, agreement_floor=99)
    assert not v.passed and v.reason.startswith("fails") and "agreement >= 99 %" in v.reason
    assert any(f.startswith("agreement 98.10 % (floor 99 %): 4 of 210 windows differ") and "allows 2" in f for f in v.failures)
    assert v.excess == pytest.approx(99 - 100 * 206 / 210)  # shortfall in percentage points
    assert v.as_dict()["agreement_floor"] == 99
    assert judge(y, y, int8, CLASSES, agreement_floor=98).passed  # 98.10 % clears 98


def test_impossible_floor_on_one_window():
    y = _split()
    int8 = y.copy()
    int8[0] = 6  # one Normal window called PVC
    assert judge(y, y, int8, CLASSES, agreement_floor=99).passed  # 1 of 210 is within 99 %
    v = judge(y, y, int8, CLASSES, agreement_floor=100)
    assert not v.passed and "1 of 210 windows differ from FP32 (the floor allows 0)" in v.reason
    assert judge(y, y, y, CLASSES, agreement_floor=100).passed  # identical predictions clear even 100


def test_scan_ranks_by_agreement_restored_and_keeps_the_group(tmp_path):
    """F1 holds (waived) for every candidate; only keeping `SE gates` FP32 brings agreement to the floor, so it is ranked
    first and kept, and nothing else is."""
    y = _split()
    swapped = y.copy()
    swapped[np.flatnonzero(y == 0)[:2]], swapped[np.flatnonzero(y == 1)[:2]] = 1, 0  # 4 windows: F1 losses waived
    one_off = y.copy()
    one_off[0] = 1  # 1 window
    built: dict[str, list[str]] = {}

    def build(out, exclude):
        out.write_bytes(b"")
        built[out.name] = list(exclude)

    def predict(path):
        return one_off if "sig0" in built[path.name] else swapped

    groups = [("stem conv", ["stem0"]), ("SE gates", ["sig0", "mul0"]), ("classifier", ["fc"])]
    floor = lambda p: judge(y, y, p, CLASSES, agreement_floor=99)  # noqa: E731
    v0 = floor(swapped)
    assert not v0.passed and not [f for f in v0.failures if not f.startswith("agreement")]  # agreement alone fails
    res = scan(build, predict, floor, groups, [], tmp_path, (tmp_path / "x", v0))
    assert res["groups_fp32"] == ["SE gates"] and res["kept_fp32"] == ["sig0", "mul0"] and res["verdict"].passed
    assert res["stopped"] is None
    ranked = {s["group"]: s for s in res["scan"]}
    assert ranked["SE gates"]["agreement"] > ranked["stem conv"]["agreement"]


def test_scan_stops_when_the_speed_gain_is_gone(tmp_path):
    """Nothing restores agreement; the second candidate is no faster than FP32: the scan stops before keeping it."""
    y = _split()
    bad = y.copy()
    bad[:5] = 1
    built: dict[str, list[str]] = {}

    def build(out, exclude):
        out.write_bytes(b"")
        built[out.name] = list(exclude)

    groups = [("stem conv", ["stem0"]), ("SE gates", ["sig0"]), ("classifier", ["fc"])]
    floor = lambda p: judge(y, y, p, CLASSES, agreement_floor=100)  # noqa: E731
    v0 = floor(bad)
    res = scan(build, lambda p: bad, floor, groups, [], tmp_path, (tmp_path / "x", v0),
               too_slow=lambda p: len(built[p.name]) >= 2)
    assert res["stopped"] and res["stopped"].startswith("speed gain gone")
    assert res["path"] == tmp_path / "x" and res["kept_fp32"] == [] and not res["verdict"].passed


@pytest.fixture(scope="module")
def trained(tmp_path_factory, trained_source):
    return copy_trained(trained_source, tmp_path_factory.mktemp("agree"))


def _stem_quantised(path) -> bool:
    """Whether the first Conv of an INT8 graph has int8 (dequantised) weights."""
    g = onnx.load(str(path), load_external_data=False).graph
    dq = {o for n in g.node if n.op_type == "DequantizeLinear" for o in n.output}
    return next(n for n in g.node if n.op_type == "Conv").input[1] in dq


@pytest.fixture
def stem_flips_one_window(monkeypatch):
    """A model that disagrees with FP32 on one validation window while its stem conv is INT8 (the first window's
    logits are rolled by one class), as a real stem-sensitive model would: quantise() predicts through this."""
    import ecgtool.compress.quantize as q

    real = q.onnx_logits

    def logits(path, signals, idx, threads, desc, optimize=True):
        out = real(path, signals, idx, threads, desc, optimize)
        if desc == "int8 gate" and _stem_quantised(path):
            out = out.copy()
            out[0] = np.roll(out[0], 1)
        return out

    monkeypatch.setattr(q, "onnx_logits", logits)


def test_impossible_floor_keeps_the_stem_fp32_and_is_recorded(trained, tmp_path, stem_flips_one_window, monkeypatch):
    from ecgtool.compress import quantize as q
    from ecgtool.core.files import read_json

    # the scan's speed check times a width-8 model on a shared CPU: a candidate "no faster than FP32" by noise
    # stopped the scan before the stem was kept (seen once in 3 runs); the check's own logic has its test below
    monkeypatch.setattr(q, "latency_ratio", lambda a, b, *args, **kw: 0.5)
    from ecgtool.core.names import ONNX_META_INT8_GATE
    from ecgtool.export.int8 import quantize_folder

    folder, data = trained
    r = quantize_folder(folder, data, target="x86-vnni", calib_size=21, calib_dir=tmp_path, gate_agreement=100,
                        gate_macro=100, gate_class=100)  # F1 limits that cannot fail: agreement alone decides
    out = folder / "model.int8.onnx"
    g = r["gate"]
    assert g["agreement_floor"] == 100 and g["before"]["agreement_floor"] == 100
    assert not g["before"]["passed"] and "agreement" in g["before"]["reason"]
    assert g["groups_fp32"][0] == "stem conv" and not _stem_quantised(out)  # ranked first by agreement restored
    stamped = json.loads({p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
                         [ONNX_META_INT8_GATE])
    assert stamped["agreement_floor"] == 100 and stamped["passed"] == g["passed"]
    assert stamped["agreement"] == g["after"]["agreement"]
    entry = read_json(folder.parent / "manifest.json")["artifacts"]["se_resnet18/model.int8.onnx"]
    assert entry["gate"]["agreement_floor"] == 100


@pytest.mark.slow  # scans and rebuilds every group (~40 s under load); the failing side is also in the judge tests above
def test_impossible_floor_everywhere_fails_the_gate(trained, tmp_path, monkeypatch):
    """Every INT8 candidate disagrees on one window: a floor of 100 cannot hold; the gate fails with the reason."""
    import ecgtool.compress.quantize as q
    from ecgtool.export.int8 import quantize_folder

    real = q.onnx_logits

    def logits(path, signals, idx, threads, desc, optimize=True):
        out = real(path, signals, idx, threads, desc, optimize)
        if desc == "int8 gate":
            out = out.copy()
            out[0] = np.roll(out[0], 1)
        return out

    monkeypatch.setattr(q, "onnx_logits", logits)
    folder, data = trained
    r = quantize_folder(folder, data, out=tmp_path / "f.onnx", target="x86-vnni", calib_size=21, calib_dir=tmp_path,
                        gate_agreement=100, gate_macro=100, gate_class=100)
    g = r["gate"]
    assert not g["passed"] and g["scan"] and "the floor allows 0" in g["reason"]


def test_option_on_quantize_export_and_pipeline(trained, tmp_path):
    from ecgtool.cli.main import main
    from ecgtool.pipeline.run import load_config

    folder, data = trained
    res = CliRunner().invoke(main, ["quantize", str(folder), "--data", str(data), "--gate-agreement", "101",
                                    "--calib-dir", str(tmp_path)])
    assert res.exit_code == 2 and "--gate-agreement 101" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["quantize", str(folder), "--data", str(data), "--target", "x86-vnni",
                                    "--calib-size", "21", "--calib-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert f"(floor {DEFAULT_AGREEMENT:g} %)" in res.output and f"agreement >= {DEFAULT_AGREEMENT:g} %" in res.output
    res = CliRunner().invoke(main, ["export", str(folder), "--format", "onnx-int8", "--data", str(data),
                                    "--gate-agreement", "97.5", "--calib-size", "21", "--calib-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    props = {p.key: p.value for p in onnx.load(str(folder / "model.int8.onnx"), load_external_data=False).metadata_props}
    assert json.loads(props["ecgtool.int8_gate"])["agreement_floor"] == 97.5
    assert load_config({"quantize": {"gate_agreement": 99.5}})["quantize"]["gate_agreement"] == 99.5
    with pytest.raises(BadInput, match="quantize.gate_agreement"):
        load_config({"quantize": {"gate_agreement": 150}})
    with pytest.raises(BadInput, match="quantize.gate_agreement"):
        load_config({"quantize": {"gate_agreement": "high"}})


def test_pipeline_gives_the_cpu_target_to_onnx_int8_and_not_to_tensorrt_int8(tmp_path, monkeypatch):
    """quantize: {target: x86-avx2, gate_agreement: 99}: onnx-int8 gets both; tensorrt-int8 (its own form) the floor
    only (a CPU target there was refused with BadInput and the row skipped)."""
    from types import SimpleNamespace

    import ecgtool.export as ex
    import ecgtool.pipeline.run as pr

    calls = []
    monkeypatch.setattr(ex, "export", lambda folder, fmt, **o: calls.append((fmt, o)) or SimpleNamespace(files=[]))
    monkeypatch.setattr(pr, "_compressed", lambda cfg, out: [tmp_path / "m"])
    pr._export_all({}, tmp_path, ["onnx-int8", "tensorrt-int8"], {"target": "x86-avx2", "gate_agreement": 99})
    got = {fmt: {k: v for k, v in o.items() if k != "data"} for fmt, o in calls}
    assert got == {"onnx-int8": {"target": "x86-avx2", "gate_agreement": 99}, "tensorrt-int8": {"gate_agreement": 99}}


def test_latency_ratio_feeds_every_graph_input(tmp_path):
    """The scan's latency check runs graphs with a second input (an RR-head model's rr_features): it used to
    feed only the first and ONNX Runtime refused the call ('Required inputs ... missing')."""
    import onnx
    from onnx import TensorProto, helper

    from ecgtool.compress.gate import latency_ratio

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 16])
    rr = helper.make_tensor_value_info("rr_features", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1])
    nodes = [helper.make_node("ReduceMean", ["input"], ["a"], axes=[1, 2], keepdims=0),
             helper.make_node("ReduceMean", ["rr_features"], ["b"], axes=[1], keepdims=1),
             helper.make_node("Add", ["a", "b"], ["logits"])]
    model = helper.make_model(helper.make_graph(nodes, "two_inputs", [x, rr], [y]),
                              opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "two.onnx"
    onnx.save(model, path)
    ratio = latency_ratio(path, path, runs=5)
    assert 0 < ratio < 100
