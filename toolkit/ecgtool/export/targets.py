"""How each target of the format table is built from a model folder: `TARGETS[spec.target](folder, spec, opts, files)`.

Each builder makes the intermediate files its format needs (FP32 model.onnx, the INT8 graphs) through
ecgtool.export.int8, converts with its target's module (onnx, openvino, tensorrt), checks the result
against PyTorch and records it in the run's manifest. Returns the artifact's path.
"""

from __future__ import annotations

from pathlib import Path

from ecgtool.core import ui
from ecgtool.core.artifacts import find_config
from ecgtool.core.manifest import record_artifact
from ecgtool.core.names import WEIGHTS
from ecgtool.export.check import checked
from ecgtool.export.formats import FORMATS, ORT_QUANTIZER_OPTIONS, trtexec_script
from ecgtool.export.int8 import ensure_int8, ensure_onnx
from ecgtool.export.onnx import input_shape, onnx2fp16, stamp_metadata
from ecgtool.core.errors import BadInput
from ecgtool.export.openvino import nncf2openvino, nncf_available, onnx2openvino
from ecgtool.export.tensorrt import build_engine, write_trtexec_script
from ecgtool.runtime.tensorrt import require_tensorrt


def build_onnxruntime(folder: Path, spec, opts: dict, files: list[Path]) -> Path:
    """Build an ONNX Runtime format of the table (onnx, onnx-fp16, onnx-int8) in `folder`."""

    target = folder / spec.artifact
    if spec.precision == "fp32":
        return ensure_onnx(folder, {**opts, "force": True}, files)
    if spec.precision == "int8":
        return ensure_int8(folder, opts, files, spec, force=True)
    src = ensure_onnx(folder, opts, files)
    onnx2fp16(src, target)
    stamp_metadata(target, find_config(folder), spec.name, spec.precision, folder / WEIGHTS)
    checked(target, folder, src, opts)
    return target


def build_openvino(folder: Path, spec, opts: dict, files: list[Path]) -> Path:
    """Build an OpenVINO format of the table: IR from the FP32 ONNX; for int8 from the signed symmetric QDQ ONNX,
    gated like every INT8 file (OpenVINO's CPU plugin lost ~10 macro-F1 points on ONNX Runtime's u8 form on an
    earlier CPU, none on the symmetric one), or with `ov_quantizer="nncf"` by NNCF (`nncf.quantize` on the FP32
    graph, the same calibration set, OverflowFix for the CPU target; no gate: it lost 2-4.5 points on the demo's
    models on an AVX2 CPU where the QDQ graph lost none, benchmarks/RESULTS.md). The QDQ graph is
    TensorRT's (model.trt-int8.onnx) where the CPU target has VNNI (or is ARM), and model.ov-int8.onnx with 7-bit
    weights for x86-avx2 (compress.targets.OPENVINO_FORMS), whose u8 x s8 sums saturate in OpenVINO too."""
    from ecgtool.compress.targets import FORMS, NNCF_OVERFLOW_FIX, OPENVINO_FORMS, resolve_target

    if spec.precision == "int8":
        cpu = resolve_target(opts.get("target"))
        if cpu not in OPENVINO_FORMS:
            raise BadInput(f"--target {cpu}: {spec.name} runs on a CPU (choose one of {', '.join(OPENVINO_FORMS)}, "
                           "or auto); TensorRT's form is --format tensorrt-int8")
    target = folder / spec.artifact
    quantizer = opts.get("ov_quantizer", "auto")
    ort_only = [k for k in ORT_QUANTIZER_OPTIONS if k in opts]
    if quantizer == "nncf" and not nncf_available():
        raise BadInput(f"{folder}: --ov-quantizer nncf needs NNCF (pip install 'ecgtool[nncf]')")
    if quantizer == "nncf" and ort_only:
        raise BadInput(f"{folder}: {', '.join('--' + k.replace('_', '-') for k in ort_only)} belong to ONNX Runtime's "
                       "quantiser; use --ov-quantizer qdq with them")
    if spec.precision == "int8" and quantizer == "nncf":
        from ecgtool.compress.calibration import DEFAULT_SEED, DEFAULT_SIZE, calibration_set

        if opts.get("data") is None:
            raise BadInput(f"{folder}: INT8 needs --data DIR (calibration set from its training split)")
        src = ensure_onnx(folder, opts, files)
        cs = calibration_set(opts["data"], opts.get("calib_size", DEFAULT_SIZE), opts.get("seed", DEFAULT_SEED),
                             opts.get("calib_dir", "calibration"), config=find_config(folder))
        nncf2openvino(src, target, cs.signals, overflow_fix=NNCF_OVERFLOW_FIX[cpu], int8_target=cpu)
        checked(target, folder, src, opts)
        record_artifact(target.with_suffix(".bin"), parent=src)
        return target
    if spec.precision == "int8":  # TensorRT's graph where the target's OpenVINO form is TensorRT's, else its own
        own = OPENVINO_FORMS[cpu] != FORMS["tensorrt"]
        src = ensure_int8(folder, opts if own else {k: v for k, v in opts.items() if k != "target"}, files,
                          spec if own else FORMATS["tensorrt-int8"])
    else:
        src = ensure_onnx(folder, opts, files)
    onnx2openvino(src, target, spec.precision)
    checked(target, folder, src, opts)
    record_artifact(target.with_suffix(".bin"), parent=src)
    return target


def build_tensorrt(folder: Path, spec, opts: dict, files: list[Path]) -> Path:
    """Write the TensorRT-ready ONNX and its trtexec script; build the engine where TensorRT and CUDA exist."""

    channels, length = input_shape(find_config(folder), opts.get("data"))
    onnx_fp32 = ensure_onnx(folder, opts, files)
    trt_onnx = folder / spec.graph
    if spec.precision == "fp16":
        onnx2fp16(onnx_fp32, trt_onnx)
        stamp_metadata(trt_onnx, find_config(folder), spec.name, spec.precision, folder / WEIGHTS)
        checked(trt_onnx, folder, onnx_fp32, opts, {"target": "tensorrt"})
        files.append(trt_onnx)
    elif spec.precision == "int8":
        ensure_int8(folder, opts, files, spec)
    script = folder / trtexec_script(spec)
    opt_b, max_b = opts.get("opt_batch", 1), opts.get("max_batch", 64)
    write_trtexec_script(script, trt_onnx, folder / spec.artifact, channels, length, opt_b, max_b)
    record_artifact(script, parent=trt_onnx)
    files.append(script)
    ui.info(f"TensorRT-ready ONNX: {trt_onnx}; build command: {script}")
    require_tensorrt(folder / spec.artifact)  # BadInput "skipped: ..." once the ONNX and the script exist
    engine = build_engine(trt_onnx, folder / spec.artifact, channels, length, opt_b, max_b, precision=spec.precision)
    checked(engine, folder, trt_onnx, opts)
    return engine


def build_litert(folder: Path, spec, opts: dict, files: list[Path]) -> Path:
    """A LiteRT .tflite for microcontrollers (litert-int8 / litert-fp32), run and measured in TFLM."""
    from ecgtool.export.litert import build_litert as build  # the [mcu] extra is imported only here

    return build(folder, spec, opts, files)


#: ExportFormat.target -> its builder
TARGETS = {"onnx": build_onnxruntime, "openvino": build_openvino, "tensorrt": build_tensorrt,
           "litert": build_litert}
