"""A 24-hour single-lead record through `predict`'s chunked path: wall time and peak RSS, .npy and CSV.

    PYTHONPATH=toolkit python benchmarks/bench_long_record.py MODEL.int8.onnx [--hours 24] [--tmp /tmp/longrec]

The record is MIT-BIH 100..234 lead MLII resampled to 200 Hz and tiled to `--hours` (17.28 M samples for
24 h), written once to TMP/long.npy and TMP/long.csv (never into the repo). Each format runs in a fresh
child process (so peak RSS is that run's own: VmHWM of /proc/self/status), with the quality gate on and
1 ONNX Runtime thread. Prints CPU flags and the load average beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, sys, time, os
os.environ.setdefault("OMP_NUM_THREADS", "1")
from ecgtool.runtime import load
from ecgtool.deploy.predict import predict_records
p = load(sys.argv[1], threads=1)
t = time.perf_counter()
res = predict_records(p, [sys.argv[2]], fs=200.0)[0]
wall = time.perf_counter() - t
hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0].split()[1]
c = res["clinical"]
print(json.dumps({"wall_s": round(wall, 2), "peak_rss_mb": round(int(hwm) / 1024, 1), "windows": len(res["windows"]),
                  "classifiable_fraction": c["classifiable_fraction"], "unclassifiable_s": c["unclassifiable_s"],
                  "seconds": c["seconds"]}))
"""


def build(tmp: Path, hours: float) -> tuple[Path, Path]:
    import numpy as np
    import wfdb

    from ecgtool.data.preprocess import resample

    npy, csv = tmp / f"long{hours:g}h.npy", tmp / f"long{hours:g}h.csv"
    if npy.exists() and csv.exists():
        return npy, csv
    tmp.mkdir(parents=True, exist_ok=True)
    parts = []
    for rec in ("100", "101", "103", "105", "106", "119", "201", "203", "208", "210", "219", "221"):
        r = wfdb.rdrecord(f"/work/shared/data/mitdb/{rec}", channels=[0])
        parts.append(resample(r.p_signal[:, 0][None], r.fs)[0].astype(np.float32))
    base = np.concatenate(parts)
    n = int(hours * 3600 * 200)
    sig = np.resize(base, n).astype(np.float32)
    np.save(npy, sig)
    np.savetxt(csv, sig, fmt="%.4f")
    return npy, csv


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--tmp", default="/tmp/longrec")
    args = ap.parse_args()
    npy, csv = build(Path(args.tmp), args.hours)
    flags = next((ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")), "")
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if f" {f}" in flags]
    print(f"CPU flags: {', '.join(isa)}; cores {os.cpu_count()}; load before: {os.getloadavg()}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows = {}
    for path in (npy, csv):
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, args.model, str(path)], capture_output=True, text=True,
                             env=env)
        if out.returncode:
            print(out.stderr[-2000:])
            return 1
        rows[path.suffix] = {**json.loads(out.stdout.strip().splitlines()[-1]),
                             "process_s": round(time.perf_counter() - t, 2), "load_after": os.getloadavg()[0]}
        print(path.suffix, rows[path.suffix])
    print(f"CSV / .npy time: {rows['.csv']['wall_s'] / rows['.npy']['wall_s']:.2f}; load after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
