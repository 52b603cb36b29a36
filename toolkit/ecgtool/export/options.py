"""The one table of export and quantise options: each option's click declaration and help, read by the export command
(every option some format takes, export/driver.py) and by the quantize command (the INT8 options it shares,
export/int8.py), so that an option's help and default are written once."""

from __future__ import annotations

from pathlib import Path

import click

from ecgtool.compress.calibration import DEFAULT_DIR, DEFAULT_SEED, DEFAULT_SIZE
from ecgtool.compress.gate import (DEFAULT_AGREEMENT, DEFAULT_CLASS_POINTS, DEFAULT_GATE_TRAIN, DEFAULT_MACRO_POINTS,
                                   DEFAULT_MIN_WINDOWS)
from ecgtool.export.formats import OPSET

#: every option some format takes: (option name, click declaration kwargs)
OPTION_HELP = {
    "data": dict(type=click.Path(path_type=Path), help="Prepared dataset: test split for the checks, training split for INT8 calibration."),
    "method": dict(type=str, help="INT8 calibration: minmax, entropy, percentile or auto."),
    "calib_size": dict(type=int, help=f"INT8: records in the calibration set (default {DEFAULT_SIZE})."),
    "per_channel": dict(default=None, help="INT8: per-channel weight scales (default on).", flag="--per-channel/--no-per-channel"),
    "exclude": dict(multiple=True, help="INT8: ONNX node name to keep in float (repeatable)."),
    "calib_dir": dict(type=click.Path(path_type=Path), help=f"INT8: where calibration sets are kept (default {DEFAULT_DIR}/)."),
    "seed": dict(type=int, help=f"INT8: seed of the calibration sample (default {DEFAULT_SEED})."),
    "target": dict(type=str, help="INT8: CPU/accelerator the form is for: auto (this machine, by CPUID), x86-avx2, "
                   "x86-vnni, arm64, tensorrt."),
    "gate": dict(default=None, help="INT8: accuracy gate against FP32 on validation and --gate-train training windows (default on).", flag="--gate/--no-gate"),
    "gate_macro": dict(type=float, help=f"INT8 gate: most macro-F1 points INT8 may lose (default {DEFAULT_MACRO_POINTS:g})."),
    "gate_class": dict(type=float, help=f"INT8 gate: most F1 points any class may lose (default {DEFAULT_CLASS_POINTS:g})."),
    "gate_min_windows": dict(type=int, help="INT8 gate: a loss fails it only when at least this many of its windows "
                             f"carry it, net (default {DEFAULT_MIN_WINDOWS}: the fewest the exact McNemar test calls significant at 5 %; "
                             "0: points alone decide)."),
    "gate_agreement": dict(type=float, metavar="PCT", help="INT8 gate: least argmax agreement with FP32, % of its windows, "
                           f"validation + --gate-train (default {DEFAULT_AGREEMENT:g}; 0: no floor)."),
    "gate_train": dict(type=int, metavar="N", help="INT8 gate: also judge on up to N training windows outside the "
                       f"calibration set, beside validation (default {DEFAULT_GATE_TRAIN}; 0: validation alone)."),
    "keep_fp32": dict(multiple=True, metavar="GROUP", help="INT8: node group kept FP32 from the start (repeatable): "
                      "stem, se-gates, se-fc, residual-adds, classifier, rr-fusion, suspects (all) or none (drop the "
                      "target's default); the gate works on top."),
    "ov_quantizer": dict(type=click.Choice(["auto", "nncf", "qdq"]), help="OpenVINO INT8: the gated symmetric QDQ graph "
                         "(qdq; default auto = qdq) or nncf.quantize (needs the [nncf] extra; no accuracy gate)."),
    "opset": dict(type=int, help=f"ONNX opset (default {OPSET})."),
    "opt_batch": dict(type=int, help="TensorRT: batch the optimisation profile is tuned for (default 1)."),
    "max_batch": dict(type=int, help="TensorRT: largest batch of the optimisation profile (default 64)."),
    "check_limit": dict(type=int, help="Test records used to check the export against PyTorch (default 512)."),
    "threads": dict(type=int, help="Threads for the checks."),
    "force": dict(is_flag=True, default=None, help="Rebuild intermediate files even when fresh."),
}


def table_option(name: str):
    """The click option `name` of the table (its flag: `flag`, else --name-with-dashes)."""
    kw = dict(OPTION_HELP[name])
    flag = kw.pop("flag", "--" + name.replace("_", "-"))
    return click.option(flag, name, **kw)
