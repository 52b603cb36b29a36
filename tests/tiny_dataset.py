"""A tiny, easily separable prepared dataset for fast training tests (class k: a sinusoid of its own frequency)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ecgtool.data.classes import DEFAULT_CLASSES
from ecgtool.data.dataset import write_dataset
from ecgtool.data.splits import random_split


#: samples per window of the tiny datasets the compression tests use
LENGTH = 256


def make_tiny_dataset(path: Path, per_class: int = 20, length: int = 256, fs: float = 100.0,
                      classes: Sequence[str] = DEFAULT_CLASSES, seed: int = 0, splits: dict | None = None,
                      shuffle_val_labels: bool = False) -> Path:
    """Write a prepared dataset of min-max normalised noisy sinusoids, class k at 0.8*(k+1) Hz."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / fs
    signals, labels = [], []
    for k in range(len(classes)):
        for _ in range(per_class):
            s = np.sin(2 * np.pi * 0.8 * (k + 1) * t + rng.uniform(0, 2 * np.pi)) + 0.3 * rng.standard_normal(length)
            signals.append(((s - s.min()) / (s.max() - s.min()))[None])
            labels.append(k)
    x = np.asarray(signals, dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64)
    splits = splits or random_split(y, seed)
    if shuffle_val_labels:  # validation labels that contradict the signals: val loss rises as training fits
        val = splits["val"]
        y[val] = (y[val] + 1) % len(classes)
    records = [{"record_id": f"r{i}", "patient_id": f"p{i}", "label": classes[c]} for i, c in enumerate(y)]
    write_dataset(path, x, y, classes, records, splits, {"sampling_rate": fs, "source": "tiny test set"})
    return path
