"""ecgtool bench: one row per artifact, failures as rows, fair round-robin timing, outputs on disk."""

from __future__ import annotations

import csv
import importlib.util
import json
import time

import pytest
from click.testing import CliRunner

from ecgtool.bench.runner import TABLE_COLUMNS, clip_outliers, time_round_robin
from ecgtool.bench.discover import discover
from ecgtool.core.artifacts import shipped_files
from ecgtool.cli.main import main
from ecgtool.data.classes import DEFAULT_CLASSES


@pytest.fixture(scope="module")
def tiny(benched):
    return benched


def _row(rows, model, variant, runtime):
    found = [r for r in rows if (r["model"], r["variant"], r["runtime"]) == (model, variant, runtime)]
    assert len(found) == 1, (model, variant, runtime, [(r["model"], r["variant"], r["runtime"]) for r in rows])
    return found[0]


def test_one_row_per_artifact_with_status(tiny):
    run, data, rows = tiny
    keys = sorted((r["model"], r["variant"], r["runtime"]) for r in rows)
    assert keys == sorted([("resnet18", "fp32", "PyTorch"), ("resnet18", "int8", "ONNX Runtime"),
                           ("se_resnet18", "fp32", "PyTorch"), ("se_resnet18", "fp32", "ONNX Runtime"),
                           ("se_resnet18", "fp16", "TensorRT")])
    broken = _row(rows, "resnet18", "int8", "ONNX Runtime")
    assert broken["status"].startswith("failed: ") and "model.int8.onnx" in broken["status"]
    trt = _row(rows, "se_resnet18", "fp16", "TensorRT")
    expected = "TensorRT not installed" if importlib.util.find_spec("tensorrt") is None else "no CUDA device"
    assert trt["status"] == f"skipped: {expected}"
    for r in rows:
        if r["status"] == "ok":
            assert r["p95_ms"] >= r["p50_ms"] > 0 and r["throughput_sps"] > 0 and r["load_ms"] > 0
            assert 0 <= r["macro_f1"] <= 1 and 0 <= r["accuracy"] <= 1  # fractions in files and APIs
            assert set(r["per_class_f1"]) == set(DEFAULT_CLASSES)
            assert r["params"] > 0 and r["macs"] > r["params"]
            assert r["peak_mem_mb"] >= 0 and r["n_runs"] >= 5


def test_onnx_scores_like_the_pytorch_model_it_came_from(tiny):
    _, _, rows = tiny
    pt, ort = _row(rows, "se_resnet18", "fp32", "PyTorch"), _row(rows, "se_resnet18", "fp32", "ONNX Runtime")
    assert pt["status"] == ort["status"] == "ok"
    assert ort["macro_f1"] == pytest.approx(pt["macro_f1"], abs=1e-6)
    assert ort["params"] == pt["params"] and ort["confusion"] == pt["confusion"]


def test_size_on_disk_counts_the_shipped_files_only(tiny):
    run, _, rows = tiny
    folder = run / "se_resnet18"
    assert {f.name for f in shipped_files(folder)} == {"model.safetensors", "config.json"}
    pt = _row(rows, "se_resnet18", "fp32", "PyTorch")
    assert pt["size_mb"] == pytest.approx(sum(f.stat().st_size for f in shipped_files(folder)) / 1e6, abs=1e-4)
    assert _row(rows, "se_resnet18", "fp32", "ONNX Runtime")["size_mb"] == pytest.approx(
        (folder / "model.onnx").stat().st_size / 1e6, abs=1e-4)


def test_outputs_written_and_recorded(tiny):
    run, _, rows = tiny
    saved = json.loads((run / "bench.json").read_text())
    assert saved["machine"]["amx"] in ("present", "absent") and saved["machine"]["onnxruntime"]
    assert len(saved["rows"]) == len(rows)
    with open(run / "bench.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(rows) and all(f"f1_{c}" in table[0] for c in DEFAULT_CLASSES)
    md = (run / "bench.md").read_text()
    assert "AVX-512 VNNI" in md and "| " + " | ".join(TABLE_COLUMNS) + " |" in md
    manifest = json.loads((run / "manifest.json").read_text())["artifacts"]
    assert {"bench.json", "bench.csv", "bench.md"} <= set(manifest)


def test_discover_lists_each_artifact_once(tiny):
    run, _, _ = tiny
    found = discover([run, run / "se_resnet18", run / "se_resnet18" / "model.safetensors"])
    paths = [(c["path"], c["trt"]) for c in found]
    assert len(paths) == len(set(paths)) == 5
    assert sum(c["path"] == run / "se_resnet18" for c in found) == 1


def test_clip_outliers_drops_a_spike():
    kept = clip_outliers([1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 50.0])
    assert 50.0 not in kept and len(kept) == 6


def test_round_robin_interleaves_and_survives_a_failing_backend():
    calls = []
    count = {"bad": 0}

    def bad():
        count["bad"] += 1
        if count["bad"] > 3:
            raise RuntimeError("device lost")

    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b"), "bad": bad}
    times, errors = time_round_robin(fns, warmup=1, min_runs=6, min_time_s=0.0, burst_s=0.0)
    assert errors == {"bad": "RuntimeError: device lost"}
    assert len(times["a"]) == len(times["b"]) == 6
    timed = calls[2:]  # after one warm-up call each
    assert all(sorted(timed[i:i + 2]) == ["a", "b"] for i in range(0, len(timed), 2))


def test_round_robin_bursts_still_interleave():
    calls = []
    fns = {k: (lambda k=k: (calls.append(k), time.sleep(0.001))) for k in "ab"}
    times, _ = time_round_robin(fns, warmup=0, min_runs=40, min_time_s=0.0, burst_s=0.005)
    switches = sum(1 for p, q in zip(calls, calls[1:]) if p != q)
    assert len(times["a"]) >= 40 and len(times["b"]) >= 40 and switches >= 6


def test_cli_bad_input_exits_2(tmp_path, tiny):
    run, data, _ = tiny
    res = CliRunner().invoke(main, ["bench", str(tmp_path / "nothing"), "--data", str(data)])
    assert res.exit_code == 2 and "no such file or folder" in res.output
    res = CliRunner().invoke(main, ["bench", str(run), "--data", str(tmp_path)])
    assert res.exit_code == 2 and "not a prepared dataset" in res.output
    assert not (tmp_path / "bench.json").exists()


def test_discover_skips_deploy_bundles_recorded_in_the_run(tmp_path):
    """`package` records a bundle in its source's run (also one written outside it); bench must not bench the
    bundle's copy of the model again (nor an RR-baseline bundle's classifier, whose input is features)."""
    from tiny_run import make_run

    from ecgtool.deploy.package import package

    run, _ = make_run(tmp_path)
    before = {c["path"] for c in discover([run])}
    package(run / "se_resnet18", run / "bundle", precision="fp32")
    package(run / "se_resnet18", tmp_path / "elsewhere", precision="fp32")
    after = {c["path"] for c in discover([run])}
    assert after == before and not any("bundle" in str(p) or "elsewhere" in str(p) for p in after)
