"""`import ecgtool`: the main functions by name, lazily (no torch at import), and predict_array."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import ecgtool
from ecgtool.core.errors import BadInput

NAMES = ("load", "train", "evaluate", "prune", "quantize", "export", "bench", "report", "predict", "package",
         "predict_array", "search", "pipeline")


def test_import_ecgtool_is_light_and_names_every_main_function():
    code = "import sys, ecgtool; print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'scipy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert set(NAMES) <= set(dir(ecgtool))
    for name in NAMES:
        assert callable(getattr(ecgtool, name)), name


def test_stage_names_stay_callable_after_their_subpackages_are_imported():
    import ecgtool.bench.runner  # noqa: F401  binds ecgtool.bench to the subpackage
    import ecgtool.train.run

    assert ecgtool.train.stage_function() is ecgtool.train.run.train_models
    assert ecgtool.bench.stage_function() is ecgtool.bench.runner.bench
    with pytest.raises(AttributeError):
        ecgtool.no_such_function  # noqa: B018


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from tiny_run import make_dataset

    root = tmp_path_factory.mktemp("api")
    data = make_dataset(root / "data", per_class=6)
    ecgtool.train(data, ["se_resnet"], [18], root / "run", width=8, epochs=1, device="cpu", threads=1)
    return root / "run" / "se_resnet18"


def test_predict_array_gives_what_predict_gives_for_the_same_record(model, tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(0, 25, 1 / 360)
    signal = np.sin(2 * np.pi * 1.2 * t) ** 31 + 0.02 * rng.standard_normal(len(t))  # 25 s, 360 Hz
    np.save(tmp_path / "rec.npy", signal)
    from_file = ecgtool.predict(model, [tmp_path / "rec.npy"], fs=360)[0]
    predictor = ecgtool.load(model)
    for m in (model, predictor):
        got = ecgtool.predict_array(m, signal, 360)
        assert got["windows"] == from_file["windows"] and len(got["windows"]) == 2
        assert {k: v for k, v in got.items() if k != "record"} == {k: v for k, v in from_file.items() if k != "record"}
    two_rows = np.stack([np.zeros_like(signal), signal])
    assert ecgtool.predict_array(predictor, two_rows, 360, lead=1)["windows"] == from_file["windows"]
    with pytest.raises(BadInput, match="too short"):
        ecgtool.predict_array(predictor, signal[:360], 360)
    with pytest.raises(BadInput, match="rows"):
        ecgtool.predict_array(predictor, two_rows, 360)
