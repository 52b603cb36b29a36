"""A 24-hour single-lead record through `predict`'s chunked path: wall time and peak RSS, .npy and CSV.

    PYTHONPATH=toolkit python benchmarks/bench_long_record.py MODEL.int8.onnx [--hours 24] [--tmp /tmp/longrec]
        [--stage-hours 1] [--reps 2] [--skip-long]

The record is MIT-BIH 100..234 lead MLII resampled to 200 Hz and tiled to `--hours` (17.28 M samples for
24 h), written once to TMP/long.npy and TMP/long.csv (never into the repo). Each format runs in a fresh
child process (so peak RSS is that run's own: VmHWM of /proc/self/status), with the quality gate on and
1 ONNX Runtime thread. Prints CPU flags and the load average beside the figures.

Before that, per stage (--stage-hours of the same record, in this process, best of --reps, alternating):
reading, resampling, the quality gate, ONNX Runtime, and the rest (cutting windows, results, episodes),
with the quality gate per window (`window_quality` on each window: the definition, and the code before
the batched gate) and over each push's windows at once (`batch_quality`, what StreamCore runs), and
ONNX Runtime at batch 64 (the default) and 256. The ratios are the figures to compare across machines.
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


def stages(model: str, npy: Path, gate: str, batch_size: int, fs: float | None = 200.0) -> dict:
    """Seconds per stage of predict_records on `npy` (see the module doc); gate 'window' or 'batch'."""
    from ecgtool.data import quality, stream
    from ecgtool.deploy import predict as pr
    from ecgtool.runtime import load

    acc = {"reading": 0.0, "resampling": 0.0, "quality gate": 0.0, "onnx runtime": 0.0}

    def timed(name, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc[name] += time.perf_counter() - t
        return wrapper

    per_window = lambda x, fs, raws, fs_raw, flat: [quality.window_quality(w, fs, r, fs_raw, flat)  # noqa: E731
                                                    for w, r in zip(x, raws)]
    saved = (stream.batch_quality, stream.Resampler.push, stream.Resampler.flush, stream.open_record)

    def open_timed(*a, **k):
        fs, chunks = saved[3](*a, **k)

        def gen():
            it = iter(chunks)
            while True:
                t = time.perf_counter()
                try:
                    c = next(it)
                except StopIteration:
                    return
                finally:
                    acc["reading"] += time.perf_counter() - t
                yield c
        return fs, gen()

    p = load(model, threads=1)
    p.predict = timed("onnx runtime", p.predict)
    stream.batch_quality = timed("quality gate", per_window if gate == "window" else saved[0])
    stream.Resampler.push, stream.Resampler.flush = timed("resampling", saved[1]), timed("resampling", saved[2])
    stream.open_record = open_timed
    try:
        t = time.perf_counter()
        res = pr.predict_records(p, [str(npy)], fs=fs, batch_size=batch_size)[0]
        total = time.perf_counter() - t
    finally:
        stream.batch_quality, stream.Resampler.push, stream.Resampler.flush, stream.open_record = saved
    acc["rest"] = total - sum(acc.values())
    acc["total"] = total
    acc["_statuses"] = [w["quality"] for w in res["windows"]]
    return acc


def stage_report(model: str, npy: Path, reps: int, fs: float | None = 200.0) -> None:
    from ecgtool.core import ui

    ui.set_quiet(True)
    configs = [("window", 64), ("batch", 64), ("batch", 256)]
    best: dict = {}
    for _ in range(reps):
        for cfg in configs:
            r = stages(model, npy, *cfg, fs=fs)
            old = best.get(cfg)
            best[cfg] = r if old is None else {k: (min(v, old[k]) if k != "_statuses" else v) for k, v in r.items()}
    assert best[configs[0]]["_statuses"] == best[configs[1]]["_statuses"], "batched gate decided differently"
    names = ["reading", "resampling", "quality gate", "onnx runtime", "rest", "total"]
    print(f"per stage, {npy.name}, best of {reps} (s; share of total):")
    print("| stage | " + " | ".join(f"gate {g}, ORT batch {b}" for g, b in configs) + " | before / after |")
    print("|---|" + "---|" * (len(configs) + 1))
    for n in names:
        cells = [f"{best[c][n]:.3f} ({100 * best[c][n] / best[c]['total']:.0f} %)" for c in configs]
        after = min(best[configs[1]][n], best[configs[2]][n]) if n == "onnx runtime" else best[configs[1]][n]
        ratio = best[configs[0]][n] / after if after > 0 else float("nan")
        print(f"| {n} | " + " | ".join(cells) + f" | {ratio:.2f}x |")
    print(f"same statuses, window and batch gate: {len(best[configs[0]]['_statuses'])} windows; "
          f"load after: {os.getloadavg()}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--tmp", default="/tmp/longrec")
    ap.add_argument("--stage-hours", type=float, default=1.0, help="record length of the per-stage table (0: none)")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--skip-long", action="store_true", help="only the per-stage table")
    ap.add_argument("--stage-record", action="append", default=[],
                    help="also a per-stage table of this WFDB record (e.g. a 360-Hz MIT-BIH .hea: reading, resampling)")
    args = ap.parse_args()
    flags = next((ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")), "")
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile") if f" {f}" in flags]
    print(f"CPU flags: {', '.join(isa)}; cores {os.cpu_count()}; load before: {os.getloadavg()}")
    if args.stage_hours:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        stage_report(args.model, build(Path(args.tmp), args.stage_hours)[0], args.reps)
    for rec in args.stage_record:
        stage_report(args.model, Path(rec), args.reps, fs=None)
    if args.skip_long:
        return 0
    npy, csv = build(Path(args.tmp), args.hours)
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
        print(path.suffix, rows[path.suffix], flush=True)
    print(f"{args.hours:g} h: .npy {rows['.npy']['wall_s']} s (peak RSS {rows['.npy']['peak_rss_mb']} MB), "
          f".csv {rows['.csv']['wall_s']} s (peak RSS {rows['.csv']['peak_rss_mb']} MB); CSV / .npy time: "
          f"{rows['.csv']['wall_s'] / rows['.npy']['wall_s']:.2f}; CPU flags: {', '.join(isa)}; load after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
