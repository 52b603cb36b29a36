"""Does an OpenVINO IR give a window the same logits whatever batch it shares and however many threads run it?

For each (threads, batch) the IR is compiled as ecgtool's OpenVINO predictor compiles it (runtime/openvino.py:
LATENCY hint, f32 precision hint, INFERENCE_NUM_THREADS) with a dynamic batch, and the test split is run through it
in calls of `batch` windows. Printed per setting: a hash of all logits, how many argmax differ from threads=1 batch=1
and the largest logit difference, and the argmax agreement with the model folder's FP32 ONNX (ONNX Runtime).
This is why ecgtool scores OpenVINO one window per call (runtime.base.scoring_batch; benchmarks/RESULTS.md,
"OpenVINO's batch dependence").

    PYTHONPATH=toolkit python benchmarks/bench_openvino_batch.py demo/se_resnet18-pruned50/openvino-int8/model.xml \
        demo/data [--threads 1 2] [--batch 1 64 420]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
from pathlib import Path

import numpy as np


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = sorted(set(re.findall(r"\b(avx2|avx512f|avx512_vnni|avx_vnni|amx_int8)\b", text)))
    return " ".join(flags) or platform.machine()


def ov_logits(xml: Path, x: np.ndarray, threads: int, batch: int) -> np.ndarray:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(xml))
    model.reshape([-1, *x.shape[1:]])
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                                                 "INFERENCE_NUM_THREADS": threads})
    req = compiled.create_infer_request()
    return np.concatenate([np.array(req.infer({0: x[i:i + batch]})[0]) for i in range(0, len(x), batch)])


def main() -> None:
    from ecgtool.data.dataset import load_dataset
    from ecgtool.runtime import load

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("xml", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 64, 420])
    a = ap.parse_args()
    ds = load_dataset(a.data)
    x = np.asarray(ds.signals[np.sort(ds.indices("test"))], dtype=np.float32)
    fp32 = load(a.xml.parent.parent / "model.onnx", threads=1, verify=False)
    ref_fp32 = np.concatenate([fp32.predict(x[i:i + 64]) for i in range(0, len(x), 64)]).argmax(1)
    print(f"{a.xml}, test n={len(x)}; CPU flags: {cpu_flags()}; load average {os.getloadavg()[0]:.2f}")
    print("| threads | batch | logits SHA-1 | argmax differs from 1 thread, batch 1 | max abs logit difference | "
          "agreement with FP32 |")
    print("|---|---|---|---|---|---|")
    base = ov_logits(a.xml, x, 1, 1)
    for t in a.threads:
        for b in a.batch:
            out = base if (t, b) == (1, 1) else ov_logits(a.xml, x, t, b)
            print(f"| {t} | {b} | {hashlib.sha1(out.tobytes()).hexdigest()[:10]} | "
                  f"{int((out.argmax(1) != base.argmax(1)).sum())} | {float(np.abs(out - base).max()):.3f} | "
                  f"{100 * float((out.argmax(1) == ref_fp32).mean()):.2f} % |")


if __name__ == "__main__":
    main()
