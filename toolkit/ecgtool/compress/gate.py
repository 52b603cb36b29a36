"""The INT8 accuracy gate: INT8 may cost at most `macro` points of macro-F1 and `per_class` points of any class's F1
against FP32 on the gate's windows (validation plus training windows outside the calibration set, below); when it
costs more, keep the most sensitive nodes in FP32 until it holds.

The scan is a sensitivity analysis over groups of nodes that INT8 usually hurts in a 1-D SE-ResNet:
the stem convolution (1 input channel of min-max-normalised signal: u8 activations span 0-255 and
saturate AVX2's 16-bit pair sums), the squeeze-and-excitation gates (Sigmoid and its Mul) and their
small fully connected convolutions, the residual additions and the classifier (and, in an RR-head graph, the
fusion of the RR features with the trunk, which compress.quantize keeps FP32 by default). Each group is
quantised away once alone (kept FP32) and ranked by how much of the loss it takes back; the groups
are then kept FP32 in that order, most sensitive first, until the gate holds or none is left.
F1s are fractions; the thresholds are in points (1 point = 0.01).

The window rule (`min_windows`): on a validation split with ~20 windows in a minority class, one window
that changes class moves that class's F1 by ~2.5 points and macro-F1 by ~0.5, so the points alone would
fail the gate on a single flip. A loss beyond the points limit therefore fails the gate only when at least
`min_windows` windows carry it, net: for a class, windows classified correctly one-vs-rest (true class c
and predicted c, or neither) under FP32 but not under INT8, minus the reverse; for macro-F1, windows right
under FP32 and wrong under INT8 minus the reverse. The default, 5, is the smallest one-way count that the
exact McNemar test (scipy.stats.binomtest on the discordant windows) calls significant at 5 % (one-sided
p = 0.5^5 = 0.031; 4 windows give 0.0625): fewer cannot be told from quantisation noise. A waived loss is
named with its count and p-value in the verdict; `min_windows=0` turns the rule off (points alone decide).

The agreement floor (`agreement_floor`, a percentage): INT8 must also give FP32's argmax on at least that
share of the gate's windows. F1 can hold while windows move between classes in both directions (a
deployed monitor then reports a different rhythm on those windows), and on a record of one patient the
share of windows that keep their rhythm is what a user sees. A shortfall fails the gate on its own (no window
rule: the floor is already a count, (1 - floor) x n windows may differ) and counts in `excess` in percentage
points, so the scan ranks groups by how much agreement each restores when agreement is what fails.
`compress.quantize` applies DEFAULT_AGREEMENT; `judge` alone applies none unless asked (0 = off); bench
(bench/int8.py) passes the rule an INT8 file records, or the defaults with DEFAULT_AGREEMENT where it records none.

The windows the gate judges (`gate_windows`): the validation split plus up to `gate_train` training windows
outside the calibration set, stratified by class (default DEFAULT_GATE_TRAIN). A small validation split is too
few to tell 99 % agreement from 98.5 %: on 336 windows the standard error of an agreement near 99 % is 0.5
points, so the scan fits noise, keeping FP32 the groups that happen to restore two windows of validation
while the file loses F1 on new recordings. INT8's error does not depend on labels or on whether a window
was used for training, and the training windows the quantiser calibrated on are left out. A network is
usually surer of windows it trained on, so flips may be rarer there than on new recordings; the validation
windows stay in the set, and `gate_train=0` judges on validation alone. Measured in benchmarks/RESULTS.md
(issue #10, "The gate on more windows").

The scan also stops when the speed gain is gone: a candidate whose batch-1 latency is no lower than the FP32
graph's (`too_slow`) is neither kept nor extended.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ecgtool.core.errors import BadInput

DEFAULT_MACRO_POINTS = 0.5
DEFAULT_CLASS_POINTS = 1.0
#: a loss beyond the points limits fails the gate only when at least this many windows carry it (net); see above
DEFAULT_MIN_WINDOWS = 5
#: the one-sided significance level the default min_windows is chosen for (exact McNemar test)
MIN_WINDOWS_ALPHA = 0.05
#: INT8 must agree with FP32's argmax on at least this % of the gate's windows (quantize's default; 0 = off);
#: the issue's goal on whole MIT-BIH records, measured in benchmarks/RESULTS.md (issue #10, agreement section)
DEFAULT_AGREEMENT = 99.0
#: the gate judges on the validation split plus up to this many training windows outside the calibration set
#: (gate_windows; 0 = validation alone): with ~2,300 windows a 99 % agreement is known to about 0.2 points
DEFAULT_GATE_TRAIN = 2000
#: candidate_groups' name of an RR-head graph's fusion (rr_fusion_nodes); kept FP32 by default (compress.quantize)
RR_FUSION = "RR fusion"
#: its `--keep-fp32` name
RR_FUSION_CHOICE = "rr-fusion"


def whole_count(option: str, value: Any, what: str = "windows") -> int:
    """`value` as a whole number, 0 or more, else BadInput naming `option`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadInput(f"{option} {value}: must be a whole number of {what}, 0 or more")
    return value


def gate_windows(ds, calibration: Sequence[int], n_train: int = DEFAULT_GATE_TRAIN,
                 seed: int = 0) -> tuple[np.ndarray, int]:
    """(sorted dataset indices, training windows among them) the gate judges on: the validation split and up to
    `n_train` training windows not in `calibration` (dataset indices), a class-stratified sample (module doc)."""
    from ecgtool.compress.calibration import stratified_sample

    n_train = whole_count("--gate-train", n_train, "training windows")
    val = np.asarray(ds.indices("val"), dtype=np.int64)
    spare = np.setdiff1d(np.asarray(ds.indices("train"), dtype=np.int64), np.asarray(calibration, dtype=np.int64))
    if n_train == 0 or len(spare) == 0:
        return np.sort(val), 0
    extra = spare[stratified_sample(ds.labels[spare], min(n_train, len(spare)), seed)]
    return np.sort(np.concatenate([val, extra])), int(len(extra))


def windows_changed(y: np.ndarray, a: np.ndarray, b: np.ndarray, k: int | None = None) -> tuple[int, int]:
    """(lost, gained): windows right under `a` (FP32) and wrong under `b` (INT8), and the reverse.

    Right means `pred == y`, or for class index `k` right one-vs-rest: `(pred == k) == (y == k)` (a window
    INT8 newly misses or newly claims for k is lost for k)."""
    y, a, b = (np.asarray(v) for v in (y, a, b))
    ra, rb = (a == y, b == y) if k is None else ((a == k) == (y == k), (b == k) == (y == k))
    return int(np.sum(ra & ~rb)), int(np.sum(~ra & rb))


def mcnemar_p(lost: int, gained: int) -> float:
    """One-sided exact McNemar p-value that INT8 is worse: binomial test of `lost` among the discordant windows."""
    from scipy.stats import binomtest

    n = lost + gained
    return 1.0 if n == 0 else float(binomtest(lost, n, 0.5, alternative="greater").pvalue)


def smallest_significant_count(alpha: float = MIN_WINDOWS_ALPHA) -> int:
    """The fewest windows, all lost and none gained, that the exact McNemar test calls significant at `alpha`."""
    b = 1
    while mcnemar_p(b, 0) >= alpha:
        b += 1
    return b


@dataclass
class Verdict:
    """How INT8 predictions compare with FP32 on one split (F1 as fractions, losses in points)."""

    macro_loss_points: float
    class_loss_points: dict[str, float]
    agreement: float
    passed: bool
    macro_points: float = DEFAULT_MACRO_POINTS
    class_points: float = DEFAULT_CLASS_POINTS
    min_windows: int = DEFAULT_MIN_WINDOWS
    #: (lost, gained) windows: overall (macro) and per class (one-vs-rest), see windows_changed
    macro_windows: tuple[int, int] = (0, 0)
    class_windows: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: losses beyond the points limits that the window rule let through, each with its count and p-value
    waived: list[str] = field(default_factory=list)
    #: losses that fail the gate, each with its count
    failures: list[str] = field(default_factory=list)
    #: least argmax agreement with FP32, % of windows (0 = no floor)
    agreement_floor: float = 0.0

    @property
    def agreement_shortfall(self) -> float:
        """Percentage points of agreement below the floor (<= 0 when it holds; -inf without a floor)."""
        return self.agreement_floor - 100 * self.agreement if self.agreement_floor > 0 else float("-inf")

    @property
    def worst_class(self) -> tuple[str, float]:
        return max(self.class_loss_points.items(), key=lambda kv: kv[1]) if self.class_loss_points else ("", 0.0)

    def counts(self, cls: str | None = None) -> bool:
        """Whether a loss of macro-F1 (cls None) or of class `cls` is carried by enough windows to count."""
        lost, gained = self.macro_windows if cls is None else self.class_windows.get(cls, (0, 0))
        return self.min_windows <= 0 or lost - gained >= self.min_windows

    @property
    def excess(self) -> float:
        """How far past the gate (points, <= 0 when it holds): the larger overshoot of the losses that count
        (a waived overshoot counts as 0)."""
        over = [(self.macro_loss_points - self.macro_points, self.counts())]
        over += [(v - self.class_points, self.counts(c)) for c, v in self.class_loss_points.items()]
        f1 = max(o if counted else min(o, 0.0) for o, counted in over)
        return max(f1, self.agreement_shortfall)

    @property
    def reason(self) -> str:
        """The decision in one line: what failed, or that it holds and what (if anything) was waived."""
        rule = f"limits {self.macro_points:g} macro / {self.class_points:g} per class, >= {self.min_windows} windows"
        if self.agreement_floor > 0:
            rule += f", agreement >= {self.agreement_floor:g} %"
        if self.failures:
            return f"fails ({rule}): " + "; ".join(self.failures)
        if self.waived:
            return f"holds ({rule}); waived: " + "; ".join(self.waived)
        return f"holds ({rule}): no loss beyond the limits"

    def as_dict(self) -> dict:
        c, loss = self.worst_class
        return {"macro_loss_points": round(self.macro_loss_points, 3), "worst_class": c,
                "worst_class_loss_points": round(loss, 3), "agreement": round(self.agreement, 6), "passed": self.passed,
                "class_loss_points": {k: round(v, 3) for k, v in self.class_loss_points.items()},
                "min_windows": self.min_windows, "macro_windows_lost_gained": list(self.macro_windows),
                "class_windows_lost_gained": {k: list(v) for k, v in self.class_windows.items()},
                "waived": list(self.waived), "agreement_floor": self.agreement_floor, "reason": self.reason}


def judge(y: np.ndarray, fp32_pred: np.ndarray, int8_pred: np.ndarray, classes: Sequence[str],
          macro_points: float = DEFAULT_MACRO_POINTS, class_points: float = DEFAULT_CLASS_POINTS,
          min_windows: int = DEFAULT_MIN_WINDOWS, agreement_floor: float = 0.0) -> Verdict:
    """Macro-F1 and per-class F1 loss of `int8_pred` against `fp32_pred` (labels `y`), and whether the gate
    holds: no loss beyond `macro_points` / `class_points` that at least `min_windows` windows carry, and argmax
    agreement at least `agreement_floor` % of the windows (0: no floor; module doc)."""
    from ecgtool.evaluate.metrics import compute_metrics

    y, fp32_pred, int8_pred = (np.asarray(v, dtype=np.int64) for v in (y, fp32_pred, int8_pred))
    a, b = compute_metrics(y, fp32_pred, list(classes)), compute_metrics(y, int8_pred, list(classes))
    macro = 100 * (a["macro_f1"] - b["macro_f1"])
    per = {c: 100 * (a["per_class"][c]["f1"] - b["per_class"][c]["f1"]) for c in classes}
    v = Verdict(macro, per, float(np.mean(fp32_pred == int8_pred)) if len(y) else 1.0, True, macro_points, class_points,
                int(min_windows), windows_changed(y, fp32_pred, int8_pred),
                {c: windows_changed(y, fp32_pred, int8_pred, k) for k, c in enumerate(classes)})
    over = [("macro-F1", None, macro, macro_points)] + [(c, c, per[c], class_points) for c in classes]
    for name, cls, loss, limit in over:
        if loss <= limit + 1e-9:
            continue
        lost, gained = v.macro_windows if cls is None else v.class_windows[cls]
        what = (f"{name} lost {loss:.2f} points (limit {limit:g}) on {lost - gained} window(s) net "
                f"({lost} lost, {gained} gained; McNemar p={mcnemar_p(lost, gained):.3g})")
        if v.counts(cls):
            v.failures.append(what)
        else:
            v.waived.append(f"{what}: fewer than {v.min_windows} windows")
    v.agreement_floor = float(agreement_floor)
    if v.agreement_shortfall > 1e-9:
        n = len(y)
        differ = int(np.sum(fp32_pred != int8_pred))
        allowed = int(np.floor(n * (1 - v.agreement_floor / 100) + 1e-9))
        v.failures.append(f"agreement {100 * v.agreement:.2f} % (floor {v.agreement_floor:g} %): {differ} of {n} "
                          f"windows differ from FP32 (the floor allows {allowed})")
    v.passed = not v.failures
    return v


def candidate_groups(path: str | os.PathLike) -> list[tuple[str, list[str]]]:
    """[(group, node names)] of an FP32 ONNX graph, in scan order: stem conv, SE gates, SE fc, residual adds, classifier,
    and for an RR-head graph its RR fusion (rr_fusion_nodes)."""
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
              ("residual adds", adds), ("classifier", head[-1:]), (RR_FUSION, rr_fusion_nodes(g))]
    return [(name, nodes) for name, nodes in groups if nodes]


def rr_fusion_nodes(g) -> list[str]:
    """An RR-head graph's fusion (models.network, --rr-head): the nodes from its second input (the RR features) up
    to and including the Concat that joins them to the pooled trunk features, and the layer that reads the Concat.

    Quantised, that Concat gets one scale for two very different ranges (post-ReLU trunk features, >= 0, and
    normalised RR features with long tails) and the classifier reads both through it: on the MIT-BIH hybrid of
    benchmarks/RESULTS.md it carried almost all of INT8's error (test agreement 98.64 % -> 100 % kept FP32).
    [] for a graph with one input, or whose second input reaches no Concat (not an RR head)."""
    inits = {t.name for t in g.initializer}
    inputs = [i.name for i in g.input if i.name not in inits]
    if len(inputs) < 2:
        return []
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    nodes: list[str] = []
    joined = False
    todo = [inputs[1]]
    while todo:
        for n in consumers.get(todo.pop(), []):
            if n.name in nodes:
                continue
            nodes.append(n.name)
            if n.op_type == "Concat":  # the join: keep the layer that reads it, stop there
                joined = True
                nodes += [m.name for m in consumers.get(n.output[0], []) if m.name not in nodes]
            else:
                todo += list(n.output)
    return nodes if joined else []


#: `--keep-fp32 GROUP` -> the candidate_groups group it names; `suspects` names every group the graph has
KEEP_FP32_GROUPS = {"stem": "stem conv", "se-gates": "SE gates", "se-fc": "SE fc", "residual-adds": "residual adds",
                    "classifier": "classifier", RR_FUSION_CHOICE: RR_FUSION}
SUSPECTS = "suspects"
#: `--keep-fp32 none`: no group FP32 from the start (drops the target's default groups, compress.targets.FORMS)
NO_GROUP = "none"
KEEP_FP32_CHOICES = (*KEEP_FP32_GROUPS, SUSPECTS, NO_GROUP)


def keep_fp32_names(groups: Sequence[str] | str | None) -> tuple[str, ...]:
    """The `--keep-fp32` group names in table order (`suspects`: every group; `none`: no group), else BadInput naming
    the unknown one."""
    from ecgtool.core.errors import BadInput

    groups = [groups] if isinstance(groups, str) else list(groups or ())
    for g in groups:
        if not isinstance(g, str) or g not in KEEP_FP32_CHOICES:
            raise BadInput(f"--keep-fp32 {g}: unknown node group (choose from {', '.join(KEEP_FP32_CHOICES)})")
    if NO_GROUP in groups and len(set(groups)) > 1:
        raise BadInput(f"--keep-fp32 none: given with {', '.join(g for g in groups if g != NO_GROUP)} (none means no group)")
    names = tuple(k for k in KEEP_FP32_GROUPS if k in groups)
    return (SUSPECTS,) if SUSPECTS in groups else names


def present_groups(path: str | os.PathLike) -> list[str]:
    """The `--keep-fp32` group names (KEEP_FP32_GROUPS order) that match at least one node of FP32 graph `path`
    (a plain ResNet has no se-gates / se-fc)."""
    return _present(dict(candidate_groups(path)))


def _present(found: dict[str, list[str]]) -> list[str]:
    return [g for g in KEEP_FP32_GROUPS if found.get(KEEP_FP32_GROUPS[g])]


def keep_fp32_nodes(path: str | os.PathLike, groups: Sequence[str]) -> tuple[list[str], list[str]]:
    """(groups as candidate_groups names them, their node names) of FP32 graph `path` for `--keep-fp32` names.

    A group named on its own that matches no node of the graph is BadInput (e.g. se-gates on a plain ResNet);
    `suspects` takes whichever groups the graph has."""
    from ecgtool.core.errors import BadInput

    names = keep_fp32_names(groups)
    found = dict(candidate_groups(path))
    present = _present(found)
    if names == (SUSPECTS,):
        names, missing = tuple(present), ([] if present else [SUSPECTS])
    else:
        missing = [g for g in names if g not in present]
    if missing:
        what = "node group" if missing[0] == SUSPECTS else f"{KEEP_FP32_GROUPS[missing[0]]} node"
        raise BadInput(f"{path}: --keep-fp32 {missing[0]}: no {what} in this graph "
                       f"(its groups: {', '.join(present) or 'none'})")
    kept = [KEEP_FP32_GROUPS[g] for g in names]
    return kept, [n for g in kept for n in found[g]]


def scan(build: Callable[[Path, list[str]], None], predict: Callable[[Path], np.ndarray], judge_fn: Callable[[np.ndarray], Verdict],
         groups: list[tuple[str, list[str]]], base_exclude: Sequence[str], workdir: Path,
         baseline: tuple[Path, Verdict] | None = None, too_slow: Callable[[Path], bool] | None = None) -> dict:
    """Rank `groups` by sensitivity, then keep them FP32 most sensitive first until the gate holds.

    `build(out, exclude)` quantises with those nodes kept float; `predict(path)` gives validation argmax;
    `judge_fn(pred)` compares with FP32. `baseline` (the ungated file and its verdict) is kept unless a
    candidate does strictly better (smaller overshoot, then smaller macro loss): FP32 nodes that buy
    nothing are not kept. `too_slow(path)`: True when a candidate has lost the speed gain (no faster than
    FP32); the scan stops there without keeping it. Returns {"scan": [...], "kept_fp32": [...],
    "groups_fp32": [...], "verdict": Verdict, "path": Path of the best file, "stopped": why it stopped early
    or None}.
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
    stopped = None
    for step, i in enumerate(order):
        kept = [*kept, *groups[i][1]]
        names = [*names, groups[i][0]]
        cand = workdir / f"gate{step}.onnx"
        if step == 0:
            cand = workdir / f"scan{i}.onnx"  # already built
        else:
            build(cand, [*base_exclude, *kept])
        if too_slow is not None and best is not None and too_slow(cand):
            stopped = f"speed gain gone with {', '.join(names)} kept FP32 (no faster than FP32)"
            break
        v = judge_fn(predict(cand))
        key = (round(v.excess, 6), round(v.macro_loss_points, 6))
        if best is None or key < best[0]:
            best = (key, cand, v, list(kept), list(names))
        if v.passed:
            break
    for r in ranked:
        r.pop("_excess")
    assert best is not None
    return {"scan": ranked, "kept_fp32": best[3], "groups_fp32": best[4], "verdict": best[2], "path": best[1],
            "stopped": stopped}


def latency_ratio(a: Path, b: Path, runs: int = 60, shape: tuple[int, ...] | None = None) -> float:
    """Median batch-1 latency of ONNX file `b` over that of `a` (1 thread, interleaved calls in this process)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    sessions = [ort.InferenceSession(str(p), sess_options=opts, providers=["CPUExecutionProvider"]) for p in (a, b)]
    rng = np.random.default_rng(0)
    x = {}
    for k, inp in enumerate(sessions[0].get_inputs()):  # every input: an RR-head graph also takes rr_features
        dims = shape if shape and k == 0 else tuple(d if isinstance(d, int) else 1 for d in inp.shape)
        x[inp.name] = rng.random(dims, dtype=np.float32)
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
