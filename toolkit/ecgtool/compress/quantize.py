"""Static INT8 quantisation of an exported model with ONNX Runtime's tools (QDQ format).

`onnx2int8` runs `quant_pre_process` and then `quantize_static` with a calibration reader over a
class-stratified calibration set from the training split (ecgtool.calibration). Two forms:
- model.int8.onnx (default, `symmetric=False`): ONNX Runtime's own form, unsigned int8 activations
  with zero points and signed symmetric weights; ONNX Runtime runs it faster than the signed symmetric
  form (ratio in benchmarks/RESULTS.md), so it ships for ORT.
- model.trt-int8.onnx (`symmetric=True`): signed int8 activations and weights, zero points 0, float
  biases: the only INT8 QDQ form TensorRT accepts.
`quantize_model` drives it for a model folder, can try every calibration method and keep the best on
validation macro-F1 (`method="auto"`), and reports test macro-F1 and top-1 agreement of INT8 against
FP32, warning about the classes that lost more than 1 point.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import time
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ecgtool.core import ui
from ecgtool.core.files import atomic_path
from ecgtool.compress.calibration import DEFAULT_DIR, DEFAULT_SEED, DEFAULT_SIZE, CalibrationReader, calibration_set
from ecgtool.core.errors import BadInput

METHODS = ("minmax", "entropy", "percentile")


def _calibrate_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[name]


def node_names(path: str | os.PathLike) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node]


def onnx2int8(src: str | os.PathLike, out: str | os.PathLike, calibration: np.ndarray, method: str = "minmax",
              per_channel: bool = True, exclude: Sequence[str] = (), symmetric: bool = False) -> Path:
    """QDQ INT8 ONNX from an FP32 ONNX, calibrated on `calibration` signals [N, C, L].

    symmetric=True: signed int8 activations and weights with zero points 0 (TensorRT's form);
    False: ONNX Runtime's default unsigned (asymmetric) activations.
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
        reader = CalibrationReader(calibration, input_name="input", batch_size=batch)
        # TensorRT takes int8 QDQ only: biases stay float in the symmetric (TensorRT) form.
        extra: dict[str, Any] = {"ActivationSymmetric": symmetric, "WeightSymmetric": True, "QuantizeBias": not symmetric}
        if method == "percentile":
            extra["CalibPercentile"] = 99.999
        with atomic_path(out) as dst, _quiet_root_logger():
            quantize_static(str(pre), str(dst), reader, quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                            weight_type=QuantType.QInt8, per_channel=per_channel, calibrate_method=_calibrate_method(method),
                            nodes_to_exclude=list(exclude), extra_options=extra)
    return out


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


def _logits(path: Path, signals: np.ndarray, idx: np.ndarray, threads: int | None, desc: str) -> np.ndarray:
    from ecgtool.evaluate.artifact import predict_batches
    from ecgtool.runtime import load

    return predict_batches(load(path, threads=threads, verify=False), signals, idx, 256, desc=desc)


def _compare(fp32: Path, int8: Path, ds, split: str, threads: int | None) -> dict:
    """Macro-F1 of FP32 and INT8 on a split, per-class F1 and top-1 agreement between them."""
    from ecgtool.evaluate.metrics import compute_metrics

    idx = np.sort(ds.indices(split))
    y = ds.labels[idx]
    a = _logits(fp32, ds.signals, idx, threads, f"fp32 {split}").argmax(1)
    b = _logits(int8, ds.signals, idx, threads, f"int8 {split}").argmax(1)
    ma, mb = compute_metrics(y, a, ds.classes), compute_metrics(y, b, ds.classes)
    return {
        "split": split, "n": int(len(idx)), "fp32_macro_f1": ma["macro_f1"], "int8_macro_f1": mb["macro_f1"],
        "top1_agreement": float(np.mean(a == b)) if len(idx) else 0.0,
        "per_class_f1": {c: {"fp32": ma["per_class"][c]["f1"], "int8": mb["per_class"][c]["f1"]} for c in ds.classes},
    }


def quantize_model(fp32: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike,
                   method: str = "minmax", calib_size: int = DEFAULT_SIZE, per_channel: bool = True,
                   exclude: Sequence[str] = (), calib_dir: str | os.PathLike = DEFAULT_DIR, seed: int = DEFAULT_SEED,
                   symmetric: bool = False, threads: int | None = None) -> dict:
    """Quantise an FP32 ONNX graph to INT8 QDQ (`out`) and report what it cost against the FP32 graph.

    method="auto" tries minmax, entropy and percentile and keeps the best validation macro-F1.
    Returns the report (method, calibration set, test macro-F1 FP32/INT8, agreement, per-class F1,
    weak classes). Checking against PyTorch and recording in the manifest is the caller's
    (ecgtool.export.int8), which knows the model folder.
    """
    from ecgtool.data.dataset import load_dataset

    fp32, out = Path(fp32), Path(out)
    if method not in METHODS + ("auto",):
        raise BadInput(f"--method {method}: unknown calibration method (choose from {', '.join(METHODS)}, auto)")
    ds = load_dataset(data)
    cs = calibration_set(ds.root, calib_size, seed, calib_dir)
    ui.info(f"calibration set: {cs.path} ({len(cs.labels)} records, seed {seed})")
    start = time.perf_counter()
    tried: dict[str, float] = {}
    if method == "auto":
        with tempfile.TemporaryDirectory(prefix="ecgtool-auto-", dir=out.parent) as tmp:
            for m in METHODS:
                cand = Path(tmp) / f"{m}.onnx"
                onnx2int8(fp32, cand, cs.signals, m, per_channel, exclude, symmetric)
                tried[m] = _compare(fp32, cand, ds, "val", threads)["int8_macro_f1"]
            best = max(METHODS, key=lambda m: tried[m])  # ties keep the earlier, simpler method
            with atomic_path(out) as dst:
                os.replace(Path(tmp) / f"{best}.onnx", dst)
        ui.info("method auto: kept " + best + " (validation macro-F1 "
                + ", ".join(f"{m} {f:.4f}" for m, f in tried.items()) + ")")
        method = best
    else:
        onnx2int8(fp32, out, cs.signals, method, per_channel, exclude, symmetric)
    seconds = time.perf_counter() - start
    report = _compare(fp32, out, ds, "test", threads)
    drop = report["fp32_macro_f1"] - report["int8_macro_f1"]
    weak = [c for c, f in report["per_class_f1"].items() if f["fp32"] - f["int8"] > 0.01]
    report.update({"method": method, "methods_tried": tried, "per_channel": per_channel, "exclude": list(exclude),
                   "symmetric": symmetric, "calibration": {k: cs.meta[k] for k in ("size", "seed", "records", "source_sha256")}
                   | {"path": str(cs.path)}, "macro_f1_drop": drop, "weak_classes": weak, "seconds": seconds,
                   "qdq": qdq_properties(out)})
    if drop > 0.01:
        ui.warn(f"{out}: INT8 test macro-F1 {report['int8_macro_f1']:.4f} is {100 * drop:.2f} points below FP32 "
                f"({report['fp32_macro_f1']:.4f}); classes that lost > 1 point: {', '.join(weak) or 'none singly'}")
    ui.info(f"quantize: {out} ({out.stat().st_size / 1e6:.2f} MB) in {seconds:.1f} s")
    return {"path": str(out), **report}
