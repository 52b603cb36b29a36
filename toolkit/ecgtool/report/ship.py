"""What the report adds so its recommendation ships: the pick among artifacts `ecgtool package` takes,
with the exact command, why the others (OpenVINO IR, microcontroller files) are not packaged, and warnings
that make the figures suspect (best F1 near chance, timing on an overloaded machine)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Sequence

#: artifact kinds `ecgtool package` takes (a PyTorch model folder is exported to ONNX; an .onnx ships as it is;
#: the RR baseline's folder ships its classifier as ONNX, its features computed in the bundle)
PACKAGEABLE_KINDS = ("pytorch", "onnxruntime", "baseline")
#: best macro-F1 below this multiple of chance (1 / number of classes) is called near chance
NEAR_CHANCE = 1.5


def packageable(row: dict) -> bool:
    return row.get("kind") in PACKAGEABLE_KINDS


def why_not(row: dict) -> str:
    if row.get("kind") == "tflm":
        return ("a microcontroller artifact: its firmware takes the C export beside the .tflite (model.*-c/); "
                "`ecgtool package` of the .tflite gives a bundle for checking it on a computer")
    return f"a {row.get('kind')} artifact; `ecgtool package` takes PyTorch model folders and .onnx files"


def ship_pick(rows: Sequence[dict], recommend, tolerance: float = 1.0) -> dict | None:
    """The artifact `ship_lines` tells the user to package: the smallest packageable `ok` row within
    `tolerance` points of the best packageable one (`recommend`: report.build.recommend), or None."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get("macro_f1") is not None and packageable(r)]
    rec = recommend(ok, tolerance)
    return rec.get("smallest") or rec.get("best")


def ship_lines(rows: Sequence[dict], run: Path, recommend, tolerance: float = 1.0) -> list[str]:
    """The recommendation among packageable rows (`recommend`: report.build.recommend), and the command
    that packages it."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get("macro_f1") is not None]
    if not ok:
        return []
    best = max(ok, key=lambda r: r["macro_f1"])
    lines = []
    if not packageable(best):
        lines.append(f"The best row ({best['model']} {best['variant']} on {best['runtime']}) cannot be packaged: "
                     f"{why_not(best)}.")
    pick = ship_pick(ok, recommend, tolerance)
    if pick is None:
        return lines + ["No packageable artifact (PyTorch folder, .onnx or the RR baseline) ran successfully."]
    path = Path(run) / pick["path"]
    lines.append(f"To ship: **{pick['path']}** ({pick['model']} {pick['variant']}, macro-F1 "
                 f"{100 * pick['macro_f1']:.2f} %, {pick['size_mb']:.3g} MB; the smallest packageable artifact within "
                 f"{tolerance:g} point(s) of the best packageable one): "
                 f"`ecgtool package {shlex.quote(str(path))} --out {shlex.quote(str(Path(run) / 'bundle'))}`")
    if pick.get("kind") == "baseline":
        lines.append("The RR baseline's size is its stored training features; its bundle carries the tree classifier "
                     "as ONNX (larger) and computes wfdb XQRS R peaks and the window features on the device.")
    return lines


def warning_lines(rows: Sequence[dict], machine: dict, classes: Sequence[str]) -> list[str]:
    out = []
    ok = [r["macro_f1"] for r in rows if r.get("status") == "ok" and r.get("macro_f1") is not None]
    k = len(classes) or 7
    if ok and max(ok) < NEAR_CHANCE / k:
        out.append(f"Warning: the best macro-F1 ({100 * max(ok):.1f} %) is near chance ({100 / k:.1f} % for {k} "
                   f"classes): these models have not learnt the task; do not ship them.")
    cores = machine.get("cores")
    loads = [v for v in (machine.get("load_start"), machine.get("load_end")) if isinstance(v, (int, float))]
    if cores and loads and max(loads) > cores:
        out.append(f"Warning: the load average ({', '.join(f'{v:g}' for v in loads)}) exceeded the {cores} cores "
                   f"during timing: latencies are inflated by other work; re-run `ecgtool bench` on a quiet machine.")
    return out
