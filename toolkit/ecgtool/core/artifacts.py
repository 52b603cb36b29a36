"""Artifact lookup: which model folder a path belongs to, its config.json, and its size on disk.

One rule each, used by every stage: a model folder holds config.json (the network or baseline
recipe and the frozen preprocessing) and its weights; exports live inside it; what ships of an
artifact is its own file(s), never the folder's records (metrics, plots, history).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ecgtool.core.errors import BadInput
from ecgtool.core.files import read_json
from ecgtool.core.names import CONFIG, WEIGHTS

#: Files of a model folder that are its record, not part of what ships.
NOT_SHIPPED = re.compile(r"(metrics.*\.json|history\.csv|.*\.png|.*\.sh|summary\..*|run\.json|checkpoint.*|.*\.log"
                         r"|teacher_logits\.npy|\..*)$")
#: Files that are artifacts of their own (exports), never part of their folder's size.
EXPORT_SUFFIXES = (".onnx", ".xml", ".bin", ".engine", ".plan", ".data", ".cache", ".tflite", ".cc", ".h",
                   ".litert.json")  # the last: a .tflite's sidecar (core.names.litert_sidecar)
#: How many folders up from an artifact its model folder may be (model/openvino-int8/model.xml: 1).
_UP = 3


def is_model_folder(path: str | os.PathLike) -> bool:
    """A PyTorch model folder: config.json and model.safetensors."""
    p = Path(path)
    return p.is_dir() and (p / CONFIG).is_file() and (p / WEIGHTS).is_file()


def model_folder_of(path: str | os.PathLike) -> Path:
    """The PyTorch model folder named by `path` (the folder or its model.safetensors), else BadInput."""
    p = Path(path)
    if not p.exists():
        raise BadInput(f"{p}: no such file or folder")
    if is_model_folder(p):
        return p
    if p.name == WEIGHTS and is_model_folder(p.parent):
        return p.parent
    what = f"a {p.suffix} file" if p.is_file() and p.suffix else "not a model folder"
    raise BadInput(f"{p}: {what}; this command takes a PyTorch model folder ({CONFIG} + {WEIGHTS})")


def owning_folder(path: str | os.PathLike) -> Path | None:
    """The folder holding the config.json an artifact belongs to: itself, or up to three levels up."""
    p = Path(path).resolve()
    for cand in [p if p.is_dir() else p.parent, *p.parents][:_UP + 1]:
        if (cand / CONFIG).is_file():
            return cand
    return None


def find_config(path: str | os.PathLike) -> dict:
    """config.json of the model an artifact came from: beside it, or in a parent folder."""
    folder = owning_folder(path)
    if folder is None:
        raise BadInput(f"{path}: no {CONFIG} beside the artifact or in its parent folders")
    try:
        cfg = read_json(folder / CONFIG)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"{folder / CONFIG}: not readable JSON ({type(exc).__name__})") from None
    if not isinstance(cfg, dict):
        raise BadInput(f"{folder / CONFIG}: expected a JSON object")
    return cfg


def trained_classes(config: dict) -> set[str] | None:
    """The classes a model had training windows of, from its config.json's `train_counts` (a network's under
    `extra`, a pruned child's from its fine-tuning data or else its parent's, the baseline's at the top); None
    for a folder written before the count was recorded (every class then counts as learnt)."""
    extra = config.get("extra") or {}
    for counts in (extra.get("train_counts"), config.get("train_counts"),
                   (extra.get("parent_extra") or {}).get("train_counts")):
        if isinstance(counts, dict) and counts:
            return {str(c) for c, n in counts.items() if isinstance(n, (int, float)) and n > 0}
    return None


def shipped_files(path: str | os.PathLike) -> list[Path]:
    """The file(s) that ship for an artifact: a folder's weights and config (not its records or exports),
    an .onnx with its external data, an OpenVINO .xml with its .bin, any other file alone."""
    path = Path(path)
    if path.is_dir():
        return [f for f in sorted(path.iterdir()) if f.is_file() and not NOT_SHIPPED.match(f.name)
                and not f.name.endswith(EXPORT_SUFFIXES)]
    extra = [path.with_suffix(".bin"), Path(str(path) + ".data")]
    return [path, *[f for f in extra if f.exists() and f.suffix != path.suffix]]


def size_on_disk_mb(path: str | os.PathLike) -> float:
    """Size of what ships for an artifact, in MB (10^6 bytes): the one size rule of bench, search and reports."""
    return sum(f.stat().st_size for f in shipped_files(path)) / 1e6
