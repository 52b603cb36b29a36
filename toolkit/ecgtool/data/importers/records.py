"""Any folder of WFDB records without labels: every 10-s window, label -1 (unlabelled).

For device adaptation (`ecgtool adapt MODEL --data DIR`): recordings of the target device need no
rhythm labels for AdaBN. The dataset has all windows in its train split and empty val/test splits;
evaluate, bench and train refuse it with one line.
"""

from __future__ import annotations

from pathlib import Path

from ecgtool.data.importers.common import ImportOptions, RecordWindows, headers_under, label_whole_record
from ecgtool.data.importers.wfdb_read import read_record

NAME = "records"
HAS_PATIENTS = False
DEFAULT_WINDOW_POLICY = "all"
UNLABELLED = True
#: the label written to records.csv for every window
LABEL = "unknown"


def list_records(src: Path) -> list[str]:
    return headers_under(src)


def read(src: Path, record: str, opts: ImportOptions) -> RecordWindows:
    raw = read_record(src / record, opts.lead)
    return label_whole_record(raw, LABEL, "", opts, record_id=record)
