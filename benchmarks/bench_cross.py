"""Cross-dataset matrix of the issue-9 recipes: MIT-BIH -> Challenge-2021 sample and back.

Rows per direction: rr_baseline, the plain recipe (se_resnet18), --rr-head (the hybrid), --augment
device-shift, --leads any (both datasets imported with --keep-leads), and combinations. Scored on all
target windows (the deployment lead, II), macro-F1 over the classes both datasets' train splits share
(benchmarks/real_data.py's data preparation). Two rules for the target windows of a class the model never
trained on (MIT-BIH has no FAB or ST): `target` leaves them out, as `evaluate` and `bench --external` do since
model folders record `train_counts`; `target_kept` keeps them, scored as misses (real_data.shared_macro_f1, the
rule of every figure before 2026-12-04). Challenge -> MIT-BIH is the same under both (every class trained). `rr-logreg`: scikit-learn's logistic regression on
the RR head's inputs, fitted on the deep rows' training windows (the classical floor beside rr_baseline);
`rr-init*`: the hybrid started from that regression (`train --rr-head --rr-init logreg|logreg-frozen`).
`--seeds 0,1,2` repeats the deep rows;
`--int8 VARIANT` also quantises that variant's models (onnx-int8, calibrated on its training split) and
scores the INT8 files on the target.

    ECGTOOL_THREADS=1 PYTHONPATH=toolkit nice -n 5 .venv/bin/python benchmarks/bench_cross.py --out /tmp/cross \\
        --variants rr_baseline,plain,rr-head --width 16 --epochs 8
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

#: variant -> (archs, train options, data kind: "plain" or "leads" (imported keeping every lead))
VARIANTS = {
    "rr_baseline": (["rr_baseline"], {}, "plain"),
    "plain": (["se_resnet"], {}, "plain"),
    "rr-head": (["se_resnet"], {"rr_head": True}, "plain"),
    "device-shift": (["se_resnet"], {"augment": "device-shift"}, "plain"),
    "leads-any": (["se_resnet"], {"leads": "any"}, "leads"),
    "rr-head+trunk-dropout": (["se_resnet"], {"rr_head": True, "rr_trunk_dropout": 0.5}, "plain"),
    "rr-head+device-shift": (["se_resnet"], {"rr_head": True, "augment": "device-shift"}, "plain"),
    "rr-head+leads-any": (["se_resnet"], {"rr_head": True, "leads": "any"}, "leads"),
    "rr-head+leads-any+device-shift": (["se_resnet"], {"rr_head": True, "leads": "any", "augment": "device-shift"},
                                       "leads"),
    # the classical floor the issue names: multinomial logistic regression on the RR head's inputs (train/rr.py)
    "rr-logreg": (["rr-logreg"], {}, "plain"),
    # the hybrid started from that regression (`--rr-init`), alone and with the options above
    "rr-init": (["se_resnet"], {"rr_head": True, "rr_init": "logreg"}, "plain"),
    "rr-init-frozen": (["se_resnet"], {"rr_head": True, "rr_init": "logreg-frozen"}, "plain"),
    "rr-init+trunk-dropout": (["se_resnet"], {"rr_head": True, "rr_init": "logreg", "rr_trunk_dropout": 0.5}, "plain"),
    "rr-init+device-shift": (["se_resnet"], {"rr_head": True, "rr_init": "logreg", "augment": "device-shift"}, "plain"),
    "rr-init-frozen+device-shift": (["se_resnet"], {"rr_head": True, "rr_init": "logreg-frozen",
                                                    "augment": "device-shift"}, "plain"),
    "rr-init+leads-any": (["se_resnet"], {"rr_head": True, "rr_init": "logreg", "leads": "any"}, "leads"),
    "rr-init-frozen+leads-any": (["se_resnet"], {"rr_head": True, "rr_init": "logreg-frozen", "leads": "any"}, "leads"),
    # the RR inputs also thermometer-coded against 16 quantile bins of the training rows (`--rr-bins 16`)
    "rr-bins-frozen": (["se_resnet"], {"rr_head": True, "rr_init": "logreg-frozen", "rr_bins": 16}, "plain"),
    # the binned inputs without the regression start, and the binned hybrid with the two data options
    "rr-bins": (["se_resnet"], {"rr_head": True, "rr_bins": 16}, "plain"),
    "rr-bins-frozen+leads-any": (["se_resnet"], {"rr_head": True, "rr_init": "logreg-frozen", "rr_bins": 16,
                                                 "leads": "any"}, "leads"),
    "rr-bins-frozen+device-shift": (["se_resnet"], {"rr_head": True, "rr_init": "logreg-frozen", "rr_bins": 16,
                                                    "augment": "device-shift"}, "plain"),
    # the same with N chosen by grouped cross-validation on the training split (`--rr-bins auto`, train/rr.py)
    "rr-bins-auto-frozen": (["se_resnet"], {"rr_head": True, "rr_init": "logreg-frozen", "rr_bins": "auto"}, "plain"),
}
#: rows without a network (no seeds, no training run)
CLASSICAL = ("rr_baseline", "rr-logreg")


def rr_logreg_metrics(source: Path, target: Path) -> tuple[dict, dict]:
    """(own test metrics, target metrics) of the logistic regression on RR-head inputs fitted on the train split."""
    from ecgtool.data.dataset import load_dataset
    from ecgtool.evaluate.metrics import compute_metrics
    from ecgtool.train.rr import dataset_rr_inputs, fit_rr_logreg

    src, tgt = load_dataset(source), load_dataset(target)
    rr = dataset_rr_inputs(src, 0, progress=False)
    train = src.indices("train")
    clf, mean, var = fit_rr_logreg(rr[train], src.labels[train])

    def predict(x: np.ndarray) -> np.ndarray:
        return clf.predict((np.asarray(x, dtype=np.float64) - mean) / np.sqrt(var + 1e-5))

    test = src.indices("test")
    own = compute_metrics(src.labels[test], predict(rr[test]), src.classes)
    every = tgt.indices("all")
    return own, compute_metrics(tgt.labels[every], predict(dataset_rr_inputs(tgt, 0, progress=False)[every]),
                                tgt.classes)


def thin_label(variant: str, thin_splits: str) -> str:
    """The run folder / row name of a deep variant: VARIANT, or VARIANT@thin-train when only MIT-BIH's train
    split was thinned (both directions carry the tag, so a pair of runs belongs to one setting)."""
    splits = tuple(x for x in thin_splits.split(",") if x)
    return variant if splits == R.BENCH_THIN_SPLITS else f"{variant}@thin-{'-'.join(splits)}"


def left_out_macro_f1(m: dict, train_counts: dict[str, int]) -> float:
    """`target` from metrics that kept every target window (evaluate_artifact(trained_only=False), rr-logreg's):
    the macro-F1 of the windows whose class the source trained on, as evaluate's default leaves the others out."""
    from ecgtool.evaluate.metrics import compute_metrics

    cm = np.asarray(m["confusion_matrix"])
    keep = [i for i, c in enumerate(m["classes"]) if train_counts.get(c, 0) > 0]
    y = np.concatenate([np.full(int(cm[i].sum()), i) for i in keep])
    p = np.concatenate([np.repeat(np.arange(len(cm)), cm[i]) for i in keep])
    return compute_metrics(y, p, m["classes"])["macro_f1"]


def leads_paths(out: Path, stride: int) -> tuple[dict, dict]:
    """Both datasets imported keeping every lead (--keep-leads), and the strided cross target of MIT-BIH."""
    from ecgtool.data.importers import import_dataset

    paths = {}
    for key, (fmt, src) in R.SOURCES.items():
        dest = out / "data" / f"{key}-leads"
        if not (dest / "meta.json").exists():
            import_dataset(fmt, src, dest, seed=0, keep_leads=True)
        paths[key] = dest
    cross = {"challenge": paths["challenge"],
             "mitdb": R.every_nth_window(paths["mitdb"], stride, out / "data" / f"mitdb-leads-all-every{stride}")}
    return paths, cross


def isa() -> str:
    from ecgtool.core.machine import cpu_flags

    return cpu_flags()


def summary_line(t0: float, threads: int) -> str:
    """The line above every summary table: CPU flags, load average now, seconds since t0, torch threads."""
    return (f"CPU flags: {isa()}; load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}; "
            f"total {time.perf_counter() - t0:.0f} s; torch threads {threads}")


def by_direction_variant(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Rows grouped by (direction, variant), in first-seen order (one entry per seed)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["direction"], r["variant"]), []).append(r)
    return groups


def summarise(jsonl: Path, variants: list[str]) -> str:
    """The RESULTS.md table from every row in bench_cross.jsonl (the last row of each direction, variant and
    seed): own test / target per direction (mean +- sd over seeds, ddof 1), mean target, INT8, seed-0 classes."""
    last: dict[tuple[str, str, int], dict] = {}
    for line in jsonl.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            key = (r["direction"], r["variant"], r["seed"])
            if r.get("target_int8") is None and key in last:  # keep an INT8 score measured before
                r["target_int8"] = last[key].get("target_int8")
            last[key] = r
    dirs = [f"{R.NAMES[s]} -> {R.NAMES[t]}" for s, t in (("mitdb", "challenge"), ("challenge", "mitdb"))]
    lines = ["| variant | MIT-BIH -> Challenge (own test / target) | Challenge -> MIT-BIH (own test / target) | "
             "mean target | target per class, seed 0 (M->C; C->M) |", "|---|---|---|---|---|"]
    for v in variants:
        cells, means, classes = [], [], []
        for d in dirs:
            rs = sorted((r for (dd, vv, _), r in last.items() if dd == d and vv == v), key=lambda r: r["seed"])
            if not rs:
                cells.append("-")
                continue
            t = np.array([r["target"] for r in rs])
            own = np.mean([r["own_test"] for r in rs])
            sd = f" +- {t.std(ddof=1):.3f}" if len(t) > 1 else ""
            q = [r["target_int8"] for r in rs if r.get("target_int8") is not None]
            q8 = f" (INT8 {np.mean(q):.3f}, {len(q)} seed(s))" if q else ""
            n = f" [{len(rs)} seeds]" if len(rs) > 1 else ""
            chosen = [str(r["rr_bins_auto"]["chosen"]) for r in rs if r.get("rr_bins_auto")]
            n += f" (auto N {','.join(chosen)})" if chosen else ""
            kept = [r["target_kept"] for r in rs if r.get("target_kept") is not None]
            kept_s = f" (windows kept {np.mean(kept):.3f})" if len(kept) == len(rs) else ""
            cells.append(f"{own:.3f} / **{t.mean():.3f}**{sd}{kept_s}{q8}{n}")
            means.append(t.mean())
            classes.append(" ".join(f"{c} {f:.2f}" for c, f in rs[0]["per_class"].items()))
        mean = f"{np.mean(means):.3f}" if len(means) == 2 else "-"
        lines.append(f"| {v} | {cells[0]} | {cells[1]} | {mean} | {'; '.join(classes)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--mitdb-stride", type=int, default=4)
    ap.add_argument("--mitdb-thin-splits", default="train,val",
                    help="the MIT-BIH splits --mitdb-stride thins: train,val (as the benchmark always ran) or train "
                         "(`data thin`'s default, the README's recipe; its runs are named VARIANT@thin-train)")
    ap.add_argument("--cross-stride", type=int, default=4)
    ap.add_argument("--variants", default="rr_baseline,plain,rr-head")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--int8", default="", help="variants whose models are also quantised (onnx-int8) and scored")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sources", default="mitdb,challenge", help="training sources (directions) to run, in order")
    ap.add_argument("--summarise", action="store_true", help="only print the table of every row in bench_cross.jsonl "
                    "for --variants (mean +- sd over the seeds found)")
    args = ap.parse_args()
    if args.summarise:
        print(summarise(args.out / "bench_cross.jsonl", [v for v in args.variants.split(",") if v]))
        return

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
    int8 = {v for v in args.int8.split(",") if v}
    rows = []
    for variant in [v for v in args.variants.split(",") if v]:
        archs, opts, kind = VARIANTS[variant]
        v_paths, v_cross = leads_paths(out, args.cross_stride) if kind == "leads" else (paths, cross)
        for source, target in [(s, t) for s, t in (("mitdb", "challenge"), ("challenge", "mitdb"))
                               if s in args.sources.split(",")]:
            for seed in (seeds if archs[0] not in CLASSICAL else [0]):
                data = v_paths[source]
                o = dict(opts)
                if archs[0] not in CLASSICAL:
                    o.update(width=args.width, epochs=args.epochs, patience=args.patience, batch_size=args.batch_size,
                             lr=1e-3)
                label = variant
                if archs[0] != "rr_baseline":  # rr-logreg fits on the deep rows' windows (what --rr-init fits on)
                    if source == "mitdb" and args.mitdb_stride > 1:
                        splits = tuple(x for x in args.mitdb_thin_splits.split(",") if x)
                        data = R.strided_dataset(data, args.mitdb_stride, out / "data" / f"{data.name}-every{args.mitdb_stride}"
                                                 f"{'' if splits == R.BENCH_THIN_SPLITS else '-' + '-'.join(splits)}", splits)
                    label = thin_label(variant, args.mitdb_thin_splits)
                run = out / source / f"{label}-s{seed}"
                t1 = time.perf_counter()
                counts = load_dataset(paths[source]).meta["counts"]["train"]
                if archs == ["rr-logreg"]:
                    own_m, m = rr_logreg_metrics(data, v_cross[target])
                    own = own_m["macro_f1"]
                else:
                    train_models(data, archs, [18], run, seed=seed, threads=args.threads,
                                 resume=(run / "run.json").exists(), **o)
                    model = run / (archs[0] if archs[0] == "rr_baseline" else f"{archs[0]}18")
                    own = json.loads((model / "metrics.json").read_text())["macro_f1"]
                    m = evaluate_artifact(model, v_cross[target], split="all", trained_only=False)
                f1 = left_out_macro_f1(m, counts)  # what evaluate's default (untrained left out) gives, from one pass
                kept, shared = R.shared_macro_f1(m, counts)
                row = {"direction": f"{R.NAMES[source]} -> {R.NAMES[target]}", "variant": label, "seed": seed,
                       "own_test": own, "target": f1, "target_kept": kept, "target_int8": None,
                       "shared": ",".join(shared),
                       "per_class": {c: round(m["per_class"][c]["f1"], 3) for c in shared},
                       "seconds": round(time.perf_counter() - t1)}
                fit_bins = {}
                if (model / "config.json").is_file():
                    fit_bins = (json.loads((model / "config.json").read_text()).get("extra") or {}).get("rr_bins_fit") or {}
                if "auto" in fit_bins:  # what --rr-bins auto chose, and the CV macro-F1 of each candidate
                    row["rr_bins_auto"] = {"chosen": fit_bins["auto"]["chosen"],
                                           "cv": {str(r["n_bins"]): r["mean"] for r in fit_bins["auto"]["scores"]}}
                if variant in int8:
                    from ecgtool.export import export

                    res = export(model, "onnx-int8", data=data, threads=args.threads)
                    row["target_int8"] = evaluate_artifact(res.path, v_cross[target], split="all")["macro_f1"]
                rows.append(row)
                print(json.dumps(row), flush=True)
                (out / "bench_cross.jsonl").open("a").write(json.dumps(row) + "\n")
    lines = [summary_line(t0, args.threads),
             "", "| direction | variant | seeds | own test | target (mean +- sd) | windows kept | target INT8 | "
             "shared classes |", "|---|---|---|---|---|---|---|---|"]
    for (direction, variant), rs in by_direction_variant(rows).items():
        t = np.array([r["target"] for r in rs])
        own = np.array([r["own_test"] for r in rs])
        q = [r["target_int8"] for r in rs if r["target_int8"] is not None]
        sd = f" +- {t.std(ddof=1):.3f}" if len(t) > 1 else ""
        q8 = f"{np.mean(q):.3f}" if q else "-"
        kept = np.mean([r["target_kept"] for r in rs])
        lines.append(f"| {direction} | {variant} | {len(rs)} | {own.mean():.3f} | {t.mean():.3f}{sd} | {kept:.3f} | "
                     f"{q8} | {rs[0]['shared']} |")
    (out / "bench_cross.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
