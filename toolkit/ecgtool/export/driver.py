"""`export(model, fmt)`: build one format of the table (ecgtool.export.formats) from a model folder.

Dispatch is the table's: `FORMATS[fmt].target` names the module (onnx, openvino, tensorrt) whose
`build` makes the artifact and whatever intermediate files it needs (model.onnx, model.int8.onnx,
reused while newer than their source). Every new artifact is checked against PyTorch and recorded in
the run's manifest. The export command's format choices and options come from the same table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from ecgtool.core import ui
from ecgtool.core.artifacts import size_on_disk_mb
from ecgtool.core.errors import BadInput
from ecgtool.runtime.registry import require_model_folder
from ecgtool.core.manifest import recorded_check
from ecgtool.export.formats import COMMON_OPTIONS, FORMATS, RR_HEAD_FORMATS
from ecgtool.export.options import OPTION_HELP, table_option
from ecgtool.export.targets import TARGETS


@dataclass
class ExportResult:
    """What an export produced: the artifact, its check against PyTorch, every file written, the time (s)."""

    format: str
    path: Path | None
    check: dict = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def export(model: str | Path, fmt: str, **options: Any) -> ExportResult:
    """Export `model` (a model folder) to format `fmt`; options not given keep their defaults.

    Options: data (prepared dataset, for checks and INT8 calibration), check_limit (records, 512),
    threads, force (rebuild intermediates), and those the format lists in the table (opset; INT8:
    method, calib_size, per_channel, exclude, calib_dir, seed; TensorRT: opt_batch, max_batch).
    """
    if fmt not in FORMATS:
        raise BadInput(f"{fmt}: unknown format (choose from {', '.join(FORMATS)})")
    spec = FORMATS[fmt]
    folder = require_model_folder(model)
    bad = [k for k in options if k not in spec.options + COMMON_OPTIONS]
    if bad:
        raise BadInput(f"{fmt}: option(s) {', '.join('--' + b.replace('_', '-') for b in bad)} do not apply to this format")
    from ecgtool.core.artifacts import find_config

    if (find_config(folder).get("rr_features") or 0) and fmt not in RR_HEAD_FORMATS:
        raise BadInput(f"{folder}: an RR-head model exports to {', '.join(RR_HEAD_FORMATS)} only ({fmt} would need the "
                       "RR features computed on the device runtime)")
    if options.get("data") is not None:
        from ecgtool.data.dataset import load_dataset

        load_dataset(options["data"])  # a bad dataset is reported before anything is written
    start = time.perf_counter()
    files: list[Path] = []
    target = TARGETS[spec.target](folder, spec, options, files)
    seconds = time.perf_counter() - start
    if target.exists():
        if target not in files:
            files.append(target)
        ui.info(f"export {fmt}: {target} ({size_on_disk_mb(target):.2f} MB) in {seconds:.1f} s")
    return ExportResult(fmt, target, recorded_check(target), files, seconds)


def unavailable(fmt: str) -> str | None:
    """Why format `fmt` cannot be built on this machine because its converter is not installed, else None.

    litert-*: the [mcu] extra (litert-torch, ai-edge-quantizer, tflite-micro) must be installed. The other formats'
    converters are install_requires (TensorRT formats always write their TensorRT-ready ONNX), so None.
    """
    spec = FORMATS[fmt]
    if spec.target == "litert":
        from ecgtool.export.litert import missing_module

        name = missing_module()
        if name is not None:
            return f"the [mcu] extra is not installed ({name} not found): pip install -e '.[mcu]'"
    return None


def _table_options(fn):
    """Decorate the export command with every option of the table (and the common ones), each once."""
    names = list(COMMON_OPTIONS) + [o for f in FORMATS.values() for o in f.options]
    seen: list[str] = []
    for n in names:
        if n not in seen:
            seen.append(n)
    missing = set(seen) - set(OPTION_HELP)
    if missing:  # a new table option needs its help line here
        raise RuntimeError(f"export options without help: {sorted(missing)}")
    for n in reversed(seen):
        fn = table_option(n)(fn)
    return fn


@click.command("export")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--format", "fmt", required=True, metavar="FORMAT", help=f"One of: {', '.join(FORMATS)}.")
@_table_options
@ui.quiet_option
def export_command(model: Path, fmt: str, **options: Any) -> None:
    """Export MODEL (a model folder) to FORMAT, check it against PyTorch and record it in manifest.json."""
    opts = {k: v for k, v in options.items() if v is not None and v != ()}
    result = export(model, fmt, **opts)
    c = result.check
    line = f"{result.format}: {result.path}"
    if c:
        line += (f"  (check on {c['inputs']}: max |diff| {c['max_abs_diff']:.3g}, "
                 f"argmax agreement {c['argmax_agreement']:.2%}, {c['status']})")
    click.echo(line)
