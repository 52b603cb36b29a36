"""INT8 of `--leads any` models on the cross-dataset targets (the row bench_cross.py could not measure).

For each RUN of bench_cross.py trained with `--leads any` (its dataset imported with --keep-leads), the model
folder is copied (the run folder stays as it was), quantised with `quantize` (export/int8.quantize_folder: calibration on its own
training split, on the deployment lead: data.dataset.deployment_signals; default minmax method and gate), and the FP32
folder and the INT8 file are scored on the other dataset's cross target (all windows, deployment lead),
macro-F1 over the classes both train splits share (real_data.shared_macro_f1).

    PYTHONPATH=toolkit OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/bench_leads_int8.py --cross /tmp/cross \\
        --out /tmp/leads-int8 [--variants rr-head+leads-any,leads-any]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_data as R  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cross", type=Path, required=True, help="bench_cross.py's --out")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", default="rr-head+leads-any")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cross-stride", type=int, default=4)
    args = ap.parse_args()

    import torch

    from ecgtool.core import ui
    from ecgtool.core.files import read_json
    from ecgtool.evaluate.artifact import evaluate_artifact
    from ecgtool.export.int8 import quantize_folder

    torch.set_num_threads(args.threads)
    ui.set_quiet(True)
    from ecgtool.core.machine import cpu_flags

    print(f"CPU flags: {cpu_flags()}; load average before: {os.getloadavg()}", flush=True)
    data = args.cross / "data"
    targets = {"mitdb": data / "challenge-leads", "challenge": data / f"mitdb-leads-all-every{args.cross_stride}"}
    other = {"mitdb": "challenge", "challenge": "mitdb"}
    counts = {k: read_json(data / k / "meta.json")["counts"]["train"] for k in ("mitdb", "challenge")}
    lines = ["| variant | direction | FP32 target | INT8 target | INT8 - FP32 | own test FP32 / INT8 | calibration | method, gate |",
             "|---|---|---|---|---|---|---|---|"]
    for variant in [v for v in args.variants.split(",") if v]:
        for source, target in targets.items():
            run = args.cross / source / f"{variant}-s{args.seed}"
            recipe = read_json(run / "run.json")["recipe"]
            src = run / "se_resnet18"
            folder = args.out / source / variant / "se_resnet18"
            if not (folder / "model.safetensors").exists():
                shutil.copytree(src, folder)
            t0 = time.perf_counter()
            rep = quantize_folder(folder, recipe["dataset"], threads=args.threads, calib_dir=args.out / "calibration")
            fp = R.shared_macro_f1(evaluate_artifact(folder, target, split="all"), counts[source])[0]
            i8 = R.shared_macro_f1(evaluate_artifact(rep["path"], target, split="all"), counts[source])[0]
            cmeta = read_json(Path(rep["calibration"]["path"]).with_suffix(".json"))
            row = {"variant": variant, "direction": f"{R.NAMES[source]} -> {R.NAMES[other[source]]}",
                   "fp32": round(fp, 4), "int8": round(i8, 4),
                   "calibration": {k: cmeta.get(k) for k in ("records", "channels", "lead")},
                   "method": rep["method"], "gate_passed": (rep.get("gate") or {}).get("passed"),
                   "own_test_fp32": round(rep["fp32_macro_f1"], 4), "own_test_int8": round(rep["int8_macro_f1"], 4),
                   "seconds": round(time.perf_counter() - t0), "load": os.getloadavg()}
            print(json.dumps(row), flush=True)
            lines.append(f"| {variant} | {row['direction']} | {fp:.3f} | {i8:.3f} | {100 * (i8 - fp):+.1f} pts | "
                         f"{row['own_test_fp32']:.3f} / {row['own_test_int8']:.3f} | "
                         f"{cmeta.get('records')} windows x {cmeta.get('channels')} lead ({cmeta.get('lead')}) | "
                         f"{row['method']}, gate {'passed' if row['gate_passed'] else row['gate_passed']} |")
    print("\n".join(["", *lines, "", f"CPU flags: {cpu_flags()}; load average after: {os.getloadavg()}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
