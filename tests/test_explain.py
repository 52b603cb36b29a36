"""Explanations: Grad-CAM on PyTorch folders, occlusion on any artifact, spans, PNGs, sanity checks."""

from __future__ import annotations

import numpy as np
import pytest

from deploy_fixtures import trained
from ecgtool.evaluate import explain as xai
from ecgtool.core.errors import BadInput


@pytest.fixture(scope="module")
def model_and_windows(tmp_path_factory):
    from ecgtool.data.dataset import load_dataset
    from ecgtool.runtime import load

    folder, data = trained(tmp_path_factory)
    ds = load_dataset(data)
    idx = np.sort(ds.indices("test"))[:6]
    return load(folder), np.asarray(ds.signals[idx], dtype=np.float32), folder


def test_gradcam_has_input_length_finite_and_varies(model_and_windows):
    predictor, x, _ = model_and_windows
    rel, method = xai.explain(predictor, x, method="gradcam")
    assert method == "gradcam" and xai.explain(predictor, x[:1])[1] == "occlusion"  # auto: occlusion localises
    assert rel.shape == (len(x), x.shape[-1])
    assert np.isfinite(rel).all()
    assert rel.min() >= 0 and np.allclose(rel.max(axis=1), 1.0)
    assert (rel.std(axis=1) > 0.01).all()  # not a constant curve
    assert not np.allclose(rel[0], rel[1], atol=0.05)  # depends on the window


def test_gradcam_changes_when_weights_are_randomised(model_and_windows):
    """Adebayo et al. 2018 model-randomisation check: an explanation that survives re-initialised weights
    explains the input, not the model."""
    import torch
    from scipy.stats import spearmanr

    from ecgtool.models import build_model

    predictor, x, _ = model_and_windows
    target = predictor.predict(x).argmax(1)
    trained_rel = xai.gradcam(predictor.model, x, target)
    torch.manual_seed(123)
    random_model = build_model(predictor.model.config).eval()
    random_rel = xai.gradcam(random_model, x, target)
    # a curve that went flat (all zero) under random weights shares nothing with the trained one: rho 0
    rho = [0.0 if min(a.std(), b.std()) == 0 else spearmanr(a, b).statistic for a, b in zip(trained_rel, random_rel)]
    assert np.mean(rho) < 0.5, rho  # measured: about 0.05 on these six windows


def test_occlusion_finds_the_evidence():
    """A classifier that looks only at samples 500-600: occlusion puts the relevance there."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0.4, 0.6, (2, 1, 2000)).astype(np.float32)
    x[:, 0, 540:560] = 1.0  # a spike the 'model' keys on

    def proba(b):
        score = b[:, 0, 500:600].max(axis=1) * 8 - 6
        p1 = 1 / (1 + np.exp(-score))
        return np.stack([1 - p1, p1], axis=1)

    rel = xai.occlusion(proba, x, target=[1, 1], span=80, stride=40)
    assert rel.shape == (2, 2000) and np.isfinite(rel).all()
    for r in rel:
        assert 460 <= int(np.argmax(r)) <= 640
        assert r[460:640].sum() > 0.95 * r.sum()
    spans = xai.top_spans(rel[0], fs=200, offset_s=10.0)
    assert spans and 12.3 <= spans[0]["start_s"] and spans[0]["end_s"] <= 13.2


def test_occlusion_on_onnx_artifact(model_and_windows, tmp_path):
    from ecgtool.export import torch2onnx
    from ecgtool.runtime import load

    predictor, x, folder = model_and_windows
    onnx_path = torch2onnx(folder, tmp_path / "model.onnx")
    onnx_pred = load(onnx_path)
    rel, method = xai.explain(onnx_pred, x[:2], method="auto", fs=200)
    assert method == "occlusion"
    assert rel.shape == (2, x.shape[-1]) and np.isfinite(rel).all()
    assert (rel.std(axis=1) > 0).all()
    with pytest.raises(BadInput, match="Grad-CAM needs a PyTorch model folder"):
        xai.explain(onnx_pred, x[:1], method="gradcam")


def test_top_spans_orders_by_mass():
    r = np.zeros(2000)
    r[200:260] = 1.0  # short, strong
    r[1000:1300] = 0.8  # long: more mass
    spans = xai.top_spans(r, fs=200, offset_s=20.0, k=2)
    assert [(s["start_s"], s["end_s"]) for s in spans] == [(25.0, 26.5), (21.0, 21.3)]
    assert xai.top_spans(np.zeros(100), fs=200) == []


def test_relevance_png(tmp_path):
    x = np.sin(np.linspace(0, 60, 2000))[None].astype(np.float32)
    rel = np.linspace(0, 1, 2000)
    path = xai.relevance_png(tmp_path / "w.png", x, rel, 200, 10.0, "rec 10-20 s: AF (p=0.90)", "gradcam")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000
    assert [p.name for p in tmp_path.iterdir()] == ["w.png"]  # no temporary file left
