"""Synthetic generation rate: the paper-sized set (28,308 records of 10 s at 200 Hz) in records/s.

Usage: .venv/bin/python benchmarks/bench_synth.py [--total 28308] [--repeats 2] [--noise/--no-noise]
Prints the machine, the wall time of each repeat and the best rate, as a markdown line for RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from ecgtool.data.synth import synthesize


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--total", type=int, default=28308)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-noise", action="store_true", help="time the clean generator only")
    args = ap.parse_args()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        signals, labels, records = synthesize(total=args.total, seed=0, noise=not args.no_noise)
        times.append(time.perf_counter() - t0)
        print(f"  {len(labels)} records in {times[-1]:.2f} s ({len(labels) / times[-1]:.0f} records/s)")
    best = min(times)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine = f"{cpu_model()}, {os.cpu_count()} cores, load average {load:.1f} at the end"
    print(f"| {args.total} records{'' if not args.no_noise else ' (no noise)'} | best of {args.repeats}: "
          f"{best:.1f} s | {args.total / best:.0f} records/s | {machine} |")


if __name__ == "__main__":
    main()
