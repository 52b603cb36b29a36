"""When is quantisation-aware training needed? PTQ default / target-chosen / gated / QAT against FP32, per runtime.

For one model folder (e.g. a pruned child): macro-F1 against PyTorch FP32, worst per-class delta, argmax agreement
on the test split, and batch-1 latency ratio against PyTorch eager FP32 timed round-robin in this process (1 thread).
Rows: ONNX Runtime INT8 default (u8, per-channel, no reduce_range = the x86-vnni form, what shipped before
targets), target-chosen (`--target auto` on this machine, no gate), x86-avx2 (reduce_range: the form for CPUs
without VNNI), gated (target auto, gate 0.5 / 1.0 points), QAT in the x86-avx2 form (runs on every x86), the
TensorRT form PTQ and QAT simulated (QDQ run as written: TensorRT's arithmetic), and OpenVINO reading the QAT and
the PTQ symmetric QDQ graphs directly. Under `qemu-x86_64 -cpu Haswell` (AVX2, no VNNI) the INT8 files are run
again on the first `--qemu-n` test windows (agreement with native FP32; QEMU's FP32 is bit-identical).

    PYTHONPATH=toolkit:benchmarks python benchmarks/bench_qat.py MODEL_FOLDER DATA --out /tmp/bq [--qat-epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ecgtool.bench.runner import clip_outliers, time_round_robin
from ecgtool.compress.qat import qat_model
from ecgtool.compress.quantize import quantize_model
from ecgtool.core.ui import markdown_table
from ecgtool.data.dataset import load_dataset
from ecgtool.export.openvino import onnx2openvino
from ecgtool.runtime import load
from ecgtool.runtime.onnxruntime import OnnxRuntimePredictor

from bench_int8 import QEMU_EVAL, cpu_line, scores  # noqa: E402  (same folder)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--qat-epochs", type=int, default=3)
    ap.add_argument("--qemu-n", type=int, default=100, help="test windows run under qemu (0: skip)")
    ap.add_argument("--qemu-s8-n", type=int, default=30, help="windows for the float-heavy s8 graphs under qemu")
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    print(cpu_line())
    ds = load_dataset(args.data)
    fp32_onnx = args.model / "model.onnx"
    if not fp32_onnx.exists():
        from ecgtool.export import export

        export(args.model, "onnx", data=args.data)
    calib = args.out / "calib"
    ptq = {"default": dict(target="x86-vnni", gate=False), "target auto": dict(target=None, gate=False),
           "x86-avx2": dict(target="x86-avx2", gate=False), "gated": dict(target=None, gate=True),
           "tensorrt": dict(target="tensorrt", gate=False)}
    files, reports, seconds = {}, {}, {}
    for name, kw in ptq.items():
        files[name] = args.out / f"{name.replace(' ', '-')}.onnx"
        t0 = time.perf_counter()
        reports[name] = quantize_model(fp32_onnx, args.data, files[name], calib_dir=calib, threads=1, **kw)
        seconds[name] = round(time.perf_counter() - t0, 1)
    for name, target in (("qat x86-avx2", "x86-avx2"), ("qat tensorrt", "tensorrt")):
        files[name] = args.out / f"{name.replace(' ', '-')}.onnx"
        t0 = time.perf_counter()
        reports[name] = qat_model(args.model, fp32_onnx, args.data, files[name], target=target, epochs=args.qat_epochs,
                                  calib_dir=calib, threads=1)
        seconds[name] = round(time.perf_counter() - t0, 1)
    idx = np.sort(ds.indices("test"))
    x, y = np.ascontiguousarray(ds.signals[idx], dtype=np.float32), ds.labels[idx]
    preds = {"PyTorch FP32": load(args.model, threads=1), "ORT FP32": load(fp32_onnx, threads=1, verify=False)}
    for name in ("default", "target auto", "x86-avx2", "gated", "qat x86-avx2"):
        preds[f"ORT INT8 {name}"] = load(files[name], threads=1, verify=False)
    for name in ("tensorrt", "qat tensorrt"):
        preds[f"TensorRT-simulated {name}"] = OnnxRuntimePredictor(files[name], threads=1, optimize=False)
    ov = args.out / "ov"
    preds["OpenVINO FP32"] = load(onnx2openvino(fp32_onnx, ov / "fp32" / "model.xml", "fp32"), threads=1, verify=False)
    for name in ("qat x86-avx2", "qat tensorrt", "tensorrt"):
        ir = onnx2openvino(files[name], ov / name.replace(" ", "-") / "model.xml", "int8")
        preds[f"OpenVINO INT8 {name}"] = load(ir, threads=1, verify=False)
    logits = {k: np.concatenate([p.predict(x[i:i + 64]) for i in range(0, len(x), 64)]) for k, p in preds.items()}
    ref = logits["PyTorch FP32"].argmax(1)
    times, _ = time_round_robin({k: (lambda p=p: p.predict(x[:1])) for k, p in preds.items()}, warmup=10, min_runs=50,
                                min_time_s=1.0)
    med = {k: float(np.median(clip_outliers(t))) * 1e3 for k, t in times.items()}
    rows = []
    for k in preds:
        form = next((n for n in sorted(files, key=len, reverse=True) if k.endswith(n)), None)
        rep = reports.get(form, {})
        gate = rep.get("gate") or {}
        rows.append({"artifact": k, "form": rep.get("form", {}).get("label", "fp32"),
                     "fp32_nodes": len(rep.get("exclude", [])), **scores(y, ref, logits[k].argmax(1), ds.classes),
                     "val_gate": "-" if not gate else ("pass" if gate.get("passed") else "fail"),
                     "p50_ms": round(med[k], 3), "speedup_vs_pytorch": round(med["PyTorch FP32"] / med[k], 2),
                     "build_s": seconds.get(form, "-") if k.startswith("ORT INT8") or "simulated" in k else "-"})
    print(f"native, test n={len(y)}, 1 thread, batch-1 latency round-robin, load average {os.getloadavg()}")
    print(markdown_table(rows, list(rows[0])))
    result = {"native": rows, "machine": cpu_line(), "reports": {k: {kk: v for kk, v in r.items() if kk != "per_class_f1"}
                                                                    for k, r in reports.items()}}
    if args.qemu_n and shutil.which("qemu-x86_64"):
        n, n8 = min(args.qemu_n, len(y)), min(args.qemu_s8_n, len(y))
        np.save(args.out / "x.npy", x[:n])
        np.save(args.out / "x8.npy", x[:n8])
        (args.out / "qemu_eval.py").write_text(QEMU_EVAL)
        qemu = ["qemu-x86_64", "-cpu", "Haswell", sys.executable, str(args.out / "qemu_eval.py")]
        u8 = ("default", "x86-avx2", "gated", "qat x86-avx2")
        subprocess.run(qemu + [str(args.out / "x.npy")] + [str(files[k]) for k in u8], check=True, capture_output=True)
        subprocess.run(qemu + [str(args.out / "x8.npy"), f"{files['tensorrt']}:noopt", f"{files['qat tensorrt']}:noopt"],
                       check=True, capture_output=True)
        qrows = []
        for k in u8:
            out = np.load(str(files[k]) + ".qemu.npy").argmax(1)
            qrows.append({"form": k, "n": n, **scores(y[:n], ref[:n], out, ds.classes), "native_agreement_%": round(
                100 * float(np.mean(logits[f"ORT INT8 {k}"][:n].argmax(1) == ref[:n])), 2)})
        for k in ("tensorrt", "qat tensorrt"):
            out = np.load(f"{files[k]}-noopt.qemu.npy").argmax(1)
            qrows.append({"form": f"{k} simulated-qdq", "n": n8, **scores(y[:n8], ref[:n8], out, ds.classes),
                          "native_agreement_%": round(100 * float(np.mean(
                              logits[f"TensorRT-simulated {k}"][:n8].argmax(1) == ref[:n8])), 2)})
        print("under qemu-x86_64 -cpu Haswell (AVX2, no VNNI); agreement with native FP32 is the signal")
        print(markdown_table(qrows, list(qrows[0])))
        result["qemu_haswell"] = qrows
    print(cpu_line())
    (args.out / "bench_qat.json").write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
