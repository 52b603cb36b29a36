"""`ecgtool report RUN`: the size-accuracy report of a benched run, as report.html (one self-contained
file: inline CSS, PNGs as data URIs) and report.md with the PNGs beside it.

It answers the question the tool exists for: which artifact to ship. `recommend` picks the smallest and
the fastest artifact within `tolerance` macro-F1 points of the best one; `picks` gathers every artifact the
report recommends (best, smallest, fastest, the same among the networks when the baseline wins, the one to
package, the microcontroller pick) so that every plot marks them and the report shows each one's own
per-class F1 and confusion matrix (from bench, which scored every artifact through its own runtime).
One number per artifact: the rows are converted to % once, and the table and every plot read the same value
(macro-F1 on the bench split, or with `bench --external` the worst of own-test and external macro-F1, the
value the recommendation ranks by).
"""

from __future__ import annotations

import base64
import html
import math
import os
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Sequence

import click

from ecgtool.report import mcu, plots, table
from ecgtool.report.external import cross_dataset_part, has_externals, recommendation_by_worst, worst_rows
from ecgtool.core.files import read_json, write_text
from ecgtool.core.manifest import record_artifact
from ecgtool.core.errors import BadInput
from ecgtool.core.names import BENCH_JSON, HISTORY, REPORT_CSV, REPORT_HTML, REPORT_MD
from ecgtool.core.machine import machine_lines
from ecgtool.core.ui import PERCENT_COLUMNS, as_percent, info, markdown_table, print_table, quiet_option
from ecgtool.export.formats import RUNTIME_LABELS

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f3f7}td:nth-child(-n+3),th:nth-child(-n+3){text-align:left}tr.failed td{color:#a00}tr.skipped td{color:#888}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}.rec{background:#eef7ee;border-left:4px solid #3a3;padding:.6em 1em}
code{background:#f4f4f4;padding:0 3px}"""


#: family-table columns holding macro-F1 fractions, shown in %
FAMILY_PERCENT = ("se_resnet", "resnet", "se_minus_resnet", "baseline")


def recommend(rows: Sequence[dict], tolerance: float = 1.0) -> dict:
    """The best `ok` row by macro-F1, and the smallest (size_mb) and fastest (p50_ms) rows within
    `tolerance` macro-F1 points (percentage points; macro_f1 itself is a fraction) of it. Ties go to the higher macro-F1. Missing when no row is ok."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get("macro_f1") is not None]
    gated = [r for r in ok if r.get("int8_gate") == "fail"]  # INT8 that costs more than the gate allows: never shipped
    ok = [r for r in ok if r.get("int8_gate") != "fail"]
    if not ok:
        return {"tolerance": tolerance, "best": None, "smallest": None, "fastest": None, "candidates": [],
                "passed_over": gated}
    inf = math.inf
    best = max(ok, key=lambda r: (r["macro_f1"], -(r.get("p50_ms") or inf)))
    threshold = best["macro_f1"] - tolerance / 100.0
    within = [r for r in ok if r["macro_f1"] >= threshold - 1e-9]
    sized = [r for r in within if r.get("size_mb") is not None]
    timed = [r for r in within if r.get("p50_ms") is not None]
    return {
        "tolerance": tolerance, "threshold": threshold, "best": best, "candidates": within,
        "smallest": min(sized, key=lambda r: (r["size_mb"], -r["macro_f1"], r.get("p50_ms") or inf)) if sized else None,
        "fastest": min(timed, key=lambda r: (r["p50_ms"], -r["macro_f1"], r.get("size_mb") or inf)) if timed else None,
        "passed_over": gated,
    }


def _name(r: dict) -> str:
    return f"{r['model']} {r['variant']} on {r['runtime']}"


def recommendation_lines(rec: dict) -> list[str]:
    """The recommendation in words, with its numbers."""
    best = rec["best"]
    if best is None:
        return ["No artifact ran successfully, so there is nothing to recommend."] + passed_over_lines(rec)
    nums = lambda r: (f"macro-F1 {100 * r['macro_f1']:.2f} %, {r['size_mb']:.3g} MB on disk, "  # noqa: E731
                      f"p50 {r['p50_ms']:.3g} ms at batch 1" if r.get("p50_ms") is not None else "not timed")
    out = [f"Best macro-F1: **{_name(best)}** ({nums(best)})."]
    for key, what in (("smallest", "Smallest"), ("fastest", "Fastest")):
        r = rec[key]
        if r is not None:
            out.append(f"{what} within {rec['tolerance']:g} macro-F1 point(s) of the best: **{_name(r)}** ({nums(r)}; "
                       f"{100 * (best['macro_f1'] - r['macro_f1']):.2f} points below the best).")
    return out + passed_over_lines(rec)


def passed_over_lines(rec: dict) -> list[str]:
    """Why each INT8 row that breaks the accuracy gate was not recommended (the gate's own reason, bench/int8.py)."""
    from ecgtool.compress.gate import DEFAULT_CLASS_POINTS, DEFAULT_MACRO_POINTS

    return [f"Passed over {_name(r)} ({r.get('int8_form') or 'INT8'}): against its FP32 parent (agreement "
            f"{100 * (r.get('agreement_fp32') or 0):.1f} %) the INT8 gate "
            + (r.get("int8_gate_reason") or f"fails ({DEFAULT_MACRO_POINTS} macro, {DEFAULT_CLASS_POINTS} per class): "
               f"{-100 * (r.get('f1_delta_macro') or 0):.2f} macro-F1 points, {-100 * (r.get('f1_delta_worst') or 0):.2f} "
               f"on {r.get('f1_delta_worst_class')}") + "." for r in rec.get("passed_over", [])]


def ranked(rows: Sequence[dict]) -> tuple[list[dict], str]:
    """The rows as the recommendation ranks them (macro_f1 = the worst of own-test and external with
    `bench --external`), and the key of that value in the original rows."""
    return (worst_rows(rows), "worst_f1") if has_externals(rows) else (list(rows), "macro_f1")


def picks(rows: Sequence[dict], tolerance: float = 1.0, budget: tuple[float, float] | None = None) -> dict[str, list[str]]:
    """Every artifact the report recommends, by artifact id (plots.artifact_id): its roles, in order: best,
    smallest, fastest; NN best/smallest/fastest when the classical baseline is best; to ship (the packageable
    pick, report/ship.py); MCU pick (with `budget`)."""
    from ecgtool.report import ship

    rank, _ = ranked(rows)
    out: dict[str, list[str]] = {}

    def add(role: str, r: dict | None) -> None:
        if r is not None:
            out.setdefault(plots.artifact_id(r), []).append(role)

    rec = recommend(rank, tolerance)
    for role in ("best", "smallest", "fastest"):
        add(role, rec[role])
    if rec["best"] is not None and rec["best"].get("arch") == "rr_baseline":
        deep = recommend([r for r in rank if r.get("arch") != "rr_baseline"], tolerance)
        for role in ("best", "smallest", "fastest"):
            add(f"NN {role}", deep[role])
    add("to ship", ship.ship_pick(rank, recommend, tolerance))
    if budget is not None:
        add("MCU pick", mcu.budget_pick(rank, budget, tolerance, recommend))
    return out


def picked_rows(rows: Sequence[dict], roles: dict[str, list[str]]) -> list[dict]:
    """The original rows of the picks, in the order of `roles`."""
    by_id = {plots.artifact_id(r): r for r in rows}
    return [by_id[k] for k in roles if k in by_id]


def pick_class_table(rows: Sequence[dict], roles: dict[str, list[str]], classes: Sequence[str]) -> tuple[list[dict], list[str]]:
    """Per-class F1 (%) of each recommended artifact on the bench split, from its own predictions; below an
    INT8 artifact its per-class delta against the FP32 parent (points); first the windows per class."""
    chosen = picked_rows(rows, roles)
    cols = ["artifact", "pick", *classes, "macro"]
    support = next((r["confusion"] for r in chosen if r.get("confusion")), None)
    out = []
    if support is not None:
        out.append({"artifact": "windows (bench split)", **{c: int(sum(support[i])) for i, c in enumerate(classes)},
                    "macro": int(sum(map(sum, support)))})
    for r in chosen:
        f1 = r.get("per_class_f1") or {}
        out.append({"artifact": table.short_name(r),
                    "pick": "".join(plots.ROLE_CODES.get(x, "?") for x in roles[plots.artifact_id(r)]),
                    **{c: None if f1.get(c) is None else round(100 * f1[c], 2) for c in classes},
                    "macro": None if r.get("macro_f1") is None else round(100 * r["macro_f1"], 2)})
        if r.get("f1_delta"):
            out.append({"artifact": "  Δ vs FP32 parent", **{c: None if r["f1_delta"].get(c) is None
                                                            else f"{100 * r['f1_delta'][c]:+.2f}" for c in classes},
                        "macro": None if r.get("f1_delta_macro") is None else f"{100 * r['f1_delta_macro']:+.2f}"})
    return out, cols


def recommendation_block(rows: Sequence[dict], tolerance: float = 1.0) -> list[str]:
    """The recommendation, plus the same among the neural networks when the classical baseline wins
    (lines indented by two spaces are sub-items)."""
    rec = recommend(rows, tolerance)
    lines = recommendation_lines(rec)
    if rec["best"] is not None and rec["best"].get("arch") == "rr_baseline":
        deep = recommend([r for r in rows if r.get("arch") != "rr_baseline"], tolerance)
        if deep["best"] is not None:
            lines += ["The classical baseline is best here; among the neural networks only:"]
            lines += [f"  {line}" for line in recommendation_lines(deep)]
    return lines


def family_table(rows: Sequence[dict]) -> tuple[list[dict], dict | None]:
    """SE-ResNet vs ResNet macro-F1 (fractions) at each depth, from the unpruned FP32 PyTorch rows; and the baseline row."""
    base = [r for r in rows if r.get("status") == "ok" and r.get("variant") == "fp32" and r.get("runtime") == "PyTorch"]
    depths = sorted({r["depth"] for r in base if r.get("arch") in ("se_resnet", "resnet") and r.get("depth")})
    table = []
    for d in depths:
        f1 = {a: next((r["macro_f1"] for r in base if r.get("arch") == a and r.get("depth") == d), None)
              for a in ("se_resnet", "resnet")}
        diff = f1["se_resnet"] - f1["resnet"] if None not in f1.values() else None
        table.append({"depth": d, **f1, "se_minus_resnet": None if diff is None else round(diff, 6)})
    baseline = next((r for r in rows if r.get("arch") == "rr_baseline"), None)
    return table, baseline


def _img(path: Path) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}" alt="{html.escape(path.stem)}">'


def html_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    from ecgtool.core.ui import format_cell

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        status = str(r.get("status", "ok")).split(":")[0]
        cls = f' class="{status}"' if status in ("failed", "skipped") else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(format_cell(r.get(c)))}</td>" for c in columns) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _md_inline(text: str) -> str:
    """The little markdown the report's sentences use (**bold**), as HTML."""
    parts = html.escape(text).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def y_axis(score: str) -> tuple[str, str]:
    """(y label, what in words) of the value every plot shows."""
    if score == "worst_f1":
        return "worst of own-test and external macro-F1 (%)", "worst of own-test and external macro-F1"
    return "macro-F1 (%)", "macro-F1"


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text).strip("_")


def _figures(run: Path, rows: list[dict], shown: list[dict], roles: dict[str, list[str]], score: str,
             classes: list[str], fam: list[dict], baseline: dict | None) -> dict:
    """The report's PNGs. `shown`: the rows already in % (the values the table shows, read by every plot)."""
    ok = [r for r in shown if r.get("status") == "ok"]
    ylabel, what = y_axis(score)
    figs = {
        "pareto_latency": plots.pareto_png(ok, "p50_ms", "p50 latency at batch 1 (ms, log)", run / "report_pareto_latency.png",
                                           f"{what} vs latency (hollow markers: recommended)", roles, score, ylabel),
        "pareto_size": plots.pareto_png(ok, "size_mb", "size on disk (MB, log)", run / "report_pareto_size.png",
                                        f"{what} vs size (hollow markers: recommended)", roles, score, ylabel),
    }
    if fam:
        figs["family"] = plots.family_png(fam, baseline["macro_f1"] if baseline and baseline.get("macro_f1") is not None
                                          else None, run / "report_family.png")
    ok_raw = [r for r in rows if r.get("status") == "ok"]
    parents = [r for r in ok_raw if r.get("variant") == "fp32" and r.get("runtime") in (RUNTIME_LABELS["pytorch"], RUNTIME_LABELS["baseline"])]
    chosen = parents + [r for r in picked_rows(ok_raw, roles) if r not in parents]
    if chosen and classes:
        figs["per_class"] = plots.per_class_png(chosen, classes, run / "report_per_class_f1.png")
    conf = [(plots.label(r), r["confusion"]) for r in parents if r.get("confusion")]
    if conf:
        figs["confusion"] = plots.confusion_grid_png(conf, classes, run / "report_confusion.png")
    for r in picked_rows(ok_raw, roles):  # one figure per recommended artifact, its own predictions
        if r.get("confusion") and classes:
            name = table.short_name(r, width=10_000)
            title = (f"{table.short_name(r)} ({plots.RUNTIME_SHORT.get(r.get('runtime'), r.get('runtime'))})\n"
                     f"{', '.join(roles[plots.artifact_id(r)])}\n{int(sum(map(sum, r['confusion'])))} windows, "
                     "its own predictions")
            figs[f"confusion:{plots.artifact_id(r)}"] = plots.confusion_grid_png(
                [(title, r["confusion"])], classes, run / f"report_confusion_{_slug(name)}.png")
    histories = {}
    for r in ok:
        folder = run / r["path"]
        if r.get("runtime") == "PyTorch" and (folder / HISTORY).exists():
            histories[r["model"]] = plots.read_history(folder / HISTORY)
    if histories:
        figs["curves"] = plots.curves_png(histories, run / "report_training_curves.png")
    return figs


def _dataset_rows(dataset: dict) -> tuple[list[dict], list[str]]:
    counts = dataset.get("counts") or {}
    splits = [s for s in ("train", "val", "test", "all") if s in counts] + [s for s in counts if s not in ("train", "val", "test", "all")]
    rows = [{"class": c, **{s: (counts.get(s) or {}).get(c) for s in splits}} for c in dataset.get("classes") or []]
    return rows, ["class", *splits]


@dataclass
class ReportResult:
    """What `report` wrote (report.html, report.md, the figures) and its recommendation, line by line."""

    html: Path
    markdown: Path
    figures: list[Path]
    recommendation: list[str]
    csv: Path | None = None
    #: the artifact table as the report shows it: (rows, columns)
    table: tuple[list[dict], list[str]] | None = None

    @property
    def paths(self) -> list[Path]:
        return [self.html, self.markdown, *self.figures]


def read_bench(run: Path) -> dict:
    """RUN/bench.json as written by `ecgtool bench` (BadInput when missing or not one)."""
    path = run / BENCH_JSON
    if not path.exists():
        raise BadInput(f"{path}: no benchmark in this run (run `ecgtool bench {run} --data DIR` first)")
    try:
        bench = read_json(path)
        for key in ("rows", "machine", "settings"):
            bench[key]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadInput(f"{path}: not a benchmark written by `ecgtool bench` ({exc})") from None
    return bench


def _sections(run: Path, bench: dict, tolerance: float, rec_lines: list[str],
              mcu_budget: tuple[float, float] | None = None) -> tuple[list, dict]:
    """The report's sections [(heading, [(kind, value)])] and its figures, from a bench.json."""
    rows, machine, dataset, settings = bench["rows"], bench["machine"], bench.get("dataset", {}), bench["settings"]
    roles = picks(rows, tolerance, mcu_budget)
    _, score = ranked(rows)
    from ecgtool.bench.external import external_columns

    shown = as_percent(rows, (*PERCENT_COLUMNS, *external_columns(rows)))  # the one conversion: table and plots
    fam, baseline = family_table(rows)
    classes = list(dataset.get("classes") or [])
    figs = _figures(run, rows, shown, roles, score, classes, fam, baseline)
    compact, compact_cols = table.compact_rows(rows, roles, score)
    pick_rows, pick_cols = pick_class_table(rows, roles, classes)
    pick_figs = [f for k, f in figs.items() if k.startswith("confusion:")]
    fam_rows = fam + ([{"depth": "rr_baseline (classical)", "se_resnet": None, "resnet": None,
                        "se_minus_resnet": None, "baseline": baseline.get("macro_f1")}] if baseline else [])
    fam_cols = ["depth", "se_resnet", "resnet", "se_minus_resnet"] + (["baseline"] if baseline else [])
    ds_rows, ds_cols = _dataset_rows(dataset)
    settings_line = (f"{settings.get('split')} split of `{dataset.get('path')}` ({settings.get('n_eval')} records); "
                     f"{settings.get('threads')} threads; latency at batch {settings.get('batch')}, throughput at batch "
                     f"{settings.get('throughput_batch')}. F1 and accuracy in %, latency in ms, size in MB.")
    sections: list[tuple[str, list[tuple[str, Any]]]] = [
        ("Recommendation", [("rec", rec_lines)]),
        *([("Across datasets (bench --external)", cross_dataset_part(rows, settings))] if has_externals(rows) else []),
        ("All artifacts", [("text", settings_line), ("table", (compact, compact_cols)), ("text", table.LEGEND),
                           ("list", table.status_notes(rows))]),
        (f"Pareto: {y_axis(score)[1]} vs latency and size", [("fig", figs["pareto_latency"]), ("fig", figs["pareto_size"])]),
        ("Recommended artifacts: per-class F1 and confusion (bench split, each artifact's own predictions)",
         [("text", "Scored by bench through each artifact's own runtime (ONNX Runtime, OpenVINO, ...), not its PyTorch "
                   "parent; F1 in %, deltas in points; pick: " + ", ".join(f"{c} {r}" for r, c in plots.ROLE_CODES.items())
                   + "."), ("table", (pick_rows, pick_cols))]
         + [("fig", f) for f in pick_figs] if pick_rows else [("text", "no artifact recommended")]),
        ("SE-ResNet vs ResNet at each depth (the paper's comparison; macro-F1 %)",
         [("table", (as_percent(fam_rows, FAMILY_PERCENT), fam_cols))] + ([("fig", figs["family"])] if "family" in figs else [])),
        ("Per-class F1", [("fig", figs["per_class"])] if "per_class" in figs else [("text", "no per-class F1 available")]),
        ("Confusion matrices of the FP32 parents (bench split)", [("fig", figs["confusion"])] if "confusion" in figs
         else [("text", "none")]),
        ("Training curves", [("fig", figs["curves"])] if "curves" in figs else [("text", "no history.csv in this run")]),
        ("Dataset", [("text", f"source: {dataset.get('source')}; split kind: {dataset.get('split_kind')}; "
                              f"{dataset.get('n_records')} records at {dataset.get('sampling_rate')} Hz; counts per class per split:"),
                     ("table", (ds_rows, ds_cols))]),
        ("Machine", [("list", machine_lines(machine) + [f"date: {machine.get('date')}"])]),
    ]
    if mcu.mcu_rows(shown):  # LiteRT .tflite rows run in TFLM: flash and RAM
        ylabel, what = y_axis(score)
        figs["pareto_flash"] = mcu.pareto_flash_png(shown, run / "report_pareto_flash.png", mcu_budget, roles, score,
                                                    f"{ylabel[:-4]} in TFLM (%)")
        sections.insert(3, (f"Microcontrollers: {what} vs flash (RAM annotated)", [("fig", figs["pareto_flash"])]))
    return sections, figs


def _render(title: str, sections: list) -> tuple[str, str]:
    """(markdown, self-contained HTML) of the sections."""
    md, body = [f"# {title}", ""], [f"<h1>{html.escape(title)}</h1>"]
    for head, parts in sections:
        md += [f"## {head}", ""]
        body.append(f"<h2>{html.escape(head)}</h2>")
        for kind, val in parts:
            if kind == "rec":  # lines indented by two spaces are sub-items
                md += [*[f"  - {line.strip()}" if line.startswith("  ") else f"- {line}" for line in val], ""]
                body.append('<div class="rec">' + "".join(
                    f'<p style="margin-left:{2 if line.startswith("  ") else 0}em">{_md_inline(line.strip())}</p>'
                    for line in val) + "</div>")
            elif kind == "text":
                md += [val, ""]
                body.append(f"<p>{_md_inline(val.replace('`', ''))}</p>")
            elif kind == "list":
                md += [*[f"- {line}" for line in val], ""]
                body.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in val) + "</ul>")
            elif kind == "table":
                md += [markdown_table(*val), ""]
                body.append(html_table(*val))
            elif kind == "fig":
                md += [f"![{val.stem}]({val.name})", ""]
                body.append(_img(val))
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    return "\n".join(md), page


def report(run: str | os.PathLike, tolerance: float = 1.0, mcu_budget: str | tuple[float, float] | None = None) -> ReportResult:
    """Write RUN/report.html (self-contained) and RUN/report.md + report_*.png from RUN/bench.json.

    `mcu_budget` ('FLASH_KB,RAM_KB' or a pair) adds the recommendation among the artifacts that fit it."""
    run = Path(run)
    bench = read_bench(run)
    if tolerance < 0:
        raise BadInput(f"--tolerance {tolerance}: must be 0 or more macro-F1 points")
    budget = mcu.parse_budget(mcu_budget) if isinstance(mcu_budget, (str, type(None))) else tuple(mcu_budget)
    if has_externals(bench["rows"]):  # bench --external: recommend by the worst of own-test and external F1
        rec_lines = recommendation_by_worst(bench["rows"], tolerance, recommendation_block)
    else:
        rec_lines = recommendation_block(bench["rows"], tolerance)
    rank, _ = ranked(bench["rows"])  # the MCU and shipping picks rank by the same value as the rest
    if budget is not None:
        rec_lines += mcu.budget_lines(rank, budget, tolerance, recommend, recommendation_lines)
    from ecgtool.report import ship  # what ships, and warnings on the figures (report/ship.py)

    rec_lines += ship.ship_lines(rank, run, recommend, tolerance)
    rec_lines += ship.warning_lines(bench["rows"], bench["machine"], (bench.get("dataset") or {}).get("classes") or [])
    sections, figs = _sections(run, bench, tolerance, rec_lines, budget)
    md, page = _render(f"ecgtool report: {run.resolve().name}", sections)
    out = [write_text(run / REPORT_HTML, page), write_text(run / REPORT_MD, md)]
    roles = picks(bench["rows"], tolerance, budget)
    csv = table.write_report_csv(run / REPORT_CSV, bench["rows"], roles)
    for p in [*figs.values(), *out, csv]:
        record_artifact(p, parent=run / BENCH_JSON, run_dir=run)
    compact = table.compact_rows(bench["rows"], roles, ranked(bench["rows"])[1])
    return ReportResult(out[0], out[1], list(figs.values()), rec_lines, csv, compact)


@click.command("report")
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--tolerance", type=float, default=None, help="Macro-F1 points below the best still acceptable [default: 1.0].")
@click.option("--mcu-budget", default=None, metavar="FLASH_KB,RAM_KB",
              help="Also recommend among the microcontroller (.tflite) artifacts that fit, e.g. 1024,256.")
@quiet_option
def report_command(run: str, tolerance: float | None, mcu_budget: str | None) -> None:
    """Write RUN/report.html (self-contained) and RUN/report.md from RUN/bench.json."""
    result = report(run, **({"tolerance": tolerance} if tolerance is not None else {}), mcu_budget=mcu_budget)
    if result.table:
        print_table(*result.table, title="artifacts (every column: report.csv)", width=table.WIDTH)
    for line in result.recommendation:
        click.echo(line.replace("**", ""))
    info(f"figures: {', '.join(p.name for p in result.figures)}")
    click.echo(f"report: {result.html} (table with every column: {result.csv})")
