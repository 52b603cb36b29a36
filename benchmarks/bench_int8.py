"""INT8 per target form: macro-F1, worst per-class delta and argmax agreement against FP32, natively and on an
emulated AVX2-only CPU (`qemu-x86_64 -cpu Haswell`, no VNNI), plus ONNX Runtime INT8 speed-up over PyTorch eager FP32.

Forms (ecgtool.compress.targets): `default` = what ecgtool shipped before targets (u8 activations, per-channel,
no reduce_range; the same file as x86-vnni), `x86-avx2` (reduce_range), `tensorrt` (s8 symmetric) run by ORT's
optimised CPU kernels and run as written (`simulated-qdq`, TensorRT's arithmetic), and `gated` (target auto,
accuracy gate 0.5 / 1.0 points on validation). Every speed-up is a ratio against PyTorch eager FP32 timed
round-robin in this process (1 thread). Under qemu only agreement is measured (QEMU's FP32 output is bit-identical
to native, so the differences are the int8 kernels).

    PYTHONPATH=toolkit python benchmarks/bench_int8.py MODEL_FOLDER DATA --out /tmp/bi8 [--qemu-n 100]
    PYTHONPATH=toolkit python benchmarks/bench_int8.py MODEL_FOLDER DATA --out /tmp/bi8 --int8 A.onnx --int8 B.onnx

`--int8 FILE` (repeatable): score and time these INT8 files (built elsewhere, e.g. `ecgtool quantize --out`) instead
of building the four forms; no QEMU run (bench_demo_int8.py / bench_bundle_int8.py do that for given files).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from ecgtool.bench.runner import clip_outliers, time_round_robin
from ecgtool.compress.quantize import quantize_model
from ecgtool.compress.targets import detect_target
from ecgtool.core.ui import markdown_table
from ecgtool.data.dataset import load_dataset
from ecgtool.evaluate.metrics import compute_metrics
from ecgtool.runtime import load
from ecgtool.runtime.onnxruntime import OnnxRuntimePredictor

QEMU_EVAL = """
import sys, numpy as np, onnxruntime as ort
x = np.load(sys.argv[1])
for p in sys.argv[2:]:
    name, _, mode = p.partition(":")
    o = ort.SessionOptions(); o.intra_op_num_threads = 1
    if mode == "noopt":
        o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(name, sess_options=o, providers=["CPUExecutionProvider"])
    out = np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(len(x))])
    np.save(name + ("-noopt" if mode else "") + ".qemu.npy", out)
"""


def cpu_line() -> str:
    flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    keep = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return f"CPU flags (int8-relevant): {' '.join(keep)}; CPUID target: {detect_target()}; load average {os.getloadavg()}"


def given_report(path: Path) -> dict:
    """The fields of a quantize report that the table shows (form label, FP32 nodes), from a file's metadata."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return {"form": {"label": props.get("ecgtool.int8_form", "?")},
            "exclude": json.loads(props.get("ecgtool.int8_fp32_nodes") or "[]")}


def scores(y, ref, pred, classes) -> dict:
    a, b = compute_metrics(y, ref, classes), compute_metrics(y, pred, classes)
    delta = {c: 100 * (b["per_class"][c]["f1"] - a["per_class"][c]["f1"]) for c in classes}
    worst = min(delta, key=delta.get)
    return {"macro_f1": round(100 * b["macro_f1"], 2), "d_macro_pts": round(100 * (b["macro_f1"] - a["macro_f1"]), 2),
            "worst_class": worst, "d_worst_pts": round(delta[worst], 2), "agreement_%": round(100 * float(np.mean(ref == pred)), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--qemu-n", type=int, default=100, help="test windows run under qemu (0: skip)")
    ap.add_argument("--qemu-s8-n", type=int, default=30, help="windows for the float-heavy s8 graphs under qemu")
    ap.add_argument("--int8", type=Path, action="append", default=[],
                    help="a prebuilt INT8 ONNX file to score and time (repeatable; replaces the built-in forms)")
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
    forms = {"default": dict(target="x86-vnni", gate=False), "x86-avx2": dict(target="x86-avx2", gate=False),
             "tensorrt": dict(target="tensorrt", gate=False), "gated": dict(target=None, gate=True)}
    files, reports = {}, {}
    for name, kw in ({} if args.int8 else forms).items():
        files[name] = args.out / f"{name}.onnx"
        reports[name] = quantize_model(fp32_onnx, args.data, files[name], calib_dir=calib, threads=1, **kw)
    for f in args.int8:
        files[f.name] = f
        reports[f.name] = given_report(f)
    idx = np.sort(ds.indices("test"))
    x, y = np.ascontiguousarray(ds.signals[idx], dtype=np.float32), ds.labels[idx]
    torch_pred = load(args.model, threads=1)
    preds = {"PyTorch FP32": torch_pred, "ORT FP32": load(fp32_onnx, threads=1, verify=False)}
    for name, f in files.items():
        preds[f"ORT INT8 {name}"] = load(f, threads=1, verify=False)
    if "tensorrt" in files:
        preds["ORT INT8 tensorrt simulated-qdq"] = OnnxRuntimePredictor(files["tensorrt"], threads=1, optimize=False)
    logits = {k: np.concatenate([p.predict(x[i:i + 64]) for i in range(0, len(x), 64)]) for k, p in preds.items()}
    ref = logits["PyTorch FP32"].argmax(1)
    x1 = x[:1]
    times, _ = time_round_robin({k: (lambda p=p: p.predict(x1)) for k, p in preds.items()}, warmup=10, min_runs=50,
                                min_time_s=1.0)
    med = {k: float(np.median(clip_outliers(t))) * 1e3 for k, t in times.items()}
    rows = []
    for k in preds:
        form = k.replace("ORT INT8 ", "").replace(" simulated-qdq", "")
        rep = reports.get(form, {})
        rows.append({"artifact": k, "form": rep.get("form", {}).get("label", "fp32"),
                     "fp32_nodes": len(rep.get("exclude", [])), **scores(y, ref, logits[k].argmax(1), ds.classes),
                     "p50_ms": round(med[k], 3), "speedup_vs_pytorch": round(med["PyTorch FP32"] / med[k], 2)})
    print(f"native, test n={len(y)}, 1 thread, batch-1 latency round-robin")
    print(markdown_table(rows, list(rows[0])))
    gate = reports.get("gated", {}).get("gate")
    if gate:
        print("gate:", json.dumps({k: gate[k] for k in ("passed", "groups_fp32", "before", "after")} |
                                  {"latency_ratio_vs_ungated": gate.get("latency_ratio_vs_ungated")}))
    result = {"native": rows, "gate": gate, "machine": cpu_line()}
    if args.qemu_n and shutil.which("qemu-x86_64") and not args.int8:
        n, n8 = min(args.qemu_n, len(y)), min(args.qemu_s8_n, len(y))
        np.save(args.out / "x.npy", x[:n])
        np.save(args.out / "x8.npy", x[:n8])
        (args.out / "qemu_eval.py").write_text(QEMU_EVAL)
        qemu = ["qemu-x86_64", "-cpu", "Haswell", sys.executable, str(args.out / "qemu_eval.py")]
        subprocess.run(qemu + [str(args.out / "x.npy")] + [str(files[k]) for k in ("default", "x86-avx2", "gated")],
                       check=True, capture_output=True)
        subprocess.run(qemu + [str(args.out / "x8.npy"), str(files["tensorrt"]), f"{files['tensorrt']}:noopt"],
                       check=True, capture_output=True)
        qrows = []
        for k, f, m in [("default", files["default"], n), ("x86-avx2", files["x86-avx2"], n), ("gated", files["gated"], n),
                        ("tensorrt", files["tensorrt"], n8), ("tensorrt simulated-qdq", Path(f"{files['tensorrt']}-noopt"), n8)]:
            out = np.load(str(f) + ".qemu.npy").argmax(1)
            qrows.append({"form": k, "n": m, **scores(y[:m], ref[:m], out, ds.classes),
                          "native_agreement_%": round(100 * float(np.mean(
                              logits[f"ORT INT8 {k}"][:m].argmax(1) == ref[:m])), 2)})
        print("under qemu-x86_64 -cpu Haswell (AVX2, no VNNI); F1 on so few windows is noisy, agreement is the signal")
        print(markdown_table(qrows, list(qrows[0])))
        result["qemu_haswell"] = qrows
    print(cpu_line())
    (args.out / "bench_int8.json").write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
