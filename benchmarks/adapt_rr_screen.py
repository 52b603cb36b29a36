"""AdaBN on top of the RR-head hybrids, Challenge -> MIT-BIH (issue 9, option (c) of the c2m screen).

`ecgtool adapt` refuses an RR-head model ("needs its RR features as a second input"), so this screen does
what it does (every BatchNorm's running statistics recomputed, exact averages, over ALL target windows, no
labels) with the RR features fed: mode `all` (rr_norm too: the RR features re-standardised on the target)
and `trunk` (rr_norm kept, the frozen regression sees the source's standardisation), beside `none`.
Models: bench_cross.py's OUT/challenge/VARIANT-s0/se_resnet18; scored as bench_cross scores them.

    PYTHONPATH=toolkit OMP_NUM_THREADS=1 .venv/bin/python benchmarks/adapt_rr_screen.py --out /tmp/c2m \\
        --variants rr-init-frozen,rr-bins-frozen
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_data as R  # noqa: E402


def main() -> None:
    import torch

    from ecgtool.data.dataset import load_dataset
    from ecgtool.evaluate.metrics import compute_metrics
    from ecgtool.models import load_model
    from ecgtool.runtime.base import rr_bins_of
    from ecgtool.train.rr import dataset_rr_inputs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", default="rr-init-frozen,rr-bins-frozen")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    paths, cross = R.cross_targets(args.out, 4)
    tgt = load_dataset(cross["mitdb"])
    counts = load_dataset(paths["challenge"]).meta["counts"]["train"]
    idx = tgt.indices("all")
    x = np.asarray(tgt.signals[idx], dtype=np.float32)

    def run(model, rr: np.ndarray, batch: int, train: bool) -> np.ndarray:
        model.train(train)
        with torch.no_grad():
            out = [model(torch.from_numpy(x[s:s + batch]), torch.from_numpy(rr[s:s + batch])).numpy()
                   for s in range(0, len(x), batch)]
        model.eval()
        return np.concatenate(out)

    print("| variant | AdaBN | target macro-F1 (shared) | per class |\n|---|---|---|---|")
    for v in [v for v in args.variants.split(",") if v]:
        base = load_model(args.out / "challenge" / f"{v}-s{args.seed}" / "se_resnet18")
        rr = dataset_rr_inputs(tgt, 0, progress=False, bins=rr_bins_of({"extra": base.config.extra}))[idx].astype(np.float32)
        for mode in ("none", "trunk", "all"):
            m = copy.deepcopy(base)
            if mode != "none":
                for name, mod in m.named_modules():
                    if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) and not (mode == "trunk" and name == "rr_norm"):
                        mod.reset_running_stats()
                        mod.momentum = None  # a cumulative (exact) average, as torch's update_bn
                run(m, rr, 64, train=True)
            met = compute_metrics(tgt.labels[idx], run(m, rr, 256, train=False).argmax(1), tgt.classes)
            f1, shared = R.shared_macro_f1(met, counts)
            print(f"| {v} | {mode} | {f1:.3f} | " + " ".join(f"{c} {met['per_class'][c]['f1']:.2f}" for c in shared) + " |",
                  flush=True)


if __name__ == "__main__":
    main()
