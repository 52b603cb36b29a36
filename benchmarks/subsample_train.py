"""A prepared dataset whose training split keeps at most K windows per (record, class); validation and test unchanged.

For benchmarks on a shared machine where training on every MIT-BIH training window is too slow: the split stays
by patient (the same records in each split), only the training windows are thinned, seeded. signals.npy and
labels.npy are linked, not copied; meta.json's counts are recomputed and the subsample is recorded in it.

    PYTHONPATH=toolkit python benchmarks/subsample_train.py DATA OUT --per-record-class 30 [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ecgtool.data.dataset import counts_per_split, load_dataset


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--per-record-class", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ds = load_dataset(args.data)
    records = pd.read_csv(args.data / "records.csv")
    train = np.sort(ds.indices("train"))
    rng = np.random.default_rng(args.seed)
    keep = []
    for _, idx in records.iloc[train].groupby(["record", "label"]).groups.items():
        idx = np.asarray(idx)
        keep.extend(idx if len(idx) <= args.per_record_class else rng.choice(idx, args.per_record_class, replace=False))
    splits = {k: np.asarray(v) for k, v in ds.splits.items()} | {"train": np.sort(np.asarray(keep, dtype=np.int64))}
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("signals.npy", "labels.npy"):
        target = args.out / name
        if target.exists() or target.is_symlink():
            target.unlink()
        os.symlink((args.data / name).resolve(), target)
    for name in ("records.csv", "skipped.csv"):
        if (args.data / name).is_file():
            shutil.copy(args.data / name, args.out / name)
    meta = dict(ds.meta)
    counts = counts_per_split(ds.labels, splits, ds.classes)
    meta["counts"] = {**meta.get("counts", {}), **counts}
    meta["train_subsample"] = {"source": str(args.data.resolve()), "per_record_class": args.per_record_class,
                               "seed": args.seed, "train_windows_before": int(len(train)),
                               "train_windows_after": int(len(splits["train"]))}
    (args.out / "splits.json").write_text(json.dumps({k: v.tolist() for k, v in splits.items()}))
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1))
    print(f"{args.out}: train {len(train)} -> {len(splits['train'])} windows (<= {args.per_record_class} per record "
          f"and class, seed {args.seed}); val {len(splits['val'])}, test {len(splits['test'])} unchanged")


if __name__ == "__main__":
    main()
