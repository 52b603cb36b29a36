"""The RR baseline's folder as a predictor: RR/beat features in numpy, then the refitted classifier."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgtool.runtime.base import PredictorBase


@dataclass
class BaselinePredictor(PredictorBase):
    """runtime.Predictor for an rr_baseline folder."""

    kind: str = "baseline"

    def __post_init__(self) -> None:
        from ecgtool.baseline.classifier import load_baseline

        self.model, self.config = load_baseline(self.path)
        self.classes = list(self.model.classes)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.model.predict_logits(np.asarray(batch, dtype=np.float32))


def matches(p: Path) -> bool:
    from ecgtool.baseline.classifier import is_baseline_folder

    return is_baseline_folder(p)


def open_predictor(p: Path, **kw) -> BaselinePredictor:
    return BaselinePredictor(Path(p), threads=kw.get("threads"))
