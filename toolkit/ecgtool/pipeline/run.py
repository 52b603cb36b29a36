"""`ecgtool pipeline`: data -> train -> prune -> quantise -> export -> bench -> report from one YAML config.

With no config it runs the embedded default (default.yaml): synthetic data, SE-ResNet and ResNet
at depths 18 and 34 at width 16, the classical baseline, one pruning ratio, INT8 and FP16, every format
this machine runs (litert-int8 for microcontrollers where the [mcu] extra is installed; without it one line
says it was skipped and why). OUT is the run folder (model folders, bench.*, report.*) with the dataset in OUT/data.

The config (default, loading, validation, step hashes) is pipeline/config.py; the time budget pipeline/budget.py.
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

import datetime as _dt
import os
import time
from pathlib import Path
from typing import Any, Callable

import click

from ecgtool.core.files import read_json, write_json
from ecgtool.core.machine import resolve_threads
from ecgtool.core.manifest import record_artifact
from ecgtool.core.errors import BadInput
from ecgtool.core.names import BENCH_CSV, BENCH_JSON, BENCH_MD, CONFIG, METRICS, REPORT_HTML, RUN_JSON, WEIGHTS
from ecgtool.core.ui import as_percent, info, print_table, quiet_option
from ecgtool.pipeline import config as pc
from ecgtool.pipeline.budget import plan_training, say_plan
from ecgtool.pipeline.config import (KEEP, STATE, STEPS, VALUE_BOUNDS, default_config, load_config,  # noqa: F401
                                     section_keys, step_hashes, validate_config)


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


def _export_all(cfg: dict, out: Path, formats: list[str], extra: dict) -> list[Path]:
    from ecgtool.export import export
    from ecgtool.export.formats import FORMATS, RR_HEAD_FORMATS

    files = []
    missing = pc.unavailable_formats(formats)
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
                if opts.get("keep_fp32"):
                    opts["keep_fp32"] = _keep_fp32_for(folder, fmt, opts["keep_fp32"], out / "data")
                res = export(folder, fmt, data=out / "data", **opts)  # options the format does not take are left out
                files += [f for f in res.files if Path(f).exists()]
            except BadInput as exc:
                if not fmt.startswith("tensorrt"):
                    raise
                info(f"{folder.name} {fmt}: {exc} (bench reports this row as skipped)")
    return files


def _keep_fp32_for(folder: Path, fmt: str, groups: list[str], data: Path) -> list[str]:
    """quantize.keep_fp32 is run-wide: the groups of it that `folder`'s FP32 graph has (`none` when it has none of
    them), one line naming what was left out (se-gates on a plain ResNet), so that its INT8 is still built."""
    from ecgtool.compress.gate import NO_GROUP, SUSPECTS, keep_fp32_names, present_groups
    from ecgtool.export.int8 import ensure_onnx

    names = keep_fp32_names(groups)
    if names in ((), (SUSPECTS,)):  # `none` / `suspects` already mean "whichever the graph has"
        return list(groups)
    present = present_groups(ensure_onnx(folder, {"data": data}, []))
    absent = [g for g in names if g not in present]
    if absent:
        info(f"{folder.name} {fmt}: quantize.keep_fp32 {', '.join(absent)}: not in this graph, not applied to it "
             f"(its groups: {', '.join(present) or 'none'})")
    return [g for g in names if g in present] or [NO_GROUP]


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

    threads, why = resolve_threads(cfg["train"].get("threads"))
    bench_threads, _ = resolve_threads((cfg.get("bench") or {}).get("threads"))
    torch.set_num_threads(threads)  # prune fine-tunes in this process too
    plan = state.get("plan") if (state.get("plan") or {}).get("train_hash") == hashes["train"] else None
    train_done = (state["steps"].get("train") or {}).get("status") == "done"
    if plan is None and not train_done:
        plan = plan_training(cfg, out, threads)
        if plan is not None:
            plan["train_hash"] = hashes["train"]
    if plan is not None and not train_done:
        say_plan(plan, why)
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
                say_plan(plan, why)
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
