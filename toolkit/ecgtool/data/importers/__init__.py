"""`ecgtool data import`: PhysioNet databases -> the prepared-dataset format (DESIGN.md).

One module per source (challenge, mitdb, cinc2017, ptbxl) turns one record into normalised 10-s
windows at 200 Hz (data.preprocess) or says why it cannot; this module loops over the records with
a progress bar, collects what is usable, splits it and writes the dataset atomically.
"""

from __future__ import annotations

import csv
import os
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Sequence

import click
import numpy as np

from ecgtool.core import ui
from ecgtool.core.files import read_json
from ecgtool.core.manifest import record_artifact
from ecgtool.core.errors import BadInput
from ecgtool.data.dataset import write_dataset
from ecgtool.data.labels import load_label_set
from ecgtool.data.preprocess import TARGET_FS, WINDOW_LEN, WINDOW_S, UnusableRecord, describe
from ecgtool.data.splits import holdout_split, patient_split, random_split, split_overlap
from ecgtool.data.importers import challenge, cinc2017, mitdb, ptbxl, records as unlabelled_records
from ecgtool.data.importers.common import ImportOptions

FORMATS = {m.NAME: m for m in (challenge, mitdb, cinc2017, ptbxl, unlabelled_records)}
SPLIT_KINDS = ("patient", "random", "strat-fold")
DATASET_FILES = ("signals.npy", "labels.npy", "records.csv", "splits.json", "meta.json", "skipped.csv")


def import_dataset(
    fmt: str,
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    classes_file: str | os.PathLike | None = None,
    lead: str = "II",
    window_policy: str | None = None,
    bandpass: bool = False,
    split: str | None = None,
    seed: int = 0,
    derive_st: bool = False,
    overwrite: bool = False,
    records: Sequence[str] | None = None,
    normalisation: str = "minmax",
    holdout: Sequence[str] | None = None,
) -> Path:
    """Import a PhysioNet collection at `src` into a prepared dataset at `out`; returns `out`.

    window_policy: `first` (one 10-s window per record) or `all` (every non-overlapping one); None
    takes the source's default (mitdb: all windows inside target rhythms; the others: first).
    split: `patient` (no patient in two splits; the default where the source has patient ids),
    `random` (the paper's stratified 64/16/20) or `strat-fold` (PTB-XL's folds 1-8/9/10).
    holdout: record ids whose windows (and those of any record of the same patient) form the whole test
    split, the rest split by patient into train/validation (leave-records-out; `split` must be patient).
    Records that cannot be used are skipped with their reason (meta.json, skipped.csv); BadInput
    only when `src` is not a folder of records or nothing usable is left.
    """
    if fmt not in FORMATS:
        raise BadInput(f"{fmt}: unknown format (choose from {', '.join(FORMATS)})")
    source = FORMATS[fmt]
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise BadInput(f"{src}: not a folder (expected a {fmt} collection)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise BadInput(f"{out}: output folder exists and is not empty (use --overwrite to replace it)")
    if split is not None and split not in SPLIT_KINDS:
        raise BadInput(f"{split}: unknown split (choose from {', '.join(SPLIT_KINDS)})")
    if split == "strat-fold" and fmt != "ptbxl":
        raise BadInput(f"{src}: --split strat-fold needs PTB-XL's strat_fold column (format ptbxl)")
    if holdout is not None and split not in (None, "patient"):
        raise BadInput(f"--holdout with --split {split}: the held-out records are a patient split (use --split patient)")
    labels = load_label_set(classes_file)
    if derive_st and mitdb.DERIVED_CLASS not in labels.classes:
        raise BadInput(f"{labels.path}: --derive-st needs a class named {mitdb.DERIVED_CLASS!r}")
    policy = window_policy or source.DEFAULT_WINDOW_POLICY
    if policy not in ("first", "all"):
        raise BadInput(f"{policy}: unknown window policy (choose first or all)")
    from ecgtool.data.preprocess import NORMALISATIONS

    if normalisation not in NORMALISATIONS:
        raise BadInput(f"--normalisation {normalisation}: unknown (choose from {', '.join(NORMALISATIONS)})")
    opts = ImportOptions(labels=labels, lead=lead, window_policy=policy, bandpass=bandpass, derive_st=derive_st,
                         normalisation=normalisation)

    ids = source.list_records(src)
    if holdout is not None:
        missing = sorted({str(h) for h in holdout} - {r for r in ids} - {Path(r).name for r in ids})
        if missing or not holdout:
            raise BadInput(f"{src}: --holdout names record(s) not in the collection: {', '.join(missing) or '(none given)'}")
    if records is not None:
        wanted = {str(r) for r in records}
        ids = [r for r in ids if r in wanted or Path(r).name in wanted]
    if not ids:
        raise BadInput(f"{src}: no {fmt} records found" + (" matching the records filter" if records else ""))

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.import.", dir=out.parent) as spill_dir:
        spill = Path(spill_dir) / "windows.f32"
        rows, skipped, dropped, channels, leads_seen = _read_records(source, src, ids, opts, spill)
        signals = np.memmap(spill, dtype=np.float32, mode="r", shape=(len(rows), channels, WINDOW_LEN))
        _split_and_write(fmt, source, src, out, ids, signals, rows, skipped, dropped, leads_seen, labels,
                         lead=lead, policy=policy, bandpass=bandpass, split=split, seed=seed, overwrite=overwrite,
                         normalisation=normalisation, holdout=holdout)
        del signals
    for name in DATASET_FILES:
        if (out / name).exists():
            record_artifact(out / name, run_dir=out, parent=src, extra={"kind": "dataset"})
    return out


def _read_records(source, src: Path, ids: list[str], opts: ImportOptions, spill: Path):
    """Read every record with a progress bar; windows are appended to a raw float32 file on disk, so
    memory holds one record at a time. Returns (rows, skipped, dropped, channels, leads)."""
    rows, skipped, dropped = [], [], Counter()
    channels: int | None = None
    leads_seen: list[str] = []
    with ui.progress_bar(f"import {source.NAME}", len(ids)) as bar, open(spill, "wb") as fh:
        for rid in ids:
            try:
                got = source.read(src, rid, opts)
                if channels is None:
                    channels, leads_seen = got.signals.shape[1], got.leads
                elif got.signals.shape[1] != channels:
                    raise UnusableRecord(f"lead count: {got.signals.shape[1]} leads, the first record had {channels}")
            except UnusableRecord as exc:
                skipped.append({"record_id": rid, "reason": str(exc)})
                bar.update(f"skipped {len(skipped)}")
            else:
                fh.write(np.ascontiguousarray(got.signals, dtype=np.float32).tobytes())
                rows.extend(got.rows)
                dropped.update(r.split(":")[0] for r in got.dropped)
            bar.advance()
    if not rows:
        kinds = Counter(s["reason"].split(":")[0] for s in skipped).most_common(3)
        example = {s["reason"].split(":")[0]: s for s in reversed(skipped)}
        detail = "; ".join(f"{n} x {k}, e.g. {example[k]['record_id']}: {example[k]['reason']}" for k, n in kinds)
        raise BadInput(f"{src}: nothing usable to import ({len(skipped)} record(s) skipped: {detail})")
    return rows, skipped, dropped, channels, leads_seen


def _split_and_write(fmt, source, src: Path, out: Path, ids, signals, rows, skipped, dropped, leads_seen, labels,
                     *, lead: str, policy: str, bandpass: bool, split: str | None, seed: int, overwrite: bool,
                     normalisation: str = "minmax", holdout: Sequence[str] | None = None) -> None:
    if getattr(source, "UNLABELLED", False):  # `data import records`: every window unlabelled, all in train
        from ecgtool.data.dataset import UNLABELLED

        y = np.full(len(rows), UNLABELLED, dtype=np.int64)
        splits = {"train": np.arange(len(rows)), "val": np.zeros(0, np.int64), "test": np.zeros(0, np.int64)}
        meta = {"source": fmt, "source_path": str(src.resolve()), "sampling_rate": TARGET_FS, "seconds": WINDOW_S,
                "lead": lead, "leads": leads_seen, "preprocessing": describe(bandpass, normalisation), "window_policy": policy,
                "unlabelled": True, "split": {"kind": "none (unlabelled: all windows in train)"},
                "label_set": labels.to_meta(), "records_total": len(ids), "records_read": len(ids) - len(skipped),
                "windows_dropped": dict(dropped)}
        write_dataset(out, signals, y, labels.classes, rows, splits, meta, skipped=skipped, overwrite=overwrite)
        return
    y = np.array([labels.index(r["label"]) for r in rows], dtype=np.int64)
    has_patients = source.HAS_PATIENTS and all(r.get("patient_id") for r in rows)
    several = len({r["record"] for r in rows}) < len(rows)  # some record gave several windows
    # without patient ids, windows of one record are still kept together (grouped by record)
    kind = split or ("patient" if has_patients or several else "random")
    groups = [r.get("patient_id") or r["record"] for r in rows]
    if kind == "random" and several:
        ui.warn("random split of several windows per record: windows of one record (and patient) "
                "land in different splits, which leaks and inflates F1")
    if holdout is not None:
        kind = "holdout"
        splits = holdout_split(y, groups, [r["record"] for r in rows], holdout, seed=seed)
        stratified = True
        held = sorted({rows[i]["record"] for i in splits["test"].tolist()})
        if not len(splits["test"]):
            raise BadInput(f"{src}: --holdout records gave no usable window (skipped.csv says why)")
    else:
        splits, stratified = _make_splits(kind, y, groups, rows, seed, src)

    meta = {
        "source": fmt,
        "source_path": str(src.resolve()),
        "sampling_rate": TARGET_FS,
        "seconds": WINDOW_S,
        "lead": "all" if lead.lower() == "all" else (lead if fmt != "cinc2017" else "single (AliveCor)"),
        "leads": leads_seen,
        "preprocessing": describe(bandpass, normalisation),
        "window_policy": policy,
        "split": {"kind": kind, "seed": seed, "stratified": stratified,
                  "group": "patient" if has_patients else "record",
                  # shared patients (or records) per pair of splits: nonzero means the split leaks
                  "overlap": split_overlap(groups, splits),
                  **({"holdout": [str(h) for h in holdout], "test_records": held} if holdout is not None else {})},
        "label_set": labels.to_meta(),
        "label_priority": list(labels.priority),
        "records_total": len(ids),
        "records_read": len(ids) - len(skipped),
        "windows_dropped": dict(dropped),
        "derived": dict(Counter(r["label"] for r in rows if r.get("derived"))),
    }
    write_dataset(out, signals, y, labels.classes, rows, splits, meta, skipped=skipped, overwrite=overwrite)


def _make_splits(kind: str, y: np.ndarray, groups: list[str], rows: list[dict], seed: int,
                 src: Path) -> tuple[dict[str, np.ndarray], bool]:
    """The splits and whether they are stratified by class."""
    if len(y) < 3:
        raise BadInput(f"{src}: only {len(y)} usable window(s); a train/val/test split needs at least 3")
    if kind == "strat-fold":
        folds = np.array([int(r["strat_fold"]) if str(r.get("strat_fold", "")).strip() else 0 for r in rows])
        if (folds == 0).any():
            raise BadInput(f"{src / ptbxl.DATABASE}: {int((folds == 0).sum())} record(s) lack a strat_fold")
        idx = np.arange(len(y))
        return {"train": idx[folds <= 8], "val": idx[folds == 9], "test": idx[folds == 10]}, False
    with warnings.catch_warnings():
        # StratifiedGroupKFold warns when a class has fewer groups than folds: expected on small sets
        warnings.simplefilter("ignore", UserWarning)
        split_fn = (lambda lab: patient_split(lab, groups, seed=seed)) if kind == "patient" else (
            lambda lab: random_split(lab, seed=seed))
        # classes numbered 0..k-1 over the classes present: random_split stratifies only when every
        # label value it sees has 2+ members, and a class absent from this source would count as 0
        compact = np.unique(y, return_inverse=True)[1].reshape(-1)
        try:
            return split_fn(compact), kind == "patient" or bool(np.bincount(compact).min() >= 2)
        except ValueError:
            # too few windows (or patients) per class to stratify (tiny sets): the same split, unstratified
            ui.warn(f"{src}: too few windows per class for a stratified split; splitting unstratified")
            return split_fn(np.zeros_like(y)), False


def summary_rows(out: Path) -> tuple[list[dict], list[dict]]:
    """(windows per class per split, skipped records per reason) of a written dataset, for printing."""
    meta = read_json(out / "meta.json")
    counts = meta["counts"]
    cls_rows = [{"class": c, **{s: counts[s][c] for s in ("train", "val", "test", "all")}} for c in meta["classes"]]
    if "unlabelled" in counts["all"]:
        cls_rows.append({"class": "unlabelled", **{s: counts[s].get("unlabelled", 0) for s in ("train", "val", "test", "all")}})
    reasons: Counter = Counter()
    if (out / "skipped.csv").exists():
        with open(out / "skipped.csv", newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                reasons[r["reason"].split(":")[0]] += 1
    skip_rows = [{"reason": r, "records": n} for r, n in reasons.most_common()]
    return cls_rows, skip_rows


@click.command("import")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(list(FORMATS)))
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Prepared dataset folder to write.")
@click.option("--classes", "classes_file", type=click.Path(path_type=Path),
              help="Label-set YAML (classes, source labels, priority); default: the paper's seven.")
@click.option("--lead", default=None, help="Lead to keep: II (default), another name, or 'all'.")
@click.option("--window-policy", type=click.Choice(["first", "all"]), default=None,
              help="Windows per record: first 10 s, or all non-overlapping (default: all for mitdb, first otherwise).")
@click.option("--bandpass", is_flag=True, default=None, help="Band-pass 0.5-40 Hz before normalising.")
@click.option("--split", type=click.Choice(list(SPLIT_KINDS)), default=None,
              help="patient (default where patient ids exist), random (paper's 64/16/20), strat-fold (ptbxl).")
@click.option("--seed", type=int, default=None, help="Seed of the split (default 0).")
@click.option("--derive-st", is_flag=True, default=None,
              help="mitdb: label (N windows above 100 bpm as ST, marked derived in records.csv.")
@click.option("--records", "records", default=None, help="Comma-separated record ids to import (default: all).")
@click.option("--holdout", "holdout", default=None,
              help="Comma-separated record ids held out as the whole test split (with any record of the same "
                   "patient); the rest split by patient into train/val (leave-records-out).")
@click.option("--overwrite", is_flag=True, default=None, help="Replace a non-empty output folder.")
@click.option("--normalisation", type=click.Choice(["minmax", "robust"]), default=None,
              help="Per-window normalisation: minmax (the paper's, [0, 1]) or robust (median/IQR, clipped); "
                   "frozen into every model trained on it.")
@ui.quiet_option
def import_command(fmt: str, src: Path, out: Path, **options) -> None:
    """Import a PhysioNet collection (FORMAT: challenge, mitdb, cinc2017, ptbxl; records: any WFDB folder, unlabelled) from SRC into --out."""
    given = {k: v for k, v in options.items() if v is not None}
    if "records" in given:
        given["records"] = [r.strip() for r in given["records"].split(",") if r.strip()]
    if "holdout" in given:
        given["holdout"] = [r.strip() for r in given["holdout"].split(",") if r.strip()]
    path = import_dataset(fmt, src, out, **given)
    meta = read_json(path / "meta.json")
    cls_rows, skip_rows = summary_rows(path)
    click.echo(f"{path}: {meta['n_records']} windows from {meta['records_read']} of {meta['records_total']} "
               f"records ({meta['source']}, lead {meta['lead']}, {meta['split']['kind']} split)")
    ui.print_table(cls_rows, title="windows per class and split")
    if skip_rows:
        ui.print_table(skip_rows, title=f"skipped records ({meta['skipped']['count']}; details in skipped.csv)")
