"""`train --rr-head --rr-bins N`: the RR features thermometer-coded against quantile bin edges of the training
rows, through every hop (config, predictor, prune, ONNX, INT8, the torch-free bundle) and the CLI's refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from test_rr_head import BLOCKED_LOGITS
from tiny_dataset import make_tiny_dataset
from ecgtool.baseline.features import FEATURE_NAMES, HEAD_DIM, bin_indicators, head_dim, head_inputs, head_vector
from ecgtool.core.errors import BadInput
from ecgtool.core.names import BUNDLE_FEATURES, ONNX_META_INT8_FORM, ONNX_META_RR_HEAD, ONNX_RR_INPUT

N_BINS = 6


def test_thermometer_count_is_scikit_learns_bin():
    """Per feature, the number of ones is the bin KBinsDiscretizer (fitted independently, same settings) puts
    the value in; NaN rows get no ones; head_vector keeps its first HEAD_DIM columns and appends the code."""
    from sklearn.preprocessing import KBinsDiscretizer

    from ecgtool.train.rr import BINS_PARAMS, fit_rr_bins

    rng = np.random.default_rng(0)
    feats = rng.gamma(2.0, 1.0, size=(200, len(FEATURE_NAMES))).astype(np.float32)
    feats[rng.random(feats.shape) < 0.1] = np.nan
    feats[:, 3] = 1.0  # a constant feature: no edges
    feats[:, 5] = np.round(feats[:, 5])  # ties: fewer distinct edges
    bins = fit_rr_bins(feats[:150], N_BINS)
    assert bins[3] == [] and all(e == sorted(e) and len(e) <= N_BINS - 1 for e in bins)
    code = bin_indicators(feats, bins)
    assert code.shape == (200, sum(len(e) for e in bins)) and set(np.unique(code)) <= {0.0, 1.0}
    col = 0
    for j, edges in enumerate(bins):
        if not edges:
            continue
        counts = code[:, col:col + len(edges)].sum(axis=1)
        ok = np.isfinite(feats[:, j])
        train = feats[:150, j][np.isfinite(feats[:150, j])][:, None]
        kb = KBinsDiscretizer(n_bins=N_BINS, subsample=None, **BINS_PARAMS).fit(train)
        np.testing.assert_array_equal(counts[ok], kb.transform(feats[ok, j][:, None].astype(np.float64))[:, 0])
        assert (counts[~ok] == 0).all()
        col += len(edges)
    v = head_vector(feats, bins)
    assert v.shape == (200, head_dim(bins)) and head_dim(bins) == HEAD_DIM + code.shape[1]
    np.testing.assert_array_equal(v[:, :HEAD_DIM], head_vector(feats))
    np.testing.assert_array_equal(v[:, HEAD_DIM:], code)


@pytest.fixture(scope="module")
def binned(tmp_path_factory):
    from ecgtool.train.run import train_models

    root = tmp_path_factory.mktemp("rrbins")
    data = make_tiny_dataset(root / "data", per_class=12)
    train_models(data, ["se_resnet"], [18], root / "run", width=8, epochs=2, batch_size=16, device="cpu",
                 rr_head=True, rr_init="logreg-frozen", rr_bins=N_BINS, threads=1)
    return root / "run" / "se_resnet18", data


def test_config_keeps_the_edges_and_the_predictor_codes_with_them(binned):
    import torch

    from ecgtool.data.dataset import load_dataset
    from ecgtool.runtime import load
    from ecgtool.baseline.cache import window_feature_table
    from ecgtool.train.rr import fit_rr_bins

    folder, data = binned
    cfg = json.loads((folder / "config.json").read_text())
    bins = cfg["extra"]["rr_head"]["bins"]
    ds = load_dataset(data)
    # the edges are the training rows' (fitted again here from the cached features)
    assert bins == fit_rr_bins(window_feature_table(ds, 0)[ds.indices("train")], N_BINS)
    assert cfg["extra"]["rr_bins"] == N_BINS and cfg["extra"]["rr_bins_fit"]["edges"] == sum(map(len, bins))
    assert cfg["rr_features"] == cfg["extra"]["rr_head"]["dim"] == head_dim(bins) > HEAD_DIM
    x = np.asarray(ds.signals[:8], dtype=np.float32)
    pred = load(folder)
    rr = head_inputs(x, 100.0, bins=bins)
    with torch.no_grad():
        want = pred.model(torch.from_numpy(x), torch.from_numpy(rr)).numpy()
    np.testing.assert_allclose(pred.predict(x), want, atol=1e-5)


def test_prune_keeps_the_binned_width(binned, tmp_path):
    from ecgtool.compress.prune import prune_artifact
    from ecgtool.models import load_model

    folder, data = binned
    prune_artifact(folder, data, 0.5, out=tmp_path / "pruned", fine_tune_epochs=1, device="cpu")
    pruned = load_model(tmp_path / "pruned")
    dim = json.loads((folder / "config.json").read_text())["rr_features"]
    assert pruned.config.rr_features == dim == pruned.rr_norm.num_features
    assert pruned.config.extra["rr_head"]["bins"] == json.loads((folder / "config.json").read_text())["extra"]["rr_head"]["bins"]


def test_onnx_int8_and_torch_free_bundle_code_the_same(binned, tmp_path):
    import onnx

    from ecgtool.data.dataset import load_dataset
    from ecgtool.deploy.package import package
    from ecgtool.export import export
    from ecgtool.runtime import load

    folder, data = binned
    dim = json.loads((folder / "config.json").read_text())["rr_features"]
    fp32 = export(folder, "onnx", data=data).path
    meta = {p.key: p.value for p in onnx.load(str(fp32)).metadata_props}
    assert json.loads(meta[ONNX_META_RR_HEAD])["dim"] == dim and json.loads(meta[ONNX_META_RR_HEAD])["bins"]
    x = np.asarray(load_dataset(data).signals[:16], dtype=np.float32)
    ref = load(folder).predict(x)
    np.testing.assert_allclose(load(fp32).predict(x), ref, atol=1e-4)

    bundle = package(fp32, tmp_path / "bundle", precision="fp32")
    assert (bundle / BUNDLE_FEATURES).is_file()
    assert json.loads((bundle / "model.json").read_text())["rr_input"]["dim"] == dim
    np.save(tmp_path / "x.npy", x)
    done = subprocess.run([sys.executable, "-c", BLOCKED_LOGITS, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                          cwd=bundle, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), ref, atol=1e-4)

    int8 = export(folder, "onnx-int8", data=data, calib_size=32, threads=1).path
    q = onnx.load(str(int8))
    # the RR fusion stays FP32 by default (compress.gate.rr_fusion_nodes); the trunk is INT8
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] == ONNX_RR_INPUT for n in q.graph.node)
    assert any(n.op_type == "QuantizeLinear" for n in q.graph.node)
    assert "+fp32:rr-fusion" in {p.key: p.value for p in q.metadata_props}[ONNX_META_INT8_FORM]
    q8 = load(int8).predict(x)
    assert q8.shape == ref.shape and np.isfinite(q8).all()


def test_a_config_whose_edges_do_not_match_its_width_is_refused(binned):
    from ecgtool.runtime.base import rr_head_inputs

    folder, data = binned
    cfg = json.loads((folder / "config.json").read_text())
    cfg["extra"]["rr_head"]["bins"][0] = cfg["extra"]["rr_head"]["bins"][0][:-1]
    with pytest.raises(BadInput, match="RR head of width"):
        rr_head_inputs(cfg, np.zeros((1, 1, 256), dtype=np.float32), folder)


def test_cli_refuses_bins_without_the_rr_head_or_under_two(tmp_path):
    from click.testing import CliRunner

    from ecgtool.cli.main import main as cli

    data = make_tiny_dataset(tmp_path / "data", per_class=6)
    base = ["train", "--data", str(data), "--arch", "se_resnet", "--depth", "18", "--out", str(tmp_path / "r")]
    res = CliRunner().invoke(cli, base + ["--rr-bins", "8"])
    assert res.exit_code == 2 and "apply to an RR-head model" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, base + ["--rr-head", "--rr-bins", "1"])
    assert res.exit_code == 2 and "--rr-bins 1: give 2 or more bins" in res.output and "Traceback" not in res.output
    assert [line for line in res.output.splitlines() if "error" in line] == [
        "ecgtool: error: --rr-bins 1: give 2 or more bins (0 for none)"]
