"""The RR baseline's classifier as ONNX, for deploy bundles: skl2onnx's converter of scikit-learn's
HistGradientBoostingClassifier (ai.onnx.ml TreeEnsembleClassifier, run by onnxruntime; missing values follow the
trees' learnt NaN branches). Input `features` [N, F] float32: the baseline's window features
(baseline.features.window_features, computed before the graph in numpy); output `probabilities` [N, K'] over the
classes the classifier saw in training (`class_index`: their positions in the model's class list).

The model folder keeps no pickle and no ONNX file (classifier.py): the graph is converted from the refitted
classifier when a bundle is made, or when the folder is loaded as a predictor (`classifier_session`: evaluate,
bench and predict run the same graph the bundle ships), and checked against scikit-learn on the folder's
training features each time.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from ecgtool.core.errors import BadInput

INPUT = "features"
OUTPUT = "probabilities"
#: ONNX opsets of the graph (ai.onnx.ml 3: TreeEnsembleClassifier with missing-value tracks)
OPSETS = {"": 17, "ai.onnx.ml": 3}


@contextmanager
def _bool_tracks_as_int() -> Iterator[None]:
    """skl2onnx 1.20's HistGradientBoosting converter passes a Python bool as a leaf's
    nodes_missing_value_tracks_true, which protobuf's repeated int field refuses ("Expected an int, got a
    boolean"); the value is cast to int while converting (the attribute's meaning is unchanged: 0 or 1)."""
    import skl2onnx.common.tree_ensemble as te

    original = te.add_node

    def add_node(*args, **kwargs):
        track = kwargs.get("nodes_missing_value_tracks_true")
        if isinstance(track, (bool, np.bool_)):
            kwargs["nodes_missing_value_tracks_true"] = int(track)
        return original(*args, **kwargs)

    te.add_node = add_node
    try:
        yield
    finally:
        te.add_node = original


def classifier_onnx(model, out: str | os.PathLike, check_features: np.ndarray) -> dict:
    """Write `model`'s (classifier.RRBaseline) classifier as ONNX at `out`; check it against scikit-learn on
    `check_features` (the folder's training features, plus a copy with a fifth of the values NaN). Returns
    {"class_index", "check": {windows, max_abs_diff, argmax_agreement}}; BadInput when the graph disagrees."""
    import onnxruntime as ort

    try:
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType
    except ImportError:
        raise BadInput("packaging the RR baseline needs skl2onnx (pip install skl2onnx)") from None
    n_feat = int(model.clf.n_features_in_)
    with _bool_tracks_as_int():
        onx = to_onnx(model.clf, initial_types=[(INPUT, FloatTensorType([None, n_feat]))],
                      options={id(model.clf): {"zipmap": False}}, target_opset=OPSETS)
    names = [o.name for o in onx.graph.output]
    if len(names) != 2:
        raise BadInput(f"skl2onnx gave {len(names)} outputs for the RR baseline's classifier (expected label, probabilities)")
    onx.graph.output[1].name = OUTPUT
    for value in (onx.graph.input[0], *onx.graph.output):  # a named batch dimension, as in ecgtool's other graphs
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    for node in onx.graph.node:
        node.output[:] = [OUTPUT if o == names[1] else o for o in node.output]
        node.input[:] = [OUTPUT if i == names[1] else i for i in node.input]
    out = Path(out)
    out.write_bytes(onx.SerializeToString())
    x = np.asarray(check_features, dtype=np.float32)
    rng = np.random.default_rng(0)
    holes = x.copy()
    holes[rng.random(holes.shape) < 0.2] = np.nan  # windows with few beats have NaN features
    x = np.concatenate([x, holes])
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT], {INPUT: x})[0]
    want = model.clf.predict_proba(x)
    diff = float(np.abs(got - want).max())  # a fitted baseline has training rows: x is never empty
    agree = float(np.mean(got.argmax(1) == want.argmax(1)))
    if diff > 1e-4 or agree < 1.0:
        raise BadInput(f"{out}: the ONNX classifier differs from scikit-learn's (max |diff| {diff:.3g}, argmax "
                       f"agreement {agree:.2%}); not packaged")
    return {"class_index": [int(c) for c in model.clf.classes_],
            "check": {"windows": int(len(x)), "max_abs_diff": diff, "argmax_agreement": agree,
                      "against": "scikit-learn predict_proba on the folder's training features (+ a copy 20 % NaN)"}}


def classifier_session(model, check_features: np.ndarray, threads: int | None = None):
    """An onnxruntime InferenceSession of `model`'s classifier, converted and checked as classifier_onnx does (in a
    scratch folder; the session keeps the graph in memory), and the class_index of its output columns."""
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="ecgtool-rr-") as tmp:
        path = Path(tmp) / "classifier.onnx"
        info = classifier_onnx(model, path, check_features)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return session, info["class_index"]
