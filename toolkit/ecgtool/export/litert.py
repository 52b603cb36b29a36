"""LiteRT (.tflite) export for microcontrollers: FP32, or full-integer INT8 with int8 input and output, run in TFLM.

Route (the one that works beside torch 2.13 on Python 3.11; onnx2tf does not, see README):
  model folder -> export.mcu_rewrite (BN folded, pre-activation BN as depthwise 1x1, lifted to 2-D)
  -> litert-torch (torch.export -> FP32 .tflite)
  -> ai-edge-quantizer recipe static_wi8_ai8 (per-channel int8 weights, int8 activations, int8 I/O),
     calibrated on compress.calibration's stratified training sample (the ONNX INT8 set) with ranges merged
     as overall min/max (the library's default, a moving average of per-sample ranges, under-estimates
     them with batch-1 calibration and saturates the logits)
  -> tensor names dropped, weights stored outside the flatbuffer (width >= 16) put back in, buffers 16-byte
     aligned (tflite-micro's align tool)
  -> TFLM: smallest arena measured (runtime.tflm.min_arena), checked against PyTorch on the test split.
Beside the .tflite: a sidecar JSON (core.names.litert_sidecar) and a C export for firmware (mcu_c_dir).
Needs the `[mcu]` extra.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ecgtool.core import ui
from ecgtool.core.artifacts import find_config
from ecgtool.core.errors import BadInput
from ecgtool.core.files import write_bytes, write_json, write_text
from ecgtool.core.manifest import record_artifact
from ecgtool.core.names import MCU_MODEL_DATA_CC, MCU_MODEL_DATA_H, MCU_README, WEIGHTS, litert_sidecar, mcu_c_dir
from ecgtool.export.check import checked
from ecgtool.export.mcu_rewrite import mcu_rewrite
from ecgtool.export.onnx import input_shape

#: TFLite builtin op -> its MicroMutableOpResolver method (tensorflow/tflite-micro,
#: tensorflow/lite/micro/micro_mutable_op_resolver.h). An op not here is refused by name.
RESOLVER = {
    "ADD": "AddAdd", "AVERAGE_POOL_2D": "AddAveragePool2D", "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize",
    "EXPAND_DIMS": "AddExpandDims", "FULLY_CONNECTED": "AddFullyConnected", "HARD_SWISH": "AddHardSwish",
    "LOGISTIC": "AddLogistic", "MAX_POOL_2D": "AddMaxPool2D", "MEAN": "AddMean", "MUL": "AddMul", "PAD": "AddPad",
    "PADV2": "AddPadV2", "QUANTIZE": "AddQuantize", "RELU": "AddRelu", "RESHAPE": "AddReshape",
    "SOFTMAX": "AddSoftmax", "SQUEEZE": "AddSqueeze", "SUM": "AddSum", "TRANSPOSE": "AddTranspose",
}
ARENA_NOTE = ("smallest arena in which the x86_64 TFLM interpreter allocates and invokes the model (16-byte "
              "steps); 64-bit pointers, so an upper bound for a 32-bit Cortex-M: re-check with "
              "MicroInterpreter::arena_used_bytes() on the target")


#: the top-level modules of the [mcu] extra the litert formats need
MCU_MODULES = ("litert_torch", "ai_edge_quantizer", "tflite_micro")


def missing_module() -> str | None:
    """The first module of the [mcu] extra that is not installed here, or None when the litert formats can be
    built. Found by importlib's finders without importing (importing litert_torch alone took 29 s and 630 MB
    at load 11); a module whose import is blocked (None in sys.modules) counts as missing."""
    import importlib.util

    for name in MCU_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):  # ValueError: sys.modules[name] is None or has no __spec__
            return name
    return None


def _require(where: str | Path = "model"):
    try:
        with _quiet():  # importing them logs (torchao's missing CUDA kernels, TensorFlow's oneDNN notice)
            import litert_torch  # noqa: F401
            from ai_edge_quantizer import quantizer  # noqa: F401
            from tflite_micro.python.tflite_micro import runtime  # noqa: F401
    except ImportError as exc:
        name = (exc.name or str(exc)).split(".")[0]
        raise BadInput(f"{where}: litert export needs the [mcu] extra: pip install -e '.[mcu]' ({name} missing)") from None


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in ("torch", "litert-torch", "ai-edge-quantizer", "ai-edge-litert", "tflite-micro"):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = None
    return out


# --- flatbuffer ---------------------------------------------------------------------------------------

def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    return fb


def op_counts(buf: bytes) -> dict[str, int]:
    """Builtin op name -> how many times the model's main subgraph uses it (sorted by name)."""
    fb = _schema()
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(buf, 0))
    counts: dict[str, int] = {}
    for op in m.subgraphs[0].operators:
        oc = m.operatorCodes[op.opcodeIndex]
        code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
        n = names.get(code, f"CUSTOM:{oc.customCode.decode() if oc.customCode else code}")
        counts[n] = counts.get(n, 0) + 1
    return dict(sorted(counts.items()))


def require_ops(ops: dict[str, int], where: str = "model") -> list[str]:
    """The MicroMutableOpResolver calls for `ops`; BadInput naming the first op TFLM has no kernel for here."""
    bad = [o for o in ops if o not in RESOLVER]
    if bad:
        raise BadInput(f"{where}: op {bad[0]} has no TensorFlow Lite Micro kernel that ecgtool registers "
                       f"(known: {', '.join(sorted(RESOLVER))})")
    return [RESOLVER[o] for o in ops]


def pack_inline(buf: bytes) -> bytes:
    """Drop tensor names (tens of KB of flash), put buffers stored outside the flatbuffer back in, and
    re-serialise with 16-byte aligned buffers (TFLM reads them in place from flash)."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper as aw

    fb = _schema()
    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(buf, 0))
    for sg in m.subgraphs:
        for t in sg.tensors:
            t.name = b""
    for bf in m.buffers:  # from width 16 up the converter appends weights after the flatbuffer
        if bf.offset:
            bf.data = np.frombuffer(buf[bf.offset:bf.offset + bf.size], np.uint8)
            bf.offset, bf.size = 0, 0
    b = flatbuffers.Builder(len(buf))
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "a.tflite"), os.path.join(d, "b.tflite")
        Path(src).write_bytes(bytes(b.Output()))
        with _quiet():
            aw.align_tflite_model(src, dst)
        return Path(dst).read_bytes()


#: where the converters' own output goes: ECGTOOL_CONVERTER_LOG=show prints it live (on stderr)
CONVERTER_LOG_ENV = "ECGTOOL_CONVERTER_LOG"


@contextlib.contextmanager
def _quiet():
    """TensorFlow's C++ logging, litert-torch's progress lines, tqdm bars and the libraries' warnings (~50
    lines per model) go to a temporary log, file descriptors 1 and 2 included; if the block fails, the log's
    last lines go to stderr before the error. ECGTOOL_CONVERTER_LOG=show sends them to stderr instead (the
    CLI's stdout is its result either way)."""
    import logging
    import warnings

    if os.environ.get(CONVERTER_LOG_ENV) == "show":
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    levels = {name: logging.getLogger(name).level for name in ("torchao", "absl", "tensorflow", "jax")}
    with tempfile.TemporaryFile("w+b") as log, open(log.fileno(), "w", buffering=1, closefd=False) as text:
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            for name in levels:
                logging.getLogger(name).setLevel(logging.ERROR)
            with warnings.catch_warnings(), contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                warnings.simplefilter("ignore")
                yield
        except BaseException:
            text.flush()
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[1], 2)
            log.seek(0)
            tail = log.read().decode("utf-8", "replace").splitlines()[-20:]
            if tail:
                print("litert: the converter's last output lines:\n  " + "\n  ".join(tail), file=sys.stderr)
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


# --- conversion ---------------------------------------------------------------------------------------

def _global_minmax(qsv: dict, new: dict) -> dict:
    """Merge calibration ranges as the min of minimums and max of maximums (TF's converter does this)."""
    if not qsv:
        return new
    return {"min": np.minimum(qsv["min"], new["min"]), "max": np.maximum(qsv["max"], new["max"])}


def to_fp32_tflite(net, length: int, channels: int = 1) -> bytes:
    """litert-torch conversion of a (rewritten) torch module with input [1, channels, length]."""
    import litert_torch
    import torch

    with _quiet(), tempfile.TemporaryDirectory() as d:
        edge = litert_torch.convert(net.eval(), (torch.zeros(1, channels, length),))
        out = os.path.join(d, "m.tflite")
        edge.export(out)
        return Path(out).read_bytes()


def quantize_int8(fp32: bytes, calib: np.ndarray) -> bytes:
    """ai-edge-quantizer static_wi8_ai8 (int8 weights per channel, int8 activations and I/O) over `calib`
    ([N, C, L] float32, one window per step), ranges merged as overall min/max."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import calibrator, quantizer, recipe, recipe_manager

    with _quiet():
        sig = Interpreter(model_content=fp32).get_signature_list()["serving_default"]["inputs"][0]
        data = {"serving_default": [{sig: np.ascontiguousarray(x[None], dtype=np.float32)} for x in calib]}
        rm = recipe_manager.RecipeManager()
        rm.load_quantization_recipe(recipe.static_wi8_ai8())
        cal = calibrator.Calibrator(fp32, num_threads=1, qsv_update_func=_global_minmax)
        cal.calibrate(data, rm)
        qt = quantizer.Quantizer(fp32)
        qt.load_quantization_recipe(recipe.static_wi8_ai8())
        return bytes(qt.quantize(cal.get_model_qsvs()).quantized_model)


def convert(model, length: int, precision: str, calib: np.ndarray | None = None, where: str = "model",
            channels: int = 1) -> tuple[bytes, dict]:
    """(.tflite bytes, info) of a torch ECGResNet: rewritten, converted, INT8-quantised when asked, packed."""
    import torch

    _require(where)
    net = mcu_rewrite(model, where)
    x = torch.rand(4, channels, length, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        rewrite_diff = float((net(x) - model.eval()(x)).abs().max())
    info: dict = {"rewrite_max_abs_diff": rewrite_diff}
    t = time.perf_counter()
    buf = to_fp32_tflite(net, length, channels)
    info["convert_s"] = round(time.perf_counter() - t, 2)
    if precision == "int8":
        t = time.perf_counter()
        buf = quantize_int8(buf, calib)
        info["quantize_s"] = round(time.perf_counter() - t, 2)
    buf = pack_inline(buf)
    info["ops"] = op_counts(buf)
    info["resolver"] = require_ops(info["ops"], where)
    return buf, info


# --- C export -----------------------------------------------------------------------------------------

def _c_str(s: str) -> str:
    return json.dumps(s)  # a valid C string literal for ASCII text


def write_c_export(folder: Path, buf: bytes, side: dict) -> list[Path]:
    """model_data.h / model_data.cc (the alignas(16) byte array and every constant firmware needs) and README.md."""
    i, o = side["input"], side["output"]
    classes = side["classes"]
    adds = " ".join(f"r.{a}();" for a in side["resolver"])
    h = f"""// Generated by ecgtool ({side['format']}) from {side['source']}. Do not edit.
#pragma once
#include <cstddef>
#include <cstdint>

// The .tflite flatbuffer; TFLM reads it in place (alignas(16) in model_data.cc).
extern const unsigned char g_ecg_model[];
extern const unsigned int g_ecg_model_len;

// Smallest tensor arena measured in the TFLM interpreter (x86_64; an upper bound on 32-bit targets).
constexpr size_t kEcgTensorArenaSize = {side['arena_bytes']};

// Input: [{', '.join(map(str, i['shape']))}] {i['dtype']}; q = round(x / scale) + zero_point, saturated.
constexpr int kEcgInputChannels = {i['shape'][1]};
constexpr int kEcgInputLength = {i['shape'][-1]};
constexpr float kEcgInputScale = {i['scale']!r}f;
constexpr int kEcgInputZeroPoint = {i['zero_point']};
// Output: [{', '.join(map(str, o['shape']))}] {o['dtype']} logits; logit = (q - zero_point) * scale.
constexpr float kEcgOutputScale = {o['scale']!r}f;
constexpr int kEcgOutputZeroPoint = {o['zero_point']};

constexpr int kEcgNumClasses = {len(classes)};
static const char* const kEcgClasses[kEcgNumClasses] = {{{', '.join(_c_str(c) for c in classes)}}};
// The preprocessing the model was trained with (apply it before quantising the input).
static const char kEcgPreprocessing[] = {_c_str(json.dumps(side['preprocessing'], sort_keys=True))};

// Ops the model uses: tflite::MicroMutableOpResolver<kEcgNumOps> resolver; EcgAddOps(resolver);
constexpr int kEcgNumOps = {len(side['resolver'])};
template <typename Resolver>
inline void EcgAddOps(Resolver& r) {{ {adds} }}
"""
    hexes = ",".join(("\n  " if k % 16 == 0 else "") + f"0x{b:02x}" for k, b in enumerate(buf))
    cc = (f'#include "{MCU_MODEL_DATA_H}"\n\nalignas(16) const unsigned char g_ecg_model[] = {{{hexes}\n}};\n'
          f"const unsigned int g_ecg_model_len = {len(buf)};\n")
    readme = f"""# {side['format']} for firmware (TensorFlow Lite Micro)

Model {len(buf)} bytes, tensor arena {side['arena_bytes']} bytes ({ARENA_NOTE}).
Flash estimate {side['flash_bytes']} bytes: {side['flash_note']}.
Classes: {', '.join(classes)}. Input {input_text(i)}.

Add `model_data.cc` to the firmware sources next to TFLM (github.com/tensorflow/tflite-micro; build it for
the target with CMSIS-NN kernels), then:

```c++
#include "model_data.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

alignas(16) static uint8_t tensor_arena[kEcgTensorArenaSize];
static tflite::MicroMutableOpResolver<kEcgNumOps> resolver;
EcgAddOps(resolver);
static tflite::MicroInterpreter interp(tflite::GetModel(g_ecg_model), resolver, tensor_arena, kEcgTensorArenaSize);
interp.AllocateTensors();            // then check interp.arena_used_bytes() on the target
int8_t* in = interp.input(0)->data.int8;
for (int k = 0; k < kEcgInputLength; ++k)  // x[k]: the preprocessed window (kEcgPreprocessing)
  in[k] = (int8_t)fmaxf(-128.f, fminf(127.f, roundf(x[k] / kEcgInputScale) + kEcgInputZeroPoint));
interp.Invoke();
int8_t* out = interp.output(0)->data.int8;   // argmax over kEcgNumClasses -> kEcgClasses[i]
```
"""
    folder.mkdir(parents=True, exist_ok=True)
    return [write_text(folder / MCU_MODEL_DATA_H, h), write_text(folder / MCU_MODEL_DATA_CC, cc),
            write_text(folder / MCU_README, readme)]


def input_text(i: dict) -> str:
    return f"[{', '.join(map(str, i['shape']))}] {i['dtype']}, scale {i['scale']:.6g}, zero point {i['zero_point']}"


# --- the builder of the format table ------------------------------------------------------------------

def build_litert(folder: Path, spec, opts: dict, files: list[Path]) -> Path:
    """Build litert-int8 / litert-fp32 in `folder`: .tflite, sidecar, C export; checked in TFLM and recorded."""
    from ecgtool.models import load_model
    from ecgtool.runtime import tflm

    _require(folder)
    config = find_config(folder)
    channels, length = input_shape(config, opts.get("data"))
    target = folder / spec.artifact
    calib_meta = None
    calib = None
    if spec.precision == "int8":
        if opts.get("data") is None:
            raise BadInput(f"{folder}: litert-int8 needs --data DIR (calibration set from its training split)")
        from ecgtool.compress.calibration import DEFAULT_DIR, DEFAULT_SEED, DEFAULT_SIZE, calibration_set

        cs = calibration_set(opts["data"], opts.get("calib_size", DEFAULT_SIZE), opts.get("seed", DEFAULT_SEED),
                             opts.get("calib_dir", DEFAULT_DIR), config=config)
        calib = cs.signals
        calib_meta = {"path": str(cs.path), "records": int(len(calib)), "seed": cs.meta.get("seed"),
                      "ranges": "overall min/max over the set"}
    ui.info(f"litert: converting {folder} ({spec.name}, input [1, {channels}, {length}])")
    buf, info = convert(load_model(folder), length, spec.precision, calib, str(folder), channels)
    it = tflm.interpreter(buf, 10 * len(buf) + (1 << 20), target)
    io = tflm.io_params(it)
    if spec.precision == "int8" and (io["input"]["dtype"], io["output"]["dtype"]) != ("int8", "int8"):
        raise BadInput(f"{target}: the converter left {io['input']['dtype']} input / {io['output']['dtype']} output "
                       "(expected int8 / int8)")
    x1 = tflm.quantise(np.zeros((1, channels, length), np.float32) + 0.5, io["input"]["scale"],
                       io["input"]["zero_point"], np.dtype(io["input"]["dtype"]))
    t = time.perf_counter()
    arena = tflm.min_arena(buf, x1, path=target)
    info["arena_search_s"] = round(time.perf_counter() - t, 2)
    side = {
        "format": spec.name, "precision": spec.precision, "source": str(folder / WEIGHTS),
        "model_bytes": len(buf), "arena_bytes": arena, "arena_note": ARENA_NOTE,
        "flash_bytes": len(buf) + tflm.RUNTIME_FLASH_BYTES, "flash_note": tflm.FLASH_NOTE,
        "input": io["input"], "output": io["output"], "ops": info["ops"], "resolver": info["resolver"],
        "classes": list(config.get("classes") or []), "preprocessing": config.get("preprocessing"),
        "config": config, "calibration": calib_meta, "rewrite_max_abs_diff": info["rewrite_max_abs_diff"],
        "timings_s": {k: v for k, v in info.items() if k.endswith("_s")}, "versions": versions(),
    }
    write_bytes(target, buf)
    sidecar = write_json(litert_sidecar(target), side)
    c_files = write_c_export(mcu_c_dir(target), buf, side)
    check = checked(target, folder, folder / WEIGHTS, opts, {"target": "litert", "arena_bytes": arena,
                                                             "flash_bytes": side["flash_bytes"]})
    for f in [sidecar, *c_files]:
        record_artifact(f, parent=target)
    files += [target, sidecar, *c_files]
    ui.info(f"litert: {target.name} {len(buf)} B, arena {arena} B, {sum(info['ops'].values())} ops "
            f"({', '.join(info['ops'])}); TFLM vs PyTorch argmax agreement {check['argmax_agreement']:.2%}")
    return target
