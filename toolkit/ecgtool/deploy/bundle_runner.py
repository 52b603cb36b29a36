"""Run an ecgtool deploy bundle: rhythm per 10-s window of an ECG record, as JSON on stdout.

This file is copied into every bundle as run.py. It imports only numpy, scipy and onnxruntime (and
wfdb, if installed, for WFDB .hea records) -- never torch or ecgtool -- so it runs on a Raspberry Pi
or a Jetson with `pip install -r requirements.txt`. The preprocessing repeats ecgtool's exactly
(resample_poly to the model's rate, optional zero-phase Butterworth band-pass, non-overlapping
windows, min-max per window and lead); ecgtool's tests check both give the same windows.

    python run.py RECORD.npy|RECORD.csv|RECORD.hea [RECORD ...] [--fs HZ] [--lead II] [--threads N]

Exit code 0 when at least one record was read, 2 when none could be (one line per bad record on stderr).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
from scipy.signal import butter, resample_poly, sosfiltfilt

SPEC_FILE = "model.json"


class RecordError(Exception):
    """A record that cannot be used; the message is the reason (one line)."""


# --- reading --------------------------------------------------------------------------------------


def _pick_row(signal: np.ndarray, lead: str | None, channels: int, path: Path) -> np.ndarray:
    """Rows of a [C, T] array the model takes: all when C matches, else row `lead` given as an index."""
    if signal.shape[0] == channels:
        return signal
    if lead is not None and str(lead).isdigit() and int(lead) < signal.shape[0] and channels == 1:
        return signal[int(lead)][None]
    raise RecordError(f"{signal.shape[0]} rows, the model takes {channels}; pick one with --lead INDEX")


def read_npy(path: Path, lead: str | None = None, channels: int = 1) -> np.ndarray:
    """A .npy array [T] or [C, T] (or [T, C] with C small) as float64 [C', T]."""
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # ValueError for pickles, OSError / EOFError for broken files
        raise RecordError(f"not a readable .npy array ({type(exc).__name__}: {exc})") from None
    if arr.ndim == 2 and arr.shape[1] <= 16 < arr.shape[0]:
        arr = arr.T  # samples in rows
    if arr.ndim not in (1, 2) or not np.issubdtype(arr.dtype, np.number):
        raise RecordError(f"expected a numeric array [T] or [C, T], got {arr.dtype} {list(arr.shape)}")
    return _pick_row(np.atleast_2d(arr.astype(np.float64)), lead, channels, path)


def read_csv(path: Path, lead: str | None = None, channels: int = 1) -> np.ndarray:
    """A CSV of samples in rows: one column, or a header naming the lead (II also finds MLII)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"unreadable CSV ({type(exc).__name__}: {exc})") from None
    if not rows:
        raise RecordError("empty CSV")
    header = None
    try:
        float(rows[0][0])
    except ValueError:
        header, rows = [h.strip() for h in rows[0]], rows[1:]
    try:
        data = np.array([[float(c) for c in r] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise RecordError(f"non-numeric value in CSV ({exc})") from None
    if data.ndim != 2 or not len(data):
        raise RecordError("CSV rows of unequal length or no samples")
    if data.shape[1] == channels:
        return data.T
    if header and lead is not None and not str(lead).isdigit():
        low = [h.lower() for h in header]
        for cand in (lead.lower(), "ml" + lead.lower()):
            if cand in low:
                return data[:, low.index(cand)][None]
        raise RecordError(f"no column named {lead} (columns: {', '.join(header)})")
    return _pick_row(data.T, lead, channels, path)


@contextmanager
def _fixed_header(base: Path) -> Iterator[Path]:
    """Early Challenge headers name the record `E00271.mat` on their first line, which wfdb rejects:
    read such a record through a corrected header in a temporary folder (signal files linked beside it)."""
    lines = base.with_name(base.name + ".hea").read_text(encoding="utf-8").splitlines()
    first = next(i for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#"))
    tokens = lines[first].split()
    if not tokens[0].startswith(base.name + "."):
        yield base
        return
    tokens[0] = base.name
    lines[first] = " ".join(tokens)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, base.name + ".hea").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for name in {ln.split()[0] for ln in lines[first + 1:] if ln.strip() and not ln.lstrip().startswith("#")}:
            if (base.parent / name).exists() and "/" not in name:
                os.symlink((base.parent / name).resolve(), Path(tmp, name))
        yield Path(tmp, base.name)


def read_wfdb(path: Path, lead: str | None = None, channels: int = 1) -> tuple[np.ndarray, float]:
    """A WFDB record (.hea + signal files) in mV, the lead(s) the model takes; needs the wfdb package."""
    try:
        import wfdb
    except ImportError:
        raise RecordError("reading WFDB records needs the wfdb package (pip install wfdb)") from None
    base = path.with_suffix("") if path.suffix == ".hea" else path
    try:
        with _fixed_header(base) as readable:
            rec = wfdb.rdrecord(str(readable), physical=True)
    except Exception as exc:
        raise RecordError(f"WFDB record unreadable ({type(exc).__name__}: {exc})") from None
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
            raise RecordError(f"lead missing: no lead {lead} (leads: {', '.join(rec.sig_name)})")
    return _pick_row(sig, None, channels, path), float(rec.fs)


def read_record(path: str | Path, fs: float | None, lead: str | None, channels: int = 1) -> tuple[np.ndarray, float]:
    """(signal [C, T] float64, sampling rate Hz) of a .npy, .csv or WFDB record."""
    path = Path(path)
    hea = path if path.suffix == ".hea" else path.with_name(path.name + ".hea")
    if path.suffix == ".hea" or (path.suffix not in (".npy", ".csv") and hea.exists()):
        if not hea.exists():
            raise RecordError("no such file")
        return read_wfdb(path, lead, channels)
    if not path.exists():
        raise RecordError("no such file")
    if path.suffix not in (".npy", ".csv"):
        raise RecordError("unknown record type (expected .npy, .csv or a WFDB .hea)")
    if not fs or fs <= 0:
        raise RecordError(f"{path.suffix} records need the sampling rate: --fs HZ")
    reader = read_npy if path.suffix == ".npy" else read_csv
    return reader(path, lead, channels), float(fs)


# --- preprocessing (the same steps as ecgtool.data.preprocess) -----------------------------------


def preprocess(signal: np.ndarray, fs: float, spec: dict) -> tuple[np.ndarray, list[int], list[dict]]:
    """Record [C, T] at `fs` Hz -> (windows [n, C, L] float32, start sample of each at the model rate, dropped)."""
    target, length = int(spec["sampling_rate"]), int(spec["window_len"])
    x = np.atleast_2d(np.asarray(signal, dtype=np.float64))
    bad = ~np.isfinite(x)
    if bad.any():
        raise RecordError(f"non-finite samples: {int(bad.sum())} value(s)")
    if x.shape[-1] / fs < length / target - 1e-9:
        raise RecordError(f"too short: {x.shape[-1] / fs:.2f} s < {length / target:g} s window")
    ratio = Fraction(target) / Fraction(fs).limit_denominator(1000)
    if ratio != 1:
        x = resample_poly(x, ratio.numerator, ratio.denominator, axis=-1, padtype="line")
    if spec.get("bandpass_hz"):
        sos = butter(int(spec.get("bandpass_order", 4)), spec["bandpass_hz"], btype="bandpass", fs=target, output="sos")
        x = sosfiltfilt(sos, x, axis=-1)
    starts = list(range(0, x.shape[-1] - length + 1, length))
    if spec.get("window_policy") == "first":
        starts = starts[:1]
    kept, kept_starts, dropped = [], [], []
    flat = float(spec.get("flat_mv", 0.01))
    for s in starts:
        w = x[:, s:s + length]
        lo = w.min(axis=-1, keepdims=True)
        rng = w.max(axis=-1, keepdims=True) - lo
        if (rng < flat).any():
            dropped.append({"start_s": s / target, "reason": f"flat line: peak-to-peak below {flat:g} mV in "
                                                             f"{int((rng < flat).sum())} lead(s)"})
            continue
        kept.append(((w - lo) / rng).astype(np.float32))
        kept_starts.append(s)
    if not kept:
        raise RecordError(dropped[0]["reason"] if dropped else "too short after resampling")
    return np.stack(kept), kept_starts, dropped


# --- results (shared with `ecgtool predict`, so both print the same JSON) -------------------------


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def window_results(probs: np.ndarray, starts: list[int], classes: list[str], fs: float, length: int) -> list[dict]:
    """One dict per window: start_s, end_s (s from the record start), rhythm, probability, all probabilities."""
    out = []
    for p, s in zip(probs, starts):
        k = int(np.argmax(p))
        out.append({"start_s": round(s / fs, 3), "end_s": round((s + length) / fs, 3), "rhythm": classes[k],
                    "probability": round(float(p[k]), 6),
                    "probabilities": {c: round(float(v), 6) for c, v in zip(classes, p)}})
    return out


def summarise(windows: list[dict], classes: list[str]) -> dict:
    """Record-level rhythm: the majority over windows (ties: higher mean probability), per-class max probability."""
    counts = {c: sum(w["rhythm"] == c for w in windows) for c in classes}
    mean = {c: float(np.mean([w["probabilities"][c] for w in windows])) for c in classes}
    majority = max(classes, key=lambda c: (counts[c], mean[c]))
    peak = {c: max(w["probabilities"][c] for w in windows) for c in classes}
    return {"rhythm": majority, "windows": len(windows), "counts": {c: n for c, n in counts.items() if n},
            "mean_probabilities": {c: round(v, 6) for c, v in mean.items()},
            "max_probabilities": {c: round(v, 6) for c, v in peak.items()}}


def record_result(record: str, fs: float, n_samples: int, windows: list[dict], dropped: list[dict],
                  classes: list[str]) -> dict:
    return {"record": record, "fs": fs, "seconds": round(n_samples / fs, 3), "windows": windows,
            "dropped_windows": dropped, "summary": summarise(windows, classes)}


# --- the bundle -----------------------------------------------------------------------------------


class Bundle:
    """A bundle folder: model.json (classes, preprocessing) and the ONNX model on ONNX Runtime's CPU provider."""

    def __init__(self, folder: str | Path = ".", threads: int | None = None):
        import onnxruntime as ort

        self.folder = Path(folder)
        self.spec = json.loads((self.folder / SPEC_FILE).read_text(encoding="utf-8"))
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(str(self.folder / self.spec["model_file"]), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.dtype = np.float16 if inp.type == "tensor(float16)" else np.float32

    def predict(self, batch: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Logits [N, K] of windows [N, C, L]."""
        return np.concatenate([self.session.run(None, {self.input_name: batch[i:i + batch_size].astype(self.dtype)})[0]
                               for i in range(0, len(batch), batch_size)]).astype(np.float32)

    def run_record(self, path: str | Path, fs: float | None = None, lead: str | None = None) -> dict:
        pre = self.spec["preprocessing"]
        signal, fs = read_record(path, fs, lead or pre.get("lead"), int(pre["channels"]))
        windows, starts, dropped = preprocess(signal, fs, pre)
        probs = softmax(self.predict(windows))
        classes = self.spec["classes"]
        res = window_results(probs, starts, classes, pre["sampling_rate"], int(pre["window_len"]))
        return record_result(str(path), fs, signal.shape[-1], res, dropped, classes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Rhythm per 10-s window of ECG records, as JSON.")
    ap.add_argument("records", nargs="+", help="RECORD.npy, RECORD.csv or a WFDB RECORD.hea")
    ap.add_argument("--fs", type=float, help="sampling rate (Hz) of .npy/.csv records")
    ap.add_argument("--lead", help="lead name (WFDB/CSV header) or row index (.npy)")
    ap.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    ap.add_argument("--bundle", default=str(Path(__file__).resolve().parent), help="bundle folder (default: beside run.py)")
    args = ap.parse_args(argv)
    bundle = Bundle(args.bundle, threads=args.threads)
    results = []
    for rec in args.records:
        try:
            results.append(bundle.run_record(rec, args.fs, args.lead))
        except RecordError as exc:
            print(f"{rec}: {exc}", file=sys.stderr)
            results.append({"record": rec, "error": str(exc)})
    spec = bundle.spec
    print(json.dumps({"artifact": spec["model_file"], "kind": "onnxruntime", "precision": spec.get("precision"),
                      "classes": spec["classes"], "records": results}, indent=2))
    return 0 if any("error" not in r for r in results) else 2


if __name__ == "__main__":
    sys.exit(main())
