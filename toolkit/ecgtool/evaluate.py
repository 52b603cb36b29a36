"""Metrics of any artifact on a prepared dataset: accuracy, macro-F1 (the headline), per-class table, confusion.

`evaluate_artifact` opens the artifact through `ecgtool.runtime.load`, so F1 is measured on what ships
(PyTorch folder, ONNX, OpenVINO, baseline, ...). A model and a dataset may have different class lists:
classes are matched by name, records of classes the model does not know are left out and reported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import click
import numpy as np

from .artifacts import record_artifact, write_json
from .data.dataset import PreparedDataset, load_dataset
from .errors import BadInput
from .ui import format_cell, info, print_table, progress_bar, quiet_option, warn


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


def map_classes(model_classes: Sequence[str], data_classes: Sequence[str], source: str = "dataset") -> ClassMapping:
    """Match class lists by name; BadInput naming `source` when they share no class."""
    index = {c: i for i, c in enumerate(model_classes)}
    to_model = np.array([index.get(c, -1) for c in data_classes], dtype=np.int64)
    if not (to_model >= 0).any():
        raise BadInput(f"{source}: no class in common with the model (model: {', '.join(model_classes)}; "
                       f"data: {', '.join(data_classes)})")
    return ClassMapping(
        to_model=to_model,
        missing_in_model=[c for c in data_classes if c not in index],
        missing_in_data=[c for c in model_classes if c not in set(data_classes)],
    )


def predict_batches(predictor, signals: np.ndarray, indices: np.ndarray, batch_size: int = 256,
                    desc: str = "predict") -> np.ndarray:
    """Logits [N, K] for signals[indices], read from the memory map one batch at a time."""
    outs = []
    with progress_bar(desc, len(indices)) as bar:
        for start in range(0, len(indices), batch_size):
            idx = indices[start : start + batch_size]
            outs.append(np.asarray(predictor.predict(np.ascontiguousarray(signals[idx], dtype=np.float32))))
            bar.advance(len(idx))
    return np.concatenate(outs) if outs else np.zeros((0, 0), dtype=np.float32)


def evaluate_artifact(path: str | os.PathLike, data: str | os.PathLike | PreparedDataset, split: str = "test",
                      batch_size: int = 256, threads: int | None = None) -> dict:
    """Predict a split of a prepared dataset with any artifact and compute metrics (model's class order)."""
    from .runtime import load

    dataset = data if isinstance(data, PreparedDataset) else load_dataset(data)
    opts = {"threads": threads} if threads else {}
    predictor = load(path, **opts)
    model_classes = list(predictor.classes or dataset.classes)
    mapping = map_classes(model_classes, dataset.classes, source=str(dataset.root))
    in_ch = (predictor.config or {}).get("in_channels")
    if in_ch and in_ch != dataset.signals.shape[1]:
        raise BadInput(f"{dataset.root}: signals have {dataset.signals.shape[1]} channel(s), the model expects {in_ch}")

    idx = np.sort(dataset.indices(split))
    true_data = dataset.labels[idx]
    known = mapping.to_model[true_data] >= 0
    excluded = {c: int(np.sum(true_data == i)) for i, c in enumerate(dataset.classes)
                if c in mapping.missing_in_model and np.any(true_data == i)}
    idx, true_model = idx[known], mapping.to_model[true_data[known]]
    if len(idx) == 0:
        raise BadInput(f"{dataset.root}: split {split!r} has no records of a class the model knows")
    logits = predict_batches(predictor, dataset.signals, idx, batch_size, desc=f"evaluate {split}")
    if logits.shape[1] != len(model_classes):
        raise BadInput(f"{path}: {logits.shape[1]} outputs for {len(model_classes)} classes in its config")
    metrics = compute_metrics(true_model, logits.argmax(axis=1), model_classes)
    metrics.update({
        "artifact": str(path),
        "kind": predictor.kind,
        "precision": predictor.precision,
        "data": str(dataset.root),
        "split": split,
        "classes_missing_in_model": mapping.missing_in_model,
        # by records, not names: a class listed in meta.json but without records in this split is missing too
        "classes_missing_in_data": [c for i, c in enumerate(model_classes) if not np.any(true_model == i)],
        "excluded_records": excluded,
    })
    return metrics


def confusion_png(cm: Sequence[Sequence[int]], classes: Sequence[str], path: str | os.PathLike, title: str = "") -> Path:
    """Confusion matrix as a PNG with class names (rows: true, columns: predicted), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .artifacts import atomic_path

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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def per_class_rows(metrics: dict) -> list[dict]:
    return [{"class": c, **{k: v for k, v in row.items()}} for c, row in metrics["per_class"].items()]


def default_output(artifact: str | os.PathLike, data_root: str | os.PathLike, split: str) -> Path:
    """Where `evaluate` writes its JSON by default: beside the artifact (inside a model folder)."""
    a = Path(artifact)
    tag = f"eval-{Path(data_root).resolve().name}-{split}.json"
    return a / tag if a.is_dir() else a.parent / f"{a.stem}.{tag}"


def write_evaluation(metrics: dict, out: str | os.PathLike) -> tuple[Path, Path]:
    """Write metrics JSON and the confusion PNG beside it; record both in the run's manifest."""
    out = Path(out)
    png = out.with_suffix(".png")
    write_json(out, metrics)
    title = f"{Path(metrics['artifact']).name} on {Path(metrics['data']).name}/{metrics['split']}"
    confusion_png(metrics["confusion_matrix"], metrics["classes"], png, title)
    for p in (out, png):
        record_artifact(p, parent=metrics["artifact"], extra={"macro_f1": metrics["macro_f1"]})
    return out, png


@click.command("evaluate")
@click.argument("artifact", type=click.Path())
@click.option("--data", "data", required=True, type=click.Path(), help="Prepared dataset folder.")
@click.option("--split", type=click.Choice(["test", "val", "train", "all"]), default=None, help="Split (default test).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Metrics JSON (default: beside ARTIFACT).")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Records per inference batch.")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads for inference.")
@quiet_option
def evaluate_command(artifact: str, data: str, split: str | None, out: str | None, batch_size: int | None,
                     threads: int | None) -> None:
    """Accuracy, macro-F1 and per-class metrics of ARTIFACT on a prepared dataset; writes JSON + confusion PNG."""
    opts = {k: v for k, v in {"split": split, "batch_size": batch_size, "threads": threads}.items() if v is not None}
    metrics = evaluate_artifact(artifact, data, **opts)
    if metrics["classes_missing_in_model"]:
        n = sum(metrics["excluded_records"].values())
        warn(f"classes missing in model: {', '.join(metrics['classes_missing_in_model'])} ({n} records excluded)")
    if metrics["classes_missing_in_data"]:
        warn(f"classes missing in data: {', '.join(metrics['classes_missing_in_data'])}")
    print_table(per_class_rows(metrics), ["class", "precision", "recall", "f1", "support"],
                title=f"{artifact} on {data} ({metrics['split']}, {metrics['n']} records)")
    click.echo(f"accuracy {format_cell(metrics['accuracy'])}  macro-F1 {format_cell(metrics['macro_f1'])}  "
               f"weighted F1 {format_cell(metrics['weighted_f1'])}")
    json_path, png = write_evaluation(metrics, out or default_output(artifact, metrics["data"], metrics["split"]))
    info(f"wrote {json_path} and {png}")
