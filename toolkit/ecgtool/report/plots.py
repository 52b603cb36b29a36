"""The report's figures (matplotlib, Agg): Pareto plots, SE-ResNet vs ResNet, per-class F1, confusions, curves.

Each function takes bench rows (dicts as in bench.json) and writes one PNG; none of them computes a metric.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ecgtool.core.plots import pyplot, save_figure
from ecgtool.export.formats import RUNTIME_LABELS
from ecgtool.core.ui import as_percent

#: a backend's short name in tables and plots, keyed by its runtime label (export.formats.RUNTIME_LABELS)
RUNTIME_SHORT = {RUNTIME_LABELS[kind]: short for kind, short in {
    "pytorch": "PT", "onnxruntime": "ORT", "openvino": "OV", "tensorrt": "TRT", "baseline": "RR+ORT", "tflm": "TFLM"}.items()}


def label(row: dict) -> str:
    """Short point label: model, variant, runtime (e.g. `se_resnet18 int8 ORT`)."""
    v = str(row.get("variant") or "")
    if v.startswith("pruned") and f"-{v.split('-')[0]}" in str(row.get("model")):  # already in the model's name
        v = v.split("-", 1)[1] if "-" in v else "fp32"
    variant = "" if v == "fp32" else f" {v}"
    return f"{row.get('model')}{variant} {RUNTIME_SHORT.get(row.get('runtime'), row.get('runtime'))}"


def pareto_front(rows: Sequence[dict], x: str, y: str = "macro_f1") -> list[dict]:
    """Rows not dominated by another (lower or equal x and higher y), sorted by x: the size/speed-accuracy front."""
    pts = sorted((r for r in rows if r.get(x) is not None and r.get(y) is not None), key=lambda r: (r[x], -r[y]))
    front, best = [], -math.inf
    for r in pts:
        if r[y] > best:
            front.append(r)
            best = r[y]
    return front


#: how each recommendation role is drawn on every plot: (marker, colour, label at the point)
ROLE_STYLE = {"best": ("*", "red", "best"), "smallest": ("D", "red", "smallest"), "fastest": ("^", "red", "fastest"),
              "NN best": ("p", "purple", "NN best"), "NN smallest": ("d", "purple", "NN smallest"),
              "NN fastest": ("v", "purple", "NN fastest"), "to ship": ("s", "green", "ship"),
              "MCU pick": ("P", "darkorange", "MCU")}


#: the roles as one-letter codes (the report table's pick column, the plots' keys)
ROLE_CODES = {"best": "B", "smallest": "S", "fastest": "F", "NN best": "b", "NN smallest": "s", "NN fastest": "f",
              "to ship": "P", "MCU pick": "M"}


def artifact_id(row: dict) -> str:
    """The key of an artifact across table and plots: its path in the run and its backend (a TensorRT row's
    graph can be the ONNX Runtime row's model.onnx)."""
    return f"{row.get('path') or row.get('model')}@{RUNTIME_SHORT.get(row.get('runtime'), row.get('runtime'))}"


def mark_picks(ax, pts: Sequence[dict], x: str, y: str, picks: dict[str, list[str]]) -> None:
    """Draw every recommended point among `pts` with its roles' markers (hollow, one per role) and a label
    naming the roles. Artists carry gids `pick:ROLE:ID` and `picklabel:ID` (tests read them back)."""
    shown: set[str] = set()
    xs = [r[x] for r in pts if r[x] and r[x] > 0]
    mid = math.sqrt(min(xs) * max(xs)) if xs else 0.0  # log-axis middle: labels right of it point left
    for r in pts:
        roles = [role for role in picks.get(artifact_id(r), []) if role in ROLE_STYLE]
        for k, role in enumerate(roles):
            marker, color, _ = ROLE_STYLE[role]
            ax.scatter([r[x]], [r[y]], s=190 + 90 * k, marker=marker, facecolors="none", edgecolors=color, lw=1.6,
                       zorder=5, label=None if role in shown else f"recommended: {role}",
                       gid=f"pick:{role}:{artifact_id(r)}")
            shown.add(role)
        if roles:
            left = r[x] > mid
            ax.annotate(", ".join(ROLE_STYLE[role][2] for role in roles), (r[x], r[y]), fontsize=7, color="darkred",
                        xytext=(-10 if left else 10, -14), textcoords="offset points", ha="right" if left else "left",
                        fontweight="bold", gid=f"picklabel:{artifact_id(r)}")


def plotted_points(fig) -> dict[str, dict]:
    """{artifact id: {"x", "y", "picks": [roles]}} of a figure drawn by this module or report.mcu (read back
    from the artists' gids): what a plot shows, for tests and for checking one number per artifact."""
    out: dict[str, dict] = {}
    for ax in fig.axes:
        for c in ax.collections:
            gid = c.get_gid() or ""
            if gid.startswith("point:"):
                (xv, yv), = c.get_offsets().tolist()
                out.setdefault(gid[len("point:"):], {"picks": []}).update(x=xv, y=yv)
        for c in ax.collections:
            gid = c.get_gid() or ""
            if gid.startswith("pick:"):
                _, role, key = gid.split(":", 2)
                out.setdefault(key, {"picks": []})["picks"].append(role)
    return out


def pareto_png(rows: Sequence[dict], x: str, xlabel: str, path: str | os.PathLike, title: str,
               picks: dict[str, list[str]] | None = None, y: str = "macro_f1", ylabel: str = "macro-F1 (%)") -> Path:
    """`y` (already in %: the report converts once, for table and plots alike) against `x` on a log axis,
    the Pareto front drawn as a step line, every point numbered and named in a key beside the plot (names
    written at the points would collide in a cluster), every recommended point marked (`picks`: artifact
    id -> roles)."""
    plt = pyplot()
    picks = picks or {}
    pts = sorted((r for r in rows if r.get(x) and r.get(y) is not None), key=lambda r: (r[x], -r[y]))
    fig, ax = plt.subplots(figsize=(12, max(5.0, 1.2 + 0.16 * len(pts))))
    fig.subplots_adjust(left=0.07, right=0.62, bottom=0.1, top=0.92)
    runtimes = sorted({r["runtime"] for r in pts})
    colors = dict(zip(runtimes, plt.cm.tab10.colors))
    seen: set[str] = set()
    for r in pts:
        rt = r["runtime"]
        ax.scatter([r[x]], [r[y]], s=36, color=colors[rt], label=None if rt in seen else rt, zorder=3,
                   gid=f"point:{artifact_id(r)}")
        seen.add(rt)
    for i, r in enumerate(pts, 1):
        ax.annotate(str(i), (r[x], r[y]), fontsize=7, xytext=(3, 3 if i % 2 else -9), textcoords="offset points")
    front = pareto_front(pts, x, y)
    if front:
        ax.step([r[x] for r in front], [r[y] for r in front], where="post", color="black", lw=1,
                ls="--", label="Pareto front", zorder=2)
    mark_picks(ax, pts, x, y, picks)
    unit = "ms" if x.endswith("_ms") else "MB" if x.endswith("_mb") else ""
    key = "\n".join(f"{i:>2} {label(r)}: {r[y]:.2f} %, {r[x]:.3g} {unit}"
                     + (f"  <- {''.join(ROLE_CODES.get(x, '?') for x in picks[artifact_id(r)])}"
                        if picks.get(artifact_id(r)) else "")
                     for i, r in enumerate(pts, 1))
    fig.text(0.635, 0.92, key, va="top", ha="left", fontsize=7, family="monospace")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best", markerscale=0.5)
    if picks:
        fig.text(0.635, 0.04, "picks: " + ", ".join(f"{c} {r}" for r, c in ROLE_CODES.items()), fontsize=7,
                 family="monospace", wrap=True)
    return save_figure(fig, path, 110)


def family_png(table: Sequence[dict], baseline_f1: float | None, path: str | os.PathLike) -> Path:
    """Grouped bars: SE-ResNet and ResNet macro-F1 (fractions, shown in %) at each depth; the baseline as a line."""
    plt = pyplot()
    table = as_percent(table, ("se_resnet", "resnet"))
    baseline_f1 = None if baseline_f1 is None else 100.0 * baseline_f1
    fig, ax = plt.subplots(figsize=(7, 4.5))
    depths = [str(t["depth"]) for t in table]
    xs = np.arange(len(depths))
    for off, key, name in ((-0.2, "se_resnet", "SE-ResNet"), (0.2, "resnet", "ResNet")):
        vals = [t.get(key) if t.get(key) is not None else 0.0 for t in table]
        bars = ax.bar(xs + off, vals, width=0.4, label=name)
        ax.bar_label(bars, labels=[f"{v:.1f}" if t.get(key) is not None else "-" for v, t in zip(vals, table)], fontsize=8)
    if baseline_f1 is not None:
        ax.axhline(baseline_f1, color="gray", ls="--", label=f"rr_baseline ({baseline_f1:.1f})")
    ax.set_xticks(xs, depths)
    ax.set_xlabel("depth")
    ax.set_ylabel("macro-F1 (%)")
    ax.set_title("SE-ResNet vs ResNet (PyTorch FP32)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, 110)


def per_class_png(rows: Sequence[dict], classes: Sequence[str], path: str | os.PathLike) -> Path:
    """Grouped bars of per-class F1 (fractions in the rows, shown in %) for the given rows."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(classes)), 4.5))
    xs = np.arange(len(classes))
    w = 0.8 / max(1, len(rows))
    for i, r in enumerate(rows):
        f1 = r.get("per_class_f1") or {}
        ax.bar(xs - 0.4 + w * (i + 0.5), [100.0 * (f1.get(c) or 0.0) for c in classes], width=w, label=label(r))
    ax.set_xticks(xs, classes)
    ax.set_ylabel("F1 (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Per-class F1")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return save_figure(fig, path, 110)


def _confusion_on(ax, cm, classes: Sequence[str], title: str) -> None:
    from sklearn.metrics import ConfusionMatrixDisplay

    disp = ConfusionMatrixDisplay(confusion_matrix=np.asarray(cm), display_labels=list(classes))
    disp.plot(ax=ax, cmap="Blues", colorbar=False, values_format="d", xticks_rotation=45)
    for t in disp.text_.ravel():
        t.set_fontsize(7)
    ax.tick_params(labelsize=7)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    ax.set_title(title, fontsize=9)


def confusion_grid_png(items: Sequence[tuple[str, list]], classes: Sequence[str], path: str | os.PathLike) -> Path:
    """One confusion matrix (counts; rows true, columns predicted; scikit-learn's ConfusionMatrixDisplay) per
    (title, matrix)."""
    plt = pyplot()
    n = max(1, len(items))
    cols = min(3, n)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 4 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (title, cm) in zip(axes.flat, items):
        _confusion_on(ax, cm, classes, title)
    fig.tight_layout()
    return save_figure(fig, path, 100)


def read_history(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def curves_png(histories: dict[str, list[dict]], path: str | os.PathLike) -> Path:
    """Training curves of every model: train (solid) and validation (dashed) loss, validation macro-F1."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    num = lambda h, k: [float(e[k]) if e.get(k) not in (None, "") else np.nan for e in h]  # noqa: E731
    for (name, hist), color in zip(histories.items(), plt.cm.tab10.colors * 3):
        ep = num(hist, "epoch") if hist and "epoch" in hist[0] else list(range(1, len(hist) + 1))
        if hist and "train_loss" in hist[0]:
            ax1.plot(ep, num(hist, "train_loss"), color=color, marker=".", label=f"{name} train")
        if hist and "val_loss" in hist[0]:
            ax1.plot(ep, num(hist, "val_loss"), color=color, ls="--", marker="x", label=f"{name} val")
        if hist and "val_macro_f1" in hist[0]:
            f1 = np.asarray(num(hist, "val_macro_f1"))
            ax2.plot(ep, f1 * 100, color=color, marker=".", label=name)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("cross-entropy")
    ax1.set_title("loss (train solid, validation dashed)")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation macro-F1 (%)")
    ax2.set_title("validation macro-F1")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return save_figure(fig, path, 110)
