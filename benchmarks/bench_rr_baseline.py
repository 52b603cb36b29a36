"""What the RR baseline costs per window, and what its feature extraction gains from worker processes.

Same process, same windows (the first --n windows of a prepared dataset's test split), alternated in rounds so
that drift hits every variant alike:
  features   baseline.features.window_features of one window (wfdb XQRS and the rest, numpy/scipy)
  skl        scikit-learn's HistGradientBoosting predict_proba on one feature row (the refitted classifier)
  onnx       the same classifier as the skl2onnx graph in ONNX Runtime on one row (what runtime/baseline.py and the
             deploy bundle run)
and extract_features over all --n windows with 1 process and with --workers processes (forked, equal matrices
checked). Prints the CPU flags and the load average beside the figures.

    PYTHONPATH=toolkit python benchmarks/bench_rr_baseline.py demo/rr_baseline demo/data [--n 420] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def median_ms(fn, rounds: int) -> float:
    t = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(t))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("data")
    ap.add_argument("--n", type=int, default=420)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()

    from ecgtool.baseline.features import extract_features, window_features
    from ecgtool.baseline.onnx import INPUT, OUTPUT
    from ecgtool.core.machine import cpu_flags
    from ecgtool.data.dataset import load_dataset
    from ecgtool.runtime import load

    print(f"CPU flags: {cpu_flags()}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f} at start")
    ds = load_dataset(a.data)
    idx = np.sort(ds.indices("test"))[: a.n]
    x = np.asarray(ds.signals[idx], dtype=np.float32)
    pred = load(a.folder, threads=1, verify=False)
    m = pred.model
    feats = extract_features(x, m.sampling_rate, m.channel, progress=False, workers=1)
    clf = m.clf
    per = {"features": [], "skl": [], "onnx": []}
    for r in range(a.rounds):
        for i in range(0, len(x), max(1, len(x) // 40)):  # 40 windows a round
            row = feats[i:i + 1]
            per["features"].append(median_ms(lambda: window_features(x[i, m.channel], m.sampling_rate), 1))
            per["skl"].append(median_ms(lambda: clf.predict_proba(row), 1))
            per["onnx"].append(median_ms(lambda: pred.session.run([OUTPUT], {INPUT: row}), 1))
    for k, v in per.items():
        print(f"{k:9s} median {np.median(v):8.3f} ms per window ({len(v)} calls)")
    print(f"classifier onnx / skl: x{np.median(per['onnx']) / np.median(per['skl']):.4f}; "
          f"a window features + onnx / features + skl: "
          f"x{(np.median(per['features']) + np.median(per['onnx'])) / (np.median(per['features']) + np.median(per['skl'])):.3f}")
    times = {1: [], a.workers: []}
    out = {}
    for r in range(max(2, a.rounds // 2)):
        for w in times:
            t0 = time.perf_counter()
            out[w] = extract_features(x, m.sampling_rate, m.channel, progress=False, workers=w)
            times[w].append(time.perf_counter() - t0)
    same = np.array_equal(out[1], out[a.workers], equal_nan=True)
    print(f"extract_features of {len(x)} windows: 1 process {np.median(times[1]):.2f} s, {a.workers} processes "
          f"{np.median(times[a.workers]):.2f} s (x{np.median(times[1]) / np.median(times[a.workers]):.2f}); "
          f"matrices equal: {same}")
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
