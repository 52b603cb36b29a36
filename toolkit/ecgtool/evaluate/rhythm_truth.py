"""Check `predict`'s rhythm output against reference rhythm annotations (AF burden, AF episodes).

Reference: a WFDB annotation file whose rhythm annotations carry aux notes such as '(AFIB', '(N',
'(AFL' (MIT-BIH's .atr): each note starts a rhythm that lasts until the next rhythm note or the end of
the record (`rhythm_intervals`). Intervals are (start_s, end_s) in seconds from the record start.

Scoring (`score_record`), as AF detectors are scored (ANSI/AAMI EC57's episode and duration measures):
- classifiable time: the spans owned by windows of quality ok (deploy/episodes.py's time accounting);
  both burdens are measured over it, so a window the gate refused counts on neither side.
- AF burden: predicted = the record's `clinical.af_burden` (AF windows' time / classifiable time);
  reference = the reference AF time inside the classifiable time / the classifiable time; the burden
  error is predicted - reference, in percentage points.
- episodes: predicted AF episodes are `clinical.episodes` with rhythm AF (predict's rule: windows joined
  across gaps <= gap_s, episodes >= min_episode_s). Reference episodes are the AF intervals at least
  `min_ref_s` long (default: the minimum the prediction used, its clinical.episode_rule.min_episode_s,
  30 s unless --min-episode: a shorter reference episode is not expected to be reported). A reference episode is detected when any predicted AF episode overlaps it
  (overlap > 0 s): episode sensitivity = detected / reference episodes. A predicted episode is a true
  positive when it overlaps any reference AF interval (of any length): episode PPV = true / predicted.
- duration sensitivity = |predicted episodes ∩ reference AF| / |reference AF| and duration PPV =
  |predicted episodes ∩ reference AF| / |predicted episodes| (reference AF inside the covered part).
`pool` sums the counts and durations over records (gross statistics) and averages the burden errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

AF_NOTE = "(AFIB"
AF_CLASS = "AF"

Interval = tuple[float, float]


def rhythm_intervals(samples: Sequence[int], aux_notes: Sequence[str], fs: float, n_samples: int) -> dict[str, list[Interval]]:
    """{aux note: merged intervals} from the rhythm annotations (notes starting with '('; NULs stripped)."""
    marks = [(int(s), str(a).replace("\x00", "").strip()) for s, a in zip(samples, aux_notes)]
    marks = sorted((s, a) for s, a in marks if a.startswith("("))
    out: dict[str, list[Interval]] = {}
    for i, (s, a) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else n_samples
        if end > s:
            out.setdefault(a, []).append((s / fs, end / fs))
    return {a: merge(v) for a, v in out.items()}


def read_reference(record: str | Path, extension: str = "atr") -> tuple[dict[str, list[Interval]], float]:
    """(rhythm intervals, record seconds) of a WFDB record's reference annotation file."""
    import wfdb

    base = Path(record)
    base = base.with_suffix("") if base.suffix == ".hea" else base
    hdr = wfdb.rdheader(str(base))
    ann = wfdb.rdann(str(base), extension)
    n = int(hdr.sig_len)
    return rhythm_intervals(ann.sample, ann.aux_note or [""] * len(ann.sample), float(hdr.fs), n), n / float(hdr.fs)


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[list[float]] = []
    for a, b in sorted((float(a), float(b)) for a, b in intervals if b > a):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def total(intervals: Iterable[Interval]) -> float:
    return float(sum(b - a for a, b in merge(intervals)))


def intersect(x: Iterable[Interval], y: Iterable[Interval]) -> list[Interval]:
    x, y = merge(x), merge(y)
    out, i, j = [], 0, 0
    while i < len(x) and j < len(y):
        a, b = max(x[i][0], y[j][0]), min(x[i][1], y[j][1])
        if b > a:
            out.append((a, b))
        if x[i][1] < y[j][1]:
            i += 1
        else:
            j += 1
    return out


def overlaps(a: Interval, intervals: Iterable[Interval]) -> bool:
    return any(min(a[1], b[1]) > max(a[0], b[0]) for b in intervals)


def classifiable_spans(windows: list[dict]) -> list[Interval]:
    """The spans owned by windows of quality ok (each window up to the next one's start; the last its end)."""
    out = []
    for i, w in enumerate(windows):
        end = min(w["end_s"], windows[i + 1]["start_s"]) if i + 1 < len(windows) else w["end_s"]
        if w.get("rhythm") not in (None, "unclassifiable") and end > w["start_s"]:
            out.append((w["start_s"], end))
    return merge(out)


def score_episodes(predicted: Sequence[Interval], reference: Sequence[Interval], min_ref_s: float,
                   covered: Interval | None = None) -> dict:
    """Episode and duration sensitivity / PPV (see the module doc). `covered`: the part of the record the
    windows cover (reference AF outside it cannot be found and is left out of the durations)."""
    ref_all = merge(reference)
    if covered is not None:
        ref_all = intersect(ref_all, [covered])
    ref_eps = [r for r in ref_all if r[1] - r[0] + 1e-9 >= min_ref_s]
    pred = merge(predicted)
    detected = sum(overlaps(r, pred) for r in ref_eps)
    true_pred = sum(overlaps(p, ref_all) for p in pred)
    both = total(intersect(pred, ref_all))
    ref_t, pred_t = total(ref_all), total(pred)
    return {"reference_episodes": len(ref_eps), "detected": int(detected),
            "sensitivity": detected / len(ref_eps) if ref_eps else None,
            "predicted_episodes": len(pred), "true_predicted": int(true_pred),
            "ppv": true_pred / len(pred) if pred else None,
            "reference_af_s": round(ref_t, 3), "predicted_af_s": round(pred_t, 3), "overlap_s": round(both, 3),
            "duration_sensitivity": both / ref_t if ref_t > 0 else None,
            "duration_ppv": both / pred_t if pred_t > 0 else None}


def score_record(result: dict, reference: dict[str, list[Interval]], *, af_note: str = AF_NOTE,
                 af_class: str = AF_CLASS, min_ref_s: float | None = None) -> dict:
    """A `predict` record result (with its "clinical" block) against the record's reference intervals."""
    windows = result["windows"]
    spans = classifiable_spans(windows)
    ref_af = reference.get(af_note, [])
    cls_t = total(spans)
    ref_burden = total(intersect(ref_af, spans)) / cls_t if cls_t > 0 else None
    pred_burden = result["clinical"]["af_burden"]
    pred_eps = [(e["start_s"], e["end_s"]) for e in result["clinical"]["episodes"] if e["rhythm"] == af_class]
    covered = (windows[0]["start_s"], windows[-1]["end_s"]) if windows else None
    if min_ref_s is None:
        min_ref_s = float(result["clinical"]["episode_rule"]["min_episode_s"])
    eps = score_episodes(pred_eps, ref_af, min_ref_s, covered)
    err = None if pred_burden is None or ref_burden is None else 100.0 * (pred_burden - ref_burden)
    return {"record": result["record"], "classifiable_s": round(cls_t, 3),
            "burden_predicted": pred_burden, "burden_reference": None if ref_burden is None else round(ref_burden, 6),
            "burden_error_pp": None if err is None else round(err, 2), **eps}


def pool(rows: Sequence[dict]) -> dict:
    """Gross episode / duration statistics over records, and the mean (absolute) burden error."""
    s = lambda k: sum(r[k] for r in rows)  # noqa: E731
    errs = [r["burden_error_pp"] for r in rows if r["burden_error_pp"] is not None]
    ref_eps, pred_eps = s("reference_episodes"), s("predicted_episodes")
    return {"records": len(rows), "reference_episodes": ref_eps, "detected": s("detected"),
            "sensitivity": s("detected") / ref_eps if ref_eps else None,
            "predicted_episodes": pred_eps, "true_predicted": s("true_predicted"),
            "ppv": s("true_predicted") / pred_eps if pred_eps else None,
            "duration_sensitivity": s("overlap_s") / s("reference_af_s") if s("reference_af_s") else None,
            "duration_ppv": s("overlap_s") / s("predicted_af_s") if s("predicted_af_s") else None,
            "mean_burden_error_pp": round(sum(errs) / len(errs), 2) if errs else None,
            "mean_abs_burden_error_pp": round(sum(abs(e) for e in errs) / len(errs), 2) if errs else None}
