"""Budget search: every returned candidate within budget, nothing fits -> exit 1, size-only without timing, CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_dataset import make_tiny_dataset

import ecgtool.search.budget as search_mod
from ecgtool.core.files import read_json
from ecgtool.cli.main import main
from ecgtool.core.errors import BadInput, EcgtoolError
from ecgtool.search.budget import check_budget, search

GRID = {"archs": ("resnet", "se_resnet"), "depths": (18,), "widths": (8, 16)}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("search") / "data", per_class=12, length=256)


def test_latency_and_size_budget_respected(data: Path, tmp_path: Path) -> None:
    rows = search(data, budget_ms=1000.0, budget_mb=1.0, formats=("pytorch", "onnx"), out=tmp_path, **GRID)
    assert rows, "width-8 models (about 0.6 MB) fit 1 MB"
    for r in rows:
        assert r["fits"] and r["size_mb"] <= 1.0 and 0 < r["p50_ms"] <= 1000.0
    assert {r["width"] for r in rows} == {8}  # width 16 is about 2.2 MB
    assert [r["macs"] for r in rows] == sorted((r["macs"] for r in rows), reverse=True)
    saved = read_json(tmp_path / "search.json")
    assert saved["recommended"]["model"] == rows[0]["model"] and len(saved["candidates"]) == 8
    assert "Recommended" in (tmp_path / "search.md").read_text()
    assert "search.csv" in read_json(tmp_path / "manifest.json")["artifacts"]


def test_size_budget_alone_does_not_time(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_timing(*a, **k):
        raise AssertionError("timed without a latency budget")

    monkeypatch.setattr(search_mod, "median_latency_ms", no_timing)
    rows = search(data, budget_mb=0.7, formats=("pytorch", "onnx-int8"), calib_size=14, out=tmp_path, **GRID)
    assert all(r["p50_ms"] is None and r["size_mb"] <= 0.7 for r in rows)
    by = {(r["model"], r["width"], r["format"]): r for r in read_json(tmp_path / "search.json")["candidates"]}
    assert by[("resnet18", 16, "onnx-int8")]["fits"]  # INT8 fits where FP32 does not
    assert by[("resnet18", 16, "pytorch")]["status"].startswith("skipped: about 2.")  # 4 bytes per parameter
    assert by[("resnet18", 8, "onnx-int8")]["size_mb"] < by[("resnet18", 8, "pytorch")]["size_mb"] / 2


def test_nothing_fits_names_the_smallest(data: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["search", "--data", str(data), "--budget-mb", "0.3", "--budget-ms", "1000",
                                  "--arch", "resnet", "--arch", "se_resnet", "--depth", "18", "--width", "8",
                                  "--format", "pytorch", "--out", str(tmp_path), "--quiet"])
    assert r.exit_code == 1
    assert "no candidate fits" in r.output and "smallest: resnet18 width 8 pytorch" in r.output
    assert read_json(tmp_path / "search.json")["recommended"] is None


def test_train_top_ranks_by_validation_f1(data: Path, tmp_path: Path) -> None:
    rows = search(data, budget_mb=1.0, formats=("pytorch",), train_top=2, epochs=1, out=tmp_path, **GRID)
    trained = [r for r in rows if r["val_macro_f1"] is not None]
    assert len(trained) == 2 and rows[:2] == trained
    assert trained[0]["val_macro_f1"] >= trained[1]["val_macro_f1"]
    assert (tmp_path / "trained" / "w8" / "resnet18" / "model.safetensors").exists()


@pytest.mark.parametrize("args", [[], ["--budget-ms", "0"], ["--budget-mb", "-1"], ["--budget-ms", "5", "--depth", "19"]])
def test_bad_budget_is_exit_2(data: Path, tmp_path: Path, args: list[str]) -> None:
    r = CliRunner().invoke(main, ["search", "--data", str(data), "--out", str(tmp_path / "o"), *args])
    assert r.exit_code == 2 and "search:" in r.output
    assert not (tmp_path / "o").exists()


def test_check_budget() -> None:
    check_budget(1.0, None)
    check_budget(None, 2.0)
    check_budget(1.0, 2.0)
    with pytest.raises(BadInput):
        check_budget(None, None)
    assert not issubclass(EcgtoolError, BadInput)


def test_cli_recommends(data: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["search", "--data", str(data), "--budget-ms", "1000", "--arch", "resnet",
                                  "--depth", "18", "--width", "8", "--format", "onnx", "--out", str(tmp_path), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "recommended: resnet18 width 8 onnx" in r.output
    assert (tmp_path / "search.csv").read_text().startswith("rank,model,width,format")
