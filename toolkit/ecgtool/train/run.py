"""`ecgtool train`: several architectures and depths into one run folder (model folders, summary table).

The per-network recipe (`fit`) lives in fit.py; this module manages the run: refusing a different run
in --out, resuming, the classical baseline, metrics, plots, manifest and the side-by-side summary.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

import click
import numpy as np
import torch
from torch import nn

from ecgtool.core.files import write_csv, write_text
from ecgtool.core.machine import THREADS_AUTO_HELP, resolve_threads
from ecgtool.train import defaults as D
from ecgtool.train.augment import parse_augment
from ecgtool.data.dataset import PreparedDataset, train_counts
from ecgtool.data.preprocess import spec_from_meta
from ecgtool.core.names import (CHECKPOINT, CONFIG, CONFUSION, CURVES, HISTORY, METRICS, RUN_JSON, SUMMARY_CSV, SUMMARY_MD,
                                WEIGHTS)
from ecgtool.train.fit import check_splits, curves_png, fit, write_history
from ecgtool.core.ui import quiet_option

BASELINE_ARCH = "rr_baseline"


# --- several models into one run folder -----------------------------------------------------------



def init_from(model: nn.Module, folder: str | os.PathLike) -> list[str]:
    """Copy another model folder's weights into `model`; the classifier is re-initialised when the class
    lists differ. Returns the names of the tensors left at their fresh initialisation."""
    from ecgtool.core.errors import BadInput
    from ecgtool.models import load_model

    source = load_model(folder)
    src = source.state_dict()
    same_classes = list(source.config.classes or []) == list(model.config.classes or []) and \
        source.config.num_classes == model.config.num_classes
    state, fresh = model.state_dict(), []
    for key, value in state.items():
        if key.startswith("fc.") and not same_classes:
            fresh.append(key)
        elif key.startswith(("fc.", "rr_norm.")) and (key not in src or src[key].shape != value.shape):
            fresh.append(key)  # an RR head added to (or dropped from) the source's: a fresh classifier
        elif key in src and src[key].shape == value.shape:
            state[key] = src[key]
        else:
            got = tuple(src[key].shape) if key in src else "absent"
            raise BadInput(f"{folder}: weights do not fit {model.config.name} at width {model.config.width} "
                           f"({key}: {got} vs {tuple(value.shape)})")
    model.load_state_dict(state)
    return fresh


def _dataset_digest(data: PreparedDataset) -> str:
    from ecgtool.core.files import sha256

    return sha256(data.root / "meta.json")


def _summary_row(name: str, cfg_extra: dict, arch: str, depth: int, width: int, stats: dict, metrics: dict) -> dict:
    row = {"model": name, "arch": arch, "depth": depth, "width": width, "params": stats["params"],
           "macs": stats["macs"], "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
           "weighted_f1": metrics["weighted_f1"]}
    # a class without test records has no F1 (None, printed "-"), not 0
    row.update({f"f1_{c}": (v["f1"] if v["support"] else None) for c, v in metrics["per_class"].items()})
    row.update({"epochs_run": cfg_extra.get("epochs_run"), "best_epoch": cfg_extra.get("best_epoch"),
                "train_seconds": cfg_extra.get("train_seconds")})
    return row


def _prepare_run(out: Path, recipe: dict, names: list[str], resume: bool, write: bool = True) -> None:
    """Refuse an output folder that holds a different run (or this one without --resume); write run.json."""
    from ecgtool.core.files import read_json, write_json
    from ecgtool.core.errors import BadInput

    models = list(names)
    if (out / RUN_JSON).exists():
        prev = read_json(out / RUN_JSON)
        diff = sorted(k for k in set(prev.get("recipe", {})) | set(recipe) if prev.get("recipe", {}).get(k) != recipe.get(k))
        old_epochs = prev.get("recipe", {}).get("epochs")
        if resume and diff == ["epochs"] and isinstance(old_epochs, int) and recipe["epochs"] < old_epochs:
            diff = []  # fewer epochs on --resume: stop early with the best weights so far
            recipe = {**recipe, "epochs_requested_first": old_epochs}
        if diff:
            raise BadInput(f"{out}: holds a different run (differs in {', '.join(diff)}); choose another --out")
        if not resume:
            raise BadInput(f"{out}: already holds this run; pass --resume to continue it or choose another --out")
        models = list(dict.fromkeys([*prev.get("models", []), *names]))
    else:
        taken = [n for n in names if (out / n).exists()]
        if taken:
            raise BadInput(f"{out}: already holds {taken[0]}/ from another run; choose another --out")
    if write:
        write_json(out / RUN_JSON, {"recipe": recipe, "models": models})


def train_models(
    data: str | os.PathLike | PreparedDataset,
    archs: Sequence[str],
    depths: Sequence[int],
    out: str | os.PathLike,
    *,
    width: int = 64,
    kernel_size: int = 7,
    dropout: float = 0.0,
    epochs: int = D.EPOCHS,
    batch_size: int = D.BATCH_SIZE,
    lr: float = D.LR,
    patience: int = D.PATIENCE,
    seed: int = 0,
    device: str = "auto",
    class_weights: str | None = None,
    sampler: str | None = None,
    augment: str | Sequence[str] = (),
    init: str | os.PathLike | None = None,
    resume: bool = False,
    threads: int | str | None = D.THREADS,
    precise_bn: int = 32,
    rr_head: bool = False,
    rr_trunk_dropout: float = 0.0,
    leads: str = "deploy",
    rr_init: str | None = None,
    rr_bins: int | str = 0,
) -> list[dict]:
    """Train every (arch, depth) into RUN/<arch><depth>/ and return one summary row per model.

    Each folder gets model.safetensors, config.json (recipe in `extra`), history.csv, training.png,
    metrics.json (test split, via evaluate_artifact) and confusion.png; RUN/summary.csv/md compare them.
    `rr_head`: the hybrid, whose head also takes the baseline's window features (train/rr.py); `rr_bins` N
    adds their thermometer code against N quantile bins of the training rows (train/rr.py fit_rr_bins); "auto"
    chooses N from defaults.RR_BINS_AUTO by grouped cross-validation on the training split (choose_rr_bins). `leads="any"`:
    a dataset imported with --keep-leads trains a one-lead model on a random lead per record, and validates
    and tests it on the deployment lead (channel 0).
    """
    from ecgtool.train import distributed
    from ecgtool.core.files import read_json
    from ecgtool.core.manifest import record_artifact
    from ecgtool.data.dataset import load_dataset
    from ecgtool.core.errors import BadInput
    from ecgtool.models import ARCHS, DEPTHS
    from ecgtool.core.artifacts import is_model_folder
    from ecgtool.core.ui import info, markdown_table

    dataset = data if isinstance(data, PreparedDataset) else load_dataset(data)
    baseline = BASELINE_ARCH in archs  # the classical floor (ecgtool.baseline): no depth, no epochs
    archs = [a for a in archs if a != BASELINE_ARCH]
    for a in archs:
        if a not in ARCHS:
            raise BadInput(f"--arch: unknown architecture {a!r} (choose from {', '.join([*ARCHS, BASELINE_ARCH])})")
    for d in depths:
        if int(d) not in DEPTHS:
            raise BadInput(f"--depth: unknown depth {d} (choose from {', '.join(map(str, DEPTHS))})")
    if not (archs or baseline) or (archs and not depths):
        raise BadInput("train: give at least one --arch and one --depth")
    class_weights = None if class_weights in (None, "none") else class_weights
    sampler = None if sampler in (None, "none") else sampler
    if class_weights not in (None, "auto") or sampler not in (None, "balanced"):
        raise BadInput(f"train: --class-weights none|auto and --sampler none|balanced (got {class_weights}, {sampler})")
    augment = parse_augment(augment)
    check_splits(dataset)
    if init is not None and not is_model_folder(init):
        raise BadInput(f"{init}: --init needs a model folder (config.json + model.safetensors)")
    if threads is not None:
        n_threads, why = resolve_threads(threads)
        torch.set_num_threads(n_threads)
        info(f"train: {n_threads} torch thread(s) ({why})")

    out = Path(out)
    recipe = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "patience": patience, "seed": seed,
              "class_weights": class_weights, "sampler": sampler, "augment": list(augment),
              "init": str(Path(init).resolve()) if init else None, "precise_bn": precise_bn, "width": width, "kernel_size": kernel_size,
              "dropout": dropout, "dataset": str(dataset.root.resolve()), "dataset_digest": _dataset_digest(dataset),
              "input_length": int(dataset.signals.shape[2]), "sampling_rate": dataset.sampling_rate}
    if rr_head:  # only when asked, so the recipe of a run made before the option stays the same
        recipe["rr_head"] = True
        if rr_trunk_dropout:
            recipe["rr_trunk_dropout"] = float(rr_trunk_dropout)
        if rr_init not in (None, "none"):  # train/rr.py: init_rr_head
            from ecgtool.train.rr import RR_INITS

            if rr_init not in RR_INITS:
                raise BadInput(f"--rr-init {rr_init}: choose from none, {', '.join(RR_INITS)}")
            recipe["rr_init"] = rr_init
        from ecgtool.train.rr import parse_rr_bins

        n_bins = parse_rr_bins(rr_bins)
        if n_bins:  # a count, or "auto" (chosen below by cross-validation on the training split)
            recipe["rr_bins"] = n_bins
    elif rr_trunk_dropout or rr_init not in (None, "none") or rr_bins not in (None, 0, "0"):
        raise BadInput("--rr-trunk-dropout, --rr-init and --rr-bins apply to an RR-head model (--rr-head)")
    if leads not in ("deploy", "any"):
        raise BadInput(f"--leads {leads}: choose deploy (the dataset's channels as stored) or any")
    if leads == "any":
        if not dataset.meta.get("keep_leads") or dataset.signals.shape[1] < 2:
            raise BadInput(f"{dataset.root}: --leads any needs a dataset with several leads, the deployment lead first "
                           "(`ecgtool data import ... --keep-leads`)")
        recipe["leads"] = "any"
    pairs = [(a, int(d)) for a in archs for d in depths]
    main = distributed.is_main()  # under torchrun, rank 0 alone writes; the others only train
    _prepare_run(out, recipe, [f"{a}{d}" for a, d in pairs] + [BASELINE_ARCH] * baseline, resume, write=main)
    distributed.barrier()
    if main:
        record_artifact(out / RUN_JSON, run_dir=out)

    rr, bins, auto = None, None, None
    if rr_head and pairs:
        from ecgtool.baseline.cache import window_feature_table
        from ecgtool.train.rr import choose_rr_bins, dataset_rr_inputs, fit_rr_bins

        channels = list(range(dataset.signals.shape[1])) if leads == "any" else [0]
        n_bins = recipe.get("rr_bins") or 0
        if n_bins:  # edges from the training rows (every lead's for leads any), kept in config.json
            train = dataset.indices("train")
            feats = np.concatenate([window_feature_table(dataset, c, workers=threads)[train] for c in channels])
            if n_bins == "auto":  # N by grouped cross-validation of the --rr-init regression on these rows
                groups, kind = dataset.groups()
                auto = choose_rr_bins(feats, np.tile(dataset.labels[train], len(channels)),
                                      np.tile(groups[train], len(channels)), kind, seed=seed)
                n_bins = auto["chosen"]
                info(f"train: --rr-bins auto chose {n_bins} (of {', '.join(map(str, auto['candidates']))}; "
                     f"{auto['folds']}-fold StratifiedGroupKFold by {kind} on {auto['rows']} training rows, "
                     "CV macro-F1 " + ", ".join(f"{r['n_bins']}: {r['mean']:.3f} +- {r['sd']:.3f}"
                                                 for r in auto["scores"]) + ")")
            bins = fit_rr_bins(feats, n_bins) if n_bins else None
        rr = dataset_rr_inputs(dataset, channels if leads == "any" else 0, bins=bins, workers=threads)
    rows = []
    if baseline and main:
        from ecgtool.train.baseline import train_baseline

        done = out / BASELINE_ARCH / METRICS
        rows.append(read_json(done)["summary"] if resume and done.exists()
                    else train_baseline(dataset, out, seed=seed, workers=threads))
    for arch, depth in pairs:
        folder = out / f"{arch}{depth}"
        if resume and (folder / METRICS).exists() and is_model_folder(folder):
            info(f"{folder.name}: already trained, skipped")
            rows.append(read_json(folder / METRICS)["summary"])
            continue
        row = _train_one(dataset, folder, arch, depth, recipe, main=main, width=width, kernel_size=kernel_size,
                         dropout=dropout, epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed,
                         device=device, class_weights=class_weights, sampler=sampler, augment=augment, init=init,
                         resume=resume, precise_bn=precise_bn, rr=rr, leads=leads, rr_bins=bins, rr_bins_auto=auto)
        if row is not None:
            rows.append(row)

    if main:
        _write_summary(out, rows, markdown_table)
    return rows


def _train_one(dataset: PreparedDataset, folder: Path, arch: str, depth: int, recipe: dict, *, main: bool,
               width: int, kernel_size: int, dropout: float, epochs: int, init: Any,
               rr_bins: list[list[float]] | None = None, rr_bins_auto: dict | None = None,
               **fit_options: Any) -> dict | None:
    """Build, fit and write one model folder; its summary row (None on the non-main ranks of torchrun)."""
    from ecgtool.models import ModelConfig, build_model

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(fit_options["seed"])
    rr = fit_options.get("rr")
    any_lead = fit_options.get("leads") == "any"
    spec = spec_from_meta(dataset.meta)
    if any_lead:  # one lead in: at deployment the spec's lead (channel 0 of the dataset)
        spec["channels"] = 1
        recipe = {**recipe, "train_leads": list(dataset.meta.get("leads") or [])}
    cfg = ModelConfig(arch=arch, depth=depth, width=width, kernel_size=kernel_size,
                      in_channels=1 if any_lead else int(dataset.signals.shape[1]), num_classes=len(dataset.classes),
                      dropout=dropout, classes=dataset.classes, preprocessing=spec,
                      rr_features=int(rr.shape[-1]) if rr is not None else 0,
                      rr_trunk_dropout=float(recipe.get("rr_trunk_dropout") or 0.0), extra=dict(recipe))
    cfg.extra["train_counts"] = train_counts(dataset)  # which classes it learnt (external scores leave the rest out)
    if rr is not None:
        from ecgtool.baseline.features import head_spec

        cfg.extra["rr_head"] = head_spec(rr_bins)
        if recipe.get("rr_bins"):
            from ecgtool.train.rr import BINS_PARAMS

            n_bins = rr_bins_auto["chosen"] if rr_bins_auto else recipe["rr_bins"]
            cfg.extra["rr_bins"] = n_bins  # the count used, as `--rr-bins N` records it; the choice in rr_bins_fit.auto
            cfg.extra["rr_bins_fit"] = {"estimator": "sklearn.preprocessing.KBinsDiscretizer", "n_bins": n_bins,
                                        **BINS_PARAMS, "edges": sum(len(e) for e in rr_bins or [])}
            if rr_bins_auto:
                cfg.extra["rr_bins_fit"]["auto"] = rr_bins_auto
    model = build_model(cfg)
    if init is not None:
        cfg.extra["init_fresh"] = init_from(model, init)
    if recipe.get("rr_init"):  # the head starts as a logistic regression on the RR features (train/rr.py)
        from ecgtool.train.rr import init_rr_head

        cfg.extra["rr_init_fit"] = init_rr_head(model, rr, dataset.labels, dataset.indices("train"),
                                                recipe["rr_init"], seed=fit_options["seed"])
    t0 = time.perf_counter()
    model, history = fit(model, dataset, epochs=epochs, desc=folder.name, history_path=folder / HISTORY,
                         checkpoint_path=folder / CHECKPOINT, **fit_options)
    if not main:
        return None
    best = next((h for h in history if h.get("best")), {})
    cfg.extra.update({"epochs_run": len(history), "best_epoch": best.get("epoch"),
                      "best_val_loss": best.get("val_loss"), "train_seconds": round(time.perf_counter() - t0, 1)})
    return _write_model_folder(folder, model.cpu(), cfg, history, dataset, arch, depth, width, init)


def _write_model_folder(folder: Path, model: nn.Module, cfg: Any, history: list[dict], dataset: PreparedDataset,
                        arch: str, depth: int, width: int, init: Any) -> dict:
    """Weights, config, history, curves, test metrics and confusion of a trained model, each recorded."""
    from ecgtool.core.files import write_json
    from ecgtool.core.manifest import record_artifact
    from ecgtool.evaluate.artifact import evaluate_artifact
    from ecgtool.evaluate.metrics import confusion_png
    from ecgtool.models import model_stats, save_model

    name, out = folder.name, folder.parent
    save_model(folder, model, cfg)
    write_history(folder / HISTORY, history)
    curves_png(history, folder / CURVES, title=f"{name} (width {width})")
    metrics = evaluate_artifact(folder, dataset, split="test")
    stats = model_stats(model, length=int(dataset.signals.shape[2]))
    metrics["summary"] = _summary_row(name, cfg.extra, arch, depth, width, stats, metrics)
    write_json(folder / METRICS, metrics)
    warn_if_chance(name, metrics["macro_f1"], len(dataset.classes), epochs_run=len(history))
    confusion_png(metrics["confusion_matrix"], metrics["classes"], folder / CONFUSION,
                  title=f"{name} on {dataset.root.name}/test")
    weights = folder / WEIGHTS
    record_artifact(weights, run_dir=out, parent=init, extra={"params": stats["params"], "macs": stats["macs"]})
    for fname in (CONFIG, HISTORY, CURVES, METRICS, CONFUSION):
        record_artifact(folder / fname, run_dir=out, parent=weights)
    (folder / CHECKPOINT).unlink(missing_ok=True)
    return metrics["summary"]


def warn_if_chance(name: str, macro_f1: float, num_classes: int, epochs_run: int | None = None) -> bool:
    """Warn (and return True) when a finished model's test macro-F1 is at or below chance, 1/classes."""
    from ecgtool.core.ui import warn

    chance = 1.0 / max(1, num_classes)
    if macro_f1 > chance:
        return False
    ran = f" after {epochs_run} epoch(s)" if epochs_run else ""
    warn(f"{name}: test macro-F1 {macro_f1:.3f}{ran} is at or below chance (1/{num_classes} = {chance:.3f}): "
         f"it has not learned; train longer (--epochs), with more records, or check --lr")
    return True


def _write_summary(out: Path, rows: list[dict], markdown_table) -> None:
    from ecgtool.core.manifest import record_artifact

    if not rows:
        return
    write_csv(out / SUMMARY_CSV, rows)
    write_text(out / SUMMARY_MD, markdown_table(rows, summary_columns(rows)))
    for f in (SUMMARY_CSV, SUMMARY_MD):
        record_artifact(out / f, run_dir=out)


def summary_columns(rows: Sequence[dict]) -> list[str]:
    """The side-by-side table (the paper's Tables 1-2): model, params, macro-F1, per-class F1."""
    per_class = [k for k in rows[0] if k.startswith("f1_")] if rows else []
    return ["arch", "depth", "width", "params", "macs", "accuracy", "macro_f1", *per_class]


@click.command("train")
@click.option("--data", "data", required=True, type=click.Path(), help="Prepared dataset folder.")
@click.option("--arch", "archs", multiple=True, required=True, help="se_resnet, resnet or rr_baseline (repeatable).")
@click.option("--depth", "depths", multiple=True, type=int, help="18/34/50/101/152 (repeatable; not for rr_baseline).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option("--width", type=click.IntRange(1), default=None, help="Base channel count (default 64).")
@click.option("--kernel-size", type=click.IntRange(1), default=None, help="Convolution kernel (default 7).")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=None, help="Dropout before the classifier.")
@click.option("--epochs", type=click.IntRange(1), default=None, help=f"Most epochs (default {D.EPOCHS}).")
@click.option("--batch-size", type=click.IntRange(2), default=None, help=f"Records per batch (default {D.BATCH_SIZE}).")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=None, help=f"Adam learning rate (default {D.LR:g}).")
@click.option("--patience", type=click.IntRange(1), default=None, help=f"Early-stopping patience in epochs (default {D.PATIENCE}).")
@click.option("--seed", type=int, default=None, help="Seed of initialisation, shuffling and augmentation (default 0).")
@click.option("--device", default=None, help="auto (cuda if available), cpu or cuda.")
@click.option("--class-weights", type=click.Choice(["none", "auto"]), default=None, help="auto: inverse frequency.")
@click.option("--sampler", type=click.Choice(["none", "balanced"]), default=None, help="balanced: equal class draws.")
@click.option("--augment", default=None, help="default, device, device-shift (device + band limits, mains hum, electrode-motion steps), "
              "or a list: amplitude,baseline,noise,shift,invert,stretch,bandlimit,mains,steps.")
@click.option("--init", type=click.Path(), default=None, help="Start from this model folder's weights.")
@click.option("--rr-trunk-dropout", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="With --rr-head: zero the trunk's features of this fraction of training records (so the head also "
                   "decides from the RR features alone; default 0).")
@click.option("--leads", type=click.Choice(["deploy", "any"]), default=None,
              help="any: a random lead per training record (dataset imported with --keep-leads); validation and "
                   "test on the deployment lead. deploy (default): the channels as stored.")
@click.option("--rr-head", is_flag=True, help="Hybrid: the head also takes the RR baseline's window features "
              "(R peaks, RR irregularity, QRS, P wave; computed in numpy before the network, cached in the dataset).")
@click.option("--rr-init", type=click.Choice(["none", "logreg", "logreg-frozen"]), default=None,
              help="With --rr-head: start the head as scikit-learn's logistic regression on the RR features (trunk "
                   "columns 0; training adds the trunk); logreg-frozen keeps those RR weights fixed in training.")
@click.option("--rr-bins", default=None, metavar="N|auto",
              help="With --rr-head: also code each RR feature against N quantile bins of the training rows (1 where "
                   "the value is at or above each edge), so a linear head (and --rr-init) can threshold it as a tree "
                   f"model does; the edges are kept in config.json (default 0: none; at most {D.RR_BINS_MAX}). auto: "
                   f"N from {', '.join(map(str, D.RR_BINS_AUTO))} by grouped cross-validation of the --rr-init "
                   "regression on the training split (scores in config.json, extra.rr_bins_fit.auto).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out; finished models are skipped.")
@click.option("--threads", default=None, help=f"CPU threads for torch: N or auto (default {D.THREADS}: "
              f"{THREADS_AUTO_HELP}).")
@click.option("--precise-bn", type=click.IntRange(0), default=None,
              help="Training batches that re-estimate BatchNorm statistics before each validation (default 32, 0 off).")
@quiet_option
def train_command(data: str, archs: tuple[str, ...], depths: tuple[int, ...], out: str, **options: Any) -> None:
    """Train each --arch x --depth on a prepared dataset with the paper's recipe (Adam, early stopping); compare them side by side."""
    from ecgtool.core.ui import print_table

    given = {k: v for k, v in options.items() if v is not None and v is not False}
    rows = train_models(data, archs, depths, out, **given)
    if not rows:  # a torchrun rank other than 0
        return
    print_table(rows, summary_columns(rows), title=f"{out}: test split")
    click.echo(f"wrote {Path(out) / 'summary.md'}")
