"""`ecgtool data info DIR`: what a prepared dataset holds, and whether its splits share patients."""

from __future__ import annotations

import json
import os
from typing import Any

import click
import numpy as np

from ecgtool.core.errors import BadInput
from ecgtool.data.dataset import counts_per_split, load_dataset
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
def info_command(path: str, as_json: bool) -> None:
    """Show what a prepared dataset holds: format, counts per class per split, skipped, patients."""
    info = dataset_info(path)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        print_info(info)
