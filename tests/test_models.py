import pytest
import torch

from ecgtool.core.errors import BadInput
from ecgtool.models import ModelConfig, build_model, channel_plan, get_model, list_models, load_model, model_stats, save_model


def test_registry_holds_both_families_at_every_depth():
    names = set(list_models())
    for arch in ("se_resnet", "resnet"):
        for depth in (18, 34, 50, 101, 152):
            assert f"{arch}{depth}" in names


@pytest.mark.parametrize("name", list_models())
def test_every_model_runs_tiny_input_and_backpropagates(name):
    model = get_model(name, width=8)
    x = torch.randn(2, 1, 300)
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.sum().backward()
    grad = model.stem[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_se_is_the_only_difference_between_families():
    se, plain = get_model("se_resnet18", width=8), get_model("resnet18", width=8)
    assert any("se.fc1" in k for k in se.state_dict())
    assert not any(".se." in k for k in plain.state_dict())
    se_keys = {k for k in se.state_dict() if ".se." not in k}
    assert se_keys == set(plain.state_dict())


def test_options_input_channels_classes_and_any_length():
    model = get_model("se_resnet50", width=8, in_channels=12, num_classes=4, kernel_size=5)
    assert model(torch.randn(1, 12, 777)).shape == (1, 4)


def test_depth_grows_parameters_and_macs():
    stats = [model_stats(get_model(f"se_resnet{d}", width=8))["macs"] for d in (18, 34, 50, 101, 152)]
    assert stats == sorted(stats) and stats[0] > 0


def test_unknown_model_or_depth_is_bad_input():
    with pytest.raises(BadInput):
        get_model("se_resnet20")
    with pytest.raises(BadInput):
        ModelConfig(arch="vgg", depth=18).validate()


def test_save_and_load_round_trip_with_explicit_channel_plan(tmp_path):
    model = get_model("se_resnet18", width=8).eval()
    plan = channel_plan(model)
    cfg = ModelConfig.from_dict({**model.config.to_dict(), "channels": plan})
    rebuilt = build_model(cfg)
    rebuilt.load_state_dict(model.state_dict())
    save_model(tmp_path / "m", rebuilt, cfg)
    loaded = load_model(tmp_path / "m")
    x = torch.randn(1, 1, 400)
    assert torch.allclose(loaded(x), model(x), atol=1e-6)



def test_saved_weights_are_byte_identical_across_saves(tmp_path):
    """Hashes in manifests are reproducible: the same weights give the same safetensors bytes."""
    from safetensors import safe_open

    from ecgtool.models import get_model, load_model, save_model

    model = get_model("se_resnet18", width=8)
    a, b = save_model(tmp_path / "a", model), save_model(tmp_path / "b", model)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    with safe_open(str(a / "model.safetensors"), "pt") as f:
        assert f.metadata() == {"arch": "se_resnet", "depth": "18"}
    again = load_model(a)
    assert all((x == y).all() for x, y in zip(model.state_dict().values(), again.state_dict().values()))


@pytest.mark.parametrize("key,value", [("width", 10_000), ("kernel_size", 10_000_000), ("num_classes", 1),
                                       ("width", "64"), ("dropout", 1.5), ("se_reduction", 0), ("in_channels", True),
                                       ("classes", ["A"] * 7), ("extra", {"sampling_rate": 1e9}),
                                       ("extra", {"input_length": -5}), ("channels", {"stem": 8, "blocks": []})])
def test_absurd_config_values_are_refused_naming_the_key(tmp_path, key, value):
    """config.json has bounds: a hostile or broken one is one clear line (exit 2), not a 4 GB allocation."""
    import json

    from click.testing import CliRunner

    from ecgtool.cli.main import main
    from ecgtool.models import get_model, save_model

    folder = save_model(tmp_path / "m", get_model("se_resnet18", width=8))
    cfg = json.loads((folder / "config.json").read_text())
    cfg[key] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    r = CliRunner().invoke(main, ["--no-verify", "export", str(folder), "--format", "onnx"])
    assert r.exit_code == 2, r.output
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("ecgtool: error:")]
    assert len(line) == 1 and "config.json" in line[0] and key.split("_")[0] in line[0]
