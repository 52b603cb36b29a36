"""External validation in bench: macro-F1 of every artifact on other devices' datasets (`--external DIR`).

Each external dataset is scored on all its windows (none were seen in training), classes matched by
name (evaluate.metrics.map_classes): windows of a class the model does not know, or never trained on, are
left out, model classes the data lacks are reported, macro-F1 averages over the classes the model learnt that
the data has.
A row gets `ext_f1_<name>` per external dataset, `external` (details) and `worst_f1`: the lowest of its
own-test macro-F1 and every external one, what the report recommends by when externals are given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ecgtool.core.errors import BadInput

PREFIX = "ext_f1_"


def load_externals(paths: Sequence[str | os.PathLike], max_eval: int | None = None) -> list[dict]:
    """[{name, path, x, y, classes}] of the external datasets (all windows, labelled), names unique; `x` is a
    bench.windows.Windows: each model reads the windows as it is deployed (a `--leads any` model on a dataset
    imported with --keep-leads: the deployment lead)."""
    from ecgtool.bench.windows import Windows
    from ecgtool.data.dataset import load_dataset, require_labels

    out, names = [], set()
    for p in paths:
        ds = load_dataset(p, require_splits=False)
        idx = ds.indices("all")
        if max_eval is not None and len(idx) > max_eval:
            idx = np.random.default_rng(0).choice(idx, size=int(max_eval), replace=False)
            idx.sort()
        require_labels(ds, idx, "--external")
        name = Path(ds.root).resolve().name
        base, k = name, 2
        while name in names:
            name, k = f"{base}{k}", k + 1
        names.add(name)
        out.append({"name": name, "path": str(Path(ds.root).resolve()), "x": Windows(ds, idx),
                    "y": np.asarray(ds.labels[idx], np.int64), "classes": ds.classes,
                    "rate_check": rate_check(ds.root)})
    return out


#: windows `bench` profiles per dataset for its rate check (a random sample beyond it: ~10-20 ms of R peaks a window)
RATE_CHECK_WINDOWS = 2000


def rate_check(path: str | os.PathLike) -> list[str]:
    """`data info --rates`'s warnings for a dataset (classes whose labels contradict their rate definition: a
    cross-dataset F1 falls there for a reason in the labels), on at most RATE_CHECK_WINDOWS windows."""
    from ecgtool.data.info import rate_profile, rate_warnings

    try:
        return rate_warnings(rate_profile(path, progress=False, max_windows=RATE_CHECK_WINDOWS))
    except (ImportError, BadInput) as exc:  # wfdb missing, or a dataset too odd to profile: say so, go on
        return [f"rate check not run: {exc}"]


def external_metrics(pred: Any, ext: dict, batch: int) -> dict:
    """macro-F1 of one predictor on one external dataset, classes matched by name."""
    from ecgtool.core.artifacts import trained_classes
    from ecgtool.evaluate.metrics import compute_metrics, map_classes

    model_classes = list(getattr(pred, "classes", None) or ext["classes"])
    mapping = map_classes(model_classes, ext["classes"], source=ext["path"],
                          trained=trained_classes(getattr(pred, "config", None) or {}))
    keep = mapping.to_model[ext["y"]] >= 0
    x, y = ext["x"].of(pred)[keep], mapping.to_model[ext["y"][keep]]
    if not len(y):
        raise BadInput(f"{ext['path']}: no window of a class the model knows")
    from ecgtool.runtime.base import predict_in_batches

    logits = predict_in_batches(pred, x, batch)
    m = compute_metrics(y, logits.argmax(1), model_classes)
    present = [model_classes[i] for i in sorted(set(y.tolist()))]
    return {"macro_f1": round(float(m["macro_f1"]), 6), "n": int(len(y)), "classes_scored": present,
            "per_class_f1": {c: round(float(m["per_class"][c]["f1"]), 6) for c in present},
            "missing_in_model": mapping.missing_in_model, "untrained_in_model": mapping.untrained_in_model,
            "missing_in_data": [c for c in model_classes if c not in present and c not in mapping.untrained_in_model],
            "excluded_windows": int((~keep).sum())}


def score_externals(rows: list[dict], preds: dict[str, Any], externals: list[dict], batch: int) -> None:
    """Add ext_f1_<name>, external and worst_f1 to every row that has an open predictor."""
    for key, pred in preds.items():
        row = rows[int(key)]
        row["external"] = {}
        for ext in externals:
            try:
                m = external_metrics(pred, ext, batch)
            except Exception as exc:  # a row's failure on one dataset is its own, the others go on
                row["external"][ext["name"]] = {"error": f"{type(exc).__name__}: {exc}"}
                row[PREFIX + ext["name"]] = None
                continue
            row["external"][ext["name"]] = m
            row[PREFIX + ext["name"]] = m["macro_f1"]
        scores = [row.get("macro_f1")] + [row.get(PREFIX + e["name"]) for e in externals]
        row["worst_f1"] = None if any(s is None for s in scores) else min(scores)


def external_columns(rows: Sequence[dict]) -> list[str]:
    """ext_f1_* columns present in rows (in order) plus worst_f1 when any."""
    cols = list(dict.fromkeys(k for r in rows for k in r if k.startswith(PREFIX)))
    return [*cols, "worst_f1"] if cols else []
