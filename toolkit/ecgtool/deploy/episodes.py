"""Per-record clinical summary of classified windows: time in each rhythm, AF burden, episodes, heart
rate over time, classifiable fraction, and a WFDB rhythm annotation file.

numpy only (wfdb lazily, for `write_wfdb`); shipped in every bundle as ecg_episodes.py
(core.names.BUNDLE_EPISODES) so run.py reports the same summary as `ecgtool predict`.

Time accounting: each window owns the span from its start to the next window's start (`hop`), the
last window its whole length, so overlapping windows (--hop < window) count each second once.
Classifiable time = the owned time of windows with quality ok. AF burden = AF time / classifiable
time (a fraction; printed in %).

Episode rule (documented, options `min_episode_s`, `gap_s`): the windows classified as rhythm R, in
time order, are joined into one episode while the next R window starts no later than `gap_s` after
the current episode's end (overlapping windows always join); windows of other rhythms or
unclassifiable windows in such a gap do not break it. An episode runs from its first window's start
to its last window's end; its probability is the mean probability of R over its windows. Episodes
shorter than `min_episode_s` are dropped (default 30 s: the usual minimum for a reportable AF
episode). Episodes of different rhythms may overlap where a gap was bridged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MIN_EPISODE_S = 30.0
GAP_S = 10.0
AF_CLASS = "AF"
#: WFDB rhythm aux notes (MIT-BIH's where it has one)
AUX = {"Normal": "(N", "AF": "(AFIB", "AFL": "(AFL", "FAB": "(BI", "SB": "(SBR", "ST": "(ST", "PVC": "(PVC",
       "unclassifiable": "(NOISE"}


def owned_seconds(windows: list[dict]) -> list[float]:
    out = []
    for i, w in enumerate(windows):
        end = windows[i + 1]["start_s"] if i + 1 < len(windows) else w["end_s"]
        out.append(max(0.0, min(end, w["end_s"]) - w["start_s"]))
    return out


def episodes(windows: list[dict], min_episode_s: float = MIN_EPISODE_S, gap_s: float = GAP_S) -> list[dict]:
    """Episodes of every rhythm (see the module doc), sorted by start."""
    runs: dict[str, list[dict]] = {}
    out = []
    for w in windows:
        r = w["rhythm"]
        if r == "unclassifiable" or w.get("probability") is None:
            continue
        cur = runs.get(r)
        if cur and w["start_s"] <= cur[-1]["end"] + gap_s + 1e-9:
            cur[-1]["end"] = max(cur[-1]["end"], w["end_s"])
            cur[-1]["p"].append(w["probability"])
            cur[-1]["n"] += 1
        else:
            runs.setdefault(r, []).append({"start": w["start_s"], "end": w["end_s"], "p": [w["probability"]], "n": 1})
    for r, eps in runs.items():
        for e in eps:
            dur = e["end"] - e["start"]
            if dur + 1e-9 >= min_episode_s:
                out.append({"rhythm": r, "start_s": round(e["start"], 3), "end_s": round(e["end"], 3),
                            "duration_s": round(dur, 3), "windows": e["n"],
                            "mean_probability": round(float(np.mean(e["p"])), 6)})
    return sorted(out, key=lambda e: (e["start_s"], e["rhythm"]))


def clinical_summary(windows: list[dict], classes: list[str], seconds: float, tail: dict | None = None, *,
                     min_episode_s: float = MIN_EPISODE_S, gap_s: float = GAP_S) -> dict:
    own = owned_seconds(windows)
    time_in = {c: 0.0 for c in classes}
    unclass: dict[str, float] = {}
    for w, t in zip(windows, own):
        if w["rhythm"] == "unclassifiable":
            unclass[w.get("quality", "unclassifiable")] = unclass.get(w.get("quality", "unclassifiable"), 0.0) + t
        else:
            time_in[w["rhythm"]] = time_in.get(w["rhythm"], 0.0) + t
    classifiable = sum(time_in.values())
    hr = [w["hr_bpm"] for w in windows if w.get("hr_bpm") is not None and w["rhythm"] != "unclassifiable"]
    return {
        "seconds": round(seconds, 3),
        "classifiable_s": round(classifiable, 3),
        "classifiable_fraction": round(classifiable / seconds, 6) if seconds > 0 else 0.0,
        "time_in_rhythm_s": {c: round(t, 3) for c, t in time_in.items() if t > 0},
        "unclassifiable_s": {k: round(v, 3) for k, v in unclass.items()},
        "af_burden": (round(time_in.get(AF_CLASS, 0.0) / classifiable, 6) if classifiable > 0 else None),
        "episodes": episodes(windows, min_episode_s, gap_s),
        "episode_rule": {"min_episode_s": min_episode_s, "gap_s": gap_s},
        "heart_rate": {"mean_bpm": round(float(np.mean(hr)), 1) if hr else None,
                       "min_bpm": min(hr) if hr else None, "max_bpm": max(hr) if hr else None,
                       "over_time": [[w["start_s"], w.get("hr_bpm")] for w in windows]},
        "tail": tail,
    }


def rhythm_changes(windows: list[dict]) -> list[tuple[float, str]]:
    """(time s, rhythm) at the record start and at every change of the window rhythm (owned spans)."""
    out: list[tuple[float, str]] = []
    for w in windows:
        if not out or out[-1][1] != w["rhythm"]:
            out.append((w["start_s"], w["rhythm"]))
    return out


def write_wfdb(record_name: str, out_dir: str | Path, windows: list[dict], fs: float, extension: str = "ecg") -> Path:
    """A WFDB rhythm annotation file `record_name.extension` in `out_dir`: a '+' annotation with the aux note
    (AUX) at each rhythm change, at the record's own sampling rate (open it beside the record in any viewer:
    `wfdb.rdann(record, 'ecg')`)."""
    import wfdb

    changes = rhythm_changes(windows)
    if not changes:
        changes = [(0.0, "unclassifiable")]
    samples = np.array([int(round(t * fs)) for t, _ in changes], dtype=np.int64)
    aux = [AUX.get(r, f"({r}") for _, r in changes]
    wfdb.wrann(record_name, extension, samples, symbol=["+"] * len(samples), aux_note=aux, fs=fs,
               write_dir=str(out_dir))
    return Path(out_dir) / f"{record_name}.{extension}"


CSV_COLUMNS = ("record", "start_s", "end_s", "rhythm", "probability", "quality", "reason", "hr_bpm")


def csv_rows(result: dict) -> list[dict]:
    return [{"record": result["record"], **{k: w.get(k) for k in CSV_COLUMNS[1:]}} for w in result.get("windows", [])]


def table_lines(result: dict) -> list[str]:
    """A readable per-record report (what `predict --format table` prints)."""
    if "error" in result:
        return [f"{result['record']}: error: {result['error']}"]
    c = result["clinical"]
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    lines = [f"{result['record']}  {c['seconds'] / 3600:.2f} h ({c['seconds']:.0f} s) at {result['fs']:g} Hz;"
             f" classifiable {pct(c['classifiable_fraction'])}; AF burden {pct(c['af_burden'])}"]
    hr = c["heart_rate"]
    if hr["mean_bpm"] is not None:
        lines.append(f"  heart rate: mean {hr['mean_bpm']:.0f} bpm (min {hr['min_bpm']:.0f}, max {hr['max_bpm']:.0f})")
    lines.append("  time in rhythm: " + ", ".join(f"{k} {v:.0f} s" for k, v in c["time_in_rhythm_s"].items()))
    if c["unclassifiable_s"]:
        lines.append("  unclassifiable: " + ", ".join(f"{k} {v:.0f} s" for k, v in c["unclassifiable_s"].items()))
    rule = c["episode_rule"]
    lines.append(f"  episodes (>= {rule['min_episode_s']:g} s, gaps <= {rule['gap_s']:g} s bridged): {len(c['episodes'])}")
    for e in c["episodes"][:50]:
        lines.append(f"    {e['rhythm']:<7} {e['start_s']:>10.1f} - {e['end_s']:>10.1f} s  {e['duration_s']:>9.1f} s"
                     f"  p={e['mean_probability']:.2f}")
    if len(c["episodes"]) > 50:
        lines.append(f"    ... {len(c['episodes']) - 50} more (--format json lists all)")
    if c["tail"]:
        t = c["tail"]
        lines.append(f"  tail {t['start_s']:.1f}-{t['end_s']:.1f} s ({t['seconds']:.1f} s): {t['reason']}")
    return lines
