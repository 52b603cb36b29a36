"""The classical floor every deep model must beat: RR-interval and beat-shape features + gradient boosting.

R peaks come from wfdb's XQRS detector on each 10-s window (min-max normalised, 200 Hz in a prepared
dataset); from them ~30 rhythm features are computed (rate, RR irregularity, premature beats with
pauses, QRS width, P-wave presence and PR interval, atrial activity left after cancelling the QRST
template). A scikit-learn HistGradientBoostingClassifier with balanced class weights classifies them;
it takes NaN natively, so a window with 0 or 1 detected beats still gets a prediction.

Persistence, without pickle (DESIGN: weights load without unpickling untrusted code): the model
folder stores the *training features and labels* (`features.npz`, plain float/int arrays, read with
allow_pickle=False) and the classifier's hyper-parameters (`config.json`). Loading refits the
classifier deterministically (fixed random_state, no early stopping, one thread; load times in
benchmarks/RESULTS.md). That is cheap, safe, needs no extra dependency, and keeps the exact scikit-learn
model; a fingerprint of the training-set probabilities in config.json detects a refit that differs
(e.g. another scikit-learn version) and warns. Deploy bundles, which carry no scikit-learn, get the
classifier as ONNX instead (baseline/onnx.py, skl2onnx, checked against this model when packaged).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecgtool.core.files import atomic_path, read_json, write_json
from ecgtool.core.errors import BadInput
from ecgtool.core.names import BASELINE_FEATURES, CONFIG
from ecgtool.baseline.features import FEATURE_NAMES, detect_beats, extract_features, window_features

__all__ = ["ARCH", "FEATURE_NAMES", "RRBaseline", "detect_beats", "extract_features", "window_features",
           "save_baseline", "load_baseline", "is_baseline_folder"]

ARCH = "rr_baseline"
FEATURES_FILE = BASELINE_FEATURES
CONFIG_FILE = CONFIG

#: Default classifier settings (recorded in config.json; small leaves so tiny datasets still split).
DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05, "max_iter": 200, "max_leaf_nodes": 15, "min_samples_leaf": 5,
    "l2_regularization": 1.0, "class_weight": "balanced", "early_stopping": False,
}


# --- the classifier -------------------------------------------------------------------------------------

@dataclass
class RRBaseline:
    """Features -> HistGradientBoostingClassifier; probabilities over `classes` (unseen classes get 0)."""

    classes: list[str]
    sampling_rate: float = 200.0
    channel: int = 0
    seed: int = 0
    params: dict = field(default_factory=lambda: dict(DEFAULT_PARAMS))
    clf: Any = field(default=None, repr=False)

    def fit(self, feats: np.ndarray, labels: np.ndarray) -> "RRBaseline":
        from sklearn.ensemble import HistGradientBoostingClassifier

        labels = np.asarray(labels, dtype=np.int64)
        if len(np.unique(labels)) < 2:
            raise BadInput(f"training data has {len(np.unique(labels))} class(es); the baseline needs at least 2")
        self.clf = HistGradientBoostingClassifier(random_state=self.seed, **self.params)
        with _one_thread():
            self.clf.fit(np.asarray(feats, dtype=np.float32), labels)
        return self

    def predict_proba_features(self, feats: np.ndarray) -> np.ndarray:
        """Class probabilities [N, len(classes)] of a feature matrix."""
        proba = np.zeros((len(feats), len(self.classes)), dtype=np.float64)
        if len(feats):
            with _one_thread():
                proba[:, self.clf.classes_] = self.clf.predict_proba(np.asarray(feats, dtype=np.float32))
        return proba

    def predict_logits(self, signals: np.ndarray, progress: bool = False) -> np.ndarray:
        """Log-probabilities [N, K] float32 of windows [N, C, L] (proba_logits) by scikit-learn."""
        feats = extract_features(np.asarray(signals), self.sampling_rate, self.channel, progress=progress)
        return proba_logits(self.predict_proba_features(feats))

    def fingerprint(self, feats: np.ndarray) -> list[float]:
        """Mean training-set probability per class: a cheap check that a refit reproduced the model."""
        return [round(float(v), 8) for v in self.predict_proba_features(feats).mean(axis=0)]


def proba_logits(proba: np.ndarray) -> np.ndarray:
    """The logits ecgtool reports for class probabilities [N, K]: their log, clipped at log(1e-7) so that argmax is
    defined (float32)."""
    return np.log(np.clip(np.asarray(proba, dtype=np.float64), 1e-7, 1.0)).astype(np.float32)


def _one_thread():
    """OpenMP limited to one thread: on a shared, oversubscribed CPU the gradient boosting's spinning
    OpenMP threads made a fit 10x slower (387 s vs 32 s for 3,561 MIT-BIH windows at load 11 on 2 cores)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def save_baseline(folder: str | os.PathLike, model: RRBaseline, feats: np.ndarray, labels: np.ndarray,
                  extra: dict | None = None) -> Path:
    """Write features.npz (training features + labels, no pickle) and config.json into a model folder."""
    import sklearn

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / FEATURES_FILE) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, features=np.asarray(feats, dtype=np.float32), labels=np.asarray(labels, dtype=np.int64))
    config = {
        "arch": ARCH,
        "classes": list(model.classes),
        "num_classes": len(model.classes),
        "in_channels": int((extra or {}).get("in_channels", 1)),
        "channel": model.channel,
        "sampling_rate": model.sampling_rate,
        "features": list(FEATURE_NAMES),
        "classifier": "sklearn.ensemble.HistGradientBoostingClassifier",
        "params": dict(model.params),
        "seed": model.seed,
        "sklearn_version": sklearn.__version__,
        "fit_check": model.fingerprint(feats),
        "weights": FEATURES_FILE,
        **{k: v for k, v in (extra or {}).items() if k != "in_channels"},
    }
    write_json(folder / CONFIG_FILE, config)
    return folder


def is_baseline_folder(path: str | os.PathLike) -> bool:
    """A folder (or its features.npz) whose config.json says arch rr_baseline."""
    p = Path(path)
    folder = p.parent if p.name == FEATURES_FILE else p
    if not (folder.is_dir() and (folder / CONFIG_FILE).exists() and (folder / FEATURES_FILE).exists()):
        return False
    try:
        return read_json(folder / CONFIG_FILE).get("arch") == ARCH
    except (ValueError, OSError):
        return False


def load_baseline(path: str | os.PathLike) -> tuple[RRBaseline, dict]:
    """Rebuild the classifier from a model folder by refitting on its stored features (no unpickling)."""
    from ecgtool.core.ui import warn

    p = Path(path)
    folder = p.parent if p.name == FEATURES_FILE else p
    if not is_baseline_folder(folder):
        raise BadInput(f"{folder}: not an rr_baseline model folder (needs {CONFIG_FILE} with arch {ARCH!r} and {FEATURES_FILE})")
    cfg = read_json(folder / CONFIG_FILE)
    try:
        with np.load(folder / FEATURES_FILE, allow_pickle=False) as npz:
            feats, labels = npz["features"], npz["labels"]
    except (ValueError, OSError, KeyError) as exc:
        raise BadInput(f"{folder / FEATURES_FILE}: cannot be read ({exc})") from None
    if feats.ndim != 2 or feats.shape[1] != len(FEATURE_NAMES) or labels.shape != (len(feats),):
        raise BadInput(f"{folder / FEATURES_FILE}: features {feats.shape} / labels {labels.shape} do not match "
                       f"the {len(FEATURE_NAMES)} features of this version")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(cfg["classes"])):
        raise BadInput(f"{folder / FEATURES_FILE}: label outside 0..{len(cfg['classes']) - 1}")
    model = RRBaseline(classes=list(cfg["classes"]), sampling_rate=float(cfg.get("sampling_rate", 200.0)),
                       channel=int(cfg.get("channel", 0)), seed=int(cfg.get("seed", 0)),
                       params=dict(cfg.get("params", DEFAULT_PARAMS))).fit(feats, labels)
    check = cfg.get("fit_check")
    if check is not None and not np.allclose(model.fingerprint(feats), check, atol=1e-5):
        warn(f"{folder}: refitted baseline differs from the saved one (scikit-learn {cfg.get('sklearn_version')} "
             f"then, another version now?); predictions may differ slightly")
    return model, cfg
