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
    "export": {"formats": ["tensorrt-fp16"]},
    "bench": {"threads": 1, "warmup": 1, "min_runs": 3, "min_time_s": 0.02, "throughput_batch": 8},
}


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipe") / "run"
    return out, run_pipeline(TINY, out)


def test_every_step_runs_and_the_report_has_every_artifact(tiny_pipeline):
    out, result = tiny_pipeline
    assert [result["steps"][s]["status"] for s in STEPS] == ["done"] * len(STEPS)
    rows = json.loads((out / "bench.json").read_text())["rows"]
    keys = {(r["model"], r["variant"], r["runtime"]) for r in rows}
    assert keys == {("se_resnet18", "fp32", "PyTorch"), ("se_resnet18", "fp32", "ONNX Runtime"),
                    ("se_resnet18", "fp16", "ONNX Runtime"), ("se_resnet18", "fp16", "TensorRT"),
                    ("se_resnet18-pruned50", "pruned50", "PyTorch"), ("se_resnet18-pruned50", "pruned50", "ONNX Runtime"),
                    ("se_resnet18-pruned50", "pruned50-fp16", "ONNX Runtime"),
                    ("se_resnet18-pruned50", "pruned50-fp16", "TensorRT")}
    assert all(r["status"] == "ok" for r in rows if r["runtime"] != "TensorRT")
    assert (out / "report.html").exists() and result["report"] == str(out / "report.html")
    state = json.loads((out / "pipeline.json").read_text())
    assert {s: state["steps"][s]["hash"] for s in STEPS} == step_hashes(load_config(TINY))


def test_resume_skips_finished_steps_and_redoes_changed_ones(tiny_pipeline):
    out, _ = tiny_pipeline
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
    assert {"tensorrt-fp16", "tensorrt-int8", "openvino-int8"} <= set(cfg["export"]["formats"])
