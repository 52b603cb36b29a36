"""One loader for every artifact kind: `load(path)` returns a predictor with `predict(batch) -> logits`.

Kinds, tried in order: a PyTorch model folder (or its model.safetensors), the RR baseline's folder,
ONNX files (FP32 / FP16 / INT8 QDQ) on ONNX Runtime, OpenVINO IR (.xml), TensorRT engines
(.engine/.plan), .tflite in the TensorFlow Lite Micro interpreter. Each backend module offers `matches(path)` and `open_predictor(path, **options)`
and imports its heavy runtime only when a predictor is built. Every predictor takes float32
[N, C, L] numpy batches and returns float32 [N, K] logits, so F1 is measured on the artifact that ships.
"""

from __future__ import annotations

import os
from pathlib import Path

from ecgtool.core.errors import BadInput
from ecgtool.core.manifest import verify_artifact
from ecgtool.runtime import baseline, onnxruntime, openvino, pytorch, tensorrt, tflm
from ecgtool.runtime.base import Predictor

#: kind name -> backend module, in the order the kinds are tried
BACKENDS = {"pytorch": pytorch, "baseline": baseline, "onnxruntime": onnxruntime, "openvino": openvino,
            "tensorrt": tensorrt, "tflm": tflm}


def artifact_kind(path: str | os.PathLike) -> str | None:
    """The name of the backend that would open `path`, or None if none knows it."""
    p = Path(path)
    for name, backend in BACKENDS.items():
        try:
            if backend.matches(p):
                return name
        except OSError:  # a path that cannot be inspected is not an artifact
            return None
    return None


def load(path: str | os.PathLike, *, verify: bool = True, **options) -> Predictor:
    """Open any artifact for inference. Options (threads, device, ...) go to the matching backend.

    Inside a run the artifact's files are first checked against manifest.json (`verify=False` for a
    file the caller has just written and not recorded yet).
    """
    p = Path(path)
    if not p.exists():
        raise BadInput(f"{p}: no such file or folder")
    kind = artifact_kind(p)
    if kind is None:
        raise BadInput(f"{p}: not an artifact ecgtool can run (expected a model folder, .onnx, OpenVINO .xml "
                       "TensorRT .engine or .tflite)")
    if verify:
        verify_artifact(p)
    return BACKENDS[kind].open_predictor(p, **options)


def require_model_folder(path: str | os.PathLike) -> Path:
    """core.artifacts.model_folder_of, whose refusal names the kind of artifact given instead."""
    from ecgtool.core.artifacts import model_folder_of

    try:
        return model_folder_of(path)
    except BadInput as exc:
        kind = artifact_kind(path) if Path(path).exists() else None
        if kind is None:
            raise
        hint = ("; to deploy the RR baseline, `ecgtool package` it (its classifier ships as ONNX, its features are "
                "computed in the bundle)") if kind == "baseline" else ""
        raise BadInput(f"{path}: a {kind} artifact; {str(exc).split('; ', 1)[1]}{hint}") from None
