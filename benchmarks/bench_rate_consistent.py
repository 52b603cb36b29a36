"""A sensitivity figure for the Challenge -> MIT-BIH direction: macro-F1 on all target windows and on the
windows whose labels follow the rate definitions (data.classes.RATE_DEFINITIONS, data.info.RATE_MARGIN_BPM:
the windows `data info --rates` counts as outside are left out; classes without a rate definition are kept).

It says how much of a model's cross-dataset loss sits in windows whose label a rate rule cannot reproduce.
It is shown beside the full figure, never instead of it: the issue's goals are on all windows.

    PYTHONPATH=toolkit OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_rate_consistent.py --out /tmp/scr \\
        --variants rr_baseline,rr-bins-frozen --seeds 0,1,2
(run after bench_cross.py --out /tmp/scr --sources challenge, which trains the models and caches the features)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cross as B  # noqa: E402
import real_data as R  # noqa: E402


def consistent_subset(target: Path, out: Path) -> tuple[Path, dict]:
    """`target` without the windows of a rate-defined class that lie outside its definition by more than the
    margin; (its path, counts of what was left out per class)."""
    from ecgtool.baseline.cache import window_feature_table
    from ecgtool.baseline.features import FEATURE_NAMES
    from ecgtool.data.classes import RATE_DEFINITIONS
    from ecgtool.data.dataset import load_dataset, write_dataset
    from ecgtool.data.info import outside_definition

    ds = load_dataset(target)
    hr = window_feature_table(ds, 0)[:, FEATURE_NAMES.index("hr_bpm")]
    drop = np.zeros(len(ds), bool)
    left_out = {}
    for name in [c for c in RATE_DEFINITIONS if c in ds.classes]:
        bad = (ds.labels == ds.classes.index(name)) & outside_definition(hr, name)
        left_out[name] = int(bad.sum())
        drop |= bad
    keep = np.flatnonzero(~drop)
    if not (out / "meta.json").exists():
        write_dataset(out, np.asarray(ds.signals[keep]), ds.labels[keep], ds.classes, [ds.records[i] for i in keep],
                      {"train": np.arange(len(keep)), "val": [], "test": []},
                      {k: v for k, v in ds.meta.items() if k in ("sampling_rate", "lead", "preprocessing", "source")})
    return out, {"kept": int(len(keep)), "of": int(len(ds)), "left_out": left_out}


def main() -> None:
    from ecgtool.core.ui import markdown_table
    from ecgtool.data.dataset import load_dataset
    from ecgtool.evaluate.artifact import evaluate_artifact

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", default="rr_baseline,rr-bins-frozen")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    t0 = time.perf_counter()
    paths, cross = R.cross_targets(args.out, 4)
    sub, what = consistent_subset(cross["mitdb"], args.out / "data" / "mitdb-all-every4-rate-consistent")
    print(json.dumps(what))
    counts = load_dataset(paths["challenge"]).meta["counts"]["train"]
    rows = []
    for variant in args.variants.split(","):
        archs = B.VARIANTS[variant][0]
        seeds = [0] if archs[0] in B.CLASSICAL else [int(s) for s in args.seeds.split(",")]
        for seed in seeds:
            model = args.out / "challenge" / f"{variant}-s{seed}" / (archs[0] if archs[0] == "rr_baseline" else f"{archs[0]}18")
            full = R.shared_macro_f1(evaluate_artifact(model, cross["mitdb"], split="all"), counts)[0]
            m = evaluate_artifact(model, sub, split="all")
            f1, shared = R.shared_macro_f1(m, counts)
            rows.append({"variant": variant, "seed": seed, "all windows": round(full, 3), "rate-consistent": round(f1, 3),
                         **{c: round(m["per_class"][c]["f1"], 2) for c in shared}})
    print(B.summary_line(t0, 1))
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
