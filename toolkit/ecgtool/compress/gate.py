"""The INT8 accuracy gate: INT8 may cost at most `macro` points of macro-F1 and `per_class` points of any class's F1
against FP32 on the validation split; when it costs more, keep the most sensitive nodes in FP32 until it holds.

The scan is a sensitivity analysis over groups of nodes that INT8 usually hurts in a 1-D SE-ResNet:
the stem convolution (1 input channel of min-max-normalised signal: u8 activations span 0-255 and
saturate AVX2's 16-bit pair sums), the squeeze-and-excitation gates (Sigmoid and its Mul) and their
small fully connected convolutions, the residual additions and the classifier. Each group is
quantised away once alone (kept FP32) and ranked by how much of the loss it takes back; the groups
are then kept FP32 in that order, most sensitive first, until the gate holds or none is left.
F1s are fractions; the thresholds are in points (1 point = 0.01).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

DEFAULT_MACRO_POINTS = 0.5
DEFAULT_CLASS_POINTS = 1.0


@dataclass
class Verdict:
    """How INT8 predictions compare with FP32 on one split (F1 as fractions, losses in points)."""

    macro_loss_points: float
    class_loss_points: dict[str, float]
    agreement: float
    passed: bool
    macro_points: float = DEFAULT_MACRO_POINTS
    class_points: float = DEFAULT_CLASS_POINTS

    @property
    def worst_class(self) -> tuple[str, float]:
        return max(self.class_loss_points.items(), key=lambda kv: kv[1]) if self.class_loss_points else ("", 0.0)

    @property
    def excess(self) -> float:
        """How far past the gate (points, <= 0 when it holds): the larger of the two overshoots."""
        return max(self.macro_loss_points - self.macro_points, self.worst_class[1] - self.class_points)

    def as_dict(self) -> dict:
        c, loss = self.worst_class
        return {"macro_loss_points": round(self.macro_loss_points, 3), "worst_class": c,
                "worst_class_loss_points": round(loss, 3), "agreement": round(self.agreement, 6), "passed": self.passed,
                "class_loss_points": {k: round(v, 3) for k, v in self.class_loss_points.items()}}


def judge(y: np.ndarray, fp32_pred: np.ndarray, int8_pred: np.ndarray, classes: Sequence[str],
          macro_points: float = DEFAULT_MACRO_POINTS, class_points: float = DEFAULT_CLASS_POINTS) -> Verdict:
    """Macro-F1 and per-class F1 loss of `int8_pred` against `fp32_pred` (labels `y`), and whether the gate holds."""
    from ecgtool.evaluate.metrics import compute_metrics

    a, b = compute_metrics(y, fp32_pred, list(classes)), compute_metrics(y, int8_pred, list(classes))
    macro = 100 * (a["macro_f1"] - b["macro_f1"])
    per = {c: 100 * (a["per_class"][c]["f1"] - b["per_class"][c]["f1"]) for c in classes}
    passed = macro <= macro_points + 1e-9 and all(v <= class_points + 1e-9 for v in per.values())
    return Verdict(macro, per, float(np.mean(fp32_pred == int8_pred)) if len(y) else 1.0, passed, macro_points, class_points)


def candidate_groups(path: str | os.PathLike) -> list[tuple[str, list[str]]]:
    """[(group, node names)] of an FP32 ONNX graph, in scan order: stem conv, SE gates, SE fc, residual adds, classifier."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    inits = {t.name for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    convs = [n for n in g.node if n.op_type == "Conv"]
    sigmoids = [n for n in g.node if n.op_type in ("Sigmoid", "HardSigmoid")]
    sig_out = {o for n in sigmoids for o in n.output}
    gates = [n.name for n in sigmoids] + [n.name for n in g.node if n.op_type == "Mul" and set(n.input) & sig_out]
    se_fc: list[str] = []
    for s in sigmoids:  # walk back from the gate to its squeeze (global pooling), collecting the fc layers
        todo, seen = list(s.input), set()
        while todo:
            n = producer.get(todo.pop())
            if n is None or n.name in seen:
                continue
            seen.add(n.name)
            if n.op_type in ("GlobalAveragePool", "ReduceMean"):
                continue
            if n.op_type in ("Conv", "Gemm", "MatMul") and n.name not in se_fc:
                se_fc.append(n.name)
            if n.op_type not in ("Conv", "Gemm", "MatMul", "Relu", "Flatten", "Reshape", "Unsqueeze", "Squeeze"):
                continue
            todo += [i for i in n.input if i and i not in inits]
    adds = [n.name for n in g.node if n.op_type == "Add" and sum(1 for i in n.input if i not in inits) == 2]
    head = [n.name for n in g.node if n.op_type in ("Gemm", "MatMul") and n.name not in se_fc]
    groups = [("stem conv", [convs[0].name] if convs else []), ("SE gates", gates), ("SE fc", se_fc),
              ("residual adds", adds), ("classifier", head[-1:])]
    return [(name, nodes) for name, nodes in groups if nodes]


def scan(build: Callable[[Path, list[str]], None], predict: Callable[[Path], np.ndarray], judge_fn: Callable[[np.ndarray], Verdict],
         groups: list[tuple[str, list[str]]], base_exclude: Sequence[str], workdir: Path,
         baseline: tuple[Path, Verdict] | None = None) -> dict:
    """Rank `groups` by sensitivity, then keep them FP32 most sensitive first until the gate holds.

    `build(out, exclude)` quantises with those nodes kept float; `predict(path)` gives validation argmax;
    `judge_fn(pred)` compares with FP32. `baseline` (the ungated file and its verdict) is kept unless a
    candidate does strictly better (smaller overshoot, then smaller macro loss): FP32 nodes that buy
    nothing are not kept. Returns {"scan": [...], "kept_fp32": [...], "groups_fp32": [...],
    "verdict": Verdict, "path": Path of the best file}.
    """
    ranked = []
    for i, (name, nodes) in enumerate(groups):
        cand = workdir / f"scan{i}.onnx"
        build(cand, [*base_exclude, *nodes])
        v = judge_fn(predict(cand))
        ranked.append({"group": name, "nodes": nodes, **v.as_dict(), "_excess": v.excess})
    order = sorted(range(len(groups)), key=lambda i: (ranked[i]["_excess"], -ranked[i]["agreement"], i))
    kept: list[str] = []
    names: list[str] = []
    best: tuple[tuple[float, float], Path, Verdict, list[str], list[str]] | None = None
    if baseline is not None:
        best = ((round(baseline[1].excess, 6), round(baseline[1].macro_loss_points, 6)), baseline[0], baseline[1], [], [])
    for step, i in enumerate(order):
        kept = [*kept, *groups[i][1]]
        names = [*names, groups[i][0]]
        cand = workdir / f"gate{step}.onnx"
        if step == 0:
            cand = workdir / f"scan{i}.onnx"  # already built
        else:
            build(cand, [*base_exclude, *kept])
        v = judge_fn(predict(cand))
        key = (round(v.excess, 6), round(v.macro_loss_points, 6))
        if best is None or key < best[0]:
            best = (key, cand, v, list(kept), list(names))
        if v.passed:
            break
    for r in ranked:
        r.pop("_excess")
    assert best is not None
    return {"scan": ranked, "kept_fp32": best[3], "groups_fp32": best[4], "verdict": best[2], "path": best[1]}


def latency_ratio(a: Path, b: Path, runs: int = 60, shape: tuple[int, ...] | None = None) -> float:
    """Median batch-1 latency of ONNX file `b` over that of `a` (1 thread, interleaved calls in this process)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    sessions = [ort.InferenceSession(str(p), sess_options=opts, providers=["CPUExecutionProvider"]) for p in (a, b)]
    inp = sessions[0].get_inputs()[0]
    dims = shape or tuple(d if isinstance(d, int) else 1 for d in inp.shape)
    x = {inp.name: np.random.default_rng(0).random(dims, dtype=np.float32)}
    times: list[list[float]] = [[], []]
    for s in sessions:
        for _ in range(5):
            s.run(None, x)
    for _ in range(runs):
        for t, s in zip(times, sessions):
            t0 = time.perf_counter()
            s.run(None, x)
            t.append(time.perf_counter() - t0)
    return float(np.median(times[1]) / np.median(times[0]))
