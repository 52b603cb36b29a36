"""Predictors for the exported artifacts: ONNX Runtime (.onnx), OpenVINO IR (.xml), TensorRT (.engine/.plan).

Importing this module registers the three kinds with `ecgtool.runtime`; `runtime.load(path)` then opens
any of them. Each predictor takes float32 [N, C, L] numpy batches and returns float32 [N, K] logits.
The heavy runtimes (onnxruntime, openvino, tensorrt) are imported when a predictor is built.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BadInput
from .runtime import PredictorBase, find_config, register_kind

#: Sidecar file in an OpenVINO IR folder naming the precision and the compile options the IR needs.
OPENVINO_SIDECAR = "ecgtool-openvino.json"


def _config_and_classes(path: Path) -> tuple[dict, list[str]]:
    try:
        cfg = find_config(path)
    except BadInput:
        return {}, []
    return cfg, list(cfg.get("classes") or [])


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
    """ONNX Runtime inference: CPU provider (CUDA when device='cuda'), `threads` intra-op threads."""

    kind: str = "onnxruntime"

    def __post_init__(self) -> None:
        import onnx
        import onnxruntime as ort

        try:
            model = onnx.load(str(self.path), load_external_data=False)
        except Exception as exc:  # onnx raises DecodeError / ValueError / OSError
            raise BadInput(f"{self.path}: not a readable ONNX file ({_one_line(exc)})") from None
        self.precision = onnx_precision(model)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
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
            raise BadInput(f"{self.path}: ONNX Runtime cannot load it ({_one_line(exc)})") from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        self.input_shape = list(inp.shape)
        self.config, self.classes = _config_and_classes(self.path)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=self.input_dtype)
        _check_shape(self.path, self.input_shape, x.shape)
        fixed = self.input_shape[0] if isinstance(self.input_shape[0], int) else None
        if fixed and fixed != x.shape[0]:  # a static-batch graph: run it row group by row group
            return np.concatenate([self.predict(x[i:i + fixed]) for i in range(0, len(x), fixed)])
        out = self.session.run(None, {self.input_name: x})[0]
        return np.asarray(out, dtype=np.float32)


@dataclass
class OpenVinoPredictor(PredictorBase):
    """OpenVINO CPU inference of an IR (.xml + .bin), compiled with the precision hint its folder names."""

    kind: str = "openvino"

    def __post_init__(self) -> None:
        import openvino as ov

        sidecar = self.path.parent / OPENVINO_SIDECAR
        compile_hints: dict = {}
        if sidecar.exists():
            meta = json.loads(sidecar.read_text())
            self.precision = meta.get("precision", "fp32")
            compile_hints = dict(meta.get("compile", {}))
        props = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", **compile_hints}
        if self.threads:
            props["INFERENCE_NUM_THREADS"] = int(self.threads)
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
            self.compiled = core.compile_model(model, self.device.upper(), props)
        except Exception as exc:  # openvino raises RuntimeError with multi-line text
            raise BadInput(f"{self.path}: OpenVINO cannot load it ({_one_line(exc)})") from None
        self.request = self.compiled.create_infer_request()
        self.input_shape = [d.get_length() if d.is_static else None for d in self.compiled.input(0).get_partial_shape()]
        self.config, self.classes = _config_and_classes(self.path)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        _check_shape(self.path, self.input_shape, x.shape)
        self.request.infer({0: x})
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32)


@dataclass
class TensorRTPredictor(PredictorBase):
    """TensorRT 10 engine on a CUDA device (tensor-name API, set_input_shape, execute_async_v3)."""

    device: str = "cuda"  # `threads` is accepted but unused: every predictor takes the same options
    kind: str = "tensorrt"

    def __post_init__(self) -> None:
        from .tensorrt_build import require_tensorrt

        trt, torch = require_tensorrt(self.path)
        self._trt, self._torch = trt, torch
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise BadInput(f"{self.path}: TensorRT cannot deserialise this engine (built by another TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BadInput(f"{self.path}: expected one input and one output tensor, found {inputs} -> {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_dtype = _torch_dtype(trt, torch, self.engine.get_tensor_dtype(self.input_name))
        self.output_dtype = _torch_dtype(trt, torch, self.engine.get_tensor_dtype(self.output_name))
        stem = self.path.name.lower()
        self.precision = "int8" if "int8" in stem else "fp16" if "fp16" in stem else "fp32"
        self.config, self.classes = _config_and_classes(self.path)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to("cuda").to(self.input_dtype)
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        out = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=self.output_dtype, device="cuda")
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            from .errors import EcgtoolError

            raise EcgtoolError(f"{self.path}: TensorRT execution failed")
        stream.synchronize()
        return out.float().cpu().numpy()


def _torch_dtype(trt, torch, dt):
    return {trt.float32: torch.float32, trt.float16: torch.float16, trt.int8: torch.int8,
            trt.int32: torch.int32}.get(dt, torch.float32)


def _check_shape(path: Path, expected: list, got: tuple) -> None:
    """A batch whose channel count or length differs from a static graph input is bad input."""
    for axis, name in ((1, "channels"), (2, "length")):
        want = expected[axis] if len(expected) > axis else None
        if isinstance(want, int) and len(got) > axis and got[axis] != want:
            raise BadInput(f"{path}: expects input {name} {want}, got {got[axis]} (batch shape {tuple(got)})")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def _is_onnx(p: Path) -> bool:
    return p.is_file() and p.suffix == ".onnx"


def _is_openvino(p: Path) -> bool:
    return p.is_file() and p.suffix == ".xml" and p.with_suffix(".bin").exists()


def _is_tensorrt(p: Path) -> bool:
    return p.is_file() and p.suffix in (".engine", ".plan")


register_kind("onnxruntime", _is_onnx, lambda p, **kw: OnnxRuntimePredictor(p, **kw))
register_kind("openvino", _is_openvino, lambda p, **kw: OpenVinoPredictor(p, **kw))
register_kind("tensorrt", _is_tensorrt, lambda p, **kw: TensorRTPredictor(p, **kw))
