"""The report's shipping advice: the pick among packageable artifacts with its command, and the warnings."""

from pathlib import Path

from ecgtool.report.build import recommend
from ecgtool.report.ship import ship_lines, warning_lines


def _row(model, kind, f1, size, arch="se_resnet", path=None):
    return {"model": model, "variant": "fp32", "runtime": kind, "kind": kind, "arch": arch, "status": "ok",
            "macro_f1": f1, "size_mb": size, "p50_ms": 1.0, "path": path or f"{model}/{kind}"}


def test_openvino_best_is_explained_and_a_packageable_pick_gets_its_command():
    rows = [_row("se_resnet18", "pytorch", 0.90, 2.0, path="se_resnet18"),
            _row("se_resnet18", "onnxruntime", 0.895, 0.6, path="se_resnet18/model.int8.onnx"),
            _row("se_resnet18", "openvino", 0.91, 0.5, path="se_resnet18/openvino")]
    lines = ship_lines(rows, Path("/r"), recommend, tolerance=1.0)
    assert "cannot be packaged" in lines[0] and "openvino artifact" in lines[0]
    assert "se_resnet18/model.int8.onnx" in lines[1]
    assert "`ecgtool package /r/se_resnet18/model.int8.onnx --out /r/bundle`" in lines[1]


def test_the_rr_baseline_is_shipped_when_it_is_the_best():
    rows = [_row("rr_baseline", "baseline", 0.95, 0.1, arch="rr_baseline", path="rr_baseline"),
            _row("se_resnet18", "onnxruntime", 0.80, 0.6, path="se_resnet18/model.int8.onnx")]
    lines = ship_lines(rows, Path("/r"), recommend, tolerance=1.0)
    assert "`ecgtool package /r/rr_baseline --out /r/bundle`" in lines[0] and "XQRS" in lines[1]


def test_warnings_near_chance_and_overloaded_machine():
    rows = [_row("m", "pytorch", 0.18, 1.0)]
    w = warning_lines(rows, {"cores": 2, "load_start": 6.5, "load_end": 1.0}, ["a"] * 7)
    assert len(w) == 2 and "near chance" in w[0] and "exceeded the 2 cores" in w[1]
    assert warning_lines([_row("m", "pytorch", 0.9, 1.0)], {"cores": 2, "load_start": 1.0, "load_end": 1.5}, ["a"] * 7) == []
