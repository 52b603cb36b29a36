"""Cross-dataset screen of device adaptation: MIT-BIH -> Challenge-2021 sample and back, one seed.

Rows per direction: rr_baseline, the plain recipe (se_resnet18), --augment device; each deep model
also after `ecgtool adapt` (AdaBN on ALL target windows, no labels used: the target treated as an
unlabelled device). Scored on all target windows, macro-F1 over the classes both datasets' train
splits share (benchmarks/real_data.py's rule). Uses real_data.py's data preparation and strides.

    PYTHONPATH=toolkit .venv/bin/python benchmarks/adapt_cross.py --out /tmp/adapt-cross --epochs 3 --width 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_data as R  # noqa: E402

VARIANTS = {"rr_baseline": (["rr_baseline"], {}), "plain": (["se_resnet"], {}),
            "device-aug": (["se_resnet"], {"augment": "device"}),
            "robust-norm": (["se_resnet"], {})}  # data imported with --normalisation robust


def robust_paths(out: Path, stride: int) -> tuple[dict, dict]:
    """Both datasets imported with --normalisation robust (and the strided cross target of MIT-BIH)."""
    from ecgtool.data.importers import import_dataset

    paths = {}
    for key, (fmt, src) in R.SOURCES.items():
        dest = out / "data" / f"{key}-robust"
        if not (dest / "meta.json").exists():
            import_dataset(fmt, src, dest, seed=0, normalisation="robust")
        paths[key] = dest
    cross = {"challenge": paths["challenge"],
             "mitdb": R.every_nth_window(paths["mitdb"], stride, out / "data" / f"mitdb-robust-all-every{stride}")}
    return paths, cross


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--mitdb-stride", type=int, default=4)
    ap.add_argument("--cross-stride", type=int, default=4)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from ecgtool.core import ui
    from ecgtool.data.dataset import load_dataset
    from ecgtool.evaluate.artifact import evaluate_artifact
    from ecgtool.train.adapt import adapt_model
    from ecgtool.train.run import train_models

    torch.set_num_threads(args.threads)
    ui.set_quiet(True)
    out, t0 = args.out, time.perf_counter()
    paths, cross = R.cross_targets(out, args.cross_stride)
    rows = []
    for variant in [v for v in args.variants.split(",") if v]:
        archs, opts = VARIANTS[variant]
        v_paths, v_cross = robust_paths(out, args.cross_stride) if variant == "robust-norm" else (paths, cross)
        for source, target in (("mitdb", "challenge"), ("challenge", "mitdb")):
            data = v_paths[source]
            if archs != ["rr_baseline"]:
                opts = {**opts, "width": args.width, "epochs": args.epochs, "patience": args.patience,
                        "batch_size": args.batch_size, "lr": 1e-3}
                if source == "mitdb" and args.mitdb_stride > 1:
                    data = R.strided_dataset(data, args.mitdb_stride, out / "data" / f"{data.name}-every{args.mitdb_stride}")
            run = out / source / variant
            t1 = time.perf_counter()
            train_models(data, archs, [18], run, seed=0, threads=args.threads, resume=(run / "run.json").exists(), **opts)
            model = run / (archs[0] if archs[0] == "rr_baseline" else f"{archs[0]}18")
            counts = load_dataset(paths[source]).meta["counts"]["train"]
            own = json.loads((model / "metrics.json").read_text())["macro_f1"]
            m = evaluate_artifact(model, v_cross[target], split="all")
            f1, shared = R.shared_macro_f1(m, counts)
            row = {"direction": f"{R.NAMES[source]} -> {R.NAMES[target]}", "variant": variant, "own_test": own,
                   "target": f1, "target_adabn": None, "shared": ",".join(shared),
                   "seconds": round(time.perf_counter() - t1)}
            if archs != ["rr_baseline"]:
                adapted = out / source / f"{variant}-adabn-{target}"
                if not (adapted / "config.json").exists():
                    adapt_model(model, v_cross[target], adapted, split="all")
                row["target_adabn"] = R.shared_macro_f1(evaluate_artifact(adapted, v_cross[target], split="all"), counts)[0]
            rows.append(row)
            print(json.dumps(row), flush=True)
    flags = subprocess.run("grep -m1 flags /proc/cpuinfo", shell=True, capture_output=True, text=True).stdout
    isa = " ".join(f for f in ("avx2", "avx512_vnni", "amx_tile") if f in flags.split())
    lines = [f"CPU flags: {isa}; load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}; "
             f"total {time.perf_counter() - t0:.0f} s; torch threads {args.threads}",
             "", "| direction | variant | own test | target | target after AdaBN | shared classes |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['direction']} | {r['variant']} | {R.fmt(r['own_test'])} | {R.fmt(r['target'])} | "
                     f"{R.fmt(r['target_adabn'])} | {r['shared']} |")
    (out / "adapt_cross.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
