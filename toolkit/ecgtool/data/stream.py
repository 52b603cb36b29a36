"""Long recordings and live samples: chunked reading, stateful resampling/band-pass, per-window signal
quality (data/quality.py), heart rate, and a `StreamCore` that turns pushed samples into classified windows.

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
"""

from __future__ import annotations

import csv
import math
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from scipy.signal import butter, firwin, sosfilt, sosfilt_zi, upfirdn

if __package__:
    from ecgtool.data import preprocess as pre
    from ecgtool.data.quality import QUALITY_OK, batch_quality
else:  # in a bundle, beside ecg_preprocess.py and ecg_quality.py
    import ecg_preprocess as pre
    from ecg_quality import QUALITY_OK, batch_quality

#: plausible ECG sampling rates (Hz)
FS_RANGE = (50.0, 10000.0)
CHUNK_S = 600.0  # seconds of input read at a time


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
        with np.errstate(over="ignore", invalid="ignore"):  # samples near the float limit: inf, gated per window
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
                with np.errstate(over="ignore", invalid="ignore"):  # inf windows are marked just below
                    gates = batch_quality(np.stack([w for _, w, _ in cut]), self.fs, [r for _, _, r in cut],
                                          self.fs_in, self.flat)
            else:
                gates = [(QUALITY_OK, {}) if np.all(np.isfinite(r)) else ("non-finite", {"reason": "non-finite input"})
                         for _, _, r in cut]
            for (s, w, _), (status, details) in zip(cut, gates):
                if not np.all(np.isfinite(w)):  # finite input near the float limit overflows the filters
                    status, details = "non-finite", {"reason": "non-finite after resampling (samples near the float limit)"}
                elif status == QUALITY_OK and np.ptp(w, axis=-1).min() < self.flat:
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
