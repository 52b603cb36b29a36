"""The report's microcontroller part: rows with flash_kb / ram_kb (LiteRT .tflite run in TFLM), the
`--mcu-budget FLASH_KB,RAM_KB` filter of the recommendation, and the macro-F1 vs flash Pareto plot.

flash_kb is the sidecar's estimate (model bytes + the documented TFLM core runtime; kernels unmeasured),
ram_kb the tensor arena measured in the TFLM interpreter (see ecgtool.runtime.tflm).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ecgtool.core.plots import pyplot, save_figure
from ecgtool.runtime.tflm import parse_mcu_budget as parse_budget  # noqa: F401 (report's --mcu-budget)

COLUMNS = ["flash_kb", "ram_kb"]


def mcu_rows(rows: Sequence[dict]) -> list[dict]:
    """The `ok` rows that have a microcontroller footprint."""
    return [r for r in rows if r.get("status") == "ok" and r.get("flash_kb") is not None and r.get("ram_kb") is not None]


def within(rows: Sequence[dict], budget: tuple[float, float]) -> list[dict]:
    """Rows that fit `budget` (flash KB, RAM KB)."""
    return [r for r in mcu_rows(rows) if r["flash_kb"] <= budget[0] and r["ram_kb"] <= budget[1]]


def columns(base: Sequence[str], rows: Sequence[dict]) -> list[str]:
    """`base` with flash_kb / ram_kb after size_mb when some row has them."""
    cols = list(base)
    if mcu_rows(rows):
        at = cols.index("size_mb") + 1 if "size_mb" in cols else len(cols)
        cols[at:at] = COLUMNS
    return cols


def budget_pick(rows: Sequence[dict], budget: tuple[float, float], tolerance: float, recommend) -> dict | None:
    """The best-F1 artifact among those that fit the budget (the one `budget_lines` names), or None."""
    fit = within(rows, budget)
    return recommend(fit, tolerance)["best"] if fit else None


def budget_lines(rows: Sequence[dict], budget: tuple[float, float], tolerance: float, recommend, describe) -> list[str]:
    """The recommendation among the artifacts that fit the budget (`recommend`, `describe`: report.build's)."""
    fit = within(rows, budget)
    head = f"Microcontroller budget {budget[0]:g} KB flash, {budget[1]:g} KB RAM:"
    if not fit:
        n = len(mcu_rows(rows))
        return [f"{head} no artifact fits ({n} with a microcontroller footprint; export one with "
                "`ecgtool export MODEL --format litert-int8 --data DIR`)."]
    rec = recommend(fit, tolerance)
    best = rec["best"]
    if best is None:  # every one that fits loses more F1 against its FP32 parent than the INT8 gate allows
        return [f"{head} {len(fit)} of {len(mcu_rows(rows))} microcontroller artifacts fit, but none passes the INT8 "
                "accuracy gate against its FP32 parent."] + [f"  {x}" for x in describe(rec)[1:]]
    line = (f"{head} **{best['model']} {best['variant']} on {best['runtime']}** (macro-F1 "
            f"{100 * best['macro_f1']:.2f} %, flash {best['flash_kb']:.1f} KB, RAM {best['ram_kb']:.1f} KB)")
    return [line + f"; {len(fit)} of {len(mcu_rows(rows))} microcontroller artifacts fit."] + \
        [f"  {x}" for x in describe(rec)[1:]]


def pareto_flash_png(rows: Sequence[dict], path: str | os.PathLike, budget: tuple[float, float] | None = None,
                     picks: dict[str, list[str]] | None = None, y: str = "macro_f1",
                     ylabel: str = "macro-F1 in TFLM (%)") -> Path:
    """`y` (already in %, the same value the report's table and other plots show) against flash (KB, log),
    each point annotated with its RAM (arena, KB); the budget as lines; recommended points marked
    (report.plots.mark_picks)."""
    from ecgtool.report.plots import artifact_id, mark_picks, pareto_front

    plt = pyplot()
    pts = sorted((r for r in mcu_rows(rows) if r.get(y) is not None), key=lambda r: (r["flash_kb"], -r[y]))
    fig, ax = plt.subplots(figsize=(9, 5))
    over = budget is not None
    for r in pts:
        fits = not over or (r["flash_kb"] <= budget[0] and r["ram_kb"] <= budget[1])
        ax.scatter([r["flash_kb"]], [r[y]], s=40, color="tab:blue" if fits else "tab:gray", zorder=3,
                   gid=f"point:{artifact_id(r)}")
        ax.annotate(f"{r['model']} {r['variant']}\nRAM {r['ram_kb']:.0f} KB", (r["flash_kb"], r[y]),
                    fontsize=7, xytext=(4, 4), textcoords="offset points")
    front = pareto_front(pts, "flash_kb", y)
    if front:
        ax.step([r["flash_kb"] for r in front], [r[y] for r in front], where="post", color="black", lw=1,
                ls="--", label="Pareto front")
    mark_picks(ax, pts, "flash_kb", y, picks or {})
    if over:
        ax.axvline(budget[0], color="red", lw=1, label=f"flash budget {budget[0]:g} KB (RAM {budget[1]:g} KB)")
    ax.set_xscale("log")
    ax.set_xlabel("flash (KB, log): model + 16 KB TFLM core runtime; kernels not counted")
    ax.set_ylabel(ylabel)
    ax.set_title("Microcontrollers: macro-F1 vs flash (RAM = measured TFLM arena)")
    ax.grid(True, which="both", alpha=0.3)
    if front or over or picks:
        ax.legend(fontsize=7, loc="best", markerscale=0.5)
    return save_figure(fig, path, 110)
