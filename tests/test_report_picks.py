"""The report's recommended artifacts: one F1 per artifact across table and plots, every pick marked on every
plot, a table that fits the page (report.csv keeps every column), and each pick's own per-class F1 and
confusion matrix (not its PyTorch parent's)."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
from click.testing import CliRunner

from ecgtool.core.files import write_json
from ecgtool.core.machine import machine_info
from ecgtool.data.classes import DEFAULT_CLASSES
from ecgtool.export.formats import FORMATS, RUNTIME_LABELS
from ecgtool.report import build, mcu, plots
from ecgtool.report.table import WIDTH, short_name

CLASSES = list(DEFAULT_CLASSES)
MODEL = "se_resnet152-pruned50"  # the longest family name with a pruned tag: the widest artifact names


def _row(path, runtime, precision, f1, size, p50, rng, **extra):
    cm = rng.integers(0, 30, size=(len(CLASSES), len(CLASSES))).tolist()
    row = {"model": path.split("/")[0], "arch": "se_resnet", "depth": 152, "variant": precision, "runtime": runtime,
           "kind": next(k for k, v in RUNTIME_LABELS.items() if v == runtime), "precision": precision, "status": "ok",
           "path": path, "size_mb": size, "p50_ms": p50, "p95_ms": 2 * p50, "params": 123456, "macs": 9876543,
           "macro_f1": f1, "weighted_f1": f1, "accuracy": f1, "throughput_sps": 900, "peak_mem_mb": 12.5,
           "load_ms": 40.0, "per_class_f1": {c: round(f1 - 0.01 * i, 6) for i, c in enumerate(CLASSES)},
           "confusion": cm}
    row.update(extra)
    return row


def full_bench(externals: bool) -> dict:
    """A bench.json with a row for every format of the table, a PyTorch parent and the RR baseline."""
    rng = np.random.default_rng(0)
    rows = [_row("rr_baseline", RUNTIME_LABELS["baseline"], "fp32", 0.97, 0.07, 60.0, rng, arch="rr_baseline", kind="baseline",
                 depth=None),
            _row(MODEL, "PyTorch", "fp32", 0.951234, 2.3, 9.0, rng)]
    for i, (name, spec) in enumerate(FORMATS.items()):
        extra = {}
        if spec.precision == "int8":
            extra = {"f1_delta_macro": -0.004, "f1_delta_worst": -0.0123, "f1_delta_worst_class": "Normal",
                     "f1_delta_worst_windows": [3, 1],
                     "agreement_fp32": 0.9931, "int8_gate": "pass", "int8_form": "u8s8-asym-pc-rr",
                     "int8_gate_reason": "holds", "f1_delta": {c: -0.001 * k for k, c in enumerate(CLASSES)}}
        if spec.runtime == "tflm":
            extra.update(flash_kb=180.0 + 100 * i, ram_kb=40.0 + 5 * i)
        status = "skipped: TensorRT not installed" if spec.runtime == "tensorrt" else "ok"
        rows.append(_row(f"{MODEL}/{spec.graph or spec.artifact}", RUNTIME_LABELS[spec.runtime], spec.precision,
                         0.95 - 0.0017 * i, round(2.0 / (i + 1), 4), round(0.2 + 0.37 * i, 3), rng, status=status, **extra))
    if externals:
        for r in rows:
            r["ext_f1_other_device"] = round(r["macro_f1"] - 0.05 - 0.003 * len(r["path"]) % 7, 6)
            r["worst_f1"] = min(r["macro_f1"], r["ext_f1_other_device"])
            r["external"] = {"other_device": {"n": 50, "classes_scored": CLASSES, "missing_in_data": [],
                                              "missing_in_model": []}}
    machine = {**machine_info(1, "cpu"), "load_start": 1.0, "load_end": 1.0}
    settings = {"split": "test", "n_eval": 200, "threads": 1, "batch": 1, "throughput_batch": 64}
    dataset = {"classes": CLASSES, "path": "/d", "source": "synthetic", "counts": {}, "split_kind": "random",
               "n_records": 1000, "sampling_rate": 200}
    return {"machine": machine, "settings": settings, "dataset": dataset, "rows": rows}


@pytest.fixture
def figures(monkeypatch):
    """{png name: figure} of every figure the report draws (save_figure wrapped, the PNG still written)."""
    seen: dict[str, object] = {}
    real = plots.save_figure

    def keep(fig, path, dpi=None):
        seen[str(path).rsplit("/", 1)[-1]] = {"points": plots.plotted_points(fig),
                                              "labels": {t.get_gid() for ax in fig.axes for t in ax.texts if t.get_gid()},
                                              "images": [np.asarray(im.get_array()) for ax in fig.axes for im in ax.images]}
        return real(fig, path, dpi)

    monkeypatch.setattr(plots, "save_figure", keep)
    monkeypatch.setattr(mcu, "save_figure", keep)
    return seen


def _md_table(md: str) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, rows, lines) of the artifact table in report.md."""
    part = md.split("## All artifacts", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in part.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return cells[0], cells[2:], lines


@pytest.mark.parametrize("externals", [False, True])
def test_one_number_per_artifact_on_every_plot_and_the_table_and_every_pick_marked(tmp_path, figures, externals):
    bench = full_bench(externals)
    write_json(tmp_path / "bench.json", bench)
    budget = (4096.0, 512.0)
    build.report(tmp_path, tolerance=1.0, mcu_budget=budget)
    roles = build.picks(bench["rows"], 1.0, budget)
    plotted = {k: v for k, v in figures.items() if k in ("report_pareto_latency.png", "report_pareto_size.png",
                                                          "report_pareto_flash.png")}
    assert len(plotted) == 3
    header, rows, _ = _md_table((tmp_path / "report.md").read_text())
    col = header.index("worst F1" if externals else "F1 %")
    table = {(r[0], r[1]): float(r[col]) for r in rows if r[col] != "-"}
    by_id = {plots.artifact_id(r): r for r in bench["rows"]}
    values: dict[str, set] = {}
    for name, fig in plotted.items():
        for key, p in fig["points"].items():
            values.setdefault(key, set()).add(p["y"])
            r = by_id[key]
            assert p["y"] == table[short_name(r), plots.RUNTIME_SHORT[r["runtime"]]], (name, key)  # as in the table
            assert sorted(p["picks"]) == sorted(roles.get(key, [])), (name, key)  # every role marked, none extra
            assert (f"picklabel:{key}" in fig["labels"]) == bool(roles.get(key)), (name, key)  # and labelled
    assert all(len(v) == 1 for v in values.values())  # one number per artifact across the plots
    assert {r for rs in roles.values() for r in rs} >= {"best", "smallest", "fastest", "NN best", "to ship", "MCU pick"}
    for key in roles:  # every pick is on the plots that can show it
        on = [n for n, f in plotted.items() if key in f["points"]]
        assert len(on) >= 2, key
    mcu_pick = next(k for k, rs in roles.items() if "MCU pick" in rs)
    assert mcu_pick in plotted["report_pareto_flash.png"]["points"]


def test_artifact_table_fits_the_page_and_the_csv_keeps_every_column(tmp_path):
    bench = full_bench(externals=True)
    write_json(tmp_path / "bench.json", bench)
    result = build.report(tmp_path, tolerance=1.0, mcu_budget="4096,512")
    header, rows, lines = _md_table(result.markdown.read_text())
    assert len(rows) == len(bench["rows"]) and len(lines) == len(rows) + 2
    assert {"artifact", "backend", "prec", "MB", "p50 ms", "F1 %", "ΔF1", "worst Δ", "agree %", "worst F1",
            "flash/RAM KB", "pick"} <= set(header)
    too_wide = [line for line in lines if len(line) > WIDTH]
    assert not too_wide, too_wide
    # the windows behind the worst class's delta: shown where the line has room (no external column), else only in
    # report.csv; the line fits either way
    for ext, want in ((True, "-1.2 Normal"), (False, "-1.2 Normal (3-1)")):
        write_json(tmp_path / "bench.json", full_bench(externals=ext))
        h, rs, ls = _md_table(build.report(tmp_path, tolerance=1.0, mcu_budget="4096,512").markdown.read_text())
        worst = [r[h.index("worst Δ")] for r in rs if r[h.index("prec")].strip() == "int8"]
        assert worst and all(w.strip() == want for w in worst) and max(map(len, ls)) <= WIDTH
    write_json(tmp_path / "bench.json", bench)
    result = build.report(tmp_path, tolerance=1.0, mcu_budget="4096,512")
    every_table = [line for line in result.markdown.read_text().splitlines() if line.startswith("|")]
    assert max(map(len, every_table)) <= WIDTH  # the per-pick, cross-dataset, family and dataset tables too
    with open(result.csv, newline="", encoding="utf-8") as fh:
        got = list(csv.DictReader(fh))
    assert len(got) == len(bench["rows"])
    assert {"path", "p95_ms", "throughput_sps", "peak_mem_mb", "load_ms", "params", "macs", "weighted_f1", "accuracy",
            "int8_form", "int8_gate_reason", "ext_f1_other_device", "f1_Normal", "flash_kb", "pick"} <= set(got[0])
    assert any(r["pick"] for r in got) and got[1]["path"] == MODEL
    from ecgtool.cli.main import main

    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 0, res.output
    table_lines = re.split(r"\n(?:External datasets given|Best macro-F1)", res.output.split("artifacts (every column")[1])[0]
    assert len(table_lines.splitlines()) > len(rows) and max(map(len, table_lines.splitlines())) <= WIDTH  # rich wraps


def test_real_run_table_fits_and_names_each_artifact(benched):
    run, _, rows = benched
    result = build.report(run, tolerance=1.0)
    header, got, lines = _md_table(result.markdown.read_text())
    assert max(map(len, lines)) <= WIDTH
    assert [r[0] for r in got] == [short_name(r) for r in rows]
    assert header[:6] == ["artifact", "backend", "prec", "MB", "p50 ms", "F1 %"]
    assert {r[4] for r, row in zip(got, rows) if row["status"] != "ok"} <= {"skipped", "failed"}


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory, trained_source):
    """A model folder's FP32 ONNX and an INT8 ONNX calibrated on signals scaled by 0.5 (ranges too narrow:
    real INT8 predictions that differ from FP32's), benched as files (no PyTorch row, so no gate)."""
    from conftest import copy_trained

    from ecgtool.bench.runner import bench
    from ecgtool.compress.quantize import onnx2int8
    from ecgtool.core.artifacts import find_config
    from ecgtool.core.manifest import record_artifact
    from ecgtool.core.names import WEIGHTS
    from ecgtool.data.dataset import load_dataset
    from ecgtool.export.int8 import ensure_onnx
    from ecgtool.export.onnx import stamp_metadata

    folder, data = copy_trained(trained_source, tmp_path_factory.mktemp("picks"))
    src = ensure_onnx(folder, {"data": data}, [])
    xt, _ = load_dataset(data).split("train")
    out = folder / FORMATS["onnx-int8"].artifact
    onnx2int8(src, out, np.asarray(xt[:32], np.float32) * 0.5)
    stamp_metadata(out, find_config(folder), "onnx-int8", "int8", folder / WEIGHTS)
    record_artifact(out, parent=src)
    run = folder.parent
    rows = bench([src, out], data, out=run, threads=1, warmup=1, min_runs=3, min_time_s=0.01, throughput_batch=8).rows
    return run, data, src, out, rows


def test_each_pick_shows_its_own_confusion_matrix_and_per_class_f1(int8_run, figures):
    from sklearn.metrics import confusion_matrix

    from ecgtool.data.dataset import load_dataset
    from ecgtool.runtime import load

    run, data, src, out, rows = int8_run
    ds = load_dataset(data)
    x, y = ds.split("test")
    own = {p: load(p, verify=False).predict(np.asarray(x, np.float32)).argmax(1) for p in (src, out)}
    assert (own[src] != own[out]).any()  # the INT8 file really predicts differently
    expected = {p: confusion_matrix(y, own[p], labels=list(range(len(ds.classes)))) for p in own}
    assert not np.array_equal(expected[src], expected[out])
    result = build.report(run, tolerance=100.0)  # within 100 points: the smallest file (INT8) is a pick
    roles = build.picks(rows, 100.0)
    ids = {p: f"{p.relative_to(run)}@ORT" for p in own}
    assert "smallest" in roles[ids[out]] and "best" in roles[ids[src]]
    for p in own:
        name = "report_confusion_" + build._slug(short_name({"path": str(p.relative_to(run))}, width=10_000)) + ".png"
        assert name in figures, sorted(figures)
        shown, = figures[name]["images"]
        assert np.array_equal(shown, expected[p])  # that artifact's own predictions, through its runtime
    md = result.markdown.read_text()
    part = md.split("## Recommended artifacts", 1)[1].split("\n## ", 1)[0]
    int8_line = next(line for line in part.splitlines() if line.startswith(f"| {short_name({'path': str(out.relative_to(run))})} |"))
    from sklearn.metrics import f1_score

    f1 = f1_score(y, own[out], labels=list(range(len(ds.classes))), average=None, zero_division=0)
    cells = [c.strip() for c in int8_line.strip("|").split("|")]
    assert [float(c) for c in cells[2:2 + len(ds.classes)]] == [round(100 * v, 2) for v in f1]
