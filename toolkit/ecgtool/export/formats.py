"""The one table of export formats: what each writes, where, for which runtime and precision, with which options.

Read by export dispatch (`target` names the module that builds it), by the export command (its
choices and options), by bench (which file of a model folder is which format), by search and by
package. Artifact paths are relative to the model folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OPSET = 17
#: INT8 calibration / quantisation options
INT8_OPTIONS = ("method", "calib_size", "per_channel", "exclude", "calib_dir", "seed", "target", "gate", "gate_macro",
                "gate_class", "gate_min_windows", "gate_agreement", "gate_train", "keep_fp32")
#: OpenVINO INT8: converted from the gated signed symmetric QDQ graph (OpenVINO loses F1 on ORT's u8 form), or
#: nncf.quantize (extra [nncf]); `ov_quantizer` chooses (auto = qdq | nncf | qdq). `target` is the CPU
#: the IR is for (compress.targets.OPENVINO_FORMS / NNCF_OVERFLOW_FIX: 7-bit weights on x86 without VNNI)
OPENVINO_INT8_OPTIONS = INT8_OPTIONS + ("ov_quantizer",)
#: the INT8 options only ONNX Runtime's quantiser reads (not the calibration set's): NNCF refuses them
ORT_QUANTIZER_OPTIONS = tuple(o for o in INT8_OPTIONS if o not in ("calib_size", "calib_dir", "seed", "target"))
#: TensorRT optimisation-profile options
TRT_OPTIONS = ("opt_batch", "max_batch")
#: the formats an RR-head model (`train --rr-head`: a second graph input, its RR features computed in numpy
#: before the graph) exports to; the others would need the feature code on the device runtime
RR_HEAD_FORMATS = ("onnx", "onnx-int8", "onnx-fp16")
#: options every format accepts
COMMON_OPTIONS = ("data", "check_limit", "threads", "force")

#: backend kind (ecgtool.runtime) -> the name people know it by (the RR baseline: its features in numpy, then its
#: scikit-learn classifier as ONNX in ONNX Runtime, as the deploy bundle runs it: runtime/baseline.py)
RUNTIME_LABELS = {"pytorch": "PyTorch", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO", "tensorrt": "TensorRT",
                  "baseline": "RR features + ONNX Runtime", "tflm": "TFLite Micro"}


@dataclass(frozen=True)
class ExportFormat:
    """One export target: its artifact (path in the model folder), runtime kind, precision, builder and options.

    `graph` is the ONNX file a TensorRT engine is built from (written here; the engine needs TensorRT), or the
    QDQ ONNX an OpenVINO INT8 IR is read from.
    """

    name: str
    artifact: str
    runtime: str  # ecgtool.runtime kind: onnxruntime | openvino | tensorrt | tflm
    precision: str  # fp32 | fp16 | bf16 | int8
    target: str  # module of ecgtool.export that builds it: onnx | openvino | tensorrt | litert
    options: tuple[str, ...] = ()
    graph: str | None = None

    @property
    def runtime_label(self) -> str:
        return RUNTIME_LABELS[self.runtime]


FORMATS: dict[str, ExportFormat] = {f.name: f for f in [
    ExportFormat("onnx", "model.onnx", "onnxruntime", "fp32", "onnx", ("opset",)),
    ExportFormat("onnx-int8", "model.int8.onnx", "onnxruntime", "int8", "onnx", INT8_OPTIONS),
    ExportFormat("onnx-fp16", "model.fp16.onnx", "onnxruntime", "fp16", "onnx"),
    ExportFormat("openvino-fp32", "openvino-fp32/model.xml", "openvino", "fp32", "openvino"),
    ExportFormat("openvino-bf16", "openvino-bf16/model.xml", "openvino", "bf16", "openvino"),
    ExportFormat("openvino-int8", "openvino-int8/model.xml", "openvino", "int8", "openvino", OPENVINO_INT8_OPTIONS,
                 "model.ov-int8.onnx"),  # graph: the QDQ ONNX the IR is read from where its form is not TensorRT's
    ExportFormat("tensorrt-fp32", "model.fp32.engine", "tensorrt", "fp32", "tensorrt", TRT_OPTIONS, "model.onnx"),
    ExportFormat("tensorrt-fp16", "model.fp16.engine", "tensorrt", "fp16", "tensorrt", TRT_OPTIONS, "model.trt-fp16.onnx"),
    ExportFormat("tensorrt-int8", "model.int8.engine", "tensorrt", "int8", "tensorrt", INT8_OPTIONS + TRT_OPTIONS,
                 "model.trt-int8.onnx"),
    # microcontrollers: LiteRT flatbuffers run in the TensorFlow Lite Micro interpreter (ecgtool.export.litert)
    ExportFormat("litert-int8", "model.int8.tflite", "tflm", "int8", "litert", ("calib_size", "calib_dir", "seed")),
    ExportFormat("litert-fp32", "model.fp32.tflite", "tflm", "fp32", "litert"),
]}


def trtexec_script(spec: ExportFormat) -> str:
    """Name of the script beside a TensorRT-ready ONNX that builds its engine with trtexec."""
    return f"trtexec-{spec.precision}.sh"


def format_of(path: str | Path, folder: str | Path) -> ExportFormat | None:
    """The format whose artifact `path` is inside model folder `folder` (by its place in the table), else None."""
    try:
        rel = Path(path).resolve().relative_to(Path(folder).resolve()).as_posix()
    except ValueError:
        return None
    return next((f for f in FORMATS.values() if f.artifact == rel), None)


def tensorrt_format_of(path: str | Path, folder: str | Path) -> ExportFormat | None:
    """The TensorRT format whose TensorRT-ready ONNX graph (or trtexec script) `path` is, else None."""
    try:
        rel = Path(path).resolve().relative_to(Path(folder).resolve()).as_posix()
    except ValueError:
        return None
    return next((f for f in FORMATS.values() if f.runtime == "tensorrt" and rel in (f.graph, trtexec_script(f))), None)
