"""ONNX (FP32 or QDQ INT8) -> OpenVINO IR; BF16 is a compile-time mode recorded in the IR folder's sidecar."""

from __future__ import annotations

import os
from pathlib import Path

from ecgtool.core.files import write_json
from ecgtool.core.names import OPENVINO_SIDECAR


def onnx2openvino(src: str | os.PathLike, out_xml: str | os.PathLike, precision: str = "fp32") -> Path:
    """OpenVINO IR (model.xml + model.bin) from an FP32 or QDQ INT8 ONNX file.

    Weights stay FP32 in the IR (compress_to_fp16=False). BF16 is not a storage type of the IR but an
    execution mode of the CPU plugin: the folder's sidecar JSON tells the loader to compile with
    INFERENCE_PRECISION_HINT=bf16. INT8 comes from the QDQ pairs, which become FakeQuantize ops.
    """
    import openvino as ov

    return _save(ov.convert_model(str(src)), out_xml, precision, src)


def nncf_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("nncf") is not None


def nncf2openvino(src: str | os.PathLike, out_xml: str | os.PathLike, calibration,
                  overflow_fix: str | None = None, int8_target: str | None = None) -> Path:
    """OpenVINO INT8 IR by NNCF's post-training quantiser (`nncf.quantize`, OpenVINO's own, defaults: mixed
    preset, fast bias correction) from an FP32 ONNX, calibrated on `calibration` signals [N, C, L].

    overflow_fix: NNCF's `OverflowFix` ("enable": 7-bit weights in every Conv/MatMul, "first_layer_only",
    NNCF's default, or "disable"), its answer to the same u8 x s8 16-bit saturation as ONNX Runtime's
    reduce_range on x86 without VNNI; None keeps NNCF's default. int8_target: the CPU target it was chosen for
    (compress.targets.NNCF_OVERFLOW_FIX), recorded in the sidecar with it."""
    import logging

    import nncf
    import numpy as np
    import openvino as ov

    logging.getLogger("nncf").setLevel(logging.ERROR)
    x = np.asarray(calibration, dtype=np.float32)
    data = nncf.Dataset([x[i:i + 1] for i in range(len(x))])
    advanced = ({} if overflow_fix is None else
                {"advanced_parameters": nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix(overflow_fix))})
    model = nncf.quantize(ov.convert_model(str(src)), data, subset_size=len(x), **advanced)
    fix = overflow_fix or "first_layer_only"
    return _save(model, out_xml, "int8", src, {"quantizer": f"nncf {nncf.__version__}", "calibration_records": len(x),
                                                "overflow_fix": fix, "int8_target": int8_target,
                                                "int8_form": f"nncf-overflow-fix-{fix}"})


def _save(model, out_xml: str | os.PathLike, precision: str, src: str | os.PathLike, extra: dict | None = None) -> Path:
    import openvino as ov

    out_xml = Path(out_xml)
    out_xml.parent.mkdir(parents=True, exist_ok=True)
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
        **(extra or {}),
    })
    return out_xml
