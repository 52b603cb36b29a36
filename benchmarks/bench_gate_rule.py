"""The INT8 gate's window rule on a real run: every INT8 artifact of every model folder judged against its
PyTorch FP32 parent on the validation and test splits, by points alone (`--gate-min-windows 0`, the rule
before) and with the window rule (default 5), with the windows behind each loss.

    PYTHONPATH=toolkit OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_gate_rule.py RUN [--data RUN/data]

Prints a markdown table (one row per artifact and split) for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args()
    from ecgtool.compress.gate import DEFAULT_MIN_WINDOWS, judge
    from ecgtool.data.dataset import load_dataset
    from ecgtool.export.formats import FORMATS
    from ecgtool.runtime import load

    ds = load_dataset(args.data or args.run / "data")
    files = {"ORT int8": FORMATS["onnx-int8"].artifact, "TRT int8 (simulated)": FORMATS["tensorrt-int8"].graph,
             "OV int8": FORMATS["openvino-int8"].artifact}
    print(f"python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}; run {args.run}", file=sys.stderr)
    print("| model | artifact | split | n | macro loss | worst class loss | windows net (lost/gained) | "
          f"points alone | window rule (>= {DEFAULT_MIN_WINDOWS}) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for folder in sorted(p for p in args.run.iterdir() if (p / "config.json").exists() and (p / "model.safetensors").exists()):
        parent = load(folder, threads=1)
        for split in ("val", "test"):
            idx = np.sort(ds.indices(split))
            x, y = np.asarray(ds.signals[idx], np.float32), ds.labels[idx]
            a = np.concatenate([parent.predict(x[i:i + 256]) for i in range(0, len(x), 256)]).argmax(1)
            for name, rel in files.items():
                path = folder / rel
                if not path.exists():
                    continue
                opts = {"optimize": False} if "TRT" in name else {}
                pred = load(path, threads=1, **opts)
                b = np.concatenate([pred.predict(x[i:i + 256]) for i in range(0, len(x), 256)]).argmax(1)
                strict, rule = judge(y, a, b, ds.classes, min_windows=0), judge(y, a, b, ds.classes)
                c, loss = rule.worst_class
                lost, gained = rule.class_windows[c]
                print(f"| {folder.name} | {name} | {split} | {len(y)} | {rule.macro_loss_points:.2f} | {c} {loss:.2f} | "
                      f"{c}: {lost - gained} ({lost}/{gained}); all: {rule.macro_windows[0] - rule.macro_windows[1]} | "
                      f"{'pass' if strict.passed else 'FAIL'} | {'pass' if rule.passed else 'FAIL'} |")


if __name__ == "__main__":
    main()
