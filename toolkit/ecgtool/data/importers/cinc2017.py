"""PhysioNet/CinC Challenge 2017: single-lead AliveCor records (300 Hz, 9-61 s) and REFERENCE.csv.

REFERENCE.csv lines are `A00001,N`; the letters go through the label set's `cinc2017` key (default
N -> Normal, A -> AF). O (other rhythm) and ~ (noisy) map to no class and are skipped and counted.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ecgtool.core.errors import BadInput
from ecgtool.data.importers.common import ImportOptions, RecordWindows, label_whole_record, require
from ecgtool.data.importers.wfdb_read import read_record

NAME = "cinc2017"
HAS_PATIENTS = False
DEFAULT_WINDOW_POLICY = "first"
LETTERS = {"N": "normal rhythm", "A": "AF", "O": "other rhythm", "~": "noisy"}

_references: dict[tuple, dict[str, str]] = {}


def reference(src: Path) -> dict[str, str]:
    """{record: letter} from SRC/REFERENCE.csv; BadInput when missing or malformed."""
    path = src / "REFERENCE.csv"
    if not path.is_file():
        raise BadInput(f"{path}: not found (a CinC 2017 folder holds REFERENCE.csv beside the records)")
    st = path.stat()
    key = (path.resolve(), st.st_mtime_ns, st.st_size)
    if key not in _references:
        try:
            rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
        except UnicodeDecodeError:
            raise BadInput(f"{path}: not UTF-8 text") from None
        ref = {}
        for i, row in enumerate(rows):
            if not row or not row[0].strip():
                continue
            if len(row) < 2:
                raise BadInput(f"{path}: line {i + 1} is not 'record,label'")
            if i == 0 and row[1].strip() not in LETTERS and not (src / f"{row[0].strip()}.hea").exists():
                continue  # a header row ("Record,Label"): not a record
            ref[row[0].strip()] = row[1].strip()
        _references[key] = ref
    return _references[key]


def list_records(src: Path) -> list[str]:
    ref = reference(src)
    on_disk = {p.stem for p in src.glob("*.hea")}
    return sorted(set(ref) | on_disk)


def read(src: Path, record: str, opts: ImportOptions) -> RecordWindows:
    letter = reference(src).get(record)
    require(letter is not None, "not in REFERENCE.csv: no label for this record")
    label = opts.labels.label("cinc2017", [letter])
    require(label is not None, f"no target label: {letter!r} ({LETTERS.get(letter, 'unknown letter')}) is not in the label set")
    # one lead per record: whatever the AliveCor device recorded (close to lead I)
    raw = read_record(src / record, "all")
    require(raw.signal.shape[0] == 1, f"lead count: expected one lead, found {raw.signal.shape[0]}")
    return label_whole_record(raw, label, letter, opts, record_id=record)
