"""The RR head's inputs for every window of a prepared dataset (`train --rr-head`), cached beside it.

They are the classical baseline's window features (ecgtool.baseline.features: R peaks by wfdb's
XQRS, RR irregularity, premature beats, QRS width, P wave, atrial activity), compressed by
`head_vector`; the same function runs in every predictor and in the deploy bundle, so a model sees
the same numbers in training and in deployment. Computing them costs about 6 ms per 10-s window on one
core (benchmarks/RESULTS.md), so they are computed once per dataset and lead and kept in
`rr_head_features.npz` (core.names.RR_HEAD_CACHE) in the dataset folder, keyed by the SHA-256 of its
meta.json and the size of signals.npy; a read-only dataset folder is simply not cached.
"""

from __future__ import annotations

import numpy as np

from ecgtool.baseline.features import FEATURE_NAMES, extract_features, head_vector
from ecgtool.core.files import atomic_path, sha256
from ecgtool.core.names import DATASET_META, RR_HEAD_CACHE
from ecgtool.data.dataset import PreparedDataset


def _key(data: PreparedDataset) -> str:
    return f"{sha256(data.root / DATASET_META)}:{(data.root / 'signals.npy').stat().st_size}:{len(FEATURE_NAMES)}"


def window_feature_table(data: PreparedDataset, channel: int = 0, progress: bool = True) -> np.ndarray:
    """The baseline's window features [N, len(FEATURE_NAMES)] of one lead (channel) of every window, cached."""
    path, key = data.root / RR_HEAD_CACHE, _key(data)
    name = f"ch{channel}"
    cached: dict[str, np.ndarray] = {}
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) == key:
                    cached = {k: z[k] for k in z.files if k != "key"}
        except (OSError, ValueError, KeyError):  # a damaged cache is recomputed
            cached = {}
    if name in cached and cached[name].shape == (len(data), len(FEATURE_NAMES)):
        return cached[name]
    feats = extract_features(data.signals, data.sampling_rate, channel=channel, progress=progress)
    cached[name] = feats
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, key=np.array(key), **cached)
    except OSError:  # a read-only dataset: no cache
        pass
    return feats


def dataset_rr_inputs(data: PreparedDataset, channels: int | list[int] = 0, progress: bool = True) -> np.ndarray:
    """RR-head inputs of every window: [N, HEAD_DIM] for one channel, [N, len(channels), HEAD_DIM] for a list."""
    if isinstance(channels, int):
        return head_vector(window_feature_table(data, channels, progress))
    return np.stack([head_vector(window_feature_table(data, c, progress)) for c in channels], axis=1)
