"""TensorRT 10+ engines from TensorRT-ready ONNX graphs, and the `trtexec` command that builds them elsewhere.

TensorRT is strongly typed here: the precision comes from the graph (FP16 graph -> FP16 engine, QDQ
graph with signed int8 and zero points of 0 -> INT8 engine); no builder precision flags, no calibrator.
The `tensorrt` module is imported lazily (the `[tensorrt]` extra) and a CUDA device is required; where
either is missing the caller gets BadInput saying which, after the ONNX and the command were written.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from ecgtool.core.files import atomic_path, write_bytes, write_json, write_text
from ecgtool.core.errors import BadInput, EcgtoolError
from ecgtool.runtime.tensorrt import ENGINE_SIDECAR_SUFFIX, require_tensorrt

TIMING_CACHE = "trt-timing.cache"
INPUT_NAME = "input"


def shape_arg(batch: int, channels: int, length: int) -> str:
    return f"{INPUT_NAME}:{batch}x{channels}x{length}"


def trtexec_command(onnx_path: Path, engine_path: Path, channels: int, length: int,
                    opt_batch: int = 1, max_batch: int = 64) -> str:
    """The exact trtexec call that builds `engine_path` from `onnx_path` (both beside the script)."""
    args = [
        "trtexec", f"--onnx={onnx_path.name}", "--stronglyTyped", f"--saveEngine={engine_path.name}",
        f"--minShapes={shape_arg(1, channels, length)}", f"--optShapes={shape_arg(opt_batch, channels, length)}",
        f"--maxShapes={shape_arg(max_batch, channels, length)}", f"--timingCacheFile={TIMING_CACHE}",
    ]
    return " ".join(shlex.quote(a) for a in args)


def write_trtexec_script(script: Path, onnx_path: Path, engine_path: Path, channels: int, length: int,
                         opt_batch: int = 1, max_batch: int = 64) -> Path:
    """A small shell script, run from anywhere, that builds the engine beside the ONNX with trtexec."""
    cmd = trtexec_command(onnx_path, engine_path, channels, length, opt_batch, max_batch)
    text = (
        "#!/bin/sh\n"
        "# Build the TensorRT engine on the target (Jetson / NVIDIA GPU with TensorRT 10+). Written by ecgtool.\n"
        "# Strongly typed: the precision comes from the ONNX graph itself, so no --fp16/--int8 flags.\n"
        'cd "$(dirname "$0")" || exit 1\n'
        f"exec {cmd}\n"
    )
    write_text(script, text)
    os.chmod(script, 0o755)
    return script


def build_engine(onnx_path: Path, engine_path: Path, channels: int, length: int,
                 opt_batch: int = 1, max_batch: int = 64, workspace_mb: int = 1024, precision: str = "fp32") -> Path:
    """Build and serialise a strongly typed TensorRT engine; reuse and refresh the timing cache beside it."""
    trt, _ = require_tensorrt(engine_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BadInput(f"{onnx_path}: TensorRT's ONNX parser rejects it ({errors})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    cache_path = engine_path.parent / TIMING_CACHE
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    profile.set_shape(network.get_input(0).name, (1, channels, length), (opt_batch, channels, length),
                      (max_batch, channels, length))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EcgtoolError(f"{onnx_path}: TensorRT failed to build an engine (see its log above)")
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(bytes(serialized))
    write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    write_json(Path(str(engine_path) + ENGINE_SIDECAR_SUFFIX), {"precision": precision, "source": onnx_path.name})
    return engine_path
