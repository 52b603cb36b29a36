"""The classical floor every deep model must beat: RR-interval and beat-shape features + gradient boosting.

R peaks come from wfdb's XQRS detector on each 10-s window (min-max normalised, 200 Hz in a prepared
dataset); from them ~30 rhythm features are computed (rate, RR irregularity, premature beats with
pauses, QRS width, P-wave presence and PR interval, atrial activity left after cancelling the QRST
template). A scikit-learn HistGradientBoostingClassifier with balanced class weights classifies them;
it takes NaN natively, so a window with 0 or 1 detected beats still gets a prediction.

Persistence, without pickle (DESIGN: weights load without unpickling untrusted code): the model
folder stores the *training features and labels* (`features.npz`, plain float/int arrays, read with
allow_pickle=False) and the classifier's hyper-parameters (`config.json`). Loading refits the
classifier deterministically (fixed random_state, no early stopping, one thread; for the 3,561
MIT-BIH training windows 2.6 s on a 2-core machine at load average 1.5, 22.5 s at load 14). That is cheap, safe, needs no extra dependency, and keeps the exact scikit-learn
model; a fingerprint of the training-set probabilities in config.json detects a refit that differs
(e.g. another scikit-learn version) and warns. The alternative, skl2onnx, would add a dependency for
a model whose costly part (R-peak detection) runs in Python anyway.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import atomic_path, read_json, record_artifact, write_json
from .errors import BadInput
from .rr_features import FEATURE_NAMES, detect_beats, extract_features, window_features
from .runtime import PredictorBase

__all__ = ["ARCH", "FEATURE_NAMES", "RRBaseline", "detect_beats", "extract_features", "window_features",
           "save_baseline", "load_baseline", "is_baseline_folder", "train_baseline", "BaselinePredictor"]

ARCH = "rr_baseline"
FEATURES_FILE = "features.npz"
CONFIG_FILE = "config.json"

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
        """Log-probabilities [N, K] float32 of windows [N, C, L] (clipped at log(1e-7) so argmax is defined)."""
        feats = extract_features(np.asarray(signals), self.sampling_rate, self.channel, progress=progress)
        return np.log(np.clip(self.predict_proba_features(feats), 1e-7, 1.0)).astype(np.float32)

    def fingerprint(self, feats: np.ndarray) -> list[float]:
        """Mean training-set probability per class: a cheap check that a refit reproduced the model."""
        return [round(float(v), 8) for v in self.predict_proba_features(feats).mean(axis=0)]


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
    from .ui import warn

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


def _lead_channel(dataset) -> int:
    """Lead II where the dataset names its leads (12-lead data), else the first channel."""
    leads = dataset.meta.get("leads") or dataset.meta.get("lead")
    if isinstance(leads, list) and "II" in leads and len(leads) == dataset.signals.shape[1]:
        return leads.index("II")
    return 0


def train_baseline(data: str | os.PathLike | Any, out: str | os.PathLike, *, seed: int = 0,
                   params: dict | None = None, channel: int | None = None, name: str = ARCH,
                   command: str | None = None) -> dict:
    """Fit the baseline on the train split of a prepared dataset and write RUN/<name>/ like a deep model.

    Writes features.npz, config.json, metrics.json (test metrics, plus `val` and timing) and
    confusion.png, each recorded in RUN/manifest.json. Returns the summary row (train's layout: model,
    arch, accuracy, macro_f1, weighted_f1, f1_<class>..., train_seconds, val_macro_f1, feature ms per window).
    """
    from .data.dataset import PreparedDataset, load_dataset
    from .evaluate import compute_metrics, confusion_png

    dataset = data if isinstance(data, PreparedDataset) else load_dataset(data)
    run, folder = Path(out), Path(out) / name
    ch = _lead_channel(dataset) if channel is None else channel
    t0 = time.perf_counter()
    feats: dict[str, np.ndarray] = {}
    for split in ("train", "val", "test"):
        idx = np.sort(dataset.indices(split))
        feats[split] = extract_features(dataset.signals, dataset.sampling_rate, ch, indices=idx)
    feat_ms = 1000.0 * (time.perf_counter() - t0) / max(1, sum(len(f) for f in feats.values()))
    y_train = dataset.labels[np.sort(dataset.indices("train"))]
    t1 = time.perf_counter()
    model = RRBaseline(classes=dataset.classes, sampling_rate=dataset.sampling_rate, channel=ch, seed=seed,
                       params={**DEFAULT_PARAMS, **(params or {})}).fit(feats["train"], y_train)
    fit_s = time.perf_counter() - t1

    metrics: dict[str, Any] = {}
    for split in ("test", "val"):
        y = dataset.labels[np.sort(dataset.indices(split))]
        pred = model.predict_proba_features(feats[split]).argmax(axis=1)
        metrics[split] = compute_metrics(y, pred, dataset.classes)
    seconds = round(time.perf_counter() - t0, 2)
    # The same shape as a deep model's metrics.json (evaluate_artifact's fields + a summary row).
    result = {**metrics["test"], "artifact": str(folder), "kind": "baseline", "precision": "fp32",
              "data": str(dataset.root), "split": "test", "classes_missing_in_model": [],
              "classes_missing_in_data": [], "excluded_records": {}, "val": metrics["val"],
              "feature_ms_per_window": round(feat_ms, 3), "fit_seconds": round(fit_s, 3)}
    result["summary"] = summary_row(name, result, seconds)
    extra = {"in_channels": int(dataset.signals.shape[1]), "length": int(dataset.signals.shape[2]),
             "data": str(dataset.root), "train_counts": dataset.meta.get("counts", {}).get("train")}
    save_baseline(folder, model, feats["train"], y_train, extra=extra)
    write_json(folder / "metrics.json", result)
    confusion_png(metrics["test"]["confusion_matrix"], dataset.classes, folder / "confusion.png",
                  title=f"{name} on {dataset.root.name}/test")
    for fname in (FEATURES_FILE, CONFIG_FILE, "metrics.json", "confusion.png"):
        record_artifact(folder / fname, parent=dataset.root if fname == FEATURES_FILE else folder / FEATURES_FILE,
                        command=command, run_dir=run,
                        extra={"macro_f1": result["macro_f1"]} if fname == "metrics.json" else None)
    return result["summary"]


def summary_row(name: str, metrics: dict, seconds: float) -> dict:
    """A row of RUN/summary.csv in train's column layout (no depth, width, params or MACs for trees)."""
    row = {"model": name, "arch": ARCH, "depth": None, "width": None, "params": None, "macs": None,
           "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "weighted_f1": metrics["weighted_f1"]}
    row.update({f"f1_{c}": v["f1"] for c, v in metrics["per_class"].items()})
    row.update({"epochs_run": None, "best_epoch": None, "train_seconds": seconds,
                "val_macro_f1": metrics["val"]["macro_f1"], "feature_ms_per_window": metrics["feature_ms_per_window"]})
    return row


@dataclass
class BaselinePredictor(PredictorBase):
    """runtime.Predictor for an rr_baseline folder: features in Python, then the refitted classifier."""

    kind: str = "baseline"

    def __post_init__(self) -> None:
        self.model, self.config = load_baseline(self.path)
        self.classes = list(self.model.classes)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.model.predict_logits(np.asarray(batch, dtype=np.float32))


def _register() -> None:
    from .runtime import register_kind

    register_kind("baseline", is_baseline_folder, lambda p, **kw: BaselinePredictor(Path(p), threads=kw.get("threads")))


_register()
