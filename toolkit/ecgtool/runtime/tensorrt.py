"""TensorRT 10 engines on a CUDA device (tensor-name API); `require_tensorrt` says what is missing."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgtool.core.errors import BadInput, EcgtoolError
from ecgtool.runtime.base import PredictorBase, config_and_classes

#: beside an engine: {"precision": ...} of the graph it was built from
ENGINE_SIDECAR_SUFFIX = ".json"


def require_tensorrt(path: str | os.PathLike):
    """(tensorrt, torch) when both TensorRT and a CUDA device are present, else BadInput saying which is missing."""
    try:
        import tensorrt as trt
    except ImportError:
        raise BadInput(f"{path}: skipped: TensorRT not installed (pip install 'ecgtool[tensorrt]' on a machine with NVIDIA's index)") from None
    import torch

    if not torch.cuda.is_available():
        raise BadInput(f"{path}: skipped: no CUDA device")
    return trt, torch


@dataclass
class TensorRTPredictor(PredictorBase):
    """TensorRT 10 engine on a CUDA device (tensor-name API, set_input_shape, execute_async_v3)."""

    device: str = "cuda"  # `threads` is accepted but unused: every predictor takes the same options
    kind: str = "tensorrt"

    def __post_init__(self) -> None:
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
        sidecar = Path(str(self.path) + ENGINE_SIDECAR_SUFFIX)
        if sidecar.is_file():  # written by the builder: the precision of the graph it was built from
            self.precision = json.loads(sidecar.read_text(encoding="utf-8")).get("precision", self.precision)
        self.config, self.classes = config_and_classes(self.path)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to("cuda").to(self.input_dtype)
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        out = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=self.output_dtype, device="cuda")
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise EcgtoolError(f"{self.path}: TensorRT execution failed")
        stream.synchronize()
        return out.float().cpu().numpy()


def _torch_dtype(trt, torch, dt):
    return {trt.float32: torch.float32, trt.float16: torch.float16, trt.int8: torch.int8,
            trt.int32: torch.int32}.get(dt, torch.float32)


def matches(p: Path) -> bool:
    return p.is_file() and p.suffix in (".engine", ".plan")


def open_predictor(p: Path, **kw) -> TensorRTPredictor:
    return TensorRTPredictor(p, **kw)
