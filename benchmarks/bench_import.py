"""Import speed: all 48 MIT-BIH records (goal: under 60 s on 2 cores) and the 156 Challenge records.

Baseline measured in the same run: wfdb reading the same records alone (rdrecord + rdann), the
floor any importer pays; the import's overhead over it is preprocessing, labelling and writing.

    .venv/bin/python benchmarks/bench_import.py [--data ../shared/data] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import wfdb

from ecgtool.core import ui
from ecgtool.data.dataset import load_dataset
from ecgtool.data.importers import import_dataset

ROOT = Path(__file__).resolve().parents[1]


def read_only(src: Path, fmt: str) -> float:
    """Seconds to read every record's signals (and mitdb annotations) with wfdb, nothing else."""
    t0 = time.perf_counter()
    for hea in sorted(src.glob("*.hea")):
        rec = str(hea.with_suffix(""))
        try:
            wfdb.rdrecord(rec)
        except Exception:  # the Challenge E* headers wfdb rejects; the importer reads them anyway
            continue
        if fmt == "mitdb":
            wfdb.rdann(rec, "atr")
    return time.perf_counter() - t0


def timed_import(fmt: str, src: Path, repeat: int) -> tuple[float, int]:
    best, n = float("inf"), 0
    for _ in range(repeat):
        tmp = Path(tempfile.mkdtemp(prefix="bench-import-"))
        try:
            t0 = time.perf_counter()
            out = import_dataset(fmt, src, tmp / "ds")
            best = min(best, time.perf_counter() - t0)
            n = len(load_dataset(out))
        finally:
            shutil.rmtree(tmp)
    return best, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    ui.set_quiet(True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"Python {platform.python_version()}, wfdb {wfdb.__version__}")
    print("| source | records | windows | import s (best of %d) | wfdb read only s | import / read |" % args.repeat)
    print("|---|---|---|---|---|---|")
    for fmt, folder in (("mitdb", "mitdb"), ("challenge", "cinc2021-sample")):
        src = args.data / folder
        if not src.is_dir():
            print(f"| {fmt} | skipped: {src} absent | | | | |")
            continue
        n_rec = len(list(src.glob("*.hea")))
        read_only(src, fmt)  # warm the page cache so neither side pays for the disk
        base = min(read_only(src, fmt) for _ in range(args.repeat))
        secs, n_win = timed_import(fmt, src, args.repeat)
        print(f"| {fmt} | {n_rec} | {n_win} | {secs:.2f} | {base:.2f} | {secs / base:.1f}x |")


if __name__ == "__main__":
    main()
