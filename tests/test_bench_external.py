"""bench --external: a macro-F1 column per external dataset (classes by name), worst_f1, and the report's
cross-dataset table and recommendation by the worst F1."""

from __future__ import annotations

import numpy as np
import pytest

from ecgtool.data.dataset import write_dataset


def _external(out, classes, seed=5, per_class=10, length=400):
    """A 'device' with a subset of the classes (and one the models do not know), the same sine rule as tiny_run."""
    from tiny_run import DEFAULT_CLASSES

    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(classes)), per_class)
    k = np.array([DEFAULT_CLASSES.index(c) if c in DEFAULT_CLASSES else 9 for c in classes])[labels]
    t = np.linspace(0, 1, length, dtype=np.float32)
    x = np.sin(2 * np.pi * (2 + k[:, None]) * t)[:, None, :] + 0.3 * rng.standard_normal((len(labels), 1, length))
    recs = [{"record_id": f"e{i}", "label": classes[c]} for i, c in enumerate(labels)]
    idx = np.arange(len(labels))
    return write_dataset(out, x.astype(np.float32), labels, classes, recs, {"train": idx, "val": [], "test": []},
                         {"sampling_rate": 40})


def test_bench_external_adds_columns_and_report_ranks_by_worst(tmp_path):
    from tiny_run import BENCH_OPTIONS, make_run

    from ecgtool.bench.runner import bench
    from ecgtool.report.build import report

    run, data = make_run(tmp_path)
    ext = _external(tmp_path / "handheld", ["AF", "Normal", "Noise"])
    rows = bench([run], data, out=run, external=[ext], **BENCH_OPTIONS).rows
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok
    for r in ok:
        e = r["external"]["handheld"]
        assert e["n"] == 20 and e["missing_in_model"] == ["Noise"] and e["excluded_windows"] == 10
        assert set(e["missing_in_data"]) == {"AFL", "FAB", "SB", "ST", "PVC"}
        assert 0 <= r["ext_f1_handheld"] <= 1 and r["worst_f1"] == min(r["macro_f1"], r["ext_f1_handheld"])
        assert set(e["per_class_f1"]) == {"AF", "Normal"}  # the macro is their mean (sklearn, classes present)
        assert abs(sum(e["per_class_f1"].values()) / 2 - r["ext_f1_handheld"]) < 1e-5
    assert "ext_f1_handheld" in (run / "bench.md").read_text()
    result = report(run)
    md = (run / "report.md").read_text()
    assert "Across datasets" in md and "worst" in result.recommendation[0] and "Noise" in md
    import json

    settings = json.loads((run / "bench.json").read_text())["settings"]
    assert isinstance(settings["rate_check"], list) and isinstance(settings["external"][0]["rate_check"], list)
    assert "Per class on each external dataset" in md and "| handheld |" in md
    assert "Labels against the rate definitions" in md and "- handheld: " in md and "- own data: " in md


def test_external_scores_leave_out_classes_a_model_never_trained_on(tmp_path):
    """A model whose training split had no AF (config.json train_counts) is scored on the external data's
    Normal windows only, and the report says so; a model that learnt AF is scored on both."""
    from tiny_run import BENCH_OPTIONS, make_run

    from ecgtool.bench.runner import bench
    from ecgtool.core.files import read_json, write_json
    from ecgtool.report.build import report

    run, data = make_run(tmp_path)
    cfg_path = run / "se_resnet18" / "config.json"
    cfg = read_json(cfg_path)
    counts = cfg["extra"]["train_counts"]
    assert set(counts) == set(cfg["classes"]) and counts["AF"] > 0  # written by train
    write_json(cfg_path, {**cfg, "extra": {**cfg["extra"], "train_counts": {**counts, "AF": 0}}})
    ext = _external(tmp_path / "handheld", ["AF", "Normal"])
    rows = [r for r in bench([run], data, out=run, external=[ext], **BENCH_OPTIONS).rows if r["status"] == "ok"]
    se = [r for r in rows if r["model"] == "se_resnet18"]
    plain = [r for r in rows if r["model"] == "resnet18"]
    assert se and plain and any(r["runtime"] != "PyTorch" for r in se)  # the ONNX file reads its folder's counts
    for r in se:
        e = r["external"]["handheld"]
        assert e["untrained_in_model"] == ["AF"] and e["n"] == 10 and e["excluded_windows"] == 10
        assert "AF" not in e["missing_in_data"]
        assert set(e["per_class_f1"]) == {"Normal"} and r["ext_f1_handheld"] == e["per_class_f1"]["Normal"]
    for r in plain:
        e = r["external"]["handheld"]
        assert e["untrained_in_model"] == [] and e["n"] == 20 and set(e["per_class_f1"]) == {"AF", "Normal"}
    report(run)
    md = (run / "report.md").read_text()
    assert "handheld, se_resnet18: never trained on AF" in md


def test_rate_lines_name_each_dataset_and_what_contradicts_its_definition():
    from ecgtool.report.external import rate_lines

    assert rate_lines({}) == []  # a bench without the check (older bench.json): nothing said
    lines = rate_lines({"rate_check": [], "external": [{"name": "mitdb", "rate_check": ["Normal 16.3 % of 4847 ..."]}]})
    assert lines == ["own data: every rate-defined class within its definition", "mitdb: Normal 16.3 % of 4847 ..."]


def test_recommendation_by_worst_prefers_the_artifact_that_transfers():
    from ecgtool.report.build import recommendation_block
    from ecgtool.report.external import recommendation_by_worst

    base = {"status": "ok", "variant": "fp32", "runtime": "PyTorch", "size_mb": 1.0, "p50_ms": 1.0}
    rows = [{**base, "model": "overfit", "macro_f1": 0.95, "ext_f1_dev": 0.50, "worst_f1": 0.50},
            {**base, "model": "robust", "macro_f1": 0.85, "ext_f1_dev": 0.80, "worst_f1": 0.80}]
    assert "overfit" in recommendation_block(rows)[0]
    lines = recommendation_by_worst(rows, 1.0, recommendation_block)
    assert "worst" in lines[0] and "**robust" in lines[1] and "80.00 %" in lines[1]


def test_bench_refuses_unlabelled_external(tmp_path):
    from tiny_run import make_dataset

    from ecgtool.bench.external import load_externals
    from ecgtool.core.errors import BadInput
    from ecgtool.data.dataset import load_dataset

    ds = load_dataset(make_dataset(tmp_path / "d"))
    idx = np.arange(len(ds))
    write_dataset(tmp_path / "u", np.asarray(ds.signals), np.full(len(idx), -1), ds.classes, ds.records,
                  {"train": idx, "val": [], "test": []}, {"sampling_rate": 40})
    with pytest.raises(BadInput, match="unlabelled"):
        load_externals([tmp_path / "u"])


def test_pipeline_config_accepts_bench_external():
    from ecgtool.pipeline.run import default_config, section_keys, validate_config

    assert "external" in section_keys()["bench"]
    cfg = default_config()
    cfg["bench"] = {**(cfg.get("bench") or {}), "external": ["/data/handheld"]}
    validate_config(cfg)  # no BadInput


def test_tensorrt_row_gets_external_columns_by_its_simulated_arithmetic(tmp_path):
    """A TensorRT INT8 row is not timed here, but its F1 is (simulated QDQ): so are its external columns and its
    worst_f1, from the same unoptimised graph."""
    from tiny_run import BENCH_OPTIONS, make_run

    from ecgtool.bench.external import external_metrics, load_externals
    from ecgtool.bench.runner import bench
    from ecgtool.export.int8 import quantize_folder
    from ecgtool.runtime.onnxruntime import OnnxRuntimePredictor

    run, data = make_run(tmp_path)
    trt = quantize_folder(run / "se_resnet18", data, target="tensorrt", calib_size=21, calib_dir=tmp_path / "c",
                          gate=False)["path"]
    ext = _external(tmp_path / "handheld", ["AF", "Normal"])
    rows = bench([run], data, out=run, external=[ext], **BENCH_OPTIONS).rows
    row = next(r for r in rows if r["runtime"] == "TensorRT" and r["precision"] == "int8")
    assert row["f1_source"] == "simulated-qdq" and row["status"].startswith("skipped")
    want = external_metrics(OnnxRuntimePredictor(trt, threads=1, optimize=False), load_externals([ext])[0], 16)
    assert row["ext_f1_handheld"] == want["macro_f1"] and row["external"]["handheld"]["n"] == 20
    assert row["worst_f1"] == min(row["macro_f1"], row["ext_f1_handheld"])
