"""`ecgtool adapt`: a model adapted to a recording device (AdaBN, optional logit-bias calibration).

AdaBN (Li et al. 2016, "Revisiting batch normalization for practical domain adaptation"): every
BatchNorm layer's running mean and variance are recomputed as exact averages over windows from the
target device; no weight changes. The windows need no labels: a prepared dataset made with
`ecgtool data import records SRC --out DIR` (labels -1) is accepted, as is any labelled one (its
train split is used).

`--calibrate N` then takes N labelled windows (the target's val split, else its train split) and sets
one additive bias per class on the logits by coordinate ascent on their macro-F1. The biases are
folded into the final Linear layer's bias, so the model folder, its ONNX / INT8 / OpenVINO exports
and a deploy bundle all apply them with no code of their own.

An RR-head model (`train --rr-head`) gets its second input as everywhere else (runtime.base.rr_head_inputs: the
baseline's window features, in numpy, from the windows as deployed), and AdaBN re-estimates the trunk's
BatchNorms only: the RR features' normalisation (rr_norm, the `--rr-init` regression's standardisation) is kept,
since RR intervals do not change with the recording device as QRS morphology does (benchmarks/RESULTS.md measures
both choices; neither helped Challenge -> MIT-BIH).

The new model folder's config.json `extra.adapt` holds the lineage: parent folder and the SHA-256 of its
weights, the data, the windows used, and the biases; the run manifest records the parent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from ecgtool.core.errors import BadInput
from ecgtool.core.ui import as_percent, info, print_table, quiet_option

#: bias grid of the calibration search (logit units) and its passes over the classes
BIAS_GRID = np.linspace(-4.0, 4.0, 41)
PASSES = 3


def rr_inputs(model: torch.nn.Module, signals: np.ndarray, idx: np.ndarray, batch_size: int = 256) -> np.ndarray | None:
    """An RR-head model's second input for signals[idx] [len(idx), D], as the runtime computes it
    (runtime.base.rr_head_inputs); None for any other model."""
    from ecgtool.core.ui import progress_bar
    from ecgtool.runtime.base import rr_head_inputs

    config = model.config.to_dict()
    if not int(config.get("rr_features") or 0):
        return None
    out = []
    with progress_bar("RR features", len(idx)) as bar:
        for s in range(0, len(idx), batch_size):
            rows = idx[s:s + batch_size]
            out.append(rr_head_inputs(config, np.ascontiguousarray(signals[rows], dtype=np.float32)))
            bar.advance(len(rows))
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, config["rr_features"]), np.float32)


def adabn(model: torch.nn.Module, signals: np.ndarray, idx: np.ndarray, batch_size: int = 64,
          rr: np.ndarray | None = None) -> int:
    """Recompute the BatchNorms' running statistics over signals[idx] (exact averages); returns the count.

    `rr`: an RR-head model's second input for the sorted idx (rr_inputs); its rr_norm statistics are kept."""
    import copy

    from torch.optim.swa_utils import update_bn

    from ecgtool.train.fit import DictCall

    idx = np.sort(np.asarray(idx, dtype=np.int64))
    if len(idx) < 2:
        raise BadInput(f"adapt: {len(idx)} window(s); AdaBN needs at least 2")
    starts = [s for s in range(0, len(idx), batch_size) if len(idx[s:s + batch_size]) >= 2]
    x = lambda s: torch.from_numpy(np.ascontiguousarray(signals[idx[s:s + batch_size]], dtype=np.float32))  # noqa: E731
    rr_norm = getattr(model, "rr_norm", None)
    if rr is None or rr_norm is None:
        update_bn((x(s) for s in starts), model, device=None)
    else:  # torch's update_bn hands the model one object per batch: (signals, RR inputs) as keywords
        kept = copy.deepcopy(rr_norm.state_dict())
        update_bn(({"x": x(s), "rr": torch.from_numpy(rr[s:s + batch_size])} for s in starts), DictCall(model),
                  device=None)
        rr_norm.load_state_dict(kept)
    model.eval()
    return int(len(idx))


def fit_biases(logits: np.ndarray, y: np.ndarray, num_classes: int, grid: np.ndarray = BIAS_GRID,
               passes: int = PASSES) -> tuple[np.ndarray, float, float]:
    """Per-class logit biases maximising macro-F1 (over the classes present in y) by coordinate ascent.

    Returns (biases [K], macro-F1 before, macro-F1 after); biases stay 0 where nothing improves.
    """
    from sklearn.metrics import f1_score

    present = sorted(set(np.asarray(y).tolist()))

    def score(b: np.ndarray) -> float:
        return float(f1_score(y, (logits + b).argmax(1), labels=present, average="macro", zero_division=0))

    bias = np.zeros(num_classes)
    best = before = score(bias)
    for _ in range(passes):
        improved = False
        for c in range(num_classes):
            for v in grid:
                trial = bias.copy()
                trial[c] = v
                s = score(trial)
                if s > best + 1e-9:
                    best, bias, improved = s, trial, True
        if not improved:
            break
    return bias, before, best


def _logits(model: torch.nn.Module, signals: np.ndarray, idx: np.ndarray, batch_size: int = 256,
            rr: np.ndarray | None = None) -> np.ndarray:
    """Logits of signals[idx] (an RR-head model: with its RR inputs `rr`, computed from the same windows when None)."""
    rr = rr_inputs(model, signals, idx) if rr is None else rr
    out = []
    with torch.inference_mode():
        for s in range(0, len(idx), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(signals[idx[s:s + batch_size]], dtype=np.float32))
            out.append((model(x) if rr is None else model(x, torch.from_numpy(rr[s:s + batch_size]))).numpy())
    return np.concatenate(out)


def adapt_model(model_path: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike, *,
                split: str | None = None, max_windows: int | None = None, calibrate: int = 0, seed: int = 0,
                overwrite: bool = False) -> dict:
    """AdaBN on the target's windows (+ optional calibration); writes a model folder at `out`; a summary dict.

    split: the windows for AdaBN (default: train of a labelled dataset, all of an unlabelled one).
    max_windows: at most this many of them (a seeded random subset).
    """
    from ecgtool.core.artifacts import model_folder_of
    from ecgtool.core.files import atomic_dir, sha256, write_json
    from ecgtool.core.manifest import record_artifact
    from ecgtool.core.names import CONFIG, WEIGHTS
    from ecgtool.data.dataset import deployment_signals, is_unlabelled, load_dataset
    from ecgtool.evaluate.metrics import map_classes
    from ecgtool.models import load_model, save_model

    src = model_folder_of(model_path)
    ds = load_dataset(data, require_splits=False)
    model = load_model(src)
    # the windows as the model is deployed (a --leads any model on a --keep-leads dataset: the deployment lead)
    signals = deployment_signals(ds, {"in_channels": model.config.in_channels, "preprocessing": model.config.preprocessing})
    want_len = model.config.extra.get("input_length")
    if want_len and int(want_len) != int(ds.signals.shape[2]):
        raise BadInput(f"{data}: windows of {ds.signals.shape[2]} samples but the model ({src}) takes {want_len}")
    dest = Path(out)
    if dest.resolve() == src.resolve():
        raise BadInput(f"{dest}: the output folder would overwrite the source model")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())) and not overwrite:
        raise BadInput(f"{dest}: output folder exists and is not empty (use --overwrite to replace it)")
    unlabelled = is_unlabelled(ds)
    split = split or ("all" if unlabelled or "train" not in ds.splits else "train")
    idx = ds.indices(split)
    rng = np.random.default_rng(seed)
    if max_windows and len(idx) > max_windows:
        idx = rng.choice(idx, size=max_windows, replace=False)

    mapping = None if unlabelled else map_classes(list(model.config.classes or ds.classes), ds.classes, str(ds.root))
    test = _scored_split(ds, mapping)
    test_rr = rr_inputs(model, signals, test) if test is not None else None  # an RR-head model's: once
    before = _macro_f1(model, ds, signals, test, mapping, test_rr) if test is not None else None
    idx = np.sort(np.asarray(idx, dtype=np.int64))
    n_bn = adabn(model, signals, idx, rr=rr_inputs(model, signals, idx))
    after_bn = _macro_f1(model, ds, signals, test, mapping, test_rr) if test is not None else None
    record: dict[str, Any] = {"method": "adabn", "parent": str(src.resolve()), "parent_sha256": sha256(src / WEIGHTS),
                              "data": str(ds.root.resolve()), "data_digest": sha256(ds.root / "meta.json"),
                              "split": split, "windows": n_bn, "seed": seed, "calibration": None,
                              "batchnorms": "trunk (rr_norm kept)" if getattr(model, "rr_norm", None) is not None
                              else "all"}
    if calibrate:
        if unlabelled:
            raise BadInput(f"{ds.root}: --calibrate needs labelled windows; this dataset has none (labels -1)")
        record["calibration"] = _calibrate(model, ds, signals, mapping, calibrate, rng)
    after = _macro_f1(model, ds, signals, test, mapping, test_rr) if test is not None else None
    model.config.extra = {**model.config.extra, "adapt": record}
    summary = {"out": str(dest), "windows": n_bn, "split": split, "test_split": None if test is None else "test",
               "macro_f1_before": before, "macro_f1_adabn": after_bn, "macro_f1_after": after,
               "calibration": record["calibration"]}
    with atomic_dir(dest) as tmp:
        save_model(tmp, model.cpu().eval(), model.config)
        write_json(tmp / "metrics.json", {"adapt": summary})
    for name, parent in ((WEIGHTS, src / WEIGHTS), (CONFIG, src / CONFIG), ("metrics.json", src)):
        record_artifact(dest / name, parent=parent, extra={"stage": "adapt"})
    return summary


def _scored_split(ds, mapping) -> np.ndarray | None:
    """Indices of the labelled test split (model-known classes) to score before/after on, or None."""
    if mapping is None or "test" not in ds.splits or not len(ds.splits["test"]):
        return None
    idx = np.sort(ds.splits["test"])
    idx = idx[mapping.to_model[ds.labels[idx]] >= 0]
    return idx if len(idx) else None


def _macro_f1(model, ds, signals: np.ndarray, idx: np.ndarray, mapping, rr: np.ndarray | None = None) -> float:
    from ecgtool.evaluate.metrics import compute_metrics

    pred = _logits(model, signals, idx, rr=rr).argmax(1)
    classes = list(model.config.classes or ds.classes)
    return compute_metrics(mapping.to_model[ds.labels[idx]], pred, classes)["macro_f1"]


def _calibrate(model, ds, signals: np.ndarray, mapping, n: int, rng: np.random.Generator) -> dict:
    """Fit per-class logit biases on n labelled windows (val split, else train) and fold them into fc.bias."""
    name = "val" if "val" in ds.splits and len(ds.splits["val"]) else "train"
    pool = ds.indices(name)
    pool = pool[mapping.to_model[ds.labels[pool]] >= 0]
    if len(pool) < 2:
        raise BadInput(f"{ds.root}: --calibrate: the {name} split has {len(pool)} window(s) of classes the model knows")
    idx = np.sort(rng.choice(pool, size=min(n, len(pool)), replace=False))
    k = int(model.fc.out_features)
    bias, f1_before, f1_after = fit_biases(_logits(model, signals, idx), mapping.to_model[ds.labels[idx]], k)
    with torch.no_grad():
        model.fc.bias.add_(torch.as_tensor(bias, dtype=model.fc.bias.dtype))
    classes = list(model.config.classes or ds.classes)
    return {"split": name, "windows": int(len(idx)), "biases": {c: round(float(b), 4) for c, b in zip(classes, bias)},
            "macro_f1_before": f1_before, "macro_f1_after": f1_after}


@click.command("adapt")
@click.argument("model", type=click.Path())
@click.option("--data", "data", required=True, type=click.Path(), help="Prepared dataset of the target device "
              "(labelled, or unlabelled from `ecgtool data import records`).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New model folder.")
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default=None,
              help="Windows for AdaBN (default: train, or all of an unlabelled dataset).")
@click.option("--max-windows", type=click.IntRange(2), default=None, help="At most this many windows for AdaBN.")
@click.option("--calibrate", type=click.IntRange(0), default=0,
              help="N labelled windows (val, else train) that set per-class logit biases, folded into the classifier.")
@click.option("--seed", type=int, default=0, help="Seed of the window subsets.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out.")
@quiet_option
def adapt_command(model: str, data: str, out: str, **options: Any) -> None:
    """AdaBN: recompute MODEL's BatchNorm statistics on the target device's windows; write a new model folder."""
    s = adapt_model(model, data, out, **options)
    info(f"AdaBN on {s['windows']} window(s) of split {s['split']!r}")
    if s["macro_f1_before"] is not None:
        rows = [{"model": "parent", "macro_f1": s["macro_f1_before"]},
                {"model": "AdaBN", "macro_f1": s["macro_f1_adabn"]}]
        if s["calibration"]:
            rows.append({"model": "AdaBN + calibration", "macro_f1": s["macro_f1_after"]})
        print_table(as_percent(rows), ["model", "macro_f1"], title=f"{data}: test split (macro-F1 %)")
    if s["calibration"]:
        c = s["calibration"]
        info(f"calibration on {c['windows']} {c['split']} window(s): biases " +
             ", ".join(f"{k} {v:+.2f}" for k, v in c["biases"].items()))
    click.echo(f"wrote {s['out']}")
