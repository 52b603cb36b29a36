"""runtime.load on every artifact kind: same predict(batch) -> logits, kind/precision/classes, parity, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import copy_trained
from tiny_dataset import LENGTH

from ecgtool import runtime
from ecgtool.core.errors import BadInput
from ecgtool.export import export

ARTIFACTS = {  # path in the model folder -> (kind, precision, tolerance on max |logit - PyTorch logit|)
    "model.onnx": ("onnxruntime", "fp32", 1e-4),
    "model.fp16.onnx": ("onnxruntime", "fp16", 0.05),
    "model.int8.onnx": ("onnxruntime", "int8", None),
    "openvino-fp32/model.xml": ("openvino", "fp32", 1e-4),
    "openvino-bf16/model.xml": ("openvino", "bf16", 0.5),
    "openvino-int8/model.xml": ("openvino", "int8", None),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, trained_source):
    folder, data = copy_trained(trained_source, tmp_path_factory.mktemp("runtime"))
    # openvino-int8 is converted from the symmetric graph (model.trt-int8.onnx), so onnx-int8 is its own export
    for fmt in ("onnx", "onnx-fp16", "onnx-int8", "openvino-fp32", "openvino-bf16", "openvino-int8"):
        export(folder, fmt, data=data, calib_size=42, calib_dir=folder.parent / "calib") if fmt.endswith("int8") \
            else export(folder, fmt, data=data)
    return folder, data


def test_every_kind_loads_and_predicts_like_pytorch(exported):
    folder, data = exported
    from ecgtool.data.dataset import load_dataset

    x = np.asarray(load_dataset(data).split("test")[0][:16])
    torch_pred = runtime.load(folder, threads=1)
    assert runtime.artifact_kind(folder) == "pytorch" and torch_pred.precision == "fp32"
    ref = torch_pred.predict(x)
    for rel, (kind, precision, tol) in ARTIFACTS.items():
        path = folder / rel
        assert runtime.artifact_kind(path) == kind, rel
        pred = runtime.load(path, threads=1)
        assert (pred.kind, pred.precision) == (kind, precision), rel
        assert pred.classes == torch_pred.classes and pred.config["depth"] == 18, rel
        out = pred.predict(x)
        assert out.shape == ref.shape and out.dtype == np.float32 and np.isfinite(out).all(), rel
        agree = np.mean(out.argmax(1) == ref.argmax(1))
        if tol is not None:
            assert np.abs(out - ref).max() < tol * max(1.0, np.abs(ref).max()), rel
        assert agree >= 0.85, (rel, agree)


def test_openvino_predictor_takes_any_batch_size(exported):
    folder, _ = exported
    pred = runtime.load(folder / "openvino-fp32" / "model.xml", threads=1)
    x = np.random.default_rng(0).standard_normal((5, 1, LENGTH)).astype(np.float32)
    one_by_one = np.concatenate([pred.predict(x[i:i + 1]) for i in range(5)])
    np.testing.assert_allclose(pred.predict(x), one_by_one, rtol=1e-4, atol=1e-4)


def test_wrong_input_length_is_bad_input(exported):
    folder, _ = exported
    for rel in ("model.onnx", "openvino-fp32/model.xml"):
        pred = runtime.load(folder / rel)
        with pytest.raises(BadInput, match="expects input length 256, got 300"):
            pred.predict(np.zeros((1, 1, 300), dtype=np.float32))


def test_corrupt_or_unknown_files_are_bad_input(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(BadInput, match=r"broken\.onnx: not a readable ONNX file"):
        runtime.load(bad)
    xml = tmp_path / "model.xml"
    xml.write_text("<net>")
    xml.with_suffix(".bin").write_bytes(b"")
    with pytest.raises(BadInput, match=r"model\.xml: OpenVINO cannot load it"):
        runtime.load(xml)
    other = tmp_path / "weights.pt"
    other.write_bytes(b"x")
    with pytest.raises(BadInput, match="not an artifact ecgtool can run"):
        runtime.load(other)


def test_engine_without_tensorrt_or_cuda_says_which(tmp_path):
    engine = tmp_path / "model.int8.engine"
    engine.write_bytes(b"not an engine")
    assert runtime.artifact_kind(engine) == "tensorrt"
    try:
        import tensorrt  # noqa: F401
        import torch

        if torch.cuda.is_available():
            pytest.skip("TensorRT and CUDA present: engine tests live in test_gpu.py")
        reason = "skipped: no CUDA device"
    except ImportError:
        reason = "skipped: TensorRT not installed"
    with pytest.raises(BadInput, match=reason):
        runtime.load(engine)


class _Recorder:
    """A predictor that logs the batch sizes it is called with (logits: the window's mean, repeated)."""

    def __init__(self, score_batch=None):
        self.score_batch, self.calls = score_batch, []

    def predict(self, x):
        self.calls.append(len(x))
        return np.repeat(x.mean(axis=(1, 2))[:, None], 3, axis=1)


def test_scoring_calls_a_one_window_predictor_one_window_at_a_time():
    """evaluate, bench, predict, the export check and the gate score through predict_in_batches /
    predict_batches, which never hand a predictor more windows than its score_batch (OpenVINO: 1)."""
    from ecgtool.evaluate.artifact import predict_batches
    from ecgtool.runtime.base import predict_in_batches
    from ecgtool.runtime.openvino import OpenVinoPredictor

    x = np.random.default_rng(0).standard_normal((10, 1, 8)).astype(np.float32)
    one, many = _Recorder(score_batch=1), _Recorder()
    np.testing.assert_array_equal(predict_in_batches(one, x, 4), predict_in_batches(many, x, 4))
    assert one.calls == [1] * 10 and many.calls == [4, 4, 2]
    one.calls = []
    assert predict_batches(one, x, np.arange(10), batch_size=256).shape == (10, 3) and one.calls == [1] * 10
    assert OpenVinoPredictor.score_batch == 1

