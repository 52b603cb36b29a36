"""PyTorch -> ONNX (FP32, the source of every other format) and ONNX FP32 -> FP16.

Every ONNX file ecgtool writes carries the model's classes, its frozen preprocessing and its
provenance in `metadata_props` (`stamp_metadata`), so a lone .onnx predicts like its folder.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from ecgtool import __version__
from ecgtool.core.artifacts import model_folder_of
from ecgtool.core.errors import BadInput
from ecgtool.core.files import atomic_path, sha256
from ecgtool.core.names import (ONNX_INPUT, ONNX_META_CONFIG, ONNX_META_FORMAT, ONNX_META_PRECISION,
                                 ONNX_META_PREPROCESSING, ONNX_META_RR_HEAD, ONNX_META_SOURCE_SHA, ONNX_META_VERSION,
                                 ONNX_RR_INPUT)
from ecgtool.export.formats import FORMATS, OPSET



def input_shape(config: dict, data: str | os.PathLike | None = None) -> tuple[int, int]:
    """(channels, length in samples) the exported graph takes: from the config's preprocessing spec or
    extra, else the dataset, else 2000."""
    extra = config.get("extra") or {}
    length = (config.get("preprocessing") or {}).get("window_len") or extra.get("input_length") or extra.get("length")
    if not length and data is not None:
        from ecgtool.data.dataset import load_dataset

        length = load_dataset(data).signals.shape[2]
    return int(config.get("in_channels", 1)), int(length or 2000)


def fresh(target: Path, *sources: Path) -> bool:
    """True when `target` exists and is newer than every source (so it can be reused)."""
    return target.exists() and all(target.stat().st_mtime >= s.stat().st_mtime for s in sources if s.exists())


def torch2onnx(model_folder: str | os.PathLike, out: str | os.PathLike | None = None, opset: int = OPSET,
               length: int | None = None) -> Path:
    """Export a model folder to FP32 ONNX (input 'input' [batch, C, L], output 'logits'; batch axis dynamic).

    An RR-head model has a second input, 'rr_features' [batch, F] (core.names.ONNX_RR_INPUT): the
    baseline's window features, computed in numpy before the graph by every runner (and the bundle)."""
    import torch

    from ecgtool.models import load_model

    if opset < 17:
        raise BadInput(f"opset {opset}: ecgtool exports opset 17 or newer (TensorRT 10 and the QDQ tools need it)")
    folder = model_folder_of(model_folder)
    out = Path(out) if out else folder / FORMATS["onnx"].artifact
    model = load_model(folder)
    cfg = model.config.to_dict()
    channels, default_len = input_shape(cfg)
    from ecgtool.models.network import example_inputs

    dummy = example_inputs(model, length or default_len, batch=2, in_channels=channels)
    names = [ONNX_INPUT, ONNX_RR_INPUT][:len(dummy)]
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, dummy, str(tmp), dynamo=False, opset_version=opset, input_names=names,
                          output_names=["logits"], dynamic_axes={**{n: {0: "batch"} for n in names}, "logits": {0: "batch"}},
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


def stamp_metadata(path: str | os.PathLike, config: dict, fmt: str, precision: str, source: str | os.PathLike,
                   extra: dict[str, str] | None = None) -> None:
    """Write config (classes, preprocessing, network), format, precision, ecgtool version and the
    SHA-256 of the source (the weights the graph came from) into an ONNX file's metadata_props,
    plus `extra` keys (e.g. the INT8 target and form, core.names.ONNX_META_INT8_*)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    values = {ONNX_META_CONFIG: json.dumps(config, sort_keys=True), ONNX_META_FORMAT: fmt, ONNX_META_PRECISION: precision,
              ONNX_META_VERSION: __version__, ONNX_META_SOURCE_SHA: sha256(source)}
    if config.get("rr_features"):  # the second input, described for readers that do not know ecgtool configs
        values[ONNX_META_RR_HEAD] = json.dumps({"input": ONNX_RR_INPUT, **((config.get("extra") or {}).get("rr_head") or {})},
                                               sort_keys=True)
    if isinstance(config.get("preprocessing"), dict):
        values[ONNX_META_PREPROCESSING] = json.dumps(config["preprocessing"], sort_keys=True)
    values.update(extra or {})
    keep = [p for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
