"""Every file name ecgtool writes or looks for: one place, so no stage spells a name of its own.

Model folder: WEIGHTS + CONFIG (+ METRICS, HISTORY, CURVES, CONFUSION). Run folder: MANIFEST, RUN_JSON,
BENCH_* and REPORT_*. Exported files inside a model folder are named by the format table
(ecgtool.export.formats), not here.
"""

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
METRICS = "metrics.json"
HISTORY = "history.csv"
CURVES = "training.png"
CONFUSION = "confusion.png"
CHECKPOINT = "checkpoint.pt"
TEACHER_LOGITS = "teacher_logits.npy"

MANIFEST = "manifest.json"
MANIFEST_LOCK = ".manifest.lock"
RUN_JSON = "run.json"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
BENCH_JSON = "bench.json"
BENCH_CSV = "bench.csv"
BENCH_MD = "bench.md"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
#: the report's artifact table with every column (the page shows the columns the choice turns on)
REPORT_CSV = "report.csv"
PIPELINE_STATE = "pipeline.json"

#: prepared dataset
DATASET_META = "meta.json"

#: deploy bundle
BUNDLE_SPEC = "model.json"
BUNDLE_MODEL = "model.onnx"
BUNDLE_RUNNER = "run.py"
BUNDLE_PREPROCESS = "ecg_preprocess.py"
#: copies of data/stream.py (chunked reading, streaming), data/quality.py (the per-window signal quality gate,
#: imported by ecg_stream.py) and deploy/episodes.py (burden, episodes)
BUNDLE_STREAM = "ecg_stream.py"
BUNDLE_QUALITY = "ecg_quality.py"
BUNDLE_EPISODES = "ecg_episodes.py"
#: copy of baseline/features.py in the bundle of an RR-head model (its second input, computed in numpy)
BUNDLE_FEATURES = "ecg_features.py"

#: a bundle of a .tflite (LiteRT, microcontrollers): the model, and a copy of runtime/tflite_io.py that runs it
BUNDLE_TFLITE = "model.tflite"
BUNDLE_TFLITE_IO = "ecg_tflite.py"
PREDICTIONS = "predictions.json"

#: the RR baseline's folder
BASELINE_FEATURES = "features.npz"

#: in an OpenVINO IR folder: the precision and the compile options the IR needs
OPENVINO_SIDECAR = "ecgtool-openvino.json"

#: keys of the metadata_props every ONNX file ecgtool writes carries (values are strings; the config is JSON)
ONNX_META_CONFIG = "ecgtool.config"
#: the preprocessing spec alone (also inside the config), for readers that do not know ecgtool configs
ONNX_META_PREPROCESSING = "ecgtool.preprocessing"
ONNX_META_FORMAT = "ecgtool.format"
ONNX_META_PRECISION = "ecgtool.precision"
ONNX_META_VERSION = "ecgtool.version"
ONNX_META_SOURCE_SHA = "ecgtool.source_sha256"
#: RR-head models (`train --rr-head`): the graph's second input, and the metadata key describing it (JSON:
#: feature names, transform, width; ecgtool.baseline.features.HEAD_SPEC)
ONNX_INPUT = "input"
ONNX_RR_INPUT = "rr_features"
ONNX_META_RR_HEAD = "ecgtool.rr_head"
#: cache of the RR-head inputs of a prepared dataset's windows, per lead, beside its signals.npy
RR_HEAD_CACHE = "rr_head_features.npz"
#: INT8 files: the target CPU/accelerator the form was chosen for, the form (ecgtool.compress.targets) and the
#: nodes the accuracy gate kept in FP32 (JSON list)
ONNX_META_INT8_TARGET = "ecgtool.int8_target"
ONNX_META_INT8_FORM = "ecgtool.int8_form"
ONNX_META_INT8_FP32_NODES = "ecgtool.int8_fp32_nodes"
#: the accuracy gate's decision on validation (JSON: passed, limits, min_windows, reason; null when off)
ONNX_META_INT8_GATE = "ecgtool.int8_gate"

#: QAT files (`quantize --qat`): the number of QAT epochs run (absent in post-training INT8 files)
ONNX_META_INT8_QAT_EPOCHS = "ecgtool.int8_qat_epochs"

#: in a model folder, the QDQ ONNX of quantisation-aware training (`quantize --qat`), CPU forms and TensorRT's form
QAT_INT8 = "model.qat-int8.onnx"
QAT_TRT_INT8 = "model.qat-trt-int8.onnx"

#: beside a .tflite (LiteRT / TFLM): model.int8.tflite -> model.int8.litert.json (I/O scales and zero points,
#: measured arena, flash, op list, classes, preprocessing); and the C export folder for firmware beside it
LITERT_SIDECAR_SUFFIX = ".litert.json"
MCU_C_DIR_SUFFIX = "-c"  # model.int8.tflite -> model.int8-c/
MCU_MODEL_DATA_H = "model_data.h"
MCU_MODEL_DATA_CC = "model_data.cc"
MCU_README = "README.md"


def litert_sidecar(tflite):
    """The sidecar JSON of a .tflite file (a pathlib.Path)."""
    from pathlib import Path

    p = Path(tflite)
    return p.with_name(p.name[: -len(p.suffix)] + LITERT_SIDECAR_SUFFIX)


def mcu_c_dir(tflite):
    """The folder of the firmware C export beside a .tflite file."""
    from pathlib import Path

    p = Path(tflite)
    return p.with_name(p.name[: -len(p.suffix)] + MCU_C_DIR_SUFFIX)
