"""Per-window signal quality and R peaks: the gate every window of `predict`, streaming and the bundle
passes before it is classified.

numpy + scipy only: `ecgtool package` ships this file in every bundle as ecg_quality.py
(core.names.BUNDLE_QUALITY), beside ecg_stream.py, which imports it.

Signal quality (`window_quality`), checked on each window before it is classified; a window that fails
is `unclassifiable` with the reason and gets no rhythm:
- non-finite: any NaN/inf input sample in the window;
- flat: peak-to-peak under flat_mv over the window, or a flat stretch (every 0.5-s span under flat_mv)
  of FLAT_RUN_S or more (lead off);
- clipped: at least CLIP_FRAC of the window's input samples sit on plateaus (runs of >= 15 ms of equal
  values) at the window's own maximum or minimum (ADC saturation);
- noisy: out-of-band power (40 Hz up to Nyquist, of the power above 0.5 Hz) over NOISE_HF_MAX, or a
  beat-template correlation (median Pearson correlation of each detected beat with the window's median
  beat, after Orphanidou et al. 2015) under NOISE_TEMPLATE_MIN, or fewer than 2 beats detected.
R peaks (heart rate, template) come from a fast scipy detector (5-15 Hz band-pass, squared slope,
150-ms moving integration, scipy.signal.find_peaks with a 250-ms refractory distance).
`window_quality` is the definition, one window at a time; `batch_quality` gates a batch of windows at
once (one filter, one FFT, one percentile over the batch) and gives exactly the same statuses, reasons and
details (tests/test_clinical.py).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d
from scipy.signal import butter, find_peaks, sosfilt

if __package__:
    from ecgtool.data import preprocess as pre
else:  # in a bundle, beside ecg_preprocess.py
    import ecg_preprocess as pre

FLAT_RUN_S = 2.0
CLIP_FRAC = 0.01
NOISE_HF_MAX = 0.2
NOISE_TEMPLATE_MIN = 0.5
QUALITY_OK = "ok"
_FLOAT_MAX = float(np.finfo(np.float64).max)


# --- R peaks, heart rate, quality ------------------------------------------------------------------


@lru_cache(maxsize=16)
def _qrs_sos(fs: float) -> np.ndarray:
    return butter(2, (5.0, min(15.0, 0.45 * fs)), btype="bandpass", fs=fs, output="sos")


def r_peaks(x: np.ndarray, fs: float) -> np.ndarray:
    """R-peak indices of a 1-D window (see module doc); empty for a flat or beat-less window."""
    x = np.asarray(x, dtype=np.float64)
    if x.size < fs or not np.all(np.isfinite(x)) or np.ptp(x) < 1e-6:
        return np.zeros(0, dtype=np.int64)
    f = sosfilt(_qrs_sos(float(fs)), x - x[0])
    e = np.diff(f, prepend=f[0]) ** 2
    k = max(1, int(0.15 * fs))
    e = np.convolve(e, np.ones(k) / k, mode="same")
    thr = 0.3 * np.percentile(e, 98)
    if thr <= 0:
        return np.zeros(0, dtype=np.int64)
    peaks, _ = find_peaks(e, height=thr, distance=max(1, int(0.25 * fs)))
    # the energy peak lags the R wave: snap to the largest |deviation from the median| within 100 ms before
    r = int(0.1 * fs)
    dev = np.abs(x - np.median(x))
    out = [max(0, p - r) + int(np.argmax(dev[max(0, p - r):p + 1])) for p in peaks]
    return np.unique(np.asarray(out, dtype=np.int64))


def heart_rate(peaks: np.ndarray, fs: float) -> float | None:
    if len(peaks) < 2:
        return None
    return round(60.0 / float(np.median(np.diff(peaks)) / fs), 1)


def template_correlation(x: np.ndarray, peaks: np.ndarray, fs: float) -> float | None:
    """Median correlation of each beat (-0.2..+0.4 s around R) with the window's median beat."""
    a, b = int(0.2 * fs), int(0.4 * fs)
    ok = peaks[(peaks - a >= 0) & (peaks + b <= x.size)]
    if len(ok) < 2:
        return None
    beats = x[ok[:, None] + np.arange(-a, b)[None, :]]
    tmpl = np.median(beats, axis=0)
    bc = beats - beats.mean(axis=1, keepdims=True)
    tc = tmpl - tmpl.mean()
    den = np.sqrt((bc ** 2).sum(axis=1) * (tc ** 2).sum())
    corr = np.where(den > 0, (bc @ tc) / np.where(den > 0, den, 1), 0.0)
    return float(np.median(corr))


def _longest_run(mask: np.ndarray) -> int:
    if not mask.any():
        return 0
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return int((np.flatnonzero(d == -1) - np.flatnonzero(d == 1)).max())


def _plateau_frac(raw: np.ndarray, fs_raw: float) -> float:
    """Fraction of samples on >= 15-ms runs of equal values at the window's max or min."""
    lo, hi = raw.min(), raw.max()
    min_run = max(3, int(round(0.015 * fs_raw)))
    total = 0
    with np.errstate(over="ignore", invalid="ignore"):  # samples near the float limit: a span of inf
        tol = 1e-9 * min(max(1.0, hi - lo), _FLOAT_MAX)
        on_hi = np.abs(raw - hi) <= tol
        rails = (on_hi, (np.abs(raw - lo) <= tol) & ~on_hi)  # a sample counts once, also when max == min
    for m in rails:
        if m.sum() < min_run:
            continue
        d = np.diff(np.concatenate([[0], m.astype(np.int8), [0]]))
        runs = np.flatnonzero(d == -1) - np.flatnonzero(d == 1)
        total += int(runs[runs >= min_run].sum())
    return total / raw.size


def noise_reason(hf: float, n_peaks: int, corr: float | None) -> str | None:
    """Why a window is too noisy (out-of-band power share `hf`, `n_peaks` R peaks, beat-template correlation
    `corr`), or None; the one rule of window_quality and batch_quality."""
    if hf > NOISE_HF_MAX:
        return f"out-of-band power {100 * hf:.0f} % > {100 * NOISE_HF_MAX:.0f} %"
    if corr is None:
        return f"fewer than 2 beats detected ({n_peaks})"
    if corr < NOISE_TEMPLATE_MIN:
        return f"beat-template correlation {corr:.2f} < {NOISE_TEMPLATE_MIN}"
    return None


def window_quality(x: np.ndarray, fs: float, raw: np.ndarray | None = None, fs_raw: float | None = None,
                   flat_mv: float = pre.FLAT_MV) -> tuple[str, dict]:
    """(status, details) of one window [C, L] at the model rate (`raw`: the input samples it came from).

    status: 'ok', or 'non-finite', 'flat', 'clipped', 'noisy' (see the module doc for each rule).
    details: hr_bpm, sqi (template correlation), hf (out-of-band power fraction), where computed.
    """
    x = np.atleast_2d(x)
    raw = x if raw is None else np.atleast_2d(raw)
    fs_raw = fs if fs_raw is None else fs_raw
    if not np.all(np.isfinite(raw)) or not np.all(np.isfinite(x)):
        return "non-finite", {"reason": f"{int((~np.isfinite(raw)).sum())} non-finite input sample(s)"}
    details: dict = {}
    for lead in range(x.shape[0]):
        s = x[lead]
        if np.ptp(s) < flat_mv:
            return "flat", {"reason": f"peak-to-peak below {flat_mv:g} mV"}
        k = max(2, int(0.5 * fs))
        local = maximum_filter1d(s, k) - minimum_filter1d(s, k)
        run = _longest_run(local < flat_mv)
        if run + k - 1 >= FLAT_RUN_S * fs:
            return "flat", {"reason": f"flat for {(run + k - 1) / fs:.1f} s (lead off?)"}
        frac = _plateau_frac(raw[min(lead, raw.shape[0] - 1)], fs_raw)
        if frac >= CLIP_FRAC:
            return "clipped", {"reason": f"{100 * frac:.1f} % of samples on plateaus at the window's max/min"}
        spec = np.abs(np.fft.rfft(s - s.mean())) ** 2
        freqs = np.fft.rfftfreq(s.size, 1.0 / fs)
        band = spec[freqs >= 0.5].sum()
        hf = float(spec[freqs >= 40.0].sum() / band) if band > 0 else 0.0
        peaks = r_peaks(s, fs)
        corr = template_correlation(s, peaks, fs)
        if lead == 0:
            details = {"hr_bpm": heart_rate(peaks, fs), "sqi": None if corr is None else round(corr, 3),
                       "hf": round(hf, 3)}
        worst = noise_reason(hf, len(peaks), corr)
        if worst:
            return "noisy", {**details, "reason": worst}
    return QUALITY_OK, details


# --- the same gate over a batch of windows -----------------------------------------------------------
#
# `batch_quality` gives, window for window, exactly what `window_quality` gives (status, reason and the
# rounded details; tests/test_clinical.py checks it on real MIT-BIH windows with noise, lead-off and
# clipping added, and on generated hostile windows), with one call per step over the whole batch: one
# FFT, one QRS filter, one percentile and median, one run-length pass, ragged medians by sorting, and
# the max/min filters only on the rows that can hold a flat span. It only reorders the work: every number
# comes from the same numpy/scipy operation on the same values as in the per-window definition (the
# beat-template dot products stay one small BLAS gemv per window); the remaining per-window loops are
# np.convolve and scipy.signal.find_peaks, which are 1-D.


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, length) of every run of True in a 2-D mask, row by row."""
    pad = np.zeros((mask.shape[0], 1), dtype=np.int8)
    d = np.diff(np.concatenate([pad, mask.astype(np.int8), pad], axis=1), axis=1)
    rows, starts = np.nonzero(d == 1)
    _, ends = np.nonzero(d == -1)  # row-major: the k-th end closes the k-th start
    return rows, ends - starts


def _longest_runs(mask: np.ndarray) -> np.ndarray:
    out = np.zeros(mask.shape[0], dtype=np.int64)
    some = np.flatnonzero(mask.any(axis=1))  # most rows have none: run lengths only where there is one
    if len(some):
        rows, lengths = _runs(mask[some])
        np.maximum.at(out, some[rows], lengths)
    return out


def _flat_runs(s: np.ndarray, k: int, flat_mv: float) -> np.ndarray:
    """Per row of s [n, L]: the longest run of `maximum_filter1d - minimum_filter1d (k) < flat_mv`, as in
    window_quality. The filters run only on rows that can have one: a k-sample span (at least k // 2 + 1
    distinct samples at the reflected ends) with a range under flat_mv has every step |diff| under flat_mv
    (rounding is monotone), so a row without k // 4 such steps in a row has none."""
    out = np.zeros(s.shape[0], dtype=np.int64)
    m = max(1, k // 4)
    c = np.cumsum(np.abs(np.diff(s, axis=1)) < flat_mv, axis=1, dtype=np.int32)
    c = np.concatenate([np.zeros((s.shape[0], 1), dtype=np.int32), c], axis=1)
    cand = np.flatnonzero(((c[:, m:] - c[:, :-m]) == m).any(axis=1)) if c.shape[1] > m else np.zeros(0, np.int64)
    if len(cand):
        sub = s[cand]
        out[cand] = _longest_runs((maximum_filter1d(sub, k, axis=1) - minimum_filter1d(sub, k, axis=1)) < flat_mv)
    return out


def _plateau_fracs(raw: np.ndarray, fs_raw: float) -> np.ndarray:
    """_plateau_frac of each row of raw [k, m]."""
    lo, hi = raw.min(axis=1), raw.max(axis=1)
    min_run = max(3, int(round(0.015 * fs_raw)))
    total = np.zeros(raw.shape[0])
    with np.errstate(over="ignore", invalid="ignore"):  # as _plateau_frac
        tol = (1e-9 * np.minimum(np.maximum(1.0, hi - lo), _FLOAT_MAX))[:, None]
        on_hi = np.abs(raw - hi[:, None]) <= tol
        rails = (on_hi, (np.abs(raw - lo[:, None]) <= tol) & ~on_hi)
    for m in rails:
        some = np.flatnonzero(np.count_nonzero(m, axis=1) >= min_run)  # fewer on the rail: no run that long
        if len(some):
            rows, lengths = _runs(m[some])
            total[some] += np.bincount(rows, weights=np.where(lengths >= min_run, lengths, 0), minlength=len(some))
    return total / raw.shape[1]


def _ragged_median(values: np.ndarray, rows: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(median over the entries of each row -- np.median's value: the middle one, or the mean of the two --
    as float64 [n_rows, ...], count per row). values [N, ...] with rows [N] (sorted or not)."""
    counts = np.bincount(rows, minlength=n_rows)
    order = np.argsort(rows, kind="stable")
    v, r = values[order], rows[order]
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    width = int(counts.max()) if len(counts) and counts.max() > 0 else 1
    padded = np.full((n_rows, width) + values.shape[1:], np.inf)
    padded[r, np.arange(len(r)) - first[r]] = v
    padded.sort(axis=1)  # +inf padding sorts last
    c = np.maximum(counts, 1)
    hi = padded[np.arange(n_rows), c // 2]
    lo = padded[np.arange(n_rows), (c - 1) // 2]
    med = np.where(((c % 2) == 1).reshape((-1,) + (1,) * (values.ndim - 1)), hi, (lo + hi) / 2)
    return med, counts


def r_peaks_batch(x: np.ndarray, fs: float) -> list[np.ndarray]:
    """r_peaks of each row of x [k, L] (the same detector, one filter call over the batch)."""
    x = np.asarray(x, dtype=np.float64)
    k, n = x.shape
    out = [np.zeros(0, dtype=np.int64)] * k
    if not k or n < fs:
        return out
    usable = np.isfinite(x).all(axis=1)
    usable &= np.where(usable, np.ptp(np.where(usable[:, None], x, 0.0), axis=1), 0.0) >= 1e-6
    rows_ok = np.flatnonzero(usable)
    if not len(rows_ok):
        return out
    xs = x[rows_ok]
    f = sosfilt(_qrs_sos(float(fs)), xs - xs[:, :1], axis=-1)
    e = np.diff(f, axis=1, prepend=f[:, :1]) ** 2
    m = max(1, int(0.15 * fs))
    kern = np.ones(m) / m
    e = np.stack([np.convolve(row, kern, mode="same") for row in e])
    thr = 0.3 * np.percentile(e, 98, axis=1)
    dist = max(1, int(0.25 * fs))
    prow, pidx = [], []
    for j in range(len(rows_ok)):
        if thr[j] <= 0:
            continue
        pk, _ = find_peaks(e[j], height=thr[j], distance=dist)
        prow.append(j)
        pidx.append(pk)
    if not prow:
        return out
    prow = np.repeat(np.asarray(prow, dtype=np.int64), [len(p) for p in pidx])
    pidx = np.concatenate(pidx).astype(np.int64)
    r = int(0.1 * fs)
    dev = np.abs(xs - np.median(xs, axis=1, keepdims=True))
    idx = pidx[:, None] - r + np.arange(r + 1)[None, :]
    vals = np.where(idx >= 0, dev[prow[:, None], np.maximum(idx, 0)], -np.inf)
    snapped = pidx - r + np.argmax(vals, axis=1)  # = max(0, p - r) + argmax(dev[max(0, p - r):p + 1])
    key = np.unique(prow * n + snapped)
    krow, kval = key // n, key % n
    bounds = np.searchsorted(krow, np.arange(len(rows_ok) + 1))
    for j, row in enumerate(rows_ok):
        if bounds[j + 1] > bounds[j]:
            out[row] = kval[bounds[j]:bounds[j + 1]]
    return out


def _template_correlations(x: np.ndarray, peaks: list[np.ndarray], fs: float) -> list[float | None]:
    """template_correlation of each row of x [k, L] with its peaks (ragged medians over the batch)."""
    k, n = x.shape
    a, b = int(0.2 * fs), int(0.4 * fs)
    kept = [p[(p - a >= 0) & (p + b <= n)] for p in peaks]
    use = [j for j in range(k) if len(kept[j]) >= 2]
    out: list[float | None] = [None] * k
    if not use:
        return out
    rows = np.repeat(np.arange(len(use)), [len(kept[j]) for j in use])
    pos = np.concatenate([kept[j] for j in use])
    src = np.asarray(use)[rows]
    beats = x[src[:, None], pos[:, None] + np.arange(-a, b)[None, :]]
    tmpl, counts = _ragged_median(beats, rows, len(use))
    bc = beats - beats.mean(axis=1, keepdims=True)
    tc = tmpl - tmpl.mean(axis=1, keepdims=True)
    den = np.sqrt((bc ** 2).sum(axis=1) * (tc ** 2).sum(axis=1)[rows])
    bounds = np.concatenate([[0], np.cumsum(counts)])
    num = np.concatenate([bc[bounds[i]:bounds[i + 1]] @ tc[i] for i in range(len(use))])
    corr = np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
    med, _ = _ragged_median(corr, rows, len(use))
    for i, j in enumerate(use):
        out[j] = float(med[i])
    return out


def _heart_rates(peaks: list[np.ndarray], fs: float) -> list[float | None]:
    out: list[float | None] = [None] * len(peaks)
    which = [i for i, p in enumerate(peaks) if len(p) >= 2]
    if not which:
        return out
    counts = np.array([len(peaks[i]) for i in which])
    flat = np.concatenate([peaks[i] for i in which])
    rows = np.repeat(np.arange(len(which)), counts)
    d = np.diff(flat)
    same = rows[1:] == rows[:-1]  # steps inside one window (not across two)
    med, _ = _ragged_median(d[same].astype(np.float64), rows[1:][same], len(which))
    for j, i in enumerate(which):
        out[i] = round(60.0 / float(med[j] / fs), 1)
    return out


def batch_quality(x: np.ndarray, fs: float, raws: list[np.ndarray] | None = None, fs_raw: float | None = None,
                  flat_mv: float = pre.FLAT_MV) -> list[tuple[str, dict]]:
    """`window_quality` of each window of x [n, C, L] (raws[i]: window i's input samples [C, m_i]), over the
    batch at once; window for window the same (status, details) as the per-window definition."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, None, :]
    n, n_leads, length = x.shape
    if raws is None:
        raws, fs_raw = list(x), fs
    fs_raw = fs if fs_raw is None else fs_raw
    raws = [r if isinstance(r, np.ndarray) and r.ndim == 2 and r.dtype == np.float64
            else np.atleast_2d(np.asarray(r, dtype=np.float64)) for r in raws]
    out: list[tuple[str, dict] | None] = [None] * n
    by_shape: dict[tuple, list[int]] = {}
    for i, r in enumerate(raws):
        by_shape.setdefault(r.shape, []).append(i)
    stacked = {shape: (idx, np.stack([raws[i] for i in idx])) for shape, idx in by_shape.items()}
    x_bad = ~np.isfinite(x).all(axis=(1, 2))
    for idx, arr in stacked.values():
        n_bad = arr[0].size - np.count_nonzero(np.isfinite(arr), axis=(1, 2))
        for i, nb in zip(idx, n_bad.tolist()):
            if nb or x_bad[i]:
                out[i] = ("non-finite", {"reason": f"{nb} non-finite input sample(s)"})
    details: list[dict] = [{} for _ in range(n)]
    k = max(2, int(0.5 * fs))
    freqs = np.fft.rfftfreq(length, 1.0 / fs)
    in_band, out_band = freqs >= 0.5, freqs >= 40.0
    for lead in range(n_leads):
        alive = np.array([i for i in range(n) if out[i] is None], dtype=np.int64)
        if not len(alive):
            break
        s = x[alive, lead]
        ptp = np.ptp(s, axis=1)
        run = _flat_runs(s, k, flat_mv)
        frac = np.zeros(len(alive))
        pos = np.full(n, -1)
        pos[alive] = np.arange(len(alive))
        for idx, arr in stacked.values():
            js = pos[idx]
            sel = js >= 0
            if sel.any():
                frac[js[sel]] = _plateau_fracs(arr[sel, min(lead, arr.shape[1] - 1)], fs_raw)
        spec = np.abs(np.fft.rfft(s - s.mean(axis=1, keepdims=True), axis=1)) ** 2
        band = spec[:, in_band].sum(axis=1)
        hf_all = np.where(band > 0, spec[:, out_band].sum(axis=1) / np.where(band > 0, band, 1.0), 0.0)
        gated = [j for j in range(len(alive)) if not (ptp[j] < flat_mv or run[j] + k - 1 >= FLAT_RUN_S * fs
                                                        or frac[j] >= CLIP_FRAC)]
        peaks_g = r_peaks_batch(s[gated], fs) if gated else []
        corr_g = _template_correlations(s[gated], peaks_g, fs) if gated else []
        hr_g = _heart_rates(peaks_g, fs) if gated else []
        at = {j: q for q, j in enumerate(gated)}
        for j, i in enumerate(alive):
            if ptp[j] < flat_mv:
                out[i] = ("flat", {"reason": f"peak-to-peak below {flat_mv:g} mV"})
                continue
            if run[j] + k - 1 >= FLAT_RUN_S * fs:
                out[i] = ("flat", {"reason": f"flat for {(run[j] + k - 1) / fs:.1f} s (lead off?)"})
                continue
            if frac[j] >= CLIP_FRAC:
                out[i] = ("clipped", {"reason": f"{100 * frac[j]:.1f} % of samples on plateaus at the window's max/min"})
                continue
            q = at[j]
            hf, peaks, corr = float(hf_all[j]), peaks_g[q], corr_g[q]
            if lead == 0:
                details[i] = {"hr_bpm": hr_g[q], "sqi": None if corr is None else round(corr, 3), "hf": round(hf, 3)}
            worst = noise_reason(hf, len(peaks), corr)
            if worst:
                out[i] = ("noisy", {**details[i], "reason": worst})
    return [o if o is not None else (QUALITY_OK, details[i]) for i, o in enumerate(out)]
