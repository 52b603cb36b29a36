"""The baseline's window features of every window of a prepared dataset, cached beside it.

`window_feature_table` computes ecgtool.baseline.features.extract_features for one lead (channel) of every
window once (about 6-20 ms per 10-s window on one core, benchmarks/RESULTS.md) and keeps the matrix in
`rr_head_features.npz` (core.names.RR_HEAD_CACHE) in the dataset folder, keyed by the SHA-256 of its meta.json
and the size of signals.npy; a read-only dataset folder is simply not cached. Readers: the baseline's training
(train.baseline: `train --arch rr_baseline`, on its lead), the RR head (train.rr: `train --rr-head`, `--rr-init`,
`--rr-bins`) and the rate check (data.info: `data info --rates`, `bench --external`).
"""

from __future__ import annotations

import numpy as np

from ecgtool.baseline.features import FEATURE_NAMES, extract_features
from ecgtool.core.files import atomic_path, sha256
from ecgtool.core.names import DATASET_META, RR_HEAD_CACHE
from ecgtool.data.dataset import PreparedDataset


def _key(data: PreparedDataset) -> str:
    return f"{sha256(data.root / DATASET_META)}:{(data.root / 'signals.npy').stat().st_size}:{len(FEATURE_NAMES)}"


def _read_cache(data: PreparedDataset) -> dict[str, np.ndarray]:
    """Every cached feature table of `data` ({"ch0": [N, F], ...}); {} when there is none or it is stale."""
    path = data.root / RR_HEAD_CACHE
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) == _key(data):
                    return {k: z[k] for k in z.files if k != "key"}
        except (OSError, ValueError, KeyError):  # a damaged cache is recomputed
            pass
    return {}


def cached_feature_table(data: PreparedDataset, channel: int = 0) -> np.ndarray | None:
    """window_feature_table's matrix when it is already cached, else None (nothing computed)."""
    feats = _read_cache(data).get(f"ch{channel}")
    return feats if feats is not None and feats.shape == (len(data), len(FEATURE_NAMES)) else None


def window_feature_table(data: PreparedDataset, channel: int = 0, progress: bool = True,
                         workers: int | str | None = None) -> np.ndarray:
    """The baseline's window features [N, len(FEATURE_NAMES)] of one lead (channel) of every window, cached
    (computed in `workers` processes: baseline.features.feature_workers)."""
    path, key = data.root / RR_HEAD_CACHE, _key(data)
    name = f"ch{channel}"
    cached = _read_cache(data)
    if name in cached and cached[name].shape == (len(data), len(FEATURE_NAMES)):
        return cached[name]
    feats = extract_features(data.signals, data.sampling_rate, channel=channel, progress=progress, workers=workers)
    cached[name] = feats
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, key=np.array(key), **cached)
    except OSError:  # a read-only dataset: no cache
        pass
    return feats
