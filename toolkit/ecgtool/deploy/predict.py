"""Use a trained artifact on new records (`predict`).

`predict` reads WFDB records (.hea; Challenge .hea + .mat too), .npy arrays and CSV columns,
preprocesses them exactly as the training set was (the spec the artifact carries: config.json's
"preprocessing", a lone .onnx's metadata or a lone .tflite's sidecar -- rate, window length, band-pass, lead),
runs any artifact kind through `runtime.load` (a .tflite in the TFLM interpreter) and
returns per-window rhythms with class probabilities and a record summary; with `explain` it adds the
most relevant time spans of each window (Grad-CAM or occlusion, see explain.py) and a PNG per window.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import click
import numpy as np

from ecgtool.deploy import bundle_runner, episodes
from ecgtool.core import ui
from ecgtool.core.errors import BadInput
from ecgtool.core.files import write_json
from ecgtool.core.manifest import record_artifact
from ecgtool.data import preprocess, stream
from ecgtool.data.preprocess import TARGET_FS, WINDOW_S, UnusableRecord, is_wfdb_path, make_spec


# --- preprocessing as in training -----------------------------------------------------------------


def artifact_config(path: str | os.PathLike, config: dict | None = None) -> dict:
    """The config an artifact carries: `config` (or config.json beside it or in a parent folder); for an
    .onnx file the preprocessing stamped into its own metadata_props wins, and a lone .onnx's whole
    config comes from there. {} when it has neither."""
    from ecgtool.runtime.base import config_and_classes
    from ecgtool.runtime.onnxruntime import read_metadata

    p = Path(path)
    if config is None:
        config, _ = config_and_classes(p)
    if p.is_file() and p.suffix == ".onnx":
        own = read_metadata(p).get("config") or {}
        if not config:
            return own
        if isinstance(own.get("preprocessing"), dict):
            return {**config, "preprocessing": own["preprocessing"]}
    return config


def preprocessing_spec(config: dict, lead: str | None = None, *, source: str | os.PathLike | None = None) -> dict:
    """How records must be prepared for this model (see ecgtool.data.preprocess.SPEC_KEYS).

    The spec the model froze into its config.json at training time (and that every export repeats in
    its metadata), never a path back to the training data. A config from before specs were frozen
    gets the paper's defaults (its own recorded rate and window length where it has them), with a
    warning naming `source`. `lead` overrides the spec's lead.
    """
    spec = config.get("preprocessing")
    if isinstance(spec, dict) and spec.get("sampling_rate") and spec.get("window_len"):
        spec = dict(spec)
    else:
        extra = {**config, **(config.get("extra") or {})}  # the baseline keeps these at the top level
        fs = extra.get("sampling_rate") or TARGET_FS
        spec = make_spec(sampling_rate=fs, window_len=int(extra.get("input_length") or extra.get("length")
                                                           or round(WINDOW_S * float(fs))),
                         channels=int(config.get("in_channels") or 1), classes=config.get("classes"))
        ui.warn(f"{source or 'the model'}: no preprocessing spec in its config (trained before ecgtool froze one); "
                f"assuming the paper's: {spec['sampling_rate']:g} Hz, {spec['window_s']:g}-s windows, lead "
                f"{spec['lead']}, no band-pass, min-max per window")
    if lead:
        spec["lead"] = lead
    return spec


def read_input(path: str | os.PathLike, fs: float | None, lead: str, channels: int) -> tuple[np.ndarray, float]:
    """(signal [C, T] in mV, Hz) of a WFDB record, .npy or .csv; UnusableRecord with the reason if bad.

    WFDB records go through the importers' checked reader (header sanity, lead selection); .npy and
    .csv through the shared reader the bundle uses.
    """
    from ecgtool.data.importers.wfdb_read import read_header, read_record

    p = Path(path)
    if is_wfdb_path(p):
        base = p.with_suffix("") if p.suffix == ".hea" else p
        want = "all" if channels > 1 else lead
        try:
            raw = read_record(base, want)
        except UnusableRecord as exc:
            if not str(exc).startswith("lead missing") or len(read_header(base).sig_name or []) != 1:
                raise
            raw = read_record(base, "all")  # a single-lead record: its one lead, whatever its name
        if raw.signal.shape[0] != channels:
            raise UnusableRecord(f"{raw.signal.shape[0]} lead(s), the model takes {channels}")
        return raw.signal, raw.fs
    return preprocess.read_record(p, fs, lead, channels)


def prepare_windows(signal: np.ndarray, fs: float, spec: dict) -> tuple[np.ndarray, list[int], list[dict]]:
    """One record prepared as `spec` says: (windows [n, C, L] float32, starts at the model rate, dropped)."""
    return preprocess.windows_for_spec(signal, fs, spec)


# --- predict --------------------------------------------------------------------------------------


def _logits(predictor, x: np.ndarray, batch_size: int) -> np.ndarray:
    from ecgtool.runtime.base import predict_in_batches

    return predict_in_batches(predictor, x, batch_size)


def predict_records(predictor, records: Sequence[str | os.PathLike], *, fs: float | None = None, lead: str | None = None,
                    window_policy: str = "all", explain: bool | str = False, out: str | os.PathLike | None = None,
                    batch_size: int = 64, hop: float | None = None, quality: bool = True,
                    min_episode_s: float = episodes.MIN_EPISODE_S, gap_s: float = episodes.GAP_S) -> list[dict]:
    """`predict` with an open predictor: one dict per record (or {"record", "error"} for a bad one).

    Without `explain`, each record is read in chunks and classified through the streaming path (see
    `predict_long`): per-window quality, the tail, and "clinical" (burden, episodes, heart rate). With
    `explain`, the whole record is prepared at once (zero-phase band-pass) and windows get explanations."""
    long = {"hop_s": hop, "quality": quality, "min_episode_s": min_episode_s, "gap_s": gap_s}
    from ecgtool.evaluate import explain as xai

    source = getattr(predictor, "path", None)
    config = artifact_config(source, predictor.config or {}) if source else (predictor.config or {})
    spec = {**preprocessing_spec(config, lead, source=source), "window_policy": window_policy}
    classes = list(predictor.classes) or [f"class_{i}" for i in range(int((predictor.config or {}).get("num_classes", 0)))]
    fs_model, length = spec["sampling_rate"], int(spec["window_len"])
    method = ("auto" if explain is True else explain) if explain else None
    results, png_names = [], set()
    with ui.progress_bar("predict", len(records)) as bar:
        for rec in records:
            bar.update(Path(rec).name)
            if not method:  # long recordings: chunked, quality-gated, with burden and episodes (data/stream.py)
                try:
                    results.append(predict_long(predictor, rec, spec, classes, fs=fs, batch_size=batch_size, **long))
                except UnusableRecord as exc:
                    results.append(_skipped(rec, exc, len(records)))
                bar.advance()
                continue
            try:
                signal, rec_fs = read_input(rec, fs, spec["lead"], spec["channels"])
                x, starts, dropped = prepare_windows(signal, rec_fs, spec)
            except UnusableRecord as exc:
                results.append(_skipped(rec, exc, len(records)))
                bar.advance()
                continue
            logits = _logits(predictor, x, batch_size)
            if not classes:
                classes = [f"class_{i}" for i in range(logits.shape[1])]
            windows = bundle_runner.window_results(bundle_runner.softmax(logits), starts, classes, fs_model, length)
            if method:
                bar.update(f"{Path(rec).name}: explaining {len(x)} window(s)")
                target = logits.argmax(axis=1)
                relevance, used = xai.explain(predictor, x, target, method=method, fs=fs_model, batch_size=batch_size)
                for i, (w, r) in enumerate(zip(windows, relevance)):
                    bar.update(f"{Path(rec).name}: window {i + 1}/{len(windows)}")
                    w["explanation"] = {"method": used, "top_spans": xai.top_spans(r, fs_model, offset_s=w["start_s"])}
                    if out is not None:
                        name = _png_name(Path(rec), i, png_names)
                        title = f"{Path(rec).name} {w['start_s']:g}-{w['end_s']:g} s: {w['rhythm']} (p={w['probability']:.2f})"
                        xai.relevance_png(Path(out) / name, x[i], r, fs_model, w["start_s"], title, used)
                        w["explanation"]["png"] = name
            results.append(bundle_runner.record_result(str(rec), rec_fs, signal.shape[-1], windows, dropped, classes))
            bar.advance()
    return results


def _skipped(rec: str | os.PathLike, exc: Exception, n_records: int) -> dict:
    """A bad record's entry; its reason is warned in a batch (a lone record's is the command's one error line)."""
    if n_records > 1:
        ui.warn(f"{rec}: {exc}")
    return {"record": str(rec), "error": str(exc)}


def predict_long(predictor, rec: str | os.PathLike, spec: dict, classes: list[str], *, fs: float | None = None,
                 batch_size: int = 64, hop_s: float | None = None, quality: bool = True,
                 min_episode_s: float = episodes.MIN_EPISODE_S, gap_s: float = episodes.GAP_S) -> dict:
    """One record read in chunks (WFDB sampfrom/sampto, memory-mapped .npy, streamed CSV) and classified by
    the same StreamCore as `ecgtool.deploy.stream.Stream` and the bundle's run.py: memory bounded by a
    chunk, results equal to streaming the same samples by construction."""
    if is_wfdb_path(Path(rec)):  # the importers' checked header reader first: its reasons for a bad header
        from ecgtool.data.importers.wfdb_read import read_header

        read_header(Path(rec).with_suffix("") if Path(rec).suffix == ".hea" else Path(rec))
    rec_fs, chunks = stream.open_record(rec, fs, spec["lead"], int(spec["channels"]))
    if not classes:
        raise UnusableRecord("the model names no classes")
    return bundle_runner.long_record_result(str(rec), rec_fs, chunks, lambda x: _logits(predictor, x, batch_size),
                                            spec, classes, hop_s=hop_s, quality=quality,
                                            min_episode_s=min_episode_s, gap_s=gap_s)


def _png_name(rec: Path, i: int, used: set[str]) -> str:
    stem = rec.name[:-len(rec.suffix)] if rec.suffix in (".hea", ".npy", ".csv") else rec.name
    name, n = f"{stem}_w{i:03d}.png", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}_w{i:03d}.png"
    used.add(name)
    return name


def export_of(artifact: str | os.PathLike, export_format: str | None) -> Path:
    """`artifact`, or with `export_format` (a format of `ecgtool export`, e.g. litert-int8) that format's file
    in the model folder `artifact`; BadInput naming what is missing and the command that makes it."""
    from ecgtool.export.formats import FORMATS

    p = Path(artifact)
    if export_format is None:
        return p
    if export_format not in FORMATS:
        raise BadInput(f"--export-format {export_format}: unknown format (choose from {', '.join(FORMATS)})")
    if not p.is_dir():
        raise BadInput(f"{p}: --export-format needs a model folder (give the exported file itself instead)")
    target = p / FORMATS[export_format].artifact
    if not target.exists():
        raise BadInput(f"{p}: no {FORMATS[export_format].artifact} in it; make it with "
                       f"`ecgtool export {p} --format {export_format} --data DIR`")
    return target


def predict(artifact: str | os.PathLike, records: Sequence[str | os.PathLike], *, fs: float | None = None,
            lead: str | None = None, window_policy: str = "all", explain: bool | str = False,
            out: str | os.PathLike | None = None, threads: int | None = None, batch_size: int = 64,
            export_format: str | None = None, **long: Any) -> list[dict]:
    """Rhythm per window of each record with any artifact kind; see `predict_records` for the result.

    `explain`: False, True/'auto' (occlusion), 'gradcam' (PyTorch folders) or 'occlusion'; PNGs go to `out` when given. Bad records become {"record", "error"} entries.
    `export_format`: run the model folder's export in that format (e.g. litert-int8: its .tflite in TFLM).
    `long`: hop, quality, min_episode_s, gap_s (see `predict_records`).
    """
    from ecgtool.runtime import load

    predictor = load(export_of(artifact, export_format), **({"threads": threads} if threads else {}))
    return predict_records(predictor, records, fs=fs, lead=lead, window_policy=window_policy, explain=explain,
                           out=out, batch_size=batch_size, **long)


# --- commands -------------------------------------------------------------------------------------


FORMATS = ("table", "json", "csv", "wfdb")


@click.command("predict")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.argument("records", nargs=-1, required=True)
@click.option("--fs", type=float, help="Sampling rate (Hz) of .npy / .csv records.")
@click.option("--lead", help="Lead to read (default: the model's, else II); a row index for .npy.")
@click.option("--window-policy", type=click.Choice(["all", "first"]), help="Every full window (default) or the first.")
@click.option("--hop", type=float, help="Seconds between window starts (default: the window length, no overlap).")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="table (default on a terminal), json (default otherwise), csv (a row per window), "
                   "wfdb (rhythm annotations RECORD.ecg via wfdb.wrann, in --out or beside the record).")
@click.option("--no-quality", is_flag=True, help="Classify every window (skip the signal-quality gate).")
@click.option("--min-episode", "min_episode_s", type=float, help=f"Shortest episode reported, s (default {episodes.MIN_EPISODE_S:g}).")
@click.option("--gap", "gap_s", type=float, help=f"Longest gap bridged inside an episode, s (default {episodes.GAP_S:g}).")
@click.option("--reference", "reference", metavar="EXT",
              help="Score AF burden and episodes against the record's WFDB rhythm annotations RECORD.EXT (e.g. atr).")
@click.option("--explain", "explain", is_flag=True, help="Add the most relevant time spans per window (+ PNGs with --out).")
@click.option("--explain-method", type=click.Choice(["auto", "gradcam", "occlusion"]), help="auto (= occlusion: it localises beats better, benchmarks/RESULTS.md), gradcam (PyTorch folders), occlusion.")
@click.option("--out", type=click.Path(path_type=Path), help="Folder for predictions.json and explanation PNGs (default: JSON on stdout).")
@click.option("--threads", type=int, help="Inference threads.")
@click.option("--export-format", metavar="FORMAT", help="Run the model folder's export in FORMAT instead of its "
              "PyTorch weights (a format of `ecgtool export`, e.g. litert-int8: the .tflite in TFLite Micro).")
@ui.quiet_option
def predict_command(artifact: Path, records: tuple[str, ...], explain: bool, explain_method: str | None,
                    out: Path | None, fmt: str | None, no_quality: bool, export_format: str | None = None,
                    reference: str | None = None,
                    **options: Any) -> None:
    """Rhythm per window of each RECORD (WFDB .hea, .npy or .csv) with ARTIFACT: burden, episodes, heart rate."""
    import sys

    from ecgtool.runtime import load
    from ecgtool.runtime.base import show_note

    opts = {k: v for k, v in options.items() if v is not None}
    if "fs" in opts:
        try:
            opts["fs"] = preprocess.check_fs(opts["fs"], "--fs")
        except UnusableRecord as exc:
            raise BadInput(str(exc)) from None
    if out is not None and out.is_file():
        raise BadInput(f"{out}: --out must be a folder")
    if opts.get("hop") is not None and opts["hop"] <= 0:
        raise BadInput(f"--hop {opts['hop']:g}: must be a positive number of seconds")
    if "fs" in opts:
        try:
            preprocess.check_fs(opts["fs"], "--fs")
        except UnusableRecord as exc:
            raise BadInput(str(exc)) from None
    fmt = fmt or ("json" if out is not None or explain or not sys.stdout.isatty() else "table")
    artifact = export_of(artifact, export_format)
    predictor = load(artifact, **({"threads": opts.pop("threads")} if "threads" in opts else {}))
    show_note(predictor, artifact)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    results = predict_records(predictor, records, explain=(explain_method or True) if explain else False, out=out,
                              quality=not no_quality, **opts)
    doc = {"artifact": str(artifact), "kind": predictor.kind, "precision": predictor.precision,
           "classes": list(predictor.classes), "records": results}
    if all("error" in r for r in results):
        raise BadInput(f"{records[0] if len(records) == 1 else 'records'}: none could be read"
                       + (f" ({results[0]['error']})" if len(records) == 1 else ""))
    if reference:
        for r in results:
            if "error" not in r and "clinical" in r:
                r["reference"] = reference_check(r, reference)
    if fmt == "table" and not explain:
        for r in results:
            click.echo("\n".join(episodes.table_lines(r) + reference_lines(r)))
        return
    if fmt == "csv" and not explain:
        import csv as _csv

        w = _csv.DictWriter(sys.stdout, fieldnames=list(episodes.CSV_COLUMNS), lineterminator="\n")
        w.writeheader()
        for r in results:
            w.writerows(episodes.csv_rows(r))
        return
    if fmt == "wfdb" and not explain:
        for r in results:
            if "error" in r:
                continue
            rec = Path(r["record"])
            stem = rec.name[:-len(rec.suffix)] if rec.suffix in (".hea", ".npy", ".csv") else rec.name
            where = out if out is not None else rec.parent
            if not os.access(where, os.W_OK):
                raise BadInput(f"{where}: not writable for the annotation file; give --out DIR")
            click.echo(str(episodes.write_wfdb(stem, where, r["windows"], r["fs"])))
        return
    if out is None:
        click.echo(json.dumps(doc, indent=2, allow_nan=False))
        return
    path = write_json(out / "predictions.json", doc)
    source = artifact if artifact.exists() else None
    record_artifact(path, parent=source)
    for r in results:
        for w in r.get("windows", []):
            if "png" in (w.get("explanation") or {}):
                record_artifact(out / w["explanation"]["png"], parent=path)
    click.echo(str(path))


def reference_check(result: dict, extension: str) -> dict:
    """`result` (one record of predict) scored against RECORD.extension's rhythm annotations
    (evaluate/rhythm_truth.py), or {"error": why} when the record has none."""
    from ecgtool.evaluate import rhythm_truth

    rec = Path(result["record"])
    base = rec.with_suffix("") if rec.suffix == ".hea" else rec
    if not is_wfdb_path(rec) or not base.with_name(f"{base.name}.{extension}").exists():
        return {"error": f"no reference annotations {base.name}.{extension} beside the record"}
    try:
        ref, _ = rhythm_truth.read_reference(base, extension)
    except Exception as exc:  # a damaged annotation file: said, the prediction still stands
        return {"error": f"{base.name}.{extension} unreadable ({type(exc).__name__}: {exc})"}
    return {"annotations": extension, "rule": "see ecgtool.evaluate.rhythm_truth", **rhythm_truth.score_record(result, ref)}


def reference_lines(result: dict) -> list[str]:
    ref = result.get("reference")
    if not ref:
        return []
    if "error" in ref:
        return [f"  reference: {ref['error']}"]
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    err = "n/a" if ref["burden_error_pp"] is None else f"{ref['burden_error_pp']:+.1f}"
    return [f"  vs reference ({ref['annotations']}): AF burden {pct(ref['burden_reference'])} "
            f"(predicted {pct(ref['burden_predicted'])}, error {err} pp); AF episodes "
            f"detected {ref['detected']}/{ref['reference_episodes']} (sensitivity {pct(ref['sensitivity'])}), "
            f"predicted {ref['true_predicted']}/{ref['predicted_episodes']} true (PPV {pct(ref['ppv'])}); "
            f"AF time sensitivity {pct(ref['duration_sensitivity'])}, PPV {pct(ref['duration_ppv'])}"]


def predict_array(model: Any, signal: Any, fs: float, lead: str | int | None = None, *, batch_size: int = 64,
                  hop: float | None = None, quality: bool = True, min_episode_s: float = episodes.MIN_EPISODE_S,
                  gap_s: float = episodes.GAP_S) -> dict:
    """`predict` on an in-memory array: `model` a path (any artifact) or an open predictor, `signal` [T] or
    [C, T] in mV at `fs` Hz (`lead`: the row of a multi-row array, as for a .npy record). Returns what
    `ecgtool predict` gives for one record (the same StreamCore path: per-window quality, clinical block,
    tail); BadInput when the array cannot be used (too short, not finite, flat...)."""
    from ecgtool.runtime import load

    predictor = load(model) if isinstance(model, (str, os.PathLike)) else model
    spec = preprocessing_spec(predictor.config or {})
    arr = np.asarray(signal)
    try:
        fs = preprocess.check_fs(fs)
    except UnusableRecord as exc:
        raise BadInput(f"signal: {exc}") from None
    if arr.ndim not in (1, 2) or arr.dtype.kind not in "iuf":
        raise BadInput(f"signal: expected a numeric array [T] or [C, T], got {arr.dtype} {list(arr.shape)}")
    classes = list(predictor.classes)
    if not classes:
        raise BadInput("signal: the model names no classes")
    try:
        x = preprocess.pick_rows(np.atleast_2d(arr.astype(np.float64)), None if lead is None else str(lead),
                                 spec["channels"])
        return bundle_runner.long_record_result("array", float(fs), iter([x]), lambda w: _logits(predictor, w, batch_size),
                                                spec, classes, hop_s=hop, quality=quality,
                                                min_episode_s=min_episode_s, gap_s=gap_s)
    except UnusableRecord as exc:
        raise BadInput(f"signal: {exc}") from None
