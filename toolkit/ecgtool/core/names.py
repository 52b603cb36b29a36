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
PIPELINE_STATE = "pipeline.json"

#: prepared dataset
DATASET_META = "meta.json"

#: deploy bundle
BUNDLE_SPEC = "model.json"
BUNDLE_MODEL = "model.onnx"
BUNDLE_RUNNER = "run.py"
BUNDLE_PREPROCESS = "ecg_preprocess.py"
#: copies of data/stream.py (chunked reading, quality, streaming) and deploy/episodes.py (burden, episodes)
BUNDLE_STREAM = "ecg_stream.py"
BUNDLE_EPISODES = "ecg_episodes.py"
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
#: INT8 files: the target CPU/accelerator the form was chosen for, the form (ecgtool.compress.targets) and the
#: nodes the accuracy gate kept in FP32 (JSON list)
ONNX_META_INT8_TARGET = "ecgtool.int8_target"
ONNX_META_INT8_FORM = "ecgtool.int8_form"
ONNX_META_INT8_FP32_NODES = "ecgtool.int8_fp32_nodes"
