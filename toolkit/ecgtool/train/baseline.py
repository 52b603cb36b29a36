"""Training the RR baseline (features + gradient-boosted trees) into a run folder, like a deep model."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ecgtool.baseline.classifier import ARCH, DEFAULT_PARAMS, FEATURES_FILE, RRBaseline, save_baseline
from ecgtool.core.files import write_json
from ecgtool.core.manifest import record_artifact
from ecgtool.core.names import CONFIG, CONFUSION, METRICS
from ecgtool.data.preprocess import spec_from_meta


def _lead_channel(dataset) -> int:
    """Lead II where the dataset names its leads (12-lead data), else the first channel."""
    leads = dataset.meta.get("leads") or dataset.meta.get("lead")
    if isinstance(leads, list) and "II" in leads and len(leads) == dataset.signals.shape[1]:
        return leads.index("II")
    return 0


def train_baseline(data: str | os.PathLike | Any, out: str | os.PathLike, *, seed: int = 0,
                   params: dict | None = None, channel: int | None = None, name: str = ARCH,
                   command: str | None = None, workers: int | str | None = None) -> dict:
    """Fit the baseline on the train split of a prepared dataset and write RUN/<name>/ like a deep model.

    Writes features.npz, config.json, metrics.json (test metrics, plus `val` and timing) and
    confusion.png, each recorded in RUN/manifest.json. The features of every window come from, or go to,
    the dataset's feature cache (baseline.cache), computed in `workers` processes
    (baseline.features.feature_workers; None: auto). Returns the summary row (train's layout: model,
    arch, accuracy, macro_f1, weighted_f1, f1_<class>..., train_seconds, val_macro_f1, feature ms per window).
    """
    from ecgtool.baseline.cache import cached_feature_table, window_feature_table
    from ecgtool.data.dataset import PreparedDataset, load_dataset, train_counts
    from ecgtool.evaluate.metrics import compute_metrics, confusion_png

    dataset = data if isinstance(data, PreparedDataset) else load_dataset(data)
    run, folder = Path(out), Path(out) / name
    ch = _lead_channel(dataset) if channel is None else channel
    t0 = time.perf_counter()
    # every window's features, from the dataset's cache when `train --rr-head` or `data info --rates` made it
    table = cached_feature_table(dataset, ch)
    cached = table is not None
    if not cached:
        table = window_feature_table(dataset, ch, workers=workers)
    feats = {split: table[np.sort(dataset.indices(split))] for split in ("train", "val", "test")}
    # per window computed; None when read from the cache (nothing was timed)
    feat_ms = None if cached else round(1000.0 * (time.perf_counter() - t0) / max(1, len(table)), 3)
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
              "feature_ms_per_window": feat_ms, "features_from_cache": cached, "fit_seconds": round(fit_s, 3)}
    result["summary"] = summary_row(name, result, seconds)
    extra = {"in_channels": int(dataset.signals.shape[1]), "length": int(dataset.signals.shape[2]),
             "data": str(dataset.root), "train_counts": train_counts(dataset),
             "preprocessing": spec_from_meta(dataset.meta)}
    save_baseline(folder, model, feats["train"], y_train, extra=extra)
    write_json(folder / METRICS, result)
    confusion_png(metrics["test"]["confusion_matrix"], dataset.classes, folder / CONFUSION,
                  title=f"{name} on {dataset.root.name}/test")
    for fname in (FEATURES_FILE, CONFIG, METRICS, CONFUSION):
        record_artifact(folder / fname, parent=dataset.root if fname == FEATURES_FILE else folder / FEATURES_FILE,
                        command=command, run_dir=run,
                        extra={"macro_f1": result["macro_f1"]} if fname == METRICS else None)
    return result["summary"]


def summary_row(name: str, metrics: dict, seconds: float) -> dict:
    """A row of RUN/summary.csv in train's column layout (no depth, width, params or MACs for trees)."""
    row = {"model": name, "arch": ARCH, "depth": None, "width": None, "params": None, "macs": None,
           "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "weighted_f1": metrics["weighted_f1"]}
    # a class without test records has no F1 (None, printed "-"), not 0
    row.update({f"f1_{c}": (v["f1"] if v["support"] else None) for c, v in metrics["per_class"].items()})
    row.update({"epochs_run": None, "best_epoch": None, "train_seconds": seconds,
                "val_macro_f1": metrics["val"]["macro_f1"], "feature_ms_per_window": metrics["feature_ms_per_window"]})
    return row
