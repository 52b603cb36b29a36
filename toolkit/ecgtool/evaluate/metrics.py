"""Metrics (scikit-learn): accuracy, macro-F1 (the headline, a fraction in [0, 1]), per-class table, confusion,
and the matching of a model's classes to a dataset's by name."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ecgtool.core.errors import BadInput


def compute_metrics(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict:
    """Accuracy, macro-F1, weighted F1, per-class precision/recall/F1/support and the confusion matrix.

    Labels are indices into `classes`. Macro- and weighted F1 average over the classes present in
    `y_true`; a prediction of a class absent from the data still counts as an error (it is a miss of
    the true class). Per-class rows list every class, support 0 included.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    k = len(classes)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ")
    labels = list(range(k))
    present = sorted(set(y_true.tolist()))
    prec, rec, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    if len(y_true):
        macro = float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
        weighted = float(f1_score(y_true, y_pred, labels=present, average="weighted", zero_division=0))
        acc = float(accuracy_score(y_true, y_pred))
    else:
        macro = weighted = acc = 0.0
    return {
        "n": int(len(y_true)),
        "accuracy": acc,
        "macro_f1": macro,
        "weighted_f1": weighted,
        "classes": list(classes),
        "per_class": {
            c: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


@dataclass
class ClassMapping:
    """How a dataset's class indices map to a model's: `to_model[data_index]` is a model index or -1."""

    to_model: np.ndarray
    missing_in_model: list[str]  # data classes the model cannot predict (their records are left out)
    missing_in_data: list[str]  # model classes the data does not have (predicting them is an error)
    untrained_in_model: list[str] = field(default_factory=list)  # data classes the model has but never trained on


def map_classes(model_classes: Sequence[str], data_classes: Sequence[str], source: str = "dataset",
                trained: set[str] | None = None) -> ClassMapping:
    """Match class lists by name; BadInput naming `source` when they share no class.

    `trained` (core.artifacts.trained_classes; None: unknown) names the model classes it had training windows
    of: records of a class it has an output for but never learnt are left out like those of a class it lacks
    (listed in `untrained_in_model`), so a macro-F1 averages over what the model was taught. Predicting such a
    class stays an error."""
    index = {c: i for i, c in enumerate(model_classes)}
    learnt = index if trained is None else {c: i for c, i in index.items() if c in trained}
    to_model = np.array([learnt.get(c, -1) for c in data_classes], dtype=np.int64)
    untrained = [c for c in data_classes if c in index and c not in learnt]
    if not (to_model >= 0).any():
        why = f"; never trained on: {', '.join(untrained)}" if untrained else ""
        raise BadInput(f"{source}: no class in common with the model (model: {', '.join(model_classes)}; "
                       f"data: {', '.join(data_classes)}{why})")
    return ClassMapping(
        to_model=to_model,
        missing_in_model=[c for c in data_classes if c not in index],
        missing_in_data=[c for c in model_classes if c not in set(data_classes)],
        untrained_in_model=untrained,
    )


def confusion_png(cm: Sequence[Sequence[int]], classes: Sequence[str], path: str | os.PathLike, title: str = "") -> Path:
    """Confusion matrix as a PNG with class names (rows: true, columns: predicted), written atomically."""
    from ecgtool.core.plots import pyplot, save_figure

    plt = pyplot()
    cm = np.asarray(cm)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * k, 0.8 + 0.6 * k), dpi=110)
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), classes, rotation=45, ha="right")
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=9)
    top = cm.max() if cm.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if top and cm[i, j] > top / 2 else "black")
    fig.tight_layout()
    return save_figure(fig, path)


def per_class_rows(metrics: dict) -> list[dict]:
    return [{"class": c, **{k: v for k, v in row.items()}} for c, row in metrics["per_class"].items()]
