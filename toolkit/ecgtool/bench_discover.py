"""What `ecgtool bench` measures: the runnable artifacts of a run, each once, and how to name each row.

Built on `runtime.artifact_kind`, so a kind another stage registers is benched without changes here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from .artifacts import MANIFEST, read_json
from .errors import BadInput

RUNTIME_NAMES = {"pytorch": "PyTorch", "onnx": "ONNX Runtime", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO",
                 "tensorrt": "TensorRT", "baseline": "scikit-learn"}
TRT_ONNX = re.compile(r"^model\.trt-(\w+)\.onnx$")
TRT_SCRIPT = re.compile(r"^trtexec-(\w+)\.sh$")
#: Files that are a model's record, not part of what ships.
NOT_SHIPPED = re.compile(r"(metrics.*\.json|history\.csv|.*\.png|.*\.sh|summary\..*|run\.json|checkpoint.*|.*\.log)$")
#: Files that are artifacts of their own (exports), never part of their folder's size.
EXPORT_SUFFIXES = (".onnx", ".xml", ".bin", ".engine", ".plan", ".data", ".cache")


def artifact_kind_of(path: Path) -> str | None:
    from .runtime import artifact_kind

    try:
        return artifact_kind(path)
    except Exception:  # a matcher that chokes on a strange file means "not runnable", not a crash
        return None


def _is_family_folder(folder: Path) -> bool:
    """A PyTorch model folder of the SE-ResNet/ResNet family: exports of it live inside it."""
    from .models import ARCHS

    try:
        return (folder / "config.json").exists() and read_json(folder / "config.json").get("arch") in ARCHS
    except (OSError, ValueError):
        return False


def discover(paths: Sequence[str | os.PathLike]) -> list[dict]:
    """Runnable artifacts under RUN folders or given directly, each once: [{path, kind, trt}].

    A run contributes its manifest entries and its model folders; a family model folder contributes
    itself and every file inside it (two levels) that some runtime kind can open. A TensorRT export
    (model.trt-<prec>.onnx or trtexec-<prec>.sh) becomes a TensorRT candidate whose engine may not exist.
    """
    found: dict[tuple[Path, str], dict] = {}

    def add_folder(folder: Path) -> None:
        kind = artifact_kind_of(folder)
        if kind is not None:
            found.setdefault((folder, ""), {"path": folder, "kind": kind, "trt": None})
        if not _is_family_folder(folder):
            return
        for f in sorted([*folder.glob("*"), *folder.glob("*/*")]):
            if f.is_file():
                add_file(f)

    def add_file(f: Path) -> None:
        m = TRT_ONNX.match(f.name) or TRT_SCRIPT.match(f.name)
        if m:
            onnx = f.parent / f"model.trt-{m.group(1)}.onnx"
            onnx = onnx if onnx.exists() else f.parent / "model.onnx"
            if onnx.exists():
                found.setdefault((onnx, "trt"), {"path": onnx, "kind": "tensorrt", "trt": m.group(1)})
            return
        kind = artifact_kind_of(f)
        if kind is None:
            return
        if (f.parent, "") in found and found[(f.parent, "")]["kind"] == kind:  # the folder's own weights
            return
        if artifact_kind_of(f.parent) == kind:
            add_folder(f.parent)
            return
        found.setdefault((f, ""), {"path": f, "kind": kind, "trt": None})

    for p in map(lambda q: Path(q).resolve(), paths):
        if not p.exists():
            raise BadInput(f"{p}: no such file or folder")
        if p.is_file():
            add_file(p)
            if not any(c["path"] in (p, p.parent) for c in found.values()):
                raise BadInput(f"{p}: not an artifact ecgtool can run")
            continue
        if artifact_kind_of(p) is not None or (p / "config.json").exists():
            add_folder(p)
            continue
        if (p / MANIFEST).exists():
            for rel in read_json(p / MANIFEST).get("artifacts", {}):
                q = (p / rel).resolve()
                if q.is_dir():
                    add_folder(q)
                elif q.is_file():
                    add_file(q)
        for sub in sorted(p.iterdir()):
            if sub.is_dir() and (sub / "config.json").exists():
                add_folder(sub)
    # A TensorRT candidate whose engine was built is covered by the engine's own row.
    return sorted((c for c in found.values() if not (c["trt"] and any(
        (c["path"].parent / f"model.{c['trt']}{ext}").exists() for ext in (".engine", ".plan")))),
        key=lambda c: (str(model_folder(c["path"])), bool(c["trt"]), _order(c["path"])))


def model_folder(path: Path) -> Path:
    for cand in [path if path.is_dir() else path.parent, *path.parents][:3]:
        if (cand / "config.json").exists():
            return cand
    return path.parent


def _order(path: Path) -> tuple[int, str]:
    n = path.name
    rank = 0 if path.is_dir() else 1 if n == "model.onnx" else 3 if "openvino" in str(path) else 4 if "trt" in n else 2
    return rank, str(path)


# --- describing a row ---------------------------------------------------------------------------------

def _precision_from_name(path: Path, trt: str | None) -> str:
    if trt:
        return trt
    s = str(path.relative_to(path.parent.parent)).lower()
    for p in ("int8", "fp16", "bf16"):
        if p in s:
            return p
    return "fp32"


def _pruned_tag(config: dict, folder: Path) -> str:
    ratio = (config.get("extra") or {}).get("ratio")
    if ratio is None:
        m = re.search(r"-pruned(\d+)", folder.name)
        return f"pruned{m.group(1)}" if m else ""
    return f"pruned{round(float(ratio) * 100)}"


def shipped_files(path: Path) -> list[Path]:
    """The file(s) that ship for an artifact: weights + config of a folder, an .onnx (+ external data), .xml + .bin."""
    if path.is_dir():
        return [f for f in sorted(path.iterdir()) if f.is_file() and not f.name.startswith(".")
                and not NOT_SHIPPED.match(f.name) and not f.name.endswith(EXPORT_SUFFIXES)]
    extra = [path.with_suffix(".bin"), Path(str(path) + ".data")]
    return [path, *[f for f in extra if f.exists() and f.suffix != path.suffix]]


def describe(cand: dict, run_root: Path) -> dict:
    path: Path = cand["path"]
    folder = model_folder(path)
    try:
        config = read_json(folder / "config.json")
    except (OSError, ValueError):
        config = {}
    precision = _precision_from_name(path, cand["trt"])
    pruned = _pruned_tag(config, folder)
    kind = cand["kind"]
    runtime = RUNTIME_NAMES.get(kind) or next((v for k, v in RUNTIME_NAMES.items() if k in kind), kind)
    try:
        rel = str(path.relative_to(run_root))
    except ValueError:
        rel = str(path)
    return {
        "model": folder.name, "arch": config.get("arch"), "depth": config.get("depth"),
        "variant": "-".join(x for x in (pruned, precision) if x and not (pruned and x == "fp32")) or precision,
        "runtime": runtime, "precision": precision, "status": "ok", "path": rel, "kind": kind,
        "size_mb": round(sum(f.stat().st_size for f in shipped_files(path)) / 1e6, 4),
    }


_STATS_CACHE: dict[str, dict] = {}


def params_macs(path: Path, length: int) -> dict:
    """Parameters and MACs of the network behind a family artifact (None for other kinds, e.g. the baseline)."""
    from .models import build_model

    folder = model_folder(path)
    key = f"{folder}:{length}"
    if key not in _STATS_CACHE:
        stats: dict = {"params": None, "macs": None}
        if _is_family_folder(folder):
            from .models import model_stats

            stats = model_stats(build_model(read_json(folder / "config.json")), length=length)
        _STATS_CACHE[key] = stats
    return _STATS_CACHE[key]


