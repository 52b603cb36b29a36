"""Knowledge distillation (Hinton et al. 2015): a small student learns from a teacher artifact's soft labels.

loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, labels)

The teacher is any artifact `runtime.load` opens (PyTorch folder, ONNX, OpenVINO IR, ...). Its logits for
the training split are computed once, in batches, cached in memory and in `teacher_logits.npy` in the
student's folder; training then runs through `fit.fit` with the loss above (early stopping on
validation cross-entropy, best weights, progress bar and history as for `ecgtool train`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import click
import numpy as np
import torch
import torch.nn.functional as F

from ecgtool.core.errors import BadInput
from ecgtool.core.names import CONFIG, TEACHER_LOGITS, WEIGHTS
from ecgtool.train import defaults as D
from ecgtool.core.ui import quiet_option



def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float = 4.0, alpha: float = 0.7, weight: torch.Tensor | None = None) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels), mean over the batch.

    The T^2 factor keeps the soft term's gradients on the scale of the hard term's (Hinton et al. 2015).
    """
    t = float(temperature)
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)
    hard = F.cross_entropy(student_logits, labels, weight=weight)
    return alpha * soft + (1.0 - alpha) * hard


class TeacherLogits:
    """Teacher logits of training records by their dataset index (fit hands each batch's indices)."""

    def __init__(self, indices: np.ndarray, logits: np.ndarray) -> None:
        self._row = {int(r): i for i, r in enumerate(np.asarray(indices))}
        self._logits = torch.from_numpy(np.asarray(logits, dtype=np.float32))

    def __call__(self, idx: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        try:
            rows = [self._row[int(r)] for r in idx]
        except KeyError:
            raise RuntimeError("a training batch holds a record without teacher logits") from None
        return self._logits[rows].to(device)


def make_loss_fn(teacher: TeacherLogits, temperature: float, alpha: float) -> Callable:
    """A `fit.fit` loss_fn(model, x, y, criterion, idx) computing the distillation loss of a batch."""

    def loss_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: Any, idx: np.ndarray) -> torch.Tensor:
        return distillation_loss(model(x), teacher(idx, x.device), y, temperature, alpha,
                                 getattr(criterion, "weight", None))

    return loss_fn


def _teacher_file(teacher: Path) -> Path:
    """The file whose hash identifies the teacher (a folder's weights, else the artifact itself)."""
    if teacher.is_dir():
        for name in (WEIGHTS, CONFIG):
            if (teacher / name).exists():
                return teacher / name
    return teacher


def _artifact_stats(path: Path, length: int, in_channels: int) -> dict:
    """Params, MACs (family models only) and size on disk (MB) of an artifact."""
    from ecgtool.core.artifacts import find_config, size_on_disk_mb
    from ecgtool.models import ARCHS, build_model, model_stats

    row: dict[str, Any] = {"params": None, "macs": None}
    try:
        cfg = find_config(path)
        if cfg.get("arch") in ARCHS:
            row.update(model_stats(build_model(cfg), length=length, in_channels=in_channels))
    except BadInput:
        pass
    row["size_mb"] = size_on_disk_mb(path)
    return row


def distill(
    teacher: str | os.PathLike,
    student: str,
    data: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    width: int = 16,
    temperature: float = 4.0,
    alpha: float = 0.7,
    epochs: int = D.EPOCHS,
    batch_size: int = D.BATCH_SIZE,
    lr: float = D.LR,
    patience: int = D.PATIENCE,
    seed: int = 0,
    device: str = "auto",
    threads: int | None = None,
    class_weights: str | None = None,
) -> dict:
    """Distil `teacher` (any artifact) into the registered model `student` at `width`; return the comparison.

    Writes OUT (default RUN/<student>-distilled, RUN = the teacher's run folder): model.safetensors,
    config.json (extra: teacher, teacher_sha256, temperature, alpha, recipe), history.csv, training.png,
    metrics.json (test split), teacher_logits.npy; each recorded in the run's manifest with parent = teacher.
    Returns {"teacher": {...}, "student": {...}, "out": path} with params, MACs, size (MB) and test macro-F1.
    """
    from ecgtool.core.files import sha256
    from ecgtool.data.dataset import train_counts
    from ecgtool.data.preprocess import spec_from_meta
    from ecgtool.models import get_model
    from ecgtool.train.fit import fit

    teacher = Path(teacher)
    ds, pred, out = _check_inputs(teacher, student, data, out, temperature, alpha, class_weights, threads)
    train_idx = np.sort(ds.indices("train"))
    t0 = time.perf_counter()
    logits = _teacher_logits(pred, teacher, ds, train_idx)
    teacher_seconds = time.perf_counter() - t0
    recipe = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "patience": patience, "seed": seed,
              "class_weights": class_weights, "dataset": str(ds.root.resolve()), "input_length": int(ds.signals.shape[2]),
              "sampling_rate": ds.sampling_rate}
    kd = {"teacher": str(teacher.resolve()), "teacher_sha256": sha256(_teacher_file(teacher)),
          "temperature": temperature, "alpha": alpha, "teacher_kind": pred.kind, "teacher_precision": pred.precision}
    torch.manual_seed(seed)
    model = get_model(student, width=width, in_channels=int(ds.signals.shape[1]), num_classes=len(ds.classes),
                      classes=ds.classes, preprocessing=spec_from_meta(ds.meta),
                      extra={**recipe, **kd, "train_counts": train_counts(ds)})
    start = time.perf_counter()
    model, history = fit(model, ds, epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, device=device,
                         class_weights=None if class_weights == "none" else class_weights, seed=seed,
                         desc=f"distil {student}",
                         loss_fn=make_loss_fn(TeacherLogits(train_idx, logits), temperature, alpha))
    best = next((h for h in history if h.get("best")), {})
    model.config.extra.update({"epochs_run": len(history), "best_epoch": best.get("epoch"),
                               "best_val_loss": best.get("val_loss"),
                               "train_seconds": round(time.perf_counter() - start, 1),
                               "teacher_logits_seconds": round(teacher_seconds, 2)})
    return _write_student(out, model.cpu(), history, logits, teacher, pred, ds, kd, student, width, threads)


def _check_inputs(teacher: Path, student: str, data: Any, out: Any, temperature: float, alpha: float,
                  class_weights: str | None, threads: int | None) -> tuple[Any, Any, Path]:
    """(dataset, teacher predictor, output folder), or BadInput naming what is wrong."""
    from ecgtool.core.artifacts import is_model_folder
    from ecgtool.core.manifest import find_run_root
    from ecgtool.data.dataset import load_dataset
    from ecgtool.models import list_models
    from ecgtool.runtime import load
    from ecgtool.train.fit import check_splits

    if not teacher.exists():
        raise BadInput(f"{teacher}: no such file or folder")
    if student not in list_models():
        raise BadInput(f"--student {student}: not a registered model (choose from {', '.join(list_models())})")
    if temperature <= 0 or not 0.0 <= alpha <= 1.0:
        raise BadInput(f"{teacher}: --temperature must be > 0 and --alpha in [0, 1] (got {temperature}, {alpha})")
    if class_weights not in (None, "none", "auto"):
        raise BadInput(f"--class-weights {class_weights}: choose none or auto")
    ds = load_dataset(data)
    check_splits(ds)
    if threads:
        torch.set_num_threads(threads)
    pred = load(teacher, **({"threads": threads} if threads else {}))
    if list(pred.classes or []) != list(ds.classes):
        raise BadInput(f"{teacher}: teacher classes ({', '.join(pred.classes or ['none'])}) differ from the "
                       f"dataset's ({', '.join(ds.classes)}) in {ds.root / 'meta.json'}")
    out = Path(out) if out else find_run_root(teacher) / f"{student}-distilled"
    if is_model_folder(out):
        raise BadInput(f"{out}: already holds a model; choose another --out")
    return ds, pred, out


def _teacher_logits(pred: Any, teacher: Path, ds: Any, train_idx: np.ndarray) -> np.ndarray:
    from ecgtool.evaluate.artifact import predict_batches

    logits = predict_batches(pred, ds.signals, train_idx, desc="teacher logits").astype(np.float32)
    if logits.shape != (len(train_idx), len(ds.classes)):
        raise BadInput(f"{teacher}: gives logits of shape {logits.shape}, expected ({len(train_idx)}, {len(ds.classes)})")
    return logits


def _write_student(out: Path, model: Any, history: list[dict], logits: np.ndarray, teacher: Path, pred: Any, ds: Any,
                   kd: dict, student: str, width: int, threads: int | None) -> dict:
    """The student's folder (weights, config, logits, history, curves, metrics), each recorded; the comparison."""
    from ecgtool.core.artifacts import size_on_disk_mb
    from ecgtool.core.files import write_json
    from ecgtool.core.manifest import find_run_root, record_artifact
    from ecgtool.core.names import CURVES, HISTORY, METRICS
    from ecgtool.evaluate.artifact import evaluate_artifact
    from ecgtool.models import model_stats, save_model
    from ecgtool.train.fit import curves_png, write_history

    length, channels = int(ds.signals.shape[2]), int(ds.signals.shape[1])
    save_model(out, model)
    _save_npy(out / TEACHER_LOGITS, logits)
    write_history(out / HISTORY, history)
    curves_png(history, out / CURVES, title=f"{student} (width {width}) distilled from {teacher.name}")
    metrics = evaluate_artifact(out, ds, split="test", threads=threads)
    stats = model_stats(model, length=length, in_channels=channels)
    teacher_metrics = evaluate_artifact(teacher, ds, split="test", threads=threads)
    s_row = {"model": f"{student} w{width} (student)", **stats, "size_mb": size_on_disk_mb(out),
             "macro_f1": metrics["macro_f1"], "accuracy": metrics["accuracy"]}
    t_row = {"model": f"{teacher.name} (teacher, {pred.kind} {pred.precision})",
             **_artifact_stats(teacher, length, channels),
             "macro_f1": teacher_metrics["macro_f1"], "accuracy": teacher_metrics["accuracy"]}
    metrics["distillation"] = {**kd, "teacher_row": t_row, "student_row": s_row}
    write_json(out / METRICS, metrics)
    weights = out / WEIGHTS
    run = find_run_root(weights)
    teacher_file = _teacher_file(teacher)
    record_artifact(weights, run_dir=run, parent=teacher_file, extra={"params": stats["params"], "macs": stats["macs"],
                                                                     "distilled_from": str(teacher)})
    record_artifact(out / TEACHER_LOGITS, run_dir=run, parent=teacher_file)
    for name in (CONFIG, HISTORY, CURVES, METRICS):
        record_artifact(out / name, run_dir=run, parent=weights)
    return {"out": str(out), "teacher": t_row, "student": s_row, "epochs_run": len(history)}


def _save_npy(path: Path, array: np.ndarray) -> None:
    from ecgtool.core.files import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


@click.command("distill")
@click.option("--teacher", required=True, type=click.Path(path_type=Path),
              help="Teacher artifact (model folder, .onnx, .xml, ...).")
@click.option("--student", required=True, help="Registered student model, e.g. se_resnet18 (see `ecgtool models`).")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Prepared dataset folder.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Student folder (default RUN/<student>-distilled).")
@click.option("--width", type=click.IntRange(1), help="Student base width (default 16).")
@click.option("--temperature", type=click.FloatRange(0, min_open=True), help="Softmax temperature T (default 4).")
@click.option("--alpha", type=click.FloatRange(0, 1), help="Weight of the soft (teacher) term (default 0.7).")
@click.option("--epochs", type=click.IntRange(1), help=f"Most epochs (default {D.EPOCHS}).")
@click.option("--batch-size", type=click.IntRange(2), help=f"Records per batch (default {D.BATCH_SIZE}).")
@click.option("--lr", type=click.FloatRange(0, min_open=True), help=f"Adam learning rate (default {D.LR:g}).")
@click.option("--patience", type=click.IntRange(1), help=f"Early-stopping patience in epochs (default {D.PATIENCE}).")
@click.option("--seed", type=int, help="Seed (default 0).")
@click.option("--device", help="auto, cpu or cuda.")
@click.option("--threads", type=click.IntRange(1), help="CPU threads for torch and the teacher.")
@click.option("--class-weights", type=click.Choice(["none", "auto"]),
              help="auto: inverse-frequency weights in the hard term.")
@quiet_option
def distill_command(teacher: Path, student: str, data: Path, **options: Any) -> None:
    """Distil a teacher artifact into a small student; print teacher vs student (params, MACs, size, macro-F1)."""
    from ecgtool.core.ui import print_table

    given = {k: v for k, v in options.items() if v is not None}
    r = distill(teacher, student, data, **given)
    print_table([r["teacher"], r["student"]], ["model", "params", "macs", "size_mb", "macro_f1", "accuracy"],
                title=f"distillation on {Path(data).name}/test")
    click.echo(f"wrote {r['out']}")
