"""What pruning costs in macro-F1: se_resnet18 (width 64) trained on synthetic data, pruned, fine-tuned.

Trains the unpruned model briefly on a synthetic prepared dataset, prunes half the channels of every
layer (`ecgtool.compress.prune.prune_artifact`, Torch-Pruning, magnitude importance), fine-tunes on the
training split and prints parameters, MACs, weight size and test macro-F1 before and after as a
markdown table with the command and the machine. About 25 minutes on 2 shared CPU cores (train 15,
prune + fine-tune 10); a second run with the same --out reuses the trained model.

    .venv/bin/python benchmarks/bench_prune.py --out /tmp/bench_prune
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from ecgtool.compress.prune import prune_artifact, summary_rows
from ecgtool.train.run import train_models
from ecgtool.core.ui import markdown_table


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def synth_dataset(out: Path, per_class: int, seed: int) -> Path:
    """The synthetic prepared dataset (made once, reused by later runs)."""
    from click.testing import CliRunner

    from ecgtool.cli.main import main

    if (out / "meta.json").exists():
        return out
    res = CliRunner().invoke(main, ["data", "synth", "--out", str(out), "--per-class", str(per_class),
                                    "--seed", str(seed), "--quiet"])
    if res.exit_code != 0:
        raise SystemExit(f"data synth failed: {res.output}")
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_prune"), help="Work folder (data and run).")
    ap.add_argument("--data", type=Path, help="Use this prepared dataset instead of generating one.")
    ap.add_argument("--per-class", type=int, default=100, help="Synthetic records per class.")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=8, help="Training epochs of the unpruned model.")
    ap.add_argument("--fine-tune-epochs", type=int, default=8)
    ap.add_argument("--fine-tune-lr", type=float, default=1e-3, help="Adam learning rate of fine-tuning.")
    ap.add_argument("--ratio", type=float, default=0.5, help="Fraction of channels removed per layer.")
    ap.add_argument("--importance", default="magnitude")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = args.data or synth_dataset(args.out / "data", args.per_class, args.seed)
    run = args.out / "run"
    model_dir = run / "se_resnet18"
    t0 = time.perf_counter()
    trained = "reused from an earlier run"
    if not (model_dir / "model.safetensors").exists():
        train_models(data, ["se_resnet"], [18], run, width=args.width, epochs=args.epochs, seed=args.seed,
                     device="cpu", threads=args.threads)
        trained = f"{time.perf_counter() - t0:.0f} s"
    t0 = time.perf_counter()
    result = prune_artifact(model_dir, data, args.ratio, fine_tune_epochs=args.fine_tune_epochs, lr=args.fine_tune_lr,
                            importance=args.importance, seed=args.seed, device="cpu", overwrite=True)
    t_prune = time.perf_counter() - t0

    command = "python benchmarks/bench_prune.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    table = markdown_table(summary_rows(result), ["model", "params", "MACs (M)", "size (MB)", "macro-F1 (%)"])
    print(f"`{command}`  \nmachine: {cpu_name()}, {args.threads} torch threads, torch {torch.__version__}  \n"
          f"data: {data} ({json.loads((Path(data) / 'meta.json').read_text()).get('source', '?')}), "
          f"se_resnet18 width {args.width}, {args.epochs} training epochs ({trained}), "
          f"ratio {args.ratio} {args.importance}, {result['fine_tune']['epochs_run']} fine-tuning epochs at lr {args.fine_tune_lr} "
          f"(best {result['fine_tune']['best_epoch']}; prune + fine-tune + both evaluations {t_prune:.0f} s)\n")
    print(table)
    return result


if __name__ == "__main__":
    main()
