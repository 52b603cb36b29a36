"""Every INT8 artifact a pipeline run ships, against its FP32 parent on the run's test split: macro-F1 delta, worst
class delta, argmax agreement and the windows behind them (the gate's window rule) - natively, and for the ONNX
Runtime files also under `qemu-x86_64 -cpu Haswell` (an AVX2 CPU without VNNI, emulated).

For each model folder of RUN: the FP32 reference is its model.onnx run by ONNX Runtime (checked against PyTorch at
export); the INT8 artifacts are model.int8.onnx (ONNX Runtime), openvino-int8/model.xml (OpenVINO),
model.trt-int8.onnx (TensorRT's form, simulated: QDQ run by ONNX Runtime with graph optimisations off, as bench
does) and model.int8.tflite (TensorFlow Lite Micro), whichever exist. Under QEMU the same test windows go through
the ORT INT8 file and the TensorRT-form file (simulated, and also ORT-optimised for contrast), batch 1, one thread.
The verdict column is ecgtool.compress.gate.judge on the test split with the gate's defaults (points, >= 5 windows
net, and the agreement floor).

    OMP_NUM_THREADS=1 PYTHONPATH=toolkit:benchmarks python benchmarks/bench_demo_int8.py RUN [--qemu [--qemu-trt]] [--qemu-n N] [--models A,B] [--out DIR]
        [--int8 FILE ...]

`--int8 FILE` (repeatable): score these ONNX Runtime INT8 files instead of the ones the run ships, each against
the model.onnx of its own folder (a folder of RUN, or a copy of one with the same test split), natively and under
QEMU; the row's artifact is the file name.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ecgtool.compress.gate import DEFAULT_AGREEMENT, judge, mcnemar_p, windows_changed
from ecgtool.core.names import OPENVINO_SIDECAR
from ecgtool.core.ui import markdown_table
from ecgtool.data.dataset import load_dataset
from ecgtool.evaluate.artifact import predict_batches
from ecgtool.evaluate.metrics import compute_metrics
from ecgtool.runtime import load

from bench_int8 import QEMU_EVAL, cpu_line  # noqa: E402  (same folder)

#: (label, file in the model folder, load options): the INT8 artifacts a run can ship
ARTIFACTS = [
    ("ORT INT8", "model.int8.onnx", {}),
    ("OpenVINO INT8", "openvino-int8/model.xml", {}),
    ("TensorRT form, simulated", "model.trt-int8.onnx", {"optimize": False}),
    ("LiteRT INT8 in TFLM", "model.int8.tflite", {}),
]


def form_of(path: Path) -> str:
    """The INT8 form and target an ONNX file carries in its metadata ('' for other files)."""
    if path.suffix == ".xml":  # OpenVINO: the sidecar names what it was converted from (or NNCF)
        side = path.parent / OPENVINO_SIDECAR
        meta = json.loads(side.read_text()) if side.exists() else {}
        src = meta.get("quantizer") or meta.get("source", "?")
        return f"from {src}" + (f" ({form_of(path.parent.parent / src)})" if str(src).endswith(".onnx") else "")
    if path.suffix != ".onnx":
        return ""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    kept = json.loads(props.get("ecgtool.int8_fp32_nodes") or "[]")
    return f"{props.get('ecgtool.int8_target', '?')} {props.get('ecgtool.int8_form', '?')}, {len(kept)} FP32 nodes"


def compare(y: np.ndarray, ref: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict:
    """Deltas in points (negative = INT8 lost), agreement, and the windows that carry the worst class's loss."""
    a, b = compute_metrics(y, ref, classes), compute_metrics(y, pred, classes)
    present = [c for k, c in enumerate(classes) if np.any(y == k) or np.any(ref == k) or np.any(pred == k)]
    delta = {c: 100 * (b["per_class"][c]["f1"] - a["per_class"][c]["f1"]) for c in present}
    worst = min(delta, key=delta.get)
    lost, gained = windows_changed(y, ref, pred, classes.index(worst))
    mlost, mgained = windows_changed(y, ref, pred)
    v = judge(y, ref, pred, classes, agreement_floor=DEFAULT_AGREEMENT)
    return {"n": int(len(y)), "fp32 macro %": round(100 * a["macro_f1"], 2), "int8 macro %": round(100 * b["macro_f1"], 2),
            "d macro": round(100 * (b["macro_f1"] - a["macro_f1"]), 2), "worst class": worst,
            "d worst": round(delta[worst], 2), "worst class windows lost/gained": f"{lost}/{gained}",
            "worst class support": int(np.sum(y == classes.index(worst))),
            "all windows lost/gained": f"{mlost}/{mgained} (p={mcnemar_p(mlost, mgained):.2g})",
            "agreement %": round(100 * float(np.mean(ref == pred)), 2), "differ": int(np.sum(ref != pred)),
            "goal (0.5 / 1.0 pts)": "meets" if (b["macro_f1"] - a["macro_f1"]) * 100 >= -0.5 - 1e-9
            and delta[worst] >= -1.0 - 1e-9 else "misses",
            "gate verdict (test)": "pass" if v.passed else "fail"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", type=Path, help="prepared dataset (default RUN/data)")
    ap.add_argument("--out", type=Path, help="where the JSON and the QEMU scratch files go (default RUN/bench_demo_int8)")
    ap.add_argument("--qemu", action="store_true", help="also run the ORT files under qemu-x86_64 -cpu Haswell")
    ap.add_argument("--qemu-n", type=int, default=0, help="first N test windows under QEMU (default 0: all)")
    ap.add_argument("--qemu-trt", action="store_true", help="under QEMU also the TensorRT-form file (simulated and "
                    "ORT-optimised; float-heavy, several times slower to emulate)")
    ap.add_argument("--models", help="comma-separated model folder names to score (default: every one in RUN)")
    ap.add_argument("--int8", type=Path, action="append", default=[],
                    help="an ORT INT8 file to score against FOLDER/model.onnx of its folder (repeatable; default: the "
                         "run's own artifacts)")
    args = ap.parse_args()
    print(cpu_line())
    ds = load_dataset(args.data or args.run / "data")
    out = args.out or args.run / "bench_demo_int8"
    out.mkdir(parents=True, exist_ok=True)
    idx = np.sort(ds.indices("test"))
    y = ds.labels[idx]
    classes = list(ds.classes)
    folders = sorted(p.parent for p in args.run.glob("*/model.onnx"))
    if args.int8:
        folders = sorted({f.parent for f in args.int8})
    if args.models:
        folders = [f for f in folders if f.name in args.models.split(",")]
    rows, qrows = [], []
    for folder in folders:
        ref_logits = predict_batches(load(folder / "model.onnx", threads=1), ds.signals, idx, 256, desc="fp32")
        ref = ref_logits.argmax(1)
        given = [(f.name, f.name, {}) for f in args.int8 if f.parent == folder]
        for label, rel, opts in given or ARTIFACTS:
            path = folder / rel
            if not path.exists():
                continue
            t0 = time.perf_counter()
            pred = predict_batches(load(path, threads=1, **opts), ds.signals, idx, 64, desc=label).argmax(1)
            rows.append({"model": folder.name, "artifact": label, "form": form_of(path), **compare(y, ref, pred, classes),
                         "eval s": round(time.perf_counter() - t0, 1)})
            print(markdown_table(rows[-1:], list(rows[-1])), flush=True)
        if args.qemu:
            m = len(idx) if args.qemu_n <= 0 else min(args.qemu_n, len(idx))
            x = np.ascontiguousarray(ds.signals[idx[:m]], dtype=np.float32)
            np.save(out / f"{folder.name}-x.npy", x)
            (out / "qemu_eval.py").write_text(QEMU_EVAL)
            todo = [("ORT INT8", folder / "model.int8.onnx", ""), ("TensorRT form, simulated", folder / "model.trt-int8.onnx", "noopt"),
                    ("TensorRT form, ORT-optimised kernels", folder / "model.trt-int8.onnx", "opt")]
            if given:
                todo = [(label, folder / rel, "") for label, rel, _ in given]
            for label, src, mode in todo if args.qemu_trt or given else todo[:1]:
                if not src.exists():
                    continue
                dst = out / f"{folder.name}-{src.name}"
                dst.write_bytes(src.read_bytes())
                t0 = time.perf_counter()
                subprocess.run(["qemu-x86_64", "-cpu", "Haswell", sys.executable, str(out / "qemu_eval.py"),
                                str(out / f"{folder.name}-x.npy"), f"{dst}:noopt" if mode == "noopt" else str(dst)],
                               check=True, capture_output=True)
                got = np.load(str(dst) + ("-noopt" if mode == "noopt" else "") + ".qemu.npy").argmax(1)
                native = predict_batches(load(src, threads=1, optimize=mode != "noopt"), ds.signals, idx[:m], 64,
                                         desc="native").argmax(1)
                qrows.append({"model": folder.name, "artifact": label, "form": form_of(src),
                              **compare(y[:m], ref[:m], got, classes),
                              "native agreement, same windows %": round(100 * float(np.mean(native == ref[:m])), 2),
                              "qemu s": round(time.perf_counter() - t0, 1)})
                print(markdown_table(qrows[-1:], list(qrows[-1])), flush=True)
    print(f"\n## natively ({cpu_line()})\n")
    print(markdown_table(rows, list(rows[0])) if rows else "no INT8 artifacts found")
    if qrows:
        print(f"\n## under qemu-x86_64 -cpu Haswell (AVX2, no VNNI; FP32 reference run natively); load average "
              f"{os.getloadavg()}\n")
        print(markdown_table(qrows, list(qrows[0])))
    (out / "bench_demo_int8.json").write_text(json.dumps({"cpu": cpu_line(), "native": rows, "qemu_haswell": qrows},
                                                         indent=1))


if __name__ == "__main__":
    main()
