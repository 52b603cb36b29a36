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
from ecgtool.core.ui import as_percent
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


def pareto_flash_png(rows: Sequence[dict], path: str | os.PathLike, budget: tuple[float, float] | None = None) -> Path:
    """Macro-F1 (%) against flash (KB, log), each point annotated with its RAM (arena, KB); the budget as lines."""
    plt = pyplot()
    pts = sorted(as_percent(mcu_rows(rows)), key=lambda r: (r["flash_kb"], -r["macro_f1"]))
    fig, ax = plt.subplots(figsize=(9, 5))
    over = budget is not None
    for r in pts:
        fits = not over or (r["flash_kb"] <= budget[0] and r["ram_kb"] <= budget[1])
        ax.scatter([r["flash_kb"]], [r["macro_f1"]], s=40, color="tab:blue" if fits else "tab:gray", zorder=3)
        ax.annotate(f"{r['model']} {r['variant']}\nRAM {r['ram_kb']:.0f} KB", (r["flash_kb"], r["macro_f1"]),
                    fontsize=7, xytext=(4, 4), textcoords="offset points")
    front, best = [], -1e9
    for r in pts:
        if r["macro_f1"] > best:
            front.append(r)
            best = r["macro_f1"]
    if front:
        ax.step([r["flash_kb"] for r in front], [r["macro_f1"] for r in front], where="post", color="black", lw=1,
                ls="--", label="Pareto front")
    if over:
        ax.axvline(budget[0], color="red", lw=1, label=f"flash budget {budget[0]:g} KB (RAM {budget[1]:g} KB)")
    ax.set_xscale("log")
    ax.set_xlabel("flash (KB, log): model + 16 KB TFLM core runtime; kernels not counted")
    ax.set_ylabel("macro-F1 in TFLM (%)")
    ax.set_title("Microcontrollers: macro-F1 vs flash (RAM = measured TFLM arena)")
    ax.grid(True, which="both", alpha=0.3)
    if front or over:
        ax.legend(fontsize=7, loc="best")
    return save_figure(fig, path, 110)
