"""Reading WFDB records defensively: every problem becomes an UnusableRecord with a one-line reason.

The checks are the shared reader layer's (ecgtool.data.preprocess: header size and text, the record
line's rate parsed by ecgtool itself -- wfdb falls back to 250 Hz for a rate it cannot parse --, lengths
against file sizes, gains, signal file names, regular files only), which `predict` and the deploy
bundle use too; this module adds what the importers need on top (wfdb's own header object, lead
selection by name, the comments). The early Challenge header quirk (`E07500.mat` on the first line) is
fixed by preprocess.fixed_header.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import wfdb

from ecgtool.data.preprocess import (MAX_FS, MIN_FS, UnusableRecord, check_signal_files, fixed_header, header_text,
                                     parse_header)

__all__ = ["MIN_FS", "MAX_FS", "RawRecord", "header_path", "read_header", "read_record", "select_leads"]


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


@contextmanager
def _readable(record: Path) -> Iterator[tuple[Path, float]]:
    """(a record path wfdb can read, the checked rate) after the shared layer's checks."""
    text = header_text(record)
    info = parse_header(text)
    check_signal_files(info, record.parent)
    with fixed_header(record, text) as path:
        yield path, info["fs"]


def read_header(record: Path) -> wfdb.Record:
    """Parse and check a record's header (no signal read); UnusableRecord with the reason if bad."""
    with _readable(record) as (path, fs):
        return _checked_header(path, fs)


def _checked_header(path: Path, fs: float) -> wfdb.Record:
    try:
        hdr = wfdb.rdheader(str(path))
    except Exception as exc:  # wfdb raises many types for a malformed header
        raise UnusableRecord(f"header does not parse: {type(exc).__name__}: {str(exc)[:160]}") from None
    if isinstance(hdr, wfdb.MultiRecord):
        raise UnusableRecord("multi-segment record: not supported")
    if hdr.fs is None or not np.isclose(float(hdr.fs), fs):
        raise UnusableRecord(f"bad sampling rate: wfdb reads {hdr.fs} Hz, the header says {fs:g} Hz")
    if not hdr.n_sig or not hdr.file_name:
        raise UnusableRecord("no signals: the header lists none")
    return hdr


#: the lead spec suffix of `import --keep-leads` (deployment lead first, then the others)
KEEP_LEADS_SUFFIX = "+rest"


def select_leads(names: list[str], lead: str) -> list[int]:
    """Indices of the wanted lead(s): `all`, or one lead by name (`II` also finds MIT-BIH's `MLII`);
    `NAME+rest` (import --keep-leads): that lead first, then every other lead in the record's order."""
    if lead.lower() == "all":
        return list(range(len(names)))
    if lead.lower().endswith(KEEP_LEADS_SUFFIX):
        first = select_leads(names, lead[: -len(KEEP_LEADS_SUFFIX)])
        return first + [i for i in range(len(names)) if i not in first]
    low = [str(n).strip().lower() for n in names]
    want = lead.strip().lower()
    for cand in (want, "ml" + want):
        if cand in low:
            return [low.index(cand)]
    raise UnusableRecord(f"lead missing: no lead {lead} (leads: {', '.join(map(str, names))})")


def read_record(record: Path, lead: str = "II") -> RawRecord:
    """Read the selected lead(s) of one record in mV, checked; UnusableRecord with the reason if bad."""
    with _readable(record) as (path, fs):
        hdr = _checked_header(path, fs)
        channels = select_leads(list(hdr.sig_name or []), lead)
        try:
            rec = wfdb.rdrecord(str(path), channels=channels, physical=True)
        except Exception as exc:
            raise UnusableRecord(f"signal unreadable: {type(exc).__name__}: {str(exc)[:160]}") from None
    if rec.p_signal is None:
        raise UnusableRecord("signal unreadable: no samples")
    sig = np.asarray(rec.p_signal, dtype=np.float64).T
    units = [str(u).lower() for u in (rec.units or [])]
    for i, u in enumerate(units):
        if u in ("uv", "µv", "microvolt"):
            sig[i] /= 1000.0
    return RawRecord(signal=sig, fs=fs, leads=list(rec.sig_name),
                     comments=list(hdr.comments or []), all_leads=list(hdr.sig_name or []))
