"""The report's artifact table: the columns the choice of an artifact turns on, narrow enough for a page
(every markdown line <= WIDTH characters), and report.csv with every column bench measured.

Columns: artifact (short name, see `short_name`), backend, precision, size MB, p50 latency (or the status
word, skipped / failed, when the artifact was not timed), macro-F1,
its delta against the FP32 parent and the worst class's, argmax agreement with the parent, the worst of
own-test and external macro-F1 (`bench --external`), flash / RAM (microcontroller rows), and which pick
(recommendation role) the artifact is. The reasons behind non-ok statuses follow the table as notes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ecgtool.core.ui import markdown_table
from ecgtool.report.plots import ROLE_CODES, RUNTIME_SHORT, artifact_id

#: the widest a markdown table line may be (characters)
WIDTH = 120
#: the widest an artifact's short name may be; longer names lose their middle to an ellipsis
NAME_WIDTH = 30
LEGEND = ("artifact: its path in the run, `model.` dropped, `-prunedNN` as `-pNN`, `openvino-X/model.xml` as `ov-X`; "
          "backend: PT PyTorch, ORT ONNX Runtime, OV OpenVINO, TRT TensorRT, RR+ORT the RR baseline's features + its trees in ONNX Runtime, TFLM TFLite Micro; "
          "F1 and agreement in %, deltas in points against the FP32 parent (worst class named, with the windows of that "
          "class INT8 lost-gained against the parent where the line has room: one window of a 23-window class is 2-4 "
          "points); pick: "
          + ", ".join(f"{c} {r}" for r, c in ROLE_CODES.items()) + ". Every column bench measured is in report.csv.")


def short_name(row: dict, width: int = NAME_WIDTH) -> str:
    """`se_resnet18-pruned50/openvino-int8/model.xml` -> `se_resnet18-p50/ov-int8`, at most `width` characters."""
    path = str(row.get("path") or row.get("model") or "?").replace("\\", "/").strip("/")
    parts = path.split("/")
    model = parts[0]
    if "-pruned" in model:
        head, _, tail = model.partition("-pruned")
        model = f"{head}-p{tail}"
    rest = parts[1:]
    if len(rest) == 2 and rest[0].startswith("openvino-"):
        rest = ["ov-" + rest[0][len("openvino-"):]]
    elif rest:
        rest = ["/".join(rest)]
        if rest[0].startswith("model."):
            rest = [rest[0][len("model."):]]
    name = "/".join([model, *rest])
    if len(name) > width:
        keep = width - 1
        name = name[: keep - keep // 2] + "…" + name[len(name) - keep // 2:]
    return name


def _pts(v: float | None, digits: int = 2) -> str | None:
    return None if v is None else f"{100 * v:+.{digits}f}"


def _f1(v: float | None) -> float | None:
    return None if v is None else round(100.0 * v, 2)


def _windows(r: dict) -> str:
    """` (lost-gained)`: the windows behind the worst class's delta (bench's f1_delta_worst_windows), "" if unknown."""
    w = r.get("f1_delta_worst_windows")
    return f" ({w[0]}-{w[1]})" if w else ""


def compact_rows(rows: Sequence[dict], roles: dict[str, list[str]], score: str = "macro_f1") -> tuple[list[dict], list[str]]:
    """(table rows, columns) of the artifact table. `roles`: artifact id (plots.artifact_id) -> its pick roles. `score`
    `worst_f1` adds the worst-of-own-and-external column (the value the recommendation ranks by)."""
    mcu = any(r.get("flash_kb") is not None and r.get("ram_kb") is not None for r in rows)
    int8 = any(r.get("agreement_fp32") is not None for r in rows)
    out = []
    for r in rows:
        status = str(r.get("status") or "ok").split(":")[0]
        worst = r.get("f1_delta_worst")
        c = {"artifact": short_name(r), "backend": RUNTIME_SHORT.get(r.get("runtime"), r.get("runtime")),
             "prec": r.get("precision"), "status": status, "MB": r.get("size_mb"),
             "p50 ms": r.get("p50_ms") if status == "ok" else status, "F1 %": _f1(r.get("macro_f1")),
             "ΔF1": _pts(r.get("f1_delta_macro")),
             "worst Δ": None if worst is None else f"{_pts(worst, 1)} {r.get('f1_delta_worst_class')}{_windows(r)}",
             "agree %": None if r.get("agreement_fp32") is None else round(100 * r["agreement_fp32"], 1),
             "worst F1": _f1(r.get("worst_f1")),
             "flash/RAM KB": (f"{r['flash_kb']:.0f}/{r['ram_kb']:.0f}" if r.get("flash_kb") is not None
                              and r.get("ram_kb") is not None else None),
             "pick": "".join(ROLE_CODES[x] for x in roles.get(artifact_id(r), []) if x in ROLE_CODES) or None}
        out.append(c)
    cols = ["artifact", "backend", "prec", "MB", "p50 ms", "F1 %"]  # `status` stays in the rows (HTML row class)
    cols += ["ΔF1", "worst Δ", "agree %"] if int8 else []
    cols += ["worst F1"] if score == "worst_f1" else []
    cols += ["flash/RAM KB"] if mcu else []
    cols += ["pick"]
    if int8 and max(map(len, markdown_table(out, cols).splitlines())) > WIDTH:  # no room: the windows stay in the csv
        for c, r in zip(out, rows):
            if c["worst Δ"] is not None:
                c["worst Δ"] = c["worst Δ"].removesuffix(_windows(r))
    return out, cols


def status_notes(rows: Sequence[dict]) -> list[str]:
    """One line per distinct non-ok status (or simulated F1), naming the artifacts it applies to."""
    by: dict[str, list[str]] = {}
    for r in rows:
        status = str(r.get("status") or "ok")
        if status != "ok":
            by.setdefault(status, []).append(short_name(r))
        src = r.get("f1_source")
        if src and src != "measured":
            by.setdefault(f"F1 {src}" + (" (TensorRT's INT8 arithmetic run by ONNX Runtime without fused kernels)"
                                         if src == "simulated-qdq" else ""), []).append(short_name(r))
    return [f"{what}: {', '.join(names)}" for what, names in by.items()]


def write_report_csv(path: Path, rows: Sequence[dict], roles: dict[str, list[str]]) -> Path:
    """report.csv: every column of bench (bench.csv's flattening) plus the short name and the pick roles."""
    from ecgtool.bench.runner import csv_rows
    from ecgtool.core.files import write_csv

    flat, columns = csv_rows(rows)
    for f, r in zip(flat, rows):
        f["artifact"] = short_name(r, width=10_000)
        f["pick"] = "; ".join(roles.get(artifact_id(r), []))
    return write_csv(path, flat, ["artifact", "pick", *[c for c in columns if c not in ("artifact", "pick")]])
