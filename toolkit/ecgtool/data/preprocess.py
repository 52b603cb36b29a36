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
import stat
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


# --- limits of the validated reader layer (checked before anything is allocated or resampled) ----------

MIN_FS, MAX_FS = 50.0, 10_000.0  # Hz: an ECG sampling rate outside this is a broken header or a wrong --fs
MAX_HOURS = 48.0  # a longer record is taken for a corrupt length field
MAX_HEADER_BYTES = 1 << 20  # a WFDB header is a few lines; 1 MB of comments is not a header
MAX_CSV_FIELD = 128 * 1024  # bytes of one CSV field (csv's own default limit, refused in one line)
MAX_RECORD_BYTES = 2 << 30  # a .npy / .csv record file larger than 2 GB is refused unread
MAX_FILE_NAME = 255  # characters of a signal file name in a header (a file system's limit)
MAX_SIGNALS = 256  # signals one header may list
#: |sample| above this (mV, or raw ADC counts of a .npy) is no ECG: the window is refused, never normalised
MAX_AMPLITUDE = 1e7
#: bytes per sample of WFDB storage formats (the WFDB spec); FLAC formats (508/516/524) are compressed
BYTES_PER_SAMPLE = {"8": 1, "16": 2, "24": 3, "32": 4, "61": 2, "80": 1, "160": 2, "212": 1.5,
                    "310": 4 / 3, "311": 4 / 3}
MAX_COMPRESSED_VALUES = 2e8  # samples a compressed signal file may claim (1.6 GB once decoded to float64)


def check_fs(fs: Any, what: str = "sampling rate") -> float:
    """`fs` as a float in MIN_FS-MAX_FS Hz, or UnusableRecord naming `what` (nan, inf, 0, 1e-9, text...)."""
    if isinstance(fs, str) and len(fs.strip()) > 24:
        raise UnusableRecord(f"bad {what}: a {len(fs.strip())}-character field is no plausible rate")
    try:
        value = float(fs)
    except (TypeError, ValueError, OverflowError):
        raise UnusableRecord(f"bad {what}: {str(fs)[:40]!r} is not a number") from None
    if not np.isfinite(value) or not (MIN_FS <= value <= MAX_FS):
        raise UnusableRecord(f"bad {what}: {str(fs)[:40]} Hz is outside {MIN_FS:g}-{MAX_FS:g} Hz")
    return value


def regular_file(path: Path, what: str = "file") -> int:
    """Size in bytes of `path` if it is a regular file (after symlinks: never /dev/zero, a FIFO or a folder)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UnusableRecord(f"{what} missing: {Path(path).name} not found") from None
    except (OSError, ValueError) as exc:
        raise UnusableRecord(f"{what} unreadable: {Path(path).name[:80]} ({getattr(exc, 'strerror', None) or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnusableRecord(f"{what} not a regular file: {Path(path).name[:80]} (a device, FIFO or folder is not read)")
    return st.st_size


def read_bounded(path: Path, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most `limit` bytes (never more is read)."""
    size = regular_file(path, what)
    if size > limit:
        raise UnusableRecord(f"{what} too large: {Path(path).name} has {size} bytes, over {limit}")
    try:
        with open(path, "rb") as fh:
            return fh.read(limit + 1)[:limit]
    except OSError as exc:
        raise UnusableRecord(f"{what} unreadable: {Path(path).name} ({exc.strerror})") from None


def resample(signal: np.ndarray, fs: float, target_fs: int = TARGET_FS) -> np.ndarray:
    """Resample [C, T] from `fs` Hz to `target_fs` Hz along the last axis (polyphase FIR)."""
    ratio = Fraction(target_fs) / Fraction(check_fs(fs)).limit_denominator(1000)
    if ratio == 1:
        return np.asarray(signal, dtype=np.float64)
    # padtype "line": no zero-padding transient at the ends (a baseline offset would ramp to 0); extreme
    # finite samples may overflow to inf here: minmax refuses such windows one by one
    with np.errstate(over="ignore", invalid="ignore"):
        return resample_poly(signal, ratio.numerator, ratio.denominator, axis=-1, padtype="line")


def bandpass(signal: np.ndarray, fs: float = TARGET_FS, band: tuple[float, float] = BAND_HZ,
             order: int = BAND_ORDER) -> np.ndarray:
    """Zero-phase Butterworth band-pass (Hz) along the last axis."""
    sos = butter(order, band, btype="bandpass", fs=fs, output="sos")
    with np.errstate(over="ignore", invalid="ignore"):
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
    fs = check_fs(fs)
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
    if not np.isfinite(window).all():
        raise UnusableRecord("non-finite window: NaN or infinite values after resampling/filtering")
    if np.abs(window).max() > MAX_AMPLITUDE:
        raise UnusableRecord(f"absurd amplitude: |sample| over {MAX_AMPLITUDE:g} in the window")
    lo = window.min(axis=-1, keepdims=True)
    with np.errstate(over="ignore", invalid="ignore"):
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
    fs = check_fs(fs)
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
    """A .npy array [T] or [C, T] (or [T, C] with C small) as float64 [C', T].

    Memory-mapped first, so the shape and dtype the file claims are checked against its size before
    anything is allocated; pickles, object, complex, structured and 0-d arrays are refused."""
    size = regular_file(path, "record")
    if size > MAX_RECORD_BYTES:
        raise UnusableRecord(f"record too large: {size} bytes, over {MAX_RECORD_BYTES}")
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except Exception as exc:  # ValueError for pickles / object dtypes, OSError / EOFError for broken files
        raise UnusableRecord(f"not a readable .npy array ({type(exc).__name__}: {str(exc)[:160]})") from None
    if not isinstance(arr, np.ndarray):
        raise UnusableRecord("not a .npy array (an .npz archive or another object)")
    if arr.ndim == 2 and arr.shape[1] <= 16 < arr.shape[0]:
        arr = arr.T  # samples in rows
    if arr.ndim not in (1, 2) or arr.dtype.kind not in "iuf" or arr.size == 0:
        raise UnusableRecord(f"expected a numeric array [T] or [C, T], got {arr.dtype} {list(arr.shape)}")
    if arr.ndim == 2 and arr.shape[0] > MAX_SIGNALS:
        raise UnusableRecord(f"expected a numeric array [T] or [C, T], got {arr.shape[0]} rows (over {MAX_SIGNALS})")
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.array(np.atleast_2d(arr), dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise UnusableRecord(f"not a readable .npy array ({type(exc).__name__}: {str(exc)[:160]})") from None
    del arr
    return pick_rows(out, lead, channels)


def read_csv(path: Path, lead: str | None = None, channels: int = 1) -> np.ndarray:
    """A CSV of samples in rows: one column, or a header naming the lead (II also finds MLII)."""
    size = regular_file(path, "record")
    if size > MAX_RECORD_BYTES:
        raise UnusableRecord(f"record too large: {size} bytes, over {MAX_RECORD_BYTES}")
    limit = csv.field_size_limit()
    try:
        csv.field_size_limit(MAX_CSV_FIELD)
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except csv.Error as exc:
        raise UnusableRecord(f"unreadable CSV ({str(exc)[:120]}; a field over {MAX_CSV_FIELD} bytes or a bad quote)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UnusableRecord(f"unreadable CSV ({type(exc).__name__}: {str(exc)[:120]})") from None
    finally:
        csv.field_size_limit(limit)
    if len({len(r) for r in rows}) > 1:
        raise UnusableRecord("CSV rows of unequal length")
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
        raise UnusableRecord(f"non-numeric value in CSV ({str(exc)[:120]})") from None
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


def header_text(record: Path) -> str:
    """The text of `record`.hea: a regular file of at most MAX_HEADER_BYTES, UTF-8, with a record line."""
    hea = record.with_name(record.name + ".hea")
    raw = read_bounded(hea, MAX_HEADER_BYTES, "header")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnusableRecord(f"header not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}") from None
    if "\x00" in text:
        raise UnusableRecord("header holds NUL bytes: not a text header")
    if not any(ln.strip() and not ln.lstrip().startswith("#") for ln in text.splitlines()):
        raise UnusableRecord("header empty: no record line (only comments or blank lines)")
    return text


def _header_number(token: str, key: str, cast=float) -> float:
    if len(token) > 20:
        raise UnusableRecord(f"header does not parse: {key} {token[:24]}... has {len(token)} characters")
    try:
        value = cast(token)
    except (ValueError, OverflowError):
        raise UnusableRecord(f"header does not parse: {key} {token[:24]!r} is not a number") from None
    return value


def parse_header(text: str) -> dict[str, Any]:
    """The fields of a single-segment WFDB header this layer checks, parsed here (not by wfdb, which falls
    back to 250 Hz for a rate it cannot parse): fs, n_sig, sig_len and per signal its file, format,
    samples per frame, byte offset and gain. UnusableRecord naming the field for anything implausible."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    rec = lines[0].split("#")[0].split()
    if len(rec) < 2:
        raise UnusableRecord(f"header does not parse: record line {lines[0][:60]!r} needs a name and a signal count")
    if "/" in rec[0]:
        raise UnusableRecord("multi-segment record: not supported")
    n_sig = int(_header_number(rec[1], "signal count", int))
    if n_sig < 1:
        raise UnusableRecord("no signals: the header lists none")
    if n_sig > MAX_SIGNALS:
        raise UnusableRecord(f"bad header field: signal count {n_sig} over {MAX_SIGNALS}")
    if len(rec) > 2:
        fs = check_fs(rec[2].split("/")[0].split("(")[0], "sampling rate")
    else:
        fs = 250.0  # the WFDB default when the field is absent
    sig_len = int(_header_number(rec[3], "length", int)) if len(rec) > 3 else 0
    if sig_len < 0:
        raise UnusableRecord(f"bad header field: length {sig_len} is negative")
    if sig_len / fs > MAX_HOURS * 3600:
        raise UnusableRecord(f"enormous length: header claims {sig_len} samples ({sig_len / fs / 3600:.0f} h at "
                             f"{fs:g} Hz), over {MAX_HOURS:g} h, not read")
    if len(lines) - 1 < n_sig:
        raise UnusableRecord(f"bad header: {n_sig} signal(s) declared, {len(lines) - 1} signal line(s)")
    signals = []
    for ln in lines[1:1 + n_sig]:
        tok = ln.split()
        fname = tok[0]
        if len(fname) > MAX_FILE_NAME:
            raise UnusableRecord(f"bad signal file name: {len(fname)} characters, over {MAX_FILE_NAME}")
        if "/" in fname or "\\" in fname or fname in (".", ".."):
            raise UnusableRecord(f"bad signal file name: {fname[:60]!r} holds a path (a file beside the header only)")
        if len(tok) < 2:
            raise UnusableRecord(f"bad header signal line: {ln[:60]!r} has no format")
        fmt_tok = tok[1]
        fmt = fmt_tok.split("x")[0].split(":")[0].split("+")[0]
        spf = int(_header_number(fmt_tok.split("x")[1].split(":")[0].split("+")[0], "samples per frame", int)) \
            if "x" in fmt_tok else 1
        offset = int(_header_number(fmt_tok.split("+")[1], "byte offset", int)) if "+" in fmt_tok else 0
        if not 1 <= spf <= 1024 or offset < 0:
            raise UnusableRecord(f"bad header field: format {fmt_tok[:30]!r} (samples per frame 1-1024, offset >= 0)")
        gain = None
        if len(tok) > 2:
            gain = _header_number(tok[2].split("/")[0].split("(")[0], "gain")
            if not np.isfinite(gain) or gain == 0:
                raise UnusableRecord(f"bad header field: gain {tok[2][:30]} (finite and non-zero)")
        signals.append({"file": fname, "fmt": fmt, "spf": spf, "offset": offset, "gain": gain})
    return {"fs": fs, "n_sig": n_sig, "sig_len": sig_len, "signals": signals}


def check_signal_files(info: dict[str, Any], folder: Path) -> None:
    """Every signal file is a regular file beside the header holding the samples the header claims
    (before anything is allocated); a compressed one may claim at most MAX_COMPRESSED_VALUES."""
    per_file: dict[str, list[dict]] = {}
    for sig in info["signals"]:
        per_file.setdefault(sig["file"], []).append(sig)
    sig_len = info["sig_len"]
    for fname, sigs in per_file.items():
        if fname == "~":  # a null signal (WFDB): no file
            continue
        have = regular_file(folder / fname, "signal file")
        fmt = sigs[0]["fmt"]
        if fmt not in BYTES_PER_SAMPLE:
            if sig_len * len(sigs) > MAX_COMPRESSED_VALUES:
                raise UnusableRecord(f"enormous length: header claims {sig_len} x {len(sigs)} samples in "
                                     f"compressed {fname}, over {MAX_COMPRESSED_VALUES:.0e}: not read")
            continue
        if not sig_len:
            if have / BYTES_PER_SAMPLE[fmt] / info["fs"] > MAX_HOURS * 3600 * len(sigs):
                raise UnusableRecord(f"enormous signal file: {fname} holds over {MAX_HOURS:g} h of samples")
            continue
        need = int(sigs[0]["offset"] + np.ceil(sig_len * sum(s["spf"] for s in sigs) * BYTES_PER_SAMPLE[fmt]))
        if have < need:
            raise UnusableRecord(f"signal file truncated: {fname} has {have} bytes, the header needs {need}")


def checked_header(record: Path) -> tuple[str, dict[str, Any]]:
    """(header text, parsed fields) of a WFDB record, every check of this layer passed."""
    text = header_text(record)
    info = parse_header(text)
    check_signal_files(info, record.parent)
    return text, info


@contextmanager
def fixed_header(record: Path, text: str | None = None) -> Iterator[Path]:
    """A record path wfdb can read: the original, or a corrected copy of its header in a temporary folder.

    Early PhysioNet/CinC Challenge headers name the record with its signal file's suffix on their first
    line (`E07500.mat 12 500 5000`), which wfdb rejects; that line is rewritten to `E07500 ...` and the
    signal files are linked (or copied) beside the corrected header. `text`: the header, if already read.
    """
    if text is None:
        text = header_text(record)
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
    text, info = checked_header(base)
    try:
        with fixed_header(base, text) as readable:
            rec = wfdb.rdrecord(str(readable), physical=True)
    except Exception as exc:
        raise UnusableRecord(f"WFDB record unreadable ({type(exc).__name__}: {str(exc)[:200]})") from None
    if rec.p_signal is None or not np.isclose(float(rec.fs), info["fs"]):
        raise UnusableRecord(f"WFDB record unreadable: wfdb read {rec.fs} Hz, the header says {info['fs']:g} Hz")
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
    return pick_rows(sig, None, channels), info["fs"]


def is_wfdb_path(path: Path) -> bool:
    """A .hea, or a record name with a .hea beside it (not a .npy / .csv)."""
    try:
        return path.suffix == ".hea" or (path.suffix not in (".npy", ".csv") and path.with_name(path.name + ".hea").exists())
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        return False


def read_record(path: str | Path, fs: float | None, lead: str | None, channels: int = 1) -> tuple[np.ndarray, float]:
    """(signal [C, T] float64, sampling rate Hz) of a .npy, .csv or WFDB record; UnusableRecord if bad."""
    path = Path(path)
    if len(path.name) > MAX_FILE_NAME:
        raise UnusableRecord(f"file name too long: {len(path.name)} characters")
    if is_wfdb_path(path):
        if not (path if path.suffix == ".hea" else path.with_name(path.name + ".hea")).exists():
            raise UnusableRecord("no such file")
        return read_wfdb(path, lead, channels)
    if not path.exists():
        raise UnusableRecord("no such file")
    if path.suffix not in (".npy", ".csv"):
        raise UnusableRecord("unknown record type (expected .npy, .csv or a WFDB .hea)")
    if fs is None:
        raise UnusableRecord(f"{path.suffix} records need the sampling rate: --fs HZ")
    fs = check_fs(fs, "--fs")
    reader = read_npy if path.suffix == ".npy" else read_csv
    return reader(path, lead, channels), fs
