"""Every export is checked against PyTorch on the test split and recorded in the run's manifest."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ecgtool.core import ui
from ecgtool.core.manifest import record_artifact
from ecgtool.export.onnx import input_shape


def check_export(artifact: str | os.PathLike, model_folder: str | os.PathLike, data: str | os.PathLike | None = None,
                 limit: int = 512, threads: int | None = None) -> dict:
    """Compare an artifact's logits with PyTorch's on the test split (first `limit` records).

    Without a dataset the check runs on 32 random-normal inputs and says so. Returns max abs logit
    difference, argmax agreement, the inputs used and a status (ok / warn).
    """
    from ecgtool import runtime
    from ecgtool.data.dataset import deployment_signals, load_dataset

    ref = runtime.load(model_folder, threads=threads)
    art = runtime.load(artifact, threads=threads, verify=False)  # just written, recorded after this check
    if data is not None:
        ds = load_dataset(data)
        idx = ds.indices("test")[:limit]
        x = np.asarray(deployment_signals(ds, ref.config)[np.sort(idx)], dtype=np.float32)
        source = f"test split, {len(x)} records" + (f" (capped at {limit})" if len(ds.indices('test')) > limit else "")
    else:
        channels, length = input_shape(ref.config)
        x = np.random.default_rng(0).standard_normal((32, channels, length)).astype(np.float32)
        source = "32 random-normal inputs (no --data given)"
    from ecgtool.runtime.base import predict_in_batches

    a, b = predict_in_batches(ref, x, 64), predict_in_batches(art, x, 64)
    agree = float(np.mean(a.argmax(1) == b.argmax(1)))
    diff = float(np.max(np.abs(a - b)))
    if art.precision == "fp32":
        ok = diff <= 1e-3 * max(1.0, float(np.abs(a).max()))
    else:
        ok = agree >= 0.99
    return {"inputs": source, "precision": art.precision, "runtime": art.kind, "max_abs_diff": diff,
            "argmax_agreement": agree, "status": "ok" if ok else "warn"}


def checked(path: Path, folder: Path, parent: Path, opts: dict, extra: dict | None = None) -> dict:
    """Check `path` against PyTorch, warn if it falls short, record it in the manifest; return the check."""
    check = check_export(path, folder, opts.get("data"), opts.get("check_limit", 512), opts.get("threads"))
    if check["status"] != "ok":
        what = (f"max abs logit difference {check['max_abs_diff']:.3g}" if check["precision"] == "fp32"
                else f"argmax agreement {check['argmax_agreement']:.1%} (< 99%)")
        ui.warn(f"{path}: {what} against PyTorch on {check['inputs']}")
    record_artifact(path, parent=parent, extra={"check": check, **(extra or {})})
    return check
