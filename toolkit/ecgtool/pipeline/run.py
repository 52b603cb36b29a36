"""`ecgtool pipeline`: data -> train -> prune -> quantise -> export -> bench -> report from one YAML config.

With no config it runs the embedded default (default.yaml): synthetic data, SE-ResNet and ResNet
at depths 18 and 34 at width 16, the classical baseline, one pruning ratio, INT8 and FP16, every format
this machine runs. OUT is the run folder (model folders, bench.*, report.*) with the dataset in OUT/data.

Resumable: OUT/pipeline.json keeps a hash of each step's config (chained with the steps before it); a step
whose hash matches and whose artifacts exist is skipped. A changed data or train step is refused rather
than overwritten (those are the expensive results); later steps are simply redone.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import os
import time
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import click

from ecgtool.core.files import read_json, write_json
from ecgtool.core.manifest import record_artifact
from ecgtool.core.errors import BadInput
from ecgtool.core.ui import as_percent, info, print_table, quiet_option

STATE = "pipeline.json"
STEPS = ("data", "train", "prune", "quantize", "export", "bench", "report")
#: Steps whose results are too costly to overwrite silently when their config changes.
KEEP = ("data", "train")


def default_config() -> dict:
    """The embedded default config (default.yaml, package data)."""
    import yaml

    return yaml.safe_load(resources.files("ecgtool.pipeline").joinpath("default.yaml").read_text(encoding="utf-8"))


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
    unknown = sorted(set(cfg) - {*STEPS, "compress"})
    if unknown:
        raise BadInput(f"{where}: unknown section(s) {', '.join(unknown)} (known: {', '.join([*STEPS, 'compress'])})")
    src = cfg["data"]
    if len([k for k in ("synth", "import") if k in src]) != 1:
        raise BadInput(f"{where}: data needs exactly one of `synth` or `import`")
    if "import" in src and not {"format", "src"} <= set(src["import"] or {}):
        raise BadInput(f"{where}: data.import needs `format` and `src`")
    return cfg


def step_hashes(cfg: dict) -> dict[str, str]:
    """sha256 of each step's config chained with the previous step's hash (a change invalidates what follows)."""
    sections = {"data": ["data"], "train": ["train"], "prune": ["compress", "prune"],
                "quantize": ["compress", "quantize"], "export": ["compress", "quantize", "export"],
                "bench": ["bench"], "report": ["report"]}
    out, prev = {}, ""
    for step in STEPS:
        blob = json.dumps({"prev": prev, **{s: cfg.get(s) for s in sections[step]}}, sort_keys=True, default=str)
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
    archs, depths = list(t.pop("archs")), list(t.pop("depths"))
    baseline = t.pop("baseline", False)
    rows = train_models(out / "data", archs + (["rr_baseline"] if baseline else []), depths, out,
                        resume=(out / "run.json").exists(), device=t.pop("device", "cpu"), **t)
    return [out / r["model"] / "metrics.json" for r in rows]


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
        if not (out / name / "config.json").exists():
            raise BadInput(f"{out / name}: compress.models names {name}, which the train step did not make")
        for r in ratios:
            res = prune_artifact(out / name, out / "data", r, fine_tune_epochs=epochs, device=device,
                                 overwrite=True, **p)
            done.append(Path(res["out"]) / "model.safetensors")
    return done


def _export_all(cfg: dict, out: Path, formats: list[str], extra: dict) -> list[Path]:
    from ecgtool.export import export

    files = []
    for folder in _compressed(cfg, out):
        for fmt in formats:
            try:
                res = export(folder, fmt, data=out / "data", **(extra if fmt.endswith("int8") else {}))
                files += [f for f in res.files if Path(f).exists()]
            except BadInput as exc:
                if not fmt.startswith("tensorrt"):
                    raise
                info(f"{folder.name} {fmt}: {exc} (bench reports this row as skipped)")
    return files


def _step_quantize(cfg: dict, out: Path, resume: bool) -> list[Path]:
    q = cfg["quantize"]
    unknown = set(q.get("precisions") or []) - {"int8", "fp16"}
    if unknown:
        raise BadInput(f"config: quantize.precisions {sorted(unknown)} unknown (int8, fp16)")
    formats = [f"onnx-{p}" for p in q.get("precisions") or []]
    return _export_all(cfg, out, formats, {"method": q["method"]} if q.get("method") else {})


def _step_export(cfg: dict, out: Path, resume: bool) -> list[Path]:
    method = cfg["quantize"].get("method")
    return _export_all(cfg, out, list(cfg["export"].get("formats") or []), {"method": method} if method else {})


def _step_bench(cfg: dict, out: Path, resume: bool) -> list[Path]:
    from ecgtool.bench.runner import bench

    bench([out], out / "data", out=out, **(cfg.get("bench") or {}))
    return [out / "bench.json", out / "bench.csv", out / "bench.md"]


def _step_report(cfg: dict, out: Path, resume: bool) -> list[Path]:
    from ecgtool.report.build import report

    return report(out, **(cfg.get("report") or {})).paths


STEP_FUNCS: dict[str, Callable[[dict, Path, bool], list[Path]]] = {
    "data": _step_data, "train": _step_train, "prune": _step_prune, "quantize": _step_quantize,
    "export": _step_export, "bench": _step_bench, "report": _step_report}


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
    out.mkdir(parents=True, exist_ok=True)
    state["config"] = cfg
    summary: dict[str, Any] = {"out": str(out), "steps": {}}
    t_all = time.perf_counter()
    for i, step in enumerate(STEPS, 1):
        prev = state["steps"].get(step) or {}
        if prev.get("hash") == hashes[step] and prev.get("status") == "done" and \
                all((out / a).exists() for a in prev.get("artifacts", [])):
            info(f"[{i}/{len(STEPS)}] {step}: up to date, skipped")
            summary["steps"][step] = {"status": "skipped", "seconds": 0.0}
            continue
        info(f"[{i}/{len(STEPS)}] {step} ...")
        resume = prev.get("hash") == hashes[step]
        state["steps"][step] = {"hash": hashes[step], "status": "started"}
        write_json(state_path, state)
        t0 = time.perf_counter()
        artifacts = STEP_FUNCS[step](cfg, out, resume)
        seconds = round(time.perf_counter() - t0, 1)
        state["steps"][step] = {"hash": hashes[step], "status": "done", "seconds": seconds,
                                "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                                "artifacts": sorted({os.path.relpath(Path(a).resolve(), out.resolve()) for a in artifacts})}
        write_json(state_path, state)
        summary["steps"][step] = {"status": "done", "seconds": seconds}
        info(f"[{i}/{len(STEPS)}] {step}: done in {seconds:.1f} s")
    summary["seconds"] = round(time.perf_counter() - t_all, 1)
    summary["report"] = str(out / "report.html")
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
    from ecgtool.bench.runner import SCREEN_COLUMNS

    rows = read_json(Path(out) / "bench.json")["rows"]
    print_table(as_percent(rows), SCREEN_COLUMNS, title="ecgtool pipeline (F1 and accuracy in %, latency in ms, size in MB; "
                "all columns in bench.md)")
    steps = ", ".join(f"{k} {v['status']} {v['seconds']:.0f} s" for k, v in result["steps"].items())
    click.echo(f"steps: {steps}; total {result['seconds']:.0f} s")
    click.echo(f"report: {result['report']}")
