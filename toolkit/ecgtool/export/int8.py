"""The intermediate ONNX files of a model folder (FP32 model.onnx) and its INT8 QDQ files: ONNX Runtime's form and TensorRT's, checked and recorded.

compress.quantize turns an FP32 graph into INT8; this module knows the model folder: it makes the
FP32 ONNX first, checks the INT8 graph against PyTorch and records it in the run's manifest.
`ecgtool quantize` is this module's command.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import click

from ecgtool.compress.targets import TARGET_CHOICES
from ecgtool.compress.quantize import qdq_properties, quantize_model
from ecgtool.core import ui
from ecgtool.core.artifacts import find_config
from ecgtool.core.errors import BadInput
from ecgtool.runtime.registry import require_model_folder
from ecgtool.core.files import atomic_path
from ecgtool.core.manifest import record_artifact, record_in_run, recorded_check
from ecgtool.core.names import (CONFIG, ONNX_META_INT8_FORM, ONNX_META_INT8_FP32_NODES, ONNX_META_INT8_GATE,
                                ONNX_META_INT8_QAT_EPOCHS, ONNX_META_INT8_TARGET, QAT_INT8, QAT_TRT_INT8, WEIGHTS)
from ecgtool.export.check import check_export, checked
from ecgtool.export.formats import FORMATS, INT8_OPTIONS, OPSET, ExportFormat
from ecgtool.export.onnx import fresh, stamp_metadata, torch2onnx
from ecgtool.export.options import table_option


def ensure_onnx(folder: Path, opts: dict, files: list[Path]) -> Path:
    """The folder's FP32 model.onnx, exported (and checked, stamped, recorded) unless fresh and no opset was given."""
    out = folder / FORMATS["onnx"].artifact
    sources = (folder / WEIGHTS, folder / CONFIG)
    if opts.get("force") or not fresh(out, *sources) or "opset" in opts:
        torch2onnx(folder, out, opset=opts.get("opset", OPSET))
        stamp_metadata(out, find_config(folder), "onnx", "fp32", folder / WEIGHTS)
        checked(out, folder, folder / WEIGHTS, opts)
        files.append(out)
    return out


def quantize_folder(model: str | Path, data: str | Path, out: str | Path | None = None, *, threads: int | None = None,
                    check_limit: int = 512, symmetric: bool | None = None, runtime: str = "onnxruntime",
                    **options: Any) -> dict:
    """Quantise a model folder's ONNX to INT8 (`out`, default model.int8.onnx; model.trt-int8.onnx for
    target tensorrt; model.ov-int8.onnx for runtime "openvino", the QDQ graph an OpenVINO IR is read from)
    and report what it cost.

    Returns the report of compress.quantize.quantize_model; the artifact carries the model's metadata
    plus its INT8 target, form and the nodes the gate kept FP32, is checked against PyTorch and is
    recorded (with the gate's result) in the run's manifest.json.
    """
    folder = require_model_folder(model)
    trt = symmetric is True and options.get("target") in (None, "auto") or options.get("target") == "tensorrt"
    spec = FORMATS["openvino-int8" if runtime == "openvino" else "tensorrt-int8" if trt else "onnx-int8"]
    fp32 = ensure_onnx(folder, {"data": data, "threads": threads}, [])
    out = Path(out) if out else folder / (spec.graph or spec.artifact)
    report = quantize_model(fp32, data, out, symmetric=symmetric, threads=threads, runtime=runtime, **options)
    stamp_metadata(out, find_config(folder), spec.name, "int8", folder / WEIGHTS,
                   {ONNX_META_INT8_TARGET: report["target"], ONNX_META_INT8_FORM: report["form"]["label"],
                    ONNX_META_INT8_FP32_NODES: json.dumps(report["exclude"]), ONNX_META_INT8_GATE: json.dumps(gate_summary(report["gate"]))})
    check = check_export(out, folder, data, check_limit, threads)
    if check["status"] != "ok":
        ui.warn(f"{out}: argmax agreement with PyTorch {check['argmax_agreement']:.1%} (< 99%) on {check['inputs']}")
    _record(out, fp32, {"check": check, "int8_target": report["target"],
                        "int8_form": report["form"]["label"], "gate": report["gate"],
                        "quantization": {k: v for k, v in report.items()
                                          if k not in ("per_class_f1", "path", "gate")}})
    return report


def _record(out: Path, fp32: Path, extra: dict) -> None:
    """The INT8 file's manifest entry, in the run it was written into; a file outside any run says so in one line."""
    if record_in_run(out, parent=fp32, extra=extra) is None:
        ui.info(f"{out}: outside a run folder, so not recorded in a manifest.json (its ONNX metadata names the "
                "model, INT8 target, form and gate)")


def gate_summary(gate: dict | None) -> dict | None:
    """The gate's decision as the INT8 file carries it (None when the gate was off)."""
    if not gate:
        return None
    keys = ("passed", "macro_points", "class_points", "min_windows", "agreement_floor", "split", "n", "reason")
    return {k: gate.get(k) for k in keys} | {"agreement": (gate.get("after") or {}).get("agreement")} | {
        "groups_fp32": gate.get("groups_fp32") or [], "keep_fp32": gate.get("keep_fp32") or [],
        "keep_fp32_groups": gate.get("keep_fp32_groups") or []}


#: options of quantize_folder that QAT takes (the calibration set initialises its observers)
QAT_OPTIONS = ("target", "per_channel", "calib_size", "calib_dir", "seed", "gate_macro", "gate_class", "gate_min_windows",
               "gate_agreement", "qat_epochs", "lr")


def qat_folder(model: str | Path, data: str | Path, out: str | Path | None = None, *, threads: int | None = None,
               check_limit: int = 512, symmetric: bool | None = None, **options: Any) -> dict:
    """Quantisation-aware training of a model folder (compress.qat) to a QDQ ONNX (`out`, default model.qat-int8.onnx;
    model.qat-trt-int8.onnx for target tensorrt), stamped, checked against PyTorch and recorded like PTQ INT8."""
    from ecgtool.compress.qat import qat_model

    try:
        folder = require_model_folder(model)
    except BadInput as exc:
        raise BadInput(f"--qat: {exc}") from None
    bad = sorted(k for k in options if k not in QAT_OPTIONS)
    if bad:
        raise BadInput(f"--qat: option(s) {', '.join('--' + b.replace('_', '-') for b in bad)} do not apply to "
                       "quantisation-aware training")
    target = options.pop("target", None)
    if symmetric is not None and target in (None, "auto"):
        target = "tensorrt" if symmetric else None
    fp32 = ensure_onnx(folder, {"data": data, "threads": threads}, [])
    out = Path(out) if out else folder / (QAT_TRT_INT8 if target == "tensorrt" else QAT_INT8)
    epochs = options.pop("qat_epochs", None)
    kw = {k: v for k, v in options.items()} | ({"epochs": epochs} if epochs is not None else {})
    report = qat_model(folder, fp32, data, out, target=target, threads=threads, opset=OPSET, **kw)
    spec = FORMATS["tensorrt-int8" if report["target"] == "tensorrt" else "onnx-int8"]
    stamp_metadata(out, find_config(folder), spec.name, "int8", folder / WEIGHTS,
                   {ONNX_META_INT8_TARGET: report["target"], ONNX_META_INT8_FORM: report["form"]["label"],
                    ONNX_META_INT8_FP32_NODES: "[]", ONNX_META_INT8_QAT_EPOCHS: str(report["qat"]["epochs_run"]),
                    ONNX_META_INT8_GATE: json.dumps(gate_summary(report["gate"]))})
    check = check_export(out, folder, data, check_limit, threads)
    if check["status"] != "ok":
        ui.warn(f"{out}: argmax agreement with PyTorch {check['argmax_agreement']:.1%} (< 99%) on {check['inputs']}")
    _record(out, fp32, {"check": check, "int8_target": report["target"],
                        "int8_form": report["form"]["label"], "gate": report["gate"],
                        "qat_epochs": report["qat"]["epochs_run"],
                        "quantization": {k: v for k, v in report.items()
                                          if k not in ("per_class_f1", "path", "gate")}})
    return report


def ensure_int8(folder: Path, opts: dict, files: list[Path], spec: ExportFormat, force: bool = False) -> Path:
    """The INT8 graph of `spec` (onnx-int8: ONNX Runtime's form; tensorrt-int8: TensorRT's signed form with
    zero points 0; openvino-int8: the form OpenVINO is given for the CPU target, compress.targets.OPENVINO_FORMS),
    reused when fresh and no INT8 option was given; TensorRT's is copied from ONNX Runtime's when that already
    has TensorRT's form."""
    onnx_fp32 = ensure_onnx(folder, opts, files)
    shared = folder / FORMATS["onnx-int8"].artifact
    out = folder / (spec.graph or spec.artifact)
    given = {k: opts[k] for k in INT8_OPTIONS if k in opts}
    if spec.name == "tensorrt-int8":
        if given.get("target", "tensorrt") not in ("tensorrt", "auto"):
            raise BadInput(f"--target {given['target']}: {spec.name} is TensorRT's form (use --format onnx-int8 for a CPU target)")
        given.pop("target", None)
    if not (given or force or opts.get("force")) and fresh(out, onnx_fp32):
        return out
    if spec.name == "tensorrt-int8" and not given and fresh(shared, onnx_fp32) and qdq_properties(shared)["tensorrt_ready"]:
        with atomic_path(out) as tmp:
            shutil.copyfile(shared, tmp)
        record_artifact(out, parent=shared, extra={"check": recorded_check(shared), "target": "tensorrt"})
    else:
        if opts.get("data") is None:
            raise BadInput(f"{folder}: INT8 needs --data DIR (calibration set from its training split)")
        if spec.name == "tensorrt-int8":
            given["target"] = "tensorrt"
        quantize_folder(folder, opts["data"], out=out, threads=opts.get("threads"),
                        check_limit=opts.get("check_limit", 512), runtime="openvino" if spec.name == "openvino-int8" else "onnxruntime",
                        **given)
    files.append(out)
    return out


@click.command("quantize")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Prepared dataset (train: calibration, val: auto, test: report).")
@table_option("method")
@table_option("calib_size")
@table_option("per_channel")
@table_option("exclude")
@table_option("calib_dir")
@table_option("seed")
@click.option("--target", type=click.Choice(TARGET_CHOICES), default=None,
              help="CPU/accelerator the INT8 form is for: auto (default: this machine, by CPUID), x86-avx2 (reduce_range), "
                   "x86-vnni, arm64, tensorrt (signed symmetric, writes model.trt-int8.onnx).")
@table_option("keep_fp32")
@table_option("gate")
@table_option("gate_macro")
@table_option("gate_class")
@table_option("gate_min_windows")
@table_option("gate_agreement")
@table_option("gate_train")
@click.option("--symmetric/--asymmetric", default=None,
              help="Signed int8 activations with zero points 0 (= --target tensorrt) or unsigned ones.")
@click.option("--qat", is_flag=True, default=False,
              help="Quantisation-aware training: fine-tune MODEL's FP32 weights with fake quantisation on its training "
                   "split, export QDQ ONNX (MODEL/model.qat-int8.onnx, model.qat-trt-int8.onnx for --target tensorrt).")
@click.option("--qat-epochs", type=int, help="QAT: most fine-tuning epochs (default 3; best validation epoch kept).")
@click.option("--lr", type=float, help="QAT: learning rate (default the fine-tuning rate, 1e-4).")
@click.option("--out", type=click.Path(path_type=Path), help="Output file (default MODEL/model.int8.onnx).")
@click.option("--threads", type=int, help="Threads for evaluation.")
@ui.quiet_option
def quantize_command(model: Path, data: Path, **options: Any) -> None:
    """Static INT8 (QDQ) quantisation of MODEL with ONNX Runtime; reports test macro-F1 and agreement with FP32."""
    qat = options.pop("qat", False)
    opts = {k: v for k, v in options.items() if v is not None and v != ()}
    if not qat and ("qat_epochs" in opts or "lr" in opts):
        raise BadInput("--qat-epochs / --lr: only with --qat")
    r = qat_folder(model, data, **opts) if qat else quantize_folder(model, data, **opts)
    ui.print_table([{"precision": "fp32", "macro_f1": r["fp32_macro_f1"], "agreement": 1.0},
                    {"precision": "int8", "macro_f1": r["int8_macro_f1"], "agreement": r["top1_agreement"]}],
                   title=f"{r['path']} (target {r['target']}, form {r['form']['label']}, method {r['method']}"
                         f"{' ' + str(r['qat']['epochs_run']) + ' epochs' if r.get('qat') else ''}, "
                         f"test n={r['n']}{', simulated QDQ' if r.get('evaluated') == 'simulated-qdq' else ''})")
    g = r.get("gate")
    if g:
        agree = f", agreement {100 * g['after']['agreement']:.2f} % (floor {g.get('agreement_floor', 0):g} %)" if g.get("after") else ""
        seen = f"validation n={g.get('n_val', g['n'])}" + (f" + training n={g['n_train']}" if g.get("n_train") else "")
        click.echo(f"gate ({g['macro_points']} / {g['class_points']} points, {seen}{agree}): "
                   f"{'passed' if g['passed'] else 'FAILED'}; kept FP32: "
                   f"{', '.join([*g.get('keep_fp32_groups', []), *g['groups_fp32']]) or 'nothing'}"
                   f"{' (' + ', '.join(g['keep_fp32_groups']) + ' from the start)' if g.get('keep_fp32_groups') else ''}")
        click.echo(f"gate decision: {g['reason']}")
