"""Does `train --init` from synthetic pretraining help across datasets? Standard vs diverse morphology.

Pretrains se_resnet18 on `data synth` (the standard generator) and on `data synth --morphology diverse`,
fine-tunes each on MIT-BIH (every 4th window per record for train/val, bench_cross.py's setting) and on the
Challenge-2021 sample with `--init`, and scores the own test split and the other dataset (MIT-BIH: every
4th window of all records; Challenge: all labelled windows) by macro-F1 over the classes both train splits
share (real_data.py's rule). Rows: rr_baseline, no init (the plain recipe), init from standard synthetic,
init from diverse synthetic. Every run folder is resumable; rows append to OUT/bench_synth_init.jsonl.

    ECGTOOL_THREADS=1 OMP_NUM_THREADS=1 PYTHONPATH=toolkit nice -n 5 .venv/bin/python benchmarks/bench_synth_init.py \\
        --out /tmp/synth-init --variants rr_baseline,plain,init-standard,init-diverse --seeds 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_data as R  # noqa: E402
from bench_cross import by_direction_variant, summary_line  # noqa: E402

#: variant -> synthetic morphology pretrained on (None: no init; "baseline": rr_baseline)
VARIANTS = {"rr_baseline": "baseline", "plain": None, "init-standard": "standard", "init-diverse": "diverse",
            "init-diverse-random-lead": "diverse-random", "init-diverse-random-lead+rr-init-frozen": "diverse-random",
            "init-diverse-random-lead+rr-bins-frozen": "diverse-random"}
#: train options a variant adds (the hybrid started from the RR logistic regression, bench_cross's rr-init-frozen;
#: and with the RR inputs binned, bench_cross's rr-bins-frozen)
EXTRA = {"init-diverse-random-lead+rr-init-frozen": {"rr_head": True, "rr_init": "logreg-frozen"},
         "init-diverse-random-lead+rr-bins-frozen": {"rr_head": True, "rr_init": "logreg-frozen", "rr_bins": 16}}


def pretrained(out: Path, kind: str, args) -> Path:
    """se_resnet18 trained on a synthetic set of `kind` (standard, diverse, diverse-random); its model folder."""
    from ecgtool.data.synth import write_synthetic_dataset
    from ecgtool.train.run import train_models

    morphology, lead = {"standard": ("standard", "II"), "diverse": ("diverse", "II"),
                        "diverse-random": ("diverse", "random")}[kind]
    data = out / "data" / f"synth-{kind}-{args.synth_total}"
    if not (data / "meta.json").exists():
        write_synthetic_dataset(data, total=args.synth_total, seed=0, morphology=morphology, lead=lead)
    run = out / "pretrain" / kind
    t0 = time.perf_counter()
    train_models(data, ["se_resnet"], [18], run, width=args.width, epochs=args.pretrain_epochs, lr=1e-3,
                 patience=args.patience, batch_size=args.batch_size, seed=0, threads=args.threads,
                 resume=(run / "run.json").exists())
    model = run / "se_resnet18"
    own = json.loads((model / "metrics.json").read_text())["macro_f1"]
    print(json.dumps({"pretrain": kind, "synthetic_test_macro_f1": own, "seconds": round(time.perf_counter() - t0)}),
          flush=True)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", default="rr_baseline,plain,init-standard,init-diverse")
    ap.add_argument("--sources", default="mitdb,challenge", help="fine-tune on these (comma-separated)")
    ap.add_argument("--seeds", default="0", help="fine-tuning seeds (pretraining always seed 0)")
    ap.add_argument("--int8", action="store_true", help="also export each fine-tuned model to onnx-int8 and score it")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--pretrain-epochs", type=int, default=8)
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--synth-total", type=int, default=2100)
    ap.add_argument("--mitdb-stride", type=int, default=4)
    ap.add_argument("--cross-stride", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from ecgtool.core import ui
    from ecgtool.data.dataset import load_dataset
    from ecgtool.evaluate.artifact import evaluate_artifact
    from ecgtool.train.run import train_models

    torch.set_num_threads(args.threads)
    ui.set_quiet(True)
    out, t0 = args.out, time.perf_counter()
    paths, cross = R.cross_targets(out, args.cross_stride)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    rows = []
    for variant in [v for v in args.variants.split(",") if v]:
        kind = VARIANTS[variant]
        init = pretrained(out, kind, args) if kind not in (None, "baseline") else None
        for source in [s for s in args.sources.split(",") if s]:
            target = "challenge" if source == "mitdb" else "mitdb"
            for seed in (seeds if kind != "baseline" else [0]):
                data, opts = paths[source], {}
                if kind != "baseline":
                    opts = dict(width=args.width, epochs=args.epochs, patience=args.patience,
                                batch_size=args.batch_size, lr=1e-3, init=init, **EXTRA.get(variant, {}))
                    if source == "mitdb" and args.mitdb_stride > 1:
                        data = R.strided_dataset(data, args.mitdb_stride,
                                                 out / "data" / f"{data.name}-every{args.mitdb_stride}")
                arch = "rr_baseline" if kind == "baseline" else "se_resnet"
                run = out / source / f"{variant}-s{seed}"
                t1 = time.perf_counter()
                train_models(data, [arch], [18], run, seed=seed, threads=args.threads,
                             resume=(run / "run.json").exists(), **opts)
                model = run / (arch if kind == "baseline" else f"{arch}18")
                counts = load_dataset(paths[source]).meta["counts"]["train"]
                own_m = json.loads((model / "metrics.json").read_text())
                m = evaluate_artifact(model, cross[target], split="all")
                f1, shared = R.shared_macro_f1(m, counts)
                own_shared = R.shared_macro_f1(own_m, counts)[0]
                hist = (model / "history.csv")
                epochs = len(hist.read_text().splitlines()) - 1 if hist.exists() else None
                row = {"direction": f"{R.NAMES[source]} -> {R.NAMES[target]}", "variant": variant, "seed": seed,
                       "own_test": own_m["macro_f1"], "own_test_shared": own_shared, "target": f1,
                       "shared": ",".join(shared), "epochs_run": epochs,
                       "per_class": {c: round(m["per_class"][c]["f1"], 3) for c in shared},
                       "seconds": round(time.perf_counter() - t1)}
                if args.int8 and kind != "baseline":  # export onnx-int8 (default calibration and gate), same windows
                    from ecgtool.export import export

                    res = export(model, "onnx-int8", data=data, threads=args.threads)
                    row["target_int8"] = R.shared_macro_f1(evaluate_artifact(res.path, cross[target], split="all"),
                                                           counts)[0]
                rows.append(row)
                print(json.dumps(row), flush=True)
                with (out / "bench_synth_init.jsonl").open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
    lines = [summary_line(t0, args.threads),
             "", "| direction | variant | seeds | own test | target (mean +- sd) | target per class (seed 0) |",
             "|---|---|---|---|---|---|"]
    for (direction, variant), rs in by_direction_variant(rows).items():
        t = np.array([r["target"] for r in rs])
        own = np.array([r["own_test"] for r in rs])
        sd = f" +- {t.std(ddof=1):.3f}" if len(t) > 1 else ""
        pc = " ".join(f"{c} {v:.2f}" for c, v in rs[0]["per_class"].items())
        lines.append(f"| {direction} | {variant} | {len(rs)} | {own.mean():.3f} | {t.mean():.3f}{sd} | {pc} |")
    (out / "bench_synth_init.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
