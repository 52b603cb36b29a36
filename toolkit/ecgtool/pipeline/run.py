"""`ecgtool pipeline`: data -> train -> prune -> quantise -> export -> bench -> report from one YAML config.

With no config it runs the embedded default (default.yaml): synthetic data, SE-ResNet and ResNet
at depths 18 and 34 at width 16, the classical baseline, one pruning ratio, INT8 and FP16, every format
this machine runs (litert-int8 for microcontrollers where the [mcu] extra is installed; without it one line
says it was skipped and why). OUT is the run folder (model folders, bench.*, report.*) with the dataset in OUT/data.

Validated before any step runs: every key of every section against the parameters of the function the
step calls (inspect.signature) plus the pipeline's own keys, and the enumerated values (archs, depths,
formats, precisions, method, compress.models); an unknown one is BadInput naming the file, the key and
the nearest valid name. Shared defaults (lr, batch_size, patience, threads) come from ecgtool.train.defaults.

Time budget: with `train.budget_s`, a probe of a few training steps (about 2 s) at start measures this
machine, and the train step runs as many epochs (at most `train.epochs`) as fit the budget; the expected
duration of the whole run is printed before the first step. The plan is kept in OUT/pipeline.json, so a
resumed run trains the same number of epochs (the step hashes hold budget_s, not the measured epochs).

Resumable: OUT/pipeline.json keeps a hash of each step's config (chained with the steps before it); a step
whose hash matches and whose artifacts exist is skipped. A changed data or train step is refused rather
than overwritten (those are the expensive results); later steps are simply redone.
"""

from __future__ import annotations

import copy
import datetime as _dt
import difflib
import hashlib
import inspect
import json
import math
import os
import time
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import click

from ecgtool.core.files import read_json, write_json
from ecgtool.core.manifest import record_artifact
from ecgtool.core.errors import BadInput
from ecgtool.core.names import (BENCH_CSV, BENCH_JSON, BENCH_MD, CONFIG, METRICS, PIPELINE_STATE, REPORT_HTML, RUN_JSON,
                                WEIGHTS)
from ecgtool.core.ui import as_percent, info, print_table, quiet_option
from ecgtool.train import defaults as D

STATE = PIPELINE_STATE
STEPS = ("data", "train", "prune", "quantize", "export", "bench", "report")
#: Steps whose results are too costly to overwrite silently when their config changes.
KEEP = ("data", "train")
SECTIONS = (*STEPS, "compress")
#: keys of each section that the pipeline itself reads (the others go to the step's function as they are)
OWN_KEYS: dict[str, dict[str, Any]] = {
    "train": {"archs": None, "depths": None, "baseline": False, "budget_s": None},
    "prune": {"ratios": None, "epochs": 10},
    "quantize": {"precisions": None, "method": "minmax"},
    "export": {"formats": None, "mcu_flash_kb": None},
    "compress": {"models": None},
    "data.import": {"format": None, "src": None},
}
#: parameters of a step's function that the pipeline sets itself (not config keys)
SET_BY_PIPELINE: dict[str, set[str]] = {
    "train": {"data", "archs", "depths", "out", "resume"},
    "prune": {"model_dir", "data", "ratio", "out", "fine_tune_epochs", "overwrite"},
    "bench": {"paths", "data", "out"},
    "report": {"run"},
    "data.synth": {"out", "overwrite", "progress"},
    "data.import": {"fmt", "src", "out", "overwrite"},
}
PRECISIONS = ("int8", "fp16")
#: shared defaults the loader puts into the config (so --show-config prints them and they enter the hashes)
SHARED = {"train": {"lr": D.LR, "batch_size": D.BATCH_SIZE, "patience": D.PATIENCE, "threads": D.THREADS},
          "bench": {"threads": D.THREADS}}


def default_config() -> dict:
    """The embedded default config (default.yaml, package data)."""
    import yaml

    cfg = yaml.safe_load(resources.files("ecgtool.pipeline").joinpath("default.yaml").read_text(encoding="utf-8"))
    for section, values in SHARED.items():
        for key, value in values.items():
            cfg[section].setdefault(key, value)
    return cfg


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "data" else v
    return out


def load_config(config: dict | str | os.PathLike | None) -> dict:
    """The default config updated by `config` (a dict or a YAML file); BadInput for an unreadable or unknown one."""
    import yaml

    if config is None:
        return default_config()
    if not isinstance(config, dict):
        path = Path(config)
        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise BadInput(f"{path}: cannot be read ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            raise BadInput(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(config, dict):
            raise BadInput(f"{path}: expected a mapping of steps (data, train, ...), got {type(config).__name__}")
        where = str(path)
    else:
        where = "config"
    cfg = _merge(default_config(), config)
    validate_config(cfg, where)
    return cfg


def _params(fn: Callable, drop: set[str]) -> dict[str, Any]:
    """name -> default of the parameters of `fn` a config may set (inspect.signature, minus `drop`)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {n: (None if p.default is inspect.Parameter.empty else p.default)
            for n, p in inspect.signature(fn).parameters.items() if p.kind in kinds and n not in drop}


def section_keys() -> dict[str, dict[str, Any]]:
    """Valid keys (with their defaults) of each config section: the step function's parameters + OWN_KEYS."""
    from ecgtool.bench.runner import bench
    from ecgtool.compress.prune import prune_artifact
    from ecgtool.data.importers import import_dataset
    from ecgtool.data.synth import write_synthetic_dataset
    from ecgtool.export.formats import INT8_OPTIONS
    from ecgtool.report.build import report
    from ecgtool.train.run import train_models

    keys = {
        "train": _params(train_models, SET_BY_PIPELINE["train"]),
        "prune": _params(prune_artifact, SET_BY_PIPELINE["prune"]),
        "quantize": {o: None for o in INT8_OPTIONS},  # passed to export() of every INT8 format
        "export": {},
        "bench": _params(bench, SET_BY_PIPELINE["bench"]),
        "report": _params(report, SET_BY_PIPELINE["report"]),
        "compress": {},
        "data": {"synth": None, "import": None},
        "data.synth": _params(write_synthetic_dataset, SET_BY_PIPELINE["data.synth"]),
        "data.import": _params(import_dataset, SET_BY_PIPELINE["data.import"]),
    }
    for section, own in OWN_KEYS.items():
        keys[section] = {**keys[section], **own}
    return keys


def _suggest(name: Any, valid: Any) -> str:
    valid = [str(v) for v in valid]
    near = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.5)
    return f"did you mean {near[0]}? " if near else ""


def _unknown(where: str, key: str, name: Any, valid: Any, what: str = "key") -> BadInput:
    valid = list(valid)
    return BadInput(f"{where}: {key}: unknown {what} {name} ({_suggest(name, valid)}"
                    f"valid: {', '.join(map(str, valid))})")


def _check_keys(where: str, section: str, given: Any, valid: dict[str, Any]) -> None:
    if given is None:
        return
    if not isinstance(given, dict):
        raise BadInput(f"{where}: {section}: expected a mapping of keys, got {type(given).__name__}")
    for key, value in given.items():
        if key not in valid:
            raise _unknown(where, f"{section}.{key}", key, sorted(valid))
        default = valid[key]
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        if numeric and value is not None and (isinstance(value, (str, bool)) or not isinstance(value, (int, float))):
            raise BadInput(f"{where}: {section}.{key}: expected a number, got {value!r}")


def _check_list(where: str, key: str, values: Any, valid: Any, what: str, cast: Callable = str) -> list:
    if values is None:
        return []
    if not isinstance(values, list):
        raise BadInput(f"{where}: {key}: expected a list (e.g. [{', '.join(map(str, list(valid)[:2]))}]), "
                       f"got {values!r}")
    valid = list(valid)
    for v in values:
        try:
            ok = cast(v) in valid
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise _unknown(where, key, v, valid, what)
    return [cast(v) for v in values]


#: value bounds of the numeric keys (lo, hi, integer?, hi exclusive?): an absurd value is refused naming the key
#: before any step runs (a width of 10^4 or a kernel of 10^7 would otherwise run for minutes and take GBs)
VALUE_BOUNDS: dict[str, tuple[float, float, bool, bool]] = {
    "train.width": (1, 1024, True, False), "train.kernel_size": (1, 255, True, False),
    "train.dropout": (0, 1, False, True), "train.epochs": (1, 10_000, True, False),
    "train.batch_size": (1, 65_536, True, False), "train.lr": (1e-12, 10, False, False),
    "train.patience": (0, 10_000, True, False), "train.seed": (0, 2**32 - 1, True, False),
    "train.precise_bn": (0, 1_000_000, True, False), "train.budget_s": (0, 30 * 86_400, False, False),
    "train.rr_trunk_dropout": (0, 1, False, True),
    "prune.steps": (1, 100, True, False), "prune.batch_size": (1, 65_536, True, False),
    "prune.lr": (1e-12, 10, False, False), "prune.patience": (0, 10_000, True, False),
    "prune.epochs": (0, 10_000, True, False), "prune.seed": (0, 2**32 - 1, True, False),
    "quantize.calib_size": (1, 1_000_000, True, False), "quantize.seed": (0, 2**32 - 1, True, False),
    "quantize.gate_agreement": (0, 100, False, False),
    "bench.batch": (1, 4096, True, False), "bench.throughput_batch": (1, 65_536, True, False),
    "bench.warmup": (0, 100_000, True, False), "bench.min_runs": (1, 1_000_000, True, False),
    "bench.min_time_s": (0, 3600, False, False), "bench.max_eval": (1, 10**8, True, False),
    "bench.seed": (0, 2**32 - 1, True, False), "report.tolerance": (0, 100, False, False),
    "export.mcu_flash_kb": (1, 10**8, False, False),
    "data.synth.per_class": (1, 1_000_000, True, False), "data.synth.total": (1, 10**8, True, False),
    "data.synth.seed": (0, 2**32 - 1, True, False), "data.import.seed": (0, 2**32 - 1, True, False),
}


def _check_bounds(where: str, cfg: dict) -> None:
    for key, (lo, hi, integer, open_hi) in VALUE_BOUNDS.items():
        *path, name = key.split(".")
        node: Any = cfg
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        value = node.get(name) if isinstance(node, dict) else None
        if value is None:
            continue
        kind = "an integer" if integer else "a number"
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (not integer or float(value).is_integer())
        if ok:
            ok = lo <= value < hi if open_hi else lo <= value <= hi  # nan and inf fail here
        if not ok:
            raise BadInput(f"{where}: {key}: expected {kind} in [{lo:g}, {hi:g}{')' if open_hi else ']'}, got {value!r}")


def validate_config(cfg: dict, where: str = "config") -> None:
    """BadInput (one line: file, key, nearest valid name) for anything the steps would not accept."""
    from ecgtool.compress.quantize import METHODS
    from ecgtool.data.importers import FORMATS as IMPORT_FORMATS
    from ecgtool.export.formats import FORMATS
    from ecgtool.models import ARCHS, DEPTHS
    from ecgtool.train.run import BASELINE_ARCH

    unknown = sorted(set(cfg) - set(SECTIONS))
    if unknown:
        near = _suggest(unknown[0], SECTIONS)
        raise BadInput(f"{where}: unknown section(s) {', '.join(unknown)} ({near}known: {', '.join(SECTIONS)})")
    keys = section_keys()
    for section in SECTIONS:
        _check_keys(where, section, cfg.get(section), keys[section])
    src = cfg["data"] or {}
    if len([k for k in ("synth", "import") if k in src]) != 1:
        raise BadInput(f"{where}: data needs exactly one of `synth` or `import`")
    _check_keys(where, "data.synth", src.get("synth"), keys["data.synth"])
    _check_keys(where, "data.import", src.get("import"), keys["data.import"])
    _check_bounds(where, cfg)
    if "import" in src:
        imp = src["import"] or {}
        if not {"format", "src"} <= set(imp):
            raise BadInput(f"{where}: data.import needs `format` and `src`")
        if imp["format"] not in IMPORT_FORMATS:
            raise _unknown(where, "data.import.format", imp["format"], IMPORT_FORMATS, "format")
    t = cfg["train"]
    _check_robust_training(where, t, src)
    archs = _check_list(where, "train.archs", t.get("archs"), [*ARCHS, BASELINE_ARCH], "architecture")
    depths = _check_list(where, "train.depths", t.get("depths"), DEPTHS, "depth", int)
    if not archs and not t.get("baseline"):
        raise BadInput(f"{where}: train.archs: give at least one of {', '.join(ARCHS)} (or baseline: true)")
    if [a for a in archs if a != BASELINE_ARCH] and not depths:
        raise BadInput(f"{where}: train.depths: give at least one of {', '.join(map(str, DEPTHS))}")
    for section in ("train", "bench"):
        threads = (cfg.get(section) or {}).get("threads")
        if threads is not None and threads != "auto" and (isinstance(threads, bool) or not isinstance(threads, int)
                                                          or threads < 1):
            raise BadInput(f"{where}: {section}.threads: expected a count >= 1 or auto, got {threads!r}")
    budget = t.get("budget_s")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget < 0):
        raise BadInput(f"{where}: train.budget_s: expected seconds >= 0 (0 or null: no budget), got {budget!r}")
    trained = [f"{a}{d}" for a in archs if a != BASELINE_ARCH for d in depths]
    _check_list(where, "compress.models", (cfg.get("compress") or {}).get("models"), trained, "model (not trained)")
    q = cfg.get("quantize") or {}
    _check_list(where, "quantize.precisions", q.get("precisions"), PRECISIONS, "precision")
    if q.get("method") is not None and q["method"] not in (*METHODS, "auto"):
        raise _unknown(where, "quantize.method", q["method"], (*METHODS, "auto"), "method")
    _check_list(where, "export.formats", (cfg.get("export") or {}).get("formats"), FORMATS, "format")
    ratios = (cfg.get("prune") or {}).get("ratios")
    if ratios is not None and (not isinstance(ratios, list) or not all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and 0 < r < 1 for r in ratios)):
        raise BadInput(f"{where}: prune.ratios: expected a list of fractions between 0 and 1, got {ratios!r}")


#: the values of train.leads (train_models' `leads`)
LEADS = ("deploy", "any")


def _check_robust_training(where: str, t: dict, src: dict) -> None:
    """The issue-9 training options (rr_head, rr_trunk_dropout, leads, augment) and data.import.keep_leads:
    their values, and what they need of each other, before any step runs."""
    from ecgtool.train.augment import parse_augment

    imp = src.get("import") if isinstance(src.get("import"), dict) else {}
    for key, value in (("train.rr_head", t.get("rr_head")), ("data.import.keep_leads", imp.get("keep_leads"))):
        if value is not None and not isinstance(value, bool):
            raise BadInput(f"{where}: {key}: expected true or false, got {value!r}")
    if t.get("leads") is not None and t["leads"] not in LEADS:
        raise _unknown(where, "train.leads", t["leads"], LEADS, "value")
    if t.get("leads") == "any" and not imp.get("keep_leads"):
        raise BadInput(f"{where}: train.leads: any needs data.import with keep_leads: true (every lead of each "
                       "record, the deployment lead first)")
    if t.get("rr_trunk_dropout") and not t.get("rr_head"):
        raise BadInput(f"{where}: train.rr_trunk_dropout: applies to an RR-head model (train.rr_head: true)")
    augment = t.get("augment")
    if augment is not None and not isinstance(augment, (str, list)):
        raise BadInput(f"{where}: train.augment: expected a name or a list of names, got {augment!r}")
    try:
        parse_augment(augment)
    except BadInput as exc:
        raise BadInput(f"{where}: train.augment: {str(exc).split(': ', 1)[-1]}") from None


def step_hashes(cfg: dict) -> dict[str, str]:
    """sha256 of each step's config chained with the previous step's hash (a change invalidates what follows)."""
    sections = {"data": ["data"], "train": ["train"], "prune": ["compress", "prune"],
                "quantize": ["compress", "quantize"], "export": ["compress", "quantize", "export"],
                "bench": ["bench"], "report": ["report"]}
    out, prev = {}, ""
    # a format skipped for want of its converter (litert-*: the [mcu] extra) is part of the export step's hash,
    # so installing the converter later makes a resumed run build it
    skipped = {"unavailable": _unavailable(list((cfg.get("export") or {}).get("formats") or []))}
    for step in STEPS:
        blob = json.dumps({"prev": prev, **{s: cfg.get(s) for s in sections[step]},
                           **(skipped if step == "export" and skipped["unavailable"] else {})},
                          sort_keys=True, default=str)
        out[step] = prev = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return out


# --- the steps: each returns the artifacts (paths under OUT) that prove it finished -------------------------

def _step_data(cfg: dict, out: Path, resume: bool) -> list[Path]:
    from ecgtool.data.dataset import REQUIRED_FILES, load_dataset

    data = out / "data"
    if resume and data.exists():
        load_dataset(data)  # written atomically: complete if it loads
    elif "synth" in cfg["data"]:
        from ecgtool.data.synth import write_synthetic_dataset

        write_synthetic_dataset(data, **(cfg["data"]["synth"] or {}))
    else:
        from ecgtool.data.importers import import_dataset

        opts = dict(cfg["data"]["import"])
        import_dataset(opts.pop("format"), opts.pop("src"), data, **opts)
    return [data / f for f in REQUIRED_FILES]


def _step_train(cfg: dict, out: Path, resume: bool) -> list[Path]:
    from ecgtool.train.run import train_models

    t = dict(cfg["train"])
    archs, depths = list(t.pop("archs") or []), list(t.pop("depths") or [])
    baseline = t.pop("baseline", False)
    t.pop("budget_s", None)
    plan = cfg.get("_plan") or {}
    if plan.get("epochs"):
        t["epochs"] = plan["epochs"]
    if plan.get("threads"):
        t["threads"] = plan["threads"]
    rows = train_models(out / "data", archs + (["rr_baseline"] if baseline else []), depths, out,
                        resume=(out / RUN_JSON).exists(), device=t.pop("device", "cpu"), **t)
    return [out / r["model"] / METRICS for r in rows]


def _compressed(cfg: dict, out: Path) -> list[Path]:
    """The model folders to quantise and export: the chosen trained ones and their pruned versions."""
    from ecgtool.compress.prune import default_out

    folders = []
    for name in cfg["compress"]["models"]:
        folders.append(out / name)
        folders += [default_out(out / name, r) for r in cfg["prune"].get("ratios") or []]
    return folders


def _step_prune(cfg: dict, out: Path, resume: bool) -> list[Path]:
    from ecgtool.compress.prune import prune_artifact

    p = dict(cfg["prune"])
    ratios, epochs, device = p.pop("ratios", None) or [], p.pop("epochs", 3), p.pop("device", "cpu")
    done = []
    for name in cfg["compress"]["models"]:
        if not (out / name / CONFIG).exists():
            raise BadInput(f"{out / name}: compress.models names {name}, which the train step did not make")
        for r in ratios:
            res = prune_artifact(out / name, out / "data", r, fine_tune_epochs=epochs, device=device,
                                 overwrite=True, **p)
            done.append(Path(res["out"]) / WEIGHTS)
    return done


def _unavailable(formats: list[str]) -> dict[str, str]:
    """format -> why it cannot be built here (its converter is not installed), for the formats in `formats`."""
    from ecgtool.export import unavailable

    return {f: why for f in formats if (why := unavailable(f)) is not None}


def _export_all(cfg: dict, out: Path, formats: list[str], extra: dict) -> list[Path]:
    from ecgtool.export import export
    from ecgtool.export.formats import FORMATS, RR_HEAD_FORMATS

    files = []
    missing = _unavailable(formats)
    for fmt, why in missing.items():  # one line per format, and the pipeline goes on without it
        info(f"export {fmt}: skipped, {why}")
    formats = [f for f in formats if f not in missing]
    limit = (cfg.get("export") or {}).get("mcu_flash_kb")
    for folder in _compressed(cfg, out):
        rr_head = bool(read_json(folder / CONFIG).get("rr_features")) if (folder / CONFIG).exists() else False
        for fmt in formats:
            if rr_head and fmt not in RR_HEAD_FORMATS:  # train.rr_head: its RR features are computed before the graph
                info(f"export {fmt}: {folder.name} skipped, an RR-head model exports to {', '.join(RR_HEAD_FORMATS)} only")
                continue
            if FORMATS[fmt].target == "litert" and not _fits_mcu(folder, limit, fmt):
                continue
            try:
                opts = {k: v for k, v in extra.items() if k in FORMATS[fmt].options} if fmt.endswith("int8") else {}
                if FORMATS[fmt].runtime == "tensorrt" and opts.get("target") not in (None, "auto", "tensorrt"):
                    opts.pop("target")  # quantize.target is the CPU form (onnx-int8); TensorRT's INT8 form is its own
                res = export(folder, fmt, data=out / "data", **opts)  # e.g. --target is not an openvino-int8 option
                files += [f for f in res.files if Path(f).exists()]
            except BadInput as exc:
                if not fmt.startswith("tensorrt"):
                    raise
                info(f"{folder.name} {fmt}: {exc} (bench reports this row as skipped)")
    return files


def _fits_mcu(folder: Path, limit_kb: float | None, fmt: str) -> bool:
    """Whether a microcontroller format is built for `folder`: its INT8 flash estimate (runtime.tflm) is within
    export.mcu_flash_kb (null: always); one line says why when not."""
    if limit_kb is None:
        return True
    from ecgtool.runtime.tflm import int8_flash_estimate_kb

    est = int8_flash_estimate_kb(folder / WEIGHTS)
    if est <= limit_kb:
        return True
    info(f"export {fmt}: {folder.name} skipped, its INT8 flash estimate {est:.0f} KB exceeds export.mcu_flash_kb "
         f"{limit_kb:g} KB (null: every model)")
    return False


def _int8_options(cfg: dict) -> dict:
    """The quantize section's INT8 options (method, calib_size, ...) that are set, for every INT8 export."""
    return {k: v for k, v in (cfg.get("quantize") or {}).items() if k != "precisions" and v is not None}


def _step_quantize(cfg: dict, out: Path, resume: bool) -> list[Path]:
    formats = [f"onnx-{p}" for p in cfg["quantize"].get("precisions") or []]
    return _export_all(cfg, out, formats, _int8_options(cfg))


def _step_export(cfg: dict, out: Path, resume: bool) -> list[Path]:
    return _export_all(cfg, out, list(cfg["export"].get("formats") or []), _int8_options(cfg))


def _step_bench(cfg: dict, out: Path, resume: bool) -> list[Path]:
    from ecgtool.bench.runner import bench

    b = dict(cfg.get("bench") or {})
    if (cfg.get("_plan") or {}).get("bench_threads"):
        b["threads"] = cfg["_plan"]["bench_threads"]
    bench([out], out / "data", out=out, **b)
    return [out / BENCH_JSON, out / BENCH_CSV, out / BENCH_MD]


def _step_report(cfg: dict, out: Path, resume: bool) -> list[Path]:
    from ecgtool.report.build import report

    return report(out, **(cfg.get("report") or {})).paths


STEP_FUNCS: dict[str, Callable[[dict, Path, bool], list[Path]]] = {
    "data": _step_data, "train": _step_train, "prune": _step_prune, "quantize": _step_quantize,
    "export": _step_export, "bench": _step_bench, "report": _step_report}


# --- the time budget: a short probe at start sizes the training -------------------------------------------

PROBE_S = 2.0  # seconds of timed training steps
#: quantize + export + bench + report of one compressed model (and its pruned versions), rough: a fixed part
#: (bench's minimum timing, library loads) and a part that scales with the probe (the default job: 136 s at
#: 7.3 ms per record, 1 thread, load 4-5)
REST_S = (20.0, 16.0)
#: one litert-* export (PyTorch -> LiteRT conversion, full-integer calibration, the TFLM check, TensorFlow's
#: import): the demo's pruned child took ~25 s and its 636-KB parent 41.6 s (benchmarks/RESULTS.md, make demo)
LITERT_S = 30.0


def probe_ms_per_record(width: int, length: int, channels: int, classes: int, batch_size: int,
                        seconds: float = PROBE_S) -> float:
    """Milliseconds per record of a training step (forward, backward, Adam) of se_resnet18 at `width` here."""
    import torch
    from torch import nn

    from ecgtool.models import get_model
    from ecgtool.train.fit import train_step

    torch.manual_seed(0)
    model = get_model("se_resnet18", width=width, in_channels=channels, num_classes=classes).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = nn.CrossEntropyLoss()
    x, y = torch.rand(batch_size, channels, length), torch.randint(0, classes, (batch_size,))
    train_step(model, opt, crit, x, y)  # warm-up: first-call allocations
    n, t0 = 0, time.perf_counter()
    while n < 2 or time.perf_counter() - t0 < seconds:
        train_step(model, opt, crit, x, y)
        n += 1
    return (time.perf_counter() - t0) * 1e3 / (n * batch_size)


def _record_counts(cfg: dict, out: Path) -> tuple[int, int, int, int] | None:
    """(train, val, records per sample window, classes) of the dataset the run trains on; None if not known yet."""
    src = cfg["data"]
    if (out / "data" / "meta.json").exists() or "import" in src:
        if not (out / "data" / "meta.json").exists():
            return None
        from ecgtool.data.dataset import load_dataset

        ds = load_dataset(out / "data")
        return len(ds.indices("train")), len(ds.indices("val")), int(ds.signals.shape[2]), len(ds.classes)
    from ecgtool.data.synth import class_counts

    s = src["synth"] or {}
    counts = class_counts(s.get("per_class"), s.get("total"), s.get("balance", "paper"))
    n = int(sum(counts))
    return int(0.64 * n), int(0.16 * n), 2000, len(counts)


def plan_training(cfg: dict, out: Path, threads: int) -> dict | None:
    """Epochs that fit train.budget_s (probe of PROBE_S s) and the expected seconds of every step; None
    without a budget or before the dataset's size is known (imported data: planned after the data step)."""
    import torch

    from ecgtool.models import get_model, model_stats

    t = cfg["train"]
    budget = t.get("budget_s")
    archs = [a for a in t.get("archs") or [] if a != "rr_baseline"]
    if not budget or not archs:
        return None
    counts = _record_counts(cfg, out)
    if counts is None:
        return None
    n_train, n_val, length, k = counts
    width, bs = int(t.get("width", 64)), int(t.get("batch_size", D.BATCH_SIZE))
    torch.set_num_threads(threads)
    ms = probe_ms_per_record(width, length, 1, k, bs)
    macs = lambda name, w=width: model_stats(get_model(name, width=w, num_classes=k), length=length)["macs"]  # noqa: E731
    ref = macs("se_resnet18")
    # an epoch: train records (forward+backward) + validation and precise-BN records (forward, ~1/3 the cost)
    per_record = (n_train + (n_val + min(n_train, int(t.get("precise_bn", 32)) * bs)) / 3) * ms / 1e3
    epoch_s = sum(per_record * macs(f"{a}{d}") / ref for a in archs for d in t.get("depths") or [])
    most = int(t.get("epochs", D.EPOCHS))
    epochs = max(1, min(most, math.floor(budget / epoch_s)))
    p = cfg.get("prune") or {}
    prune_s = sum(per_record * (1 - r) ** 2 * int(p.get("epochs", 10)) + 2
                  for r in p.get("ratios") or [] for _ in (cfg.get("compress") or {}).get("models") or [])
    rest_s = (REST_S[0] + REST_S[1] * ms) * max(1, len((cfg.get("compress") or {}).get("models") or []))
    expected = 5 + epochs * epoch_s + 5 * bool(t.get("baseline")) + prune_s + rest_s + _litert_s(cfg, width, k, length)
    return {"epochs": epochs, "most_epochs": most, "budget_s": budget, "epoch_s": round(epoch_s, 1),
            "probe_ms_per_record": round(ms, 3), "threads": threads, "expected_s": round(expected)}


def _litert_s(cfg: dict, width: int, classes: int, length: int) -> float:
    """Expected seconds of the litert-* exports: LITERT_S for each compressed model (pruned children by their
    kept fraction squared of the parameters) whose flash estimate fits export.mcu_flash_kb (as _fits_mcu)."""
    from ecgtool.export.formats import FORMATS
    from ecgtool.models import get_model, model_stats
    from ecgtool.runtime.tflm import params_flash_kb

    ex = cfg.get("export") or {}
    n_fmt = sum(1 for f in ex.get("formats") or [] if f in FORMATS and FORMATS[f].target == "litert")
    if not n_fmt or _unavailable([f for f in ex.get("formats") or [] if f in FORMATS and FORMATS[f].target == "litert"]):
        return 0.0
    limit = ex.get("mcu_flash_kb")
    kept = [1.0] + [1 - r for r in (cfg.get("prune") or {}).get("ratios") or []]
    n = 0
    for name in (cfg.get("compress") or {}).get("models") or []:
        params = model_stats(get_model(name, width=width, num_classes=classes), length=length)["params"]
        n += sum(1 for f in kept if limit is None or params_flash_kb(params * f * f) <= limit)
    return LITERT_S * n_fmt * n


def _say_plan(plan: dict, threads_why: str) -> None:
    capped = "" if plan["epochs"] < plan["most_epochs"] else " (the most, train.epochs)"
    info(f"pipeline: expected duration ~{max(1, round(plan['expected_s'] / 60))} min "
         f"({plan['expected_s']} s): probe {plan['probe_ms_per_record']:.2f} ms per training record on "
         f"{plan['threads']} thread(s) ({threads_why}); about {plan['epoch_s']:.0f} s per epoch of all networks, "
         f"so {plan['epochs']} epoch(s){capped} fit train.budget_s {plan['budget_s']:g} s")
    if plan["epochs"] * plan["epoch_s"] > 1.2 * plan["budget_s"]:
        info(f"pipeline: even 1 epoch takes about {plan['epoch_s']:.0f} s, over train.budget_s {plan['budget_s']:g} s")


def run_pipeline(config: dict | str | os.PathLike | None, out: str | os.PathLike) -> dict:
    """Run (or resume) every step into the run folder `out`; returns {steps: {name: status, seconds}, report}."""
    cfg = load_config(config)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: exists and is not a folder")
    state_path = out / STATE
    state = read_json(state_path) if state_path.exists() else {"steps": {}}
    if not state_path.exists() and out.exists() and any(out.iterdir()):
        raise BadInput(f"{out}: folder is not empty and holds no {STATE} (choose another --out)")
    hashes = step_hashes(cfg)
    for step in KEEP:
        prev = state["steps"].get(step)
        if prev and prev["hash"] != hashes[step]:
            raise BadInput(f"{out}: its {step} step was run with another config; choose another --out "
                           f"(or delete {out} to start again)")
    import torch

    threads, why = D.resolve_threads(cfg["train"].get("threads"))
    bench_threads, _ = D.resolve_threads((cfg.get("bench") or {}).get("threads"))
    torch.set_num_threads(threads)  # prune fine-tunes in this process too
    plan = state.get("plan") if (state.get("plan") or {}).get("train_hash") == hashes["train"] else None
    train_done = (state["steps"].get("train") or {}).get("status") == "done"
    if plan is None and not train_done:
        plan = plan_training(cfg, out, threads)
        if plan is not None:
            plan["train_hash"] = hashes["train"]
    if plan is not None and not train_done:
        _say_plan(plan, why)
    else:
        info(f"pipeline: {threads} torch thread(s) ({why})")
    out.mkdir(parents=True, exist_ok=True)
    state["config"] = cfg
    if plan is not None:
        state["plan"] = plan
    summary: dict[str, Any] = {"out": str(out), "steps": {}, "plan": plan}
    run_cfg = {**cfg, "_plan": {**(plan or {}), "threads": (plan or {}).get("threads", threads),
                                "bench_threads": bench_threads}}
    t_all = time.perf_counter()
    for i, step in enumerate(STEPS, 1):
        prev = state["steps"].get(step) or {}
        if prev.get("hash") == hashes[step] and prev.get("status") == "done" and \
                all((out / a).exists() for a in prev.get("artifacts", [])):
            info(f"[{i}/{len(STEPS)}] {step}: up to date, skipped")
            summary["steps"][step] = {"status": "skipped", "seconds": 0.0}
            continue
        if step == "train" and plan is None and cfg["train"].get("budget_s"):  # imported data: size known now
            plan = plan_training(cfg, out, threads)
            if plan is not None:
                plan["train_hash"] = hashes["train"]
                state["plan"] = summary["plan"] = plan
                run_cfg["_plan"].update(plan)
                _say_plan(plan, why)
        info(f"[{i}/{len(STEPS)}] {step} ...")
        resume = prev.get("hash") == hashes[step]
        state["steps"][step] = {"hash": hashes[step], "status": "started"}
        write_json(state_path, state)
        t0 = time.perf_counter()
        artifacts = STEP_FUNCS[step](run_cfg, out, resume)
        seconds = round(time.perf_counter() - t0, 1)
        state["steps"][step] = {"hash": hashes[step], "status": "done", "seconds": seconds,
                                "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                                "artifacts": sorted({os.path.relpath(Path(a).resolve(), out.resolve()) for a in artifacts})}
        write_json(state_path, state)
        summary["steps"][step] = {"status": "done", "seconds": seconds}
        info(f"[{i}/{len(STEPS)}] {step}: done in {seconds:.1f} s")
    summary["seconds"] = round(time.perf_counter() - t_all, 1)
    if plan is not None and any(v["status"] == "done" for v in summary["steps"].values()):
        info(f"pipeline: {summary['seconds']:.0f} s (expected ~{plan['expected_s']} s)")
    summary["report"] = str(out / REPORT_HTML)
    summary["rows"] = read_json(out / BENCH_JSON)["rows"]  # what the bench step measured (or had measured)
    record_artifact(state_path, run_dir=out)
    return summary


@click.command("pipeline")
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="YAML config; keys not given keep the embedded default (see default.yaml).")
@click.option("--out", type=click.Path(file_okay=False), default="models/pipeline", show_default=True,
              help="Run folder: dataset, models, exports, bench.* and report.*.")
@click.option("--show-config", is_flag=True, help="Print the effective config as YAML and exit.")
@quiet_option
def pipeline_command(config: str | None, out: str, show_config: bool) -> None:
    """Data -> train -> prune -> quantise -> export -> bench -> report from one YAML config; resumable."""
    if show_config:
        import yaml

        click.echo(yaml.safe_dump(load_config(config), sort_keys=False))
        return
    result = run_pipeline(config, out)
    from ecgtool.bench.runner import SCREEN_COLUMNS, table_columns

    print_table(as_percent(result["rows"]), table_columns(result["rows"], SCREEN_COLUMNS), title="ecgtool pipeline (F1 and accuracy in %, latency in ms, size in MB; "
                "all columns in bench.md)")
    steps = ", ".join(f"{k} {v['status']} {v['seconds']:.0f} s" for k, v in result["steps"].items())
    click.echo(f"steps: {steps}; total {result['seconds']:.0f} s")
    click.echo(f"report: {result['report']}")
