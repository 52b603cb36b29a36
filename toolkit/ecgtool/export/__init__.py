"""Export stage: the format table, one module per target (onnx, openvino, tensorrt, litert), the INT8 graphs, checks."""

from ecgtool.export.check import check_export
from ecgtool.export.driver import ExportResult, export, unavailable
from ecgtool.export.formats import FORMATS, ExportFormat
from ecgtool.export.onnx import input_shape, onnx2fp16, torch2onnx
from ecgtool.runtime.onnxruntime import read_metadata
from ecgtool.export.openvino import onnx2openvino

__all__ = ["FORMATS", "ExportFormat", "ExportResult", "check_export", "export", "input_shape", "onnx2fp16",
           "onnx2openvino", "read_metadata", "torch2onnx", "unavailable"]

from ecgtool.core.api import make_callable

make_callable(__name__, "ecgtool.export.driver:export")  # ecgtool.export(...) calls export
