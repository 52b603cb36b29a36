"""The paper's preprocessing, shared by every importer: 200 Hz, 10-s windows, min-max to [0, 1].

Order: resample the whole record to 200 Hz (scipy.signal.resample_poly), optionally band-pass it
(0.5-40 Hz, Butterworth, zero-phase sosfiltfilt) before cutting so the filter has no edges inside a
window, cut non-overlapping 10-s windows, then min-max normalise each window and lead to [0, 1]
(each window is one of the paper's 10-s "records").
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy.signal import butter, resample_poly, sosfiltfilt

TARGET_FS = 200  # Hz
WINDOW_S = 10  # s
WINDOW_LEN = TARGET_FS * WINDOW_S  # samples
BAND_HZ = (0.5, 40.0)
#: a window whose peak-to-peak range is below this (mV) is a flat line: min-max would divide by ~0 and
#: amplify quantisation noise. 10 uV is far below any real 10-s ECG (a QRS is ~1 mV) but above the
#: ripple resampling leaves on a constant (~1e-4 of its level).
FLAT_MV = 0.01


class UnusableRecord(Exception):
    """A record (or window) the import skips; the message is the reason written to skipped.csv."""


def resample(signal: np.ndarray, fs: float, target_fs: int = TARGET_FS) -> np.ndarray:
    """Resample [C, T] from `fs` Hz to `target_fs` Hz along the last axis (polyphase FIR)."""
    ratio = Fraction(target_fs) / Fraction(fs).limit_denominator(1000)
    if ratio == 1:
        return np.asarray(signal, dtype=np.float64)
    # padtype "line": no zero-padding transient at the ends (a baseline offset would ramp to 0)
    return resample_poly(signal, ratio.numerator, ratio.denominator, axis=-1, padtype="line")


def bandpass(signal: np.ndarray, fs: float = TARGET_FS, band: tuple[float, float] = BAND_HZ,
             order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-pass (Hz) along the last axis."""
    sos = butter(order, band, btype="bandpass", fs=fs, output="sos")
    return sosfiltfilt(sos, signal, axis=-1)


def check_finite(signal: np.ndarray) -> None:
    """Raise UnusableRecord when the record holds NaN or infinite samples (before any filtering)."""
    bad = ~np.isfinite(signal)
    if bad.any():
        kinds = [k for k, m in (("NaN", np.isnan(signal)), ("infinite", np.isinf(signal))) if m.any()]
        raise UnusableRecord(f"non-finite samples: {int(bad.sum())} {'/'.join(kinds)} value(s)")


def prepare(signal: np.ndarray, fs: float, *, band: bool = False) -> np.ndarray:
    """A whole record [C, T] at `fs` Hz -> [C, T'] at 200 Hz, band-passed if asked.

    Raises UnusableRecord for non-finite samples or a record shorter than one 10-s window.
    """
    signal = np.atleast_2d(np.asarray(signal, dtype=np.float64))
    check_finite(signal)
    seconds = signal.shape[-1] / fs
    if seconds < WINDOW_S - 1e-9:
        raise UnusableRecord(f"too short: {seconds:.2f} s < {WINDOW_S} s window")
    out = resample(signal, fs)
    if band:
        out = bandpass(out)
    return out


def window_starts(n_samples: int, policy: str = "first", length: int = WINDOW_LEN) -> list[int]:
    """Starts of non-overlapping windows: only the first (`first`) or every full one (`all`)."""
    if policy not in ("first", "all"):
        raise ValueError(f"window policy must be 'first' or 'all', not {policy!r}")
    starts = list(range(0, n_samples - length + 1, length))
    return starts[:1] if policy == "first" else starts


def minmax(window: np.ndarray) -> np.ndarray:
    """Min-max normalise each lead of a [C, L] window to [0, 1]; UnusableRecord for a flat lead."""
    lo = window.min(axis=-1, keepdims=True)
    rng = window.max(axis=-1, keepdims=True) - lo
    if (rng < FLAT_MV).any():
        raise UnusableRecord(f"flat line: peak-to-peak below {FLAT_MV:g} mV in "
                             f"{int((rng < FLAT_MV).sum())} lead(s)")
    return ((window - lo) / rng).astype(np.float32)


def cut_windows(signal200: np.ndarray, policy: str = "first") -> tuple[np.ndarray, list[int], list[str]]:
    """Cut a prepared [C, T] record into normalised windows [n, C, L].

    Returns (windows, start sample of each kept window, reasons for windows dropped as flat).
    Raises UnusableRecord when no window is left.
    """
    kept, starts, dropped = [], [], []
    for s in window_starts(signal200.shape[-1], policy):
        try:
            kept.append(minmax(signal200[:, s:s + WINDOW_LEN]))
            starts.append(s)
        except UnusableRecord as exc:
            dropped.append(str(exc))
    if not kept:
        raise UnusableRecord(dropped[0] if dropped else f"too short: under {WINDOW_S} s after resampling")
    return np.stack(kept), starts, dropped


def describe(band: bool) -> dict:
    """The preprocessing, for meta.json."""
    return {
        "resample": f"scipy.signal.resample_poly to {TARGET_FS} Hz",
        "bandpass": f"Butterworth order 4, {BAND_HZ[0]}-{BAND_HZ[1]} Hz, sosfiltfilt" if band else None,
        "window": f"non-overlapping {WINDOW_S} s ({WINDOW_LEN} samples)",
        "normalisation": "min-max to [0, 1] per window and lead",
    }
