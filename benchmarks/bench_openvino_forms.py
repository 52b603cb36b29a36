"""OpenVINO INT8 forms on this CPU: which IR keeps FP32's F1 where the CPU has no VNNI (issue #10).

OpenVINO's CPU plugin multiplies u8 x s8 like ONNX Runtime's x86 kernels, so on AVX2 without VNNI its 16-bit pair
sums can saturate too. Each variant is an OpenVINO INT8 IR of the same FP32 model, calibrated on the same
calibration set (ecgtool.compress.calibration, 256 stratified training windows, seed 0):

- `qdq-s8sym`: the TensorRT-form QDQ ONNX (s8 symmetric activations, 8-bit weights, float bias) read by OpenVINO
  (what `export --format openvino-int8` builds without NNCF, and with ONNX Runtime quantiser options);
- `qdq-s8sym-rr`: the same with reduce_range (7-bit weights); `qdq-s8sym+suspects`: the same with the gate's five
  suspect groups kept FP32 (compress.gate.candidate_groups), without and with reduce_range; `qdq-u8asym-rr`: ONNX Runtime's x86-avx2 form;
- `nncf-<fix>`: `nncf.quantize` with OverflowFix first_layer_only (NNCF's default), enable (7-bit weights in every
  Conv/MatMul) and disable.

Scored on the test split against PyTorch FP32 (macro-F1, worst per-class delta, argmax agreement), batch 64, and for
the QDQ variants OpenVINO's argmax against the same graph run as written (`ov_vs_as_written_%`). With
`--time`: batch-1 latency round-robin in this process (1 thread), speed-up against PyTorch eager FP32 and against
OpenVINO FP32. Run timing alone (nothing else heavy on the machine); the load average is printed.

    PYTHONPATH=toolkit:benchmarks python benchmarks/bench_openvino_forms.py MODEL_FOLDER DATA --out /tmp/ovf [--time]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from ecgtool.bench.runner import clip_outliers, time_round_robin
from ecgtool.compress.calibration import calibration_set
from ecgtool.compress.gate import candidate_groups
from ecgtool.compress.quantize import onnx2int8, onnx_logits
from ecgtool.core.artifacts import find_config
from ecgtool.core.ui import markdown_table
from ecgtool.data.dataset import load_dataset
from ecgtool.export.openvino import nncf2openvino, onnx2openvino
from ecgtool.runtime import load

from bench_int8 import cpu_line, scores  # noqa: E402  (same folder)

QDQ = {  # name -> onnx2int8 keyword arguments
    "qdq-s8sym": dict(symmetric=True, reduce_range=False),
    "qdq-s8sym-rr": dict(symmetric=True, reduce_range=True),
    "qdq-s8sym+suspects": dict(symmetric=True, reduce_range=False, suspects=True),
    "qdq-s8sym-rr+suspects": dict(symmetric=True, reduce_range=True, suspects=True),
    "qdq-u8asym-rr": dict(symmetric=False, reduce_range=True),
}
NNCF = ("first_layer_only", "enable", "disable")


def build(model: Path, data: Path, out: Path, only: set[str] | None) -> dict[str, Path]:
    fp32 = model / "model.onnx"
    if not fp32.exists():
        from ecgtool.export import export

        export(model, "onnx", data=data)
    cs = calibration_set(data, 256, 0, out / "calib", config=find_config(model))
    suspects = [n for _, nodes in candidate_groups(fp32) for n in nodes]
    irs = {"OpenVINO FP32": onnx2openvino(fp32, out / "fp32" / "model.xml", "fp32")}
    for name, kw in QDQ.items():
        if only and name not in only:
            continue
        kw = dict(kw)
        exclude = suspects if kw.pop("suspects", False) else []
        q = onnx2int8(fp32, out / f"{name}.onnx", cs.signals, "minmax", True, exclude, quantize_bias=not kw["symmetric"], **kw)
        irs[name] = onnx2openvino(q, out / name / "model.xml", "int8")
    for fix in NNCF:
        name = f"nncf-{fix}"
        if not only or name in only:
            irs[name] = nncf2openvino(fp32, out / name / "model.xml", cs.signals, overflow_fix=fix)
    return irs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", help="comma-separated variant names (default: all)")
    ap.add_argument("--time", action="store_true", help="also time batch-1 latency round-robin (run it alone)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(cpu_line())
    ds = load_dataset(args.data)
    irs = build(args.model, args.data, args.out, set(args.only.split(",")) if args.only else None)
    idx = np.sort(ds.indices("test"))
    x, y = np.ascontiguousarray(ds.signals[idx], dtype=np.float32), ds.labels[idx]
    preds = {"PyTorch FP32": load(args.model, threads=1)} | {k: load(p, threads=1, verify=False) for k, p in irs.items()}
    logits = {k: np.concatenate([p.predict(x[i:i + 64]) for i in range(0, len(x), 64)]) for k, p in preds.items()}
    ref = logits["PyTorch FP32"].argmax(1)
    rows = [{"artifact": k, **scores(y, ref, logits[k].argmax(1), ds.classes)} for k in preds]
    for r in rows:  # OpenVINO against its own QDQ graph run as written (ORT, optimisations off): below 100 % = its kernels
        q = args.out / f"{r['artifact']}.onnx"
        if r["artifact"] in QDQ and q.exists():
            sim = onnx_logits(q, x, np.arange(len(x)), 1, "as written", optimize=False).argmax(1)
            r["ov_vs_as_written_%"] = round(100 * float(np.mean(logits[r["artifact"]].argmax(1) == sim)), 2)
    if args.time:
        times, _ = time_round_robin({k: (lambda p=p: p.predict(x[:1])) for k, p in preds.items()}, warmup=10,
                                    min_runs=100, min_time_s=2.0)
        med = {k: float(np.median(clip_outliers(t))) * 1e3 for k, t in times.items()}
        for r in rows:
            k = r["artifact"]
            r |= {"p50_ms": round(med[k], 3), "speedup_vs_pytorch": round(med["PyTorch FP32"] / med[k], 2),
                  "speedup_vs_ov_fp32": round(med["OpenVINO FP32"] / med[k], 2)}
    print(f"{args.model}: test n={len(y)}, 1 thread, batch {'1 (timing), 64 (scores)' if args.time else 64}, "
          f"load average {tuple(round(v, 2) for v in os.getloadavg())}")
    print(markdown_table(rows, list(dict.fromkeys(k for r in rows for k in r))))
    print(cpu_line())


if __name__ == "__main__":
    main()
