"""The windows `bench` scores and times, as each artifact is deployed.

One bench may hold artifacts that read a dataset differently: a `train --leads any` model takes the
deployment lead alone of a dataset imported with --keep-leads, an rr_baseline or a 12-lead model every
stored lead. `Windows` reads them through data.dataset.deployment_signals (the one rule) and keeps one
float32 array per view, so each view is read from the memory map once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ecgtool.data.dataset import PreparedDataset, deployment_signals


class Windows:
    """Windows `idx` of `ds` per artifact view; `of(pred)` [n, C, L], `one_batch(pred)` its first `batch` windows
    (cycled when fewer), both the same arrays on every call for one view."""

    def __init__(self, ds: PreparedDataset, idx: np.ndarray, batch: int = 1):
        self.ds, self.idx, self.batch = ds, np.asarray(idx, dtype=np.int64), int(batch)
        self._views: dict[int, np.ndarray] = {}
        self._batches: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.idx)

    def of(self, pred: Any) -> np.ndarray:
        """The windows as `pred` (anything with a `config`, or a config dict) is deployed; BadInput when they cannot fit."""
        config = pred if isinstance(pred, dict) or pred is None else getattr(pred, "config", None)
        view = deployment_signals(self.ds, config)
        key = int(view.shape[1])
        if key not in self._views:
            self._views[key] = np.ascontiguousarray(view[self.idx], dtype=np.float32)
        return self._views[key]

    def prefetch(self, path: str | os.PathLike) -> None:
        """Read the view of the artifact at `path` (by its config.json or ONNX metadata) before it is loaded, so
        that bench's peak-memory reading of its load does not count the windows; nothing when that fails (the
        load then reports why)."""
        from ecgtool.runtime.base import config_and_classes
        from ecgtool.runtime.onnxruntime import read_metadata

        p = Path(path)
        try:
            config = config_and_classes(p)[0] or (read_metadata(p).get("config") if p.suffix == ".onnx" else None)
            self.one_batch(config or {})
        except Exception:  # a broken artifact or a view that does not fit: its load says so
            pass

    def one_batch(self, pred: Any) -> np.ndarray:
        """The latency batch: the first `batch` windows of `of(pred)` (cycled)."""
        x = self.of(pred)
        key = int(x.shape[1])
        if key not in self._batches:
            self._batches[key] = x[np.arange(self.batch) % len(x)]
        return self._batches[key]
