"""The pipeline's config: the embedded default, loading and merging a YAML file, and its validation before any
step runs (every key of every section against the parameters of the function the step calls, enumerated values,
numeric bounds, the issue-9 training keys), and the step hashes that make a run resumable (pipeline/run.py)."""

from __future__ import annotations

import copy
import difflib
import hashlib
import inspect
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from ecgtool.core.errors import BadInput
from ecgtool.core.names import PIPELINE_STATE
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


#: numeric keys that also take the word "auto" (train.rr_bins: train/rr.py choose_rr_bins)
AUTO_KEYS = ("train.rr_bins",)


def _check_keys(where: str, section: str, given: Any, valid: dict[str, Any]) -> None:
    if given is None:
        return
    if not isinstance(given, dict):
        raise BadInput(f"{where}: {section}: expected a mapping of keys, got {type(given).__name__}")
    for key, value in given.items():
        if key not in valid:
            raise _unknown(where, f"{section}.{key}", key, sorted(valid))
        default = valid[key]
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool) \
            and f"{section}.{key}" not in AUTO_KEYS  # checked by _check_bounds, which names auto
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
    "train.rr_trunk_dropout": (0, 1, False, True), "train.rr_bins": (0, D.RR_BINS_MAX, True, False),
    "prune.steps": (1, 100, True, False), "prune.batch_size": (1, 65_536, True, False),
    "prune.lr": (1e-12, 10, False, False), "prune.patience": (0, 10_000, True, False),
    "prune.epochs": (0, 10_000, True, False), "prune.seed": (0, 2**32 - 1, True, False),
    "quantize.calib_size": (1, 1_000_000, True, False), "quantize.seed": (0, 2**32 - 1, True, False),
    "quantize.gate_agreement": (0, 100, False, False), "quantize.gate_train": (0, 10**8, True, False),
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
        if value is None or (key in AUTO_KEYS and value == "auto"):
            continue
        kind = "an integer" if integer else "a number"
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (not integer or float(value).is_integer())
        if ok:
            ok = lo <= value < hi if open_hi else lo <= value <= hi  # nan and inf fail here
        if not ok:
            auto = " or auto" if key in AUTO_KEYS else ""
            raise BadInput(f"{where}: {key}: expected {kind} in [{lo:g}, {hi:g}{')' if open_hi else ']'}{auto}, "
                           f"got {value!r}")


def validate_config(cfg: dict, where: str = "config") -> None:
    """BadInput (one line: file, key, nearest valid name) for anything the steps would not accept."""
    from ecgtool.compress.quantize import METHODS
    from ecgtool.compress.gate import KEEP_FP32_CHOICES, keep_fp32_names
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
    _check_list(where, "quantize.keep_fp32", q.get("keep_fp32"), KEEP_FP32_CHOICES, "node group")
    try:
        keep_fp32_names(q.get("keep_fp32"))
    except BadInput as exc:
        raise BadInput(f"{where}: quantize.keep_fp32: {str(exc).split(': ', 1)[-1]}") from None
    _check_list(where, "export.formats", (cfg.get("export") or {}).get("formats"), FORMATS, "format")
    ratios = (cfg.get("prune") or {}).get("ratios")
    if ratios is not None and (not isinstance(ratios, list) or not all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and 0 < r < 1 for r in ratios)):
        raise BadInput(f"{where}: prune.ratios: expected a list of fractions between 0 and 1, got {ratios!r}")


#: the values of train.leads (train_models' `leads`)
LEADS = ("deploy", "any")


def _check_robust_training(where: str, t: dict, src: dict) -> None:
    """The issue-9 training options (rr_head, rr_trunk_dropout, rr_init, rr_bins, leads, augment) and
    data.import.keep_leads: their values, and what they need of each other, before any step runs."""
    from ecgtool.train.augment import parse_augment
    from ecgtool.train.rr import RR_INITS

    imp = src.get("import") if isinstance(src.get("import"), dict) else {}
    for key, value in (("train.rr_head", t.get("rr_head")), ("data.import.keep_leads", imp.get("keep_leads"))):
        if value is not None and not isinstance(value, bool):
            raise BadInput(f"{where}: {key}: expected true or false, got {value!r}")
    if t.get("leads") is not None and t["leads"] not in LEADS:
        raise _unknown(where, "train.leads", t["leads"], LEADS, "value")
    if t.get("leads") == "any" and not imp.get("keep_leads"):
        raise BadInput(f"{where}: train.leads: any needs data.import with keep_leads: true (every lead of each "
                       "record, the deployment lead first)")
    for key in ("rr_trunk_dropout", "rr_init", "rr_bins"):
        if t.get(key) not in (None, 0, "none") and not t.get("rr_head"):
            raise BadInput(f"{where}: train.{key}: applies to an RR-head model (train.rr_head: true)")
    if t.get("rr_init") not in (None, "none", *RR_INITS):
        raise _unknown(where, "train.rr_init", t["rr_init"], ("none", *RR_INITS), "value")
    if t.get("rr_bins") == 1:
        raise BadInput(f"{where}: train.rr_bins: 0 (off) or at least 2 bins, got 1")
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
    skipped = {"unavailable": unavailable_formats(list((cfg.get("export") or {}).get("formats") or []))}
    for step in STEPS:
        blob = json.dumps({"prev": prev, **{s: cfg.get(s) for s in sections[step]},
                           **(skipped if step == "export" and skipped["unavailable"] else {})},
                          sort_keys=True, default=str)
        out[step] = prev = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return out



def unavailable_formats(formats: list[str]) -> dict[str, str]:
    """format -> why it cannot be built here (its converter is not installed), for the formats in `formats`."""
    from ecgtool.export import unavailable

    return {f: why for f in formats if (why := unavailable(f)) is not None}


