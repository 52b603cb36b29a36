"""ecgtool pipeline: a tiny config end to end, resume skips finished steps, a changed step is redone or refused."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from ecgtool.cli.main import main
from ecgtool.core.errors import BadInput
from ecgtool.pipeline.run import STEPS, load_config, run_pipeline, step_hashes

TINY = {
    "data": {"synth": {"per_class": 8, "seed": 1}},
    "train": {"archs": ["se_resnet"], "depths": [18], "width": 8, "epochs": 1, "batch_size": 32, "baseline": False},
    "compress": {"models": ["se_resnet18"]},
    "prune": {"ratios": [0.5], "epochs": 1},
    "quantize": {"precisions": ["fp16"]},
    "export": {"formats": ["tensorrt-fp16", "litert-int8"]},  # litert-int8 where the [mcu] extra is installed
    "bench": {"threads": 1, "warmup": 1, "min_runs": 3, "min_time_s": 0.02, "throughput_batch": 8},
}


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    import contextlib
    import io

    from ecgtool.core.ui import set_quiet

    set_quiet(False)  # an earlier test's `--quiet` would otherwise silence the lines checked below
    out = tmp_path_factory.mktemp("pipe") / "run"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        result = run_pipeline(TINY, out)
    return out, result, err.getvalue()


def _mcu_extra_missing() -> str | None:
    from ecgtool.export import unavailable

    return unavailable("litert-int8")


def test_every_step_runs_and_the_report_has_every_artifact(tiny_pipeline):
    out, result, err = tiny_pipeline
    assert [result["steps"][s]["status"] for s in STEPS] == ["done"] * len(STEPS)
    rows = json.loads((out / "bench.json").read_text())["rows"]
    keys = {(r["model"], r["variant"], r["runtime"]) for r in rows}
    expected = {("se_resnet18", "fp32", "PyTorch"), ("se_resnet18", "fp32", "ONNX Runtime"),
                ("se_resnet18", "fp16", "ONNX Runtime"), ("se_resnet18", "fp16", "TensorRT"),
                ("se_resnet18-pruned50", "pruned50", "PyTorch"), ("se_resnet18-pruned50", "pruned50", "ONNX Runtime"),
                ("se_resnet18-pruned50", "pruned50-fp16", "ONNX Runtime"),
                ("se_resnet18-pruned50", "pruned50-fp16", "TensorRT")}
    missing = _mcu_extra_missing()
    if missing is None:  # the [mcu] extra: litert-int8 for the compressed model and its pruned child, in TFLM
        expected |= {("se_resnet18", "int8", "TFLite Micro"), ("se_resnet18-pruned50", "pruned50-int8", "TFLite Micro")}
        mcu = [r for r in rows if r["runtime"] == "TFLite Micro"]
        assert all(r["flash_kb"] > 0 and r["ram_kb"] > 0 for r in mcu)
        assert (out / "report_pareto_flash.png").stat().st_size > 0
        assert "flash/RAM KB" in (out / "report.md").read_text()  # the report table's column (flash_kb in report.csv)
    else:  # one line says it was skipped and why; the rest ran
        assert err.count("export litert-int8: skipped") == 1 and missing in err
        assert not list(out.rglob("*.tflite"))
    assert keys == expected
    assert all(r["status"] == "ok" for r in rows if r["runtime"] != "TensorRT")
    assert (out / "report.html").exists() and result["report"] == str(out / "report.html")
    state = json.loads((out / "pipeline.json").read_text())
    assert {s: state["steps"][s]["hash"] for s in STEPS} == step_hashes(load_config(TINY))


def test_litert_is_skipped_in_one_line_when_the_converter_does_not_import(tmp_path, monkeypatch, capsys):
    import sys

    from ecgtool.core.ui import set_quiet

    set_quiet(False)  # an earlier test's `--quiet` would otherwise silence the line checked below
    monkeypatch.setitem(sys.modules, "litert_torch", None)  # `import litert_torch` now fails, installed or not
    cfg = {**TINY, "prune": {"ratios": []}, "quantize": {"precisions": []}, "export": {"formats": ["litert-int8"]}}
    result = run_pipeline(cfg, tmp_path / "run")
    err = capsys.readouterr().err
    assert [result["steps"][s]["status"] for s in STEPS] == ["done"] * len(STEPS)
    lines = [line for line in err.splitlines() if "litert-int8" in line]
    assert lines == ["export litert-int8: skipped, the [mcu] extra is not installed (litert_torch not found): "
                     "pip install -e '.[mcu]'"]
    assert not list((tmp_path / "run").rglob("*.tflite"))
    assert {r["runtime"] for r in result["rows"]} == {"PyTorch"}  # nothing else was asked for
    state = json.loads((tmp_path / "run" / "pipeline.json").read_text())
    assert state["steps"]["export"]["hash"] == step_hashes(load_config(cfg))["export"]
    monkeypatch.undo()  # with the converter back, the export step's hash changes (a resumed run builds it)
    if _mcu_extra_missing() is None:
        assert step_hashes(load_config(cfg))["export"] != state["steps"]["export"]["hash"]


def test_resume_skips_finished_steps_and_redoes_changed_ones(tiny_pipeline):
    out, _, _ = tiny_pipeline
    weights = out / "se_resnet18" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    again = run_pipeline(TINY, out)
    assert [again["steps"][s]["status"] for s in STEPS] == ["skipped"] * len(STEPS)
    bench_cfg = {**TINY, "bench": {**TINY["bench"], "min_runs": 4}}
    changed = run_pipeline(bench_cfg, out)
    assert [changed["steps"][s]["status"] for s in STEPS] == ["skipped"] * 5 + ["done", "done"]
    assert weights.stat().st_mtime_ns == before
    with pytest.raises(BadInput, match="train step was run with another config"):
        run_pipeline({**TINY, "train": {**TINY["train"], "epochs": 2}}, out)


def test_bad_configs_exit_2_and_write_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [oops\n")
    res = CliRunner().invoke(main, ["pipeline", "--config", str(bad), "--out", str(tmp_path / "o1")])
    assert res.exit_code == 2 and "bad.yaml: not valid YAML" in res.output
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("trian: {epochs: 1}\n")
    res = CliRunner().invoke(main, ["pipeline", "--config", str(unknown), "--out", str(tmp_path / "o2")])
    assert res.exit_code == 2 and "unknown section(s) trian" in res.output
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_default_config_is_the_documented_job():
    cfg = load_config(None)
    assert cfg["train"]["archs"] == ["se_resnet", "resnet"] and cfg["train"]["depths"] == [18, 34]
    assert cfg["train"]["baseline"] and "synth" in cfg["data"]
    assert set(cfg["quantize"]["precisions"]) == {"int8", "fp16"} and len(cfg["prune"]["ratios"]) == 1
    assert {"tensorrt-fp16", "tensorrt-int8", "openvino-int8", "litert-int8"} <= set(cfg["export"]["formats"])


@pytest.mark.parametrize("text, key, hint", [
    ("train: {epoch: 3}\n", "train.epoch", "did you mean epochs?"),
    ("train: {archs: [se_resent]}\n", "train.archs", "did you mean se_resnet?"),
    ("export: {formats: [onnx-int9]}\n", "export.formats", "did you mean onnx-int8?"),
    ("train: {depths: [19]}\n", "train.depths", "did you mean 18?"),
    ("bench: {thread: 1}\n", "bench.thread", "did you mean threads?"),
    ("prune: {ratio: [0.5]}\n", "prune.ratio", "did you mean ratios?"),
])
def test_a_misspelt_key_or_value_exits_2_in_one_line_before_any_step(tmp_path, text, key, hint):
    cfg = tmp_path / "my.yaml"
    cfg.write_text(text)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["pipeline", "--config", str(cfg), "--out", str(out)])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ecgtool: error: ") and str(cfg) in lines[0], res.output
    assert key in lines[0] and hint in lines[0], lines[0]
    assert not out.exists()


def test_valid_keys_come_from_the_step_functions():
    from ecgtool.pipeline.run import section_keys

    keys = section_keys()
    assert {"lr", "patience", "epochs", "width", "budget_s", "archs"} <= set(keys["train"])
    assert {"importance", "ratios", "epochs"} <= set(keys["prune"]) and "model_dir" not in keys["prune"]
    assert {"threads", "warmup", "min_runs"} <= set(keys["bench"]) and "paths" not in keys["bench"]


def test_shared_defaults_reach_the_pipeline_train_and_bench():
    import inspect

    from ecgtool.bench.runner import bench
    from ecgtool.train import defaults as D
    from ecgtool.train.fit import fit
    from ecgtool.train.run import train_models

    cfg = load_config(None)
    assert (cfg["train"]["lr"], cfg["train"]["patience"], cfg["train"]["batch_size"]) == (D.LR, D.PATIENCE, D.BATCH_SIZE)
    assert cfg["train"]["threads"] == cfg["bench"]["threads"] == D.THREADS
    for fn in (fit, train_models):
        params = inspect.signature(fn).parameters
        assert (params["lr"].default, params["patience"].default) == (D.LR, D.PATIENCE)
    assert inspect.signature(bench).parameters["threads"].default == D.THREADS


def test_the_budget_sizes_the_epochs_and_the_plan_is_kept_for_a_resume(tmp_path, monkeypatch):
    from ecgtool.pipeline import budget as pr

    monkeypatch.setattr(pr, "probe_ms_per_record", lambda *a, **k: 1.0)
    cfg = load_config({**TINY, "train": {**TINY["train"], "epochs": 50, "budget_s": 1e-3}})
    plan = pr.plan_training(cfg, tmp_path, 1)
    assert plan["epochs"] == 1 and plan["expected_s"] > 0
    big = pr.plan_training(load_config({**TINY, "train": {**TINY["train"], "epochs": 5, "budget_s": 1e6}}), tmp_path, 1)
    assert big["epochs"] == 5
    assert pr.plan_training(load_config({**TINY, "train": {**TINY["train"], "budget_s": 0}}), tmp_path, 1) is None


def test_the_plan_counts_the_rr_baselines_features_for_every_window(tmp_path, monkeypatch):
    """With the baseline on, the expected duration adds its feature time, probed on synthetic windows: every
    window once (train) and the test windows again (bench), at the probed ms per window."""
    from ecgtool.pipeline import budget as pr

    monkeypatch.setattr(pr, "probe_ms_per_record", lambda *a, **k: 1.0)
    off = pr.plan_training(load_config(TINY), tmp_path, 1)
    monkeypatch.setattr(pr, "probe_feature_ms", lambda *a, **k: 100.0)
    on = pr.plan_training(load_config({**TINY, "train": {**TINY["train"], "baseline": True}}), tmp_path, 1)
    n = 8 * 7  # per_class 8, seven classes
    assert off["feature_ms_per_window"] == 0 and on["feature_ms_per_window"] == 100.0
    assert on["baseline_s"] == round((n + (n - int(0.64 * n) - int(0.16 * n))) * 0.1 + 5)
    assert on["expected_s"] - off["expected_s"] == pytest.approx(on["baseline_s"], abs=1)
    # on 2 threads the train part runs in 2 processes where there are enough windows (baseline.features)
    from ecgtool.baseline import features as F

    monkeypatch.setattr(F, "PARALLEL_MIN", 1)
    monkeypatch.setattr(F, "CHUNK", 8)
    two = pr.plan_training(load_config({**TINY, "train": {**TINY["train"], "baseline": True}}), tmp_path, 2)
    assert two["baseline_s"] == round((n / 2 + (n - int(0.64 * n) - int(0.16 * n))) * 0.1 + 5)


def test_the_feature_probe_times_the_real_feature_code():
    from ecgtool.data.synth import FS, synthesize
    from ecgtool.pipeline.budget import probe_feature_ms

    sample, _, _ = synthesize(per_class=1, seed=1)
    assert 0.05 < probe_feature_ms(sample, FS, seconds=0.1) < 5000


def test_the_plan_counts_a_litert_export_for_each_model_that_fits_the_flash_budget(monkeypatch):
    """The expected duration adds LITERT_S per litert-* export that _fits_mcu would build: the default's
    se_resnet18 w16 (~560 KB estimated) is over 256 KB and its 50 %-pruned child (~150 KB) is under."""
    from ecgtool.pipeline import budget as pr
    from ecgtool.pipeline import config as pc

    monkeypatch.setattr(pc, "unavailable_formats", lambda formats: {})
    cfg = load_config(None)
    assert cfg["export"]["mcu_flash_kb"] == 256 and cfg["prune"]["ratios"] == [0.5]
    assert pr._litert_s(cfg, 16, 7, 2000) == pr.LITERT_S
    assert pr._litert_s({**cfg, "export": {**cfg["export"], "mcu_flash_kb": None}}, 16, 7, 2000) == 2 * pr.LITERT_S
    assert pr._litert_s({**cfg, "export": {**cfg["export"], "mcu_flash_kb": 100}}, 16, 7, 2000) == 0
    assert pr._litert_s({**cfg, "export": {**cfg["export"], "formats": ["onnx-int8"]}}, 16, 7, 2000) == 0


def test_microcontroller_formats_only_for_models_whose_flash_estimate_fits(trained_source, capsys):
    """export.mcu_flash_kb: litert-* is built for a model only where 1 byte per stored parameter + the TFLM
    runtime fits; the estimate counts the weights file's parameters, and the skip is one line naming the model."""
    from safetensors.numpy import load_file

    from ecgtool.core.names import WEIGHTS
    from ecgtool.core.ui import set_quiet
    from ecgtool.pipeline.run import _fits_mcu
    from ecgtool.runtime.tflm import RUNTIME_FLASH_BYTES, int8_flash_estimate_kb

    folder = trained_source / "run" / "se_resnet18"
    set_quiet(False)
    params = sum(int(v.size) for v in load_file(str(folder / WEIGHTS)).values())
    est = int8_flash_estimate_kb(folder / WEIGHTS)
    assert est == pytest.approx((params + RUNTIME_FLASH_BYTES) / 1024)
    assert _fits_mcu(folder, None, "litert-int8") and _fits_mcu(folder, est + 1, "litert-int8")
    capsys.readouterr()
    assert not _fits_mcu(folder, est - 1, "litert-int8")
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"export litert-int8: {folder.name} skipped") and "export.mcu_flash_kb" in line


def test_mcu_flash_limit_is_bounded(tmp_path):
    with pytest.raises(BadInput, match="export.mcu_flash_kb"):
        load_config({**TINY, "export": {"formats": ["litert-int8"], "mcu_flash_kb": 0}})


# --- the issue-9 training options in the pipeline config -------------------------------------------------

#: the robust recipe as pipeline keys: RR-head hybrid, a random lead per training record, device-shift augmentation
ROBUST_TRAIN = {"rr_head": True, "rr_trunk_dropout": 0.5, "leads": "any", "augment": "device-shift"}


def _robust(src="/data/challenge", **train) -> dict:
    return {**TINY, "data": {"import": {"format": "challenge", "src": src, "keep_leads": True}},
            "train": {**TINY["train"], **ROBUST_TRAIN, **train}}


def test_issue9_train_keys_validate_and_reach_the_train_step(tmp_path, monkeypatch):
    from ecgtool.pipeline import run as pr
    from ecgtool.train import run as tr

    load_config({**TINY, "train": {**TINY["train"], "rr_head": True, "augment": ["bandlimit", "mains"]}})
    cfg = load_config(_robust())
    got = {}
    monkeypatch.setattr(tr, "train_models", lambda *a, **k: got.update(k) or [])
    pr._step_train(cfg, tmp_path, False)
    assert {k: got[k] for k in ROBUST_TRAIN} == ROBUST_TRAIN


@pytest.mark.parametrize("cfg, match", [
    (_robust(leads="all"), "train.leads: unknown value all"),
    ({**TINY, "train": {**TINY["train"], "leads": "any"}}, "keep_leads: true"),
    (_robust(rr_head=False), "rr_trunk_dropout: applies to an RR-head model"),
    (_robust(rr_head="yes"), "train.rr_head: expected true or false"),
    ({**TINY, "train": {**TINY["train"], "rr_init": "logreg-frozen"}}, "train.rr_init: applies to an RR-head model"),
    ({**TINY, "train": {**TINY["train"], "rr_bins": 16}}, "train.rr_bins: applies to an RR-head model"),
    (_robust(rr_init="logreg-frozn"), "train.rr_init: unknown value logreg-frozn .did you mean logreg-frozen"),
    (_robust(rr_bins=1), "train.rr_bins: 0 .off. or at least 2 bins"),
    (_robust(rr_bins=2.5), r"train.rr_bins: expected an integer"),
    (_robust(augment="device-shfit"), "train.augment: unknown augmentation 'device-shfit'"),
    (_robust(rr_trunk_dropout=1.5), r"train.rr_trunk_dropout: expected a number in \[0, 1\)"),
    ({**_robust(), "data": {"import": {"format": "challenge", "src": "/x", "keep_leads": "yes"}}},
     "data.import.keep_leads: expected true or false"),
])
def test_issue9_train_keys_with_bad_values_are_refused_before_any_step(cfg, match):
    with pytest.raises(BadInput, match=match):
        load_config(cfg)


@pytest.mark.slow  # a real pipeline run on 12-lead records: import, RR features of every lead, INT8, bench (~1-3 min)
def test_robust_recipe_runs_end_to_end_on_keep_leads_challenge_records(tmp_path, capsys):
    from conftest import shared_data

    from ecgtool.core.ui import set_quiet

    set_quiet(False)
    src = shared_data("cinc2021-sample")
    cfg = _robust(str(src))
    cfg["data"]["import"].update(split="random")
    cfg["quantize"] = {"precisions": ["int8"]}
    cfg["export"] = {"formats": ["openvino-fp32"]}  # not for an RR-head model: skipped in one line
    out = tmp_path / "run"
    result = run_pipeline(cfg, out)
    assert [result["steps"][s]["status"] for s in STEPS] == ["done"] * len(STEPS)
    conf = json.loads((out / "se_resnet18" / "config.json").read_text())
    assert conf["in_channels"] == 1 and conf["rr_features"] and conf["extra"]["leads"] == "any"
    assert conf["extra"]["augment"] and json.loads((out / "data" / "meta.json").read_text())["channels"] == 12
    rows = json.loads((out / "bench.json").read_text())["rows"]
    ok = {(r["model"], r["variant"], r["runtime"]) for r in rows if r["status"] == "ok"}
    assert {("se_resnet18", "int8", "ONNX Runtime"), ("se_resnet18-pruned50", "pruned50", "PyTorch")} <= ok
    assert "export openvino-fp32: se_resnet18 skipped, an RR-head model" in capsys.readouterr().err
