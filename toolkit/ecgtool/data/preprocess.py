"""The one preprocessing implementation: the importers, `ecgtool predict` and the deploy bundle use it.

The paper's recipe: resample the whole record to 200 Hz (scipy.signal.resample_poly), optionally
band-pass it (0.5-40 Hz, Butterworth, zero-phase sosfiltfilt) before cutting so the filter has no
edges inside a window, cut non-overlapping 10-s windows, then min-max normalise each window and
lead to [0, 1] (each window is one of the paper's 10-s "records").

This module imports only the standard library, numpy and scipy (wfdb lazily, for WFDB records):
`ecgtool package` copies it into every bundle as ecg_preprocess.py beside run.py, where neither
torch nor ecgtool is installed. Besides the steps it holds the record readers (.npy, .csv, WFDB
with the Challenge header fix-up) and the preprocessing spec a model freezes at training time
(`spec_from_meta`) and applies at prediction time (`windows_for_spec`).
"""

from __future__ import annotations

import csv
import os
import tempfile
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

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
BAND_ORDER = 4
NORMALISATION = "minmax"  # per window and lead, to [0, 1]
#: robust normalisation: (x - median) / IQR per window and lead, clipped to +-ROBUST_CLIP, divided by it (so in
#: [-1, 1]): one artefact spike cannot squeeze the window as it does under min-max
ROBUST = "robust"
NORMALISATIONS = (NORMALISATION, ROBUST)
ROBUST_CLIP = 20.0
DEFAULT_LEAD = "II"


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
             order: int = BAND_ORDER) -> np.ndarray:
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


def minmax(window: np.ndarray, flat_mv: float = FLAT_MV) -> np.ndarray:
    """Min-max normalise each lead of a [C, L] window to [0, 1]; UnusableRecord for a flat lead."""
    lo = window.min(axis=-1, keepdims=True)
    rng = window.max(axis=-1, keepdims=True) - lo
    if (rng < flat_mv).any():
        raise UnusableRecord(f"flat line: peak-to-peak below {flat_mv:g} mV in "
                             f"{int((rng < flat_mv).sum())} lead(s)")
    return ((window - lo) / rng).astype(np.float32)


def robust(window: np.ndarray, flat_mv: float = FLAT_MV, clip: float = ROBUST_CLIP) -> np.ndarray:
    """(x - median) / IQR of each lead of a [C, L] window, clipped to +-clip and divided by clip ([-1, 1]);
    UnusableRecord for a flat lead (as minmax). An IQR under flat_mv / 10 is replaced by it."""
    lo, hi = window.min(axis=-1, keepdims=True), window.max(axis=-1, keepdims=True)
    if ((hi - lo) < flat_mv).any():
        raise UnusableRecord(f"flat line: peak-to-peak below {flat_mv:g} mV in "
                             f"{int(((hi - lo) < flat_mv).sum())} lead(s)")
    q25, med, q75 = np.percentile(window, [25, 50, 75], axis=-1, keepdims=True)
    iqr = np.maximum(q75 - q25, flat_mv / 10)
    return (np.clip((window - med) / iqr, -clip, clip) / clip).astype(np.float32)


def normalise(window: np.ndarray, method: str = NORMALISATION, flat_mv: float = FLAT_MV) -> np.ndarray:
    """A [C, L] window normalised by `method` (NORMALISATIONS); ValueError for an unknown one."""
    if method == NORMALISATION:
        return minmax(window, flat_mv)
    if method == ROBUST:
        return robust(window, flat_mv)
    raise ValueError(f"unknown normalisation {method!r} (this version knows {', '.join(NORMALISATIONS)})")


def cut_windows(signal200: np.ndarray, policy: str = "first",
                normalisation: str = NORMALISATION) -> tuple[np.ndarray, list[int], list[str]]:
    """Cut a prepared [C, T] record into normalised windows [n, C, L].

    Returns (windows, start sample of each kept window, reasons for windows dropped as flat).
    Raises UnusableRecord when no window is left.
    """
    kept, starts, dropped = [], [], []
    for s in window_starts(signal200.shape[-1], policy):
        try:
            kept.append(normalise(signal200[:, s:s + WINDOW_LEN], normalisation))
            starts.append(s)
        except UnusableRecord as exc:
            dropped.append(str(exc))
    if not kept:
        raise UnusableRecord(dropped[0] if dropped else f"too short: under {WINDOW_S} s after resampling")
    return np.stack(kept), starts, dropped


def describe(band: bool, normalisation: str = NORMALISATION) -> dict:
    """The preprocessing, for meta.json (prose, plus the band-pass as numbers for `spec_from_meta`)."""
    return {
        "resample": f"scipy.signal.resample_poly to {TARGET_FS} Hz",
        "bandpass": f"Butterworth order {BAND_ORDER}, {BAND_HZ[0]}-{BAND_HZ[1]} Hz, sosfiltfilt" if band else None,
        "bandpass_hz": list(BAND_HZ) if band else None,
        "bandpass_order": BAND_ORDER,
        "window": f"non-overlapping {WINDOW_S} s ({WINDOW_LEN} samples)",
        "normalisation": "min-max to [0, 1] per window and lead" if normalisation == NORMALISATION else
        f"robust: (x - median) / IQR per window and lead, clipped to +-{ROBUST_CLIP:g}, / {ROBUST_CLIP:g}",
        "normalisation_method": normalisation,
    }


# --- the preprocessing spec a model carries -------------------------------------------------------

#: the keys of a preprocessing spec (config.json "preprocessing", ONNX metadata, a bundle's model.json)
SPEC_KEYS = ("sampling_rate", "window_s", "window_len", "channels", "lead", "bandpass_hz", "bandpass_order",
             "normalisation", "flat_mv", "classes")


def make_spec(*, sampling_rate: float = TARGET_FS, window_len: int = WINDOW_LEN, channels: int = 1,
              lead: str = DEFAULT_LEAD, bandpass_hz: list[float] | None = None, bandpass_order: int = BAND_ORDER,
              normalisation: str = NORMALISATION, flat_mv: float = FLAT_MV,
              classes: list[str] | None = None) -> dict[str, Any]:
    """A preprocessing spec (JSON-ready dict with SPEC_KEYS); the defaults are the paper's (200 Hz, 10 s, lead II)."""
    fs = float(sampling_rate)
    return {
        "sampling_rate": int(fs) if fs.is_integer() else fs,
        "window_s": round(int(window_len) / fs, 6),
        "window_len": int(window_len),
        "channels": int(channels),
        "lead": lead,
        "bandpass_hz": [float(f) for f in bandpass_hz] if bandpass_hz else None,
        "bandpass_order": int(bandpass_order),
        "normalisation": normalisation,
        "flat_mv": float(flat_mv),
        "classes": list(classes or []),
    }


def spec_from_meta(meta: dict) -> dict[str, Any]:
    """The spec of a prepared dataset's meta.json: what a model trained on it must be fed (frozen at training)."""
    fs = float(meta.get("sampling_rate") or TARGET_FS)
    length = int(meta.get("length") or round(float(meta.get("seconds") or WINDOW_S) * fs))
    pre = meta.get("preprocessing")
    band, order, norm = None, BAND_ORDER, NORMALISATION
    if isinstance(pre, dict):
        norm = pre.get("normalisation_method") or NORMALISATION
        # older meta.json files say only in prose that they were band-passed, always with BAND_HZ
        band = pre.get("bandpass_hz") or (list(BAND_HZ) if pre.get("bandpass") else None)
        order = int(pre.get("bandpass_order") or BAND_ORDER)
    lead = meta.get("lead")
    lead = lead if isinstance(lead, str) and lead and " " not in lead else DEFAULT_LEAD  # "single (AliveCor)"
    return make_spec(sampling_rate=fs, window_len=length, channels=int(meta.get("channels") or 1), lead=lead,
                     bandpass_hz=band, bandpass_order=order, normalisation=norm, classes=meta.get("classes"))


def windows_for_spec(signal: np.ndarray, fs: float, spec: dict,
                     policy: str | None = None) -> tuple[np.ndarray, list[int], list[dict]]:
    """One record [C, T] at `fs` Hz prepared as `spec` says: (windows [n, C, L] float32, start sample of
    each at the spec's rate, dropped windows as {"start_s", "reason"}). UnusableRecord when nothing is left."""
    norm = spec.get("normalisation", NORMALISATION)
    if norm not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {norm!r} (this version knows {', '.join(NORMALISATIONS)})")
    target, length = float(spec["sampling_rate"]), int(spec["window_len"])
    x = np.atleast_2d(np.asarray(signal, dtype=np.float64))
    check_finite(x)
    if x.shape[-1] / fs < length / target - 1e-9:
        raise UnusableRecord(f"too short: {x.shape[-1] / fs:.2f} s < {length / target:g} s window")
    x = resample(x, fs, spec["sampling_rate"])
    if spec.get("bandpass_hz"):
        x = bandpass(x, target, tuple(spec["bandpass_hz"]), int(spec.get("bandpass_order") or BAND_ORDER))
    flat = float(spec.get("flat_mv", FLAT_MV))
    kept, starts, dropped = [], [], []
    for s in window_starts(x.shape[-1], policy or spec.get("window_policy") or "all", length):
        try:
            kept.append(normalise(x[:, s:s + length], norm, flat))
            starts.append(s)
        except UnusableRecord as exc:
            dropped.append({"start_s": s / target, "reason": str(exc)})
    if not kept:
        raise UnusableRecord(dropped[0]["reason"] if dropped else "too short after resampling")
    return np.stack(kept), starts, dropped


# --- reading records (.npy, .csv, WFDB) -----------------------------------------------------------


def pick_rows(signal: np.ndarray, lead: str | None, channels: int) -> np.ndarray:
    """Rows of a [C, T] array the model takes: all when C matches, else row `lead` given as an index."""
    if signal.shape[0] == channels:
        return signal
    if lead is not None and str(lead).isdigit() and int(lead) < signal.shape[0] and channels == 1:
        return signal[int(lead)][None]
    raise UnusableRecord(f"{signal.shape[0]} rows, the model takes {channels}; pick one with --lead INDEX")


def read_npy(path: Path, lead: str | None = None, channels: int = 1) -> np.ndarray:
    """A .npy array [T] or [C, T] (or [T, C] with C small) as float64 [C', T]."""
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # ValueError for pickles, OSError / EOFError for broken files
        raise UnusableRecord(f"not a readable .npy array ({type(exc).__name__}: {exc})") from None
    if arr.ndim == 2 and arr.shape[1] <= 16 < arr.shape[0]:
        arr = arr.T  # samples in rows
    if arr.ndim not in (1, 2) or not np.issubdtype(arr.dtype, np.number):
        raise UnusableRecord(f"expected a numeric array [T] or [C, T], got {arr.dtype} {list(arr.shape)}")
    return pick_rows(np.atleast_2d(arr.astype(np.float64)), lead, channels)


def read_csv(path: Path, lead: str | None = None, channels: int = 1) -> np.ndarray:
    """A CSV of samples in rows: one column, or a header naming the lead (II also finds MLII)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError) as exc:
        raise UnusableRecord(f"unreadable CSV ({type(exc).__name__}: {exc})") from None
    if not rows:
        raise UnusableRecord("empty CSV")
    header = None
    try:
        float(rows[0][0])
    except ValueError:
        header, rows = [h.strip() for h in rows[0]], rows[1:]
    try:
        data = np.array([[float(c) for c in r] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise UnusableRecord(f"non-numeric value in CSV ({exc})") from None
    if data.ndim != 2 or not len(data):
        raise UnusableRecord("CSV rows of unequal length or no samples")
    if data.shape[1] == channels:
        return data.T
    if header and lead is not None and not str(lead).isdigit():
        low = [h.lower() for h in header]
        for cand in (lead.lower(), "ml" + lead.lower()):
            if cand in low:
                return data[:, low.index(cand)][None]
        raise UnusableRecord(f"no column named {lead} (columns: {', '.join(header)})")
    return pick_rows(data.T, lead, channels)


@contextmanager
def fixed_header(record: Path, text: str | None = None) -> Iterator[Path]:
    """A record path wfdb can read: the original, or a corrected copy of its header in a temporary folder.

    Early PhysioNet/CinC Challenge headers name the record with its signal file's suffix on their first
    line (`E07500.mat 12 500 5000`), which wfdb rejects; that line is rewritten to `E07500 ...` and the
    signal files are linked (or copied) beside the corrected header. `text`: the header, if already read.
    """
    if text is None:
        text = record.with_name(record.name + ".hea").read_text(encoding="utf-8")
    lines = text.splitlines()
    first = next((i for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")), None)
    name = lines[first].split()[0].split("/")[0] if first is not None else record.name
    if name == record.name or not name.startswith(record.name + "."):
        yield record
        return
    tokens = lines[first].split()
    tokens[0] = record.name + tokens[0][len(name):]
    lines[first] = " ".join(tokens)
    with tempfile.TemporaryDirectory(prefix="ecgtool-hea-") as tmp:
        Path(tmp, record.name + ".hea").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for ln in lines[first + 1:]:
            parts = ln.split()
            if not parts or ln.lstrip().startswith("#"):
                continue
            src, dst = record.parent / parts[0], Path(tmp, parts[0])
            if src.exists() and not dst.exists() and "/" not in parts[0]:
                try:
                    os.symlink(src.resolve(), dst)
                except OSError:
                    dst.write_bytes(src.read_bytes())
        yield Path(tmp, record.name)


def read_wfdb(path: Path, lead: str | None = None, channels: int = 1) -> tuple[np.ndarray, float]:
    """A WFDB record (.hea + signal files) in mV, the lead(s) the model takes; needs the wfdb package."""
    try:
        import wfdb
    except ImportError:
        raise UnusableRecord("reading WFDB records needs the wfdb package (pip install wfdb)") from None
    base = path.with_suffix("") if path.suffix == ".hea" else path
    try:
        with fixed_header(base) as readable:
            rec = wfdb.rdrecord(str(readable), physical=True)
    except Exception as exc:
        raise UnusableRecord(f"WFDB record unreadable ({type(exc).__name__}: {exc})") from None
    sig = np.asarray(rec.p_signal, dtype=np.float64).T
    for i, unit in enumerate(rec.units or []):
        if str(unit).lower() in ("uv", "µv", "microvolt"):
            sig[i] /= 1000.0
    names = [str(n).strip().lower() for n in (rec.sig_name or [])]
    if sig.shape[0] != channels and lead and lead.lower() != "all":
        want = [c for c in (lead.lower(), "ml" + lead.lower()) if c in names]
        if want:
            sig = sig[[names.index(want[0])]]
        elif sig.shape[0] > 1:
            raise UnusableRecord(f"lead missing: no lead {lead} (leads: {', '.join(rec.sig_name)})")
    return pick_rows(sig, None, channels), float(rec.fs)


def is_wfdb_path(path: Path) -> bool:
    """A .hea, or a record name with a .hea beside it (not a .npy / .csv)."""
    return path.suffix == ".hea" or (path.suffix not in (".npy", ".csv") and path.with_name(path.name + ".hea").exists())


def read_record(path: str | Path, fs: float | None, lead: str | None, channels: int = 1) -> tuple[np.ndarray, float]:
    """(signal [C, T] float64, sampling rate Hz) of a .npy, .csv or WFDB record; UnusableRecord if bad."""
    path = Path(path)
    if is_wfdb_path(path):
        if not (path if path.suffix == ".hea" else path.with_name(path.name + ".hea")).exists():
            raise UnusableRecord("no such file")
        return read_wfdb(path, lead, channels)
    if not path.exists():
        raise UnusableRecord("no such file")
    if path.suffix not in (".npy", ".csv"):
        raise UnusableRecord("unknown record type (expected .npy, .csv or a WFDB .hea)")
    if not fs or fs <= 0:
        raise UnusableRecord(f"{path.suffix} records need the sampling rate: --fs HZ")
    reader = read_npy if path.suffix == ".npy" else read_csv
    return reader(path, lead, channels), float(fs)
