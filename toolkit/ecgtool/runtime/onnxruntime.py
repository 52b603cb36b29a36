"""ONNX Runtime inference of .onnx files (FP32, FP16, QDQ INT8); CPU provider, CUDA when asked."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgtool.core.errors import BadInput
from ecgtool.core.machine import detect_target
from ecgtool.core.names import (ONNX_META_CONFIG, ONNX_META_FORMAT, ONNX_META_INT8_TARGET, ONNX_META_PRECISION,
                                 ONNX_META_PREPROCESSING, ONNX_META_SOURCE_SHA, ONNX_META_VERSION)
from ecgtool.runtime.base import PredictorBase, check_shape, one_line, config_and_classes, rr_head_inputs


def onnx_precision(model) -> str:
    """'int8' for a QDQ / integer graph, 'fp16' when float16 tensors carry the weights, else 'fp32'."""
    import onnx

    ops = {n.op_type for n in model.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"}:
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return "fp16"
    return "fp32"


@dataclass
class OnnxRuntimePredictor(PredictorBase):
    """ONNX Runtime inference: CPU provider (CUDA when device='cuda'), `threads` intra-op threads.

    optimize=False runs the graph as written (ORT_DISABLE_ALL): a QDQ graph's Q/DQ pairs stay explicit
    around FP32 operators, which is the arithmetic TensorRT's INT8 computes (no fused integer kernels).
    optimize=None (the default) runs a file as its INT8 target does: a file quantised for TensorRT
    (ecgtool.int8_target "tensorrt") unoptimised, so `evaluate` and `predict` report what TensorRT would give
    (bench's TensorRT rows, f1_source simulated-qdq) and not ONNX Runtime's fused s8 x s8 kernels, which on x86
    without VNNI saturate on that form; every other file optimised. `note` says when a file's CPU target is not
    this machine's (target_note below).
    """

    kind: str = "onnxruntime"
    optimize: bool | None = None

    def __post_init__(self) -> None:
        import onnx
        import onnxruntime as ort

        try:
            model = onnx.load(str(self.path), load_external_data=False)
        except Exception as exc:  # onnx raises DecodeError / ValueError / OSError
            raise BadInput(f"{self.path}: not a readable ONNX file ({one_line(exc)})") from None
        props = {p.key: p.value for p in model.metadata_props}
        self.precision = props.get(ONNX_META_PRECISION) or onnx_precision(model)
        target = props.get(ONNX_META_INT8_TARGET) if self.precision == "int8" else None
        if self.optimize is None:
            self.optimize = target != "tensorrt"
        if target == "tensorrt" and not self.optimize:
            self.f1_source = "simulated-qdq"
        if target:
            self.note = target_note(target, simulated=not self.optimize)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if self.optimize
                                         else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        if self.threads:
            opts.intra_op_num_threads = int(self.threads)
            opts.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if self.device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BadInput(f"{self.path}: device {self.device} asked but this onnxruntime has no CUDA provider")
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        except Exception as exc:  # ORT raises Fail / InvalidGraph / NoSuchFile
            raise BadInput(f"{self.path}: ONNX Runtime cannot load it ({one_line(exc)})") from None
        inputs = self.session.get_inputs()
        inp = inputs[0]
        self.input_name = inp.name
        #: an RR-head graph's second input (its RR features, computed here in numpy before the graph)
        self.rr_name = inputs[1].name if len(inputs) > 1 else None
        self.input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        self.input_shape = list(inp.shape)
        self.config, self.classes = config_and_classes(self.path)
        if not self.config:  # a lone .onnx: the model's config travels in the file's metadata
            self.config = read_metadata(self.path).get("config", {})
            self.classes = list(self.config.get("classes") or [])
        if self.rr_name and not int(self.config.get("rr_features") or 0):
            raise BadInput(f"{self.path}: a graph with a second input ({self.rr_name}) but no RR head in its config")

    def predict(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=self.input_dtype)
        check_shape(self.path, self.input_shape, x.shape)
        fixed = self.input_shape[0] if isinstance(self.input_shape[0], int) else None
        if fixed and fixed != x.shape[0]:  # a static-batch graph: run it row group by row group
            return np.concatenate([self.predict(x[i:i + fixed]) for i in range(0, len(x), fixed)])
        feeds = {self.input_name: x}
        if self.rr_name:
            rr = rr_head_inputs(self.config, x.astype(np.float32), self.path)
            feeds[self.rr_name] = rr.astype(self.input_dtype)
        out = self.session.run(None, feeds)[0]
        return np.asarray(out, dtype=np.float32)


def target_note(target: str, simulated: bool = False, here: str | None = None) -> str:
    """One line on running a file quantised for `target` on this machine (`here`: its target, default detected):
    a TensorRT-form file is scored as TensorRT computes it (`simulated`) or, run by ONNX Runtime's fused kernels,
    not as TensorRT would; a file for a VNNI or ARM CPU run on x86 without VNNI gets this CPU's saturating int8
    arithmetic. "" when the file is this machine's (or any x86-avx2 file: 7-bit weights saturate nowhere)."""
    if target == "tensorrt":
        return ("quantised for TensorRT: scored as TensorRT computes INT8 (its QDQ graph run by ONNX Runtime "
                "without fused integer kernels, f1_source simulated-qdq); timings are not TensorRT's" if simulated
                else "quantised for TensorRT but run by ONNX Runtime's fused INT8 kernels: not what TensorRT computes")
    try:
        here = here or detect_target()
    except BadInput:  # an architecture with no target: nothing to compare
        return ""
    if here == "x86-avx2" and target in ("x86-vnni", "arm64"):
        return (f"quantised for {target}; this CPU is x86-avx2 (no VNNI), where ONNX Runtime's u8 x s8 INT8 kernels "
                f"can saturate on that form: scores here are this CPU's, not the {target} target's (`ecgtool quantize "
                "--target x86-avx2` makes this CPU's file)")
    return ""


def matches(p: Path) -> bool:
    return p.is_file() and p.suffix == ".onnx"


def open_predictor(p: Path, **kw) -> OnnxRuntimePredictor:
    return OnnxRuntimePredictor(p, **kw)


def onnx_file_precision(path: str | Path) -> str:
    """Precision of an ONNX file: what ecgtool recorded in its metadata, else read from its graph ("unknown"
    for a file ONNX cannot parse; loading it then reports why)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # DecodeError, OSError, ...
        return "unknown"
    props = {p.key: p.value for p in model.metadata_props}
    return props.get(ONNX_META_PRECISION) or onnx_precision(model)


def read_metadata(path: str | os.PathLike) -> dict:
    """ecgtool's metadata_props of an ONNX file: {config, preprocessing, format, precision, version,
    source_sha256} ({} if none)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not an ONNX file: no metadata
        return {}
    props = {p.key: p.value for p in model.metadata_props}
    if ONNX_META_CONFIG not in props:
        return {}
    try:
        config = json.loads(props[ONNX_META_CONFIG])
    except ValueError:
        return {}
    try:
        spec = json.loads(props[ONNX_META_PREPROCESSING]) if ONNX_META_PREPROCESSING in props else None
    except ValueError:
        spec = None
    return {"config": config, "preprocessing": spec, "format": props.get(ONNX_META_FORMAT), "precision": props.get(ONNX_META_PRECISION),
            "version": props.get(ONNX_META_VERSION), "source_sha256": props.get(ONNX_META_SOURCE_SHA)}
