"""One loader for every artifact kind: `load(path)` returns a predictor with `predict(batch) -> logits`.

Kinds: a PyTorch model folder (or its model.safetensors), ONNX files (FP32 / FP16 / INT8 QDQ) on ONNX
Runtime, OpenVINO IR (.xml), TensorRT engines (.engine/.plan). Every predictor takes float32
[N, C, L] numpy batches and returns float32 [N, K] logits, so F1 is measured on the artifact that ships.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from .artifacts import read_json
from .errors import BadInput


class Predictor(Protocol):
    path: Path
    kind: str  # e.g. "pytorch", "onnxruntime", "openvino", "tensorrt"
    precision: str  # "fp32", "fp16", "bf16", "int8"
    classes: list[str]
    config: dict  # the model's config.json (arch, depth, width, channels, ...)

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


def find_config(path: str | os.PathLike) -> dict:
    """config.json of the model an artifact came from: beside it, or in a parent folder."""
    p = Path(path).resolve()
    for cand in [p if p.is_dir() else p.parent, *p.parents][:4]:
        if (cand / "config.json").exists():
            return read_json(cand / "config.json")
    raise BadInput(f"{path}: no config.json beside the artifact or in its parent folders")


@dataclass
class PredictorBase:
    """The fields every predictor shares (runtime.Predictor); each kind sets its own `kind` default."""

    path: Path
    threads: int | None = None
    device: str = "cpu"
    kind: str = ""
    precision: str = "fp32"
    config: dict = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)


@dataclass
class TorchPredictor(PredictorBase):
    """PyTorch eager inference on the CPU (or a CUDA device) of a model folder."""

    kind: str = "pytorch"

    def __post_init__(self) -> None:
        import torch

        from .models import load_model

        folder = self.path if self.path.is_dir() else self.path.parent
        if self.threads:
            torch.set_num_threads(self.threads)
        self.model = load_model(folder).to(self.device)
        self.config = self.model.config.to_dict()
        self.classes = list(self.model.config.classes or [])

    def predict(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            return self.model(x).float().cpu().numpy()


#: (test on the path, loader). The first match wins; other stages add their kinds with register_kind.
_KINDS: list[tuple[str, Callable[[Path], bool], Callable[..., Predictor]]] = []


def register_kind(name: str, matches: Callable[[Path], bool], loader: Callable[..., Predictor]) -> None:
    _KINDS.append((name, matches, loader))


def _is_torch(p: Path) -> bool:
    from .models import WEIGHTS, is_model_folder

    return is_model_folder(p) or (p.name == WEIGHTS and is_model_folder(p.parent))


register_kind("pytorch", _is_torch, lambda p, **kw: TorchPredictor(p, **kw))


def artifact_kind(path: str | os.PathLike) -> str | None:
    """The name of the loader that would open `path`, or None if no loader knows it."""
    p = Path(path)
    _load_optional_kinds()
    for name, matches, _ in _KINDS:
        if matches(p):
            return name
    return None


def load(path: str | os.PathLike, **options) -> Predictor:
    """Open any artifact for inference. Options (threads, device, ...) go to the matching loader."""
    p = Path(path)
    if not p.exists():
        raise BadInput(f"{p}: no such file or folder")
    _load_optional_kinds()
    for _, matches, loader in _KINDS:
        if matches(p):
            return loader(p, **options)
    raise BadInput(f"{p}: not an artifact ecgtool can run (expected a model folder, .onnx, OpenVINO .xml or TensorRT .engine)")


def _load_optional_kinds() -> None:
    """Import the modules that register ONNX Runtime / OpenVINO / TensorRT loaders (once)."""
    global _optional_loaded
    if _optional_loaded:
        return
    _optional_loaded = True
    import importlib

    for mod in ("ecgtool.runtime_onnx", "ecgtool.baseline"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


_optional_loaded = False
