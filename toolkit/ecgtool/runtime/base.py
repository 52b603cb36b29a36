"""What every predictor is: float32 [N, C, L] numpy batches in, float32 [N, K] logits out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np


class Predictor(Protocol):
    path: Path
    kind: str  # e.g. "pytorch", "onnxruntime", "openvino", "tensorrt"
    precision: str  # "fp32", "fp16", "bf16", "int8"
    classes: list[str]
    config: dict  # the model's config.json (arch, depth, width, channels, ...)

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass
class PredictorBase:
    """The fields every predictor shares (runtime.Predictor); each kind sets its own `kind` default."""

    path: Path
    threads: int | None = None
    device: str = "cpu"
    kind: str = ""
    precision: str = "fp32"
    config: dict = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    #: the largest batch whose logits are each window's own (None: any); scoring (evaluate, bench's F1, the INT8
    #: gate) calls predict with at most this many windows, so an F1 is what one window at a time gets on a device
    score_batch: int | None = None
    #: how this file's F1 is computed when that is not the plain run ("simulated-qdq": a TensorRT-form INT8 graph run
    #: as TensorRT computes it); None otherwise
    f1_source: str | None = None
    #: one line a command shows before scoring with this predictor ("" when there is nothing to say)
    note: str = ""


def show_note(predictor, label: str | Path) -> None:
    """The predictor's note, once, before a command scores with it: how the file is scored (info), or that this
    CPU is not the one it was made for (warning)."""
    from ecgtool.core.ui import info, warn

    if predictor.note:
        (info if predictor.f1_source else warn)(f"{label}: {predictor.note}")


def scoring_batch(predictor, batch: int) -> int:
    """The batch to score `predictor` with: `batch`, capped by the predictor's score_batch."""
    cap = getattr(predictor, "score_batch", None)
    return max(1, min(batch, cap)) if cap else max(1, batch)


def predict_in_batches(predictor, x: np.ndarray, batch: int) -> np.ndarray:
    """Logits of windows x [N, C, L], `batch` windows per call (at most the predictor's score_batch)."""
    b = scoring_batch(predictor, batch)
    return np.concatenate([predictor.predict(x[i:i + b]) for i in range(0, len(x), b)])


def one_line(exc: BaseException) -> str:
    """An exception's text on one line, at most 300 characters (for BadInput messages)."""
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def check_shape(path: Path, expected: list, got: tuple) -> None:
    """A batch whose channel count or length differs from a static graph input is bad input."""
    from ecgtool.core.errors import BadInput

    for axis, name in ((1, "channels"), (2, "length")):
        want = expected[axis] if len(expected) > axis else None
        if isinstance(want, int) and len(got) > axis and got[axis] != want:
            raise BadInput(f"{path}: expects input {name} {want}, got {got[axis]} (batch shape {tuple(got)})")


def config_and_classes(path: Path) -> tuple[dict, list[str]]:
    """(config.json, classes) of the model an artifact came from; ({}, []) when none is found."""
    from ecgtool.core.artifacts import find_config

    try:
        cfg = find_config(path)
    except Exception:  # no or unreadable config: the artifact still runs, unnamed classes
        return {}, []
    return cfg, list(cfg.get("classes") or [])


def rr_head_inputs(config: dict, batch: np.ndarray, path: Path | None = None) -> np.ndarray | None:
    """The second input of an RR-head model for a batch of windows [N, C, L] (None for any other model):
    the baseline's window features (ecgtool.baseline.features.head_inputs: the same numbers, computed by
    extract_features, so a batch of PARALLEL_MIN windows or more uses the worker processes) at the model's
    sampling rate."""
    dim = int(config.get("rr_features") or 0) if isinstance(config, dict) else 0
    if not dim:
        return None
    from ecgtool.baseline.features import extract_features, head_dim, head_vector
    from ecgtool.core.errors import BadInput

    bins = rr_bins_of(config)
    if dim != head_dim(bins):
        raise BadInput(f"{path}: RR head of width {dim}, but this ecgtool computes {head_dim(bins)} RR-head inputs"
                       + (f" with its {len(bins)} features' bin edges" if bins else ""))
    fs = (config.get("preprocessing") or {}).get("sampling_rate") or (config.get("extra") or {}).get("sampling_rate")
    if not fs:
        raise BadInput(f"{path}: an RR-head model without a sampling rate in its config")
    x = np.asarray(batch, dtype=np.float32)
    if x.ndim != 3:
        raise BadInput(f"{path}: RR-head inputs need windows [N, C, L], got shape {x.shape}")
    return head_vector(extract_features(x, float(fs), channel=0, progress=False), bins)


def rr_bins_of(config: dict) -> list[list[float]] | None:
    """The bin edges of a model trained with `--rr-bins` (config extra["rr_head"]["bins"]), else None."""
    return ((config.get("extra") or {}).get("rr_head") or {}).get("bins") or None
