"""OpenVINO INT8: NNCF (`nncf.quantize`) against OpenVINO reading ONNX Runtime's QDQ graphs (u8 form, s8 symmetric form).

Needs the FP32 ONNX and the QDQ files that benchmarks/bench_int8.py wrote (default.onnx = u8 form, tensorrt.onnx =
s8 symmetric). Macro-F1, worst per-class delta and argmax agreement against PyTorch FP32 on the test split; batch-1
latency round-robin in this process (1 thread), speed-up against PyTorch eager FP32.

    PYTHONPATH=toolkit python benchmarks/bench_int8_openvino.py MODEL_FOLDER DATA --q /tmp/bi8
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from ecgtool.bench.runner import clip_outliers, time_round_robin
from ecgtool.compress.calibration import calibration_set
from ecgtool.core.ui import markdown_table
from ecgtool.data.dataset import load_dataset
from ecgtool.export.openvino import nncf2openvino, onnx2openvino
from ecgtool.runtime import load

from bench_int8 import cpu_line, scores  # noqa: E402  (same folder)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--q", type=Path, required=True, help="bench_int8.py's --out folder")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(cpu_line())
    ds = load_dataset(args.data)
    ov_dir = args.q / "ov"
    fp32 = args.model / "model.onnx"
    cs = calibration_set(args.data, 256, 0, args.q / "calib")
    irs = {"OpenVINO FP32": onnx2openvino(fp32, ov_dir / "fp32" / "model.xml", "fp32"),
           "OpenVINO INT8 nncf.quantize": nncf2openvino(fp32, ov_dir / "nncf" / "model.xml", cs.signals),
           "OpenVINO INT8 from ORT u8 QDQ": onnx2openvino(args.q / "default.onnx", ov_dir / "u8" / "model.xml", "int8"),
           "OpenVINO INT8 from s8 symmetric QDQ": onnx2openvino(args.q / "tensorrt.onnx", ov_dir / "s8" / "model.xml", "int8")}
    idx = np.sort(ds.indices("test"))
    x, y = np.ascontiguousarray(ds.signals[idx], dtype=np.float32), ds.labels[idx]
    preds = {"PyTorch FP32": load(args.model, threads=1)} | {k: load(p, threads=1, verify=False) for k, p in irs.items()}
    logits = {k: np.concatenate([p.predict(x[i:i + 64]) for i in range(0, len(x), 64)]) for k, p in preds.items()}
    ref = logits["PyTorch FP32"].argmax(1)
    times, _ = time_round_robin({k: (lambda p=p: p.predict(x[:1])) for k, p in preds.items()}, warmup=10, min_runs=50,
                                min_time_s=1.0)
    med = {k: float(np.median(clip_outliers(t))) * 1e3 for k, t in times.items()}
    rows = [{"artifact": k, **scores(y, ref, logits[k].argmax(1), ds.classes), "p50_ms": round(med[k], 3),
             "speedup_vs_pytorch": round(med["PyTorch FP32"] / med[k], 2)} for k in preds]
    print(f"test n={len(y)}, 1 thread, batch 1, load average {os.getloadavg()}")
    print(markdown_table(rows, list(rows[0])))
    print(cpu_line())


if __name__ == "__main__":
    main()
