"""PyTorch eager inference of a model folder (config.json + model.safetensors)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgtool.core.artifacts import is_model_folder
from ecgtool.core.names import WEIGHTS
from ecgtool.runtime.base import PredictorBase, rr_head_inputs


@dataclass
class TorchPredictor(PredictorBase):
    """PyTorch eager inference on the CPU (or a CUDA device) of a model folder."""

    kind: str = "pytorch"

    def __post_init__(self) -> None:
        import torch

        from ecgtool.models import load_model

        folder = self.path if self.path.is_dir() else self.path.parent
        if self.threads:
            torch.set_num_threads(self.threads)
        self.model = load_model(folder).to(self.device)
        self.config = self.model.config.to_dict()
        self.classes = list(self.model.config.classes or [])

    def predict(self, batch: np.ndarray) -> np.ndarray:
        import torch

        batch = np.ascontiguousarray(batch, dtype=np.float32)
        rr = rr_head_inputs(self.config, batch, self.path)
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device)
            if rr is None:
                return self.model(x).float().cpu().numpy()
            return self.model(x, torch.from_numpy(rr).to(self.device)).float().cpu().numpy()


def matches(p: Path) -> bool:
    return is_model_folder(p) or (p.name == WEIGHTS and is_model_folder(p.parent))


def open_predictor(p: Path, **kw) -> TorchPredictor:
    return TorchPredictor(p, **kw)
