"""ecgtool report: the recommendation on a hand-built table, and a self-contained HTML report of a real run."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from click.testing import CliRunner

from ecgtool.export.formats import RUNTIME_LABELS
from ecgtool.cli.main import main
from ecgtool.report.build import recommend, report
from ecgtool.report.plots import pareto_front


def _r(model, variant, f1, size, p50, status="ok", runtime="ONNX Runtime"):
    return {"model": model, "variant": variant, "runtime": runtime, "status": status, "macro_f1": f1,
            "size_mb": size, "p50_ms": p50}


TABLE = [
    _r("se_resnet34", "fp32", 0.950, 4.0, 9.0, runtime="PyTorch"),  # macro-F1 is a fraction; tolerance in points
    _r("se_resnet34", "int8", 0.945, 1.1, 2.0),
    _r("se_resnet18", "fp32", 0.942, 2.0, 1.5),
    _r("se_resnet18-pruned50", "pruned50-int8", 0.939, 0.3, 0.6),
    _r("resnet18", "int8", 0.900, 0.25, 0.4),  # smaller and faster, but 5 points down
    _r("se_resnet50", "fp32", 0.990, 0.1, 0.1, status="failed: cannot load"),  # failed rows never win
    _r("se_resnet18", "int8", None, 0.2, None, status="skipped: TensorRT not installed", runtime="TensorRT"),
]


def test_recommend_picks_smallest_and_fastest_within_tolerance():
    rec = recommend(TABLE, tolerance=1.0)
    assert rec["best"]["model"] == "se_resnet34" and rec["best"]["variant"] == "fp32"
    assert {(r["model"], r["variant"]) for r in rec["candidates"]} == {
        ("se_resnet34", "fp32"), ("se_resnet34", "int8"), ("se_resnet18", "fp32")}
    assert (rec["smallest"]["model"], rec["smallest"]["variant"]) == ("se_resnet34", "int8")
    assert (rec["fastest"]["model"], rec["fastest"]["variant"]) == ("se_resnet18", "fp32")


def test_recommend_tolerance_widens_and_narrows_the_choice():
    wide = recommend(TABLE, tolerance=1.5)
    assert wide["smallest"]["variant"] == "pruned50-int8" and wide["fastest"]["variant"] == "pruned50-int8"
    exact = recommend(TABLE, tolerance=0.0)
    assert exact["smallest"] is exact["best"] is exact["fastest"]
    assert recommend([TABLE[-1], TABLE[-2]])["best"] is None


def test_pareto_front_keeps_only_undominated_points():
    ok = [r for r in TABLE if r["status"] == "ok"]
    front = pareto_front(ok, "size_mb")
    assert [r["size_mb"] for r in front] == [0.25, 0.3, 1.1, 4.0]


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.links, self.tables, self._depth = [], [], [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag in ("link", "script") or (tag == "a" and a.get("href")):
            self.links.append(tag)
        if tag == "table":
            self.tables.append(0)
        if tag == "tr" and self.tables:
            self.tables[-1] += 1


@pytest.fixture(scope="module")
def reported(benched):
    run, data, rows = benched
    return run, rows, report(run, tolerance=1.0).paths


def test_report_html_is_self_contained_with_a_row_per_artifact(reported):
    run, rows, paths = reported
    page = _Page()
    page.feed((run / "report.html").read_text())
    assert len(page.imgs) >= 4 and all(s.startswith("data:image/png;base64,") for s in page.imgs)
    assert page.links == []  # no external CSS, scripts or links: readable offline
    assert page.tables[0] == len(rows) + 1  # the artifact table (first): header + one row per artifact
    html = (run / "report.html").read_text()
    assert "failed: " in html and "skipped: " in html and "Smallest within 1 macro-F1" in html


def test_report_md_and_pngs_beside_it(reported):
    run, rows, paths = reported
    md = (run / "report.md").read_text()
    for p in paths[2:]:
        assert p.exists() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({p.name})" in md
    assert {"report_pareto_latency.png", "report_pareto_size.png", "report_training_curves.png",
            "report_confusion.png"} <= {p.name for p in paths}
    assert md.count("\n| ") >= len(rows) and "SE-ResNet vs ResNet" in md and "test-sines" in md


def test_report_cli_prints_recommendation_and_refuses_a_run_without_bench(reported, tmp_path):
    run, _, _ = reported
    res = CliRunner().invoke(main, ["report", str(run), "--tolerance", "2"])
    assert res.exit_code == 0 and "report.html" in res.output and "within 2 macro-F1" in res.output
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "bench.json" in res.output
    assert not (tmp_path / "report.html").exists()


def test_when_the_baseline_wins_the_networks_get_their_own_recommendation():
    from ecgtool.report.build import recommendation_block

    rows = [{**r, "arch": "se_resnet"} for r in TABLE] + [
        {**_r("rr_baseline", "fp32", 97.0, 0.05, 20.0, runtime=RUNTIME_LABELS["baseline"]), "arch": "rr_baseline"}]
    lines = recommendation_block(rows, 1.0)
    assert "rr_baseline" in lines[0] and lines[3].startswith("The classical baseline is best")
    assert "se_resnet34 fp32" in lines[4] and "se_resnet34 int8" in lines[5] and "se_resnet18 fp32" in lines[6]
    assert len(recommendation_block(TABLE, 1.0)) == 3
