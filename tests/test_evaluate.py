"""Metrics against hand-computed cases, class mapping across datasets, and `ecgtool evaluate`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ecgtool.core.files import read_json
from ecgtool.cli.main import main
from ecgtool.core.errors import BadInput
from ecgtool.evaluate.metrics import compute_metrics, confusion_png, map_classes
from ecgtool.evaluate.artifact import evaluate_artifact
from ecgtool.models import get_model, save_model
from tiny_dataset import make_tiny_dataset


def test_metrics_match_hand_computed_case():
    m = compute_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(3 / 5)
    # a: P 1/2 R 1/2 F1 1/2; b: P 2/3 R 1 F1 4/5; c: F1 0
    assert m["per_class"]["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3) and m["per_class"]["b"]["f1"] == pytest.approx(0.8)
    assert m["per_class"]["c"]["f1"] == 0.0
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0) / 3)
    assert m["weighted_f1"] == pytest.approx((2 * 0.5 + 2 * 0.8) / 5)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_prediction_of_class_absent_in_data_is_an_error_but_not_averaged():
    m = compute_metrics([0, 0, 1, 1], [0, 2, 1, 1], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2)  # a: P 1, R 1/2; b perfect; c has no support
    assert m["per_class"]["c"]["support"] == 0 and m["confusion_matrix"][0][2] == 1


def test_map_classes_by_name():
    mp = map_classes(["Normal", "AF", "PVC"], ["Normal", "AF", "AFL"])
    assert mp.to_model.tolist() == [0, 1, -1]
    assert mp.missing_in_model == ["AFL"] and mp.missing_in_data == ["PVC"]
    assert map_classes(["AF", "Normal"], ["Normal", "AF"]).to_model.tolist() == [1, 0]
    with pytest.raises(BadInput, match="no class in common"):
        map_classes(["SB"], ["Normal", "AF"], source="other")


def _always(folder, predicted: str, classes: list[str]):
    """A model folder whose network predicts `predicted` for every input (zero weights, one large bias)."""
    model = get_model("resnet18", width=8, num_classes=len(classes), classes=classes)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.zero_()
        model.fc.bias[classes.index(predicted)] = 5.0
    save_model(folder, model)
    return folder


def test_evaluate_across_datasets_excludes_unknown_classes(tmp_path):
    data = make_tiny_dataset(tmp_path / "other", per_class=10, classes=["Normal", "AF", "AFL"], length=128)
    folder = _always(tmp_path / "m", "AF", ["AF", "Normal", "PVC"])
    m = evaluate_artifact(folder, data, split="all")
    assert m["classes_missing_in_model"] == ["AFL"] and m["classes_missing_in_data"] == ["PVC"]
    assert m["excluded_records"] == {"AFL": 10} and m["n"] == 20
    assert m["classes"] == ["AF", "Normal", "PVC"]
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["per_class"]["AF"]["recall"] == 1.0 and m["per_class"]["Normal"]["recall"] == 0.0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)


def test_map_classes_leaves_out_classes_the_model_never_trained_on():
    mp = map_classes(["Normal", "AF", "PVC"], ["Normal", "AF", "PVC"], trained={"Normal", "AF"})
    assert mp.to_model.tolist() == [0, 1, -1] and mp.untrained_in_model == ["PVC"] and mp.missing_in_model == []
    assert map_classes(["Normal", "AF"], ["AF"], trained=None).untrained_in_model == []  # unknown: all count
    with pytest.raises(BadInput, match="never trained on: AF"):
        map_classes(["Normal", "AF"], ["AF"], source="other", trained={"Normal"})


def test_evaluate_leaves_out_classes_with_no_training_windows_and_says_so(tmp_path):
    """A model folder records its training counts (config.json extra.train_counts); a class with none is one
    it never learnt: its records are left out of the macro-F1 like an unknown class's, and the CLI says so."""
    from ecgtool.core.artifacts import trained_classes

    classes = ["AF", "Normal", "PVC"]
    data = make_tiny_dataset(tmp_path / "other", per_class=10, classes=["Normal", "AF", "PVC"], length=128)
    model = get_model("resnet18", width=8, num_classes=3, classes=classes)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.zero_()
        model.fc.bias[0] = 5.0  # always AF
    model.config.extra["train_counts"] = {"AF": 40, "Normal": 60, "PVC": 0}
    save_model(tmp_path / "m", model)
    assert trained_classes(read_json(tmp_path / "m" / "config.json")) == {"AF", "Normal"}
    m = evaluate_artifact(tmp_path / "m", data, split="all")
    assert m["classes_untrained_in_model"] == ["PVC"] and m["excluded_records"] == {"PVC": 10} and m["n"] == 20
    assert m["classes_missing_in_data"] == []  # the data has PVC; it is left out, not missing
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)  # AF: P 1/2, R 1; Normal 0; PVC not averaged
    res = CliRunner().invoke(main, ["evaluate", str(tmp_path / "m"), "--data", str(data), "--split", "all"])
    assert res.exit_code == 0, res.output
    assert "classes the model never trained on: PVC (10 records excluded)" in res.output
    assert "missing in data" not in res.output
    every = evaluate_artifact(tmp_path / "m", data, split="all", trained_only=False)  # the rule before the counts
    assert every["n"] == 30 and every["classes_untrained_in_model"] == [] and every["macro_f1"] == pytest.approx(0.5 / 3)


def test_evaluate_cli_writes_json_and_png_beside_artifact(tmp_path):
    data = make_tiny_dataset(tmp_path / "d", per_class=6, classes=["Normal", "AF", "AFL"], length=128)
    folder = _always(tmp_path / "run" / "m", "Normal", ["Normal", "AF"])
    res = CliRunner().invoke(main, ["--quiet", "evaluate", str(folder), "--data", str(data), "--split", "all"])
    assert res.exit_code == 0, res.output
    assert "macro-F1" in res.output and "classes missing in model: AFL" in res.output
    out = folder / "eval-d-all.json"
    stored = read_json(out)
    assert stored["accuracy"] == pytest.approx(0.5) and stored["split"] == "all"
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = read_json(tmp_path / "run" / "manifest.json")["artifacts"]
    assert "m/eval-d-all.json" in manifest and manifest["m/eval-d-all.json"]["parent"] == "m"
    custom = tmp_path / "x" / "metrics.json"
    res = CliRunner().invoke(main, ["--quiet", "evaluate", str(folder), "--data", str(data), "--out", str(custom)])
    assert res.exit_code == 0 and read_json(custom)["split"] == "test" and custom.with_suffix(".png").exists()


def test_evaluate_bad_input_exit_2(tmp_path):
    data = make_tiny_dataset(tmp_path / "d", per_class=4, classes=["Normal", "AF"], length=64)
    folder = _always(tmp_path / "m", "AF", ["Normal", "AF"])
    res = CliRunner().invoke(main, ["evaluate", str(tmp_path / "nothing"), "--data", str(data)])
    assert res.exit_code == 2 and "no such file" in res.output
    res = CliRunner().invoke(main, ["evaluate", str(folder), "--data", str(tmp_path)])
    assert res.exit_code == 2 and "not a prepared dataset" in res.output
    other = _always(tmp_path / "m2", "SB", ["SB", "ST"])
    res = CliRunner().invoke(main, ["evaluate", str(other), "--data", str(data)])
    assert res.exit_code == 2 and "no class in common" in res.output
    assert not list(folder.glob("eval-*")) and not list(other.glob("eval-*"))


def test_confusion_png(tmp_path):
    path = confusion_png(np.array([[3, 1], [0, 4]]), ["Normal", "AF"], tmp_path / "cm.png", title="t")
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 1000


def test_class_listed_but_without_records_in_split_is_reported_missing(tmp_path):
    labels = np.repeat(np.arange(2), 6)
    splits = {"train": np.arange(0, 12, 2), "val": np.array([1, 7]), "test": np.array([3, 5, 9])}
    data = make_tiny_dataset(tmp_path / "d", per_class=6, classes=["Normal", "AF"], length=64, splits=splits)
    folder = _always(tmp_path / "m", "Normal", ["Normal", "AF"])
    m = evaluate_artifact(folder, data, split="test")
    assert labels[splits["test"]].tolist() == [0, 0, 1] and m["classes_missing_in_data"] == []
    m = evaluate_artifact(folder, data, split="val")
    assert m["classes_missing_in_data"] == [] and m["n"] == 2
    only_normal = {"train": np.arange(12), "val": np.arange(12), "test": np.array([0, 1, 2])}
    data2 = make_tiny_dataset(tmp_path / "d2", per_class=6, classes=["Normal", "AF"], length=64, splits=only_normal)
    m = evaluate_artifact(folder, data2, split="test")
    assert m["classes_missing_in_data"] == ["AF"] and m["classes_missing_in_model"] == []
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0
