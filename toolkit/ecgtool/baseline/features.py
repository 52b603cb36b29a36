"""Rhythm features of one ECG window for the classical baseline: R peaks (wfdb XQRS), RR irregularity,
premature beats, QRS width, P wave and PR interval, atrial activity after QRST cancellation.

Every feature is NaN where it is undefined (e.g. RR features with fewer than 2 beats), never an error,
so a flat line or a window without detectable beats still yields a row. Cost per window: the
baseline's `feature_ms_per_window` in its metrics.json; figures in benchmarks/RESULTS.md.

`head_inputs` turns the same vector into the input of the deep models' RR head (`train --rr-head`;
with `--rr-bins`, also thermometer-coded against bin edges stored in the model's config).
This module imports only the standard library, numpy and scipy at the top (wfdb when beats are
detected, ecgtool only inside `extract_features` and `feature_workers`, which fork worker processes for
many windows), so `ecgtool package` ships it unchanged into a deploy bundle as ecg_features.py.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator

import numpy as np
from scipy.signal import welch

#: Feature names in column order (units in the names: s, ms, bpm, Hz; ratios are unitless).
FEATURE_NAMES: tuple[str, ...] = (
    "n_beats", "hr_bpm", "rr_median_s", "rr_std_s", "rr_cv", "rmssd_rel", "pnn50", "pnn_rel12",
    "sd_entropy_bits", "turning_point_ratio", "premature_pause_frac", "premature_frac",
    "rr_min_rel", "rr_max_rel", "qrs_width_ms", "qrs_width_max_rel", "template_corr_min",
    "odd_beat_frac", "r_amp_cv", "p_amp_rel", "pr_interval_ms", "p_corr_mean",
    "resid_power_rel", "resid_af_band_rel", "resid_peak_hz", "resid_peak_prominence",
    "sig_power_4_9_rel", "sig_power_15_40_rel",
)

# --- R peaks and features ---------------------------------------------------------------------------

def detect_beats(sig: np.ndarray, fs: float) -> np.ndarray:
    """R-peak sample indices of a 1-D signal from wfdb's XQRS, snapped to the local extremum.

    Returns an empty array for a flat, non-finite or beat-less signal (never raises).
    """
    from wfdb import processing

    sig = np.asarray(sig, dtype=np.float64)
    if sig.size < fs or not np.all(np.isfinite(sig)) or np.ptp(sig) < 1e-6:
        return np.zeros(0, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            peaks = processing.xqrs_detect(sig, fs=fs, verbose=False)
            if len(peaks):
                radius = max(1, int(0.05 * fs))
                peaks = processing.correct_peaks(sig, peaks, search_radius=radius,
                                                 smooth_window_size=max(2, int(0.15 * fs)), peak_dir="compare")
        except Exception:  # XQRS fails on pathological input (e.g. no learnable beats): no beats found
            return np.zeros(0, dtype=np.int64)
    peaks = np.unique(np.asarray(peaks, dtype=np.int64))
    peaks = peaks[(peaks >= 0) & (peaks < sig.size)]
    if len(peaks) > 1:  # a refractory period of 200 ms: two peaks closer than that are one beat
        keep = np.concatenate([[True], np.diff(peaks) > 0.2 * fs])
        peaks = peaks[keep]
    return peaks


def _rel_band_power(f: np.ndarray, p: np.ndarray, lo: float, hi: float, total: float) -> float:
    band = (f >= lo) & (f < hi)
    return float(p[band].sum() / total) if total > 0 else np.nan


def _beat_matrix(sig: np.ndarray, peaks: np.ndarray, before: int, after: int) -> tuple[np.ndarray, np.ndarray]:
    """Segments [n, before+after] around each peak that lie wholly inside the signal, and their peaks."""
    ok = peaks[(peaks - before >= 0) & (peaks + after <= sig.size)]
    if not len(ok):
        return np.zeros((0, before + after)), ok
    idx = ok[:, None] + np.arange(-before, after)[None, :]
    return sig[idx], ok


def window_features(sig: np.ndarray, fs: float) -> np.ndarray:
    """The FEATURE_NAMES vector of one window (1-D signal at `fs` Hz); NaN where a feature is undefined."""
    out = dict.fromkeys(FEATURE_NAMES, np.nan)
    sig = np.nan_to_num(np.asarray(sig, dtype=np.float64))
    peaks = detect_beats(sig, fs)
    out["n_beats"] = float(len(peaks))

    f, psd = welch(sig - sig.mean(), fs=fs, nperseg=min(sig.size, int(2.56 * fs)))
    total = float(psd[(f >= 0.5) & (f < 40)].sum())
    out["sig_power_4_9_rel"] = _rel_band_power(f, psd, 4, 9, total)
    out["sig_power_15_40_rel"] = _rel_band_power(f, psd, 15, 40, total)

    if len(peaks) >= 2:
        rr = np.diff(peaks) / fs
        med = float(np.median(rr))
        out.update(hr_bpm=60.0 / float(rr.mean()), rr_median_s=med, rr_std_s=float(rr.std()),
                   rr_cv=float(rr.std() / rr.mean()), rr_min_rel=float(rr.min() / med), rr_max_rel=float(rr.max() / med))
        short = rr < 0.85 * med
        out["premature_frac"] = float(short.mean())
        if len(rr) >= 2:
            d = np.diff(rr)
            out["rmssd_rel"] = float(np.sqrt(np.mean(d**2)) / rr.mean())
            out["pnn50"] = float(np.mean(np.abs(d) > 0.05))
            out["pnn_rel12"] = float(np.mean(np.abs(d) / rr[:-1] > 0.125))
            hist, _ = np.histogram(np.clip(d / med, -1, 1), bins=20, range=(-1, 1))
            prob = hist[hist > 0] / hist.sum()
            out["sd_entropy_bits"] = float(-(prob * np.log2(prob)).sum())
            out["premature_pause_frac"] = float(np.mean(short[:-1] & (rr[1:] > 1.15 * med)))
        if len(rr) >= 3:
            mid = rr[1:-1]
            turning = ((mid > rr[:-2]) & (mid > rr[2:])) | ((mid < rr[:-2]) & (mid < rr[2:]))
            out["turning_point_ratio"] = float(turning.mean())

    before, after = int(0.30 * fs), int(0.45 * fs)
    beats, bpeaks = _beat_matrix(sig, peaks, before, after)
    if len(beats) >= 1:
        _shape_features(out, beats, before, fs)
        _residual_features(out, sig, bpeaks, beats, before, fs)
    return np.array([out[k] for k in FEATURE_NAMES], dtype=np.float32)


def _shape_features(out: dict, beats: np.ndarray, before: int, fs: float) -> None:
    """QRS width, beat-shape outliers, R amplitude spread, P wave and PR interval from the beat segments."""
    # Baseline of each beat: median of the segment ahead of the P wave; polarity from the template.
    base = np.median(beats[:, : int(0.05 * fs) + 1], axis=1, keepdims=True)
    centred = beats - base
    template = np.median(centred, axis=0)
    sign = 1.0 if template[before] >= 0 else -1.0
    centred, template = centred * sign, template * sign
    r_amp = centred[:, before]
    if np.mean(np.abs(r_amp)) > 0:
        out["r_amp_cv"] = float(np.std(r_amp) / np.mean(np.abs(r_amp)))

    # QRS width: span around R where the absolute slope stays above a quarter of its beat maximum.
    q = int(0.12 * fs)
    slope = np.abs(np.diff(centred[:, before - q: before + q + 1], axis=1))
    widths = []
    for s in slope:
        if s.max() <= 0:
            continue
        above = np.flatnonzero(s > 0.25 * s.max())
        widths.append((above[-1] - above[0] + 1) * 1000.0 / fs)
    if widths:
        w = np.asarray(widths)
        out["qrs_width_ms"] = float(np.median(w))
        out["qrs_width_max_rel"] = float(w.max() / max(np.median(w), 1e-9))

    qrs = slice(before - int(0.08 * fs), before + int(0.12 * fs))
    corr = [_corr(b[qrs], template[qrs]) for b in centred]
    corr = np.asarray([c for c in corr if np.isfinite(c)])
    if len(corr):
        out["template_corr_min"] = float(corr.min())
        out["odd_beat_frac"] = float(np.mean(corr < 0.9))

    # P wave: largest deflection 300-80 ms before R in the template (absent in AF, early in AV block).
    p_lo, p_hi = 0, before - int(0.08 * fs)
    p_seg = template[p_lo:p_hi]
    r_height = template[before]
    if len(p_seg) > 2 and r_height > 0:
        p_idx = int(np.argmax(p_seg))
        out["p_amp_rel"] = float(p_seg[p_idx] / r_height)
        out["pr_interval_ms"] = float((before - (p_lo + p_idx)) * 1000.0 / fs)
        if len(centred) >= 2:
            pc = [_corr(b[p_lo:p_hi], p_seg) for b in centred]
            pc = [c for c in pc if np.isfinite(c)]
            out["p_corr_mean"] = float(np.mean(pc)) if pc else np.nan


def _residual_features(out: dict, sig: np.ndarray, peaks: np.ndarray, beats: np.ndarray, before: int,
                       fs: float) -> None:
    """Atrial activity: the signal after subtracting the median QRST template at every beat (f/F waves)."""
    template = np.median(beats - np.median(beats, axis=1, keepdims=True), axis=0)
    resid = sig - np.median(sig)
    for p in peaks:
        resid[p - before: p - before + len(template)] -= template
    sig_var, res_var = float(np.var(sig)), float(np.var(resid))
    if sig_var <= 0:
        return
    out["resid_power_rel"] = res_var / sig_var
    f, psd = welch(resid - resid.mean(), fs=fs, nperseg=min(resid.size, int(2.56 * fs)))
    total = float(psd[(f >= 0.5) & (f < 40)].sum())
    out["resid_af_band_rel"] = _rel_band_power(f, psd, 4, 9, total)
    band = (f >= 3) & (f < 10)
    if band.any() and total > 0:
        k = int(np.argmax(psd[band]))
        out["resid_peak_hz"] = float(f[band][k])
        out["resid_peak_prominence"] = float(psd[band][k] / max(np.median(psd[band]), 1e-12))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = a.std(), b.std()
    if sa <= 0 or sb <= 0:
        return np.nan
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))


#: windows below which extract_features stays in one process (starting a worker costs ~1 s of imports)
PARALLEL_MIN = 256
#: windows per task sent to a worker process
CHUNK = 64


def feature_workers(workers: int | str | None, n: int) -> int:
    """Processes for `n` windows: `workers` (an int, or None / "auto": ecgtool.core.machine.resolve_threads,
    i.e. $ECGTOOL_THREADS, else every core on a quiet machine and 1 on a busy one); 1 under PARALLEL_MIN windows
    and where processes cannot be forked (see _extract_parallel)."""
    import multiprocessing

    from ecgtool.core.machine import resolve_threads

    if n < PARALLEL_MIN or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(resolve_threads(workers)[0], -(-n // CHUNK)))


def _chunk_features(x: np.ndarray, fs: float) -> np.ndarray:
    """window_features of every row of x [n, L] (one task of a worker process)."""
    return np.stack([window_features(row, fs) for row in x])


def extract_features(signals: np.ndarray, fs: float, channel: int = 0, progress: bool = True,
                     indices: np.ndarray | None = None, workers: int | str | None = None) -> np.ndarray:
    """Feature matrix [N, len(FEATURE_NAMES)] float32 of windows [N, C, L] (one channel used).

    `indices` selects windows of a (memory-mapped) array without loading the others. `workers`: processes
    (feature_workers; from PARALLEL_MIN windows up, tasks of CHUNK windows, at most two per worker in flight,
    so a memory-mapped dataset is never copied whole). Every window's features are computed by the same
    function either way, so the matrix is the same whatever the number of processes.
    """
    from ecgtool.core.errors import BadInput
    from ecgtool.core.ui import progress_bar

    if signals.ndim != 3:
        raise BadInput(f"expected signals [N, C, L], got shape {signals.shape}")
    if not 0 <= channel < signals.shape[1]:
        raise BadInput(f"channel {channel} not in a {signals.shape[1]}-channel signal")
    rows = np.arange(len(signals)) if indices is None else np.asarray(indices, dtype=np.int64)
    feats = np.empty((len(rows), len(FEATURE_NAMES)), dtype=np.float32)
    n_proc = feature_workers(workers, len(rows))
    with progress_bar("RR features", len(rows)) if progress and len(rows) >= 64 else _no_bar() as bar:
        if n_proc > 1:
            _extract_parallel(signals, fs, channel, rows, feats, n_proc, bar)
        else:
            for n, i in enumerate(rows):
                feats[n] = window_features(np.asarray(signals[i, channel], dtype=np.float32), fs)
                if bar is not None:
                    bar.advance()
    return feats


def _extract_parallel(signals: np.ndarray, fs: float, channel: int, rows: np.ndarray, feats: np.ndarray,
                      n_proc: int, bar) -> None:
    """extract_features' work in `n_proc` forked processes. Fork, not spawn: a spawned child re-runs the
    caller's main script, which breaks any script without an `if __name__ == "__main__"` guard. A forked
    child of a process that has run torch is safe here because window_features uses no OpenMP (numpy,
    scipy's FFT and filters, wfdb); it writes nothing to the terminal."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    starts = list(range(0, len(rows), CHUNK))
    pending: dict = {}
    with ProcessPoolExecutor(n_proc, mp_context=multiprocessing.get_context("fork")) as pool:
        while starts or pending:
            while starts and len(pending) < 2 * n_proc:
                a = starts.pop(0)
                b = min(a + CHUNK, len(rows))
                x = np.ascontiguousarray(signals[rows[a:b], channel], dtype=np.float32)
                pending[pool.submit(_chunk_features, x, fs)] = (a, b)
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                a, b = pending.pop(fut)
                feats[a:b] = fut.result()
                if bar is not None:
                    bar.advance(b - a)


# --- the RR head's input (the hybrid deep models) --------------------------------------------------

#: width of `head_inputs` without bins: every feature, compressed, then one "undefined" flag per feature
HEAD_DIM = 2 * len(FEATURE_NAMES)
#: what an artifact records about its second input (config.json, ONNX metadata, bundle model.json)
HEAD_SPEC = {"features": list(FEATURE_NAMES), "transform": "sign(v)*log1p(|v|), NaN -> 0; then 1 per NaN feature",
             "dim": HEAD_DIM, "channel": 0}
#: what `train --rr-bins` adds to HEAD_SPEC["transform"] (the edges themselves are HEAD_SPEC["bins"])
BINS_TRANSFORM = "; then per feature and bin edge e (bins[feature]): 1 if v >= e else 0 (0 where NaN)"


def head_dim(bins: list[list[float]] | None = None) -> int:
    """Width of head_vector's output: HEAD_DIM plus one column per bin edge (`train --rr-bins`)."""
    return HEAD_DIM + sum(len(e) for e in (bins or []))


def head_spec(bins: list[list[float]] | None = None) -> dict:
    """HEAD_SPEC of a model, with its bin edges when it has them."""
    if not bins:
        return dict(HEAD_SPEC)
    return {**HEAD_SPEC, "transform": HEAD_SPEC["transform"] + BINS_TRANSFORM, "bins": [list(map(float, e)) for e in bins],
            "dim": head_dim(bins)}


def bin_indicators(feats: np.ndarray, bins: list[list[float]]) -> np.ndarray:
    """[N, F] window_features rows -> [N, sum(len(e))] float32: for feature j and each edge e of bins[j]
    (ascending), 1 where the value is >= e, 0 below it or where it is NaN (a thermometer code: the count of
    ones is the value's bin, np.digitize(v, edges)). A linear head on these columns is a step function of
    each feature, the thresholds a tree model splits at."""
    f = np.asarray(feats, dtype=np.float64)
    if len(bins) != f.shape[1]:
        raise ValueError(f"bin_indicators: {len(bins)} bin-edge lists for {f.shape[1]} features")
    cols = []
    for j, edges in enumerate(bins):
        if not len(edges):
            continue
        v = f[:, j]
        ok = np.isfinite(v)
        d = np.digitize(np.where(ok, v, -np.inf), np.asarray(edges, dtype=np.float64))
        cols.append((ok[:, None] & (d[:, None] > np.arange(len(edges))[None, :])).astype(np.float32))
    return np.concatenate(cols, axis=1) if cols else np.zeros((len(f), 0), dtype=np.float32)


def head_vector(feats: np.ndarray, bins: list[list[float]] | None = None) -> np.ndarray:
    """[N, F] window_features rows -> [N, head_dim(bins)] float32: sign(v) * log1p(|v|) (0 where NaN), then
    NaN flags, then (a model trained with --rr-bins) bin_indicators.

    The log keeps counts, rates and ratios of very different scales within a few units (what a
    BatchNorm and an INT8 input scale can hold); the flags tell "no beats found" from a value of 0.
    """
    f = np.asarray(feats, dtype=np.float64)
    missing = ~np.isfinite(f)
    v = np.where(missing, 0.0, f)
    v = np.sign(v) * np.log1p(np.abs(v))
    out = np.concatenate([v, missing.astype(np.float64)], axis=1).astype(np.float32)
    return np.concatenate([out, bin_indicators(f, bins)], axis=1) if bins else out


def head_inputs(windows: np.ndarray, fs: float, channel: int = 0, bins: list[list[float]] | None = None) -> np.ndarray:
    """The RR head's input [N, head_dim(bins)] float32 of preprocessed windows [N, C, L] (or [N, L]) at `fs` Hz."""
    w = np.asarray(windows)
    if w.ndim == 2:
        w = w[:, None, :]
    if w.ndim != 3 or not 0 <= channel < w.shape[1]:
        raise ValueError(f"head_inputs: expected windows [N, C, L] with channel {channel}, got shape {w.shape}")
    feats = np.stack([window_features(np.asarray(w[i, channel], dtype=np.float32), fs) for i in range(len(w))]) \
        if len(w) else np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    return head_vector(feats, bins)


@contextmanager
def _no_bar() -> Iterator[None]:
    yield None
