"""Training throughput of se_resnet18/34/50 at widths 16 and 64, and the FLOP rate it implies against peak.

Each model trains on random 1 x 2000 inputs (10 s at 200 Hz) with the recipe's own step
(`ecgtool.train.fit.train_step`: Adam, cross-entropy): a few warm-up batches, then timed batches. The
implied rate counts 3 x forward MACs x 2 FLOP per sample (forward, plus about twice that backward).
The CPU's attainable peak is measured in the same process before every model, two ways: a large fp32
torch matmul (MKL) and a large fp32 convolution (oneDNN, k=7, 256 channels); the better of the two
counts, because on AMD CPUs MKL's sgemm can reach only about half of what oneDNN's kernels do.
The machine is shared, so besides wall-clock rates the table gives rates per CPU-second of this
process (time.process_time), which other processes' load does not dilute; the percentage of peak
compares the two on that basis.

    .venv/bin/python benchmarks/bench_train.py            # about 3-5 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time

import torch

from ecgtool.models import get_model, model_stats
from ecgtool.train.fit import train_step
from ecgtool.core.ui import markdown_table


def cpu_description() -> str:
    name, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags]
    return f"{name}, {os.cpu_count()} cores ({', '.join(isa) or 'no AVX info'})"


def _best_rate(fn, flop: float, reps: int) -> tuple[float, float]:
    """Best GFLOP/s of fn() over `reps` runs after one warm-up: (per wall-clock s, per CPU-s of this process)."""
    fn()
    wall = cpu = float("inf")
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return flop / wall / 1e9, flop / cpu / 1e9


def matmul_peak(n: int = 2048, reps: int = 8) -> tuple[float, float]:
    """fp32 n x n matmul (2 n^3 FLOP)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return _best_rate(lambda: torch.mm(a, b), 2 * n**3, reps)


def conv_peak(batch: int = 8, channels: int = 256, kernel: int = 7, length: int = 2048, reps: int = 8) -> tuple[float, float]:
    """fp32 1-D convolution, `channels` in and out, same padding (2 x batch x C^2 x k x L FLOP)."""
    x, w = torch.randn(batch, channels, length), torch.randn(channels, channels, kernel)
    flop = 2 * batch * channels * channels * kernel * length
    return _best_rate(lambda: torch.nn.functional.conv1d(x, w, padding=kernel // 2), flop, reps)


def train_throughput(name: str, width: int, batch: int, length: int, warmup: int, steps: int,
                     max_seconds: float = 60.0) -> dict:
    """Samples/s of full training steps (forward, backward, Adam) of one model on random data: the median
    of `steps` timed steps, fewer (at least 2) once `max_seconds` of timing have passed."""
    torch.manual_seed(0)
    model = get_model(name, width=width)
    stats = model_stats(model, length)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    x = torch.rand(batch, 1, length)
    y = torch.randint(0, 7, (batch,))
    for _ in range(warmup):
        train_step(model, optimizer, criterion, x, y)
    times, cpu_times = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        train_step(model, optimizer, criterion, x, y)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        if len(times) >= 2 and sum(times) > max_seconds:
            break
    step_s = statistics.median(times)
    samples_s = batch / step_s
    samples_cpu_s = batch / statistics.median(cpu_times)
    return {"model": name, "width": width, "threads": torch.get_num_threads(), "timed steps": len(times), "params": stats["params"], "fwd MMAC/sample": round(stats["macs"] / 1e6, 1),
            "batch": batch, "ms/step (median)": round(1000 * step_s, 1), "samples/s": round(samples_s, 1),
            "samples/CPU-s": round(samples_cpu_s, 1),
            "GFLOP/CPU-s": round(samples_cpu_s * 3 * stats["macs"] * 2 / 1e9, 1)}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="se_resnet18,se_resnet34,se_resnet50")
    ap.add_argument("--widths", default="16,64")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--length", type=int, default=2000, help="Samples per record (2000 = 10 s at 200 Hz).")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4, help="Timed training steps per model.")
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}", help="Torch thread counts to measure, e.g. 1,2.")
    ap.add_argument("--max-seconds", type=float, default=30.0, help="Timing budget per model (s).")
    args = ap.parse_args(argv)

    rows, peaks = [], {}
    load_before = os.getloadavg()[0]
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        block, measured, measured_conv = [], [], []
        for name in args.models.split(","):
            for width in (int(w) for w in args.widths.split(",")):
                measured.append(matmul_peak())
                measured_conv.append(conv_peak())
                block.append(train_throughput(name, width, args.batch_size, args.length, args.warmup, args.steps,
                                              args.max_seconds))
                print(f"{name} width {width}, {threads} threads: {block[-1]['samples/s']} samples/s", file=sys.stderr)
        peaks[threads] = {"matmul": (max(m[0] for m in measured), max(m[1] for m in measured)),
                          "conv": (max(m[0] for m in measured_conv), max(m[1] for m in measured_conv))}
        best = max(peaks[threads]["matmul"][1], peaks[threads]["conv"][1])
        for r in block:
            r["% of matmul peak"] = round(100 * r["GFLOP/CPU-s"] / peaks[threads]["matmul"][1], 1)
            r["% of best peak"] = round(100 * r["GFLOP/CPU-s"] / best, 1)
        rows += block

    command = " ".join([".venv/bin/python", "benchmarks/bench_train.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    print(f"Command: `{command}`  ")
    print(f"Machine: {cpu_description()}; torch {torch.__version__}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after  ")
    for threads, p in peaks.items():
        print(f"{threads} thread(s), best of 8 runs before each model, best overall: fp32 matmul 2048 x 2048 "
              f"{p['matmul'][0]:.1f} GFLOP/s wall, {p['matmul'][1]:.1f} GFLOP/CPU-s; fp32 conv1d 8 x 256 x 2048 k7 "
              f"{p['conv'][0]:.1f} GFLOP/s wall, {p['conv'][1]:.1f} GFLOP/CPU-s  ")
    print()
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()
