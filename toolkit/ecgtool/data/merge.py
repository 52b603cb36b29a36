"""`ecgtool data merge`: add records of other prepared datasets to the training split of a base dataset.

The recipe that generalised best across databases in benchmarks/real_data.py trains on real records
plus synthetic ones; this makes it a CLI step. Validation and test stay the base's own, so the scores
still say how the model does on the base's recordings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import click
import numpy as np

from ecgtool.core.errors import BadInput
from ecgtool.core.ui import info, quiet_option
from ecgtool.data.dataset import load_dataset, write_dataset


def merge_datasets(base: str | os.PathLike, extras: Sequence[str | os.PathLike], out: str | os.PathLike,
                   overwrite: bool = False) -> Path:
    """Write `out` = base + every record of `extras` joined to base's train split (classes matched by name).

    Extra records whose class the base does not have are left out and counted in meta.json.
    """
    b = load_dataset(base)
    parts_x, parts_y, records = [np.asarray(b.signals)], [b.labels], [dict(r, origin=str(base)) for r in b.records]
    train = [b.splits["train"]]
    n = len(b)
    dropped: dict[str, int] = {}
    for extra in extras:
        e = load_dataset(extra, require_splits=False)
        if e.signals.shape[1:] != b.signals.shape[1:]:
            raise BadInput(f"{extra}: signals are {tuple(e.signals.shape[1:])} per record, the base's are "
                           f"{tuple(b.signals.shape[1:])}")
        if e.sampling_rate != b.sampling_rate:
            raise BadInput(f"{extra}: sampled at {e.sampling_rate} Hz, the base at {b.sampling_rate} Hz")
        to_base = np.array([b.classes.index(c) if c in b.classes else -1 for c in e.classes])
        mapped = to_base[e.labels]
        keep = np.flatnonzero(mapped >= 0)
        for c in e.classes:
            if c not in b.classes:
                dropped[c] = dropped.get(c, 0) + int((e.labels == e.classes.index(c)).sum())
        parts_x.append(np.asarray(e.signals[keep]))
        parts_y.append(mapped[keep])
        records += [dict(e.records[i], origin=str(extra)) for i in keep]
        train.append(n + np.arange(len(keep)))
        n += len(keep)
    splits = dict(b.splits)
    splits["train"] = np.concatenate(train)
    meta = {k: v for k, v in b.meta.items() if k not in ("counts", "skipped", "classes", "n_records")}
    meta.update(source=f"{b.meta.get('source')}+" + "+".join(Path(e).name for e in extras),
                merged={"base": str(base), "extras_in_train": [str(e) for e in extras],
                        "left_out_by_class": dropped})
    return write_dataset(out, np.concatenate(parts_x), np.concatenate(parts_y), b.classes, records, splits, meta,
                         overwrite=overwrite)


@click.command("merge")
@click.argument("base", type=click.Path())
@click.argument("extras", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(), help="Folder for the merged dataset.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@quiet_option
def merge_command(base: str, extras: tuple[str, ...], out: str, overwrite: bool) -> None:
    """Add EXTRAS' records (e.g. synthetic data) to BASE's training split; val/test stay BASE's."""
    path = merge_datasets(base, extras, out, overwrite=overwrite)
    merged = load_dataset(path)
    info(f"{len(merged)} records ({len(merged.splits['train'])} in train) -> {path}")
