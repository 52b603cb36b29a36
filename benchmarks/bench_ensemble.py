"""The RR baseline and an RR-head hybrid averaged: does the mean of their class probabilities hold up across datasets
better than either? (issue 9's goal: a deep recipe at or above rr_baseline in both directions.)

Reads the models bench_cross.py trained in OUT (OUT/<source>/rr_baseline-s0/rr_baseline and
OUT/<source>/<VARIANT>-s<seed>/se_resnet18) and scores, on all target windows of bench_cross's targets, the
baseline, the hybrid and their ensemble: the mean of the two softmax probability vectors, weight 1/2 each (fixed
before any score was seen). Macro-F1 over the classes both datasets' train splits share (real_data.py's rule).

    ECGTOOL_THREADS=1 PYTHONPATH=toolkit python benchmarks/bench_cross.py --out OUT --variants rr_baseline,rr-init-frozen --seeds 0,1,2
    PYTHONPATH=toolkit python benchmarks/bench_ensemble.py --out OUT --variant rr-init-frozen --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_data as R  # noqa: E402


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def main() -> None:
    from ecgtool.core import ui
    from ecgtool.core.machine import cpu_flags
    from ecgtool.data.dataset import deployment_signals, load_dataset
    from ecgtool.evaluate.metrics import compute_metrics
    from ecgtool.runtime import load
    from ecgtool.runtime.base import predict_in_batches

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variant", default="rr-init-frozen")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--cross-stride", type=int, default=4)
    args = ap.parse_args()
    ui.set_quiet(True)
    paths, cross = R.cross_targets(args.out, args.cross_stride)
    print(f"CPU flags: {cpu_flags()}")
    print("| direction | seed | rr_baseline | hybrid | ensemble (mean of probabilities) |\n|---|---|---|---|---|")
    summary = {}
    for source, target in (("mitdb", "challenge"), ("challenge", "mitdb")):
        tgt = load_dataset(cross[target])
        idx = np.sort(tgt.indices("all"))
        counts = load_dataset(paths[source]).meta["counts"]["train"]
        base = load(args.out / source / "rr_baseline-s0" / "rr_baseline")
        p_base = softmax(predict_in_batches(base, np.asarray(tgt.signals[idx], np.float32), 256))
        classes = list(base.classes)

        def score(p: np.ndarray) -> float:
            truth = np.array([classes.index(tgt.classes[k]) if tgt.classes[k] in classes else -1
                              for k in tgt.labels[idx]])
            keep = truth >= 0
            m = compute_metrics(truth[keep], p[keep].argmax(1), classes)
            return R.shared_macro_f1(m, counts)[0]

        for seed in [int(s) for s in args.seeds.split(",") if s]:
            hyb = load(args.out / source / f"{args.variant}-s{seed}" / "se_resnet18")
            if list(hyb.classes) != classes:
                raise SystemExit(f"{source}: the hybrid's classes differ from the baseline's")
            x = np.asarray(deployment_signals(tgt, hyb.config)[idx], np.float32)
            p_hyb = softmax(predict_in_batches(hyb, x, 256))
            row = (score(p_base), score(p_hyb), score((p_base + p_hyb) / 2))
            summary.setdefault(source, []).append(row)
            print(f"| {R.NAMES[source]} -> {R.NAMES[target]} | {seed} | {row[0]:.3f} | {row[1]:.3f} | {row[2]:.3f} |",
                  flush=True)
    print("\n| direction | rr_baseline | hybrid (mean +- sd) | ensemble (mean +- sd) |\n|---|---|---|---|")
    for source, rows in summary.items():
        a = np.array(rows)
        target = "challenge" if source == "mitdb" else "mitdb"
        print(f"| {R.NAMES[source]} -> {R.NAMES[target]} | {a[0, 0]:.3f} | {a[:, 1].mean():.3f} +- {a[:, 1].std(ddof=1):.3f} "
              f"| {a[:, 2].mean():.3f} +- {a[:, 2].std(ddof=1):.3f} |")


if __name__ == "__main__":
    main()
