"""Structured pruning: every registered depth prunes, rebuilds from its config and exports to ONNX."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ecgtool.cli.main import main
from ecgtool.core.errors import BadInput
from ecgtool.models import build_model, channel_plan, get_model, list_models, load_model, model_stats, save_model
from ecgtool.compress.prune import check_ratio, prune_model

LENGTH = 256


def _conv_outs(model) -> dict[str, int]:
    return {name: m.out_channels for name, m in model.named_modules() if isinstance(m, torch.nn.Conv1d)}


def _onnx_logits(model, x: torch.Tensor, path) -> np.ndarray:
    import onnxruntime as ort

    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                      output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x.numpy()})[0]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript ONNX exporter says it is legacy
@pytest.mark.parametrize("name", list_models())
def test_every_model_prunes_rebuilds_and_exports(name, tmp_path):
    torch.manual_seed(0)
    model = get_model(name, width=16).eval()
    before_convs, before = _conv_outs(model), model_stats(model, length=LENGTH)
    fc_weight, fc_bias = model.fc.weight.detach().clone(), model.fc.bias.detach().clone()
    pruned = prune_model(model, torch.zeros(1, 1, LENGTH), 0.5).eval()

    after_convs = _conv_outs(pruned)
    assert after_convs.keys() == before_convs.keys()
    for layer, n in after_convs.items():
        if before_convs[layer] >= 8:
            assert n % 8 == 0 and n <= before_convs[layer], (layer, before_convs[layer], n)
    # stage widths 16/32/64/128 lose half their channels, so the stem and the last stage shrink
    assert after_convs["stem.0"] == 8 and pruned.fc.in_features == 64 * (4 if pruned.config.depth >= 50 else 1)
    # the classifier keeps every class: same bias, its weight is the original restricted to the kept inputs
    assert pruned.fc.out_features == 7 and torch.equal(pruned.fc.bias.detach(), fc_bias)
    kept = [int((fc_weight - col[:, None]).abs().sum(0).argmin()) for col in pruned.fc.weight.detach().T]
    assert len(set(kept)) == pruned.fc.in_features and torch.equal(fc_weight[:, kept], pruned.fc.weight.detach())
    assert model_stats(pruned, length=LENGTH)["params"] < 0.4 * before["params"]
    assert pruned.config.channels == channel_plan(pruned)

    x = torch.randn(3, 1, LENGTH)
    with torch.no_grad():
        ref = pruned(x)
    assert ref.shape == (3, 7) and torch.isfinite(ref).all()
    save_model(tmp_path / "m", pruned)
    loaded = load_model(tmp_path / "m")
    with torch.no_grad():
        assert torch.equal(loaded(x), ref)
    np.testing.assert_allclose(_onnx_logits(loaded, x, tmp_path / "m.onnx"), ref.numpy(), atol=1e-4, rtol=1e-4)


def test_magnitude_keeps_the_strongest_channels():
    model = get_model("resnet18", width=16).eval()
    with torch.no_grad():
        model.stem[0].weight[[1, 3, 5, 7, 9, 11, 13, 15]] *= 100.0
    strong = model.stem[0].weight.detach()[[1, 3, 5, 7, 9, 11, 13, 15]].clone()
    pruned = prune_model(model, torch.zeros(1, 1, LENGTH), 0.5)
    kept = pruned.stem[0].weight.detach()
    assert kept.shape[0] == 8
    assert torch.equal(kept, strong)


def test_taylor_global_iterative_pruning():
    torch.manual_seed(0)
    model = get_model("se_resnet18", width=16).eval()
    calib = [(torch.randn(4, 1, LENGTH), torch.randint(0, 7, (4,))) for _ in range(2)]
    with pytest.raises(ValueError):
        prune_model(get_model("se_resnet18", width=16), torch.zeros(1, 1, LENGTH), 0.5, importance="taylor")
    before = model_stats(model, length=LENGTH)["params"]
    pruned = prune_model(model, torch.zeros(1, 1, LENGTH), 0.5, importance="taylor", scope="global", steps=2,
                         calib=calib)
    plan = pruned.config.channels
    outs = [b["out"] for b in plan["blocks"]] + [m for b in plan["blocks"] for m in b["mid"]]
    assert all(c % 8 == 0 and c >= 8 for c in outs)
    assert model_stats(pruned, length=LENGTH)["params"] < 0.7 * before
    assert all(p.grad is None for p in pruned.parameters())
    x = torch.randn(2, 1, LENGTH)
    rebuilt = build_model(pruned.config)
    rebuilt.load_state_dict(pruned.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), pruned.eval()(x))


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.2, 1.5])
def test_ratio_outside_open_unit_interval_is_bad_input(ratio):
    with pytest.raises(BadInput, match="must be in"):
        check_ratio(ratio)


# --- the command, end to end on a tiny random prepared dataset -----------------------------------------

CLASSES = ["Normal", "AF", "AFL", "FAB", "SB", "ST", "PVC"]


@pytest.fixture()
def tiny_run(tmp_path):
    from ecgtool.data.dataset import write_dataset
    from ecgtool.data.splits import random_split

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(7), 10)
    signals = rng.standard_normal((len(labels), 1, LENGTH)).astype(np.float32) + labels[:, None, None] * 0.3
    records = [{"record_id": f"r{i}", "patient_id": f"p{i}", "label": CLASSES[y]} for i, y in enumerate(labels)]
    data = write_dataset(tmp_path / "data", signals, labels, CLASSES, records, random_split(labels, seed=0),
                         {"sampling_rate": 200, "source": "test"})
    torch.manual_seed(0)
    from ecgtool.data.dataset import load_dataset
    from ecgtool.data.preprocess import spec_from_meta

    model = get_model("se_resnet18", width=16, classes=CLASSES, preprocessing=spec_from_meta(load_dataset(data).meta),
                      extra={"input_length": LENGTH, "sampling_rate": 200})
    save_model(tmp_path / "run" / "se_resnet18", model)
    return tmp_path / "run" / "se_resnet18", data


def test_prune_command_end_to_end(tiny_run):
    model_dir, data = tiny_run
    res = CliRunner().invoke(main, ["prune", str(model_dir), "--data", str(data), "--ratio", "0.5", "--epochs", "1",
                                    "--batch-size", "16", "--quiet"])
    assert res.exit_code == 0, res.output
    out = model_dir.parent / "se_resnet18-pruned50"
    assert "after" in res.output and "ratio" in res.output
    metrics = json.loads((out / "metrics.json").read_text())
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["channels"]["stem"] == 8 and cfg["extra"]["ratio"] == 0.5
    assert cfg["extra"]["fine_tune_epochs_run"] == 1 and cfg["extra"]["parent"] == str(model_dir)
    assert cfg["extra"]["input_length"] == LENGTH  # export and predict read the input shape from here
    parent = json.loads((model_dir / "config.json").read_text())
    assert cfg["preprocessing"] == parent["preprocessing"] and cfg["preprocessing"]["window_len"] == LENGTH
    from ecgtool.export import input_shape

    assert input_shape(cfg) == (1, LENGTH)
    assert metrics["after"]["params"] < 0.4 * metrics["before"]["params"]
    assert metrics["after"]["macs"] < 0.4 * metrics["before"]["macs"]
    assert metrics["after"]["size_mb"] < metrics["before"]["size_mb"]
    assert 0.0 <= metrics["after"]["macro_f1"] <= 1.0
    assert (out / "history.csv").read_text().count("\n") == 2  # header + one fine-tuning epoch
    loaded = load_model(out)
    assert loaded.config.channels == channel_plan(loaded)
    manifest = json.loads((model_dir.parent / "manifest.json").read_text())["artifacts"]
    entry = manifest["se_resnet18-pruned50/model.safetensors"]
    assert entry["parent"] == "se_resnet18/model.safetensors" and entry["size_bytes"] == (out / "model.safetensors").stat().st_size
    # a second run does not silently replace the first
    again = CliRunner().invoke(main, ["prune", str(model_dir), "--data", str(data), "--ratio", "0.5", "--epochs", "0"])
    assert again.exit_code == 2 and "exists" in again.output


def _bad(args: list[str]) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["prune", *args])
    return res.exit_code, res.output


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_prune_bad_input_exits_2_and_writes_nothing(tiny_run, tmp_path):
    from ecgtool.data.dataset import write_dataset

    model_dir, data = tiny_run
    for ratio in ("0", "1", "1.5", "-0.5"):
        code, out = _bad([str(model_dir), "--data", str(data), "--ratio", ratio])
        assert code == 2 and "must be in (0, 1)" in out
    onnx = tmp_path / "m.onnx"
    torch.onnx.export(load_model(model_dir), (torch.zeros(1, 1, LENGTH),), str(onnx), dynamo=False, opset_version=17)
    code, out = _bad([str(onnx), "--data", str(data), "--ratio", "0.5"])
    assert code == 2 and "wrong kind of artifact for prune" in out and str(onnx) in out
    other = write_dataset(tmp_path / "other", np.zeros((6, 1, LENGTH), np.float32), np.array([0, 1, 2, 0, 1, 2]),
                          ["Normal", "AF", "PVC"], [{"record_id": str(i)} for i in range(6)],
                          {"train": np.arange(3), "val": np.array([3, 4]), "test": np.array([5])},
                          {"sampling_rate": 200})
    code, out = _bad([str(model_dir), "--data", str(other), "--ratio", "0.5"])
    assert code == 2 and "do not match the model's" in out
    assert not list(model_dir.parent.glob("se_resnet18-pruned*")) and not list(model_dir.parent.glob(".se_resnet18*"))


def test_prune_artifact_taylor_global_without_fine_tuning(tiny_run, tmp_path):
    from ecgtool.compress.prune import prune_artifact

    model_dir, data = tiny_run
    result = prune_artifact(model_dir, data, 0.5, out=tmp_path / "run" / "small", fine_tune_epochs=0,
                            importance="taylor", scope="global", steps=2)
    out = tmp_path / "run" / "small"
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["extra"]["importance"] == "taylor" and cfg["extra"]["scope"] == "global" and cfg["extra"]["steps"] == 2
    assert cfg["preprocessing"] == json.loads((model_dir / "config.json").read_text())["preprocessing"]
    assert not (out / "history.csv").exists() and result["fine_tune"]["epochs_run"] == 0
    # without fine-tuning the BatchNorm statistics are re-estimated, not the parent's kept channels
    parent_mean = load_model(model_dir).head_bn.running_mean
    assert not torch.isin(load_model(out).head_bn.running_mean, parent_mean).any()
    assert result["after"]["params"] < 0.7 * result["before"]["params"]
    x = torch.randn(2, 1, LENGTH)
    rebuilt = build_model(cfg)
    rebuilt.load_state_dict(load_model(out).state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), load_model(out)(x))
