"""INT8 rows of a bench: their target and form, what they cost against their FP32 parent, and TensorRT's F1 simulated.

- `int8_columns(path)`: `int8_target`, `int8_form` and `int8_qat_epochs` (0: post-training; `quantize --qat` files
  say how many epochs of quantisation-aware training) from the file's ecgtool metadata (ONNX INT8 files; an
  OpenVINO IR gets its source graph's through the manifest's parent).
- `score_tensorrt_simulated`: TensorRT cannot run here, but its INT8 arithmetic is what a QDQ graph
  run as written computes (ONNX Runtime with graph optimisations off: explicit quantise/dequantise
  around FP32 operators, no fused integer kernels). The TensorRT row gets that F1 with
  `f1_source: simulated-qdq`; its status (latency) stays skipped.
- `compare_with_parents`: every INT8 row gets, against the PyTorch row of the same model folder,
  measured in this bench process on the same records: `f1_delta_macro`, `f1_delta_worst` (the worst
  class, fractions; negative = INT8 lost), `f1_delta_worst_class`, `f1_delta` per class,
  `agreement_fp32` (argmax agreement), `int8_gate` (pass/fail, ecgtool.compress.gate.judge, under the rule the file
  was quantised with and records in its metadata: points limits, minimum window count, agreement floor; the gate's
  defaults, floor included, for a file that records none, e.g. a .tflite) and `int8_gate_reason` (in words).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ecgtool.compress.gate import DEFAULT_AGREEMENT, judge, windows_changed
from ecgtool.core.names import (ONNX_META_INT8_FORM, ONNX_META_INT8_FP32_NODES, ONNX_META_INT8_GATE,
                                ONNX_META_INT8_QAT_EPOCHS, ONNX_META_INT8_TARGET)

ARGMAX = "_argmax"  # per-row predictions kept while benching, dropped before anything is written


def _onnx_props(path: Path) -> dict:
    import onnx

    try:
        return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    except Exception:  # not ONNX: no INT8 metadata
        return {}


def int8_columns(path: Path) -> dict:
    """{int8_target, int8_form, int8_fp32_nodes} of an INT8 ONNX file (or the ONNX beside/behind an OpenVINO IR)."""
    p = Path(path)
    if p.suffix == ".xml":  # an OpenVINO IR: NNCF's (its sidecar says) or read from a QDQ graph of the model folder
        from ecgtool.core.files import read_json
        from ecgtool.core.names import OPENVINO_SIDECAR

        side = p.parent / OPENVINO_SIDECAR
        meta = read_json(side) if side.is_file() else {}
        if meta.get("int8_form"):
            return {"int8_target": meta.get("int8_target"), "int8_form": meta["int8_form"], "int8_fp32_nodes": 0,
                    "int8_qat_epochs": 0}
        p = p.parent.parent / meta.get("source", "")
    if p.suffix != ".onnx" or not p.is_file():
        return {}
    props = _onnx_props(p)
    if ONNX_META_INT8_FORM not in props:
        return {}
    nodes = json.loads(props.get(ONNX_META_INT8_FP32_NODES) or "[]")
    cols = {"int8_target": props.get(ONNX_META_INT8_TARGET), "int8_form": props[ONNX_META_INT8_FORM],
            "int8_fp32_nodes": len(nodes), "int8_qat_epochs": int(props.get(ONNX_META_INT8_QAT_EPOCHS) or 0)}
    gate = json.loads(props.get(ONNX_META_INT8_GATE) or "null") or {}
    rule = {k: gate[k] for k in GATE_RULE if gate.get(k) is not None}
    return cols | ({GATE_RULE_KEY: rule} if rule else {})


#: the gate settings an INT8 file records (quantize's --gate-macro/--gate-class/--gate-min-windows/--gate-agreement),
#: judge()'s keyword for each; bench judges the file by the rule it was quantised under (defaults where it has none)
GATE_RULE = {"macro_points": "macro_points", "class_points": "class_points", "min_windows": "min_windows",
             "agreement_floor": "agreement_floor"}
GATE_RULE_KEY = "_int8_gate_rule"  # kept on a row while benching, dropped before anything is written


def score_tensorrt_simulated(rows: list[dict], candidates: list[dict], x_of: Any, y: np.ndarray,
                             classes: list[str], threads: int | None, batch: int, metrics: Any) -> dict[str, Any]:
    """F1 of every TensorRT INT8 row that has its QDQ ONNX graph, simulated by ONNX Runtime without graph optimisations
    (`x_of(predictor)`: the windows as that graph is deployed, bench.windows.Windows.of). Returns the simulating
    predictors by row index (as a string, like the bench's own), for the external datasets' columns."""
    from ecgtool.runtime.onnxruntime import OnnxRuntimePredictor

    sims: dict[str, Any] = {}
    for i, (row, cand) in enumerate(zip(rows, candidates)):
        if cand.get("trt") != "int8" or Path(cand["path"]).suffix != ".onnx":
            continue
        try:
            pred = OnnxRuntimePredictor(Path(cand["path"]), threads=threads, optimize=False)
            row.update(metrics(pred, x_of(pred), y, classes, batch))
            row["f1_source"] = "simulated-qdq"
            sims[str(i)] = pred
        except Exception as exc:  # a broken graph: the row says so, the bench goes on
            row["f1_source"] = f"simulation failed: {str(exc).splitlines()[0][:120]}"
        row.update(int8_columns(cand["path"]))
    return sims


def compare_with_parents(rows: list[dict], classes: list[str], y: np.ndarray) -> None:
    """Per-class F1 delta, argmax agreement and the gate's verdict of every INT8 row against the PyTorch row of its
    model folder (`y`: the labels both were scored on)."""
    parents = {r["model"]: r for r in rows if r.get("kind") == "pytorch" and r.get(ARGMAX) is not None}
    for r in rows:
        if r.get("precision") != "int8" or r.get(ARGMAX) is None:
            continue
        parent = parents.get(r["model"])
        if parent is None:
            continue
        pf, f = parent.get("per_class_f1") or {}, r.get("per_class_f1") or {}
        delta = {c: round(f[c] - pf[c], 6) for c in classes if c in f and c in pf and None not in (f[c], pf[c])}
        worst = min(delta, key=delta.get) if delta else None
        r["f1_delta_macro"] = round(r["macro_f1"] - parent["macro_f1"], 6)
        r["f1_delta_worst"] = delta[worst] if worst else None
        r["f1_delta_worst_class"] = worst
        # how many windows that delta is (a 23-window class moves 2-4 points per window): (lost, gained) for the class
        r["f1_delta_worst_windows"] = (list(windows_changed(y, parent[ARGMAX], r[ARGMAX], classes.index(worst)))
                                       if worst else None)
        r["f1_delta"] = delta
        r["agreement_fp32"] = round(float(np.mean(r[ARGMAX] == parent[ARGMAX])), 6)
        rule = r.get(GATE_RULE_KEY) or {}
        verdict = judge(y, parent[ARGMAX], r[ARGMAX], classes,
                        **{GATE_RULE[k]: v for k, v in rule.items()}) if rule else judge(
            y, parent[ARGMAX], r[ARGMAX], classes, agreement_floor=DEFAULT_AGREEMENT)
        r["int8_gate"] = "pass" if verdict.passed else "fail"
        r["int8_gate_reason"] = verdict.reason
    for r in rows:
        r.pop(ARGMAX, None)
        r.pop(GATE_RULE_KEY, None)
