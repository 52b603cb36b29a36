"""Candidate (e) of issue 10's AVX2 form: u8 activations x u8 weights ("u8u8", weight_type QUInt8, asymmetric
per-channel weights), built with ONNX Runtime's own `quantize_static` on ecgtool's calibration set, no gate, no
group FP32. On AVX2 ONNX Runtime's u8u8 kernels widen to 16 bit before multiplying (no saturating pair sum), so the
form should need neither reduce_range nor FP32 groups. This writes MODEL/model.int8-u8u8-nogate.onnx with the FP32
file's ecgtool metadata (form label `u8u8-asym-pc`), to be scored by bench_demo_int8.py / bench_bundle_int8.py
--int8 like the other candidates. Not a product form (ecgtool.compress.targets has none such).

    PYTHONPATH=toolkit python benchmarks/bench_u8u8.py MODEL_FOLDER DATA [--calib-dir calib]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import onnx

from ecgtool.compress.calibration import CalibrationReader, calibration_set
from ecgtool.compress.quantize import onnx_config
from ecgtool.core.names import ONNX_INPUT, ONNX_META_INT8_FORM, ONNX_META_INT8_FP32_NODES, ONNX_META_INT8_TARGET


def main() -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--calib-dir", default="calibration")
    args = ap.parse_args()
    src = args.model / "model.onnx"
    out = args.model / "model.int8-u8u8-nogate.onnx"
    cs = calibration_set(args.data, 256, 0, args.calib_dir, config=onnx_config(src))
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
        quantize_static(str(pre), str(out), CalibrationReader(cs.signals, input_name=ONNX_INPUT, batch_size=16),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
                        per_channel=True, reduce_range=False, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": False, "QuantizeBias": True})
    model = onnx.load(str(out))
    props = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    props.update({ONNX_META_INT8_TARGET: "x86-avx2 (u8u8 candidate)", ONNX_META_INT8_FORM: "u8u8-asym-pc",
                  ONNX_META_INT8_FP32_NODES: "[]"})
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(out))
    print(f"wrote {out} (calibration {cs.path}, {len(cs.labels)} records)")


if __name__ == "__main__":
    main()
