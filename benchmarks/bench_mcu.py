"""Microcontroller tier: se_resnet18 / resnet18 at several widths (and, with --prune, their pruned children),
exported to full-integer INT8 .tflite (`ecgtool export --format litert-int8`) and run in the TensorFlow Lite
Micro interpreter.

Per model: flash (model bytes + the documented 16 KB TFLM core runtime; kernels unmeasured), the smallest
tensor arena (measured in TFLM, x86_64), macro-F1 on the test split from PyTorch FP32 and from TFLM INT8,
argmax agreement, and batch-1 latency of TFLM (reference kernels, x86, indicative only) against PyTorch eager
FP32 timed round-robin in this same process. A pruned child (`ecgtool prune --ratio R`, fine-tuned
--prune-epochs) also gets its delta against the unpruned FP32 parent. Rows are appended to OUT/rows.jsonl as
they are measured (a re-run skips trained, pruned and exported models). Needs the [mcu] extra:

    OMP_NUM_THREADS=1 .venv-mcu/bin/python benchmarks/bench_mcu.py --out /tmp/bench_mcu --widths 8 16
    OMP_NUM_THREADS=1 .venv-mcu/bin/python benchmarks/bench_mcu.py --out /tmp/bench_mcu --widths 8 16 --prune 0.5
    ecgtool data import mitdb ../shared/data/mitdb --out /tmp/mitdb      # patient split
    OMP_NUM_THREADS=1 .venv-mcu/bin/python benchmarks/bench_mcu.py --out /tmp/bench_mcu_mit --data /tmp/mitdb \
        --widths 8 16 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score

from ecgtool import runtime
from ecgtool.bench.runner import clip_outliers, time_round_robin
from ecgtool.core.files import read_json
from ecgtool.core.names import litert_sidecar
from ecgtool.core.ui import markdown_table
from ecgtool.data.dataset import load_dataset
from ecgtool.export import export
from ecgtool.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, help="Prepared dataset (default: synthetic, made under --out).")
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--archs", nargs="+", default=["se_resnet", "resnet"])
    ap.add_argument("--widths", nargs="+", type=int, default=[8, 16])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--latency-runs", type=int, default=30)
    ap.add_argument("--prune", type=float, help="Also prune each model at this ratio (fine-tuned) and measure the child.")
    ap.add_argument("--prune-epochs", type=int, default=3, help="Fine-tuning epochs of a pruned child.")
    ap.add_argument("--only-pruned", action="store_true", help="Measure the pruned children only (parents done).")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"load average at start {os.getloadavg()[0]:.2f}", flush=True)
    from click.testing import CliRunner

    from ecgtool.cli.main import main as cli
    from ecgtool.train.run import train_models

    data = args.data or args.out / "data"
    if not (Path(data) / "meta.json").exists():
        r = CliRunner().invoke(cli, ["data", "synth", "--out", str(data), "--per-class", str(args.per_class), "--quiet"])
        if r.exit_code:
            raise SystemExit(r.output)
    ds = load_dataset(data)
    xs, ys = ds.split("test")
    x, y = np.asarray(xs, np.float32), np.asarray(ys)
    labels = sorted(set(y.tolist()))  # macro-F1 over the classes present in the test split, as evaluate.metrics does
    rows = []
    f1_of: dict[str, float] = {}

    def measure(folder: Path, name: str, parent: str | None = None) -> dict:
        tfl = folder / "model.int8.tflite"
        if not tfl.exists():
            export(folder, "litert-int8", data=data, calib_dir=args.out / "calib", threads=1)
        side = read_json(litert_sidecar(tfl))
        ref, art = runtime.load(folder, threads=1), runtime.load(tfl)
        p_ref = np.concatenate([ref.predict(x[i:i + 64]) for i in range(0, len(x), 64)])
        p_art = art.predict(x)
        f_ref = f1_score(y, p_ref.argmax(1), average="macro", labels=labels, zero_division=0)
        f_art = f1_score(y, p_art.argmax(1), average="macro", labels=labels, zero_division=0)
        f1_of[name] = f_ref
        x1 = x[:1]
        times, _ = time_round_robin({"pt": lambda: ref.predict(x1), "tflm": lambda: art.predict(x1)}, warmup=3,
                                    min_runs=args.latency_runs, min_time_s=0.5)
        pt_ms, tflm_ms = (1e3 * float(np.median(clip_outliers(times[k]))) for k in ("pt", "tflm"))
        row = {
            "model": name, "params": sum(p.numel() for p in load_model(folder).parameters()),
            "tflite_kb": round(side["model_bytes"] / 1024, 1), "flash_kb": round(side["flash_bytes"] / 1024, 1),
            "arena_kb": round(side["arena_bytes"] / 1024, 1), "ops": sum(side["ops"].values()),
            "f1_fp32_pytorch": round(100 * f_ref, 2), "f1_int8_tflm": round(100 * f_art, 2),
            "delta_points": round(100 * (f_art - f_ref), 2),
            "delta_vs_unpruned_fp32": round(100 * (f_art - f1_of[parent]), 2) if parent in f1_of else None,
            "agreement": round(100 * float(np.mean(p_ref.argmax(1) == p_art.argmax(1))), 2),
            "tflm_ms": round(tflm_ms, 2), "pytorch_ms": round(pt_ms, 2), "tflm_over_pytorch": round(tflm_ms / pt_ms, 2),
            "fits_256k_128k": side["flash_bytes"] <= 256 * 1024 and side["arena_bytes"] <= 128 * 1024,
            "load": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(row), flush=True)
        with open(args.out / "rows.jsonl", "a") as fh:
            fh.write(json.dumps({**row, "data": str(data)}) + "\n")
        return row

    for w in args.widths:
        run = args.out / f"run-w{w}"
        todo = [a for a in args.archs if not (run / f"{a}18" / "model.safetensors").exists()]
        if todo:
            train_models(data, todo, [18], run, width=w, epochs=args.epochs, device="cpu", threads=1)
        for arch in args.archs:
            folder, name = run / f"{arch}18", f"{arch}18 w{w}"
            if args.only_pruned:
                ref = runtime.load(folder, threads=1)
                p_ref = np.concatenate([ref.predict(x[i:i + 64]) for i in range(0, len(x), 64)])
                f1_of[name] = f1_score(y, p_ref.argmax(1), average="macro", labels=labels, zero_division=0)
            else:
                rows.append(measure(folder, name))
            if args.prune:
                from ecgtool.compress.prune import default_out, prune_artifact

                child = default_out(folder, args.prune)
                if not (child / "model.safetensors").exists():
                    prune_artifact(folder, data, args.prune, fine_tune_epochs=args.prune_epochs, device="cpu",
                                   overwrite=True)
                rows.append(measure(child, f"{name} pruned {args.prune:g}", parent=name))
    flags = subprocess.run("grep -m1 flags /proc/cpuinfo", shell=True, capture_output=True, text=True).stdout.split()
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile") if f in flags]
    print(f"\ntest split: {len(y)} records of {data}; CPU flags: {', '.join(isa) or 'none of avx2/avx512/vnni/amx'}; "
          f"load average {os.getloadavg()[0]:.2f} (end); torch threads 1; {sys.version.split()[0]}\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
