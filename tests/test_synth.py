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


# ------------------------------------------------- --morphology diverse: the class definitions under every draw

DIVERSE_PER_CLASS = 16


def _qrs_duration_ms(x: np.ndarray, peaks: np.ndarray) -> float:
    """Median QRS duration (ms): the run around each detected peak where |signal - median| stays above
    15 % of the main deflection, gaps of up to 16 ms bridged (a notched wide QRS counts whole)."""
    y = x - np.median(x)
    gap, out = int(0.016 * FS), []
    for p in peaks:
        a, b = max(p - 8, 0), min(p + 8, len(y))
        m = a + int(np.argmax(np.abs(y[a:b])))
        above = np.abs(y) > 0.15 * abs(y[m])
        i = m
        while i > 0 and above[max(i - gap, 0): i].any():
            i -= 1
        j = m
        while j < len(y) - 1 and above[j + 1: j + 1 + gap].any():
            j += 1
        out.append((j - i) * 1000 / FS)
    return float(np.median(out)) if out else float("nan")


def _main_deflection_sign(x: np.ndarray, peaks: np.ndarray) -> float:
    """Median sign of the largest deviation from the record's median within 40 ms of each peak."""
    y = x - np.median(x)
    return float(np.median([np.sign(y[max(p - 8, 0) + int(np.argmax(np.abs(y[max(p - 8, 0): p + 8])))])
                            for p in peaks]))


@pytest.fixture(scope="module")
def diverse_clean():
    signals, labels, records = synthesize(per_class=DIVERSE_PER_CLASS, seed=12, noise=False, morphology="diverse")
    return signals, labels, [_r_peaks(s[0]) for s in signals]


@pytest.fixture(scope="module")
def diverse_random_lead():
    signals, labels, records = synthesize(per_class=DIVERSE_PER_CLASS, seed=13, noise=False, morphology="diverse",
                                          lead="random")
    return (signals, labels, [_r_peaks(s[0]) for s in signals]), records


def test_diverse_is_its_own_stream_and_leaves_standard_alone():
    std, _, r_std = synthesize(total=60, seed=7)
    std2, _, _ = synthesize(total=60, seed=7, morphology="standard", lead="II")
    div, lab, r_div = synthesize(total=60, seed=7, morphology="diverse")
    div2, _, _ = synthesize(total=60, seed=7, morphology="diverse")
    assert std.tobytes() == std2.tobytes() and div.tobytes() == div2.tobytes()
    assert std.tobytes() != div.tobytes() and "lead" not in r_std[0] and r_div[0]["lead"] == "II"
    assert np.allclose(div.min(axis=(1, 2)), 0) and np.allclose(div.max(axis=(1, 2)), 1)
    # the rhythm (beat times) is drawn as in the standard generator: same heart rates per record
    assert [r["heart_rate_bpm"] for r in r_std] == [r["heart_rate_bpm"] for r in r_div]
    with pytest.raises(ValueError, match="needs morphology 'diverse'"):
        synthesize(total=60, lead="aVR")
    with pytest.raises(ValueError, match="morphology must be"):
        synthesize(total=60, morphology="fancy")


def test_diverse_first_degree_block_keeps_long_pr(diverse_clean):
    fab = np.array([_pr_ms(x, p) for x, p in _of("FAB", diverse_clean)])
    normal = np.array([_pr_ms(x, p) for x, p in _of("Normal", diverse_clean)])
    assert np.mean(fab > 200) >= 0.9, np.round(fab)
    assert np.mean(normal < 200) >= 0.8, np.round(normal)
    assert np.median(fab) - np.median(normal) > 60


def test_diverse_sinus_rhythm_has_wide_qrs_sometimes_standard_never(diverse_clean, clean):
    """Bundle-branch-like wide QRS in sinus rhythm: a minority of diverse Normal records measure >= 80 ms
    (the standard generator's narrow QRS measures <= 70 ms by this rule), yet none has a wide premature beat."""
    div = np.array([_qrs_duration_ms(x, p) for x, p in _of("Normal", diverse_clean)])
    std = np.array([_qrs_duration_ms(x, p) for x, p in _of("Normal", clean)])
    assert np.all(std < 80), np.round(std)
    assert 0.05 <= np.mean(div >= 80) <= 0.4, np.round(div)
    assert not any(_has_wide_premature_beat(x, p) for x, p in _of("Normal", diverse_clean))


def test_diverse_pvc_stays_wide_and_premature(diverse_clean, diverse_random_lead):
    for data in (diverse_clean, diverse_random_lead[0]):
        pvc = [_has_wide_premature_beat(x, p) for x, p in _of("PVC", data)]
        assert np.mean(pvc) >= 0.8, np.mean(pvc)


def test_diverse_af_irregular_and_without_p(diverse_clean):
    def cv(peaks):
        rr = np.diff(peaks)
        return rr.std() / rr.mean()

    af = np.median([cv(p) for _, p in _of("AF", diverse_clean)])
    normal = np.median([cv(p) for _, p in _of("Normal", diverse_clean)])
    assert af > 3 * normal and af > 0.1, (af, normal)


def test_random_lead_projects_the_dipole(diverse_random_lead):
    """aVR looks at the heart from the right shoulder: its QRS points down in most records, lead II's up."""
    (signals, labels, peaks), records = diverse_random_lead
    leads = np.array([r["lead"] for r in records])
    assert set(leads) == {"I", "II", "III", "aVR", "aVL", "aVF"}
    sign = np.array([_main_deflection_sign(signals[i, 0], peaks[i]) for i in range(len(labels))])
    sinus_narrow = np.array([not r["bundle_branch_block"] and r["label"] != "PVC" for r in records])
    assert np.mean(sign[(leads == "aVR") & sinus_narrow] < 0) >= 0.7
    assert np.mean(sign[(leads == "II") & sinus_narrow] > 0) >= 0.7


def test_diverse_noise_keeps_rates_detectable_at_realistic_snr():
    signals, labels, records = synthesize(per_class=DIVERSE_PER_CLASS, seed=11, morphology="diverse")
    snr = np.array([r["snr_db"] for r in records if r["snr_db"] is not None])
    assert snr.min() < 6 and snr.max() > 20  # the range spans noisy ambulatory and clean resting records
    data = (signals, labels, [_r_peaks(s[0]) for s in signals])
    ranges = {"Normal": (57, 103), "SB": (0, 62), "ST": (98, 250), "FAB": (57, 103), "PVC": (57, 103)}
    for cls, (lo, hi) in ranges.items():
        hr = np.array([_heart_rate(p) for _, p in _of(cls, data)])
        assert np.mean((hr >= lo) & (hr <= hi)) >= 0.85, (cls, np.round(hr))


def test_rr_baseline_still_separates_the_rhythms_on_diverse(tmp_path):
    """The classes stay rhythm classes: the RR-feature baseline, trained on a small diverse set, is far
    above chance (1/7) on its test split."""
    from ecgtool.core import ui
    from ecgtool.data.synth import write_synthetic_dataset
    from ecgtool.train.baseline import train_baseline

    ui.set_quiet(True)
    data = write_synthetic_dataset(tmp_path / "d", per_class=30, seed=3, morphology="diverse")
    row = train_baseline(data, tmp_path / "run")
    assert row["macro_f1"] >= 0.75, row


def _flutter_band_share(x: np.ndarray, peaks: np.ndarray) -> float:
    """Share of the 0.5-15 Hz power in 3.8-6 Hz (flutter at 240-340/min, i.e. 4-5.7 Hz) once the QRS
    complexes (+-80 ms around each detected peak) are bridged by straight lines."""
    from scipy.signal import welch

    y = x.astype(np.float64).copy()
    keep = np.ones(len(y), dtype=bool)
    for p in peaks:
        keep[max(p - 16, 0): p + 16] = False
    idx = np.arange(len(y))
    y[~keep] = np.interp(idx[~keep], idx[keep], y[keep])
    f, pxx = welch(y - y.mean(), fs=FS, nperseg=512)
    return float(pxx[(f >= 3.8) & (f <= 6.0)].sum() / pxx[(f >= 0.5) & (f <= 15)].sum())


def test_flutter_waves_stay_in_the_flutter_band(clean, diverse_clean, diverse_random_lead):
    """Between the QRS complexes, AFL records carry far more 4-6 Hz power than sinus rhythm, under either
    morphology and on any limb lead (the atrial vector is kept visible)."""
    for data in (clean, diverse_clean, diverse_random_lead[0]):
        afl = np.median([_flutter_band_share(x, p) for x, p in _of("AFL", data)])
        normal = np.median([_flutter_band_share(x, p) for x, p in _of("Normal", data)])
        assert afl > 1.8 * normal and afl > 0.3, (afl, normal)
