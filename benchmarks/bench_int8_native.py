"""Does this CPU compute what an INT8 file says? Native ONNX Runtime kernels against the QDQ graph run as written.

For each INT8 ONNX file of a model folder: argmax agreement with the folder's FP32 model.onnx of (1) the file run
as written (graph optimisations off: explicit quantise / dequantise around FP32 operators, the same arithmetic on
every CPU) and (2) the file run natively (ORT's fused integer kernels of this CPU), and of the two with each other,
per split. Where (2) falls below (1), this CPU's kernels lose what the graph keeps (u8 x s8 16-bit saturation on
x86 without VNNI). `--qemu-bitwise N`: the first N test windows also through `qemu-x86_64 -cpu Haswell` (AVX2
without VNNI), batch 1, and whether its logits equal this machine's bit for bit (on an AVX2 machine: whether the
emulator stands in for it).

    OMP_NUM_THREADS=1 PYTHONPATH=toolkit:benchmarks python benchmarks/bench_int8_native.py MODEL_FOLDER DATA \
        --int8 model.int8.onnx --int8 model.int8-c.onnx [--splits val,test] [--qemu-bitwise 120 --out DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from ecgtool.compress.quantize import onnx_logits
from ecgtool.core.ui import markdown_table
from ecgtool.data.dataset import load_dataset

from bench_int8 import QEMU_EVAL, cpu_line  # noqa: E402  (same folder)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--int8", action="append", required=True, help="INT8 ONNX file name in MODEL (repeatable)")
    ap.add_argument("--splits", default="test")
    ap.add_argument("--qemu-bitwise", type=int, default=0, metavar="N", help="first N test windows under QEMU too")
    ap.add_argument("--out", type=Path, help="scratch folder for the QEMU run")
    args = ap.parse_args()
    print(cpu_line())
    ds = load_dataset(args.data)
    rows = []
    for split in args.splits.split(","):
        idx = np.sort(ds.indices(split))
        ref = onnx_logits(args.model / "model.onnx", ds.signals, idx, 1, "fp32").argmax(1)
        for f in args.int8:
            sim = onnx_logits(args.model / f, ds.signals, idx, 1, "simulated", optimize=False).argmax(1)
            nat = onnx_logits(args.model / f, ds.signals, idx, 1, "native").argmax(1)
            rows.append({"split": split, "n": len(idx), "file": f, "simulated_vs_fp32_%": round(100 * np.mean(sim == ref), 2),
                         "native_vs_fp32_%": round(100 * np.mean(nat == ref), 2),
                         "native_vs_simulated_%": round(100 * np.mean(nat == sim), 2)})
    print(markdown_table(rows, list(rows[0])))
    if args.qemu_bitwise:
        qemu_bitwise(args, ds)
    print(cpu_line())


def qemu_bitwise(args, ds) -> None:
    import onnxruntime as ort

    if shutil.which("qemu-x86_64") is None or args.out is None:
        sys.exit("--qemu-bitwise needs qemu-x86_64 (apt-get install qemu-user) and --out DIR")
    args.out.mkdir(parents=True, exist_ok=True)
    x = np.ascontiguousarray(ds.signals[np.sort(ds.indices("test"))[:args.qemu_bitwise]], dtype=np.float32)
    np.save(args.out / "x.npy", x)
    (args.out / "qemu_eval.py").write_text(QEMU_EVAL)
    files = []
    for f in args.int8:
        dst = args.out / f
        shutil.copyfile(args.model / f, dst)
        files.append(str(dst))
    subprocess.run(["qemu-x86_64", "-cpu", "Haswell", sys.executable, str(args.out / "qemu_eval.py"),
                    str(args.out / "x.npy"), *files], check=True)
    rows = []
    for f in files:
        o = ort.SessionOptions()
        o.intra_op_num_threads = 1
        s = ort.InferenceSession(f, sess_options=o, providers=["CPUExecutionProvider"])
        native = np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(len(x))])
        emulated = np.load(f + ".qemu.npy")
        rows.append({"file": Path(f).name, "windows": len(x), "bitwise_equal": bool(np.array_equal(native, emulated)),
                     "max_abs_diff": float(np.abs(native - emulated).max()),
                     "argmax_equal_%": round(100 * np.mean(native.argmax(1) == emulated.argmax(1)), 2)})
    print("native (this CPU) against qemu-x86_64 -cpu Haswell, batch 1, 1 thread:")
    print(markdown_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
