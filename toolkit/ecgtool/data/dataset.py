"""The prepared dataset: the one on-disk format every stage reads (see DESIGN.md).

A folder with signals.npy float32 [N, C, L] (memory-mapped on read), labels.npy int64 [N],
records.csv, splits.json, meta.json, and skipped.csv when an importer skipped anything.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ecgtool.core.files import atomic_dir, read_json, write_csv
from ecgtool.core.errors import BadInput

REQUIRED_FILES = ("signals.npy", "labels.npy", "records.csv", "splits.json", "meta.json")
SPLITS = ("train", "val", "test")
#: the label of a window without one (`ecgtool data import records`): accepted by `adapt`, refused by scoring
UNLABELLED = -1
#: records.csv columns that name a window's patient (data info's overlap check, train's grouped CV)
PATIENT_COLUMNS = ("patient_id", "patient")


@dataclass
class PreparedDataset:
    """A prepared dataset opened for reading; `signals` is a read-only memory map."""

    root: Path
    signals: np.ndarray
    labels: np.ndarray
    splits: dict[str, np.ndarray]
    meta: dict[str, Any]
    _records: list[dict] | None = field(default=None, repr=False)

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def sampling_rate(self) -> float:
        return float(self.meta["sampling_rate"])

    @property
    def records(self) -> list[dict]:
        if self._records is None:
            with open(self.root / "records.csv", newline="", encoding="utf-8") as fh:
                self._records = list(csv.DictReader(fh))
        return self._records

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(signals, labels) of one split; signals stay memory-mapped until indexed."""
        if name == "all":
            return self.signals, self.labels
        if name not in self.splits:
            raise BadInput(f"{self.root}: no split named {name!r} (has {', '.join(self.splits)})")
        idx = self.splits[name]
        return self.signals[idx], self.labels[idx]

    def indices(self, name: str) -> np.ndarray:
        if name == "all":
            return np.arange(len(self.labels))
        if name not in self.splits:
            raise BadInput(f"{self.root}: no split named {name!r} (has {', '.join(self.splits)})")
        return self.splits[name]

    def __len__(self) -> int:
        return len(self.labels)

    def groups(self) -> tuple[np.ndarray, str]:
        """(one group id per window, what they are): records.csv's patient ids where every row has one,
        else its record names (several windows of one recording), else one group per window ("window")."""
        rows = self.records
        if len(rows) == len(self):
            for column, kind in [*((c, "patient") for c in PATIENT_COLUMNS), ("record", "record")]:
                if rows and column in rows[0] and all(r.get(column) for r in rows):
                    return np.asarray([r[column] for r in rows]), kind
        return np.arange(len(self)).astype(str), "window"


def load_dataset(path: str | os.PathLike, require_splits: bool = True) -> PreparedDataset:
    """Open a prepared dataset; raise BadInput naming the file and the reason if it is not one."""
    root = Path(path)
    if not root.is_dir():
        raise BadInput(f"{root}: not a folder (expected a prepared dataset made by `ecgtool data`)")
    missing = [f for f in REQUIRED_FILES if not (root / f).exists()]
    if missing:
        raise BadInput(f"{root}: not a prepared dataset (missing {', '.join(missing)})")
    try:
        meta = read_json(root / "meta.json")
        raw_splits = read_json(root / "splits.json")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{root}: meta.json or splits.json does not parse ({exc})") from None
    try:
        signals = np.load(root / "signals.npy", mmap_mode="r")
        labels = np.load(root / "labels.npy")
    except (ValueError, OSError) as exc:
        raise BadInput(f"{root / 'signals.npy'}: cannot be read ({exc})") from None
    if signals.ndim != 3 or signals.dtype != np.float32:
        raise BadInput(f"{root / 'signals.npy'}: expected float32 [N, C, L], got {signals.dtype} {signals.shape}")
    if labels.shape != (signals.shape[0],):
        raise BadInput(f"{root / 'labels.npy'}: {labels.shape[0]} labels for {signals.shape[0]} signals")
    if "classes" not in meta or "sampling_rate" not in meta:
        raise BadInput(f"{root / 'meta.json'}: lacks 'classes' or 'sampling_rate'")
    if len(labels) and (labels.min() < UNLABELLED or labels.max() >= len(meta["classes"])):
        raise BadInput(f"{root / 'labels.npy'}: label outside 0..{len(meta['classes']) - 1} "
                       f"(or {UNLABELLED}: unlabelled)")
    splits = {k: np.asarray(v, dtype=np.int64) for k, v in raw_splits.items()}
    if require_splits:
        for name in SPLITS:
            if name not in splits:
                raise BadInput(f"{root / 'splits.json'}: no {name!r} split")
    return PreparedDataset(root=root, signals=signals, labels=labels.astype(np.int64), splits=splits, meta=meta)


def model_channels(config: dict | None) -> int | None:
    """The input channels a model takes, from its config (config.json, ONNX metadata): `in_channels`, else
    its preprocessing spec's `channels`; None when the config says neither."""
    if not isinstance(config, dict):
        return None
    n = config.get("in_channels") or (config.get("preprocessing") or {}).get("channels")
    return int(n) if n else None


def deployment_signals(data: PreparedDataset, config: dict | None) -> np.ndarray:
    """The windows of this dataset as the model with `config` is deployed: signals [N, C, L], C its channels.

    Every stored channel when the model takes them all (or its config does not say). From a dataset imported
    with --keep-leads (the deployment lead first, named by meta "lead") a model that takes fewer channels --
    a `train --leads any` model takes one -- gets the first ones, a memory-mapped view: its deployment
    lead. Training's validation, calibration, the INT8 gate, evaluate and bench all read windows through
    this. BadInput (one line, naming the dataset) when the channels do not fit, or when the model's
    preprocessing spec names another deployment lead than the dataset's first.
    """
    have = int(data.signals.shape[1])
    want = model_channels(config)
    if not want or want == have:
        return data.signals
    if not data.meta.get("keep_leads") or want > have:
        raise BadInput(f"{data.root}: signals have {have} channel(s), the model expects {want}"
                       + ("" if want > have else " (a dataset with more leads must be imported with --keep-leads, "
                          "the deployment lead first)"))
    model_lead = ((config or {}).get("preprocessing") or {}).get("lead")
    data_lead = data.meta.get("lead")
    if isinstance(model_lead, str) and isinstance(data_lead, str) and model_lead.lower() != data_lead.lower():
        raise BadInput(f"{data.root}: its first lead is {data_lead}, the model is deployed on lead {model_lead} "
                       f"(import it with --lead {model_lead} --keep-leads)")
    return data.signals[:, :want]


def is_unlabelled(data: PreparedDataset, idx: np.ndarray | None = None) -> bool:
    """True when any window (of `idx`, default all) has no label (UNLABELLED)."""
    labels = data.labels if idx is None else data.labels[idx]
    return bool(len(labels)) and bool((labels < 0).any())


def require_labels(data: PreparedDataset, idx: np.ndarray, what: str) -> None:
    """BadInput (one line) when windows `idx` include unlabelled ones: `what` cannot score them."""
    n = int((data.labels[idx] < 0).sum())
    if n:
        raise BadInput(f"{data.root}: {n} of {len(idx)} window(s) are unlabelled (label {UNLABELLED}); "
                       f"{what} needs labels (unlabelled data is for `ecgtool adapt`)")


def counts_per_split(labels: np.ndarray, splits: dict[str, np.ndarray], classes: Sequence[str]) -> dict:
    """{split: {class: count}} for meta.json and `ecgtool data info`."""
    out = {}
    for name, idx in splits.items():
        lab = np.asarray(labels)[np.asarray(idx, dtype=np.int64)]
        bc = np.bincount(lab[lab >= 0], minlength=len(classes))
        out[name] = {c: int(n) for c, n in zip(classes, bc)}
        if (lab < 0).any():
            out[name]["unlabelled"] = int((lab < 0).sum())
    return out


def train_counts(data: PreparedDataset) -> dict[str, int]:
    """{class: training windows} of a dataset's train split, what a model folder records as `train_counts` (read
    back by core.artifacts.trained_classes: a class with none is one the model never learnt)."""
    counts = counts_per_split(data.labels, {"train": data.indices("train")}, data.classes)["train"]
    return {c: int(counts.get(c, 0)) for c in data.classes}


def write_dataset(
    out: str | os.PathLike,
    signals: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    records: Sequence[dict],
    splits: dict[str, np.ndarray],
    meta: dict[str, Any],
    skipped: Sequence[dict] = (),
    overwrite: bool = False,
) -> Path:
    """Write a prepared dataset atomically: built in a temporary folder, then renamed into place.

    `meta` must hold at least sampling_rate; classes, counts and skipped records are added here.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise BadInput(f"{out}: output folder exists and is not empty (use --overwrite to replace it)")
    signals = np.ascontiguousarray(signals, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if signals.ndim != 3 or signals.shape[0] != labels.shape[0]:
        raise ValueError(f"signals {signals.shape} and labels {labels.shape} do not match")
    full_meta = dict(meta)
    full_meta["classes"] = list(classes)
    full_meta["n_records"] = int(len(labels))
    full_meta["channels"] = int(signals.shape[1])
    full_meta["length"] = int(signals.shape[2])
    full_meta["counts"] = counts_per_split(labels, splits, classes)
    full_meta["counts"]["all"] = counts_per_split(labels, {"all": np.arange(len(labels))}, classes)["all"]
    full_meta["skipped"] = {"count": len(skipped), "reasons": _reason_counts(skipped)}

    with atomic_dir(out) as tmp:
        np.save(tmp / "signals.npy", signals)
        np.save(tmp / "labels.npy", labels)
        _write_csv(tmp / "records.csv", records)
        (tmp / "splits.json").write_text(json.dumps({k: np.asarray(v).tolist() for k, v in splits.items()}))
        (tmp / "meta.json").write_text(json.dumps(full_meta, indent=2, default=str) + "\n")
        if skipped:
            _write_csv(tmp / "skipped.csv", skipped)
    return out


def _reason_counts(skipped: Sequence[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in skipped:
        key = str(row.get("reason", "unknown")).split(":")[0]
        counts[key] = counts.get(key, 0) + 1
    return counts


def _write_csv(path: Path, rows: Sequence[dict]) -> None:
    write_csv(path, rows, None if rows else ["record_id"])
