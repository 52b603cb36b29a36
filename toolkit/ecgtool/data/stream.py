"""Long recordings and live samples: chunked reading, stateful resampling/band-pass, per-window signal
quality, heart rate, and a `StreamCore` that turns pushed samples into classified windows.

numpy + scipy only (wfdb lazily for WFDB records): `ecgtool package` ships this file in every bundle
as ecg_stream.py (core.names.BUNDLE_STREAM), beside ecg_preprocess.py, so run.py --stdin and
`ecgtool predict` on a long record run the same code.

Preprocessing in streaming form (one path for `predict` on a long record and for `Stream.push`):
- resampling: the same polyphase FIR as scipy.signal.resample_poly (Kaiser 5.0, 10 x max(up, down)
  half-length, the same centring), applied with scipy.signal.upfirdn over a carried history of inputs,
  so interior samples equal resample_poly's whole-record output to float rounding. The record's ends
  are padded with its first / last value (resample_poly: padtype 'line'); only the first and last
  ~50 ms differ.
- band-pass (only if the model was trained with one): Butterworth sosfilt with carried state `zi`.
  This is CAUSAL, unlike training's zero-phase sosfiltfilt: waves are delayed and slightly reshaped
  (phase), so for a band-passed model streaming is an approximation of training's preprocessing.
  Models without a band-pass (the default) see the same samples as training, up to the ends.
- windows: `window_len` samples every `hop` samples; min-max per window as in training.
Memory is bounded by one window plus the hop (plus the filter history), whatever the record length.

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
"""

from __future__ import annotations

import csv
import math
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d
from scipy.signal import butter, find_peaks, firwin, sosfilt, sosfilt_zi, upfirdn

if __package__:
    from ecgtool.data import preprocess as pre
else:  # in a bundle, beside ecg_preprocess.py
    import ecg_preprocess as pre

#: plausible ECG sampling rates (Hz)
FS_RANGE = (50.0, 10000.0)
FLAT_RUN_S = 2.0
CLIP_FRAC = 0.01
NOISE_HF_MAX = 0.2
NOISE_TEMPLATE_MIN = 0.5
CHUNK_S = 600.0  # seconds of input read at a time
QUALITY_OK = "ok"


# --- stateful resampling and band-pass -------------------------------------------------------------


class Resampler:
    """resample_poly's filter applied chunk by chunk: push(x [C, n]) -> the output samples now determined."""

    def __init__(self, fs_in: float, fs_out: float):
        ratio = Fraction(fs_out) / Fraction(fs_in).limit_denominator(1000)
        self.up, self.down = ratio.numerator, ratio.denominator
        self.identity = ratio == 1
        max_rate = max(self.up, self.down)
        if self.identity:
            self.h, self.shift, self.buf, self.offset, self.n_in, self.n_out = np.ones(1), 0, None, None, 0, 0
            return
        max_rate = max(self.up, self.down)
        half_len = 10 * max_rate
        h = firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * self.up
        pre_pad = self.down - half_len % self.down
        self.h = np.concatenate([np.zeros(pre_pad), h])
        self.shift = (half_len + pre_pad) // self.down  # output m = full output m + shift
        self.buf: np.ndarray | None = None  # inputs from global index b0 (a multiple of down)
        self.b0 = 0
        self.n_in = 0
        self.n_out = 0  # outputs emitted
        self.offset: np.ndarray | None = None

    def _full(self, j_from: int, j_to: int) -> np.ndarray:
        """Full-convolution outputs j_from..j_to-1 (global) from the buffer."""
        y = upfirdn(self.h, self.buf, self.up, self.down, axis=-1)
        q0 = j_from - self.b0 * self.up // self.down
        return y[:, q0:q0 + (j_to - j_from)]

    def push(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.identity:
            self.n_in += x.shape[-1]
            return x
        if self.offset is None:
            if not x.shape[-1]:
                return x
            self.offset = x[:, :1].copy()  # the record starts on its first value, not on 0
            pad = int(math.ceil(len(self.h) / self.up)) + self.down
            pad += (-pad) % self.down
            self.b0 = -pad
            self.buf = np.zeros((x.shape[0], pad))
        self.buf = np.concatenate([self.buf, x - self.offset], axis=-1)
        self.n_in += x.shape[-1]
        # output m (= full j = m + shift) needs inputs up to floor(j * down / up)
        m_to = ((self.n_in - 1) * self.up) // self.down - self.shift + 1
        return self._emit(m_to)

    def _emit(self, m_to: int) -> np.ndarray:
        m_from = self.n_out
        if m_to <= m_from:
            return np.zeros((self.buf.shape[0], 0))
        y = self._full(m_from + self.shift, m_to + self.shift) + self.offset
        self.n_out = m_to
        # keep the history the next output needs: inputs from (next j * down - len(h) + 1) / up
        need = ((m_to + self.shift) * self.down - len(self.h) + 1) // self.up - 1
        new_b0 = need - need % self.down
        if new_b0 > self.b0:
            self.buf = self.buf[:, new_b0 - self.b0:]
            self.b0 = new_b0
        return y

    def flush(self) -> np.ndarray:
        """The last outputs, the record padded with its last value (total: ceil(n_in * up / down))."""
        if self.identity or self.offset is None:
            return np.zeros((0 if self.buf is None else self.buf.shape[0], 0))
        total = -(-self.n_in * self.up // self.down)
        pad = int(math.ceil(len(self.h) / self.up)) + 2 * self.down
        self.buf = np.concatenate([self.buf, np.repeat(self.buf[:, -1:], pad, axis=-1)], axis=-1)
        return self._emit(total)


class Bandpass:
    """Causal Butterworth band-pass (sosfilt) with its state carried across pushes."""

    def __init__(self, fs: float, band, order: int):
        self.sos = butter(int(order), tuple(band), btype="bandpass", fs=fs, output="sos")
        self.zi = None

    def push(self, x: np.ndarray) -> np.ndarray:
        if not x.shape[-1]:
            return x
        if self.zi is None:  # start in the steady state of the first sample
            self.zi = sosfilt_zi(self.sos)[:, None, :] * x[None, :, :1]
        y, self.zi = sosfilt(self.sos, x, axis=-1, zi=self.zi)
        return y


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
    tol = 1e-9 * max(1.0, hi - lo)
    min_run = max(3, int(round(0.015 * fs_raw)))
    total = 0
    for rail in (hi, lo):
        m = np.abs(raw - rail) <= tol
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
    tol = 1e-9 * np.maximum(1.0, hi - lo)
    min_run = max(3, int(round(0.015 * fs_raw)))
    total = np.zeros(raw.shape[0])
    for rail in (hi, lo):
        m = np.abs(raw - rail[:, None]) <= tol[:, None]
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


# --- windows from pushed samples -------------------------------------------------------------------


class StreamCore:
    """Samples in, classified windows out. `predict_fn(windows [n, C, L] float32) -> logits [n, K]`.

    push(x [C, n] or [n]) -> window results completed so far; close() -> the rest and the tail.
    A window result is the dict `ecgtool predict` prints, plus "quality" (and "hr_bpm"); a window whose
    quality is not ok has rhythm "unclassifiable", a "reason", and no probabilities. A non-finite model
    output is never a class: that window is unclassifiable too.
    """

    def __init__(self, predict_fn: Callable[[np.ndarray], np.ndarray], spec: dict, fs: float, classes: list[str],
                 hop_s: float | None = None, quality: bool = True, batch: int = 64):
        self.predict_fn, self.spec, self.classes, self.quality = predict_fn, spec, list(classes), quality
        self.fs_in = pre.check_fs(fs)
        self.fs = float(spec["sampling_rate"])
        self.length = int(spec["window_len"])
        self.hop = int(round((hop_s if hop_s else self.length / self.fs) * self.fs))
        if not 1 <= self.hop:
            raise pre.UnusableRecord(f"--hop must be positive, got {hop_s}")
        self.channels = int(spec.get("channels") or 1)
        self.flat = float(spec.get("flat_mv", pre.FLAT_MV))
        self.resampler = Resampler(self.fs_in, self.fs)
        band = spec.get("bandpass_hz")
        self.bandpass = Bandpass(self.fs, band, int(spec.get("bandpass_order") or pre.BAND_ORDER)) if band else None
        self.batch = batch
        self.x = np.zeros((self.channels, 0))  # model-rate samples from x0
        self.x0 = 0
        self.raw = np.zeros((self.channels, 0))  # input samples from r0 (NaN kept: quality sees them)
        self.r0 = 0
        self.n_raw = 0
        self.last_finite: np.ndarray | None = None
        self.next_start = 0
        self.pending: list[tuple[int, np.ndarray, str, dict]] = []
        self.closed = False

    # input -> model-rate samples
    def _fill(self, x: np.ndarray) -> np.ndarray:
        """Non-finite samples held at the last finite value for the filters (the window is marked anyway)."""
        bad = ~np.isfinite(x)
        if not bad.any():
            self.last_finite = x[:, -1:].copy() if x.shape[-1] else self.last_finite
            return x
        x = x.copy()
        for c in range(x.shape[0]):
            idx = np.where(~bad[c], np.arange(x.shape[1]), -1)
            np.maximum.accumulate(idx, out=idx)
            start = 0.0 if self.last_finite is None else float(self.last_finite[c, 0])
            x[c] = np.where(idx >= 0, x[c, np.maximum(idx, 0)], start)
        self.last_finite = x[:, -1:].copy()
        return x

    def push(self, samples) -> list[dict]:
        if self.closed:
            raise ValueError("push after close")
        x = np.asarray(samples, dtype=np.float64)
        x = x[None] if x.ndim == 1 and self.channels == 1 else np.atleast_2d(x)
        if x.shape[0] != self.channels:
            raise pre.UnusableRecord(f"{x.shape[0]} lead(s), the model takes {self.channels}")
        self.raw = np.concatenate([self.raw, x], axis=-1)
        self.n_raw += x.shape[-1]
        y = self.resampler.push(self._fill(x))
        return self._take(y)

    def _take(self, y: np.ndarray) -> list[dict]:
        if self.bandpass is not None:
            y = self.bandpass.push(y)
        self.x = np.concatenate([self.x, y], axis=-1)
        self._cut()
        return self._classify() if self.pending else []

    def _cut(self) -> None:
        n_avail = self.x0 + self.x.shape[-1]
        cut: list[tuple[int, np.ndarray, np.ndarray]] = []
        while self.next_start + self.length <= n_avail:
            s = self.next_start
            w = self.x[:, s - self.x0:s - self.x0 + self.length]
            a = int(round(s * self.fs_in / self.fs))
            b = int(round((s + self.length) * self.fs_in / self.fs))
            if b > self.n_raw:  # the resampler has run ahead of the raw buffer only at flush
                b = self.n_raw
            cut.append((s, w.copy(), self.raw[:, a - self.r0:b - self.r0].copy()))
            self.next_start += self.hop
        if cut:  # the quality gate over every window cut by this push at once (batch_quality == window_quality)
            if self.quality:
                gates = batch_quality(np.stack([w for _, w, _ in cut]), self.fs, [r for _, _, r in cut],
                                      self.fs_in, self.flat)
            else:
                gates = [(QUALITY_OK, {}) if np.all(np.isfinite(r)) else ("non-finite", {"reason": "non-finite input"})
                         for _, _, r in cut]
            for (s, w, _), (status, details) in zip(cut, gates):
                if status == QUALITY_OK and np.ptp(w, axis=-1).min() < self.flat:
                    status, details = "flat", {"reason": f"peak-to-peak below {self.flat:g} mV"}
                self.pending.append((s, w, status, details))
        # drop what no later window needs
        keep = self.next_start - self.x0
        if keep > 0:
            self.x = self.x[:, keep:]
            self.x0 = self.next_start
        rkeep = int(math.floor(self.next_start * self.fs_in / self.fs)) - 1 - self.r0
        if rkeep > 0:
            self.raw = self.raw[:, rkeep:]
            self.r0 += rkeep

    def _classify(self) -> list[dict]:
        items, self.pending = self.pending, []
        ok = [i for i, it in enumerate(items) if it[2] == QUALITY_OK]
        probs = {}
        if ok:
            batch = np.stack([pre.minmax(items[i][1], 0.0) for i in ok]).astype(np.float32)
            logits = np.asarray(self.predict_fn(batch), dtype=np.float64)
            with np.errstate(all="ignore"):
                z = np.exp(logits - logits.max(axis=1, keepdims=True))
                p = z / z.sum(axis=1, keepdims=True)
            probs = dict(zip(ok, p))
        out = []
        for i, (s, _, status, details) in enumerate(items):
            r = {"start_s": round(s / self.fs, 3), "end_s": round((s + self.length) / self.fs, 3)}
            p = probs.get(i)
            if p is not None and not np.all(np.isfinite(p)):
                status, details = "non-finite-output", {**details, "reason": "the model returned a non-finite output"}
            if status == QUALITY_OK:
                k = int(np.argmax(p))
                r.update(rhythm=self.classes[k], probability=round(float(p[k]), 6),
                         probabilities={c: round(float(v), 6) for c, v in zip(self.classes, p)})
            else:
                r.update(rhythm="unclassifiable", probability=None, probabilities=None)
            r["quality"] = status
            if details.get("reason"):
                r["reason"] = details["reason"]
            r["hr_bpm"] = details.get("hr_bpm")
            out.append(r)
        return out

    def close(self) -> tuple[list[dict], dict | None]:
        """(the remaining windows, the tail: {"start_s", "end_s", "seconds", "reason"} or None)."""
        if self.closed:
            return [], None
        self.closed = True
        y = self.resampler.flush()
        if y.shape[-1]:
            if self.bandpass is not None:
                y = self.bandpass.push(y)
            self.x = np.concatenate([self.x, y], axis=-1)
        self._cut()
        out = self._classify() if self.pending else []
        total = self.x0 + self.x.shape[-1]
        covered = (self.next_start - self.hop + self.length) if self.next_start else 0
        tail = None
        if total > covered:
            tail = {"start_s": round(covered / self.fs, 3), "end_s": round(total / self.fs, 3),
                    "seconds": round((total - covered) / self.fs, 3),
                    "reason": f"shorter than one {self.length / self.fs:g}-s window: not classified"}
        return out, tail

    @property
    def seconds(self) -> float:
        return self.n_raw / self.fs_in


# --- chunked readers --------------------------------------------------------------------------------


def open_record(path: str | Path, fs: float | None, lead: str | None, channels: int = 1,
                chunk_s: float = CHUNK_S) -> tuple[float, Iterator[np.ndarray]]:
    """(sampling rate, iterator of [C, n] float64 chunks) of a .npy (memory-mapped), .csv (streamed) or WFDB
    record (sampfrom/sampto), so a record is never loaded whole. UnusableRecord with the reason if bad."""
    path = Path(path)
    if pre.is_wfdb_path(path):
        return _wfdb_chunks(path, lead, channels, chunk_s)
    if not path.exists():
        raise pre.UnusableRecord("no such file")
    if path.suffix not in (".npy", ".csv"):
        raise pre.UnusableRecord("unknown record type (expected .npy, .csv or a WFDB .hea)")
    if not fs or fs <= 0:
        raise pre.UnusableRecord(f"{path.suffix} records need the sampling rate: --fs HZ")
    fs = pre.check_fs(fs)
    n = max(1, int(chunk_s * fs))
    if path.suffix == ".npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:
            raise pre.UnusableRecord(f"not a readable .npy array ({type(exc).__name__}: {exc})") from None
        if arr.ndim == 2 and arr.shape[1] <= 16 < arr.shape[0]:
            arr = arr.T
        if arr.ndim not in (1, 2) or not np.issubdtype(arr.dtype, np.number):
            raise pre.UnusableRecord(f"expected a numeric array [T] or [C, T], got {arr.dtype} {list(arr.shape)}")
        arr = arr[None] if arr.ndim == 1 else arr
        if arr.shape[0] != channels:
            if lead is not None and str(lead).isdigit() and int(lead) < arr.shape[0] and channels == 1:
                arr = arr[int(lead)][None]
            else:
                raise pre.UnusableRecord(f"{arr.shape[0]} rows, the model takes {channels}; pick one with --lead INDEX")
        return fs, (np.asarray(arr[:, i:i + n], dtype=np.float64) for i in range(0, arr.shape[1], n))
    return fs, _csv_chunks(path, lead, channels, n)


def _csv_chunks(path: Path, lead: str | None, channels: int, n: int) -> Iterator[np.ndarray]:
    try:
        fh = open(path, newline="", encoding="utf-8")
        first = fh.readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise pre.UnusableRecord(f"unreadable CSV ({type(exc).__name__}: {exc})") from None
    cells = next(csv.reader([first]), [])
    if not cells:
        raise pre.UnusableRecord("empty CSV")
    try:
        float(cells[0])
        header, fh_first = None, first
    except ValueError:
        header, fh_first = [h.strip() for h in cells], None
    ncol = len(cells)
    cols = list(range(ncol))
    if ncol != channels:
        if header and lead is not None and not str(lead).isdigit():
            low = [h.lower() for h in header]
            hit = [low.index(c) for c in (lead.lower(), "ml" + lead.lower()) if c in low]
            if not hit:
                raise pre.UnusableRecord(f"no column named {lead} (columns: {', '.join(header)})")
            cols = [hit[0]]
        elif lead is not None and str(lead).isdigit() and int(lead) < ncol and channels == 1:
            cols = [int(lead)]
        else:
            raise pre.UnusableRecord(f"{ncol} columns, the model takes {channels}; pick one with --lead")

    try:  # pandas' C parser (installed with wfdb) reads CSV ~4x faster than np.loadtxt, to the same float64 values
        import pandas as pd
    except ImportError:  # a bundle without wfdb: np.loadtxt below
        pd = None
    if pd is not None:
        return _csv_chunks_pandas(pd, fh, header is not None, cols, n)

    def gen() -> Iterator[np.ndarray]:
        with fh:
            carry = [fh_first] if fh_first else []
            while True:
                lines = carry + fh.readlines(n * 12)  # ~n lines of a few characters each
                carry = []
                if not lines:
                    return
                try:  # loadtxt skips empty lines; lines of blanks only are dropped (and parsed again) on error
                    data = np.loadtxt(lines, delimiter=",", ndmin=2, usecols=cols, dtype=np.float64)
                except ValueError:
                    lines = [ln for ln in lines if ln.strip()]
                    try:
                        data = np.loadtxt(lines, delimiter=",", ndmin=2, usecols=cols, dtype=np.float64)
                    except ValueError as exc:
                        raise pre.UnusableRecord(f"non-numeric value in CSV ({exc})") from None
                if data.size:
                    yield data.T
    return gen()


def _csv_chunks_pandas(pd, fh, has_header: bool, cols: list[int], n: int) -> Iterator[np.ndarray]:
    """[C, <=n] float64 chunks of an open CSV (after its header line, or rewound when it has none) by pandas'
    C parser; blank lines are skipped as np.loadtxt skips them; a non-numeric value is UnusableRecord."""
    if not has_header:
        fh.seek(0)
    try:
        reader = pd.read_csv(fh, header=None, usecols=cols, dtype=np.float64, chunksize=n, engine="c",
                             skip_blank_lines=True, skipinitialspace=True)
    except pd.errors.EmptyDataError:  # nothing after the header
        fh.close()
        return iter(())
    except Exception as exc:  # ParserError or ValueError
        fh.close()
        raise pre.UnusableRecord(f"non-numeric value in CSV ({type(exc).__name__}: {exc})") from None

    def gen() -> Iterator[np.ndarray]:
        with fh:
            while True:
                try:
                    frame = next(reader)
                except StopIteration:
                    return
                except Exception as exc:  # ValueError (a value that is not a number), ParserError (ragged rows)
                    raise pre.UnusableRecord(f"non-numeric value in CSV ({type(exc).__name__}: "
                                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
                data = frame.to_numpy(dtype=np.float64)
                if data.size:
                    yield data.T
    return gen()


def _wfdb_chunks(path: Path, lead: str | None, channels: int, chunk_s: float) -> tuple[float, Iterator[np.ndarray]]:
    try:
        import wfdb
    except ImportError:
        raise pre.UnusableRecord("reading WFDB records needs the wfdb package (pip install wfdb)") from None
    base = path.with_suffix("") if path.suffix == ".hea" else path
    if not base.with_name(base.name + ".hea").exists():
        raise pre.UnusableRecord("no such file")
    try:
        with pre.fixed_header(base) as readable:
            hdr = wfdb.rdheader(str(readable))
    except Exception as exc:
        raise pre.UnusableRecord(f"WFDB header unreadable ({type(exc).__name__}: {exc})") from None
    fs = pre.check_fs(hdr.fs)
    names = [str(s).strip().lower() for s in (hdr.sig_name or [])]
    if len(names) == channels:
        picks = list(range(channels))
    else:
        want = [c for c in ((lead or "").lower(), "ml" + (lead or "").lower()) if c in names]
        if channels == 1 and want:
            picks = [names.index(want[0])]
        elif channels == 1 and len(names) == 1:
            picks = [0]
        else:
            raise pre.UnusableRecord(f"lead missing: no lead {lead} (leads: {', '.join(hdr.sig_name or [])})")
    total = int(hdr.sig_len or 0)
    n = max(1, int(chunk_s * fs))
    scale = np.array([1e-3 if str(u).lower() in ("uv", "µv", "microvolt") else 1.0
                      for u in np.asarray(hdr.units or ["mV"] * len(names))[picks]])[:, None]

    def gen() -> Iterator[np.ndarray]:
        with pre.fixed_header(base) as readable:
            for a in range(0, total, n):
                try:
                    rec = wfdb.rdrecord(str(readable), sampfrom=a, sampto=min(total, a + n), channels=picks,
                                        physical=True)
                except Exception as exc:
                    raise pre.UnusableRecord(f"WFDB record unreadable ({type(exc).__name__}: {exc})") from None
                yield np.asarray(rec.p_signal, dtype=np.float64).T * scale
    return fs, gen()
