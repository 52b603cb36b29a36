"""The synthetic generator: sizes, determinism, and its physiology checked by an independent QRS detector.

Heart rates and rhythm come from wfdb's XQRS detector run on the generated signal; PR intervals and
QRS widths are measured on the signal around the detected peaks. The generator's own parameters
(records.csv) are never the evidence.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import find_peaks

from ecgtool.data.classes import DEFAULT_CLASSES, PAPER_SHARES
from ecgtool.data.synth import FS, class_counts, synthesize

wfdb_processing = pytest.importorskip("wfdb.processing")

PER_CLASS = 24


def _r_peaks(x: np.ndarray) -> np.ndarray:
    return np.asarray(wfdb_processing.xqrs_detect(x.astype(np.float64), fs=FS, verbose=False))


@pytest.fixture(scope="module")
def noisy():
    signals, labels, _ = synthesize(per_class=PER_CLASS, seed=11)
    return signals, labels, [_r_peaks(s[0]) for s in signals]


@pytest.fixture(scope="module")
def clean():
    signals, labels, _ = synthesize(per_class=PER_CLASS, seed=12, noise=False)
    return signals, labels, [_r_peaks(s[0]) for s in signals]


def _of(cls: str, data) -> list[tuple[np.ndarray, np.ndarray]]:
    signals, labels, peaks = data
    return [(signals[i, 0], peaks[i]) for i in np.flatnonzero(labels == DEFAULT_CLASSES.index(cls))]


def _heart_rate(peaks: np.ndarray) -> float:
    return 60.0 * FS / float(np.median(np.diff(peaks))) if len(peaks) > 2 else float("nan")


def _pr_ms(x: np.ndarray, peaks: np.ndarray) -> float:
    """Median P-peak to R-peak time (ms): the last local maximum 60-450 ms before each R."""
    lo, hi = int(0.45 * FS), int(0.06 * FS)
    out = []
    for p in peaks[peaks >= lo]:
        bumps, _ = find_peaks(x[p - lo: p - hi], prominence=0.01)
        if len(bumps):
            out.append((lo - bumps[-1]) * 1000 / FS)
    return float(np.median(out)) if out else float("nan")


def _half_widths_ms(x: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Width (ms) at half amplitude of the main QRS deflection at each detected peak, either polarity."""
    y = x - np.median(x)
    widths = []
    for p in peaks:
        a = max(p - 12, 0)
        m = a + int(np.argmax(np.abs(y[a: p + 12])))
        sign, half = np.sign(y[m]), abs(y[m]) / 2
        i, j = m, m
        while i > 0 and sign * y[i] > half:
            i -= 1
        while j < len(y) - 1 and sign * y[j] > half:
            j += 1
        widths.append((j - i) * 1000 / FS)
    return np.asarray(widths)


def _has_wide_premature_beat(x: np.ndarray, peaks: np.ndarray) -> bool:
    """A beat at least 1.6x wider (and >= 45 ms at half height) than the record's median, that comes
    early (RR < 0.85 median) and is followed by a pause (next RR > 1.15 median)."""
    if len(peaks) < 4:
        return False
    w, rr = _half_widths_ms(x, peaks), np.diff(peaks)
    med_w, med_rr = np.median(w), np.median(rr)
    return any(w[k] >= 1.6 * med_w and w[k] >= 45 and rr[k - 1] < 0.85 * med_rr and rr[k] > 1.15 * med_rr
               for k in range(1, len(peaks) - 1))


def test_class_counts_follow_paper_shares_with_largest_remainder():
    counts = class_counts(total=28308)
    assert counts.sum() == 28308
    assert np.all(np.abs(counts - 28308 * np.array(PAPER_SHARES) / sum(PAPER_SHARES)) < 1)
    small = class_counts(total=101)
    assert small.sum() == 101 and small[0] == 35 and small[1] == 34  # 34.8 and 34.2 rounded by remainder
    assert class_counts(total=23, balance="equal").tolist() == [4, 4, 3, 3, 3, 3, 3]
    assert class_counts(per_class=5).tolist() == [5] * 7
    with pytest.raises(ValueError):
        class_counts(per_class=5, total=10)


def test_shapes_range_and_labels():
    signals, labels, records = synthesize(per_class=3, seed=1)
    assert signals.shape == (21, 1, 2000) and signals.dtype == np.float32
    assert labels.dtype == np.int64 and np.bincount(labels).tolist() == [3] * 7
    assert np.allclose(signals.min(axis=(1, 2)), 0) and np.allclose(signals.max(axis=(1, 2)), 1)
    assert [r["label"] for r in records] == [DEFAULT_CLASSES[k] for k in labels]
    assert len({r["patient_id"] for r in records}) == 21


def test_same_seed_same_bytes_other_seed_differs():
    a, la, ra = synthesize(total=60, seed=7)
    b, lb, rb = synthesize(total=60, seed=7)
    c, lc, _ = synthesize(total=60, seed=8)
    assert a.tobytes() == b.tobytes() and la.tobytes() == lb.tobytes() and ra == rb
    assert a.tobytes() != c.tobytes()


def test_heart_rates_in_class_ranges(noisy):
    """With noise on, detected rates fall in each class's range (a few bpm of tolerance, 90% of records)."""
    ranges = {"Normal": (57, 103), "SB": (0, 62), "ST": (98, 250), "FAB": (57, 103), "PVC": (57, 103)}
    for cls, (lo, hi) in ranges.items():
        hr = np.array([_heart_rate(p) for _, p in _of(cls, noisy)])
        assert np.mean((hr >= lo) & (hr <= hi)) >= 0.9, (cls, np.round(hr))
    sb = np.nanmedian([_heart_rate(p) for _, p in _of("SB", noisy)])
    st = np.nanmedian([_heart_rate(p) for _, p in _of("ST", noisy)])
    assert sb < 60 < 100 < st


def test_af_rr_irregularity_well_above_normal(noisy):
    def cv(peaks):
        rr = np.diff(peaks)
        return rr.std() / rr.mean()

    af = np.median([cv(p) for _, p in _of("AF", noisy)])
    normal = np.median([cv(p) for _, p in _of("Normal", noisy)])
    assert af > 3 * normal and af > 0.1, (af, normal)


def test_first_degree_block_pr_above_200ms(clean):
    fab = np.array([_pr_ms(x, p) for x, p in _of("FAB", clean)])
    normal = np.array([_pr_ms(x, p) for x, p in _of("Normal", clean)])
    assert np.mean(fab > 200) >= 0.9, np.round(fab)
    assert np.mean(normal < 200) >= 0.85 and np.all(normal > 80), np.round(normal)
    assert np.median(fab) - np.median(normal) > 60


def test_pvc_records_have_wide_premature_beats(clean):
    pvc = [_has_wide_premature_beat(x, p) for x, p in _of("PVC", clean)]
    normal = [_has_wide_premature_beat(x, p) for x, p in _of("Normal", clean)]
    assert np.mean(pvc) >= 0.8 and np.mean(normal) <= 0.1, (np.mean(pvc), np.mean(normal))


def test_af_has_no_repeating_p_wave(clean):
    """AF lacks the fixed P wave before each QRS: the 60-300 ms before R varies from beat to beat
    (fibrillatory waves), unlike sinus rhythm, where it repeats."""
    def pre_r_variability(x, peaks):
        lo, hi = int(0.3 * FS), int(0.06 * FS)
        segs = np.stack([x[p - lo: p - hi] for p in peaks if p >= lo])
        segs = segs - segs.mean(axis=1, keepdims=True)
        return float(np.mean(segs.std(axis=0)) / (np.mean(np.abs(segs)) + 1e-9))

    normal = np.median([pre_r_variability(x, p) for x, p in _of("Normal", clean)])
    af = np.median([pre_r_variability(x, p) for x, p in _of("AF", clean)])
    assert af > 2 * normal, (af, normal)
