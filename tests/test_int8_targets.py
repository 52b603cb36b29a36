"""INT8 per target CPU: the form table, CPUID detection, metadata and manifest, the accuracy gate, the name of the
calibration file, and (slow) the x86-avx2 form under `qemu-x86_64 -cpu Haswell`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from conftest import REPO, copy_trained

from ecgtool.compress.calibration import calibration_set
from ecgtool.compress.gate import candidate_groups, judge
from ecgtool.compress.targets import FORMS, detect_target, form_for
from ecgtool.core.errors import BadInput
from ecgtool.core.files import read_json
from ecgtool.core.names import ONNX_META_INT8_FORM, ONNX_META_INT8_FP32_NODES, ONNX_META_INT8_TARGET
from ecgtool.compress.quantize import qdq_properties
from ecgtool.export.int8 import quantize_folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory, trained_source):
    return copy_trained(trained_source, tmp_path_factory.mktemp("int8t"))


def _props(path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def test_form_table_follows_ort_guidance():
    assert FORMS["x86-avx2"].reduce_range and not FORMS["x86-vnni"].reduce_range
    assert FORMS["x86-avx2"].activation == "u8" and not FORMS["x86-avx2"].symmetric
    t = FORMS["tensorrt"]
    assert t.activation == "s8" and t.symmetric and not t.quantize_bias and not t.reduce_range
    assert form_for("x86-vnni", per_channel=False)[1].label == "u8s8-asym-pt"
    with pytest.raises(BadInput, match="unknown INT8 target"):
        form_for("riscv")


def test_detection_reads_cpuid_not_the_hosts_proc_cpuinfo():
    host = {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"}  # what qemu-user passes through
    haswell = {"AVX2": True, "AVX512F": False, "AVX512VNNI": False}
    assert detect_target(haswell, host, "x86_64") == "x86-avx2"  # /proc/cpuinfo disagrees with CPUID: ignored
    assert detect_target({"AVX2": True, "AVX512VNNI": True}, host, "x86_64") == "x86-vnni"
    assert detect_target({"AVX2": True, "AVX512VNNI": False}, {"avx2", "avx_vnni"}, "x86_64") == "x86-vnni"  # Alder Lake
    assert detect_target({"AVX2": False}, set(), "x86_64") == "x86-avx2"  # SSE only: the safe form
    assert detect_target({}, set(), "aarch64") == "arm64"
    assert detect_target() in FORMS  # this machine


def test_judge_gate_in_points():
    y = np.array([0, 0, 1, 1, 2, 2])
    v = judge(y, y, np.array([0, 0, 1, 1, 2, 1]), ["a", "b", "c"], min_windows=0)  # points alone (window rule: test_gate)
    assert not v.passed and v.worst_class[0] == "c" and v.macro_loss_points > 0.5
    assert judge(y, y, y, ["a", "b", "c"]).passed
    assert judge(y, y, y, ["a", "b", "c"], macro_points=-1, min_windows=0).passed is False  # a negative limit forces a scan


def test_calibration_file_named_by_records_held(trained, tmp_path):
    _, data = trained
    cs = calibration_set(data, size=100000, seed=0, calib_dir=tmp_path)
    held = len(cs.labels)
    assert held < 100000 and cs.path.name.split("-n")[1].startswith(f"{held}-") and cs.meta["size"] == 100000
    assert cs.meta["records"] == held


def test_target_recorded_in_metadata_and_manifest(trained, tmp_path):
    folder, data = trained
    r = quantize_folder(folder, data, target="x86-avx2", calib_size=42, calib_dir=tmp_path, gate_macro=50, gate_class=100)
    out = folder / "model.int8.onnx"
    props = _props(out)
    assert props[ONNX_META_INT8_TARGET] == "x86-avx2" and props[ONNX_META_INT8_FORM] == "u8s8-asym-pc-rr"
    assert json.loads(props[ONNX_META_INT8_FP32_NODES]) == []
    entry = read_json(folder.parent / "manifest.json")["artifacts"]["se_resnet18/model.int8.onnx"]
    assert entry["int8_target"] == "x86-avx2" and entry["gate"]["passed"] and entry["quantization"]["reduce_range"]
    assert r["top1_agreement"] >= 0.9


def test_tensorrt_target_writes_trt_graph_evaluated_simulated(trained, tmp_path):
    folder, data = trained
    r = quantize_folder(folder, data, target="tensorrt", calib_size=21, calib_dir=tmp_path, gate=False)
    assert r["path"].endswith("model.trt-int8.onnx") and r["evaluated"] == "simulated-qdq"
    assert r["qdq"]["tensorrt_ready"] and _props(r["path"])[ONNX_META_INT8_TARGET] == "tensorrt"


def test_tensorrt_form_runs_simulated_everywhere_and_is_not_packaged(trained, tmp_path):
    """`evaluate`, `predict` and every load() of a TensorRT-form file compute TensorRT's arithmetic (the QDQ graph
    unoptimised, bench's simulated-qdq), not ONNX Runtime's fused s8 kernels; `package` refuses the file."""
    from click.testing import CliRunner

    from ecgtool.cli.main import main as cli
    from ecgtool.core.ui import set_quiet
    from ecgtool.data.dataset import load_dataset
    from ecgtool.evaluate.artifact import evaluate_artifact
    from ecgtool.runtime import load
    from ecgtool.runtime.onnxruntime import OnnxRuntimePredictor

    folder, data = trained
    path = quantize_folder(folder, data, target="tensorrt", calib_size=21, calib_dir=tmp_path, gate=False)["path"]
    x = np.asarray(load_dataset(data).signals[:16], np.float32)
    p = load(path, threads=1)
    assert not p.optimize and p.f1_source == "simulated-qdq" and "TensorRT computes" in p.note
    sim = OnnxRuntimePredictor(path, threads=1, optimize=False).predict(x)
    assert np.array_equal(p.predict(x), sim)
    fused = load(path, threads=1, optimize=True)  # asked for explicitly: ORT's own kernels, and the note says so
    assert fused.f1_source is None and "not what TensorRT computes" in fused.note
    m = evaluate_artifact(path, data, threads=1)
    assert m["f1_source"] == "simulated-qdq"
    plain = evaluate_artifact(folder / "model.onnx", data, threads=1)
    assert plain["f1_source"] is None
    set_quiet(False)
    r = CliRunner().invoke(cli, ["package", str(path), "--out", str(tmp_path / "bundle")])
    assert r.exit_code == 2 and "quantised for TensorRT" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "bundle").exists()


def test_target_note_names_a_cpu_mismatch(trained, tmp_path, monkeypatch):
    """A file quantised for a VNNI or ARM CPU scored on x86 without VNNI gets one warning line (its F1 there is
    this CPU's saturating arithmetic, not the target's); this machine's own form gets none."""
    from click.testing import CliRunner

    import ecgtool.runtime.onnxruntime as targets
    from ecgtool.cli.main import main as cli
    from ecgtool.core.ui import set_quiet

    assert targets.target_note("x86-vnni", here="x86-avx2") and targets.target_note("arm64", here="x86-avx2")
    assert targets.target_note("x86-vnni", here="x86-vnni") == targets.target_note("x86-avx2", here="x86-avx2") == ""
    assert targets.target_note("x86-avx2", here="arm64") == ""
    folder, data = trained
    out = tmp_path / "vnni.onnx"
    quantize_folder(folder, data, out=out, target="x86-vnni", calib_size=21, calib_dir=tmp_path, gate=False)
    set_quiet(False)
    monkeypatch.setattr(targets, "detect_target", lambda: "x86-avx2")
    r = CliRunner().invoke(cli, ["evaluate", str(out), "--data", str(data), "--threads", "1"])
    assert r.exit_code == 0 and "warning:" in r.output and "quantised for x86-vnni; this CPU is x86-avx2" in r.output
    monkeypatch.setattr(targets, "detect_target", lambda: "x86-vnni")
    r = CliRunner().invoke(cli, ["evaluate", str(out), "--data", str(data), "--threads", "1"])
    assert r.exit_code == 0 and "quantised for" not in r.output


def test_forced_gate_scans_and_keeps_nodes_fp32(trained, tmp_path):
    folder, data = trained
    out = tmp_path / "gated.onnx"
    r = quantize_folder(folder, data, out=out, target="x86-vnni", calib_size=21, calib_dir=tmp_path, gate_macro=-1,
                        gate_class=-1, gate_min_windows=0)  # no INT8 can lose less than -1 point: every group gets scanned
    groups = dict(candidate_groups(folder / "model.onnx"))
    assert len(groups["stem conv"]) == 1 and len(groups["SE gates"]) >= 2 and groups["classifier"]
    g = r["gate"]
    assert not g["before"]["passed"] and not g["passed"]
    assert {s["group"] for s in g["scan"]} == set(groups)  # every suspect quantised away once, verdict recorded
    assert all("macro_loss_points" in s and "agreement" in s for s in g["scan"])
    assert set(g["kept_fp32"]) <= {n for nodes in groups.values() for n in nodes}
    excess = lambda v: max(v["macro_loss_points"] + 1, v["worst_class_loss_points"] + 1)  # noqa: E731
    assert excess(g["after"]) <= excess(g["before"])  # never worse than the ungated file
    assert json.loads(_props(out)[ONNX_META_INT8_FP32_NODES]) == r["exclude"] == g["kept_fp32"]
    dq_out = {o for n in onnx.load(str(out)).graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    kept = [n for n in onnx.load(str(out)).graph.node if n.name in g["kept_fp32"] and n.op_type == "Conv"]
    assert all(n.input[1] not in dq_out for n in kept)  # kept convs have float weights


def test_scan_keeps_most_sensitive_group_until_the_gate_holds(tmp_path):
    """The scan's selection on real verdicts: only the "stem" exclusion repairs class 2, so stem alone is kept."""
    y = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    bad = np.array([0, 0, 1, 1, 2, 2, 1, 1])  # the quantised model confuses class 2
    built: dict[str, list[str]] = {}

    def build(out, exclude):
        out.write_bytes(b"")
        built[out.name] = list(exclude)

    def predict(path):
        return y if "stem0" in built[path.name] else bad

    from ecgtool.compress.gate import scan

    groups = [("SE gates", ["sig0", "mul0"]), ("stem conv", ["stem0"]), ("classifier", ["fc"])]
    v0 = judge(y, y, bad, ["a", "b", "c"], min_windows=0)
    points = lambda p: judge(y, y, p, ["a", "b", "c"], min_windows=0)  # noqa: E731 (points alone: 8 windows)
    res = scan(build, predict, points, groups, [], tmp_path, (tmp_path / "x", v0))
    assert res["groups_fp32"] == ["stem conv"] and res["kept_fp32"] == ["stem0"] and res["verdict"].passed
    useless = [("SE gates", ["sig0"])]  # buys nothing: the ungated file is kept, no FP32 nodes
    res = scan(build, predict, points, useless, [], tmp_path, (tmp_path / "x", v0))
    assert res["kept_fp32"] == [] and res["path"] == tmp_path / "x" and not res["verdict"].passed


QEMU_EVAL = """
import sys, numpy as np, onnxruntime as ort
o = ort.SessionOptions(); o.intra_op_num_threads = 1
x = np.load(sys.argv[1])
for p in sys.argv[2:]:
    s = ort.InferenceSession(p, sess_options=o, providers=["CPUExecutionProvider"])
    np.save(p + ".npy", np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(len(x))]))
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="qemu-x86_64 not on PATH (Debian: apt-get install qemu-user)")
def test_x86_avx2_form_agrees_under_haswell_emulation(trained, tmp_path):
    """Under an emulated AVX2-only CPU (no VNNI), the x86-avx2 form (reduce_range) agrees with FP32 on >= 99 %."""
    from ecgtool.data.dataset import load_dataset

    folder, data = trained
    avx2 = tmp_path / "avx2.onnx"
    quantize_folder(folder, data, out=avx2, target="x86-avx2", calib_size=42, calib_dir=tmp_path, gate=False)
    ds = load_dataset(data)
    x = np.ascontiguousarray(ds.signals[np.sort(ds.indices("test"))][:100], dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "ev.py").write_text(QEMU_EVAL)
    probe = subprocess.run(["qemu-x86_64", "-cpu", "Haswell", sys.executable, "-c",
                            "import sys; sys.path.insert(0, sys.argv[1]); from ecgtool.compress.targets import "
                            "detect_target; print(detect_target())", str(REPO / "toolkit")],
                           capture_output=True, text=True, timeout=600)
    assert probe.stdout.strip() == "x86-avx2"  # CPUID inside the guest: AVX2, no VNNI
    subprocess.run(["qemu-x86_64", "-cpu", "Haswell", sys.executable, str(tmp_path / "ev.py"), str(tmp_path / "x.npy"),
                    str(avx2)], check=True, capture_output=True, timeout=900)
    import onnxruntime as ort

    s = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    fp32 = s.run(None, {s.get_inputs()[0].name: x})[0].argmax(1)
    emulated = np.load(str(avx2) + ".npy").argmax(1)
    assert np.mean(emulated == fp32) >= 0.99


@pytest.mark.parametrize("quantizer,target", [("qdq", "x86-vnni"), ("qdq", "x86-avx2"), ("nncf", "x86-vnni"),
                                              ("nncf", "x86-avx2")])
def test_openvino_int8_never_converts_the_u8_graph(trained, quantizer, target):
    """OpenVINO reads the symmetric QDQ graph: TensorRT's where the CPU has VNNI, its own with 7-bit weights for
    x86-avx2 (OpenVINO's int8 kernels saturate there too); NNCF gets the OverflowFix of the target. The form
    reaches bench's columns through the IR's sidecar."""
    from ecgtool.bench.int8 import int8_columns
    from ecgtool.core.names import OPENVINO_SIDECAR
    from ecgtool.export import export
    from ecgtool.export.openvino import nncf_available

    if quantizer == "nncf" and not nncf_available():
        pytest.skip("NNCF not installed (extra [nncf])")
    folder, data = trained
    r = export(folder, "openvino-int8", data=data, calib_size=42, calib_dir=folder.parent / "calib", ov_quantizer=quantizer,
               target=target, **({"gate": False} if quantizer == "qdq" else {}))
    xml = folder / "openvino-int8" / "model.xml"
    side = read_json(xml.parent / OPENVINO_SIDECAR)
    cols = int8_columns(xml)
    if quantizer == "qdq" and target == "x86-vnni":
        assert side["source"] == "model.trt-int8.onnx" and "quantizer" not in side
        assert cols["int8_target"] == "tensorrt" and cols["int8_form"] == "s8s8-sym-pc-fbias"
    elif quantizer == "qdq":
        assert side["source"] == "model.ov-int8.onnx" and "quantizer" not in side
        assert cols["int8_target"] == "x86-avx2" and cols["int8_form"] == "s8s8-sym-pc-rr-fbias"
        assert qdq_properties(folder / "model.ov-int8.onnx")["tensorrt_ready"]  # signed, zero points 0
        from ecgtool.bench.discover import discover

        rows = {c["path"].name for c in discover([folder.parent])}  # the IR is benched, not its source graph
        assert "model.xml" in rows and "model.ov-int8.onnx" not in rows
    else:
        fix = {"x86-avx2": "enable", "x86-vnni": "disable"}[target]
        assert side["source"] == "model.onnx" and side["quantizer"].startswith("nncf") and side["overflow_fix"] == fix
        assert cols["int8_target"] == target and cols["int8_form"] == f"nncf-overflow-fix-{fix}"
    assert r.check["argmax_agreement"] >= 0.9


def test_openvino_int8_refuses_tensorrt_target(trained):
    from ecgtool.export import export

    folder, data = trained
    with pytest.raises(BadInput, match="openvino-int8 runs on a CPU"):
        export(folder, "openvino-int8", data=data, calib_size=42, calib_dir=folder.parent / "calib", target="tensorrt")


def test_openvino_forms_table():
    """OpenVINO's QDQ form per CPU target: TensorRT's symmetric form, 7-bit weights (reduce_range) on x86-avx2 alone."""
    from ecgtool.compress.targets import NNCF_OVERFLOW_FIX, OPENVINO_FORMS

    assert set(OPENVINO_FORMS) == set(NNCF_OVERFLOW_FIX) == {"x86-avx2", "x86-vnni", "arm64"}
    assert form_for("x86-avx2", runtime="openvino")[1].label == "s8s8-sym-pc-rr-fbias"
    assert form_for("x86-vnni", runtime="openvino")[1] == FORMS["tensorrt"] == form_for("arm64", runtime="openvino")[1]
    assert form_for("x86-avx2")[1] == FORMS["x86-avx2"]  # ONNX Runtime's form is unchanged


def test_openvino_graph_is_judged_by_openvino_on_its_own_target(trained, tmp_path):
    """The QDQ graph OpenVINO is given is scored by this CPU's OpenVINO when the target is this machine's (its
    kernels are the device's), and as written (simulated QDQ) for another CPU target."""
    folder, data = trained
    here = detect_target()
    other = "x86-vnni" if here == "x86-avx2" else "x86-avx2"
    r = quantize_folder(folder, data, out=tmp_path / "here.onnx", runtime="openvino", target=here, calib_size=21,
                        calib_dir=tmp_path, gate=False)
    assert r["evaluated"] == "openvino" and r["form"]["symmetric"] and r["target"] == here
    r = quantize_folder(folder, data, out=tmp_path / "other.onnx", runtime="openvino", target=other, calib_size=21,
                        calib_dir=tmp_path, gate=False)
    assert r["evaluated"] == "simulated-qdq" and r["form"]["reduce_range"] == (other == "x86-avx2")
