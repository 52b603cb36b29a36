"""MIT-BIH leave-records-out for AF (issue 9's Measure): window-level macro-F1 on held-out AF records.

MIT-BIH has AF only in records 201, 202, 203, 210, 219, 221, 222, so a model has to be scored on AF
records it never saw: the two folds of bench_af_truth.py (FOLDS: A holds out 201, 202, 210, 222; B holds
out 203, 219, 221), each imported with `ecgtool data import mitdb --holdout RECORDS` (those records and
any record of the same patient are the whole test split; the rest is split by patient into train/val).
Train and validation keep every `--stride`-th window of each record (real_data.strided_dataset: the
consecutive windows of one record are near duplicates); the test split (the held-out records) is whole.

Rows: rr_baseline, the plain recipe, --rr-head, --rr-head --augment device-shift (bench_cross.py's
settings: se_resnet18, width 16, lr 1e-3, batch 64, at most 8 epochs, early stopping with patience 2,
1 torch thread, seed 0). Each model is scored on its fold's test split through `evaluate_artifact`
(the artifact as it ships, the deployment lead), per fold and pooled over both folds (the predictions of
the two folds concatenated; every AF record scored once, by the fold that held it out).

    PYTHONPATH=toolkit OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/bench_af_folds.py --out /tmp/afl \\
        [--variants rr_baseline,plain,rr-head,rr-head+device-shift] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_data as R  # noqa: E402
from bench_af_truth import FOLDS  # noqa: E402

#: variant -> (archs, train options); the deep ones as bench_cross.py trains them
VARIANTS = {
    "rr_baseline": (["rr_baseline"], {}),
    "plain": (["se_resnet"], {}),
    "rr-head": (["se_resnet"], {"rr_head": True}),
    "rr-head+device-shift": (["se_resnet"], {"rr_head": True, "augment": "device-shift"}),
}


def isa() -> str:
    from ecgtool.core.machine import cpu_flags

    return cpu_flags()


def load_avg() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def fold_data(out: Path, fold: str, records: list[str], src: Path, stride: int) -> tuple[Path, Path]:
    """(the imported fold, its strided training copy); both skipped when already there."""
    from ecgtool.data.importers import import_dataset

    dest = out / "data" / f"fold{fold}"
    if not (dest / "meta.json").exists():
        import_dataset("mitdb", src, dest, holdout=records, seed=0)
    return dest, R.strided_dataset(dest, stride, out / "data" / f"fold{fold}-every{stride}")


def predictions(model: Path, data: Path) -> tuple[np.ndarray, np.ndarray, list[str], dict]:
    """(true, predicted) class indices of the test split in the model's class order, classes, metrics."""
    from ecgtool.data.dataset import load_dataset
    from ecgtool.evaluate.artifact import evaluate_artifact

    m = evaluate_artifact(model, load_dataset(data), split="test")
    cm = np.asarray(m["confusion_matrix"])
    true = np.repeat(np.arange(len(cm)), cm.sum(1))
    pred = np.concatenate([np.repeat(np.arange(len(cm)), row) for row in cm])
    return true, pred, m["classes"], m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=R.SHARED / "mitdb")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--folds", default=",".join(FOLDS))
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data}: MIT-BIH not present (see ../shared/data/README.md)")

    import torch

    from ecgtool.core import ui
    from ecgtool.evaluate.metrics import compute_metrics
    from ecgtool.train.run import train_models

    torch.set_num_threads(args.threads)
    ui.set_quiet(True)
    print(f"CPU flags: {isa()}; cores {os.cpu_count()}; load average before: {load_avg()}", flush=True)
    t0 = time.perf_counter()
    rows, pooled = [], {}
    for fold in [f for f in args.folds.split(",") if f]:
        records = FOLDS[fold]
        full, train_data = fold_data(args.out, fold, records, args.data, args.stride)
        for variant in [v for v in args.variants.split(",") if v]:
            archs, opts = VARIANTS[variant]
            o = dict(opts)
            if archs != ["rr_baseline"]:
                o.update(width=args.width, epochs=args.epochs, patience=args.patience, batch_size=args.batch_size,
                         lr=1e-3)
            run = args.out / f"fold{fold}" / f"{variant}-s{args.seed}"
            t1 = time.perf_counter()
            train_models(train_data, archs, [18], run, seed=args.seed, threads=args.threads,
                         resume=(run / "run.json").exists(), **o)
            model = run / (archs[0] if archs[0] == "rr_baseline" else f"{archs[0]}18")
            true, pred, classes, m = predictions(model, train_data)
            pooled.setdefault(variant, []).append((true, pred, classes))
            cfg = json.loads((model / "config.json").read_text())
            row = {"fold": fold, "held_out": ",".join(records), "variant": variant, "seed": args.seed,
                   "macro_f1": round(m["macro_f1"], 4), "n": m["n"],
                   "per_class": {c: round(v["f1"], 3) for c, v in m["per_class"].items() if v["support"]},
                   "support": {c: v["support"] for c, v in m["per_class"].items() if v["support"]},
                   "epochs_run": (cfg.get("extra") or {}).get("epochs_run"),
                   "seconds": round(time.perf_counter() - t1), "load": load_avg()}
            rows.append(row)
            print(json.dumps(row), flush=True)
    lines = ["| variant | fold A macro-F1 | fold B macro-F1 | pooled macro-F1 | pooled AF F1 | pooled per class |",
             "|---|---|---|---|---|---|"]
    for variant, parts in pooled.items():
        classes = parts[0][2]
        if any(p[2] != classes for p in parts):
            raise SystemExit(f"{variant}: the folds' models have different class lists")
        m = compute_metrics(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), classes)
        per = {c: v["f1"] for c, v in m["per_class"].items() if v["support"]}
        by_fold = {r["fold"]: r["macro_f1"] for r in rows if r["variant"] == variant}
        lines.append(f"| {variant} | {by_fold.get('A', '-')} | {by_fold.get('B', '-')} | {m['macro_f1']:.4f} | "
                     f"{per.get('AF', float('nan')):.3f} | " + " ".join(f"{c} {f:.2f}" for c, f in per.items()) + " |")
        for r in rows:
            if r["variant"] == variant:
                r.setdefault("pooled_macro_f1", round(m["macro_f1"], 4))
    print("\n".join(["", *lines, "", f"{time.perf_counter() - t0:.0f} s; CPU flags: {isa()}; "
                     f"load average after: {load_avg()}"]))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "table": lines}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
