"""CUDA-only tests: TensorRT engines built from the TensorRT-ready ONNX, and the GPU predictors.

Each test skips with its reason where no CUDA device, no TensorRT or no CUDA build of onnxruntime exists
(TensorRT cannot be installed on the project's machines; see DESIGN.md).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import copy_trained

from ecgtool import runtime
from ecgtool.export import export

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def _needs_tensorrt() -> None:
    pytest.importorskip("tensorrt", reason="TensorRT not installed")


@pytest.fixture(scope="module")
def run(tmp_path_factory, trained_source):
    return copy_trained(trained_source, tmp_path_factory.mktemp("gpu"))


def _test_batch(data) -> np.ndarray:
    from ecgtool.data.dataset import load_dataset

    return np.asarray(load_dataset(data).split("test")[0][:16])


def test_torch_predictor_on_cuda_matches_cpu(run):
    folder, data = run
    x = _test_batch(data)
    cpu = runtime.load(folder).predict(x)
    gpu = runtime.load(folder, device="cuda").predict(x)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-3)


def test_onnxruntime_cuda_provider(run):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime build has no CUDA provider")
    folder, data = run
    path = export(folder, "onnx").path
    x = _test_batch(data)
    np.testing.assert_allclose(runtime.load(path, device="cuda").predict(x), runtime.load(folder).predict(x),
                               rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("fmt, min_agreement", [("tensorrt-fp32", 1.0), ("tensorrt-fp16", 0.95), ("tensorrt-int8", 0.9)])
def test_tensorrt_engine_builds_and_predicts(run, fmt, min_agreement):
    _needs_tensorrt()
    folder, data = run
    opts = {"calib_size": 42, "calib_dir": folder.parent / "calib"} if fmt.endswith("int8") else {}
    res = export(folder, fmt, data=data, **opts)
    assert res.path.suffix == ".engine" and res.path.exists()
    assert (folder / "trt-timing.cache").exists()
    pred = runtime.load(res.path)
    assert pred.kind == "tensorrt" and pred.precision == fmt.split("-")[1]
    x = _test_batch(data)
    out, ref = pred.predict(x), runtime.load(folder).predict(x)
    assert out.shape == ref.shape
    assert np.mean(out.argmax(1) == ref.argmax(1)) >= min_agreement
    if fmt == "tensorrt-fp32":
        np.testing.assert_allclose(out, ref, rtol=1e-2, atol=1e-2)
