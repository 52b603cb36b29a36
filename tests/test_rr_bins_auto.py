"""`train --rr-head --rr-bins auto`: N chosen from defaults.RR_BINS_AUTO by grouped cross-validation of the
--rr-init regression on the training split (train/rr.py choose_rr_bins), recorded, and then used as `--rr-bins N`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tiny_dataset import make_tiny_dataset
from ecgtool.baseline.features import FEATURE_NAMES
from ecgtool.core.errors import BadInput


def _band_problem(n: int = 240, seed: int = 0):
    """Window features whose label is 1 inside a middle band of one feature, 0 outside: no linear function of
    the raw features separates it, a thermometer code of that feature does. Four windows per patient."""
    rng = np.random.default_rng(seed)
    feats = rng.gamma(2.0, 1.0, size=(n, len(FEATURE_NAMES)))
    j = list(FEATURE_NAMES).index("hr_bpm")
    feats[:, j] = rng.uniform(40, 160, n)
    labels = ((feats[:, j] > 80) & (feats[:, j] < 120)).astype(np.int64)
    groups = np.repeat(np.arange(n // 4), 4).astype(str)
    return feats, labels, groups


def test_auto_picks_bins_where_only_bins_separate_and_records_every_score():
    from ecgtool.train.rr import choose_rr_bins

    feats, labels, groups = _band_problem()
    fit = choose_rr_bins(feats, labels, groups, "patient", candidates=(0, 4, 8), seed=0)
    assert fit["candidates"] == [0, 4, 8] and [s["n_bins"] for s in fit["scores"]] == [0, 4, 8]
    assert fit["chosen"] in (4, 8) and fit["groups"] == "patient" and fit["n_groups"] == 60 and fit["rows"] == 240
    mean = {s["n_bins"]: s["mean"] for s in fit["scores"]}
    assert mean[fit["chosen"]] == max(mean.values()) and mean[fit["chosen"]] > mean[0] + 0.1
    for s in fit["scores"]:
        assert len(s["folds"]) == fit["folds"] == 5 and s["mean"] == pytest.approx(np.mean(s["folds"]), abs=1e-3)
    # deterministic for a seed (everything but the wall time)
    again = choose_rr_bins(feats, labels, groups, "patient", candidates=(0, 4, 8), seed=0)
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in fit.items() if k != "seconds"}


def test_auto_folds_never_split_a_group(monkeypatch):
    """Every fold the regression is scored on holds whole patients (StratifiedGroupKFold), not windows."""
    import sklearn.model_selection as ms

    from ecgtool.train.rr import choose_rr_bins

    feats, labels, groups = _band_problem(n=120)
    seen = []
    real = ms.StratifiedGroupKFold.split

    def spy(self, x, y=None, groups=None):
        for train, test in real(self, x, y, groups):
            seen.append((set(groups[train]), set(groups[test])))
            yield train, test

    monkeypatch.setattr(ms.StratifiedGroupKFold, "split", spy)
    choose_rr_bins(feats, labels, groups, "patient", candidates=(0,), folds=3, seed=1)
    assert len(seen) == 3 and all(not (a & b) for a, b in seen)
    assert set().union(*(b for _, b in seen)) == set(groups)


def test_auto_refuses_a_split_it_cannot_cross_validate():
    from ecgtool.train.rr import choose_rr_bins

    feats, labels, _ = _band_problem(n=40)
    with pytest.raises(BadInput, match="cross-validation needs 2 classes and 2 groups"):
        choose_rr_bins(feats, labels, np.zeros(40).astype(str), "patient")


def test_dataset_groups_prefer_patients_then_records(tmp_path):
    from ecgtool.data.dataset import load_dataset, write_dataset

    ds = load_dataset(make_tiny_dataset(tmp_path / "p", per_class=6))
    groups, kind = ds.groups()
    assert kind == "patient" and list(groups) == [r["patient_id"] for r in ds.records]
    x, y = np.zeros((4, 1, 16), dtype=np.float32), np.array([0, 0, 1, 1])
    rows = [{"record_id": f"{r}@{i}", "record": r, "patient_id": ""} for i, r in enumerate("aabb")]
    splits = {"train": np.arange(4), "val": np.arange(0), "test": np.arange(0)}
    write_dataset(tmp_path / "r", x, y, ["A", "B"], rows, splits, {"sampling_rate": 100.0})
    groups, kind = load_dataset(tmp_path / "r").groups()
    assert kind == "record" and list(groups) == list("aabb")
    write_dataset(tmp_path / "w", x, y, ["A", "B"], [{"record_id": str(i)} for i in range(4)], splits,
                  {"sampling_rate": 100.0})
    assert load_dataset(tmp_path / "w").groups()[1] == "window"


@pytest.fixture(scope="module", params=[(0, 6), (4, 6)], ids=["0-or-6", "4-or-6"])
def auto_model(tmp_path_factory, request):
    """A model trained with --rr-bins auto, the candidates limited so the tiny run stays fast: (0, 6) (on these
    sinusoids the CV picks 0, no bins) and (4, 6) (some bins, whichever)."""
    from ecgtool.train import defaults as D
    from ecgtool.train.run import train_models

    root = tmp_path_factory.mktemp("rrauto")
    data = make_tiny_dataset(root / "data", per_class=12)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(D, "RR_BINS_AUTO", request.param)
        train_models(data, ["se_resnet"], [18], root / "run", width=8, epochs=1, batch_size=16, device="cpu",
                     rr_head=True, rr_init="logreg-frozen", rr_bins="auto", threads=1, seed=3)
    return root / "run" / "se_resnet18", data, list(request.param)


def test_trained_with_auto_records_the_choice_and_uses_it_as_n(auto_model):
    from ecgtool.data.dataset import load_dataset
    from ecgtool.baseline.features import HEAD_DIM, head_dim
    from ecgtool.baseline.cache import window_feature_table
    from ecgtool.train.rr import choose_rr_bins, fit_rr_bins

    folder, data, candidates = auto_model
    cfg = json.loads((folder / "config.json").read_text())
    auto = cfg["extra"]["rr_bins_fit"]["auto"]
    n = auto["chosen"]
    assert auto["candidates"] == candidates and n in candidates and [s["n_bins"] for s in auto["scores"]] == candidates
    assert cfg["extra"]["rr_bins"] == cfg["extra"]["rr_bins_fit"]["n_bins"] == n
    run = json.loads((folder.parent / "run.json").read_text())
    assert run["recipe"]["rr_bins"] == "auto"
    ds = load_dataset(data)
    train = ds.indices("train")
    feats = window_feature_table(ds, 0)[train]
    # the same choice from the same rows and seed, and the edges of `--rr-bins N`
    groups, kind = ds.groups()
    redo = choose_rr_bins(feats, ds.labels[train], groups[train], kind, candidates=candidates, seed=3)
    assert redo["scores"] == auto["scores"] and redo["chosen"] == n
    bins = cfg["extra"]["rr_head"].get("bins")
    if n:
        assert bins == fit_rr_bins(feats, n) and cfg["rr_features"] == head_dim(bins)
    else:
        assert not bins and cfg["rr_features"] == HEAD_DIM


def test_trained_with_auto_exports_and_bundles_like_n(auto_model, tmp_path):
    import subprocess
    import sys

    from test_rr_head import BLOCKED_LOGITS
    from ecgtool.data.dataset import load_dataset
    from ecgtool.deploy.package import package
    from ecgtool.export import export
    from ecgtool.runtime import load

    folder, data, _ = auto_model
    x = np.asarray(load_dataset(data).signals[:16], dtype=np.float32)
    ref = load(folder).predict(x)
    fp32 = export(folder, "onnx", data=data).path
    np.testing.assert_allclose(load(fp32).predict(x), ref, atol=1e-4)
    bundle = package(fp32, tmp_path / "bundle", precision="fp32")
    np.save(tmp_path / "x.npy", x)
    done = subprocess.run([sys.executable, "-c", BLOCKED_LOGITS, str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                          cwd=bundle, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), ref, atol=1e-4)


@pytest.mark.parametrize("value, message", [
    ("auot", "--rr-bins 'auot': expected auto or a number of bins (0 for none, 2 to 64)"),
    ("1", "--rr-bins 1: give 2 or more bins (0 for none)"),
    ("65", "--rr-bins 65: expected auto or a number of bins (0 for none, 2 to 64)"),
    ("-3", "--rr-bins -3: expected auto or a number of bins (0 for none, 2 to 64)"),
])
def test_cli_refuses_junk_in_one_line(tmp_path, value, message):
    from click.testing import CliRunner

    from ecgtool.cli.main import main as cli

    data = make_tiny_dataset(tmp_path / "data", per_class=6)
    res = CliRunner().invoke(cli, ["train", "--data", str(data), "--arch", "se_resnet", "--depth", "18",
                                   "--out", str(tmp_path / "r"), "--rr-head", "--rr-bins", value])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert [line for line in res.output.splitlines() if "error" in line] == [f"ecgtool: error: {message}"]
    assert not (tmp_path / "r").exists()


def test_cli_refuses_auto_without_the_rr_head(tmp_path):
    from click.testing import CliRunner

    from ecgtool.cli.main import main as cli

    data = make_tiny_dataset(tmp_path / "data", per_class=6)
    res = CliRunner().invoke(cli, ["train", "--data", str(data), "--arch", "se_resnet", "--depth", "18",
                                   "--out", str(tmp_path / "r"), "--rr-bins", "auto"])
    assert res.exit_code == 2 and "apply to an RR-head model" in res.output and "Traceback" not in res.output


def test_pipeline_accepts_auto_and_refuses_junk(tmp_path, monkeypatch):
    from test_pipeline import TINY, _robust
    from ecgtool.pipeline import run as pr
    from ecgtool.pipeline.config import load_config
    from ecgtool.train import run as tr

    for junk in ("auot", "16", True, [16]):
        with pytest.raises(BadInput, match=r"train.rr_bins: expected an integer in \[0, 64\] or auto"):
            load_config(_robust(rr_bins=junk))
    with pytest.raises(BadInput, match="train.rr_bins: applies to an RR-head model"):
        load_config({**TINY, "train": {**TINY["train"], "rr_bins": "auto"}})
    cfg = load_config(_robust(rr_init="logreg-frozen", rr_bins="auto"))
    got = {}
    monkeypatch.setattr(tr, "train_models", lambda *a, **k: got.update(k) or [])
    pr._step_train(cfg, tmp_path, False)  # reaches train_models as given
    assert got["rr_bins"] == "auto" and got["rr_init"] == "logreg-frozen"
