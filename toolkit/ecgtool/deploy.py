"""Use a trained artifact on new records (`predict`) and ship it without torch (`package`).

`predict` reads WFDB records (.hea; Challenge .hea + .mat too), .npy arrays and CSV columns,
preprocesses them exactly as the training set was (the artifact's config and its dataset's meta.json
say the rate, window length, band-pass and lead), runs any artifact kind through `runtime.load` and
returns per-window rhythms with class probabilities and a record summary; with `explain` it adds the
most relevant time spans of each window (Grad-CAM or occlusion, see explain.py) and a PNG per window.

`package` makes a folder that runs on a Raspberry Pi or a Jetson with numpy, scipy and onnxruntime:
the ONNX model, model.json (classes, preprocessing, provenance), run.py (bundle_runner.py),
requirements.txt, README.md and SHA256SUMS; optionally a .tar.gz of it.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any, Sequence

import click
import numpy as np

from . import bundle_runner, ui
from .artifacts import atomic_dir, atomic_path, read_json, record_artifact, sha256, write_json, write_text
from .data.preprocess import (BAND_HZ, FLAT_MV, TARGET_FS, WINDOW_LEN, UnusableRecord, bandpass, check_finite, minmax,
                              resample, window_starts)
from .errors import BadInput

PRECISIONS = ("auto", "int8", "fp16", "fp32")
BUNDLE_MODEL = "model.onnx"
REQUIREMENTS = "numpy>=1.22\nscipy>=1.8\nonnxruntime>=1.16\n# optional, for WFDB .hea records:\n# wfdb>=4.1\n"


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
    from .data.importers.wfdb_read import read_header, read_record

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
    from . import explain as xai

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
    from .runtime import load

    predictor = load(artifact, **({"threads": threads} if threads else {}))
    return predict_records(predictor, records, fs=fs, lead=lead, window_policy=window_policy, explain=explain,
                           out=out, batch_size=batch_size)


# --- package --------------------------------------------------------------------------------------


def _fresh(target: Path, *sources: Path) -> bool:
    return target.exists() and all(target.stat().st_mtime >= s.stat().st_mtime for s in sources if s.exists())


def _onnx_of(artifact: Path, precision: str, data: str | os.PathLike | None) -> Path:
    """The ONNX file to ship: the given .onnx, or the model folder's export at `precision` (made if missing)."""
    from .export import FORMATS, export, model_folder_of
    from .runtime import artifact_kind, find_config
    from .runtime_onnx import onnx_precision

    kind = artifact_kind(artifact)
    if kind == "onnxruntime":
        import onnx

        got = onnx_precision(onnx.load(str(artifact), load_external_data=False))
        if precision != "auto" and got != precision:
            raise BadInput(f"{artifact}: an {got} ONNX model, not {precision} (omit --precision to ship it as it is)")
        return artifact
    if kind != "pytorch":
        what = f"a {kind} artifact" if kind else "not an artifact ecgtool knows"
        raise BadInput(f"{artifact}: {what}; package takes a PyTorch model folder or an .onnx file")
    folder = model_folder_of(artifact)
    sources = (folder / "model.safetensors", folder / "config.json")
    int8 = folder / FORMATS["onnx-int8"].artifact
    if precision == "auto":
        precision = "int8" if _fresh(int8, *sources) else "fp32"
    fmt = {"fp32": "onnx", "fp16": "onnx-fp16", "int8": "onnx-int8"}[precision]
    target = folder / FORMATS[fmt].artifact
    if _fresh(target, *sources):
        return target
    if precision == "int8" and data is None:
        data = (find_config(folder).get("extra") or {}).get("dataset")
        if not data or not Path(data).is_dir():
            raise BadInput(f"{folder}: no fresh {target.name}; INT8 needs --data DIR for calibration")
    export(folder, fmt, **({"data": data} if data is not None else {}))
    return target


def _bundle_readme(spec: dict, model_json: dict) -> str:
    pre = spec
    band = f"{pre['bandpass_hz'][0]}-{pre['bandpass_hz'][1]} Hz Butterworth band-pass, " if pre["bandpass_hz"] else ""
    return f"""# ECG rhythm classifier bundle

Made by ecgtool {model_json['ecgtool_version']} from `{model_json['source']['path']}` ({model_json['source']['kind']},
SHA-256 {model_json['source']['sha256'][:16]}...). Model: `{BUNDLE_MODEL}`, {model_json['precision']} ONNX,
input `{model_json['input']['name']}` {model_json['input']['shape']}. Classes: {', '.join(model_json['classes'])}.

## Run it (Raspberry Pi, Jetson, any computer with Python 3.9+)

    pip install -r requirements.txt        # numpy, scipy, onnxruntime (add wfdb for .hea records)
    python run.py RECORD.hea               # a WFDB record (lead {pre['lead']})
    python run.py RECORD.npy --fs 360      # a [T] or [C, T] array in mV, sampling rate in Hz
    python run.py RECORD.csv --fs 500      # one column, or a header naming lead {pre['lead']}

Output: JSON on stdout; per record, per {pre['window_s']:g}-s window: start_s, end_s, rhythm, probability and
every class probability, then a summary (majority rhythm, per-class mean and max probability).
Exit code 2 when no record could be read (each bad record: one line on stderr).
On a Jetson, `pip install onnxruntime-gpu` (NVIDIA's Jetson wheel) runs the same file.

## What run.py does to a record (as in training)
Resample to {pre['sampling_rate']} Hz (scipy resample_poly), {band}non-overlapping {pre['window_s']:g}-s windows
({pre['window_len']} samples), min-max to [0, 1] per window; windows flatter than {pre['flat_mv']} mV are dropped.

Check the files: `sha256sum -c SHA256SUMS`.
"""


def package(artifact: str | os.PathLike, out: str | os.PathLike, *, precision: str = "auto",
            data: str | os.PathLike | None = None, lead: str | None = None, tar: bool = False,
            overwrite: bool = False) -> Path:
    """Write a deploy bundle folder `out` (see module doc); returns it. `precision`: auto (INT8 if the
    model folder has a fresh model.int8.onnx, else FP32), int8, fp16 or fp32."""
    import onnx

    from . import __version__
    from .runtime import artifact_kind, find_config
    from .runtime_onnx import onnx_precision

    src, out = Path(artifact), Path(out)
    if not src.exists():
        raise BadInput(f"{src}: no such file or folder")
    if precision not in PRECISIONS:
        raise BadInput(f"{precision}: unknown precision (choose from {', '.join(PRECISIONS)})")
    if out.exists() and (out.is_file() or (any(out.iterdir()) and not overwrite)):
        raise BadInput(f"{out}: exists and is not an empty folder (use --overwrite to replace a bundle)")
    onnx_path = _onnx_of(src, precision, data)
    config = find_config(onnx_path)
    classes = list(config.get("classes") or [])
    if not classes:
        raise BadInput(f"{onnx_path}: its config.json names no classes; a bundle needs them")
    spec = preprocessing_spec(config, lead)
    model = onnx.load(str(onnx_path), load_external_data=False)
    inp = model.graph.input[0]
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    folder_metrics = Path(onnx_path).parent / "metrics.json"
    metrics = {}
    if folder_metrics.is_file():
        m = read_json(folder_metrics)
        metrics = {k: m[k] for k in ("macro_f1", "accuracy", "weighted_f1", "n", "split", "data") if k in m}
        metrics["note"] = "the source PyTorch model on its test split (metrics.json)"
    check = _manifest_entry(Path(onnx_path)).get("check")
    if check:
        metrics["export_check"] = check  # this ONNX file against PyTorch, from the run's manifest.json
    model_json = {
        "model_file": BUNDLE_MODEL, "precision": onnx_precision(model), "classes": classes,
        "input": {"name": inp.name, "shape": dims, "dtype": "float32"},
        "output": {"name": model.graph.output[0].name, "meaning": "logits; softmax gives class probabilities"},
        "preprocessing": spec,
        "source": {"path": str(Path(onnx_path).resolve()), "sha256": sha256(onnx_path), "kind": artifact_kind(src),
                   "given": str(src)},
        "model_config": {k: config.get(k) for k in ("arch", "depth", "width", "in_channels", "num_classes")},
        "metrics": metrics, "ecgtool_version": __version__,
    }
    with atomic_dir(out) as tmp:
        shutil.copyfile(onnx_path, tmp / BUNDLE_MODEL)
        write_json(tmp / "model.json", model_json)
        shutil.copyfile(Path(bundle_runner.__file__), tmp / "run.py")
        write_text(tmp / "requirements.txt", REQUIREMENTS)
        write_text(tmp / "README.md", _bundle_readme(spec, model_json))
        names = sorted(p.name for p in tmp.iterdir())
        write_text(tmp / "SHA256SUMS", "".join(f"{sha256(tmp / n)}  {n}\n" for n in names))
        for f in tmp.iterdir():  # temp files are private; a bundle is meant to be copied and read
            os.chmod(f, 0o755 if f.name == "run.py" else 0o644)
    _record_bundle(out, onnx_path)
    if tar:
        archive = out.with_name(out.name + ".tar.gz")
        with atomic_path(archive) as t, tarfile.open(t, "w:gz") as tf:
            tf.add(out, arcname=out.name)
        os.chmod(archive, 0o644)
        record_artifact(archive, parent=out / BUNDLE_MODEL, run_dir=_run_of(out, onnx_path))
    ui.info(f"package: {out} ({model_json['precision']}, {sum(f.stat().st_size for f in out.iterdir()) / 1e6:.2f} MB)")
    return out


def _manifest_entry(path: Path) -> dict:
    """`path`'s entry in its run's manifest.json ({} if none)."""
    from .artifacts import MANIFEST, find_run_root

    run = find_run_root(path)
    if not (run / MANIFEST).is_file():
        return {}
    return read_json(run / MANIFEST).get("artifacts", {}).get(os.path.relpath(path.resolve(), run), {})


def _run_of(out: Path, source: Path) -> Path:
    """The run whose manifest.json records the bundle: the bundle's own run if it sits in one, else the source's."""
    from .artifacts import MANIFEST, find_run_root

    own = find_run_root(out)
    return own if (own / MANIFEST).exists() else find_run_root(source)


def _record_bundle(out: Path, source: Path) -> None:
    run = _run_of(out, source)
    for f in sorted(out.iterdir()):
        record_artifact(f, parent=source if f.name == BUNDLE_MODEL else out / BUNDLE_MODEL, run_dir=run)


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
    from .runtime import load

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


@click.command("package")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Bundle folder to create.")
@click.option("--precision", type=click.Choice(PRECISIONS), help="auto (default: INT8 if exported, else FP32), int8, fp16, fp32.")
@click.option("--data", type=click.Path(path_type=Path), help="Prepared dataset, to calibrate INT8 when it is not exported yet.")
@click.option("--lead", help="Lead run.py reads by default (default: the training set's, else II).")
@click.option("--tar", is_flag=True, help="Also write OUT.tar.gz beside the folder.")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle folder.")
@ui.quiet_option
def package_command(artifact: Path, out: Path, **options: Any) -> None:
    """Deploy bundle of ARTIFACT (model folder or .onnx) that runs with numpy, scipy and onnxruntime only."""
    opts = {k: v for k, v in options.items() if v is not None and v is not False}
    path = package(artifact, out, **opts)
    click.echo(str(path))
