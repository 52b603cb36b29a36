"""PhysioNet/CinC Challenge 2020/2021 records: WFDB header + MATLAB v4 .mat, labels in `#Dx:` lines.

`#Dx:` holds SNOMED-CT codes (2021, later 2020 releases) or the 2020 abbreviations (`AF`, `I-AVB`,
`PVC`, `Normal`, ...); both are looked up in the label set (keys `snomed` and `challenge`) and several
matches are resolved by its priority order. wfdb reads the .mat files (format `16+24`); headers with
the early-release quirk `E07500.mat` on the first line are read through a corrected copy.
"""

from __future__ import annotations

from pathlib import Path

from ecgtool.data.importers.common import ImportOptions, RecordWindows, headers_under, label_whole_record, require
from ecgtool.data.importers.wfdb_read import read_record

NAME = "challenge"
HAS_PATIENTS = False
DEFAULT_WINDOW_POLICY = "first"


def list_records(src: Path) -> list[str]:
    return headers_under(src)


def dx_codes(comments: list[str]) -> list[str] | None:
    """The codes of a header's `Dx:` comment line, or None when it has none."""
    for line in comments:
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == "dx":
            return [c.strip() for c in value.replace(";", ",").split(",") if c.strip()]
    return None


def read(src: Path, record: str, opts: ImportOptions) -> RecordWindows:
    raw = read_record(src / record, opts.lead)
    codes = dx_codes(raw.comments)
    require(codes is not None, "no Dx line: the header has no #Dx comment")
    require(bool(codes), "no Dx line: the #Dx line is empty")
    classes = opts.labels.classes_of("snomed", codes) + opts.labels.classes_of("challenge", codes)
    label = opts.labels.resolve(classes)
    require(label is not None, f"no target label: Dx {','.join(codes)}")
    return label_whole_record(raw, label, ",".join(codes), opts, record_id=record)
