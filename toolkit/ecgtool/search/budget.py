"""`ecgtool search`: which model of the family fits a device budget (latency and/or size), and at what F1.

Every registered arch x depth x width is built (random weights: latency and size do not depend on them),
then each format (PyTorch, ONNX FP32, ONNX INT8) is written to a scratch folder, its size on disk measured
and, when a latency budget is given, its batch-1 latency timed on this machine with bench's timer. To stay
within minutes, candidates are visited in increasing MACs per (arch, format), a candidate whose estimated
size (4 bytes per parameter FP32, 1 INT8) exceeds 1.5x the size budget is skipped unmeasured, one over the
size budget is not timed, and once a candidate's latency exceeds 3x the budget, the larger-MAC ones of that
arch and format are skipped (latency grows with MACs within a family; a heuristic, stated in the status).
In-budget candidates are ranked by MACs (capacity as a proxy for accuracy); with train_top K the K
largest distinct models are trained on the data and ranked by validation macro-F1 instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import click
import numpy as np

from ecgtool.core.artifacts import size_on_disk_mb
from ecgtool.core.errors import BadInput, EcgtoolError
from ecgtool.export.formats import FORMATS as EXPORTS
from ecgtool.core.ui import info, quiet_option
from ecgtool.core.machine import THREADS_AUTO_HELP, resolve_threads
from ecgtool.train.defaults import LR, THREADS

#: what search can measure: the PyTorch folder, the ONNX Runtime formats of the export table and the
#: microcontroller one (litert-int8, run in TFLM: flash and arena; needs the [mcu] extra, so not a default)
FORMATS = ("pytorch", "onnx", "onnx-int8", "litert-int8")
DEFAULT_FORMATS = ("pytorch", "onnx", "onnx-int8")
SIZE_SLACK = 1.5  # measure a candidate whose estimated size is within 1.5x the size budget
LATENCY_CUTOFF = 3.0  # stop an (arch, format) sweep once a latency exceeds 3x the budget
BYTES_PER_PARAM = {"pytorch": 4, "onnx": 4, "onnx-int8": 1, "litert-int8": 1}
COLUMNS = ["model", "width", "format", "params", "macs", "size_mb", "flash_kb", "ram_kb", "p50_ms", "val_macro_f1", "test_macro_f1",
           "status", "fits"]


def check_budget(budget_ms: float | None, budget_mb: float | None, mcu: tuple[float, float] | None = None) -> None:
    """BadInput unless at least one budget is given and every given budget is > 0."""
    if budget_ms is None and budget_mb is None and mcu is None:
        raise BadInput("search: give --budget-ms X and/or --budget-mb Y and/or --mcu-budget FLASH_KB,RAM_KB")
    for name, value in (("--budget-ms", budget_ms), ("--budget-mb", budget_mb)):
        if value is not None and not value > 0:
            raise BadInput(f"search: {name} {value} must be greater than 0")


def median_latency_ms(predictor: Any, x: np.ndarray, *, warmup: int = 3, min_runs: int = 15,
                      min_time_s: float = 0.3, max_time_s: float = 3.0) -> float:
    """Median batch latency (ms) after warm-up, outliers clipped, with bench's timer."""
    from ecgtool.bench.runner import clip_outliers, time_round_robin

    times, errors = time_round_robin({"c": lambda: predictor.predict(x)}, warmup=warmup, min_runs=min_runs,
                                     min_time_s=min_time_s, max_time_s=max_time_s)
    if "c" in errors:
        raise EcgtoolError(errors["c"])
    return float(np.median(clip_outliers(times["c"]))) * 1e3


def _materialise(fmt: str, folder: Path, length: int, calibration: np.ndarray | None, data_root: Path | None = None) -> Path:
    """The artifact of `fmt` for a saved model folder (ONNX export / INT8 quantisation as needed)."""
    from ecgtool.export import torch2onnx
    from ecgtool.compress.quantize import onnx2int8

    if fmt == "pytorch":
        return folder
    if fmt == "litert-int8":  # full export: .tflite, measured arena, flash estimate (sidecar)
        from ecgtool.export import export

        return export(folder, fmt, data=data_root, calib_size=len(calibration), calib_dir=folder.parent / "calibration",
                      check_limit=16).path
    onnx = folder / EXPORTS["onnx"].artifact
    if not onnx.exists():
        torch2onnx(folder, onnx, length=length)
    if fmt == "onnx":
        return onnx
    int8 = folder / EXPORTS["onnx-int8"].artifact
    if not int8.exists():
        onnx2int8(onnx, int8, calibration)
    return int8


def _within(row: dict, budget_ms: float | None, budget_mb: float | None, mcu: tuple[float, float] | None = None) -> bool:
    ok_mb = budget_mb is None or (row["size_mb"] is not None and row["size_mb"] <= budget_mb)
    ok_ms = budget_ms is None or (row["p50_ms"] is not None and row["p50_ms"] <= budget_ms)
    ok_mcu = mcu is None or (row.get("flash_kb") is not None and row["flash_kb"] <= mcu[0]
                             and row.get("ram_kb") is not None and row["ram_kb"] <= mcu[1])
    return bool(ok_mb and ok_ms and ok_mcu)


def measure_candidates(data: Any, *, budget_ms: float | None, budget_mb: float | None, archs: Sequence[str],
                       depths: Sequence[int], widths: Sequence[int], formats: Sequence[str], threads: int,
                       scratch: Path, calib_size: int = 64, mcu: tuple[float, float] | None = None) -> list[dict]:
    """One row per (model, width, format): params, MACs, size (MB), p50 latency (ms, batch 1), status, fits."""
    import torch

    from ecgtool.compress.calibration import calibration_set
    from ecgtool.data.preprocess import spec_from_meta
    from ecgtool.models import get_model, model_stats, save_model
    from ecgtool.runtime import load
    from ecgtool.core.ui import progress_bar

    length, channels, k = int(data.signals.shape[2]), int(data.signals.shape[1]), len(data.classes)
    x1 = np.ascontiguousarray(data.signals[data.indices("train")[:1]], dtype=np.float32)
    specs = []
    for arch in archs:
        for depth in depths:
            for width in widths:
                model = get_model(f"{arch}{depth}", width=width, in_channels=channels, num_classes=k,
                                  classes=data.classes, preprocessing=spec_from_meta(data.meta),
                                  extra={"input_length": length})
                specs.append((arch, depth, width, model_stats(model, length=length, in_channels=channels)))
    calibration = None
    if "onnx-int8" in formats or "litert-int8" in formats:
        calibration = calibration_set(data.root, calib_size, calib_dir=scratch / "calibration").signals
    rows: list[dict] = []
    with progress_bar("search", len(specs) * len(formats)) as bar:
        for arch in archs:
            for fmt in formats:
                too_slow: str | None = None
                for _, depth, width, stats in sorted((s for s in specs if s[0] == arch), key=lambda s: s[3]["macs"]):
                    row = {"model": f"{arch}{depth}", "arch": arch, "depth": depth, "width": width, "format": fmt,
                           **stats, "size_mb": None, "flash_kb": None, "ram_kb": None, "p50_ms": None, "val_macro_f1": None, "test_macro_f1": None}
                    bar.update(f"{row['model']} w{width} {fmt}")
                    estimate = stats["params"] * BYTES_PER_PARAM[fmt] / 1e6
                    if budget_mb is not None and estimate > SIZE_SLACK * budget_mb:
                        row["status"] = f"skipped: about {estimate:.3g} MB"
                    elif mcu is not None and fmt == "litert-int8" and estimate * 1e3 > SIZE_SLACK * mcu[0]:
                        row["status"] = f"skipped: about {estimate * 1e3:.0f} KB of flash"
                    elif too_slow:
                        row["status"] = f"skipped: {too_slow} was over {LATENCY_CUTOFF:g}x the budget"
                    else:
                        folder = scratch / f"{arch}{depth}-w{width}"
                        if not folder.exists():
                            torch.manual_seed(0)
                            save_model(folder, get_model(f"{arch}{depth}", width=width, in_channels=channels,
                                                         num_classes=k, classes=data.classes,
                                                         preprocessing=spec_from_meta(data.meta),
                                                         extra={"input_length": length}))
                        artifact = _materialise(fmt, folder, length, calibration, Path(data.root))
                        row["size_mb"] = size_on_disk_mb(artifact)
                        if fmt == "litert-int8":
                            from ecgtool.runtime.tflm import footprint

                            row.update(footprint(artifact))
                        if budget_ms is not None and (budget_mb is None or row["size_mb"] <= budget_mb):
                            row["p50_ms"] = median_latency_ms(load(artifact, threads=threads, verify=False), x1)
                            if row["p50_ms"] > LATENCY_CUTOFF * budget_ms:
                                too_slow = f"{row['model']} w{width}"
                        row["status"] = "ok"
                    row["fits"] = row["status"] == "ok" and _within(row, budget_ms, budget_mb, mcu)
                    rows.append(row)
                    bar.advance()
    return rows


def _train_top(rows: list[dict], data: Any, k: int, out: Path, epochs: int, lr: float, seed: int,
               threads: int | None = None) -> None:
    """Train the k largest distinct in-budget models; fill val/test macro-F1 of their rows (PyTorch FP32 weights)."""
    from ecgtool.evaluate.artifact import evaluate_artifact
    from ecgtool.train.run import train_models

    models: list[tuple[str, int, int]] = []
    for r in sorted((r for r in rows if r["fits"]), key=lambda r: -r["macs"]):
        key = (r["arch"], r["depth"], r["width"])
        if key not in models:
            models.append(key)
    for arch, depth, width in models[:k]:
        run = out / "trained" / f"w{width}"
        summary = train_models(data, [arch], [depth], run, width=width, epochs=epochs, lr=lr, seed=seed,
                               resume=True, threads=threads)
        val = evaluate_artifact(run / f"{arch}{depth}", data, split="val")["macro_f1"]
        for r in rows:
            if (r["arch"], r["depth"], r["width"]) == (arch, depth, width):
                r["val_macro_f1"], r["test_macro_f1"] = val, summary[-1]["macro_f1"]


def search(
    data: str | os.PathLike,
    *,
    budget_ms: float | None = None,
    budget_mb: float | None = None,
    archs: Sequence[str] = ("se_resnet", "resnet"),
    depths: Sequence[int] = (18, 34, 50, 101, 152),
    widths: Sequence[int] = (8, 16, 32, 64),
    formats: Sequence[str] = DEFAULT_FORMATS,
    mcu_budget: str | tuple[float, float] | None = None,
    threads: int | str = THREADS,
    train_top: int = 0,
    epochs: int = 5,
    lr: float = LR,
    seed: int = 0,
    calib_size: int = 64,
    out: str | os.PathLike = "models/search",
) -> list[dict]:
    """Candidates within budget (latency ms at batch 1 and/or size MB; both given means both), best first.

    train_top K: the K largest fitting models are trained (train_models, `epochs`, Adam `lr`) into
    OUT/trained/w<width>/ and ranked by validation macro-F1 (of the PyTorch FP32 weights; an INT8 row
    carries its model's FP32 F1). Writes search.csv/json/md (every candidate, in or out) into `out`;
    raises EcgtoolError (exit 1) naming the smallest and the fastest candidate when nothing fits.
    """
    import torch

    from ecgtool.core.manifest import record_artifact
    from ecgtool.core.files import write_csv, write_json, write_text
    from ecgtool.data.dataset import load_dataset
    from ecgtool.models import ARCHS, DEPTHS
    from ecgtool.core.ui import markdown_table

    from ecgtool.runtime.tflm import parse_mcu_budget

    mcu = parse_mcu_budget(mcu_budget) if isinstance(mcu_budget, (str, type(None))) else tuple(mcu_budget)
    check_budget(budget_ms, budget_mb, mcu)
    if mcu is not None and tuple(formats) == DEFAULT_FORMATS:  # a microcontroller budget: its format
        formats = ("litert-int8",)
    bad = [f"--arch {a}" for a in archs if a not in ARCHS] + [f"--depth {d}" for d in depths if int(d) not in DEPTHS] \
        + [f"--format {f}" for f in formats if f not in FORMATS] + [f"--width {w}" for w in widths if int(w) < 1]
    if bad or not (archs and depths and widths and formats):
        raise BadInput(f"search: unknown or missing {', '.join(bad) or 'candidates'} (archs {', '.join(ARCHS)}; "
                       f"depths {', '.join(map(str, DEPTHS))}; formats {', '.join(FORMATS)})")
    if train_top < 0:
        raise BadInput(f"search: --train-top {train_top} must be >= 0")
    ds = load_dataset(data)
    threads, why = resolve_threads(threads)
    info(f"search: {threads} thread(s) ({why})")
    torch.set_num_threads(threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="ecgtool-search-", dir=out))
    try:
        rows = measure_candidates(ds, budget_ms=budget_ms, budget_mb=budget_mb, archs=archs, depths=depths,
                                  widths=widths, formats=formats, threads=threads, scratch=scratch, calib_size=calib_size,
                                  mcu=mcu)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    fitting = [r for r in rows if r["fits"]]
    if train_top and fitting:
        _train_top(rows, ds, train_top, out, epochs, lr, seed, threads)
        fitting.sort(key=lambda r: (-(r["val_macro_f1"] if r["val_macro_f1"] is not None else -1), -r["macs"],
                                    r["p50_ms"] or 0, r["size_mb"]))
    else:
        fitting.sort(key=lambda r: (-r["macs"], r["p50_ms"] or 0, r["size_mb"]))
    ordered = fitting + [r for r in rows if not r["fits"]]
    for rank, r in enumerate(ordered, 1):
        r["rank"] = rank if r["fits"] else None
    settings = {"budget_ms": budget_ms, "budget_mb": budget_mb, "mcu_budget_kb": list(mcu) if mcu else None, "threads": threads, "batch": 1, "train_top": train_top,
                "epochs": epochs if train_top else None, "lr": lr if train_top else None, "data": str(ds.root),
                "input_length": int(ds.signals.shape[2]),
                "ranked_by": "val_macro_f1" if train_top and fitting else "macs"}
    write_csv(out / "search.csv", ordered, ["rank", *COLUMNS, "arch", "depth"])
    write_json(out / "search.json", {"settings": settings, "recommended": fitting[0] if fitting else None,
                                     "candidates": ordered})
    write_text(out / "search.md", _markdown(settings, fitting, ordered, markdown_table))
    for name in ("search.csv", "search.json", "search.md"):
        record_artifact(out / name, run_dir=out)
    if not fitting:
        raise EcgtoolError(f"{out / 'search.md'}: no candidate fits the budget; {_nearest(rows)}")
    return fitting


def _nearest(rows: list[dict]) -> str:
    """The smallest and the fastest measured candidates, for the 'nothing fits' message."""
    measured = [r for r in rows if r["status"] == "ok"] or rows
    small = min(measured, key=lambda r: (r["size_mb"] if r["size_mb"] is not None else float("inf"), r["params"]))
    text = f"smallest: {describe(small)}"
    timed = [r for r in measured if r["p50_ms"] is not None]
    if timed:
        text += f"; fastest: {describe(min(timed, key=lambda r: r['p50_ms']))}"
    return text


def describe(row: dict) -> str:
    """One-line summary of a candidate: model, width, format and its numbers."""
    parts = [f"{row['model']} width {row['width']} {row['format']}", f"{row['params']:,} params",
             f"{row['macs'] / 1e6:.3g} M MACs"]
    if row["size_mb"] is not None:
        parts.append(f"{row['size_mb']:.3g} MB")
    if row.get("flash_kb") is not None:
        parts.append(f"flash {row['flash_kb']:.1f} KB, RAM {row['ram_kb']:.1f} KB")
    if row["p50_ms"] is not None:
        parts.append(f"{row['p50_ms']:.3g} ms")
    if row.get("val_macro_f1") is not None:
        parts.append(f"val macro-F1 {row['val_macro_f1']:.4f}")
    return ", ".join(parts)


def _markdown(settings: dict, fitting: list[dict], ordered: list[dict], markdown_table) -> str:
    budget = " and ".join(b for b in (f"{settings['budget_ms']} ms" if settings["budget_ms"] else "",
                                      f"{settings['budget_mb']} MB" if settings["budget_mb"] else "",
                                      "{:g} KB flash, {:g} KB RAM".format(*settings["mcu_budget_kb"])
                                      if settings.get("mcu_budget_kb") else "") if b)
    head = f"# Budget search: {budget} (batch 1, {settings['threads']} thread(s), ranked by {settings['ranked_by']})\n\n"
    rec = f"Recommended: {describe(fitting[0])}\n\n" if fitting else "No candidate fits the budget.\n\n"
    return head + rec + markdown_table(ordered, ["rank", *COLUMNS])


@click.command("search")
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="Prepared dataset (input shape, calibration, training).")
@click.option("--budget-ms", type=float, help="Most batch-1 latency on this machine (ms).")
@click.option("--budget-mb", type=float, help="Most size on disk (MB). Both budgets together must both hold.")
@click.option("--mcu-budget", default=None, metavar="FLASH_KB,RAM_KB",
              help="Microcontroller budget (with --format litert-int8, needs the [mcu] extra), e.g. 256,128.")
@click.option("--arch", "archs", multiple=True, help="se_resnet and/or resnet (default both).")
@click.option("--depth", "depths", multiple=True, type=int, help="Depths to try (default 18 34 50 101 152).")
@click.option("--width", "widths", multiple=True, type=int, help="Widths to try (default 8 16 32 64).")
@click.option("--format", "formats", multiple=True, help="pytorch, onnx, onnx-int8, litert-int8 (default the first three).")
@click.option("--threads", help=f"Inference threads: N or auto (default {THREADS}: "
              f"{THREADS_AUTO_HELP}).")
@click.option("--train-top", type=click.IntRange(0), help="Train the K largest fitting models and rank by val macro-F1.")
@click.option("--epochs", type=click.IntRange(1), help="Epochs for --train-top (default 5).")
@click.option("--lr", type=click.FloatRange(0, min_open=True),
              help=f"Adam learning rate for --train-top (default {LR:g}).")
@click.option("--calib-size", type=click.IntRange(1), help="INT8 calibration records (default 64).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder (default models/search).")
@quiet_option
def search_command(data: Path, **options: Any) -> None:
    """Find the largest model (or best F1 with --train-top) that fits a latency and/or size budget."""
    from ecgtool.core.ui import print_table

    given = {k: v for k, v in options.items() if v is not None and v != ()}
    out = Path(given.get("out", "models/search"))
    try:
        fitting = search(data, **given)
    except EcgtoolError as exc:
        if not isinstance(exc, BadInput) and (out / "search.json").exists():
            from ecgtool.core.files import read_json

            rows = read_json(out / "search.json")["candidates"]
            print_table(rows, ["rank", *COLUMNS], title="no candidate fits")
        raise
    print_table(fitting, ["rank", *COLUMNS], title=f"candidates within budget ({len(fitting)})")
    click.echo(f"recommended: {describe(fitting[0])}")
    click.echo(f"wrote {out / 'search.md'}")
