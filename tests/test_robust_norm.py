"""Robust normalisation (median / IQR, clipped): an import option frozen into the spec that predict and
the bundle apply (data.preprocess.windows_for_spec reproduces the imported windows)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import shared_data
from ecgtool.data.preprocess import ROBUST, UnusableRecord, minmax, normalise, robust, spec_from_meta, windows_for_spec


def _ecg_like(n=2000, fs=200, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    beats = np.exp(-(((t % 0.8) - 0.4) ** 2) / (2 * 0.01 ** 2))  # a narrow "QRS" every 0.8 s
    return (beats + 0.02 * rng.standard_normal(n))[None]


def test_one_spike_squeezes_minmax_but_not_robust():
    x = _ecg_like()
    spiked = x.copy()
    spiked[0, 1000] += 20.0  # one electrode artefact, 20x the QRS
    # min-max: the QRS shrinks to ~1/20 of the range; robust: every sample but the spike is unchanged
    assert np.ptp(minmax(spiked)[0, :900]) < 0.1 < np.ptp(minmax(x)[0, :900])
    r, rs = robust(x), robust(spiked)
    keep = np.arange(x.shape[1]) != 1000
    assert np.abs(r[0, keep] - rs[0, keep]).max() < 0.05
    assert rs.min() >= -1 and rs.max() <= 1 and rs[0, 1000] == 1.0


def test_robust_refuses_a_flat_line_and_unknown_methods():
    with pytest.raises(UnusableRecord, match="flat line"):
        robust(np.zeros((1, 2000)))
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise(_ecg_like(), "zscore")


def test_import_robust_is_frozen_in_the_spec_and_reapplied_at_prediction(tmp_path):
    from ecgtool.data.dataset import load_dataset
    from ecgtool.data.importers import import_dataset
    from ecgtool.data.importers.wfdb_read import read_record

    src = shared_data("mitdb")
    ds = load_dataset(import_dataset("records", src, tmp_path / "d", records=["100"], normalisation=ROBUST))
    spec = spec_from_meta(ds.meta)
    assert spec["normalisation"] == ROBUST and ds.meta["preprocessing"]["normalisation_method"] == ROBUST
    assert ds.signals.min() >= -1 and ds.signals.max() <= 1 and ds.signals.min() < 0
    raw = read_record(src / "100", "II")
    again, starts, _ = windows_for_spec(raw.signal, raw.fs, spec, policy="all")
    np.testing.assert_allclose(again, np.asarray(ds.signals), atol=1e-5)
