"""Runtime stage: open any artifact (PyTorch, RR baseline, ONNX Runtime, OpenVINO, TensorRT) for inference."""

from ecgtool.runtime.base import Predictor, PredictorBase
from ecgtool.runtime.registry import BACKENDS, artifact_kind, load

__all__ = ["BACKENDS", "Predictor", "PredictorBase", "artifact_kind", "load"]
