"""Reading WFDB records defensively: every problem becomes an UnusableRecord with a one-line reason.

Headers and signals are parsed by `wfdb`; this module only checks what wfdb would otherwise trip
over or allocate blindly (a header claiming a huge length, a missing or truncated signal file, a
sampling rate of 0, non-UTF-8 bytes). The one real-world quirk it works around (early PhysioNet/CinC
Challenge headers name the record with its `.mat` suffix) is fixed by ecgtool.data.preprocess.fixed_header,
which the deploy bundle uses too.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import wfdb

from ecgtool.data.preprocess import UnusableRecord, fixed_header

MIN_FS, MAX_FS = 50.0, 10_000.0  # Hz: ECG sampling rates outside this are a broken header
MAX_HOURS = 48.0  # a longer record is taken for a corrupt sig_len
MAX_COMPRESSED_VALUES = 2e8  # samples a compressed signal file may claim (1.6 GB once decoded to float64)
#: bytes per sample of WFDB storage formats (the WFDB spec); FLAC formats (508/516/524) are compressed
BYTES_PER_SAMPLE = {"8": 1, "16": 2, "24": 3, "32": 4, "61": 2, "80": 1, "160": 2, "212": 1.5,
                    "310": 4 / 3, "311": 4 / 3}


@dataclass
class RawRecord:
    """One record's selected leads in physical units (mV), [C, T] float64."""

    signal: np.ndarray
    fs: float
    leads: list[str]
    comments: list[str]
    all_leads: list[str]


def header_path(record: Path) -> Path:
    return record.parent / f"{record.name}.hea"


def _header_text(record: Path) -> str:
    hea = header_path(record)
    try:
        raw = hea.read_bytes()
    except FileNotFoundError:
        raise UnusableRecord(f"header missing: {hea.name} not found") from None
    except OSError as exc:
        raise UnusableRecord(f"header unreadable: {hea.name} ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnusableRecord(f"header not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}") from None
    if not text.strip():
        raise UnusableRecord("header empty: no record line")
    return text


@contextmanager
def _readable(record: Path) -> Iterator[Path]:
    """A record path wfdb can read, after this module's header checks (the fix-up is preprocess.fixed_header)."""
    with fixed_header(record, _header_text(record)) as path:
        yield path


def read_header(record: Path) -> wfdb.Record:
    """Parse and check a record's header (no signal read); UnusableRecord with the reason if bad."""
    with _readable(record) as path:
        return _checked_header(path, record)


def _checked_header(path: Path, record: Path) -> wfdb.Record:
    try:
        hdr = wfdb.rdheader(str(path))
    except Exception as exc:  # wfdb raises many types for a malformed header
        raise UnusableRecord(f"header does not parse: {type(exc).__name__}: {exc}") from None
    if isinstance(hdr, wfdb.MultiRecord):
        raise UnusableRecord("multi-segment record: not supported")
    fs = hdr.fs
    if fs is None or not np.isfinite(fs) or not (MIN_FS <= float(fs) <= MAX_FS):
        raise UnusableRecord(f"bad sampling rate: {fs} Hz is outside {MIN_FS:g}-{MAX_FS:g} Hz")
    if not hdr.n_sig or not hdr.file_name:
        raise UnusableRecord("no signals: the header lists none")
    sig_len = hdr.sig_len or 0
    if sig_len / float(fs) > MAX_HOURS * 3600:
        raise UnusableRecord(f"enormous length: header claims {sig_len} samples ({sig_len / fs / 3600:.0f} h at {fs:g} Hz), "
                             f"over {MAX_HOURS:g} h, not read")
    _check_signal_files(hdr, record.parent, sig_len)
    return hdr


def _check_signal_files(hdr: wfdb.Record, folder: Path, sig_len: int) -> None:
    """Every signal file exists and holds at least the samples the header claims (before allocating)."""
    spf = hdr.samps_per_frame or [1] * hdr.n_sig
    offsets = hdr.byte_offset or [0] * hdr.n_sig
    per_file: dict[str, list[int]] = {}
    for i, fname in enumerate(hdr.file_name):
        per_file.setdefault(fname, []).append(i)
    for fname, idx in per_file.items():
        path = folder / fname
        if not path.is_file():
            raise UnusableRecord(f"signal file missing: {fname}")
        fmt = str(hdr.fmt[idx[0]])
        if not sig_len:
            continue
        if fmt not in BYTES_PER_SAMPLE:  # compressed (FLAC): the file size bounds nothing, so cap the claim
            if sig_len * len(idx) > MAX_COMPRESSED_VALUES:
                raise UnusableRecord(f"enormous length: header claims {sig_len} x {len(idx)} samples in "
                                     f"compressed {fname}, over {MAX_COMPRESSED_VALUES:.0e}: not read")
            continue
        need = int((offsets[idx[0]] or 0) + np.ceil(sig_len * sum(spf[i] or 1 for i in idx) * BYTES_PER_SAMPLE[fmt]))
        have = path.stat().st_size
        if have < need:
            raise UnusableRecord(f"signal file truncated: {fname} has {have} bytes, the header needs {need}")


def select_leads(names: list[str], lead: str) -> list[int]:
    """Indices of the wanted lead(s): `all`, or one lead by name (`II` also finds MIT-BIH's `MLII`)."""
    if lead.lower() == "all":
        return list(range(len(names)))
    low = [str(n).strip().lower() for n in names]
    want = lead.strip().lower()
    for cand in (want, "ml" + want):
        if cand in low:
            return [low.index(cand)]
    raise UnusableRecord(f"lead missing: no lead {lead} (leads: {', '.join(map(str, names))})")


def read_record(record: Path, lead: str = "II") -> RawRecord:
    """Read the selected lead(s) of one record in mV, checked; UnusableRecord with the reason if bad."""
    with _readable(record) as path:
        hdr = _checked_header(path, record)
        channels = select_leads(list(hdr.sig_name or []), lead)
        try:
            rec = wfdb.rdrecord(str(path), channels=channels, physical=True)
        except Exception as exc:
            raise UnusableRecord(f"signal unreadable: {type(exc).__name__}: {exc}") from None
    sig = np.asarray(rec.p_signal, dtype=np.float64).T
    units = [str(u).lower() for u in (rec.units or [])]
    for i, u in enumerate(units):
        if u in ("uv", "µv", "microvolt"):
            sig[i] /= 1000.0
    return RawRecord(signal=sig, fs=float(rec.fs), leads=list(rec.sig_name),
                     comments=list(hdr.comments or []), all_leads=list(hdr.sig_name or []))
