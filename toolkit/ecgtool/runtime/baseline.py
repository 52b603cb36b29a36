"""The RR baseline's folder as a predictor: RR/beat features in numpy, then the classifier as the deploy bundle
runs it, an ONNX graph (skl2onnx) in ONNX Runtime.

The folder holds the training features, not a classifier (baseline/classifier.py): loading refits scikit-learn's
model, converts it (baseline/onnx.py: checked against scikit-learn on the training features, NaN included) and
opens the graph. So evaluate, bench and predict score and time what `ecgtool package` ships: scikit-learn's own
predict_proba costs ~15 ms a window here (a Python loop over its 1,400 trees), the graph under 0.1 ms, and the
features ~15-25 ms either way (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecgtool.runtime.base import PredictorBase


@dataclass
class BaselinePredictor(PredictorBase):
    """runtime.Predictor for an rr_baseline folder."""

    kind: str = "baseline"

    def __post_init__(self) -> None:
        from ecgtool.baseline.classifier import FEATURES_FILE, load_baseline
        from ecgtool.baseline.onnx import classifier_session

        self.model, self.config = load_baseline(self.path)
        self.classes = list(self.model.classes)
        folder = self.path.parent if self.path.name == FEATURES_FILE else self.path
        with np.load(folder / FEATURES_FILE, allow_pickle=False) as npz:
            train_feats = npz["features"]
        self.session, self.class_index = classifier_session(self.model, train_feats, self.threads)
        self.note = ""

    def predict_proba_features(self, feats: np.ndarray) -> np.ndarray:
        """Class probabilities [N, len(classes)] of a feature matrix, by the ONNX graph."""
        from ecgtool.baseline.onnx import INPUT, OUTPUT

        proba = np.zeros((len(feats), len(self.classes)), dtype=np.float64)
        if len(feats):
            proba[:, self.class_index] = self.session.run([OUTPUT], {INPUT: np.asarray(feats, dtype=np.float32)})[0]
        return proba

    def predict(self, batch: np.ndarray) -> np.ndarray:
        from ecgtool.baseline.classifier import proba_logits
        from ecgtool.baseline.features import extract_features

        m: Any = self.model
        feats = extract_features(np.asarray(batch, dtype=np.float32), m.sampling_rate, m.channel, progress=False)
        return proba_logits(self.predict_proba_features(feats))


def matches(p: Path) -> bool:
    from ecgtool.baseline.classifier import is_baseline_folder

    return is_baseline_folder(p)


def open_predictor(p: Path, **kw) -> BaselinePredictor:
    return BaselinePredictor(Path(p), threads=kw.get("threads"))
