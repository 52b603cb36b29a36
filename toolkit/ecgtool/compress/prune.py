"""Structured channel pruning with Torch-Pruning, fine-tuning, and a before/after report.

Torch-Pruning's dependency graph finds every layer coupled to a channel (residual additions, the
squeeze-and-excitation gate, batch norms) and removes the channel from all of them, so the pruned
network is physically smaller, not masked. The classifier (`model.fc`) is kept whole and channel
counts are rounded to a multiple of 8. `ratio` is the fraction of channels removed: per layer with
the uniform scope, over the whole network (ranked by importance) with the global scope. Removing
half the channels of every layer leaves about a quarter of the MACs and parameters.

The result is an ordinary model folder whose config.json carries the pruned channel plan, so it is
rebuilt from the config and loaded from safetensors like any other model.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable

import click
import numpy as np
import torch
from torch import nn

from ecgtool.core.files import atomic_dir, write_json
from ecgtool.core.manifest import record_artifact
from ecgtool.core.errors import BadInput
from ecgtool.core.names import CONFIG, HISTORY, METRICS, WEIGHTS
from ecgtool.models import ECGResNet, build_model, channel_plan, load_model, model_stats, save_model
from ecgtool.models.network import example_inputs
from ecgtool.core.artifacts import is_model_folder
from ecgtool.core.ui import info, print_table, quiet_option
from ecgtool.data.dataset import deployment_signals, train_counts
from ecgtool.train import defaults as D

IMPORTANCES = ("magnitude", "taylor")
SCOPES = ("uniform", "global")
ROUND_TO = 8
#: No single layer loses more than this fraction of its channels under global pruning (avoids layer collapse).
MAX_LAYER_RATIO = 0.9
#: Training batches whose gradients rank channels for Taylor importance.
TAYLOR_BATCHES = 4
#: Training batches that re-estimate BatchNorm statistics when there is no fine-tuning (fit does it per epoch).
BN_BATCHES = 32


def check_ratio(ratio: float) -> float:
    """The fraction of channels to remove must lie strictly between 0 and 1."""
    if not (0.0 < float(ratio) < 1.0):
        raise BadInput(f"--ratio {ratio}: the pruning ratio (fraction of channels removed) must be in (0, 1)")
    return float(ratio)


def make_importance(name: str):
    """Torch-Pruning's group importance criterion by name: L2 magnitude or first-order Taylor."""
    import torch_pruning as tp

    if name == "magnitude":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if name == "taylor":
        return tp.importance.GroupTaylorImportance()
    raise BadInput(f"--importance {name}: unknown importance (choose from {', '.join(IMPORTANCES)})")


def _accumulate_gradients(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Cross-entropy gradients over a few batches (eval mode, so batch-norm statistics stay put)."""
    model.eval()
    model.zero_grad(set_to_none=True)
    loss_fn = nn.CrossEntropyLoss()
    seen = 0
    for batch in batches:
        *inputs, y = batch
        loss_fn(model(*inputs), y).backward()
        seen += 1
    if seen == 0:
        raise ValueError("Taylor importance needs at least one calibration batch")


def prune_model(
    model: ECGResNet,
    example_input: torch.Tensor | tuple[torch.Tensor, ...],
    ratio: float,
    importance: str = "magnitude",
    scope: str = "uniform",
    steps: int = 1,
    round_to: int = ROUND_TO,
    calib: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> ECGResNet:
    """Remove `ratio` of the channels from `model` and return the network rebuilt from its new config.

    `steps` > 1 prunes iteratively (Torch-Pruning's linear schedule up to `ratio`); with Taylor
    importance the gradients are recomputed on `calib` (a re-iterable of (x, y) batches) before each
    step. The returned model is a fresh `build_model(config)` holding the pruned weights, which
    proves the config alone rebuilds it. An RR-head model takes (signal, rr) example inputs and `calib`
    batches (x, rr, y); its RR features are an input and its normalising layer is never pruned, only
    the trunk's channels (and the classifier's columns that read them). Its config has `channels` set to the pruned plan. Torch-Pruning
    works in place, so `model` itself is left pruned too (pass a copy to keep the original).
    """
    import torch_pruning as tp

    ratio = check_ratio(ratio)
    if scope not in SCOPES:
        raise BadInput(f"--scope {scope}: unknown scope (choose from {', '.join(SCOPES)})")
    if steps < 1:
        raise BadInput(f"--steps {steps}: at least one pruning step is needed")
    if importance == "taylor" and calib is None:
        raise ValueError("Taylor importance needs calibration batches (calib=...)")
    imp = make_importance(importance)
    pruner = tp.pruner.MetaPruner(
        model, example_input, importance=imp, pruning_ratio=ratio, global_pruning=scope == "global",
        max_pruning_ratio=MAX_LAYER_RATIO, iterative_steps=steps,
        ignored_layers=[model.fc] + ([model.rr_norm] if model.rr_norm is not None else []), round_to=round_to,
    )
    for _ in range(steps):
        if importance == "taylor":
            _accumulate_gradients(model, calib)  # type: ignore[arg-type]
        pruner.step()
    model.zero_grad(set_to_none=True)
    cfg = dataclasses.replace(model.config, channels=channel_plan(model), extra=dict(model.config.extra))
    rebuilt = build_model(cfg)
    rebuilt.load_state_dict(model.state_dict())
    return rebuilt.train(model.training)


# --- model folder in, model folder out -----------------------------------------------------------------


def default_out(model_dir: str | os.PathLike, ratio: float) -> Path:
    """Sibling folder named after the ratio in percent: RUN/se_resnet18 -> RUN/se_resnet18-pruned50."""
    src = Path(model_dir)
    return src.parent / f"{src.name}-pruned{round(ratio * 100)}"


def _check_model_folder(model_dir: Path) -> None:
    if is_model_folder(model_dir):
        return
    if not model_dir.exists():
        raise BadInput(f"{model_dir}: no such file or folder")
    from ecgtool.runtime import artifact_kind

    kind = artifact_kind(model_dir)
    what = f"a {kind} artifact" if kind else "not a model folder"
    raise BadInput(f"{model_dir}: wrong kind of artifact for prune ({what}; expected a PyTorch model folder "
                   f"with {CONFIG} and {WEIGHTS})")


def _check_classes(data_root: Path, data_classes: list[str], model: ECGResNet, model_dir: Path) -> None:
    cfg = model.config
    model_classes = list(cfg.classes) if cfg.classes else None
    if model_classes is not None and model_classes != list(data_classes):
        raise BadInput(f"{data_root}: classes {data_classes} do not match the model's {model_classes} ({model_dir})")
    if model_classes is None and cfg.num_classes != len(data_classes):
        raise BadInput(f"{data_root}: {len(data_classes)} classes but the model ({model_dir}) has {cfg.num_classes} outputs")


def _taylor_batches(ds, seed: int, batch_size: int = 32, rr: np.ndarray | None = None,
                    signals: np.ndarray | None = None) -> list[tuple[torch.Tensor, ...]]:
    """A few random training batches for Taylor importance (fixed by `seed`): (x, y), or (x, rr, y); `signals`:
    the dataset's windows as the model is deployed (default all of them)."""
    idx = np.sort(np.random.default_rng(seed).permutation(ds.indices("train"))[: TAYLOR_BATCHES * batch_size])
    x = torch.from_numpy(np.asarray((ds.signals if signals is None else signals)[idx], dtype=np.float32))
    y = torch.from_numpy(ds.labels[idx])
    if rr is None:
        return list(zip(x.split(batch_size), y.split(batch_size)))
    r = torch.from_numpy(np.ascontiguousarray(rr[idx], dtype=np.float32))
    return list(zip(x.split(batch_size), r.split(batch_size), y.split(batch_size)))


def _config_dict(model: ECGResNet) -> dict:
    """What data.dataset.deployment_signals reads of a model's config: its input channels and preprocessing spec."""
    return {"in_channels": model.config.in_channels, "preprocessing": model.config.preprocessing}


def _summary(folder: Path, model: ECGResNet, length: int, ds) -> dict:
    """Parameters, MACs (one [1, C, length] window), weight-file size (MB) and test macro-F1 of a model folder."""
    from ecgtool.evaluate.artifact import evaluate_artifact

    stats = model_stats(model, length=length)
    metrics = evaluate_artifact(folder, ds, split="test")
    return {
        "params": stats["params"],
        "macs": stats["macs"],
        "size_bytes": (folder / WEIGHTS).stat().st_size,
        "size_mb": round((folder / WEIGHTS).stat().st_size / 1e6, 4),
        "macro_f1": float(metrics["macro_f1"]),
        "accuracy": float(metrics["accuracy"]),
    }


def prune_artifact(
    model_dir: str | os.PathLike,
    data: str | os.PathLike,
    ratio: float,
    out: str | os.PathLike | None = None,
    fine_tune_epochs: int = D.FINE_TUNE_EPOCHS,
    importance: str = "magnitude",
    scope: str = "uniform",
    steps: int = 1,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = D.BATCH_SIZE,
    lr: float = D.FINE_TUNE_LR,
    patience: int = D.PATIENCE,
    overwrite: bool = False,
) -> dict:
    """Prune a model folder, fine-tune it on the training split and save it as a new model folder.

    Returns {"out", "parent", "ratio", ..., "before": summary, "after": summary} where each summary
    holds params, MACs, size_mb (weight file) and the test macro-F1; the same goes to metrics.json.
    The new folder is built under a temporary name and renamed into place when complete.
    """
    src = Path(model_dir)
    ratio = check_ratio(ratio)
    ds, model, dest = _check_inputs(src, data, ratio, out, importance, scope, fine_tune_epochs, overwrite)
    view = deployment_signals(ds, _config_dict(model))  # a --leads any model: the deployment lead
    channels, length = int(view.shape[1]), int(ds.signals.shape[2])
    # a --leads any model is fine-tuned as it was trained: a random lead per record, validated on the deployment lead
    leads = "any" if model.config.extra.get("leads") == "any" else "deploy"
    torch.manual_seed(seed)
    before = _summary(src, model, length, ds)
    info(f"pruning {src.name}: {importance} importance, {scope} scope, ratio {ratio}, {steps} step(s)")
    rr = None
    if model.config.rr_features:  # the RR head's inputs of the dataset (cached beside it; every lead's for leads any)
        from ecgtool.train.rr import dataset_rr_inputs

        rr = dataset_rr_inputs(ds, list(range(ds.signals.shape[1])) if leads == "any" else 0,
                               bins=(model.config.extra.get("rr_head") or {}).get("bins"))
    rr_deploy = rr[:, 0] if rr is not None and leads == "any" else rr
    calib = _taylor_batches(ds, seed, rr=rr_deploy, signals=view) if importance == "taylor" else None
    pruned = prune_model(model, example_inputs(model, length, 1, channels), ratio, importance=importance, scope=scope,
                         steps=steps, calib=calib)
    settings = {"parent": str(src), "ratio": ratio, "importance": importance, "scope": scope, "steps": steps,
                "round_to": ROUND_TO, "fine_tune_epochs": fine_tune_epochs, "seed": seed}
    # the pruning settings sit at the top of `extra`; the parent's own recipe is kept beneath them, but the
    # input it was trained on stays on top, where export and predict read the graph's input shape
    shape = {k: model.config.extra[k] for k in ("input_length", "sampling_rate", "rr_head", "leads", "train_leads")
             if k in model.config.extra}
    pruned.config.extra = {**settings, **shape, "train_counts": train_counts(ds),
                           "parent_extra": dict(model.config.extra)}

    with atomic_dir(dest) as tmp:
        pruned, history = _fine_tune(pruned, ds, tmp, dest.name, fine_tune_epochs, batch_size=batch_size, lr=lr,
                                     patience=patience, device=device, seed=seed, rr=rr, leads=leads)
        best_epoch = next((row["epoch"] for row in history if row.get("best")), None)
        pruned.config.extra.update({"fine_tune_epochs_run": len(history), "fine_tune_best_epoch": best_epoch})
        save_model(tmp, pruned, pruned.config)
        after = _summary(tmp, pruned, length, ds)
        result = {"out": str(dest), **settings, "before": before, "after": after,
                  "ratios": {"params": before["params"] / after["params"], "macs": before["macs"] / after["macs"],
                             "size": before["size_bytes"] / after["size_bytes"]},
                  "fine_tune": {"epochs_run": len(history), "best_epoch": best_epoch},
                  "f1_change_points": round(100 * (after["macro_f1"] - before["macro_f1"]), 2)}
        write_json(tmp / METRICS, result)
    parents = {WEIGHTS: src / WEIGHTS, CONFIG: src / CONFIG}
    for name in (WEIGHTS, CONFIG, METRICS, HISTORY):
        if (dest / name).exists():
            record_artifact(dest / name, parent=parents.get(name, src), extra={"stage": "prune"})
    return result


def _check_inputs(src: Path, data: Any, ratio: float, out: Any, importance: str, scope: str, fine_tune_epochs: int,
                  overwrite: bool) -> tuple[Any, ECGResNet, Path]:
    """(dataset, source model, output folder), or BadInput naming what is wrong; nothing is written."""
    from ecgtool.data.dataset import load_dataset

    _check_model_folder(src)
    make_importance(importance)
    if scope not in SCOPES:
        raise BadInput(f"--scope {scope}: unknown scope (choose from {', '.join(SCOPES)})")
    if fine_tune_epochs < 0:
        raise BadInput(f"--epochs {fine_tune_epochs}: must be 0 or more")
    ds = load_dataset(data)
    model = load_model(src)
    _check_classes(Path(data), ds.classes, model, src)
    deployment_signals(ds, _config_dict(model))  # BadInput unless the windows fit the model's input
    dest = Path(out) if out else default_out(src, ratio)
    if dest.resolve() == src.resolve():
        raise BadInput(f"{dest}: the output folder would overwrite the source model")
    if dest.exists() and not dest.is_dir():
        raise BadInput(f"{dest}: output path exists and is not a folder")
    if dest.exists() and any(dest.iterdir()) and not overwrite:
        raise BadInput(f"{dest}: output folder exists and is not empty (use --overwrite to replace it)")
    return ds, model, dest


def _fine_tune(pruned: ECGResNet, ds: Any, tmp: Path, name: str, epochs: int, *, batch_size: int, lr: float,
               patience: int, device: str, seed: int, rr: np.ndarray | None = None,
               leads: str = "deploy") -> tuple[ECGResNet, list[dict]]:
    """Fine-tune through `fit` (`leads` as the model was trained); with 0 epochs only re-estimate BatchNorm
    statistics (removed input channels shift every later layer's activations), on the deployment lead."""
    from ecgtool.train.fit import DeployLead, fit, recalibrate_bn

    history: list[dict] = []
    if epochs == 0:
        order = np.random.default_rng(seed).permutation(ds.indices("train"))[: BN_BATCHES * batch_size]
        bn_data, bn_rr = (DeployLead(ds), None if rr is None else rr[:, 0]) if leads == "any" else (ds, rr)
        recalibrate_bn(pruned, bn_data, order, batch_size, torch.device("cpu"), bn_rr)
    else:
        pruned, history = fit(pruned, ds, epochs=epochs, batch_size=batch_size, lr=lr, patience=patience,
                              device=device, seed=seed, desc=f"fine-tune {name}", history_path=tmp / HISTORY, rr=rr,
                              leads=leads)
    return pruned.cpu().eval(), history


def summary_rows(result: dict) -> list[dict]:
    """The before/after table: one row per model, with MACs in millions and F1 in percent."""
    rows = []
    for label, s in (("before", result["before"]), ("after", result["after"])):
        rows.append({"model": label, "params": s["params"], "MACs (M)": round(s["macs"] / 1e6, 2),
                     "size (MB)": round(s["size_mb"], 3), "macro-F1 (%)": round(100 * s["macro_f1"], 2)})
    r = result["ratios"]
    rows.append({"model": "ratio", "params": f"{r['params']:.2f}x", "MACs (M)": f"{r['macs']:.2f}x",
                 "size (MB)": f"{r['size']:.2f}x", "macro-F1 (%)": f"{result['f1_change_points']:+.2f} pt"})
    return rows


@click.command("prune")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Prepared dataset (fine-tuning and F1).")
@click.option("--ratio", required=True, type=float, help="Fraction of channels removed, in (0, 1); 0.5 leaves ~1/4 of the MACs.")
@click.option("--importance", type=click.Choice(IMPORTANCES), help="Channel ranking [default: magnitude].")
@click.option("--scope", type=click.Choice(SCOPES), help="Per layer (uniform) or network-wide ranking (global) [default: uniform].")
@click.option("--steps", type=int, help="Iterative pruning steps [default: 1].")
@click.option("--epochs", "fine_tune_epochs", type=int, help=f"Fine-tuning epochs, early stopping on validation [default: {D.FINE_TUNE_EPOCHS}].")
@click.option("--batch-size", type=int, help=f"Fine-tuning batch size [default: {D.BATCH_SIZE}].")
@click.option("--lr", type=float, help=f"Fine-tuning learning rate [default: {D.FINE_TUNE_LR:g}].")
@click.option("--out", type=click.Path(path_type=Path), help="Output model folder [default: MODEL-prunedNN beside MODEL].")
@click.option("--overwrite", is_flag=True, default=None, help="Replace an existing output folder.")
@click.option("--seed", type=int, help="Seed for fine-tuning and Taylor batches [default: 0].")
@click.option("--device", help="Fine-tuning device: auto, cpu or cuda [default: auto].")
@quiet_option
def prune_command(model: Path, data: Path, ratio: float, **options) -> None:
    """Prune MODEL (a model folder) structurally, fine-tune it, and report the size and F1 it costs."""
    given = {k: v for k, v in options.items() if v is not None}
    result = prune_artifact(model, data, ratio, **given)
    print_table(summary_rows(result), title=f"{Path(model).name} -> {result['out']}")
