"""Real-data recipe: MIT-BIH and the Challenge-2021 sample, patient split, baseline vs deep, across datasets.

Steps (each through the library functions behind the CLI; every run folder is resumable):
  1. `ecgtool data import mitdb|challenge` of ../shared/data into OUT/data/ (patient split where ids exist);
     a synthetic set (`ecgtool data synth`) for pretraining (--init) and for mixed real + synthetic training.
  2. For each source dataset and each recipe variant, `ecgtool train` into OUT/<source>/<variant>/:
     rr_baseline, se_resnet18 + resnet18 (the paper's recipe), and se_resnet18 with class weights,
     a balanced sampler, device-shift augmentation, synthetic pretraining, mixed real + synthetic,
     and all of them together ("robust").
  3. `ecgtool evaluate` of every model on its own test split (held-out patients) and on ALL records of the
     other dataset (never seen in training); JSON + confusion PNG beside each model.
  4. Markdown tables (per-class F1, macro-F1 over the target's classes and over the classes both sides
     share, confusion matrices) into OUT/real_data.md; the recommended recipe is the one with the best
     mean cross-dataset macro-F1 (shared classes), not the one that wins its own test split.

    .venv/bin/python benchmarks/real_data.py                     # all variants (see --help for a subset)
    .venv/bin/python benchmarks/real_data.py --variants rr_baseline,plain --epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SOURCES = {"mitdb": ("mitdb", SHARED / "mitdb"), "challenge": ("challenge", SHARED / "cinc2021-sample")}
NAMES = {"mitdb": "MIT-BIH", "challenge": "Challenge-2021 sample"}

#: variant -> (architectures, train_models options, uses synthetic pretraining, trains on real + synthetic)
VARIANTS: dict[str, tuple[list[str], dict, bool, bool]] = {
    "rr_baseline": (["rr_baseline"], {}, False, False),
    "plain": (["se_resnet", "resnet"], {}, False, False),
    "class-weights": (["se_resnet"], {"class_weights": "auto"}, False, False),
    "balanced-sampler": (["se_resnet"], {"sampler": "balanced"}, False, False),
    "device-aug": (["se_resnet"], {"augment": "device"}, False, False),
    "synth-init": (["se_resnet"], {}, True, False),
    "mixed-synth": (["se_resnet"], {}, False, True),
    "robust": (["se_resnet"], {"class_weights": "auto", "augment": "device"}, True, False),
}
DESCRIPTIONS = {
    "rr_baseline": "RR-interval + beat-shape features, gradient boosting (the floor)",
    "plain": "the paper's recipe (cross-entropy, early stopping)",
    "class-weights": "--class-weights auto (inverse frequency)",
    "balanced-sampler": "--sampler balanced",
    "device-aug": "--augment device (polarity, amplitude, baseline, noise levels, time stretch)",
    "synth-init": "--init from se_resnet18 pretrained on synthetic data",
    "mixed-synth": "real train split + synthetic records (all seven classes) in one training set",
    "robust": "class weights + device augmentation + synthetic pretraining",
}


def machine() -> str:
    name = platform.processor() or "CPU"
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{name}, {os.cpu_count()} cores, load average {load} (shared machine)"


def prepare_data(out: Path, synth_per_class: int, seed: int) -> dict[str, Path]:
    """Import both collections and make the synthetic set (skipped when already there)."""
    from ecgtool.data.dataset import load_dataset
    from ecgtool.data.importers import import_dataset
    from ecgtool.data.synth import write_synthetic_dataset

    paths = {}
    for key, (fmt, src) in SOURCES.items():
        dest = out / "data" / key
        if not (dest / "meta.json").exists():
            if not src.is_dir():
                sys.exit(f"real data not present: {src} (see ../shared/data/README.md)")
            t0 = time.perf_counter()
            import_dataset(fmt, src, dest, seed=seed)
            print(f"imported {key}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        paths[key] = dest
    dest = out / "data" / "synth"
    if not (dest / "meta.json").exists():
        write_synthetic_dataset(dest, per_class=synth_per_class, seed=seed)
    paths["synth"] = dest
    for key in paths:
        load_dataset(paths[key])  # fails early on a broken folder
    return paths


def mixed_dataset(real: Path, synth: Path, dest: Path) -> Path:
    """real + synthetic in one prepared dataset (`ecgtool data merge`): synthetic records join train only."""
    from ecgtool.data.merge import merge_datasets

    if (dest / "meta.json").exists():
        return dest
    return merge_datasets(real, [synth], dest)


BENCH_THIN_SPLITS = ("train", "val")  # what the cross-dataset benchmark thinned from its start


def strided_dataset(real: Path, stride: int, dest: Path, splits: tuple[str, ...] = BENCH_THIN_SPLITS) -> Path:
    """The same windows, but `splits` (train and val unless told) keep every `stride`-th window of each record
    (`ecgtool data thin --every stride --split ...`); the other splits are left whole."""
    from ecgtool.data.thin import thin_dataset

    if stride <= 1:
        return real
    if (dest / "meta.json").exists():
        return dest
    return thin_dataset(real, stride, dest, splits=tuple(splits))[0]


def every_nth_window(real: Path, stride: int, dest: Path) -> Path:
    """A dataset of every `stride`-th window of each record (all splits), all of it in `test`.

    The cross-dataset target for MIT-BIH: every record and class (SB and AFL included, which the
    patient-split test lacks), at a 1/stride of the inference cost of all 7,062 windows.
    """
    from ecgtool.data.dataset import load_dataset, write_dataset
    from ecgtool.data.thin import positions_in_record

    if (dest / "meta.json").exists():
        return dest
    r = load_dataset(real)
    every = np.arange(len(r))
    keep = every[positions_in_record(every, r.records) % stride == 0]
    meta = {k: v for k, v in r.meta.items() if k not in ("counts", "skipped", "classes", "n_records", "split")}
    meta.update(source=f"{r.meta.get('source')} (every {stride}th window of each record)", subset_of=str(real))
    empty = np.zeros(0, dtype=np.int64)
    write_dataset(dest, np.asarray(r.signals[keep]), r.labels[keep], r.classes, [r.records[i] for i in keep],
                  {"train": empty, "val": empty, "test": np.arange(len(keep))}, meta)
    return dest


def cross_targets(out: Path, stride: int, tag: str = "all") -> tuple[dict[str, Path], dict[str, Path]]:
    """(the prepared datasets, the cross-dataset targets): the Challenge sample whole, MIT-BIH every
    `stride`-th window (every_nth_window), as adapt_cross.py and bench_cross.py score them."""
    paths = prepare_data(out, 10, 0)
    return paths, {"challenge": paths["challenge"],
                   "mitdb": every_nth_window(paths["mitdb"], stride, out / "data" / f"mitdb-{tag}-every{stride}")}


def train_variant(variant: str, data: Path, run: Path, args, pretrain: Path | None) -> list[Path]:
    """Train one variant into `run` (resuming a run folder that is already there); its model folders."""
    from ecgtool.train.run import train_models

    archs, options, use_init, _ = VARIANTS[variant]
    opts = dict(options)
    if use_init:
        opts["init"] = pretrain
    if archs != ["rr_baseline"]:
        opts.update(width=args.width, epochs=args.epochs, lr=args.lr, patience=args.patience, batch_size=args.batch_size)
    train_models(data, archs, [18], run, seed=args.seed, threads=args.threads, resume=(run / "run.json").exists(), **opts)
    return [run / (a if a == "rr_baseline" else f"{a}18") for a in archs]


def cross_metrics(model: Path, target: Path) -> dict:
    """Evaluate on the other dataset's cross target, all its records (cached as JSON beside the model)."""
    from ecgtool.evaluate.artifact import evaluate_artifact, write_evaluation

    out = model / f"cross-{target.name}.json"
    if out.exists():
        return json.loads(out.read_text())
    metrics = evaluate_artifact(model, target, split="all")
    write_evaluation(metrics, out)
    return metrics


def shared_macro_f1(metrics: dict, train_counts: dict[str, int]) -> tuple[float, list[str]]:
    """Mean F1 over classes the real source's train split has AND the evaluated data contains."""
    shared = [c for c, row in metrics["per_class"].items() if row["support"] > 0 and train_counts.get(c, 0) > 0]
    return (float(np.mean([metrics["per_class"][c]["f1"] for c in shared])) if shared else float("nan")), shared


def fmt(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"


def confusion_md(metrics: dict) -> str:
    """Confusion matrix as markdown, rows true / columns predicted, only classes that occur."""
    cm = np.asarray(metrics["confusion_matrix"])
    classes = metrics["classes"]
    keep = [i for i in range(len(classes)) if cm[i].sum() or cm[:, i].sum()]
    lines = ["| true \\ predicted | " + " | ".join(classes[i] for i in keep) + " |",
             "|---" * (len(keep) + 1) + "|"]
    for i in keep:
        lines.append(f"| {classes[i]} | " + " | ".join(str(cm[i, j]) for j in keep) + " |")
    return "\n".join(lines) + "\n"


def per_class_table(rows: list[dict], classes: list[str], extra: list[str]) -> str:
    cols = ["source", "variant", "model", *extra, *classes]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(r.get(c, "-") if isinstance(r.get(c, "-"), str) else fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "real-data")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of: " + ", ".join(VARIANTS))
    ap.add_argument("--sources", default="mitdb,challenge", help="train on these (comma-separated)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--pretrain-epochs", type=int, default=8)
    ap.add_argument("--synth-per-class", type=int, default=150)
    ap.add_argument("--mitdb-stride", type=int, default=4,
                    help="deep models train on every Nth MIT-BIH window per record (1: all; test split always whole)")
    ap.add_argument("--cross-stride", type=int, default=4,
                    help="models trained on the Challenge sample are tested on every Nth window of each MIT-BIH record")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s): {', '.join(unknown)}")

    from ecgtool.core import ui
    from ecgtool.data.dataset import load_dataset
    from ecgtool.train.run import train_models

    ui.set_quiet(not sys.stderr.isatty())
    t_start = time.perf_counter()
    out = args.out
    paths = prepare_data(out, args.synth_per_class, args.seed)
    data = {k: load_dataset(p) for k, p in paths.items()}
    pretrain = None
    if any(VARIANTS[v][2] for v in variants):
        run = out / "pretrain-synth"
        train_models(paths["synth"], ["se_resnet"], [18], run, width=args.width, epochs=args.pretrain_epochs,
                     lr=args.lr, patience=args.patience, seed=args.seed, threads=args.threads,
                     resume=(run / "run.json").exists())
        pretrain = run / "se_resnet18"

    cross_target = {"challenge": paths["challenge"],
                    "mitdb": every_nth_window(paths["mitdb"], args.cross_stride, out / "data" / f"mitdb-all-every{args.cross_stride}")}
    data["cross-mitdb"] = load_dataset(cross_target["mitdb"])
    timings, rows_in, rows_cross, confusions = {}, [], [], {}
    # Variant-major order: every variant finishes on both sources before the next starts (partial results
    # stay comparable), and the baseline's beat detection on MIT-BIH is memoised for the cross evaluation.
    for variant in variants:
        for source in [s for s in args.sources.split(",") if s]:
            target = "challenge" if source == "mitdb" else "mitdb"
            t0 = time.perf_counter()
            train_data = paths[source]
            if variant != "rr_baseline" and source == "mitdb" and args.mitdb_stride > 1:
                train_data = strided_dataset(train_data, args.mitdb_stride, out / "data" / f"mitdb-every{args.mitdb_stride}")
            if VARIANTS[variant][3]:  # synthetic records join the train split; val and test stay real
                train_data = mixed_dataset(train_data, paths["synth"], out / "data" / f"{train_data.name}+synth")
            # the classes compared across variants: those the REAL source trains on (not synthetic extras)
            counts = data[source].meta["counts"]["train"]
            for model in train_variant(variant, train_data, out / source / variant, args, pretrain):
                own = json.loads((model / "metrics.json").read_text())
                cross = cross_metrics(model, cross_target[target])
                base = {"source": NAMES[source], "variant": variant, "model": model.name}
                rows_in.append({**base, "macro-F1": own["macro_f1"], "n": str(own["n"]),
                                **{c: v["f1"] for c, v in own["per_class"].items() if v["support"]}})
                cross_shared, shared = shared_macro_f1(cross, counts)
                rows_cross.append({**base, "target": NAMES[target], "macro-F1": cross["macro_f1"],
                                   "macro-F1 shared": cross_shared, "shared classes": ",".join(shared),
                                   "own test macro-F1": own["macro_f1"],
                                   **{c: v["f1"] for c, v in cross["per_class"].items() if v["support"]}})
                confusions[(source, variant, model.name)] = (own, cross)
            timings[f"{source}/{variant}"] = time.perf_counter() - t0
            write_report(out, args, data, rows_in, rows_cross, confusions, timings, t_start)
    print((out / "real_data.md").read_text())


def recommend(rows_cross: list[dict]) -> list[dict]:
    """Mean cross-dataset shared-class macro-F1 over both directions, per (variant, model)."""
    by: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows_cross:
        by.setdefault((r["variant"], r["model"]), {})[r["source"]] = r["macro-F1 shared"]
    ranked = []
    for (variant, model), d in by.items():
        row = {"variant": variant, "model": model, **{f"{s} -> other": v for s, v in d.items()}}
        row["mean across"] = float(np.mean(list(d.values()))) if len(d) == 2 else float("nan")
        ranked.append(row)
    return sorted(ranked, key=lambda r: -np.nan_to_num(r["mean across"], nan=-1))


def write_report(out: Path, args, data, rows_in, rows_cross, confusions, timings, t_start) -> None:
    from ecgtool.core.files import write_text

    classes = data["mitdb"].classes
    cmd = ".venv/bin/python benchmarks/real_data.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    parts = [f"Command: `{cmd.strip()}`  \nMachine: {machine()}  \n"
             f"Deep models: width {args.width}, depth 18, at most {args.epochs} epochs (patience {args.patience}), "
             f"Adam lr {args.lr}, batch {args.batch_size}, seed {args.seed}, {args.threads} torch threads; on MIT-BIH they "
             + ("train and validate on all windows, " if args.mitdb_stride <= 1 else
                f"train and validate on every {args.mitdb_stride}th window of each record (the baseline on all), ") +
             f"and every model is tested on the whole test split. "
             f"Wall time so far: {(time.perf_counter() - t_start) / 60:.1f} min.\n"]
    parts.append("\n**Datasets** (windows per class; MIT-BIH: patient split; Challenge sample: one window per record, "
                 "split by record):\n\n")
    cols = ["dataset", "split", *classes]
    ds_rows = []
    for key in ("mitdb", "challenge"):
        for split in ("train", "val", "test", "all"):
            ds_rows.append({"dataset": NAMES[key], "split": split,
                            **{c: str(data[key].meta["counts"][split][c]) for c in classes}})
    ds_rows.append({"dataset": "MIT-BIH cross target", "split": f"every {args.cross_stride}th window",
                    **{c: str(data["cross-mitdb"].meta["counts"]["all"][c]) for c in classes}})
    parts.append("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n")
    parts.extend("| " + " | ".join(r[c] for c in cols) + " |\n" for r in ds_rows)
    parts.append("\n**Own test split** (held-out patients/records; F1 per class present in the test split):\n\n")
    parts.append(per_class_table(rows_in, classes, ["n", "macro-F1"]))
    parts.append("\n**Across datasets** (trained on the source, evaluated on the other dataset, never seen in training: "
                 "all Challenge records, or every {}th window of every MIT-BIH record; ".format(args.cross_stride) +
                 "`macro-F1` averages the target's classes, `macro-F1 shared` only those the real source had in training, "
                 "the same set for every variant of a direction):\n\n")
    parts.append(per_class_table(rows_cross, classes, ["target", "own test macro-F1", "macro-F1", "macro-F1 shared"]))
    ranked = recommend(rows_cross)
    if ranked:
        cols = list(dict.fromkeys(k for r in ranked for k in r))
        parts.append("\n**Ranking by mean cross-dataset macro-F1 (shared classes)**:\n\n")
        parts.append("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n")
        parts.extend("| " + " | ".join(r[c] if isinstance(r.get(c), str) else fmt(r.get(c)) for c in cols) + " |\n"
                     for r in ranked)
        best_deep = next((r for r in ranked if r["variant"] != "rr_baseline" and not np.isnan(r["mean across"])), None)
        for r in [x for x in ranked if x["variant"] == "rr_baseline"] + ([best_deep] if best_deep else []):
            for (src, variant, model), (own, cross) in confusions.items():
                if variant == r["variant"] and model == r["model"]:
                    parts.append(f"\nConfusion, {model} ({variant}) trained on {NAMES[src]}, own test split:\n\n"
                                 + confusion_md(own))
                    parts.append(f"\nConfusion, {model} ({variant}) trained on {NAMES[src]}, on the other dataset:\n\n"
                                 + confusion_md(cross))
    parts.append("\nVariants: " + "; ".join(f"`{v}`: {DESCRIPTIONS[v]}" for v in VARIANTS) + ".\n")
    parts.append("\nTime per source/variant (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()) + "\n")
    write_text(out / "real_data.md", "".join(parts))
    write_text(out / "real_data.json", json.dumps({"in_domain": rows_in, "cross": rows_cross, "ranking": ranked,
                                                   "timings_s": timings}, indent=2, default=float))


if __name__ == "__main__":
    main()
