"""What the per-source readers share: import options, their result type, whole-record labelling."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecgtool.data.labels import LabelSet
from ecgtool.data.preprocess import TARGET_FS, UnusableRecord, cut_windows, prepare
from ecgtool.data.importers.wfdb_read import RawRecord


@dataclass(frozen=True)
class ImportOptions:
    """Options every reader gets (see `import_dataset`)."""

    labels: LabelSet
    lead: str = "II"
    window_policy: str = "first"
    bandpass: bool = False
    derive_st: bool = False
    normalisation: str = "minmax"  # data.preprocess.NORMALISATIONS


@dataclass
class RecordWindows:
    """The windows one record gave: signals [n, C, L] float32 in [0, 1], one records.csv row each."""

    signals: np.ndarray
    rows: list[dict]
    leads: list[str]
    dropped: list[str] = field(default_factory=list)  # reasons for windows left out of a kept record


def label_whole_record(raw: RawRecord, label: str, source_labels: str, opts: ImportOptions, *,
                       record_id: str, patient_id: str = "", extra: dict | None = None) -> RecordWindows:
    """Preprocess a record that carries one label and cut it into windows (first or all)."""
    sig200 = prepare(raw.signal, raw.fs, band=opts.bandpass)
    windows, starts, dropped = cut_windows(sig200, opts.window_policy, opts.normalisation)
    rows = []
    for s in starts:
        rows.append({
            "record_id": record_id if len(starts) == 1 and opts.window_policy == "first" else f"{record_id}@{s // TARGET_FS}s",
            "record": record_id,
            "patient_id": patient_id,
            "start_s": s // TARGET_FS,
            "label": label,
            "source_labels": source_labels,
            "derived": "",
            **(extra or {}),
        })
    return RecordWindows(signals=windows, rows=rows, leads=raw.leads, dropped=dropped)


def headers_under(src: Path) -> list[str]:
    """Record ids (paths relative to src, no suffix) of every WFDB header below src, sorted."""
    # not only regular files: a .hea that is a link to a device or a FIFO is listed, then skipped with its reason
    return sorted(str(p.relative_to(src).with_suffix("")) for p in src.rglob("*.hea") if not p.is_dir())


def require(cond: bool, reason: str) -> None:
    if not cond:
        raise UnusableRecord(reason)
