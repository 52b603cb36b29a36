"""INT8 calibration sets drawn from a prepared dataset's training split, and ONNX Runtime's reader over them.

A calibration set is a class-stratified sample of the training split, saved under `calib_dir`
(default `calibration/`) as `<dataset>-n<records>-s<seed>-<hash>.npz`, named by the records it holds
(fewer than the size asked for when the training split is smaller), with a JSON beside it holding the
size asked for, the records held, the seed, the SHA-256 of the source split (signals, labels, classes) and the counts per class. The
same request (same source hash, size, seed) reuses the saved set.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from ecgtool.core.files import atomic_path, read_json, write_json
from ecgtool.core.errors import BadInput

DEFAULT_DIR = Path("calibration")
DEFAULT_SIZE = 256
DEFAULT_SEED = 0


@dataclass
class CalibrationSet:
    """Signals [N, C, L] float32 and labels [N] of one calibration set, with where it lives and its metadata."""

    signals: np.ndarray
    labels: np.ndarray
    path: Path
    meta: dict


def split_sha256(ds, split: str = "train", chunk: int = 256, signals: np.ndarray | None = None) -> str:
    """SHA-256 over a split's signals (in index order; `signals`: a view of the dataset's, e.g. its deployment
    lead), labels and class names."""
    signals = ds.signals if signals is None else signals
    idx = np.asarray(ds.indices(split))
    h = hashlib.sha256()
    h.update(",".join(ds.classes).encode())
    h.update(np.ascontiguousarray(ds.labels[idx]).tobytes())
    for i in range(0, len(idx), chunk):
        h.update(np.ascontiguousarray(signals[idx[i:i + chunk]], dtype=np.float32).tobytes())
    return h.hexdigest()


def stratified_sample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Positions of a class-stratified sample of `size` labels (all of them when size >= len)."""
    from sklearn.model_selection import train_test_split

    pos = np.arange(len(labels))
    if size >= len(labels):
        return pos
    counts = np.bincount(labels)
    if (counts[counts > 0] < 2).any() or size < (counts > 0).sum():  # sklearn cannot stratify: sample plainly
        return np.sort(np.random.default_rng(seed).choice(pos, size, replace=False))
    if len(labels) - size < (counts > 0).sum():
        # sklearn cannot stratify a remainder smaller than the class count (it raises): leave out that many
        # windows at random, never the last one of a class
        order = np.random.default_rng(seed).permutation(pos)
        _, first = np.unique(labels[order], return_index=True)
        spare = np.delete(order, first)
        return np.sort(np.setdiff1d(pos, spare[: len(labels) - size]))
    picked, _ = train_test_split(pos, train_size=size, stratify=labels, random_state=seed)
    return np.sort(picked)


def calibration_set(data: str | os.PathLike, size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED,
                    calib_dir: str | os.PathLike = DEFAULT_DIR, config: dict | None = None) -> CalibrationSet:
    """Build (or reuse) the calibration set for `data`; BadInput if any class of the dataset is missing from it.

    `config`: the model's (config.json or ONNX metadata): the windows are the dataset's as that model is
    deployed (data.dataset.deployment_signals; a `--leads any` model on a --keep-leads dataset: its deployment
    lead alone), and the set's name and source hash are those of that view."""
    from ecgtool.data.dataset import deployment_signals, load_dataset

    if size < 1:
        raise BadInput(f"--calib-size {size}: must be at least 1")
    ds = load_dataset(data)
    view = deployment_signals(ds, config)
    source = split_sha256(ds, "train", signals=view)
    calib_dir = Path(calib_dir)
    train_idx = np.asarray(ds.indices("train"))
    if len(train_idx) == 0:
        raise BadInput(f"{ds.root}: the training split is empty; no calibration set can be drawn")
    pick = train_idx[stratified_sample(ds.labels[train_idx], size, seed)]
    name = f"{ds.root.resolve().name}-n{len(pick)}-s{seed}-{source[:12]}"
    npz, js = calib_dir / f"{name}.npz", calib_dir / f"{name}.json"
    if npz.exists() and js.exists():
        meta = read_json(js)
        if meta.get("source_sha256") == source and meta.get("size") == size and meta.get("seed") == seed:
            meta.setdefault("indices", np.sort(pick).tolist())  # sets saved before the indices were recorded
            with np.load(npz) as z:
                cs = CalibrationSet(z["signals"], z["labels"], npz, meta)
            _require_all_classes(cs, ds)
            return cs
    order = np.sort(pick)
    signals = np.asarray(view[order], dtype=np.float32)
    labels = ds.labels[order]
    counts = np.bincount(labels, minlength=len(ds.classes))
    meta = {
        "dataset": str(ds.root.resolve()), "split": "train", "size": size, "seed": seed, "records": int(len(order)),
        "source_sha256": source, "classes": ds.classes, "channels": int(view.shape[1]),
        **({"lead": ds.meta.get("lead")} if view.shape[1] < ds.signals.shape[1] else {}),
        "counts": {c: int(n) for c, n in zip(ds.classes, counts)}, "indices": order.tolist(),
    }
    cs = CalibrationSet(signals, labels, npz, meta)
    _require_all_classes(cs, ds)
    calib_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(npz) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, signals=signals, labels=labels)
    write_json(js, meta)
    return cs


def _require_all_classes(cs: CalibrationSet, ds) -> None:
    """Every class the training split holds must be in the calibration set (else its range is never seen)."""
    k = len(ds.classes)
    in_train = np.bincount(ds.labels[ds.indices("train")], minlength=k) > 0
    in_set = np.bincount(cs.labels, minlength=k) > 0
    missing = [c for c, t, s in zip(ds.classes, in_train, in_set) if t and not s]
    if missing:
        raise BadInput(f"{ds.root}: calibration set lacks class(es) {', '.join(missing)} of the training split "
                       f"(--calib-size {cs.meta['size']} is too small to hold every class)")


class CalibrationReader(CalibrationDataReader):
    """ONNX Runtime calibration reader: feeds the set in batches as {input_name: float32 [B, C, L]}, and for an
    RR-head graph also {rr_name: float32 [B, F]} (the same windows' RR features), so both inputs get ranges."""

    def __init__(self, signals: np.ndarray, input_name: str = "input", batch_size: int = 16,
                 rr: np.ndarray | None = None, rr_name: str | None = None):
        self.signals = np.asarray(signals, dtype=np.float32)
        self.input_name = input_name
        self.rr = None if rr is None else np.asarray(rr, dtype=np.float32)
        self.rr_name = rr_name
        self.batch_size = batch_size
        self._pos = 0

    def get_next(self) -> dict | None:
        if self._pos >= len(self.signals):
            return None
        batch = self.signals[self._pos:self._pos + self.batch_size]
        feeds = {self.input_name: np.ascontiguousarray(batch)}
        if self.rr is not None and self.rr_name:
            feeds[self.rr_name] = np.ascontiguousarray(self.rr[self._pos:self._pos + self.batch_size])
        self._pos += self.batch_size
        return feeds

    def rewind(self) -> None:
        self._pos = 0
