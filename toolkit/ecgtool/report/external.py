"""The report's cross-dataset part: own-test vs external macro-F1 per artifact, and the recommendation by
the worst of them when `bench --external` was given (an F1 that does not survive another device should
not pick the artifact to ship)."""

from __future__ import annotations

from typing import Any, Sequence

from ecgtool.bench.external import PREFIX, external_columns
from ecgtool.core.ui import PERCENT_COLUMNS, as_percent


def has_externals(rows: Sequence[dict]) -> bool:
    return bool(external_columns(rows))


def worst_rows(rows: Sequence[dict]) -> list[dict]:
    """Copies of rows with macro_f1 replaced by worst_f1 (own_macro_f1 keeps the own-test one); a row
    without a worst_f1 (it failed on an external set) is not ok for the recommendation."""
    out = []
    for r in rows:
        c = {**r, "own_macro_f1": r.get("macro_f1"), "macro_f1": r.get("worst_f1")}
        if c["macro_f1"] is None and c.get("status") == "ok":
            c["status"] = "no external F1"
        out.append(c)
    return out


def recommendation_by_worst(rows: Sequence[dict], tolerance: float, block: Any) -> list[str]:
    """`block` (build.recommendation_block) applied to worst_rows, introduced by a line saying so."""
    names = [c[len(PREFIX):] for c in external_columns(rows) if c.startswith(PREFIX)]
    head = (f"External datasets given ({', '.join(names)}): artifacts are ranked by the **worst** of their own-test "
            "and external macro-F1; the macro-F1 in each line below is that worst value.")
    return [head, *block(worst_rows(rows), tolerance)]


def rate_lines(settings: dict) -> list[str]:
    """The bench's rate check (`data info --rates`) per dataset, own data first; [] when none was recorded."""
    own = settings.get("rate_check")
    ext = [(e["name"], e["rate_check"]) for e in settings.get("external") or [] if "rate_check" in e]
    if own is None and not ext:
        return []
    return [f"{name}: {'; '.join(w) if w else 'every rate-defined class within its definition'}"
            for name, w in ([("own data", own)] if own is not None else []) + ext]


def per_class_tables(rows: Sequence[dict]) -> list[tuple[list[dict], list[str]]]:
    """One (rows, columns) table per external dataset: every row's F1 per class scored there, in %."""
    names = list(dict.fromkeys(n for r in rows for n, m in (r.get("external") or {}).items() if "per_class_f1" in m))
    out = []
    for name in names:
        classes = list(dict.fromkeys(c for r in rows for c in ((r.get("external") or {}).get(name, {}).get("per_class_f1")
                                                               or {})))
        table = [{"dataset": name, "model": r["model"], "variant": r["variant"], "runtime": r["runtime"],
                  **{c: None if f1.get(c) is None else round(100 * f1[c], 2) for c in classes}}  # None: not learnt
                 for r in rows if "per_class_f1" in (r.get("external") or {}).get(name, {})
                 for f1 in [r["external"][name]["per_class_f1"]]]
        out.append((table, ["dataset", "model", "variant", "runtime", *classes]))
    return out


def cross_dataset_part(rows: Sequence[dict], settings: dict | None = None) -> list[tuple[str, Any]]:
    """Parts for the report: the table (own, each external, worst; %), the classes each external lacks, and
    the labels' agreement with the rate definitions of Normal, SB and ST per dataset (rate_lines)."""
    cols = external_columns(rows)
    ok = [r for r in rows if r.get("status") == "ok"]
    table = [{k: r.get(k) for k in ["model", "variant", "runtime", "macro_f1", *cols]} for r in ok]
    notes = {}
    for r in ok:
        for name, m in (r.get("external") or {}).items():
            if "error" in m:
                notes.setdefault(f"{name}: failed for {r['model']} {r['variant']}", m["error"])
            else:
                notes.setdefault(name, f"{m['n']} windows; classes scored {', '.join(m['classes_scored'])}; "
                                 f"model classes missing in data: {', '.join(m['missing_in_data']) or 'none'}; "
                                 f"data classes the model lacks: {', '.join(m['missing_in_model']) or 'none'}")
                if m.get("untrained_in_model"):  # per model: which training data it had is its own
                    notes.setdefault(f"{name}, {r['model']}", f"never trained on {', '.join(m['untrained_in_model'])}"
                                     " (no training windows): their windows are left out of its scores")
    text = ("Own test split (macro_f1) vs all windows of each external dataset (ext_f1_*), classes matched by "
            "name, macro-F1 over the classes the data has and the model had training windows of; worst_f1 is the "
            "lowest. In %.")
    shown = as_percent(table, (*PERCENT_COLUMNS, *cols))
    parts = [("text", text), ("table", (shown, ["model", "variant", "runtime", "macro_f1", *cols])),
             ("list", [f"{k}: {v}" for k, v in notes.items()])]
    per_class = per_class_tables(ok)
    if per_class:
        parts += [("text", "Per class on each external dataset (F1 %, the classes its windows have; `-`: a class the "
                           "model never trained on, left out): a class that does not transfer pulls the external "
                           "macro-F1 down.")]
        parts += [("table", t) for t in per_class]
    rates = rate_lines(settings or {})
    if rates:
        from ecgtool.data.info import rate_definitions_text

        parts += [("text", f"Labels against the rate definitions ({rate_definitions_text()}; detected heart rate, "
                           "`ecgtool data info DIR --rates`): where a dataset's labels do not follow them, a model "
                           "that learnt the definition elsewhere loses F1 there for a reason in the labels."),
                  ("list", rates)]
    return parts
