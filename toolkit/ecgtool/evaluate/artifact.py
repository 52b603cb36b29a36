"""`evaluate`: metrics of any artifact on a prepared dataset split.

`evaluate_artifact` opens the artifact through `ecgtool.runtime.load`, so F1 is measured on what ships
(PyTorch folder, ONNX, OpenVINO, baseline, ...). A model and a dataset may have different class lists:
classes are matched by name, records of classes the model does not know, or has an output for but never
trained on (config.json's `train_counts`), are left out and reported.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
import numpy as np

from ecgtool.core.artifacts import trained_classes
from ecgtool.core.errors import BadInput
from ecgtool.core.files import write_json
from ecgtool.core.manifest import record_in_run
from ecgtool.core.ui import format_cell, info, print_table, progress_bar, quiet_option, warn
from ecgtool.data.dataset import PreparedDataset, deployment_signals, load_dataset, require_labels
from ecgtool.evaluate.metrics import compute_metrics, confusion_png, map_classes, per_class_rows


def predict_batches(predictor, signals: np.ndarray, indices: np.ndarray, batch_size: int = 256,
                    desc: str = "predict") -> np.ndarray:
    """Logits [N, K] for signals[indices], read from the memory map one batch at a time (at most the
    predictor's score_batch windows per call, runtime.base.scoring_batch)."""
    from ecgtool.runtime.base import scoring_batch

    batch_size = scoring_batch(predictor, batch_size)
    outs = []
    with progress_bar(desc, len(indices)) as bar:
        for start in range(0, len(indices), batch_size):
            idx = indices[start : start + batch_size]
            outs.append(np.asarray(predictor.predict(np.ascontiguousarray(signals[idx], dtype=np.float32))))
            bar.advance(len(idx))
    return np.concatenate(outs) if outs else np.zeros((0, 0), dtype=np.float32)


def evaluate_artifact(path: str | os.PathLike, data: str | os.PathLike | PreparedDataset, split: str = "test",
                      batch_size: int = 256, threads: int | None = None, trained_only: bool = True) -> dict:
    """Predict a split of a prepared dataset with any artifact and compute metrics (model's class order).

    `trained_only=False` keeps the records of classes the model never trained on (scored as its misses; the
    rule before models recorded `train_counts`, kept for benchmarks that compare with figures made under it)."""
    from ecgtool.runtime import load
    from ecgtool.runtime.base import show_note

    dataset = data if isinstance(data, PreparedDataset) else load_dataset(data)
    opts = {"threads": threads} if threads else {}
    predictor = load(path, **opts)
    show_note(predictor, path)
    model_classes = list(predictor.classes or dataset.classes)
    mapping = map_classes(model_classes, dataset.classes, source=str(dataset.root),
                          trained=trained_classes(predictor.config or {}) if trained_only else None)
    signals = deployment_signals(dataset, predictor.config)  # a --leads any model: the deployment lead

    idx = np.sort(dataset.indices(split))
    require_labels(dataset, idx, "scoring (evaluate, bench)")
    true_data = dataset.labels[idx]
    known = mapping.to_model[true_data] >= 0
    excluded = {c: int(np.sum(true_data == i)) for i, c in enumerate(dataset.classes)
                if c in mapping.missing_in_model + mapping.untrained_in_model and np.any(true_data == i)}
    idx, true_model = idx[known], mapping.to_model[true_data[known]]
    if len(idx) == 0:
        raise BadInput(f"{dataset.root}: split {split!r} has no records of a class the model knows")
    logits = predict_batches(predictor, signals, idx, batch_size, desc=f"evaluate {split}")
    if logits.shape[1] != len(model_classes):
        raise BadInput(f"{path}: {logits.shape[1]} outputs for {len(model_classes)} classes in its config")
    metrics = compute_metrics(true_model, logits.argmax(axis=1), model_classes)
    metrics.update({
        "artifact": str(path),
        "kind": predictor.kind,
        "precision": predictor.precision,
        "f1_source": predictor.f1_source,
        "data": str(dataset.root),
        "split": split,
        "classes_missing_in_model": mapping.missing_in_model,
        "classes_untrained_in_model": mapping.untrained_in_model,
        # by records, not names: a class listed in meta.json but without records in this split is missing too
        "classes_missing_in_data": [c for i, c in enumerate(model_classes)
                                    if not np.any(true_model == i) and c not in mapping.untrained_in_model],
        "excluded_records": excluded,
    })
    return metrics


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
    for p in (out, png):  # recorded in the artifact's run; a lone file's evaluation (/tmp/x.onnx) in none
        record_in_run(p, parent=metrics["artifact"], extra={"macro_f1": metrics["macro_f1"]})
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
    for key, what in (("classes_missing_in_model", "missing in model"),
                      ("classes_untrained_in_model", "the model never trained on")):
        if metrics.get(key):
            n = sum(metrics["excluded_records"].get(c, 0) for c in metrics[key])
            warn(f"classes {what}: {', '.join(metrics[key])} ({n} records excluded)")
    if metrics["classes_missing_in_data"]:
        warn(f"classes missing in data: {', '.join(metrics['classes_missing_in_data'])}")
    print_table(per_class_rows(metrics), ["class", "precision", "recall", "f1", "support"],
                title=f"{artifact} on {data} ({metrics['split']}, {metrics['n']} records)")
    click.echo(f"accuracy {format_cell(metrics['accuracy'])}  macro-F1 {format_cell(metrics['macro_f1'])}  "
               f"weighted F1 {format_cell(metrics['weighted_f1'])}")
    json_path, png = write_evaluation(metrics, out or default_output(artifact, metrics["data"], metrics["split"]))
    info(f"wrote {json_path} and {png}")
