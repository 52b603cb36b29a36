"""The RR-head hybrid (`train --rr-head`) through every hop: train, evaluate, prune, ONNX, INT8, bench, bundle."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tiny_dataset import make_tiny_dataset
from ecgtool.baseline.features import FEATURE_NAMES, HEAD_DIM, head_inputs, head_vector
from ecgtool.core.errors import BadInput
from ecgtool.core.names import BUNDLE_FEATURES, ONNX_META_INT8_FORM, ONNX_META_RR_HEAD, ONNX_RR_INPUT

#: a fresh interpreter in a bundle folder where torch, ecgtool and scikit-learn cannot be imported:
#: computes the bundle's logits of windows argv[1] (.npy) into argv[2]
BLOCKED_LOGITS = """
import importlib.abc, runpy, sys
BLOCKED = ('torch', 'ecgtool', 'sklearn')
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError(name + ' is not available on the device')
sys.meta_path.insert(0, Block())
import numpy as np
bundle = runpy.run_path('run.py', run_name='bundle_run')['Bundle']('.')
np.save(sys.argv[2], bundle.predict(np.load(sys.argv[1])))
assert not [m for m in sys.modules if m.split('.')[0] in BLOCKED]
"""


@pytest.fixture(scope="module", params=[None, "logreg-frozen"], ids=["rr-head", "rr-init-frozen"])
def hybrid(tmp_path_factory, request):
    """A trained hybrid, fresh or started from the RR logistic regression with its RR columns kept fixed
    (`--rr-init logreg-frozen`): every hop below must work for both."""
    from ecgtool.train.run import train_models

    root = tmp_path_factory.mktemp("rrhead")
    data = make_tiny_dataset(root / "data", per_class=12)
    train_models(data, ["se_resnet"], [18], root / "run", width=8, epochs=2, batch_size=16, device="cpu",
                 rr_head=True, threads=1, rr_init=request.param)
    return root / "run" / "se_resnet18", data


def test_head_vector_compresses_and_flags_missing():
    feats = np.array([[np.nan, 100.0, -3.0, 0.0]], dtype=np.float32)
    v = head_vector(feats)
    assert v.shape == (1, 8)
    np.testing.assert_allclose(v[0, :4], [0.0, np.log1p(100.0), -np.log1p(3.0), 0.0], rtol=1e-6)
    np.testing.assert_array_equal(v[0, 4:], [1, 0, 0, 0])


def test_config_records_the_head_and_training_used_it(hybrid):
    folder, _ = hybrid
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["rr_features"] == HEAD_DIM == 2 * len(FEATURE_NAMES)
    assert cfg["extra"]["rr_head"]["features"] == list(FEATURE_NAMES)
    from ecgtool.models import load_model

    model = load_model(folder)
    assert model.fc.in_features == model.head_bn.num_features + HEAD_DIM
    assert model.rr_norm.running_mean.abs().sum() > 0  # its BatchNorm saw the features in training
    import torch

    with pytest.raises(BadInput, match="second input"):
        model(torch.zeros(1, 1, 256))


def test_predictor_feeds_the_features_it_computes(hybrid):
    """The PyTorch predictor's logits are the network's on (signal, head_inputs(signal)), and change with them."""
    import torch

    from ecgtool.data.dataset import load_dataset
    from ecgtool.runtime import load

    folder, data = hybrid
    x = np.asarray(load_dataset(data).signals[:8], dtype=np.float32)
    pred = load(folder)
    rr = head_inputs(x, 100.0)
    with torch.no_grad():
        want = pred.model(torch.from_numpy(x), torch.from_numpy(rr)).numpy()
        other = pred.model(torch.from_numpy(x), torch.from_numpy(np.zeros_like(rr))).numpy()
    got = pred.predict(x)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(got - other).max() > 1e-4  # the features matter to the output


def test_prune_keeps_the_rr_input(hybrid, tmp_path):
    from ecgtool.compress.prune import prune_artifact
    from ecgtool.models import load_model

    folder, data = hybrid
    res = prune_artifact(folder, data, 0.5, out=tmp_path / "pruned", fine_tune_epochs=0, device="cpu")
    pruned = load_model(tmp_path / "pruned")
    assert pruned.config.rr_features == HEAD_DIM and pruned.rr_norm.num_features == HEAD_DIM
    assert pruned.fc.in_features == pruned.head_bn.num_features + HEAD_DIM
    assert res["after"]["params"] < res["before"]["params"]


def test_onnx_export_and_torch_free_bundle(hybrid, tmp_path):
    import onnx

    from ecgtool.data.dataset import load_dataset
    from ecgtool.deploy.package import package
    from ecgtool.export import export
    from ecgtool.runtime import load

    folder, data = hybrid
    fp32 = export(folder, "onnx", data=data).path
    model = onnx.load(str(fp32))
    assert [i.name for i in model.graph.input] == ["input", ONNX_RR_INPUT]
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta[ONNX_META_RR_HEAD])["dim"] == HEAD_DIM
    x = np.asarray(load_dataset(data).signals[:16], dtype=np.float32)
    ref = load(folder).predict(x)
    np.testing.assert_allclose(load(fp32).predict(x), ref, atol=1e-4)

    bundle = package(fp32, tmp_path / "bundle", precision="fp32")
    assert (bundle / BUNDLE_FEATURES).is_file()
    spec = json.loads((bundle / "model.json").read_text())
    assert spec["rr_input"]["name"] == ONNX_RR_INPUT and spec["rr_input"]["dim"] == HEAD_DIM
    assert "wfdb" in (bundle / "requirements.txt").read_text().split("#")[-1]
    np.save(tmp_path / "x.npy", x)
    done = subprocess.run([sys.executable, "-c", BLOCKED_LOGITS, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                          cwd=bundle, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), ref, atol=1e-4)


@pytest.mark.slow  # ~10 s of CPU (INT8 calibration, bench), over a minute on this loaded machine
def test_int8_keeps_the_rr_fusion_fp32_and_benches(hybrid, tmp_path):
    import onnx

    from ecgtool.bench.runner import bench
    from ecgtool.compress.gate import candidate_groups
    from ecgtool.compress.quantize import quantize_model
    from ecgtool.data.dataset import load_dataset
    from ecgtool.export import export
    from ecgtool.runtime import load

    folder, data = hybrid
    # the default keeps the RR fusion FP32 (gate.rr_fusion_nodes): the RR features reach the classifier unquantised
    int8 = export(folder, "onnx-int8", data=data, calib_size=32, threads=1).path
    # --keep-fp32 none: calibration feeds the second input too, and it is quantised like the signal
    bare = tmp_path / "bare.int8.onnx"
    quantize_model(folder / "model.onnx", data, bare, calib_size=32, keep_fp32=["none"], gate=False, threads=1,
                   calib_dir=tmp_path)
    assert any(n.op_type == "QuantizeLinear" and n.input[0] == ONNX_RR_INPUT for n in onnx.load(str(bare)).graph.node)
    q = onnx.load(str(int8))
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] == ONNX_RR_INPUT for n in q.graph.node)
    fusion = dict(candidate_groups(folder / "model.onnx"))["RR fusion"]
    assert [n.split("/")[1] for n in fusion] == ["rr_norm", "Concat", "fc"]
    assert any(n.op_type == "QuantizeLinear" for n in q.graph.node)  # the trunk is still INT8
    meta = {p.key: p.value for p in q.metadata_props}
    assert meta[ONNX_META_INT8_FORM].endswith("+fp32:rr-fusion")
    x = np.asarray(load_dataset(data).signals[:16], dtype=np.float32)
    assert np.isfinite(load(int8).predict(x)).all()
    result = bench([folder], data, threads=1, warmup=1, min_runs=3, min_time_s=0.01, throughput_batch=4)
    ok = [r for r in result.rows if r.get("status") == "ok"]
    assert {r["runtime"] for r in ok} >= {"PyTorch", "ONNX Runtime"} and all(r["macro_f1"] is not None for r in ok)


def test_other_formats_are_refused_in_one_line(hybrid):
    from click.testing import CliRunner

    from ecgtool.cli.main import main as cli

    folder, _ = hybrid
    res = CliRunner().invoke(cli, ["export", str(folder), "--format", "openvino-fp32"])
    assert res.exit_code == 2 and "RR-head model exports to onnx" in res.output
    assert "Traceback" not in res.output


def test_trunk_dropout_zeroes_whole_trunk_vectors_in_training_only():
    import torch

    from ecgtool.models import ModelConfig, build_model

    with pytest.raises(BadInput, match="rr_trunk_dropout"):
        ModelConfig(rr_features=4, rr_trunk_dropout=1.0).validate()
    m = build_model(ModelConfig(depth=18, width=4, rr_features=4, rr_trunk_dropout=0.5))
    feats = torch.rand(64, m.head_bn.num_features, 5)
    rr = torch.rand(64, 4)
    m.train()
    torch.manual_seed(0)
    with torch.no_grad():
        out = m.head(feats, rr)
        rr_only = m.fc(torch.cat([torch.zeros(64, m.head_bn.num_features), m.rr_norm(rr)], 1))
    dropped = torch.isclose(out, rr_only, atol=1e-6).all(1)
    assert 10 < int(dropped.sum()) < 54  # about half the records decide from their RR features alone
    m.eval()
    with torch.no_grad():
        assert torch.equal(m.head(feats, rr), m.head(feats, rr))
        assert not torch.isclose(m.head(feats, rr), m.fc(torch.cat([torch.zeros(64, m.head_bn.num_features),
                                                                    m.rr_norm(rr)], 1))).all(1).any()


# --- `--rr-init logreg`: the hybrid starts as the RR model -------------------------------------------

def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("drop", [None, "AF"])
def test_rr_init_predicts_what_the_logistic_regression_predicts(tmp_path, drop):
    """Untrained, the initialised hybrid's probabilities are scikit-learn's LogisticRegression's on the
    standardised RR features, whatever the signal (trunk columns 0); a class absent from train is never picked."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from ecgtool.data.dataset import load_dataset
    from ecgtool.models import ModelConfig, build_model
    from ecgtool.train.rr import dataset_rr_inputs, init_rr_head

    ds = load_dataset(make_tiny_dataset(tmp_path / "data", per_class=10))
    rr = dataset_rr_inputs(ds, 0, progress=False)
    train = ds.indices("train")
    if drop:  # a class the training split lacks
        train = train[ds.labels[train] != ds.classes.index(drop)]
    model = build_model(ModelConfig(depth=18, width=4, num_classes=len(ds.classes), rr_features=rr.shape[1]))
    info = init_rr_head(model, rr, ds.labels, train, "logreg")
    assert info["train_rows"] == len(train)
    # the reference: the same regression fitted here on the training rows standardised by hand
    x = rr[train].astype(np.float64)
    mean, sd = x.mean(0), np.sqrt(x.var(0) + 1e-5)
    ref = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit((x - mean) / sd, ds.labels[train])
    want = np.zeros((len(ds), len(ds.classes)))
    want[:, ref.classes_] = ref.predict_proba((rr - mean) / sd)
    model.eval()
    sig = torch.from_numpy(np.array(ds.signals, dtype=np.float32))
    with torch.no_grad():
        got = _softmax(model(sig, torch.from_numpy(rr)).double().numpy())
        noise = _softmax(model(torch.rand_like(sig), torch.from_numpy(rr)).double().numpy())
    np.testing.assert_allclose(got, want, atol=2e-4)
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    np.testing.assert_allclose(noise, got, atol=1e-6)  # the trunk's columns are 0: the signal does not matter yet
    if drop:
        assert info["absent_bias"] == [ds.classes.index(drop)] and (got.argmax(1) != ds.classes.index(drop)).all()


def test_rr_init_frozen_trains_the_trunk_only(tmp_path):
    import torch

    from ecgtool.data.dataset import load_dataset
    from ecgtool.models import ModelConfig, build_model
    from ecgtool.train.fit import train_step
    from ecgtool.train.rr import dataset_rr_inputs, init_rr_head

    ds = load_dataset(make_tiny_dataset(tmp_path / "data", per_class=6))
    rr = dataset_rr_inputs(ds, 0, progress=False)
    model = build_model(ModelConfig(depth=18, width=4, num_classes=len(ds.classes), rr_features=rr.shape[1]))
    init_rr_head(model, rr, ds.labels, ds.indices("train"), "logreg-frozen")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    idx = np.sort(ds.indices("train")[:16])
    x, y = torch.from_numpy(np.asarray(ds.signals[idx])), torch.from_numpy(ds.labels[idx])
    model.train()
    for _ in range(2):
        train_step(model, opt, torch.nn.CrossEntropyLoss(), x, y, idx=idx, rr=rr)
    trunk = model.head_bn.num_features
    after = model.state_dict()
    assert torch.equal(after["fc.weight"][:, trunk:], before["fc.weight"][:, trunk:])
    assert torch.equal(after["fc.bias"], before["fc.bias"])
    assert torch.equal(after["rr_norm.weight"], before["rr_norm.weight"])
    assert not torch.equal(after["fc.weight"][:, :trunk], before["fc.weight"][:, :trunk])  # the residual learns
    assert not torch.equal(after["stem.0.weight"], before["stem.0.weight"])


def test_rr_init_is_recorded_and_needs_the_rr_head(tmp_path):
    from click.testing import CliRunner

    from ecgtool.cli.main import main as cli
    from ecgtool.train.run import train_models

    data = make_tiny_dataset(tmp_path / "data", per_class=6)
    train_models(data, ["se_resnet"], [18], tmp_path / "run", width=4, epochs=1, batch_size=16, device="cpu",
                 rr_head=True, rr_init="logreg", threads=1)
    cfg = json.loads((tmp_path / "run" / "se_resnet18" / "config.json").read_text())
    assert cfg["extra"]["rr_init"] == "logreg"
    fit_info = cfg["extra"]["rr_init_fit"]
    assert fit_info["mode"] == "logreg" and fit_info["params"]["class_weight"] == "balanced"
    res = CliRunner().invoke(cli, ["train", "--data", str(data), "--arch", "se_resnet", "--depth", "18",
                                   "--out", str(tmp_path / "r2"), "--rr-init", "logreg"])
    assert res.exit_code == 2 and "apply to an RR-head model" in res.output and "Traceback" not in res.output


def test_adapt_runs_an_rr_head_model_and_keeps_its_rr_normalisation(hybrid, tmp_path):
    """`ecgtool adapt` on a hybrid: the trunk's BatchNorms are re-estimated with the RR inputs fed, rr_norm is
    kept, and the adapted folder scores as the runtime computes it (before: one line, 'needs its RR features')."""
    import torch
    from click.testing import CliRunner

    from ecgtool.cli.main import main as cli
    from ecgtool.data.dataset import load_dataset
    from ecgtool.evaluate.artifact import evaluate_artifact
    from ecgtool.models import load_model
    from ecgtool.train.adapt import adabn, rr_inputs

    folder, data = hybrid
    out = tmp_path / "adapted"
    r = CliRunner().invoke(cli, ["adapt", str(folder), "--data", str(data), "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    a, b = load_model(folder).state_dict(), load_model(out).state_dict()
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in changed)
    assert not any(k.startswith("rr_norm.") for k in changed)
    assert json.loads((out / "config.json").read_text())["extra"]["adapt"]["batchnorms"] == "trunk (rr_norm kept)"
    # the same statistics by hand: torch's exact averages over the train windows, RR inputs from runtime's code
    ds = load_dataset(data)
    idx = np.sort(ds.indices("train"))
    m = load_model(folder)
    adabn(m, ds.signals, idx, rr=rr_inputs(m, ds.signals, idx))
    for k, v in m.state_dict().items():
        assert torch.allclose(v.float(), b[k].float(), atol=1e-6), k
    metrics = json.loads((out / "metrics.json").read_text())["adapt"]
    assert metrics["macro_f1_adabn"] == pytest.approx(evaluate_artifact(out, data, threads=1)["macro_f1"])


def test_qat_of_an_rr_head_model_is_one_line_not_a_traceback(hybrid, tmp_path):
    from click.testing import CliRunner

    from ecgtool.cli.main import main as cli

    folder, data = hybrid
    r = CliRunner().invoke(cli, ["quantize", str(folder), "--data", str(data), "--qat", "--qat-epochs", "1",
                                 "--out", str(tmp_path / "q.onnx")])
    assert r.exit_code == 2 and "RR-head model" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "q.onnx").exists()
