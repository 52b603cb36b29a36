"""Static INT8 quantisation of an exported model with ONNX Runtime's tools (QDQ format).

`onnx2int8` runs `quant_pre_process` and then `quantize_static` with a calibration reader over a
class-stratified calibration set from the training split (ecgtool.calibration). Two forms:
- model.int8.onnx (default, `symmetric=False`): ONNX Runtime's own form, unsigned int8 activations
  with zero points and signed symmetric weights; ONNX Runtime runs it faster than the signed symmetric
  form (ratio in benchmarks/RESULTS.md), so it ships for ORT.
- model.trt-int8.onnx (`symmetric=True`): signed int8 activations and weights, zero points 0, float
  biases: the only INT8 QDQ form TensorRT accepts.
The form follows the target CPU (ecgtool.compress.targets: `reduce_range` on x86 without VNNI, whose
16-bit pair sums saturate otherwise). `quantize_model` drives it for a model folder, can try the
calibration methods and keep the best on validation macro-F1 (`method="auto"`: minmax and percentile;
entropy is left out because ONNX Runtime's `quantize_static` runs its entropy calibrator with
num_bins = num_quantized_bins = 128, one candidate threshold, which gives minmax's ranges byte for byte),
applies the accuracy gate (ecgtool.compress.gate) and reports test macro-F1 and top-1 agreement of
INT8 against FP32, warning about the classes that lost more than 1 point.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import time
from contextlib import contextmanager, redirect_stdout
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ecgtool.core import ui
from ecgtool.core.files import atomic_path
from ecgtool.compress.calibration import DEFAULT_DIR, DEFAULT_SEED, DEFAULT_SIZE, CalibrationReader, calibration_set
from ecgtool.compress.gate import (DEFAULT_AGREEMENT, DEFAULT_CLASS_POINTS, DEFAULT_MACRO_POINTS, DEFAULT_MIN_WINDOWS,
                                   RR_FUSION, RR_FUSION_CHOICE, candidate_groups, judge, keep_fp32_names,
                                   keep_fp32_nodes, latency_ratio, scan, DEFAULT_GATE_TRAIN, gate_windows, whole_count)
from ecgtool.compress.targets import detect_target, form_for
from ecgtool.core.errors import BadInput
from ecgtool.core.names import ONNX_INPUT

METHODS = ("minmax", "entropy", "percentile")
#: what method="auto" tries (entropy = minmax in ONNX Runtime's quantize_static, see above)
AUTO_METHODS = ("minmax", "percentile")


def _calibrate_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[name]


def node_names(path: str | os.PathLike) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node]


def onnx2int8(src: str | os.PathLike, out: str | os.PathLike, calibration: np.ndarray, method: str = "minmax",
              per_channel: bool = True, exclude: Sequence[str] = (), symmetric: bool = False,
              reduce_range: bool = False, quantize_bias: bool | None = None) -> Path:
    """QDQ INT8 ONNX from an FP32 ONNX, calibrated on `calibration` signals [N, C, L].

    symmetric=True: signed int8 activations and weights with zero points 0 (TensorRT's form);
    False: ONNX Runtime's default unsigned (asymmetric) activations. reduce_range: 7-bit weights (x86
    without VNNI). quantize_bias: int32 biases (default: not for the symmetric TensorRT form).
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS:
        raise BadInput(f"--method {method}: unknown calibration method (choose from {', '.join(METHODS)}, auto)")
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="ecgtool-q-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
        unknown = sorted(set(exclude) - set(node_names(pre)))
        if unknown:
            raise BadInput(f"{src}: --exclude names no node of the graph: {', '.join(unknown)} "
                           f"(nodes look like {', '.join(node_names(pre)[:3])})")
        # Equal batches: ORT's histogram calibrators (entropy, percentile) stack per-batch outputs.
        batch = max(d for d in range(1, 17) if len(calibration) % d == 0)
        reader = CalibrationReader(calibration, input_name=ONNX_INPUT, batch_size=batch, **_rr_calibration(src, calibration))
        # TensorRT takes int8 QDQ only: biases stay float in the symmetric (TensorRT) form.
        extra: dict[str, Any] = {"ActivationSymmetric": symmetric, "WeightSymmetric": True, "QuantizeBias": (not symmetric) if quantize_bias is None else quantize_bias}
        if method == "percentile":
            extra["CalibPercentile"] = 99.999
        with atomic_path(out) as dst, _quiet_root_logger():
            quantize_static(str(pre), str(dst), reader, quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                            weight_type=QuantType.QInt8, per_channel=per_channel, reduce_range=reduce_range, calibrate_method=_calibrate_method(method),
                            nodes_to_exclude=list(exclude), extra_options=extra)
    return out


def onnx_config(src: str | os.PathLike) -> dict:
    """The config of the model an ONNX file came from: its metadata's, else the model folder's ({} if none)."""
    from ecgtool.runtime.base import config_and_classes
    from ecgtool.runtime.onnxruntime import read_metadata

    return read_metadata(src).get("config") or config_and_classes(Path(src))[0]


def deployed(ds, src: str | os.PathLike) -> np.ndarray:
    """The dataset's windows as the model of ONNX file `src` is deployed (data.dataset.deployment_signals:
    a `--leads any` model on a --keep-leads dataset reads its deployment lead alone)."""
    from ecgtool.data.dataset import deployment_signals

    return deployment_signals(ds, onnx_config(src))


def _rr_calibration(src: str | os.PathLike, calibration: np.ndarray) -> dict:
    """For an RR-head graph (a second input): the calibration windows' RR features and the input's name."""
    import onnx

    from ecgtool.runtime.base import rr_head_inputs

    graph = onnx.load(str(src), load_external_data=False).graph
    names = [i.name for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    if len(names) < 2:
        return {}
    config = onnx_config(src)
    rr = rr_head_inputs(config, np.asarray(calibration, dtype=np.float32), Path(src))
    if rr is None:
        raise BadInput(f"{src}: a second graph input ({names[1]}) but no RR head in its metadata")
    return {"rr": rr, "rr_name": names[1]}


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantiser logs harmless notes (e.g. per-channel axis of BatchNorm scales) on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with redirect_stdout(io.StringIO()):  # and the histogram calibrators print progress on stdout
            yield
    finally:
        root.setLevel(level)


def qdq_properties(path: str | os.PathLike) -> dict:
    """What TensorRT checks in a QDQ graph: opset, QDQ counts, zero-point dtypes, whether all zero points are 0."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    inits = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in model.graph.node if n.op_type == "Constant" and n.attribute}
    zp_types, nonzero, n_q, n_dq = set(), 0, 0, 0
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        n_q += node.op_type == "QuantizeLinear"
        n_dq += node.op_type == "DequantizeLinear"
        zp = node.input[2] if len(node.input) > 2 and node.input[2] else None
        tensor = (inits[zp] if zp in inits else consts.get(zp)) if zp else None
        if tensor is None:  # no zero point given means 0 of type uint8 per the ONNX spec
            zp_types.add("uint8" if zp is None else "unknown")
            continue
        arr = numpy_helper.to_array(tensor)
        zp_types.add(str(arr.dtype))
        nonzero += int(np.count_nonzero(arr))
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return {"opset": opset, "quantize": n_q, "dequantize": n_dq, "zero_point_types": sorted(zp_types),
            "nonzero_zero_points": nonzero,
            "tensorrt_ready": n_q > 0 and zp_types == {"int8"} and nonzero == 0 and opset >= 17}


def onnx_logits(path: Path, signals: np.ndarray, idx: np.ndarray, threads: int | None, desc: str,
                optimize: bool = True, runtime: str = "onnxruntime") -> np.ndarray:
    """Logits of an ONNX file on signals[idx]; optimize=False: QDQ simulated as written (TensorRT's arithmetic);
    runtime "openvino": the file read into an OpenVINO IR (a scratch folder) and run by this CPU's OpenVINO."""
    from ecgtool.evaluate.artifact import predict_batches
    from ecgtool.runtime import load

    if runtime == "openvino":
        from ecgtool.export.openvino import onnx2openvino

        with tempfile.TemporaryDirectory(prefix="ecgtool-ov-") as tmp:
            xml = onnx2openvino(path, Path(tmp) / "model.xml", "int8")
            return predict_batches(load(xml, threads=threads, verify=False), signals, idx, 256, desc=desc)
    return predict_batches(load(path, threads=threads, verify=False, optimize=optimize), signals, idx, 256, desc=desc)


#: how an INT8 file is judged: ORT's fused kernels of this CPU, the QDQ graph as written, or this CPU's OpenVINO
EVALUATED = {"onnxruntime": dict(optimize=True), "simulated-qdq": dict(optimize=False),
             "openvino": dict(runtime="openvino")}


def compare_int8(fp32: Path, int8: Path, ds, split: str, threads: int | None, evaluated: str = "onnxruntime") -> dict:
    """Macro-F1 of FP32 and INT8 on a split, per-class F1 and top-1 agreement between them (INT8 run as
    `evaluated` says, EVALUATED)."""
    from ecgtool.evaluate.metrics import compute_metrics

    idx = np.sort(ds.indices(split))
    y = ds.labels[idx]
    signals = deployed(ds, fp32)
    a = onnx_logits(fp32, signals, idx, threads, f"fp32 {split}").argmax(1)
    b = onnx_logits(int8, signals, idx, threads, f"int8 {split}", **EVALUATED[evaluated]).argmax(1)
    ma, mb = compute_metrics(y, a, ds.classes), compute_metrics(y, b, ds.classes)
    return {
        "split": split, "n": int(len(idx)), "fp32_macro_f1": ma["macro_f1"], "int8_macro_f1": mb["macro_f1"],
        "top1_agreement": float(np.mean(a == b)) if len(idx) else 0.0, "evaluated": evaluated,
        "per_class_f1": {c: {"fp32": ma["per_class"][c]["f1"], "int8": mb["per_class"][c]["f1"]} for c in ds.classes},
    }


def quantize_model(fp32: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike,
                   method: str = "minmax", calib_size: int = DEFAULT_SIZE, per_channel: bool | None = None,
                   exclude: Sequence[str] = (), calib_dir: str | os.PathLike = DEFAULT_DIR, seed: int = DEFAULT_SEED,
                   symmetric: bool | None = None, threads: int | None = None, target: str | None = None,
                   gate: bool = True, gate_macro: float = DEFAULT_MACRO_POINTS,
                   gate_class: float = DEFAULT_CLASS_POINTS, gate_min_windows: int = DEFAULT_MIN_WINDOWS,
                   gate_agreement: float = DEFAULT_AGREEMENT, keep_fp32: Sequence[str] | None = None,
                   runtime: str = "onnxruntime", gate_train: int = DEFAULT_GATE_TRAIN) -> dict:
    """Quantise an FP32 ONNX graph to INT8 QDQ (`out`) for `target` and report what it cost against the FP32 graph.

    target: auto (this machine, by CPUID), x86-avx2, x86-vnni, arm64 or tensorrt (ecgtool.compress.targets);
    symmetric=True without a target means tensorrt. The gate's windows (and method="auto"'s) are the validation
    split plus up to `gate_train` training windows outside the calibration set (compress.gate.gate_windows; 0:
    validation alone). method="auto" tries minmax and percentile and keeps
    the best macro-F1 on them. gate: if INT8 loses more than `gate_macro` points of
    macro-F1 or `gate_class` points of any class, carried by at least `gate_min_windows` windows (net; fewer
    are waived, with the reason recorded), or if INT8's argmax agrees with FP32's on fewer than `gate_agreement` %
    of those windows (0: no floor), the most sensitive nodes are kept FP32 until it holds or (x86
    targets) the file is no faster than FP32 (ecgtool.compress.gate). keep_fp32: node groups FP32 from the start
    (compress.gate.KEEP_FP32_CHOICES; None: the target's default, compress.targets.FORMS, plus `rr-fusion` in an
    RR-head graph, gate.rr_fusion_nodes; given: exactly those), resolved on the FP32
    graph by gate.candidate_groups; the gate scans the other groups on top of them. runtime "openvino": the QDQ
    form OpenVINO is given for `target` (compress.targets.OPENVINO_FORMS), judged by this machine's OpenVINO when
    `target` is this machine's, else as written (simulated QDQ). Returns the report (target, form, method, calibration set, gate, test
    macro-F1 FP32/INT8, agreement, per-class F1, weak classes). Checking against PyTorch and recording in
    the manifest is the caller's (ecgtool.export.int8), which knows the model folder.
    """
    from ecgtool.data.dataset import load_dataset

    fp32, out = Path(fp32), Path(out)
    if method not in METHODS + ("auto",):
        raise BadInput(f"--method {method}: unknown calibration method (choose from {', '.join(METHODS)}, auto)")
    whole_count("--gate-min-windows", gate_min_windows)
    whole_count("--gate-train", gate_train, "training windows")
    check_agreement_floor(gate_agreement)
    if symmetric is not None and target not in (None, "auto") and symmetric != (target in ("tensorrt", "arm64")):
        raise BadInput(f"--target {target}: its form is {'symmetric' if not symmetric else 'asymmetric'}; "
                       "drop --symmetric/--asymmetric or choose another target")
    target, form = form_for("tensorrt" if symmetric and target in (None, "auto") else target, per_channel, keep_fp32,
                            runtime)
    graph_groups = candidate_groups(fp32)  # read once: the RR-fusion default below and the gate's scan
    if keep_fp32 is None and dict(graph_groups).get(RR_FUSION):  # an RR-head graph: see gate.rr_fusion_nodes
        form = replace(form, keep_fp32=keep_fp32_names([*form.keep_fp32, RR_FUSION_CHOICE]))
    keep_groups, keep_nodes = keep_fp32_nodes(fp32, form.keep_fp32) if form.keep_fp32 else ([], [])
    exclude = [*exclude, *(n for n in keep_nodes if n not in exclude)]
    ds = load_dataset(data)
    config = onnx_config(fp32)
    signals = deployed(ds, fp32)  # calibration, gate and test: the windows as the model is deployed
    cs = calibration_set(ds.root, calib_size, seed, calib_dir, config=config)
    ui.info(f"calibration set: {cs.path} ({len(cs.labels)} records, seed {seed}); target {target}, form {form.label}"
            + (f" ({', '.join(keep_groups)}: {len(keep_nodes)} node{'s' * (len(keep_nodes) != 1)} FP32 from the start)"
               if keep_nodes else ""))
    start = time.perf_counter()
    judged, n_train = gate_windows(ds, cs.meta["indices"], gate_train, seed)
    seen = f"{len(judged) - n_train} validation + {n_train} training windows outside the calibration set"
    fp32_judged = onnx_logits(fp32, signals, judged, threads, "fp32 gate").argmax(1) if (gate or method == "auto") and len(judged) else None

    def build(dst: Path, excl: Sequence[str], m: str) -> None:
        onnx2int8(fp32, dst, cs.signals, m, form.per_channel, excl, form.symmetric, form.reduce_range, form.quantize_bias)

    # TensorRT's arithmetic as written, not ONNX Runtime's fused CPU kernels; OpenVINO's graph by this CPU's OpenVINO
    # when it is the target (its kernels are what the device runs), else as written
    evaluated = ("openvino" if runtime == "openvino" and target == detect_target() else
                 "simulated-qdq" if target == "tensorrt" or runtime == "openvino" else "onnxruntime")
    simulated = evaluated != "onnxruntime"

    def predict(path: Path) -> np.ndarray:
        return onnx_logits(path, signals, judged, threads, "int8 gate", **EVALUATED[evaluated]).argmax(1)

    def verdict(pred: np.ndarray):
        return judge(ds.labels[judged], fp32_judged, pred, ds.classes, gate_macro, gate_class, gate_min_windows, gate_agreement)

    def too_slow(path: Path) -> bool:  # the speed gain is gone: no faster than FP32 (x86 targets: this CPU's own kernels)
        return (not simulated and target in ("x86-avx2", "x86-vnni") and single_input(fp32)
                and latency_ratio(fp32, path) >= 1.0)

    tried: dict[str, float] = {}
    gate_report: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="ecgtool-auto-", dir=out.parent) as tmp:
        first = Path(tmp) / "int8.onnx"
        if method == "auto" and fp32_judged is not None:
            verdicts = {}
            for m in AUTO_METHODS:
                build(Path(tmp) / f"{m}.onnx", exclude, m)
                verdicts[m] = verdict(predict(Path(tmp) / f"{m}.onnx"))
            from ecgtool.evaluate.metrics import compute_metrics

            base = compute_metrics(ds.labels[judged], fp32_judged, ds.classes)["macro_f1"]
            tried = {m: base - v.macro_loss_points / 100 for m, v in verdicts.items()}
            method = max(AUTO_METHODS, key=lambda m: tried[m])  # ties keep the earlier, simpler method
            os.replace(Path(tmp) / f"{method}.onnx", first)
            ui.info("method auto: kept " + method + f" (macro-F1 on {seen}: "
                    + ", ".join(f"{m} {f:.4f}" for m, f in tried.items()) + "; entropy = minmax in ONNX Runtime)")
        else:
            method = "minmax" if method == "auto" else method
            build(first, exclude, method)
        chosen = first
        if gate and fp32_judged is not None:
            v0 = verdict(predict(first))
            gate_report = {"macro_points": gate_macro, "class_points": gate_class, "min_windows": gate_min_windows,
                           "agreement_floor": gate_agreement, "split": "val+train" if n_train else "val",
                           "n": int(len(judged)), "n_val": int(len(judged) - n_train), "n_train": n_train,
                           "keep_fp32": list(form.keep_fp32), "keep_fp32_groups": keep_groups,
                           "before": v0.as_dict(), "kept_fp32": [], "groups_fp32": [], "scan": []}
            if not v0.passed:
                c, loss = v0.worst_class
                ui.info(f"gate: INT8 macro-F1 loss {v0.macro_loss_points:.2f} points, {c} {loss:.2f}, agreement "
                        f"{100 * v0.agreement:.2f} % on {seen}; scanning node sensitivity")
                groups = [(n, [x for x in nodes if x not in exclude]) for n, nodes in graph_groups]
                res = scan(lambda dst, excl: build(dst, excl, method), predict, verdict,
                           [(n, nodes) for n, nodes in groups if nodes], list(exclude), Path(tmp), (first, v0), too_slow)
                chosen = res["path"]
                gate_report.update(scan=res["scan"], kept_fp32=res["kept_fp32"], groups_fp32=res["groups_fp32"],
                                   stopped=res["stopped"])
                # ORT's kernels time ORT's form only; a graph for TensorRT or OpenVINO is timed by bench in its runtime
                gate_report["latency_ratio_vs_ungated"] = (None if simulated else 1.0 if chosen == first
                                                           else round(latency_ratio(first, chosen), 3))
                v = res["verdict"]
            else:
                v = v0
            gate_report["after"] = v.as_dict()
            gate_report["passed"] = v.passed
            gate_report["reason"] = v.reason
            msg = (f"gate {'passed' if v.passed else 'FAILED'} on {seen}: macro-F1 loss {v.macro_loss_points:.2f} points "
                   f"(limit {gate_macro}), worst class {v.worst_class[0]} loss {v.worst_class[1]:.2f} (limit {gate_class}; "
                   f"negative = INT8 gained), agreement {100 * v.agreement:.2f} % (floor {gate_agreement:g} %)")
            if gate_report.get("stopped"):
                msg += f"; scan stopped: {gate_report['stopped']}"
            if v.waived:
                msg += f"; waived (fewer than {gate_min_windows} windows net): " + "; ".join(w.split(" on ")[0] for w in v.waived)
            if gate_report["kept_fp32"]:
                ratio = gate_report["latency_ratio_vs_ungated"]
                msg += (f"; kept FP32: {', '.join(gate_report['groups_fp32'])} ({len(gate_report['kept_fp32'])} nodes), "
                        + (f"latency x{ratio:.2f} of ungated INT8" if ratio is not None
                           else f"latency not timed here ({evaluated}; bench times it where its runtime runs)")
                        + (f" (on top of {', '.join(keep_groups)} FP32 from the start)" if keep_groups else ""))
            (ui.info if v.passed else ui.warn)(msg)
        with atomic_path(out) as dst:
            os.replace(chosen, dst)
    seconds = time.perf_counter() - start
    excluded = list(exclude) + (gate_report["kept_fp32"] if gate_report else [])
    return report_on_test(fp32, out, ds, threads, evaluated, cs, seconds, "quantize", "INT8",
                       {"target": target, "form": form.as_dict(), "method": method, "methods_tried": tried,
                        "per_channel": form.per_channel, "exclude": excluded, "symmetric": form.symmetric,
                        "keep_fp32": list(form.keep_fp32), "keep_fp32_groups": keep_groups, "keep_fp32_nodes": keep_nodes,
                        "reduce_range": form.reduce_range, "gate": gate_report})


def check_agreement_floor(pct: Any) -> float:
    """The agreement floor as a percentage in [0, 100], else BadInput naming --gate-agreement."""
    ok = isinstance(pct, (int, float)) and not isinstance(pct, bool) and 0 <= pct <= 100  # nan fails
    if not ok:
        raise BadInput(f"--gate-agreement {pct}: must be a percentage of validation windows in [0, 100] (0: no floor)")
    return float(pct)


def single_input(path: Path) -> bool:
    """Whether an ONNX graph takes one input (gate.latency_ratio feeds one; RR-head graphs take two)."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    return len([i for i in g.input if i.name not in {t.name for t in g.initializer}]) == 1


def report_on_test(fp32: Path, out: Path, ds, threads: int | None, evaluated: str, cs, seconds: float, step: str,
                what: str, fields: dict) -> dict:
    """The report of an INT8 file `out` (post-training or QAT): FP32 vs INT8 on the test split (`compare_int8`),
    `fields`, the calibration set `cs`, the drop and the classes that lost > 1 point, warned about when > 1 point."""
    report = compare_int8(Path(fp32), out, ds, "test", threads, evaluated)
    drop = report["fp32_macro_f1"] - report["int8_macro_f1"]
    weak = [c for c, f in report["per_class_f1"].items() if f["fp32"] - f["int8"] > 0.01]
    report.update({**fields, "calibration": {k: cs.meta[k] for k in ("size", "seed", "records", "source_sha256")}
                   | {"path": str(cs.path)}, "macro_f1_drop": drop, "weak_classes": weak, "seconds": seconds,
                   "qdq": qdq_properties(out)})
    if drop > 0.01:
        ui.warn(f"{out}: {what} test macro-F1 {report['int8_macro_f1']:.4f} is {100 * drop:.2f} points below FP32 "
                f"({report['fp32_macro_f1']:.4f}); classes that lost > 1 point: {', '.join(weak) or 'none singly'}")
    ui.info(f"{step}: {out} ({out.stat().st_size / 1e6:.2f} MB) in {seconds:.1f} s")
    return {"path": str(out), **report}
