"""Export a trained model folder to ONNX, ONNX INT8/FP16, OpenVINO IR and TensorRT(-ready ONNX).

One table of formats (FORMATS) and one function per conversion, named source-to-target: torch2onnx,
onnx2fp16, onnx2openvino, onnx2tensorrt (onnx2int8 lives in quantize.py). `export(model, fmt)` makes
whatever intermediate files a format needs, checks every new artifact against PyTorch (max abs logit
difference for FP32, argmax agreement for reduced precision) and records it in the run's manifest.json.
Artifacts go inside the model folder under fixed names (FORMATS[...].artifact) that other stages use.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np

from . import ui
from .artifacts import atomic_path, read_json, record_artifact, write_json
from .errors import BadInput

OPSET = 17
INT8_OPTIONS = ("method", "calib_size", "per_channel", "exclude", "calib_dir", "seed")
TRT_OPTIONS = ("max_batch", "opt_batch")


@dataclass(frozen=True)
class ExportFormat:
    """One export target: where its artifact goes, what it runs on and which options it accepts."""

    name: str
    artifact: str  # path inside the model folder
    runtime: str  # onnxruntime | openvino | tensorrt
    precision: str  # fp32 | fp16 | bf16 | int8
    cuda: bool = False  # needs a CUDA device to build/run
    tensorrt: bool = False  # needs the tensorrt module
    options: tuple[str, ...] = ()
    trt_onnx: str | None = None  # the TensorRT-ready ONNX handed to the builder / trtexec


FORMATS: dict[str, ExportFormat] = {f.name: f for f in [
    ExportFormat("onnx", "model.onnx", "onnxruntime", "fp32", options=("opset",)),
    ExportFormat("onnx-int8", "model.int8.onnx", "onnxruntime", "int8", options=INT8_OPTIONS),
    ExportFormat("onnx-fp16", "model.fp16.onnx", "onnxruntime", "fp16"),
    ExportFormat("openvino-fp32", "openvino-fp32/model.xml", "openvino", "fp32"),
    ExportFormat("openvino-bf16", "openvino-bf16/model.xml", "openvino", "bf16"),
    ExportFormat("openvino-int8", "openvino-int8/model.xml", "openvino", "int8", options=INT8_OPTIONS),
    ExportFormat("tensorrt-fp32", "model.fp32.engine", "tensorrt", "fp32", True, True, TRT_OPTIONS, "model.onnx"),
    ExportFormat("tensorrt-fp16", "model.fp16.engine", "tensorrt", "fp16", True, True, TRT_OPTIONS, "model.trt-fp16.onnx"),
    ExportFormat("tensorrt-int8", "model.int8.engine", "tensorrt", "int8", True, True, INT8_OPTIONS + TRT_OPTIONS,
                 "model.trt-int8.onnx"),
]}

#: Options every format accepts.
COMMON_OPTIONS = ("data", "check_limit", "threads", "force")


@dataclass
class ExportResult:
    """What an export produced: the artifact, its check against PyTorch, every file written, the time (s)."""

    format: str
    path: Path | None
    check: dict = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0


# --- helpers --------------------------------------------------------------------------------------


def model_folder_of(path: str | os.PathLike) -> Path:
    """The PyTorch model folder named by `path` (the folder or its model.safetensors), else BadInput."""
    from .models import WEIGHTS, is_model_folder
    from .runtime import artifact_kind

    p = Path(path)
    if not p.exists():
        raise BadInput(f"{p}: no such file or folder")
    if is_model_folder(p):
        return p
    if p.name == WEIGHTS and is_model_folder(p.parent):
        return p.parent
    kind = artifact_kind(p)
    what = f"a {kind} artifact" if kind else "not a model folder"
    raise BadInput(f"{p}: {what}; this command takes a PyTorch model folder (config.json + model.safetensors)")


def input_shape(config: dict, data: str | os.PathLike | None = None) -> tuple[int, int]:
    """(channels, length in samples) the exported graph takes: from config.extra, else the dataset, else 2000."""
    extra = config.get("extra") or {}
    length = extra.get("input_length") or extra.get("length")
    if not length and data is not None:
        from .data.dataset import load_dataset

        length = load_dataset(data).signals.shape[2]
    return int(config.get("in_channels", 1)), int(length or 2000)


def _fresh(target: Path, *sources: Path) -> bool:
    """True when `target` exists and is newer than every source (so it can be reused)."""
    return target.exists() and all(target.stat().st_mtime >= s.stat().st_mtime for s in sources if s.exists())


def _size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
    files = [path] + ([path.with_suffix(".bin")] if path.suffix == ".xml" else [])
    return sum(f.stat().st_size for f in files if f.exists()) / 1e6


# --- conversions ----------------------------------------------------------------------------------


def torch2onnx(model_folder: str | os.PathLike, out: str | os.PathLike | None = None, opset: int = OPSET,
               length: int | None = None) -> Path:
    """Export a model folder to FP32 ONNX (input 'input' [batch, C, L], output 'logits'; batch axis dynamic)."""
    import torch

    from .models import load_model

    if opset < 17:
        raise BadInput(f"opset {opset}: ecgtool exports opset 17 or newer (TensorRT 10 and the QDQ tools need it)")
    folder = model_folder_of(model_folder)
    out = Path(out) if out else folder / FORMATS["onnx"].artifact
    model = load_model(folder)
    cfg = model.config.to_dict()
    channels, default_len = input_shape(cfg)
    dummy = torch.zeros(2, channels, length or default_len)
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (dummy,), str(tmp), dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          do_constant_folding=True)
    return out


def onnx2fp16(src: str | os.PathLike, out: str | os.PathLike, keep_io_types: bool = True) -> Path:
    """FP16 copy of an FP32 ONNX graph (float32 input/output kept by default, casts inside)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # notes about values clamped to the fp16 range
        half = convert_float_to_float16(model, keep_io_types=keep_io_types)
    with atomic_path(out) as tmp:
        onnx.save(half, str(tmp))
    return Path(out)


def onnx2openvino(src: str | os.PathLike, out_xml: str | os.PathLike, precision: str = "fp32") -> Path:
    """OpenVINO IR (model.xml + model.bin) from an FP32 or QDQ INT8 ONNX file.

    Weights stay FP32 in the IR (compress_to_fp16=False). BF16 is not a storage type of the IR but an
    execution mode of the CPU plugin: the folder's sidecar JSON tells the loader to compile with
    INFERENCE_PRECISION_HINT=bf16. INT8 comes from the QDQ pairs, which become FakeQuantize ops.
    """
    import openvino as ov

    from .runtime_onnx import OPENVINO_SIDECAR

    out_xml = Path(out_xml)
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    model = ov.convert_model(str(src))
    tmp_xml = out_xml.with_name(f".{out_xml.stem}.tmp.xml")
    try:
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
        os.replace(tmp_xml.with_suffix(".bin"), out_xml.with_suffix(".bin"))
        os.replace(tmp_xml, out_xml)
    finally:
        for f in (tmp_xml, tmp_xml.with_suffix(".bin")):
            f.unlink(missing_ok=True)
    hint = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}[precision]
    write_json(out_xml.parent / OPENVINO_SIDECAR, {
        "precision": precision, "source": Path(src).name,
        "compile": {"INFERENCE_PRECISION_HINT": hint},
        "note": "compile with these properties: BF16 is chosen at compile time, the IR keeps FP32 weights",
    })
    return out_xml


def onnx2tensorrt(src: str | os.PathLike, engine: str | os.PathLike, channels: int, length: int,
                  opt_batch: int = 1, max_batch: int = 64) -> Path:
    """Strongly typed TensorRT engine from a TensorRT-ready ONNX (needs tensorrt and a CUDA device)."""
    from .tensorrt_build import build_engine

    return build_engine(Path(src), Path(engine), channels, length, opt_batch, max_batch)


# --- checks ---------------------------------------------------------------------------------------


def check_export(artifact: str | os.PathLike, model_folder: str | os.PathLike, data: str | os.PathLike | None = None,
                 limit: int = 512, threads: int | None = None) -> dict:
    """Compare an artifact's logits with PyTorch's on the test split (first `limit` records).

    Without a dataset the check runs on 32 random-normal inputs and says so. Returns max abs logit
    difference, argmax agreement, the inputs used and a status (ok / warn).
    """
    from . import runtime

    ref = runtime.load(model_folder, threads=threads)
    art = runtime.load(artifact, threads=threads)
    if data is not None:
        from .data.dataset import load_dataset

        ds = load_dataset(data)
        idx = ds.indices("test")[:limit]
        x = np.asarray(ds.signals[np.sort(idx)], dtype=np.float32)
        source = f"test split, {len(x)} records" + (f" (capped at {limit})" if len(ds.indices('test')) > limit else "")
    else:
        channels, length = input_shape(ref.config)
        x = np.random.default_rng(0).standard_normal((32, channels, length)).astype(np.float32)
        source = "32 random-normal inputs (no --data given)"
    a, b = [], []
    for i in range(0, len(x), 64):
        a.append(ref.predict(x[i:i + 64]))
        b.append(art.predict(x[i:i + 64]))
    a, b = np.concatenate(a), np.concatenate(b)
    agree = float(np.mean(a.argmax(1) == b.argmax(1)))
    diff = float(np.max(np.abs(a - b)))
    if art.precision == "fp32":
        ok = diff <= 1e-3 * max(1.0, float(np.abs(a).max()))
    else:
        ok = agree >= 0.99
    return {"inputs": source, "precision": art.precision, "runtime": art.kind, "max_abs_diff": diff,
            "argmax_agreement": agree, "status": "ok" if ok else "warn"}


def _checked(path: Path, folder: Path, parent: Path, opts: dict, extra: dict | None = None) -> dict:
    """Check `path` against PyTorch, warn if it falls short, record it in the manifest; return the check."""
    check = check_export(path, folder, opts.get("data"), opts.get("check_limit", 512), opts.get("threads"))
    if check["status"] != "ok":
        what = (f"max abs logit difference {check['max_abs_diff']:.3g}" if check["precision"] == "fp32"
                else f"argmax agreement {check['argmax_agreement']:.1%} (< 99%)")
        ui.warn(f"{path}: {what} against PyTorch on {check['inputs']}")
    record_artifact(path, parent=parent, extra={"check": check, **(extra or {})})
    return check


# --- the export driver ----------------------------------------------------------------------------


def _ensure_onnx(folder: Path, opts: dict, files: list[Path]) -> Path:
    out = folder / FORMATS["onnx"].artifact
    sources = (folder / "model.safetensors", folder / "config.json")
    if opts.get("force") or not _fresh(out, *sources) or "opset" in opts:
        torch2onnx(folder, out, opset=opts.get("opset", OPSET))
        _checked(out, folder, folder / "model.safetensors", opts)
        files.append(out)
    return out


def _ensure_int8(folder: Path, opts: dict, files: list[Path], name: str = "model.int8.onnx",
                 force: bool = False) -> Path:
    """QDQ INT8 ONNX `name` in the folder, reused when fresh and no INT8 option was given.

    model.int8.onnx is ONNX Runtime's form (unsigned activations); model.trt-int8.onnx is TensorRT's
    (signed, zero points 0), copied from model.int8.onnx when that already has TensorRT's form.
    """
    from .quantize import qdq_properties, quantize_model

    onnx_fp32 = _ensure_onnx(folder, opts, files)
    out = folder / name
    given = {k: opts[k] for k in INT8_OPTIONS if k in opts}
    if not (given or force or opts.get("force")) and _fresh(out, onnx_fp32):
        return out
    shared = folder / "model.int8.onnx"
    if name != shared.name and not given and _fresh(shared, onnx_fp32) and qdq_properties(shared)["tensorrt_ready"]:
        with atomic_path(out) as tmp:  # model.int8.onnx is already TensorRT's form: hand over a copy
            shutil.copyfile(shared, tmp)
        record_artifact(out, parent=shared, extra={"check": _recorded_check(shared), "target": "tensorrt"})
    else:
        if opts.get("data") is None:
            raise BadInput(f"{folder}: INT8 needs --data DIR (calibration set from its training split)")
        quantize_model(folder, opts["data"], out=out, symmetric=name != shared.name, threads=opts.get("threads"),
                       check_limit=opts.get("check_limit", 512), **given)
    files.append(out)
    return out


def _recorded_check(path: Path) -> dict:
    """The check stored for `path` in its run's manifest.json ({} if none)."""
    from .artifacts import MANIFEST, find_run_root

    run = find_run_root(path)
    manifest = run / MANIFEST
    if not manifest.exists():
        return {}
    entry = read_json(manifest)["artifacts"].get(os.path.relpath(path.resolve(), run), {})
    return entry.get("check", {})


def export(model: str | os.PathLike, fmt: str, **options: Any) -> ExportResult:
    """Export `model` (a model folder) to format `fmt`; options not given keep their defaults.

    Options: data (prepared dataset, for checks and INT8 calibration), check_limit (records, 512),
    threads, force (rebuild intermediates), opset, INT8: method, calib_size, per_channel, exclude,
    calib_dir, seed; TensorRT: opt_batch, max_batch. Intermediate files (model.onnx, model.int8.onnx)
    are reused while newer than their source.
    """
    if fmt not in FORMATS:
        raise BadInput(f"{fmt}: unknown format (choose from {', '.join(FORMATS)})")
    spec = FORMATS[fmt]
    folder = model_folder_of(model)
    bad = [k for k in options if k not in spec.options + COMMON_OPTIONS]
    if bad:
        raise BadInput(f"{fmt}: option(s) {', '.join('--' + b.replace('_', '-') for b in bad)} do not apply to this format")
    if options.get("data") is not None:
        from .data.dataset import load_dataset

        load_dataset(options["data"])  # a bad dataset is reported before anything is written
    start = time.perf_counter()
    files: list[Path] = []
    target = folder / spec.artifact
    if fmt == "onnx":
        _ensure_onnx(folder, {**options, "force": True}, files)
    elif fmt == "onnx-int8":
        _ensure_int8(folder, options, files, force=True)
    elif fmt == "onnx-fp16":
        src = _ensure_onnx(folder, options, files)
        onnx2fp16(src, target)
        _checked(target, folder, src, options)
    elif spec.runtime == "openvino":
        src = _ensure_int8(folder, options, files) if spec.precision == "int8" else _ensure_onnx(folder, options, files)
        onnx2openvino(src, target, spec.precision)
        _checked(target, folder, src, options)
        record_artifact(target.with_suffix(".bin"), parent=src)
    else:
        target = _export_tensorrt(folder, spec, options, files)
    seconds = time.perf_counter() - start
    if target.exists():
        files.append(target)
        ui.info(f"export {fmt}: {target} ({_size_mb(target):.2f} MB) in {seconds:.1f} s")
    return ExportResult(fmt, target, _recorded_check(target), files, seconds)


def _export_tensorrt(folder: Path, spec: ExportFormat, opts: dict, files: list[Path]) -> Path:
    """Write the TensorRT-ready ONNX and its trtexec script; build the engine where TensorRT and CUDA exist."""
    from .runtime import find_config
    from .tensorrt_build import require_tensorrt, write_trtexec_script

    channels, length = input_shape(find_config(folder), opts.get("data"))
    onnx_fp32 = _ensure_onnx(folder, opts, files)
    trt_onnx = folder / spec.trt_onnx
    if spec.precision == "fp16":
        onnx2fp16(onnx_fp32, trt_onnx)
        _checked(trt_onnx, folder, onnx_fp32, opts, {"target": "tensorrt"})
        files.append(trt_onnx)
    elif spec.precision == "int8":
        _ensure_int8(folder, opts, files, name=spec.trt_onnx)
    script = folder / f"trtexec-{spec.precision}.sh"
    opt_b, max_b = opts.get("opt_batch", 1), opts.get("max_batch", 64)
    write_trtexec_script(script, trt_onnx, folder / spec.artifact, channels, length, opt_b, max_b)
    record_artifact(script, parent=trt_onnx)
    files.append(script)
    ui.info(f"TensorRT-ready ONNX: {trt_onnx}; build command: {script}")
    require_tensorrt(folder / spec.artifact)  # BadInput "skipped: ..." once the ONNX and the script exist
    engine = onnx2tensorrt(trt_onnx, folder / spec.artifact, channels, length, opt_b, max_b)
    _checked(engine, folder, trt_onnx, opts)
    return engine


# --- command --------------------------------------------------------------------------------------


@click.command("export")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--format", "fmt", required=True, metavar="FORMAT", help=f"One of: {', '.join(FORMATS)}.")
@click.option("--data", type=click.Path(path_type=Path), help="Prepared dataset: test split for the checks, training split for INT8 calibration.")
@click.option("--method", type=str, help="INT8 calibration: minmax, entropy, percentile or auto.")
@click.option("--calib-size", type=int, help="INT8: records in the calibration set (default 256).")
@click.option("--per-channel/--no-per-channel", default=None, help="INT8: per-channel weight scales (default on).")
@click.option("--exclude", multiple=True, help="INT8: ONNX node name to keep in float (repeatable).")
@click.option("--calib-dir", type=click.Path(path_type=Path), help="Where calibration sets are kept (default calibration/).")
@click.option("--opset", type=int, help=f"ONNX opset (default {OPSET}).")
@click.option("--max-batch", type=int, help="TensorRT: largest batch of the optimisation profile (default 64).")
@click.option("--check-limit", type=int, help="Test records used to check the export against PyTorch (default 512).")
@click.option("--threads", type=int, help="Threads for the checks.")
@ui.quiet_option
def export_command(model: Path, fmt: str, **options: Any) -> None:
    """Export MODEL (a model folder) to FORMAT, check it against PyTorch and record it in manifest.json."""
    opts = {k: v for k, v in options.items() if v is not None and v != ()}
    result = export(model, fmt, **opts)
    c = result.check
    line = f"{result.format}: {result.path}"
    if c:
        line += (f"  (check on {c['inputs']}: max |diff| {c['max_abs_diff']:.3g}, "
                 f"argmax agreement {c['argmax_agreement']:.2%}, {c['status']})")
    click.echo(line)
