"""Use a trained artifact on new records (`predict`).

`predict` reads WFDB records (.hea; Challenge .hea + .mat too), .npy arrays and CSV columns,
preprocesses them exactly as the training set was (the artifact's config and its dataset's meta.json
say the rate, window length, band-pass and lead), runs any artifact kind through `runtime.load` and
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

from ecgtool.deploy import bundle_runner
from ecgtool.core import ui
from ecgtool.core.files import read_json, write_json
from ecgtool.core.manifest import record_artifact
from ecgtool.data.preprocess import BAND_HZ, FLAT_MV, TARGET_FS, WINDOW_LEN, UnusableRecord, bandpass, check_finite, minmax, resample, window_starts
from ecgtool.core.errors import BadInput



# --- preprocessing as in training -----------------------------------------------------------------


def _dataset_meta(path: str | None) -> dict:
    if not path or not (Path(path) / "meta.json").is_file():
        return {}
    try:
        return read_json(Path(path) / "meta.json")
    except (OSError, ValueError):
        return {}


def preprocessing_spec(config: dict, lead: str | None = None) -> dict:
    """How records must be prepared for this model: rate (Hz), window (s, samples), band-pass, lead.

    Read from config.json's training recipe (sampling_rate, input_length) and the training dataset's
    meta.json (preprocessing, lead) when it is still there; else the paper's 200 Hz, 10 s, lead II.
    """
    extra = {**config, **(config.get("extra") or {})}  # the baseline keeps these at the top level
    meta = _dataset_meta(extra.get("dataset"))
    fs = float(extra.get("sampling_rate") or meta.get("sampling_rate") or TARGET_FS)
    length = int(extra.get("input_length") or round(float(meta.get("seconds") or 0) * fs) or WINDOW_LEN)
    pre = meta.get("preprocessing")
    band = isinstance(pre, dict) and bool(pre.get("bandpass"))
    meta_lead = meta.get("lead")
    default_lead = meta_lead if isinstance(meta_lead, str) and meta_lead and " " not in meta_lead else "II"
    return {
        "sampling_rate": int(fs) if fs.is_integer() else fs,
        "window_s": round(length / fs, 6),
        "window_len": length,
        "channels": int(config.get("in_channels") or 1),
        "lead": lead or default_lead,
        "resample": "scipy.signal.resample_poly, padtype line",
        "bandpass_hz": list(BAND_HZ) if band else None,
        "bandpass_order": 4,
        "normalisation": "min-max to [0, 1] per window and lead",
        "flat_mv": FLAT_MV,
        "window_policy": "all",
        "from": "config.json + dataset meta.json" if meta else "config.json (dataset meta.json not found)",
    }


def read_input(path: str | os.PathLike, fs: float | None, lead: str, channels: int) -> tuple[np.ndarray, float]:
    """(signal [C, T] in mV, Hz) of a WFDB record, .npy or .csv; UnusableRecord with the reason if bad."""
    from ecgtool.data.importers.wfdb_read import read_header, read_record

    p = Path(path)
    base = p.with_suffix("") if p.suffix == ".hea" else p
    if p.suffix == ".hea" or (p.suffix not in (".npy", ".csv") and base.with_name(base.name + ".hea").exists()):
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
    try:
        return bundle_runner.read_record(p, fs, lead, channels)
    except bundle_runner.RecordError as exc:
        raise UnusableRecord(str(exc)) from None


def prepare_windows(signal: np.ndarray, fs: float, spec: dict) -> tuple[np.ndarray, list[int], list[dict]]:
    """ecgtool.data.preprocess on one record: (windows [n, C, L] float32, starts at the model rate, dropped)."""
    target, length = spec["sampling_rate"], int(spec["window_len"])
    x = np.atleast_2d(np.asarray(signal, dtype=np.float64))
    check_finite(x)
    if x.shape[-1] / fs < length / target - 1e-9:
        raise UnusableRecord(f"too short: {x.shape[-1] / fs:.2f} s < {length / target:g} s window")
    x = resample(x, fs, target)
    if spec.get("bandpass_hz"):
        x = bandpass(x, target, tuple(spec["bandpass_hz"]), int(spec.get("bandpass_order", 4)))
    kept, starts, dropped = [], [], []
    for s in window_starts(x.shape[-1], spec.get("window_policy", "all"), length):
        try:
            kept.append(minmax(x[:, s:s + length]))
            starts.append(s)
        except UnusableRecord as exc:
            dropped.append({"start_s": s / target, "reason": str(exc)})
    if not kept:
        raise UnusableRecord(dropped[0]["reason"] if dropped else "too short after resampling")
    return np.stack(kept), starts, dropped


# --- predict --------------------------------------------------------------------------------------


def _logits(predictor, x: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([predictor.predict(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def predict_records(predictor, records: Sequence[str | os.PathLike], *, fs: float | None = None, lead: str | None = None,
                    window_policy: str = "all", explain: bool | str = False, out: str | os.PathLike | None = None,
                    batch_size: int = 64) -> list[dict]:
    """`predict` with an open predictor: one dict per record (or {"record", "error"} for a bad one)."""
    from ecgtool.evaluate import explain as xai

    spec = {**preprocessing_spec(predictor.config or {}, lead), "window_policy": window_policy}
    classes = list(predictor.classes) or [f"class_{i}" for i in range(int((predictor.config or {}).get("num_classes", 0)))]
    fs_model, length = spec["sampling_rate"], int(spec["window_len"])
    method = ("auto" if explain is True else explain) if explain else None
    results, png_names = [], set()
    with ui.progress_bar("predict", len(records)) as bar:
        for rec in records:
            bar.update(Path(rec).name)
            try:
                signal, rec_fs = read_input(rec, fs, spec["lead"], spec["channels"])
                x, starts, dropped = prepare_windows(signal, rec_fs, spec)
            except UnusableRecord as exc:
                ui.warn(f"{rec}: {exc}")
                results.append({"record": str(rec), "error": str(exc)})
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


def _png_name(rec: Path, i: int, used: set[str]) -> str:
    stem = rec.name[:-len(rec.suffix)] if rec.suffix in (".hea", ".npy", ".csv") else rec.name
    name, n = f"{stem}_w{i:03d}.png", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}_w{i:03d}.png"
    used.add(name)
    return name


def predict(artifact: str | os.PathLike, records: Sequence[str | os.PathLike], *, fs: float | None = None,
            lead: str | None = None, window_policy: str = "all", explain: bool | str = False,
            out: str | os.PathLike | None = None, threads: int | None = None, batch_size: int = 64) -> list[dict]:
    """Rhythm per window of each record with any artifact kind; see `predict_records` for the result.

    `explain`: False, True/'auto' (Grad-CAM for PyTorch folders, occlusion otherwise), 'gradcam' or
    'occlusion'; PNGs go to `out` when given. Bad records become {"record", "error"} entries.
    """
    from ecgtool.runtime import load

    predictor = load(artifact, **({"threads": threads} if threads else {}))
    return predict_records(predictor, records, fs=fs, lead=lead, window_policy=window_policy, explain=explain,
                           out=out, batch_size=batch_size)


# --- commands -------------------------------------------------------------------------------------


@click.command("predict")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.argument("records", nargs=-1, required=True)
@click.option("--fs", type=float, help="Sampling rate (Hz) of .npy / .csv records.")
@click.option("--lead", help="Lead to read (default: the training set's, else II); a row index for .npy.")
@click.option("--window-policy", type=click.Choice(["all", "first"]), help="Every full window (default) or the first.")
@click.option("--explain", "explain", is_flag=True, help="Add the most relevant time spans per window (+ PNGs with --out).")
@click.option("--explain-method", type=click.Choice(["auto", "gradcam", "occlusion"]), help="auto: Grad-CAM for PyTorch folders, else occlusion.")
@click.option("--out", type=click.Path(path_type=Path), help="Folder for predictions.json and explanation PNGs (default: JSON on stdout).")
@click.option("--threads", type=int, help="Inference threads.")
@ui.quiet_option
def predict_command(artifact: Path, records: tuple[str, ...], explain: bool, explain_method: str | None,
                    out: Path | None, **options: Any) -> None:
    """Rhythm per window of each RECORD (WFDB .hea, .npy or .csv) with ARTIFACT, as JSON."""
    from ecgtool.runtime import load

    opts = {k: v for k, v in options.items() if v is not None}
    if out is not None and out.is_file():
        raise BadInput(f"{out}: --out must be a folder")
    predictor = load(artifact, **({"threads": opts.pop("threads")} if "threads" in opts else {}))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    results = predict_records(predictor, records, explain=(explain_method or True) if explain else False, out=out, **opts)
    doc = {"artifact": str(artifact), "kind": predictor.kind, "precision": predictor.precision,
           "classes": list(predictor.classes), "records": results}
    if all("error" in r for r in results):
        raise BadInput(f"{records[0] if len(records) == 1 else 'records'}: none could be read"
                       + (f" ({results[0]['error']})" if len(records) == 1 else ""))
    if out is None:
        click.echo(json.dumps(doc, indent=2))
        return
    path = write_json(out / "predictions.json", doc)
    source = artifact if artifact.exists() else None
    record_artifact(path, parent=source)
    for r in results:
        for w in r.get("windows", []):
            if "png" in w.get("explanation", {}):
                record_artifact(out / w["explanation"]["png"], parent=path)
    click.echo(str(path))


def predict_array(model: Any, signal: Any, fs: float, lead: str | int | None = None, *, window_policy: str = "all",
                  batch_size: int = 64) -> dict:
    """`predict` on an in-memory array: `model` a path (any artifact) or an open predictor, `signal` [T] or
    [C, T] in mV at `fs` Hz (`lead`: the row of a multi-row array, as for a .npy record). Returns what
    `ecgtool predict` gives for one record: {"record": "array", ..., "windows": [...], ...}; BadInput when
    the array cannot be used (too short, not finite, flat...)."""
    from ecgtool.runtime import load

    predictor = load(model) if isinstance(model, (str, os.PathLike)) else model
    spec = {**preprocessing_spec(predictor.config or {}), "window_policy": window_policy}
    arr = np.asarray(signal)
    if arr.ndim not in (1, 2) or not np.issubdtype(arr.dtype, np.number) or not fs or float(fs) <= 0:
        raise BadInput(f"signal: expected a numeric array [T] or [C, T] and fs > 0, got {arr.dtype} {list(arr.shape)}, "
                       f"fs {fs}")
    try:
        x = bundle_runner._pick_row(np.atleast_2d(arr.astype(np.float64)), None if lead is None else str(lead),
                                    spec["channels"], Path("array"))
        windows, starts, dropped = prepare_windows(x, float(fs), spec)
    except (UnusableRecord, bundle_runner.RecordError) as exc:
        raise BadInput(f"signal: {exc}") from None
    logits = _logits(predictor, windows, batch_size)
    classes = list(predictor.classes) or [f"class_{i}" for i in range(logits.shape[1])]
    results = bundle_runner.window_results(bundle_runner.softmax(logits), starts, classes, spec["sampling_rate"],
                                           int(spec["window_len"]))
    return bundle_runner.record_result("array", float(fs), x.shape[-1], results, dropped, classes)
