"""What `ecgtool bench` measures: the runnable artifacts of a run, each once, and how to name each row.

A model folder contributes itself and every format of the export table (ecgtool.export.formats)
whose artifact it holds; a TensorRT format whose engine is not built yet contributes its
TensorRT-ready graph, benched as a skipped row with the graph's F1. Files the table does not name
(e.g. `quantize --out custom.onnx`) are found through `runtime.artifact_kind`, and their precision is
read from the file (ONNX metadata or graph), never guessed from the name. An INT8 ONNX whose metadata
records target `tensorrt` (e.g. `quantize --qat --target tensorrt`'s model.qat-trt-int8.onnx) is TensorRT's
graph too: a skipped-latency TensorRT row whose F1 is simulated, like the PTQ model.trt-int8.onnx.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ecgtool.bench.int8 import int8_columns
from ecgtool.core.artifacts import find_config, owning_folder, size_on_disk_mb
from ecgtool.core.errors import BadInput
from ecgtool.core.manifest import read_manifest
from ecgtool.core.names import BUNDLE_RUNNER, BUNDLE_SPEC, CONFIG, MANIFEST, OPENVINO_SIDECAR
from ecgtool.export.formats import FORMATS, RUNTIME_LABELS, ExportFormat, format_of, trtexec_script

#: QDQ graphs an OpenVINO IR is read from (model.ov-int8.onnx): the IR is the row, not its source run by ORT
_IR_SOURCES = {f.graph for f in FORMATS.values() if f.graph and f.runtime == "openvino"}
#: row order inside a model folder: the folder, then the table's order, then files the table does not name
_TABLE_ORDER = {name: i for i, name in enumerate(FORMATS)}


def artifact_kind_of(path: Path) -> str | None:
    from ecgtool.runtime import artifact_kind

    try:
        return artifact_kind(path)
    except Exception:  # a matcher that chokes on a strange file means "not runnable", not a crash
        return None


def _is_family_folder(folder: Path) -> bool:
    """A PyTorch model folder of the SE-ResNet/ResNet family: exports of it live inside it."""
    from ecgtool.models import ARCHS

    try:
        return find_config(folder).get("arch") in ARCHS and (folder / CONFIG).is_file()
    except BadInput:
        return False


def _candidate(path: Path, kind: str, fmt: ExportFormat | None = None, trt: bool = False) -> dict:
    return {"path": path, "kind": kind, "format": fmt, "trt": fmt.precision if trt and fmt else None}


def tensorrt_int8_graph(path: Path) -> bool:
    """An INT8 QDQ ONNX quantised for TensorRT, by the target its own metadata recorded at quantisation (PTQ
    `--target tensorrt`, `quantize --qat --target tensorrt`, any file name): benched as TensorRT's row, its F1
    simulated (QDQ run as written), never as an ONNX Runtime row with fused x86 integer kernels."""
    return path.suffix == ".onnx" and int8_columns(path).get("int8_target") == "tensorrt"


def _file_candidate(path: Path, kind: str, fmt: ExportFormat | None = None) -> dict:
    """A file the table does not place: TensorRT's INT8 form (by metadata) becomes a TensorRT graph row."""
    if kind == "onnxruntime" and tensorrt_int8_graph(path):
        return _candidate(path, "tensorrt", FORMATS["tensorrt-int8"], trt=True)
    return _candidate(path, kind, fmt)


def folder_candidates(folder: Path) -> list[dict]:
    """The folder itself (if runnable) and every artifact of the table inside it, in the table's order."""
    out = []
    kind = artifact_kind_of(folder)
    if kind is not None:
        out.append(_candidate(folder, kind))
    if not _is_family_folder(folder):
        return out
    for spec in FORMATS.values():
        artifact = folder / spec.artifact
        if spec.runtime != "tensorrt":
            if artifact.is_file() and artifact_kind_of(artifact) is not None:
                out.append(_candidate(artifact, artifact_kind_of(artifact), spec))
            continue
        if artifact.is_file():
            out.append(_candidate(artifact, "tensorrt", spec))
            continue
        graph = folder / spec.graph
        own_graph = spec.graph not in {f.artifact for f in FORMATS.values()}  # model.onnx is ORT's row too
        if graph.is_file() and ((folder / trtexec_script(spec)).is_file() or own_graph):
            out.append(_candidate(graph, "tensorrt", spec, trt=True))
    named = {c["path"] for c in out} | {folder / f.graph for f in FORMATS.values() if f.graph}
    for f in sorted([*folder.glob("*"), *folder.glob("*/*")]):
        if f.is_file() and f not in named and not f.name.startswith("."):
            kind = artifact_kind_of(f)
            if kind is not None and kind not in ("pytorch", "baseline"):
                out.append(_file_candidate(f, kind))
    return out


def discover(paths: Sequence[str | os.PathLike]) -> list[dict]:
    """Runnable artifacts under RUN folders or given directly, each once: [{path, kind, format, trt}]."""
    found: dict[tuple[Path, bool], dict] = {}

    def add(cands: list[dict]) -> None:
        for c in cands:
            found.setdefault((c["path"], bool(c["trt"])), c)

    def add_file(f: Path) -> None:
        folder = owning_folder(f)
        if folder is not None and f.parent == folder and artifact_kind_of(folder) == artifact_kind_of(f):
            add(folder_candidates(folder))  # a folder's own weights: the folder is the artifact
            return
        in_table = [c for c in folder_candidates(folder) if c["path"] == f] if folder is not None else []
        kind = artifact_kind_of(f)
        if in_table:
            add(in_table)
        elif kind is not None:
            add([_file_candidate(f, kind, format_of(f, folder) if folder else None)])

    for p in (Path(q).resolve() for q in paths):
        if not p.exists():
            raise BadInput(f"{p}: no such file or folder")
        if p.is_file():
            before = len(found)
            add_file(p)
            if len(found) == before and not any(c["path"] in (p, p.parent) for c in found.values()):
                raise BadInput(f"{p}: not an artifact ecgtool can run")
            continue
        if artifact_kind_of(p) is not None or (p / CONFIG).exists():
            add(folder_candidates(p))
            continue
        if (p / MANIFEST).exists():
            for rel in read_manifest(p)["artifacts"]:
                q = (p / rel).resolve()
                if _in_bundle(q):  # a deploy bundle's copy of an artifact benched from its folder (or the RR
                    continue       # baseline's classifier, whose input is features, not windows)
                if q.is_dir():
                    add(folder_candidates(q))
                elif (q.is_file() and q.suffix not in (".json", ".csv", ".md", ".png", ".html", ".sh", ".bin")
                      and q.name not in _IR_SOURCES):
                    add_file(q)
        for sub in sorted(p.iterdir()):
            if sub.is_dir() and (sub / CONFIG).exists():
                add(folder_candidates(sub))
    return sorted(found.values(), key=_order)


def _in_bundle(path: Path) -> bool:
    """A file of an `ecgtool package` bundle folder (model.json and run.py beside it)."""
    folder = path if path.is_dir() else path.parent
    return (folder / BUNDLE_SPEC).is_file() and (folder / BUNDLE_RUNNER).is_file()


def _order(c: dict) -> tuple:
    folder = owning_folder(c["path"]) or c["path"].parent
    rank = -1 if c["path"] == folder else _TABLE_ORDER.get(c["format"].name, 99) if c["format"] else 100
    return str(folder), rank, str(c["path"])


# --- describing a row ---------------------------------------------------------------------------------

def precision_of(cand: dict) -> str:
    """The precision of an artifact: its table entry's, else what the file says of itself."""
    if cand["format"] is not None:
        return cand["format"].precision
    path: Path = cand["path"]
    if cand["kind"] == "onnxruntime":
        from ecgtool.runtime.onnxruntime import onnx_file_precision

        return onnx_file_precision(path)
    if cand["kind"] == "openvino" and (path.parent / OPENVINO_SIDECAR).is_file():
        from ecgtool.core.files import read_json

        return read_json(path.parent / OPENVINO_SIDECAR).get("precision", "fp32")
    return "fp32"


def _pruned_tag(config: dict) -> str:
    ratio = (config.get("extra") or {}).get("ratio")
    return "" if ratio is None else f"pruned{round(float(ratio) * 100)}"


def describe(cand: dict, run_root: Path) -> dict:
    path: Path = cand["path"]
    folder = owning_folder(path) or path.parent
    try:
        config = find_config(path)
    except BadInput:
        config = {}
    precision = precision_of(cand)
    pruned = _pruned_tag(config)
    try:
        rel = str(path.relative_to(run_root))
    except ValueError:
        rel = str(path)
    return {
        "model": folder.name, "arch": config.get("arch"), "depth": config.get("depth"),
        "variant": "-".join(x for x in (pruned, precision) if x and not (pruned and x == "fp32")) or precision,
        "runtime": RUNTIME_LABELS.get(cand["kind"], cand["kind"]), "precision": precision, "status": "ok",
        "path": rel, "kind": cand["kind"], "format": cand["format"].name if cand["format"] else None,
        "size_mb": round(size_on_disk_mb(path), 4),
    }


_STATS_CACHE: dict[str, dict] = {}


def params_macs(path: Path, length: int) -> dict:
    """Parameters and MACs of the network behind a family artifact (None for other kinds, e.g. the baseline)."""
    from ecgtool.models import build_model, model_stats

    folder = owning_folder(path) or path.parent
    key = f"{folder}:{length}"
    if key not in _STATS_CACHE:
        stats: dict = {"params": None, "macs": None}
        if _is_family_folder(folder):
            stats = model_stats(build_model(find_config(folder)), length=length)
        _STATS_CACHE[key] = stats
    return _STATS_CACHE[key]
