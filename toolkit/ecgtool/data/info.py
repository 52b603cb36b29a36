"""`ecgtool data info DIR`: what a prepared dataset holds, and whether its splits share patients;
with `--rates`, the detected heart rate per class against the rate definitions of the sinus classes
(a dataset whose "Normal" includes slow sinus rhythm scores low on any rate rule for a reason that is in the
labels, not in the model)."""

from __future__ import annotations

import json
import os
from typing import Any

import click
import numpy as np

from ecgtool.core.errors import BadInput
from ecgtool.data.classes import RATE_DEFINITIONS
from ecgtool.data.dataset import UNLABELLED, counts_per_split, load_dataset
from ecgtool.data.splits import split_overlap


def dataset_info(path: str | os.PathLike) -> dict[str, Any]:
    """Summary of a prepared dataset: format, counts per class per split (recounted from labels.npy
    and splits.json, not copied from meta.json), skipped records, and patients per split with the
    pairwise patient overlap when records.csv has patient ids."""
    ds = load_dataset(path)
    meta, classes = ds.meta, ds.classes
    n, channels, length = ds.signals.shape
    counts = counts_per_split(ds.labels, ds.splits, classes)
    counts["all"] = counts_per_split(ds.labels, {"all": np.arange(len(ds.labels))}, classes)["all"]
    split = meta.get("split")  # a kind ("random") or, from importers, a dict with "kind" and details
    split_kind = split.get("kind") if isinstance(split, dict) else split
    seed = meta.get("seed", split.get("seed") if isinstance(split, dict) else None)
    info: dict[str, Any] = {
        "path": str(ds.root),
        "source": meta.get("source"),
        "n_records": int(n),
        "classes": classes,
        "sampling_rate_hz": ds.sampling_rate,
        "seconds": meta.get("seconds", round(length / ds.sampling_rate, 3)),
        "lead": meta.get("lead"),
        "channels": int(channels),
        "length": int(length),
        "preprocessing": meta.get("preprocessing"),
        "split": split_kind,
        "seed": seed,
        "split_sizes": {k: int(len(v)) for k, v in ds.splits.items()},
        "counts": counts,
        "skipped": meta.get("skipped", {"count": 0, "reasons": {}}),
    }
    if isinstance(split, dict):
        info["split_detail"] = split
    gen = meta.get("generator")
    if isinstance(gen, dict) and gen.get("name"):
        info["generator"] = f"{gen['name']} v{gen.get('version')}" + (
            f", morphology {gen['morphology']}, lead {gen.get('lead')}" if gen.get("morphology") else "")
    info["missing"] = {k: [c for c, v in cnt.items() if v == 0] for k, cnt in counts.items()
                       if any(v == 0 for v in cnt.values())}
    if "label_priority" in meta:
        info["label_priority"] = meta["label_priority"]
    records = ds.records
    if len(records) != n:
        raise BadInput(f"{ds.root / 'records.csv'}: {len(records)} rows for {n} signals")
    arr, kind = ds.groups()
    if kind == "patient":
        groups = arr.tolist()
        overlap = split_overlap(groups, ds.splits)
        info["patients"] = {
            "total": int(len(set(groups))),
            **{k: int(len(np.unique(arr[v]))) for k, v in ds.splits.items()},
        }
        info["patient_overlap"] = overlap
        info["patients_disjoint"] = not any(overlap.values())
    return info


#: share of a rate-defined class's windows outside its definition from which `data info --rates` warns
RATE_WARN_SHARE = 0.10
#: how far (bpm) past a definition's edge a window must be to count as outside it: a 10-s mean rate and the R-peak
#: detector's misses put windows of a correctly labelled class a few bpm across 60 or 100
RATE_MARGIN_BPM = 5.0


def _band(lo: float | None, hi: float | None) -> str:
    return f"{lo:g}-{hi:g} bpm" if lo is not None and hi is not None else (f"< {hi:g} bpm" if lo is None else f"> {lo:g} bpm")


def rate_definitions_text() -> str:
    """data.classes.RATE_DEFINITIONS as words, e.g. "Normal 60-100 bpm, SB < 60 bpm, ST > 100 bpm"."""
    return ", ".join(f"{c} {_band(*b)}" for c, b in RATE_DEFINITIONS.items())


def outside_definition(hr: np.ndarray, name: str) -> np.ndarray:
    """True where a heart rate (bpm) of a window labelled `name` lies more than RATE_MARGIN_BPM outside the
    class's rate definition (False for NaN rates and for classes without one)."""
    hr = np.asarray(hr, dtype=np.float64)
    if name not in RATE_DEFINITIONS:
        return np.zeros(hr.shape, bool)
    lo, hi = RATE_DEFINITIONS[name]
    with np.errstate(invalid="ignore"):
        below = hr < lo - RATE_MARGIN_BPM if lo is not None else np.zeros(hr.shape, bool)
        above = hr > hi + RATE_MARGIN_BPM if hi is not None else np.zeros(hr.shape, bool)
    return below | above


def rate_profile(path: str | os.PathLike, split: str = "all", workers: int | str | None = None,
                 progress: bool = True, max_windows: int | None = None) -> dict[str, Any]:
    """Detected heart rate per class of a prepared dataset's `split`: the classical baseline's `hr_bpm`
    (60 / mean RR of wfdb XQRS R peaks, first channel: the lead the dataset deploys), from the features
    cached beside the dataset (baseline.cache.window_feature_table, shared with `train --rr-head`). Per class: windows, windows with a rate (>= 2 beats), median and 10th / 90th
    percentile, share under 60 and over 100 bpm; for the classes of data.classes.RATE_DEFINITIONS also the
    share outside the definition by more than RATE_MARGIN_BPM, and `warn` when it is at least RATE_WARN_SHARE.
    `max_windows`: profile a random sample of at most that many windows (seed 0; computed, not cached) unless
    every window's features are cached already."""
    from ecgtool.baseline.features import FEATURE_NAMES
    from ecgtool.baseline.cache import cached_feature_table, window_feature_table

    ds = load_dataset(path, require_splits=split != "all")
    idx = ds.indices(split)
    col = FEATURE_NAMES.index("hr_bpm")
    if max_windows is not None and len(idx) > max_windows and cached_feature_table(ds, 0) is None:
        from ecgtool.baseline.features import extract_features

        idx = np.sort(np.random.default_rng(0).choice(idx, size=int(max_windows), replace=False))
        hr = extract_features(ds.signals, ds.sampling_rate, progress=progress, indices=idx,
                              workers=workers)[:, col].astype(np.float64)
    else:
        hr = window_feature_table(ds, 0, progress=progress, workers=workers)[idx, col].astype(np.float64)
    labels = np.asarray(ds.labels[idx], np.int64)
    rows = []
    for k, name in enumerate(ds.classes):
        v = hr[labels == k]
        ok = v[np.isfinite(v)]
        row: dict[str, Any] = {"class": name, "windows": int(len(v)), "with_rate": int(len(ok))}
        if len(ok):
            p10, med, p90 = np.percentile(ok, [10, 50, 90])
            row.update(median_bpm=round(float(med), 1), p10_bpm=round(float(p10), 1), p90_bpm=round(float(p90), 1),
                       under_60=round(float(np.mean(ok < 60)), 4), over_100=round(float(np.mean(ok > 100)), 4))
        if name in RATE_DEFINITIONS:
            row["definition"] = _band(*RATE_DEFINITIONS[name])
            if len(ok):
                row["outside_definition"] = round(float(np.mean(outside_definition(ok, name))), 4)
                row["warn"] = bool(row["outside_definition"] >= RATE_WARN_SHARE)
        rows.append(row)
    return {"path": str(ds.root), "split": split, "windows": int(len(idx)), "sampled": len(idx) < len(ds.indices(split)),
            "unlabelled": int(np.sum(labels == UNLABELLED)), "source": "baseline hr_bpm (wfdb XQRS), channel 0",
            "warn_share": RATE_WARN_SHARE, "margin_bpm": RATE_MARGIN_BPM, "classes": rows}


def rate_warnings(rates: dict[str, Any]) -> list[str]:
    """One short phrase per rate-defined class of rate_profile() that contradicts its definition."""
    return [f"{r['class']} {r['outside_definition'] * 100:.1f} % of {r['with_rate']} windows more than "
            f"{rates['margin_bpm']:g} bpm outside {r['definition']}" for r in rates["classes"] if r.get("warn")]


def print_rates(rates: dict[str, Any]) -> None:
    """Print rate_profile() as a table, then one line per rate-defined class that contradicts its definition."""
    from ecgtool.core import ui

    cols = ["class", "windows", "with_rate", "median_bpm", "p10_bpm", "p90_bpm", "under_60", "over_100",
            "definition", "outside_definition"]
    margin = f"{rates['margin_bpm']:g} bpm"
    rows = [{c: (f"{r[c] * 100:.1f} %" if c in ("under_60", "over_100", "outside_definition") and c in r
                 else r.get(c, "-")) for c in cols} for r in rates["classes"] if r["windows"]]
    if not rows:
        click.echo(f"{rates['path']}: no labelled window in split {rates['split']!r} ({rates['unlabelled']} "
                   "unlabelled): the rate check compares labels with heart rates, so it needs labels")
        return
    sample = f", a sample of {rates['windows']} windows" if rates.get("sampled") else ""
    ui.print_table(rows, cols, title=f"detected heart rate per class ({rates['split']}{sample}; {rates['source']}; "
                                     f"outside: by more than {margin})")
    for r in rates["classes"]:
        if r.get("warn"):
            click.echo(f"{rates['path']}: {r['outside_definition'] * 100:.1f} % of {r['with_rate']} {r['class']} windows "
                       f"are more than {margin} outside {r['definition']} (the class's rate definition): these labels "
                       f"do not follow it, so a model that learnt the definition elsewhere will disagree with them")


def _priority_rows(priority: Any) -> list[dict]:
    if isinstance(priority, dict):
        return [{"label": k, "priority / maps to": json.dumps(v) if not isinstance(v, str) else v}
                for k, v in priority.items()]
    return [{"rank": i + 1, "label": json.dumps(v) if not isinstance(v, str) else v} for i, v in enumerate(priority)]


def _flat(value: Any) -> Any:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in value.items() if v is not None)
    return value


def print_info(info: dict[str, Any]) -> None:
    """Print dataset_info() as readable tables on stdout."""
    from ecgtool.core import ui

    summary = [
        ("path", info["path"]), ("source", info["source"]), ("records", info["n_records"]),
        ("classes", ", ".join(info["classes"])), ("sampling rate (Hz)", info["sampling_rate_hz"]),
        ("seconds", info["seconds"]), ("lead", info["lead"]),
        ("shape", f"{info['channels']} x {info['length']}"), ("preprocessing", _flat(info["preprocessing"])),
        ("split", f"{info['split']} (seed {info['seed']})" if info.get("seed") is not None else info["split"]),
    ]
    if info.get("generator"):
        summary.append(("generator", info["generator"]))
    ui.print_table([{"field": k, "value": v} for k, v in summary], ["field", "value"], title="dataset")
    names = list(info["counts"])
    rows = [{"class": c, **{s: info["counts"][s][c] for s in names}} for c in info["classes"]]
    rows.append({"class": "total", **{s: sum(info["counts"][s].values()) for s in names}})
    ui.print_table(rows, ["class", *names], title="records per class per split")
    for name, absent in info["missing"].items():
        click.echo(f"no records of {', '.join(absent)} in {'the whole dataset' if name == 'all' else name}")
    skipped = info["skipped"]
    reasons = ", ".join(f"{k}: {v}" for k, v in skipped.get("reasons", {}).items())
    click.echo(f"skipped: {skipped.get('count', 0)}" + (f" ({reasons})" if reasons else ""))
    if "label_priority" in info:
        ui.print_table(_priority_rows(info["label_priority"]), title="label priority")
    if "patients" in info:
        ui.print_table([{"split": k, "patients": v} for k, v in info["patients"].items()], ["split", "patients"],
                       title="patients")
        if info["patients_disjoint"]:
            click.echo("patient overlap: none (no patient in two splits)")
        else:
            shared = ", ".join(f"{k} {v}" for k, v in info["patient_overlap"].items() if v)
            click.echo(f"patient overlap: {shared} (patients in two splits)")


@click.command("info")
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--rates", is_flag=True, help="Also the detected heart rate per class against the rate definitions "
              f"({rate_definitions_text()}); R peaks are detected on every window once and cached beside the "
              "dataset (about 10-20 ms per window).")
@click.option("--split", default="all", show_default=True, help="With --rates: the split to profile (train, val, "
              "test or all).")
@click.option("--workers", default=None, help="With --rates: processes for R-peak detection: N or auto.")
@click.option("--max-windows", type=click.IntRange(1), default=None,
              help="With --rates: a random sample of at most N windows (seed 0), not cached.")
def info_command(path: str, as_json: bool, rates: bool, split: str, workers: str | None,
                 max_windows: int | None) -> None:
    """Show what a prepared dataset holds: format, counts per class per split, skipped, patients."""
    if workers is not None:  # a bad --workers is said before any work, even where the features are cached
        from ecgtool.core.machine import resolve_threads

        try:
            resolve_threads(workers)
        except BadInput as exc:
            raise BadInput(f"--workers {workers}: {str(exc).split(': ', 1)[-1]}") from None
    info = dataset_info(path)
    if rates:
        info["rates"] = rate_profile(path, split=split, workers=workers, progress=not as_json, max_windows=max_windows)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    print_info(info)
    if rates:
        print_rates(info["rates"])
