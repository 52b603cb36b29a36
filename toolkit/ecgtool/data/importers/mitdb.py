"""MIT-BIH Arrhythmia Database: 10-s windows lying wholly inside one rhythm annotation.

Rhythm episodes are the '+' annotations of `NNN.atr`; their aux note (trailing NUL stripped) names
the rhythm. Each episode is cut into non-overlapping 10-s windows of the MLII channel at the record's
360 Hz, and each window is labelled by the label set: the rhythm note's class, and a beat rule's class
(default: `(N` + at least one `V` beat -> PVC), one of them chosen by the priority order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import wfdb

from ecgtool.data.preprocess import TARGET_FS, WINDOW_LEN, WINDOW_S, UnusableRecord, normalise, prepare, regular_file
from ecgtool.data.importers.common import ImportOptions, RecordWindows, require
from ecgtool.data.importers.wfdb_read import read_record

NAME = "mitdb"
HAS_PATIENTS = True
DEFAULT_WINDOW_POLICY = "all"
#: paced records (MIT-BIH directory): their rhythm is the pacemaker's, left out of every class
PACED = {"102", "104", "107", "217"}
#: records from the same subject (MIT-BIH directory: "Records 201 and 202 came from the same male
#: subject"), so a patient split must keep them together
SAME_PATIENT = {"202": "201"}
#: WFDB beat annotation symbols (the rest are rhythm, noise and other non-beat marks)
BEAT_SYMBOLS = set("NLRBAaJSVrFejnE/fQ?")
DERIVED_CLASS = "ST"
TACHY_BPM = 100.0  # sinus tachycardia: sinus rhythm above 100 beats per minute


def list_records(src: Path) -> list[str]:
    return sorted(p.stem for p in src.glob("*.hea") if p.with_suffix(".atr").exists() or p.stem.isdigit())


def patient_of(record: str) -> str:
    return SAME_PATIENT.get(record, record)


def _episodes(ann: wfdb.Annotation, sig_len: int) -> list[tuple[str, int, int]]:
    """(rhythm note, first sample, end sample) of every rhythm episode."""
    marks = [(int(s), str(aux or "").rstrip("\x00").strip())
             for s, sym, aux in zip(ann.sample, ann.symbol, ann.aux_note or [""] * len(ann.sample))
             if sym == "+" and str(aux or "").strip("\x00 ").startswith("(")]
    out = []
    for i, (start, note) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else sig_len
        out.append((note, max(start, 0), min(end, sig_len)))
    return out


def _window_label(note: str, beats: set[str], opts: ImportOptions) -> str | None:
    labels = opts.labels
    cands = labels.classes_of("mitdb", [note])
    for cls, (rule_beats, rule_rhythms) in labels.beat_rules.items():
        if note in rule_rhythms and beats & rule_beats:
            cands.append(cls)
    return labels.resolve(cands)


def _heart_rate(beat_samples: np.ndarray, fs: float) -> float:
    """Mean heart rate (beats per minute) from the RR intervals of the beats in a window."""
    if len(beat_samples) < 2:
        return float("nan")
    return 60.0 * fs / float(np.mean(np.diff(beat_samples)))


def read(src: Path, record: str, opts: ImportOptions) -> RecordWindows:
    require(record not in PACED, "paced record: left out, its rhythm is the pacemaker's")
    path = src / record
    raw = read_record(path, opts.lead)
    regular_file(path.with_name(f"{path.name}.atr"), "annotation file")  # never a link to /dev/zero or a FIFO
    try:
        ann = wfdb.rdann(str(path), "atr")
    except Exception as exc:
        raise UnusableRecord(f"annotations unreadable: {record}.atr ({type(exc).__name__}: {str(exc)[:160]})") from None
    fs = raw.fs
    n = raw.signal.shape[-1]
    win = int(round(WINDOW_S * fs))
    beat_mask = np.isin(np.asarray(ann.symbol), list(BEAT_SYMBOLS))
    beat_samples = np.asarray(ann.sample)[beat_mask]
    beat_symbols = np.asarray(ann.symbol)[beat_mask]
    normal_class = opts.labels.classes_of("mitdb", ["(N"])
    normal_class = normal_class[0] if normal_class else None

    picks: list[tuple[int, str, str, str, float]] = []  # start (record samples), class, source labels, derived, bpm
    others: dict[str, int] = {}
    for note, start, end in _episodes(ann, n):
        starts = list(range(start, end - win + 1, win))
        if opts.window_policy == "first":
            starts = starts[:1]
        for s in starts:
            sel = (beat_samples >= s) & (beat_samples < s + win)
            beats = set(beat_symbols[sel].tolist())
            cls = _window_label(note, beats, opts)
            if cls is None:
                others[note] = others.get(note, 0) + 1
                continue
            bpm = _heart_rate(beat_samples[sel], fs)
            derived = ""
            if opts.derive_st and cls == normal_class and bpm > TACHY_BPM:
                cls, derived = DERIVED_CLASS, f"{DERIVED_CLASS} from heart rate {bpm:.0f} bpm > {TACHY_BPM:g}"
            source = ";".join([note, *sorted(b for b in beats if b != "N")])
            picks.append((s, cls, source, derived, bpm))
    if not picks:
        found = ", ".join(f"{k} x{v}" for k, v in sorted(others.items())) or "none"
        raise UnusableRecord(f"no target rhythm: no 10-s window inside one (windows of other rhythms: {found})")

    sig200 = prepare(raw.signal, fs, band=opts.bandpass)
    kept, rows, dropped = [], [], []
    for s, cls, source, derived, bpm in picks:
        s200 = int(round(s * TARGET_FS / fs))
        if s200 + WINDOW_LEN > sig200.shape[-1]:
            s200 = sig200.shape[-1] - WINDOW_LEN
        try:
            kept.append(normalise(sig200[:, s200:s200 + WINDOW_LEN], opts.normalisation))
        except UnusableRecord as exc:
            dropped.append(str(exc))
            continue
        rows.append({"record_id": f"{record}@{s / fs:.0f}s", "record": record, "patient_id": patient_of(record),
                     "start_s": round(s / fs, 3), "label": cls, "source_labels": source, "derived": derived,
                     "heart_rate_bpm": round(bpm, 1) if np.isfinite(bpm) else ""})
    require(bool(kept), dropped[0] if dropped else "no usable window")
    return RecordWindows(signals=np.stack(kept), rows=rows, leads=raw.leads, dropped=dropped)
