"""`package`: a deploy bundle that runs on a Raspberry Pi or a Jetson with numpy, scipy and onnxruntime.

The bundle holds the ONNX model, model.json (classes, the preprocessing spec the model froze at
training time, provenance), run.py (deploy/bundle_runner.py), ecg_preprocess.py (a copy of
data/preprocess.py, the one preprocessing implementation), requirements.txt, README.md and
SHA256SUMS; optionally a .tar.gz of it. The spec comes from the artifact alone (config.json, or a
lone .onnx's metadata), never from the training dataset.

A .tflite (litert-int8 / litert-fp32, for microcontrollers) is bundled as model.tflite with ecg_tflite.py (a
copy of runtime/tflite_io.py): run.py then runs it on ai-edge-litert's Interpreter (the bundle's requirement:
the LiteRT Python runtime, for computers and Linux boards) or, where tflite-micro is installed (Linux x86_64),
on the TFLM interpreter the firmware runs, with the arena measured at export. The firmware itself takes the
C export beside the .tflite (model.int8-c/), not a bundle.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import click
import numpy as np

from ecgtool.core import ui
from ecgtool.core.errors import BadInput
from ecgtool.core.files import atomic_dir, atomic_path, read_json, sha256, write_json, write_text
from ecgtool.core.manifest import find_run_root, is_verifying, manifest_entry, record_artifact, verify_artifact
from ecgtool.baseline import features as rr_features
from ecgtool.baseline import onnx as baseline_onnx
from ecgtool.core.names import (BUNDLE_EPISODES, BUNDLE_FEATURES, BUNDLE_MODEL, BUNDLE_PREPROCESS, BUNDLE_RUNNER,
                                BUNDLE_QUALITY, BUNDLE_SPEC, BUNDLE_STREAM, BUNDLE_TFLITE, BUNDLE_TFLITE_IO, CONFIG, MANIFEST, METRICS,
                                BASELINE_FEATURES as WEIGHTS_OF_BASELINE, ONNX_META_INT8_TARGET, WEIGHTS,
                                litert_sidecar)
from ecgtool.data import preprocess, quality, stream
from ecgtool.deploy import bundle_runner, episodes
from ecgtool.deploy.predict import artifact_config, preprocessing_spec
from ecgtool.runtime import tflite_io

PRECISIONS = ("auto", "int8", "fp16", "fp32")
REQUIREMENTS = "numpy>=1.22\nscipy>=1.8\nonnxruntime>=1.16\n# optional, for WFDB .hea records:\n# wfdb>=4.1\n"
#: an RR-head model's bundle computes its RR features with wfdb's XQRS R-peak detector (ecg_features.py)
RR_REQUIREMENTS = "numpy>=1.22\nscipy>=1.8\nonnxruntime>=1.16\n# R peaks for the RR head's features (and WFDB .hea records):\nwfdb>=4.1\n"
#: a .tflite bundle: the LiteRT runtime (ai-edge-litert 2.3.0 is what ecgtool's tests run it with)
REQUIREMENTS_TFLITE = ("numpy>=1.22\nscipy>=1.8\nai-edge-litert>=2.3\n"
                       "# optional: the TFLM interpreter the firmware runs (Linux x86_64 wheels only); run.py uses it "
                       "when installed:\n# tflite-micro\n# optional, for WFDB .hea records:\n# wfdb>=4.1\n")


# --- package --------------------------------------------------------------------------------------


def _onnx_of(artifact: Path, precision: str, data: str | os.PathLike | None) -> Path:
    """The ONNX file to ship: the given .onnx, or the model folder's export at `precision` (made if missing)."""
    from ecgtool.core.artifacts import find_config
    from ecgtool.export import export
    from ecgtool.export.formats import FORMATS
    from ecgtool.export.onnx import fresh
    from ecgtool.runtime import artifact_kind
    from ecgtool.runtime.onnxruntime import onnx_precision
    from ecgtool.runtime.registry import require_model_folder

    kind = artifact_kind(artifact)
    if kind == "tflm":
        return artifact
    if kind == "onnxruntime":
        import onnx

        model = onnx.load(str(artifact), load_external_data=False)
        got = onnx_precision(model)
        if precision != "auto" and got != precision:
            raise BadInput(f"{artifact}: an {got} ONNX model, not {precision} (omit --precision to ship it as it is)")
        if {p.key: p.value for p in model.metadata_props}.get(ONNX_META_INT8_TARGET) == "tensorrt":
            raise BadInput(f"{artifact}: quantised for TensorRT (its trtexec-int8.sh builds the engine); the bundle "
                           "runs ONNX Runtime, whose INT8 kernels do not compute that form as TensorRT does (on x86 "
                           "without VNNI they saturate): package the model folder, or a file made by `ecgtool quantize "
                           "MODEL --target arm64|x86-avx2|x86-vnni` for the device")
        return artifact
    if kind != "pytorch":
        what = f"a {kind} artifact" if kind else "not an artifact ecgtool knows"
        raise BadInput(f"{artifact}: {what}; package takes a PyTorch model folder, an .onnx or a .tflite file")
    folder = require_model_folder(artifact)
    sources = (folder / WEIGHTS, folder / CONFIG)
    int8 = folder / FORMATS["onnx-int8"].artifact
    if precision == "auto":
        precision = "int8" if fresh(int8, *sources) else "fp32"
    fmt = {"fp32": "onnx", "fp16": "onnx-fp16", "int8": "onnx-int8"}[precision]
    target = folder / FORMATS[fmt].artifact
    if fresh(target, *sources):
        return target
    if precision == "int8" and data is None:
        data = (find_config(folder).get("extra") or {}).get("dataset")
        if not data or not Path(data).is_dir():
            raise BadInput(f"{folder}: no fresh {target.name}; INT8 needs --data DIR for calibration")
    export(folder, fmt, **({"data": data} if data is not None else {}))
    return target


def external_data_files(model, folder: Path) -> list[Path]:
    """The external-data files an ONNX model's initializers name (beside it), each checked: a plain file
    name (no path), a regular file; BadInput naming the file and the reason otherwise."""
    from onnx.external_data_helper import uses_external_data

    names: list[str] = []
    for t in model.graph.initializer:
        if uses_external_data(t):
            loc = {e.key: e.value for e in t.external_data}.get("location", "")
            if loc not in names:
                names.append(loc)
    files = []
    for loc in names:
        if not loc or "/" in loc or "\\" in loc or loc in (".", "..") or len(loc) > 255:
            raise BadInput(f"{folder}: external-data weights at {loc[:80]!r}: not a file name beside the model; "
                           "refusing to package it")
        if loc in (BUNDLE_MODEL, BUNDLE_SPEC, BUNDLE_RUNNER, BUNDLE_PREPROCESS, BUNDLE_STREAM, BUNDLE_QUALITY,
                   BUNDLE_EPISODES, BUNDLE_FEATURES, BUNDLE_TFLITE, BUNDLE_TFLITE_IO, "SHA256SUMS", "README.md",
                   "requirements.txt"):
            raise BadInput(f"{folder / loc}: external-data file name clashes with a bundle file; refusing to package it")
        path = folder / loc
        if path.is_symlink() or not path.is_file():
            raise BadInput(f"{path}: external-data weights missing or not a regular file; refusing to package it")
        files.append(path)
    return files


def _bundle_readme(spec: dict, model_json: dict) -> str:
    pre = spec
    band = f"{pre['bandpass_hz'][0]}-{pre['bandpass_hz'][1]} Hz Butterworth band-pass, " if pre["bandpass_hz"] else ""
    tflite = model_json["model_file"] == BUNDLE_TFLITE
    if tflite:
        i = model_json["input"]
        model_line = (f"Model: `{BUNDLE_TFLITE}`, {model_json['precision']} LiteRT flatbuffer for microcontrollers "
                      f"({model_json['format']}), input {i['shape']} {i['dtype']} (scale {i['scale']:.6g}, zero point "
                      f"{i['zero_point']}), tensor arena {model_json['arena_bytes']} bytes")
        where = ("any computer or Linux board with Python 3.9+; on the microcontroller itself use the C export "
                 "beside the .tflite")
        install = ("numpy, scipy, ai-edge-litert (LiteRT's interpreter); with tflite-micro installed (Linux x86_64) "
                   "run.py uses the TFLM interpreter the firmware runs (--interpreter tflm|litert|auto)")
    else:
        model_line = (f"Model: `{BUNDLE_MODEL}`, {model_json['precision']} ONNX,\ninput `{model_json['input']['name']}` "
                      f"{model_json['input']['shape']}")
        where = "Raspberry Pi, Jetson, any computer with Python 3.9+"
        install = ("numpy, scipy, onnxruntime, wfdb (R peaks of the RR features)"
                   if model_json.get("rr_input") or model_json.get("rr_classifier")
                   else "numpy, scipy, onnxruntime (add wfdb for .hea records)")
    jetson = "" if tflite else "On a Jetson, `pip install onnxruntime-gpu` (NVIDIA's Jetson wheel) runs the same file."
    return f"""# ECG rhythm classifier bundle

Made by ecgtool {model_json['ecgtool_version']} from `{model_json['source']['path']}` ({model_json['source']['kind']},
SHA-256 {model_json['source']['sha256'][:16]}...). {model_line}. Classes: {', '.join(model_json['classes'])}.

## Run it ({where})

    pip install -r requirements.txt        # {install}
    python run.py RECORD.hea               # a WFDB record (lead {pre['lead']})
    python run.py RECORD.npy --fs 360      # a [T] or [C, T] array in mV, sampling rate in Hz
    python run.py RECORD.csv --fs 500      # one column, or a header naming lead {pre['lead']}

Output: JSON on stdout; per record, per {pre['window_s']:g}-s window: start_s, end_s, rhythm, probability and
every class probability, then a summary (majority rhythm, per-class mean and max probability).
Each record also gets "clinical": time in each rhythm, AF burden, episodes, heart rate, classifiable
fraction and the tail shorter than a window; windows failing the signal-quality gate are
"unclassifiable" with the reason. Records are read in chunks (bounded memory); `--hop S` overlaps windows.
Live samples: `some-reader | python run.py --stdin --fs 360 [--raw]` (text lines, or float32 with --raw)
prints one JSON line per window as it completes (causal band-pass if the model has one: see ecg_stream.py).
Exit code 2 when no record could be read (each bad record: one line on stderr).
{jetson}

## What run.py does to a record (as in training)
Resample to {pre['sampling_rate']} Hz (scipy resample_poly), {band}non-overlapping {pre['window_s']:g}-s windows
({pre['window_len']} samples), min-max to [0, 1] per window; windows flatter than {pre['flat_mv']} mV are dropped.
{_rr_readme(model_json)}
Check the files: `sha256sum -c SHA256SUMS`.
"""


def _rr_readme(model_json: dict) -> str:
    rr = model_json.get("rr_input")
    if model_json.get("rr_classifier"):
        return (f"The RR baseline: `{BUNDLE_MODEL}` is its gradient-boosted tree classifier (scikit-learn's, as ONNX) "
                f"over {len(model_json['rr_classifier']['features'])} window features computed by {BUNDLE_FEATURES} "
                "(wfdb XQRS R peaks, RR irregularity, QRS, P wave; numpy and scipy), as in training; its output is "
                "class probabilities.\n")
    if not rr:
        return ""
    return (f"RR-head model: the second input `{rr['name']}` ({rr['dim']} values) is computed per window by "
            f"{BUNDLE_FEATURES} (the RR baseline's features: wfdb XQRS R peaks, RR irregularity, QRS, P wave; "
            "numpy and scipy), as in training.\n")


def package(artifact: str | os.PathLike, out: str | os.PathLike, *, precision: str = "auto",
            data: str | os.PathLike | None = None, lead: str | None = None, tar: bool = False,
            overwrite: bool = False) -> Path:
    """Write a deploy bundle folder `out` (see module doc); returns it. `artifact`: a model folder, an .onnx or
    a .tflite. `precision`: auto (INT8 if the model folder has a fresh model.int8.onnx, else FP32; a file as it
    is), int8, fp16 or fp32; the RR baseline's folder ships its classifier as ONNX and computes its features in the
    bundle (`precision` auto or fp32)."""
    src, out = Path(artifact), Path(out)
    if not src.exists():
        raise BadInput(f"{src}: no such file or folder")
    if precision not in PRECISIONS:
        raise BadInput(f"{precision}: unknown precision (choose from {', '.join(PRECISIONS)})")
    if out.exists() and (out.is_file() or (any(out.iterdir()) and not overwrite)):
        raise BadInput(f"{out}: exists and is not an empty folder (use --overwrite to replace a bundle)")
    verify_artifact(src)  # a tampered model folder or .onnx is refused before anything is exported or copied
    with tempfile.TemporaryDirectory(prefix="ecgtool-package-") as scratch:
        return _package(src, out, Path(scratch), precision=precision, data=data, lead=lead, tar=tar)


def _package(src: Path, out: Path, scratch: Path, *, precision: str, data: str | os.PathLike | None,
             lead: str | None, tar: bool) -> Path:
    import onnx

    from ecgtool import __version__
    from ecgtool.runtime import artifact_kind
    from ecgtool.runtime.onnxruntime import onnx_precision

    if artifact_kind(src) == "baseline":  # the RR baseline: its classifier converted to ONNX here, its features computed by the bundle
        onnx_path, config, classifier = _baseline_model(src, scratch, precision)
        source = Path(src if src.is_dir() else src.parent) / WEIGHTS_OF_BASELINE
    else:
        onnx_path = _onnx_of(src, precision, data)  # the model file to ship: an .onnx, or the .tflite given
        verify_artifact(onnx_path)
        source, classifier = Path(onnx_path), None
        config = artifact_config(onnx_path)
    tflite = artifact_kind(onnx_path) == "tflm"
    side = _tflite_sidecar(onnx_path, precision) if tflite else {}
    if tflite and not config:
        config = side.get("config") or {}
    classes = list(config.get("classes") or side.get("classes") or [])
    if not classes:
        raise BadInput(f"{onnx_path}: neither a config.json nor its metadata names the classes; a bundle needs them")
    spec = preprocessing_spec(config, lead, source=onnx_path)
    external: list[Path] = []
    if tflite:
        bundle_model = BUNDLE_TFLITE
        head = {"model_file": BUNDLE_TFLITE, "format": side["format"], "precision": side["precision"],
                "classes": classes, "input": side["input"],
                "output": {**side["output"], "meaning": "logits (int8 ones dequantised: (q - zero_point) * scale); "
                           "softmax gives class probabilities"},
                "arena_bytes": side["arena_bytes"], "flash_bytes": side.get("flash_bytes"),
                "interpreters": "ai-edge-litert (requirements.txt) or tflite-micro (TFLM, when installed)"}
    else:
        model = onnx.load(str(onnx_path), load_external_data=False)
        external = external_data_files(model, Path(onnx_path).parent)  # bundled beside model.onnx
        inp = model.graph.input[0]
        dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
        bundle_model = BUNDLE_MODEL
        head = {"model_file": BUNDLE_MODEL, "precision": onnx_precision(model), "classes": classes,
                "input": {"name": inp.name, "shape": dims, "dtype": "float32"},
                "output": {"name": model.graph.output[0].name, "meaning": "logits; softmax gives class probabilities"}}
        if classifier:
            head["output"] = {"name": baseline_onnx.OUTPUT, "meaning": "class probabilities over the classes at "
                              "rr_classifier.class_index (log gives the logits ecgtool reports)"}
    folder_metrics = source.parent / METRICS
    metrics = {}
    if folder_metrics.is_file():
        m = read_json(folder_metrics)
        metrics = {k: m[k] for k in ("macro_f1", "accuracy", "weighted_f1", "n", "split", "data") if k in m}
        metrics["note"] = "the source PyTorch model on its test split (metrics.json)"
    check = classifier["check"] if classifier else manifest_entry(Path(onnx_path)).get("check")
    if check:
        metrics["export_check"] = check  # this model file against PyTorch, from the run's manifest.json
    model_json = {
        **head,
        "preprocessing": spec,
        "source": {"path": str(source.resolve()), "sha256": sha256(source), "kind": artifact_kind(src),
                   "given": str(src)},
        "model_config": {k: config.get(k) for k in ("arch", "depth", "width", "in_channels", "num_classes", "rr_features")},
        "metrics": metrics, "ecgtool_version": __version__,
    }
    inits = set() if tflite else {t.name for t in model.graph.initializer}
    graph_inputs = [] if tflite else [i for i in model.graph.input if i.name not in inits]
    rr_input = len(graph_inputs) > 1 and int(config.get("rr_features") or 0) > 0
    if rr_input:  # the second input, computed by ecg_features.py (a copy of baseline/features.py) before the graph
        second = graph_inputs[1]
        model_json["rr_input"] = {"name": second.name, "dim": int(config["rr_features"]), "channel": 0,
                                  "module": BUNDLE_FEATURES, **((config.get("extra") or {}).get("rr_head") or {})}
    elif len(graph_inputs) > 1:
        raise BadInput(f"{onnx_path}: a graph with {len(graph_inputs)} inputs but no RR head in its config")
    if classifier:  # the graph's input: the window features ecg_features.py computes (baseline/features.py)
        model_json["rr_classifier"] = {"input": baseline_onnx.INPUT, "features": list(config["features"]),
                                       "channel": int(config.get("channel", 0)), "module": BUNDLE_FEATURES,
                                       "class_index": classifier["class_index"]}
    features = rr_input or bool(classifier)
    recorded = None if classifier else manifest_entry(Path(onnx_path)).get("sha256")
    with atomic_dir(out) as tmp:
        shutil.copyfile(onnx_path, tmp / bundle_model)
        # the copy is what ships: hashed again so that a file replaced after the check above is refused too
        shipped = sha256(tmp / bundle_model)
        if is_verifying() and recorded and shipped != recorded:
            raise BadInput(f"{onnx_path}: differs from its SHA-256 in the run's manifest.json (changed while "
                           "packaging?); refusing to package it")
        model_json["source"]["sha256"] = shipped
        for f in external:
            shutil.copyfile(f, tmp / f.name)
        write_json(tmp / BUNDLE_SPEC, model_json)
        shutil.copyfile(Path(bundle_runner.__file__), tmp / BUNDLE_RUNNER)
        shutil.copyfile(Path(preprocess.__file__), tmp / BUNDLE_PREPROCESS)
        shutil.copyfile(Path(stream.__file__), tmp / BUNDLE_STREAM)
        shutil.copyfile(Path(quality.__file__), tmp / BUNDLE_QUALITY)
        shutil.copyfile(Path(episodes.__file__), tmp / BUNDLE_EPISODES)
        if features:
            shutil.copyfile(Path(rr_features.__file__), tmp / BUNDLE_FEATURES)
        if tflite:
            shutil.copyfile(Path(tflite_io.__file__), tmp / BUNDLE_TFLITE_IO)
        write_text(tmp / "requirements.txt", REQUIREMENTS_TFLITE if tflite else RR_REQUIREMENTS if features else REQUIREMENTS)
        write_text(tmp / "README.md", _bundle_readme(spec, model_json))
        names = sorted(p.name for p in tmp.iterdir())
        write_text(tmp / "SHA256SUMS", "".join(f"{sha256(tmp / n)}  {n}\n" for n in names))
        for f in tmp.iterdir():  # temp files are private; a bundle is meant to be copied and read
            os.chmod(f, 0o755 if f.name == BUNDLE_RUNNER else 0o644)
    _record_bundle(out, source, bundle_model)
    if tar:
        archive = out.with_name(out.name + ".tar.gz")
        with atomic_path(archive) as t, tarfile.open(t, "w:gz") as tf:
            tf.add(out, arcname=out.name)
        os.chmod(archive, 0o644)
        record_artifact(archive, parent=out / bundle_model, run_dir=_run_of(out, source))
    ui.info(f"package: {out} ({model_json['precision']}, {sum(f.stat().st_size for f in out.iterdir()) / 1e6:.2f} MB)")
    return out


def _baseline_model(folder: Path, scratch: Path, precision: str) -> tuple[Path, dict, dict]:
    """(the classifier's ONNX file in `scratch`, the folder's config, {class_index, check}) of an RR baseline."""
    from ecgtool.baseline.classifier import load_baseline

    if precision not in ("auto", "fp32"):
        raise BadInput(f"{folder}: the RR baseline ships as it is (float trees), not {precision}; omit --precision")
    model, config = load_baseline(folder)
    folder = folder if folder.is_dir() else folder.parent
    with np.load(folder / WEIGHTS_OF_BASELINE, allow_pickle=False) as npz:
        feats = npz["features"]
    path = scratch / BUNDLE_MODEL
    info = baseline_onnx.classifier_onnx(model, path, feats)
    return path, config, info


def _run_of(out: Path, source: Path) -> Path:
    """The run whose manifest.json records the bundle: the bundle's own run if it sits in one, else the source's."""
    own = find_run_root(out)
    return own if (own / MANIFEST).exists() else find_run_root(source)


def _record_bundle(out: Path, source: Path, model: str = BUNDLE_MODEL) -> None:
    run = _run_of(out, source)
    for f in sorted(out.iterdir()):
        record_artifact(f, parent=source if f.name == model else out / model, run_dir=run)


def _tflite_sidecar(path: Path, precision: str) -> dict:
    """The sidecar of a .tflite to bundle (I/O scales and zero points, the measured arena, classes, preprocessing);
    BadInput without one or when `precision` asks for another precision."""
    side = litert_sidecar(path)
    if not side.is_file():
        raise BadInput(f"{path}: no {side.name} beside it (I/O quantisation, arena, classes); a bundle of a .tflite "
                       "needs the one `ecgtool export --format litert-int8` writes")
    try:
        s = read_json(side)
        ok = isinstance(s, dict) and all(k in s for k in ("format", "precision", "input", "output", "arena_bytes"))
    except (OSError, ValueError):
        ok = False
    if not ok:
        raise BadInput(f"{side}: not a LiteRT sidecar written by ecgtool export; cannot bundle {path.name}")
    if precision not in ("auto", s["precision"]):
        raise BadInput(f"{path}: this .tflite is {s['precision']}, not {precision} (omit --precision to ship it as it is)")
    return s


@click.command("package")
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Bundle folder to create.")
@click.option("--precision", type=click.Choice(PRECISIONS), help="auto (default: INT8 if exported, else FP32), int8, fp16, fp32.")
@click.option("--data", type=click.Path(path_type=Path), help="Prepared dataset, to calibrate INT8 when it is not exported yet.")
@click.option("--lead", help="Lead run.py reads by default (default: the model's, else II).")
@click.option("--tar", is_flag=True, help="Also write OUT.tar.gz beside the folder.")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle folder.")
@ui.quiet_option
def package_command(artifact: Path, out: Path, **options: Any) -> None:
    """Deploy bundle of ARTIFACT (model folder, the rr_baseline folder or .onnx: numpy, scipy and onnxruntime;
    .tflite: ai-edge-litert)."""
    opts = {k: v for k, v in options.items() if v is not None and v is not False}
    path = package(artifact, out, **opts)
    click.echo(str(path))
