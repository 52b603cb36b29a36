"""PTB-XL: `ptbxl_database.csv` (scp_codes, patient_id, strat_fold) and WFDB records at 100/500 Hz.

Labels are the keys of `scp_codes` (a Python dict literal such as `{'NORM': 100.0, 'SR': 0.0}`;
rhythm statements carry likelihood 0, so every key present counts) through the label set's `ptbxl`
key. The 500 Hz file (`filename_hr`) is read where present, else the 100 Hz one (`filename_lr`).
`strat_fold` gives the dataset's own split (`--split strat-fold`: folds 1-8 train, 9 val, 10 test).
"""

from __future__ import annotations

import ast
import csv
from pathlib import Path

from ecgtool.core.errors import BadInput
from ecgtool.data.importers.common import ImportOptions, RecordWindows, label_whole_record, require
from ecgtool.data.importers.wfdb_read import header_path, read_record

NAME = "ptbxl"
HAS_PATIENTS = True
DEFAULT_WINDOW_POLICY = "first"
DATABASE = "ptbxl_database.csv"
NEEDED = ("ecg_id", "patient_id", "scp_codes", "filename_lr", "filename_hr")

_tables: dict[tuple, dict[str, dict]] = {}


def database(src: Path) -> dict[str, dict]:
    """{ecg_id: csv row} of SRC/ptbxl_database.csv; BadInput when missing or lacking columns."""
    path = src / DATABASE
    if not path.is_file():
        raise BadInput(f"{path}: not found (a PTB-XL folder holds {DATABASE} and records100/records500)")
    st = path.stat()
    key = (path.resolve(), st.st_mtime_ns, st.st_size)
    if key not in _tables:
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                missing = [c for c in NEEDED if c not in (reader.fieldnames or [])]
                if missing:
                    raise BadInput(f"{path}: lacks column(s) {', '.join(missing)}")
                rows = {_id(r["ecg_id"]): r for r in reader}
        except UnicodeDecodeError:
            raise BadInput(f"{path}: not UTF-8 text") from None
        _tables[key] = rows
    return _tables[key]


def _id(value: str) -> str:
    """'15709.0' -> '15709' (PTB-XL writes ids as floats)."""
    text = str(value).strip()
    try:
        f = float(text)
        return str(int(f)) if f.is_integer() else text
    except ValueError:
        return text


def list_records(src: Path) -> list[str]:
    return sorted(database(src), key=lambda k: (len(k), k))


def scp_statements(text: str) -> list[str]:
    try:
        codes = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(f"bad scp_codes: {text[:40]!r} is not a dict literal") from None
    if not isinstance(codes, dict):
        raise ValueError(f"bad scp_codes: {text[:40]!r} is not a dict literal")
    return [str(k) for k in codes]


def strat_fold(src: Path, record: str) -> int | None:
    value = database(src)[record].get("strat_fold", "")
    try:
        return int(float(value))
    except ValueError:
        return None


def read(src: Path, record: str, opts: ImportOptions) -> RecordWindows:
    row = database(src)[record]
    try:
        statements = scp_statements(row["scp_codes"])
    except ValueError as exc:
        require(False, str(exc))
    label = opts.labels.label("ptbxl", statements)
    require(label is not None, f"no target label: scp_codes {','.join(statements) or 'none'}")
    candidates = [row[c].strip() for c in ("filename_hr", "filename_lr") if row.get(c, "").strip()]
    require(bool(candidates), "no file name: neither filename_hr nor filename_lr")
    path = next((src / c for c in candidates if header_path(src / c).exists()), src / candidates[0])
    raw = read_record(path, opts.lead)
    fold = strat_fold(src, record)
    return label_whole_record(raw, label, ",".join(statements), opts, record_id=record,
                              patient_id=_id(row["patient_id"]), extra={"strat_fold": fold if fold else ""})
