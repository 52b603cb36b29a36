"""`ecgtool adapt`: AdaBN changes only BatchNorm statistics, calibration biases ship in the weights,
unlabelled datasets (`data import records`) adapt but are refused by scoring, lineage is recorded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import copy_trained, shared_data
from ecgtool.core.errors import BadInput
from ecgtool.core.files import read_json, sha256
from ecgtool.data.dataset import load_dataset, write_dataset
from ecgtool.models import load_model
from ecgtool.train.adapt import adapt_model, fit_biases


def _shifted(data, out, scale=0.5, offset=0.3, unlabelled=False):
    """A copy of a dataset as another device would record it (gain and offset), optionally without labels."""
    ds = load_dataset(data)
    x = np.asarray(ds.signals) * scale + offset
    y = np.full(len(ds.labels), -1) if unlabelled else ds.labels
    splits = {"train": np.arange(len(y)), "val": [], "test": []} if unlabelled else ds.splits
    return write_dataset(out, x, y, ds.classes, ds.records, splits, {"sampling_rate": ds.sampling_rate})


def test_adabn_changes_only_batchnorm_statistics_and_records_lineage(trained_source, tmp_path):
    model, data = copy_trained(trained_source, tmp_path)
    target = _shifted(data, tmp_path / "target")
    s = adapt_model(model, target, tmp_path / "run" / "adapted")
    a, b = load_model(model).state_dict(), load_model(tmp_path / "run" / "adapted").state_dict()
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in changed)
    extra = read_json(tmp_path / "run" / "adapted" / "config.json")["extra"]["adapt"]
    assert extra["parent_sha256"] == sha256(model / "model.safetensors") and extra["split"] == "train"
    assert extra["windows"] == len(load_dataset(target).splits["train"])
    manifest = read_json(tmp_path / "run" / "manifest.json")
    entry = next(v for k, v in manifest["artifacts"].items() if k.endswith("adapted/model.safetensors"))
    assert entry["parent"].endswith("se_resnet18/model.safetensors")
    # a gain/offset shift breaks the source statistics; AdaBN recovers most of it
    assert s["macro_f1_adabn"] > s["macro_f1_before"]


def test_unlabelled_dataset_adapts_but_scoring_refuses_it(trained_source, tmp_path):
    from ecgtool.evaluate.artifact import evaluate_artifact

    model, data = copy_trained(trained_source, tmp_path)
    target = _shifted(data, tmp_path / "target", unlabelled=True)
    s = adapt_model(model, target, tmp_path / "adapted")
    assert s["split"] == "all" and s["macro_f1_before"] is None
    with pytest.raises(BadInput, match="unlabelled"):
        evaluate_artifact(tmp_path / "adapted", target, split="all")
    with pytest.raises(BadInput, match="needs labelled"):
        adapt_model(model, target, tmp_path / "again", calibrate=10)


def test_calibration_biases_are_folded_into_the_classifier(trained_source, tmp_path):
    from ecgtool.evaluate.artifact import evaluate_artifact

    model, data = copy_trained(trained_source, tmp_path)
    s = adapt_model(model, data, tmp_path / "cal", calibrate=40)
    biases = np.array(list(s["calibration"]["biases"].values()))
    before = load_model(model)
    after = load_model(tmp_path / "cal")
    # the classifier bias moved by exactly the stored biases (up to float32)
    bn_only = adapt_model(model, data, tmp_path / "bn")
    assert np.allclose((after.fc.bias - load_model(tmp_path / "bn").fc.bias).detach().numpy(), biases, atol=1e-5)
    assert torch.equal(after.fc.weight, before.fc.weight)
    assert s["calibration"]["macro_f1_after"] >= s["calibration"]["macro_f1_before"]
    # the adapted folder is an ordinary artifact: evaluate reads it and sees the calibrated F1
    assert evaluate_artifact(tmp_path / "cal", data)["macro_f1"] == pytest.approx(s["macro_f1_after"])
    assert bn_only["calibration"] is None
    # and the biases travel into ONNX with no code of their own: ONNX Runtime gives the torch logits
    from ecgtool.export import export
    from ecgtool.runtime import load

    onnx = export(tmp_path / "cal", "onnx", data=data)
    x = np.asarray(load_dataset(data).signals[:8], dtype=np.float32)
    with torch.no_grad():
        ref = after(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(load(onnx.path).predict(x), ref, atol=1e-4)


def test_fit_biases_corrects_a_prior_shift():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    logits = np.eye(3)[y] * 1.0 + rng.normal(0, 0.3, (300, 3))
    logits[:, 0] += 2.0  # a model that over-calls class 0 on this device
    bias, before, after = fit_biases(logits, y, 3)
    assert after > before + 0.2 and bias[0] < bias[1] and bias[0] < bias[2]


def test_cli_adapt_and_bad_input(trained_source, tmp_path):
    from ecgtool.cli.main import main as cli

    model, data = copy_trained(trained_source, tmp_path)
    r = CliRunner().invoke(cli, ["adapt", str(model), "--data", str(data), "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "wrote" in r.output and (tmp_path / "a" / "model.safetensors").exists()
    r = CliRunner().invoke(cli, ["adapt", str(model), "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_import_records_makes_an_unlabelled_dataset(tmp_path):
    from ecgtool.data.importers import import_dataset

    src = shared_data("mitdb")
    out = import_dataset("records", src, tmp_path / "u", records=["100"])
    ds = load_dataset(out)
    assert (ds.labels == -1).all() and len(ds.splits["train"]) == len(ds) > 100
    assert ds.meta["unlabelled"] is True and ds.meta["counts"]["all"]["unlabelled"] == len(ds)
    with pytest.raises(BadInput, match="unlabelled"):
        from ecgtool.train.fit import check_splits

        check_splits(ds)


def test_cinc2017_header_row_is_not_a_record(tmp_path):
    from ecgtool.data.importers import cinc2017

    (tmp_path / "REFERENCE.csv").write_text("Record,Label\nA00001,N\nA00002,A\n")
    (tmp_path / "A00001.hea").write_text("")
    assert cinc2017.reference(tmp_path) == {"A00001": "N", "A00002": "A"}
    assert "Record" not in cinc2017.list_records(tmp_path)
    # without a header row the first record is kept
    (tmp_path / "REFERENCE.csv").write_text("A00001,N\nA00002,A\n")
    assert len(cinc2017.reference(tmp_path)) == 2
