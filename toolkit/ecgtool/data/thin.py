"""`ecgtool data thin`: keep every N-th window of each source record in the training split.

A 30-min Holter record gives 180 consecutive 10-s windows of one patient, mostly of one rhythm
episode: near duplicates. Training on all of them weights the long records of the source device and
lets a network fit that device's morphology; keeping every N-th window of each record cuts training
time by N and keeps every record and every class episode of any length >= N windows. On the shared
data it moved the RR-head hybrid's MIT-BIH -> Challenge macro-F1 from below the RR baseline to above
it (benchmarks/RESULTS.md, "Is it the thinning?"). Validation and test stay whole by default, so
early stopping, the INT8 gate and own-test scores still count every window. A dataset of one window per record (the Challenge sample, synthetic data) is unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import click
import numpy as np

from ecgtool.core.errors import BadInput
from ecgtool.core.ui import info, quiet_option, warn
from ecgtool.data.dataset import SPLITS, load_dataset, write_dataset

#: the splits `data thin` thins unless told otherwise: train only, so early stopping and the INT8 gate see
#: every validation window and own-test scores every test window (RESULTS.md, "`data thin`": train-only
#: thinning scored 0.504 +- 0.020 MIT-BIH -> Challenge against 0.487 +- 0.044 with val thinned too)
THIN_SPLITS = ("train",)


def record_of(row: dict, index: int) -> str:
    """The source record a window was cut from (`record`), else the window's own id (or its index): a
    window without a record is a record of its own."""
    return str(row.get("record") or row.get("record_id") or f"#{index}")


def positions_in_record(indices: np.ndarray, records: Sequence[dict]) -> np.ndarray:
    """For each window index (in ascending order, i.e. the file's time order), its 0-based position
    among the windows of the same source record in `indices`."""
    pos = np.zeros(len(indices), dtype=np.int64)
    seen: dict[str, int] = {}
    for n, i in enumerate(indices):
        key = record_of(records[int(i)], int(i))
        pos[n] = seen.get(key, 0)
        seen[key] = pos[n] + 1
    return pos


def thin_dataset(src: str | os.PathLike, every: int, out: str | os.PathLike,
                 splits: Sequence[str] = THIN_SPLITS, overwrite: bool = False) -> tuple[Path, dict]:
    """Write `out`: `src` with every `every`-th window of each record kept in `splits` (the first, the
    (N+1)-th, ...); other splits whole; windows in no split are not copied. Returns (path, summary) with
    kept/before counts per split and the classes whose training windows thinning removed entirely."""
    if every < 1:
        raise BadInput(f"--every must be 1 or more, got {every}")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise BadInput(f"unknown split(s) {', '.join(unknown)}: choose from {', '.join(SPLITS)}")
    d = load_dataset(src)
    records = d.records
    new_splits: dict[str, np.ndarray] = {}
    summary: dict = {"every": every, "splits": {}, "classes_lost": {}}
    for name, idx in d.splits.items():
        idx = np.sort(np.asarray(idx, dtype=np.int64))
        if name in splits:
            kept = idx[positions_in_record(idx, records) % every == 0]
            lost = sorted(set(d.labels[idx].tolist()) - set(d.labels[kept].tolist()))
            if lost:
                summary["classes_lost"][name] = [d.classes[c] for c in lost if c >= 0]
        else:
            kept = idx
        new_splits[name] = kept
        summary["splits"][name] = {"kept": int(len(kept)), "before": int(len(idx))}
    used = np.unique(np.concatenate([v for v in new_splits.values()] or [np.zeros(0, np.int64)]))
    renumber = np.full(len(d), -1, dtype=np.int64)
    renumber[used] = np.arange(len(used))
    meta = {k: v for k, v in d.meta.items() if k not in ("counts", "skipped", "classes", "n_records")}
    meta.update(source=f"{d.meta.get('source')} ({'/'.join(splits)} every {every}th window per record)",
                thinned={"from": str(src), "every": every, "splits": list(splits)})
    path = write_dataset(out, np.asarray(d.signals[used]), d.labels[used], d.classes,
                         [records[int(i)] for i in used], {k: renumber[v] for k, v in new_splits.items()},
                         meta, overwrite=overwrite)
    return path, summary


@click.command("thin")
@click.argument("dataset", type=click.Path())
@click.option("--every", required=True, type=int,
              help="Keep the 1st, (N+1)-th, ... window of each source record (records.csv `record`).")
@click.option("--split", "splits", multiple=True, type=click.Choice(SPLITS), default=THIN_SPLITS,
              show_default=True, help="Split(s) to thin (repeat); the others are copied whole.")
@click.option("--out", required=True, type=click.Path(), help="Folder for the thinned dataset.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@quiet_option
def thin_command(dataset: str, every: int, splits: tuple[str, ...], out: str, overwrite: bool) -> None:
    """Keep every N-th window of each record in DATASET's train split (near-duplicate windows of long
    records out; val and test whole unless --split says otherwise)."""
    path, summary = thin_dataset(dataset, every, out, splits=splits, overwrite=overwrite)
    parts = ", ".join(f"{k} {v['kept']} of {v['before']}" for k, v in summary["splits"].items())
    for name, lost in summary["classes_lost"].items():
        warn(f"{dataset}: thinning left no {name} windows of {', '.join(lost)}")
    info(f"windows kept: {parts} -> {path}")
