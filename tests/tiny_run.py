"""A tiny run for the bench, report and pipeline tests (benched once per session by conftest's `benched`).

Seven classes of short, easily separable signals; se_resnet18 and resnet18 at width 8 for one epoch;
ONNX export of se_resnet18, a TensorRT-ready copy of it, and a deliberately corrupt INT8 ONNX.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ecgtool.data.classes import DEFAULT_CLASSES
from ecgtool.data.dataset import write_dataset
from ecgtool.data.splits import random_split

LENGTH = 400


def make_dataset(out: Path, per_class: int = 12, seed: int = 0) -> Path:
    """Class k is a noisy sine of 2 + k cycles per window: learnable in one epoch, not trivially perfect."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(DEFAULT_CLASSES)), per_class)
    t = np.linspace(0, 1, LENGTH, dtype=np.float32)
    signals = np.sin(2 * np.pi * (2 + labels[:, None]) * t)[:, None, :] + 0.3 * rng.standard_normal((len(labels), 1, LENGTH))
    records = [{"record_id": f"r{i}", "patient_id": f"r{i}", "label": DEFAULT_CLASSES[k]} for i, k in enumerate(labels)]
    return write_dataset(out, signals.astype(np.float32), labels, DEFAULT_CLASSES, records, random_split(labels, seed),
                         {"sampling_rate": 40, "seconds": 10, "source": "test-sines", "split": "random"})


def make_run(root: Path) -> tuple[Path, Path]:
    """(run folder, dataset) with two trained models, exports and a corrupt artifact; not yet benched."""
    from ecgtool.export import export
    from ecgtool.train.run import train_models

    data = make_dataset(root / "data")
    run = root / "run"
    train_models(data, ["se_resnet", "resnet"], [18], run, width=8, epochs=1, batch_size=32, device="cpu")
    export(run / "se_resnet18", "onnx", data=data)
    shutil.copy(run / "se_resnet18" / "model.onnx", run / "se_resnet18" / "model.trt-fp16.onnx")
    (run / "resnet18" / "model.int8.onnx").write_bytes(b"this is not an ONNX model")
    return run, data


BENCH_OPTIONS = dict(threads=1, warmup=2, min_runs=5, min_time_s=0.05, throughput_batch=16)
