"""Microcontroller export (litert-int8 / litert-fp32) run in the real TFLM interpreter: I/O quantisation recorded,
agreement with PyTorch, the smallest arena, the C export, bench's flash/RAM columns, unsupported layers and ops.

Skips (with the reason) where the [mcu] extra (litert-torch, ai-edge-quantizer, tflite-micro) is not installed.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import copy_trained
from tiny_dataset import LENGTH

from ecgtool import runtime
from ecgtool.core.errors import BadInput
from ecgtool.core.files import read_json
from ecgtool.core.manifest import manifest_entry
from ecgtool.core.names import MCU_MODEL_DATA_CC, MCU_MODEL_DATA_H, litert_sidecar, mcu_c_dir
from ecgtool.export.formats import FORMATS
from ecgtool.export.mcu_rewrite import check_layers, mcu_rewrite
from ecgtool.models import get_model, save_model

NO_EXTRA = "the [mcu] extra is not installed (pip install -e '.[mcu]')"


def _need_extra():
    pytest.importorskip("litert_torch", reason=NO_EXTRA)
    pytest.importorskip("ai_edge_quantizer", reason=NO_EXTRA)
    pytest.importorskip("tflite_micro", reason=NO_EXTRA)


@pytest.fixture(scope="module")
def int8(tmp_path_factory, trained_source):
    """(model folder, dataset, .tflite, CLI output) after `ecgtool export --format litert-int8` of the tiny se_resnet18."""
    _need_extra()
    from ecgtool.cli.main import main

    folder, data = copy_trained(trained_source, tmp_path_factory.mktemp("mcu"))
    res = CliRunner().invoke(main, ["export", str(folder), "--format", "litert-int8", "--data", str(data),
                                    "--calib-dir", str(folder.parent / "calib")])
    assert res.exit_code == 0, res.output
    return folder, data, folder / FORMATS["litert-int8"].artifact, res.output


def test_rewrite_is_exact_in_fp32_and_refuses_unknown_layers():
    torch.manual_seed(0)
    for arch in ("se_resnet18", "resnet18"):
        m = get_model(arch, width=8, extra={"input_length": LENGTH}).eval()
        with torch.no_grad():  # non-trivial BN statistics
            for mod in m.modules():
                if isinstance(mod, torch.nn.BatchNorm1d):
                    mod.running_mean.uniform_(-0.5, 0.5)
                    mod.running_var.uniform_(0.5, 2.0)
        x = torch.rand(3, 1, LENGTH)
        with torch.no_grad():
            assert torch.allclose(mcu_rewrite(m)(x), m(x), atol=1e-4)
    m.blocks[0].relu = torch.nn.GELU()
    with pytest.raises(BadInput, match=r"blocks\.0\.relu \(GELU\) has no microcontroller rewrite"):
        check_layers(m, "tiny")


def test_a_budget_whose_fitting_artifacts_all_fail_the_int8_gate_says_so():
    from ecgtool.report.build import recommend, recommendation_lines
    from ecgtool.report.mcu import budget_lines

    row = {"model": "se_resnet18", "variant": "int8", "runtime": "TFLite Micro", "status": "ok", "macro_f1": 0.3,
           "flash_kb": 200.0, "ram_kb": 40.0, "size_mb": 0.19, "int8_gate": "fail", "f1_delta_macro": -0.04,
           "f1_delta_worst": -0.1, "f1_delta_worst_class": "FAB", "agreement_fp32": 0.9}
    lines = budget_lines([row], (256, 128), 1.0, recommend, recommendation_lines)
    assert lines[0] == ("Microcontroller budget 256 KB flash, 128 KB RAM: 1 of 1 microcontroller artifacts fit, "
                        "but none passes the INT8 accuracy gate against its FP32 parent.")
    assert lines[1].startswith("  Passed over se_resnet18 int8 on TFLite Micro") and "4.00 macro-F1 points" in lines[1]


def test_an_op_tflm_lacks_is_named():
    from ecgtool.export.litert import require_ops

    assert require_ops({"CONV_2D": 3, "MEAN": 1}) == ["AddConv2D", "AddMean"]
    with pytest.raises(BadInput, match="op NON_MAX_SUPPRESSION_V5 has no TensorFlow Lite Micro kernel"):
        require_ops({"CONV_2D": 1, "NON_MAX_SUPPRESSION_V5": 1}, "m.tflite")


def test_int8_export_records_int8_io_and_agrees_with_pytorch_in_tflm(int8):
    folder, data, path, output = int8
    assert "litert-int8:" in output and "argmax agreement" in output
    side = read_json(litert_sidecar(path))
    assert side["input"]["dtype"] == "int8" and side["output"]["dtype"] == "int8"
    assert side["input"]["shape"] == [1, 1, LENGTH]
    assert side["input"]["scale"] == pytest.approx(1 / 255, rel=0.02)  # min-max normalised input in [0, 1]
    assert side["input"]["zero_point"] == -128
    assert side["output"]["scale"] > 0 and -128 <= side["output"]["zero_point"] <= 127
    assert side["classes"] == read_json(folder / "config.json")["classes"]
    assert side["preprocessing"]["window_len"] == LENGTH
    assert side["calibration"]["records"] > 0
    assert "TRANSPOSE" not in side["ops"] and {"LOGISTIC", "MUL", "MEAN"} <= set(side["ops"])  # SE as int8 ops
    assert side["flash_bytes"] > side["model_bytes"] == path.stat().st_size
    entry = manifest_entry(path)
    assert entry["check"]["runtime"] == "tflm" and entry["check"]["precision"] == "int8"
    assert entry["check"]["status"] == "ok"  # the export gate: argmax agreement >= 99 % on the test split
    pred = runtime.load(path)
    assert pred.kind == "tflm" and pred.precision == "int8" and pred.classes == side["classes"]
    from ecgtool.data.dataset import load_dataset

    x, _ = load_dataset(data).split("test")
    x = np.asarray(x, np.float32)
    ref = runtime.load(folder).predict(x)
    got = pred.predict(x)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.95  # measured 100 % (28 records)
    assert np.abs(got - ref).max() < 8 * side["output"]["scale"] + 0.5  # dequantised logits, a few LSB off


def test_arena_is_the_smallest_that_runs(int8):
    from ecgtool.runtime import tflm

    _, _, path, _ = int8
    side = read_json(litert_sidecar(path))
    buf = path.read_bytes()
    x = np.full((1, 1, LENGTH), 0, np.int8)
    assert tflm.runs(buf, side["arena_bytes"], x)
    assert not tflm.runs(buf, side["arena_bytes"] - 1024, x)


def test_a_rewritten_sidecar_is_not_part_of_the_model_folder(int8, tmp_path):
    folder, _, path, _ = int8  # a re-export rewrites the sidecar after the folder was recorded
    copy = tmp_path / "side.json"
    shutil.copy(litert_sidecar(path), copy)
    try:
        litert_sidecar(path).write_text(litert_sidecar(path).read_text() + "\n")
        assert runtime.load(folder).kind == "pytorch"  # the folder's own files verify
    finally:
        shutil.copy(copy, litert_sidecar(path))


def test_c_export_compiles(int8, tmp_path):
    _, _, path, _ = int8
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("no g++ on this machine")
    side = read_json(litert_sidecar(path))
    cdir = mcu_c_dir(path)
    header = (cdir / MCU_MODEL_DATA_H).read_text()
    assert f"kEcgTensorArenaSize = {side['arena_bytes']};" in header
    assert f"kEcgInputZeroPoint = {side['input']['zero_point']};" in header
    assert "alignas(16) const unsigned char g_ecg_model[]" in (cdir / MCU_MODEL_DATA_CC).read_text()
    fake = "struct R { " + " ".join(f"void {a}() {{}}" for a in side["resolver"]) + " };"
    (tmp_path / "t.cc").write_text(f'#include "{MCU_MODEL_DATA_H}"\n{fake}\n'
                                   "int main() { R r; EcgAddOps(r); static_assert(kEcgNumOps > 0, \"ops\");\n"
                                   "  return g_ecg_model_len > 0 && kEcgClasses[0][0] ? 0 : 1; }\n")
    r = subprocess.run([gxx, "-std=c++17", "-fsyntax-only", "-I", str(cdir), str(tmp_path / "t.cc"),
                        str(cdir / MCU_MODEL_DATA_CC)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_bench_shows_flash_and_ram(int8, tmp_path):
    from tiny_run import BENCH_OPTIONS

    from ecgtool.bench.runner import bench

    folder, data, path, _ = int8
    rows = bench([path, folder], data, max_eval=8, out=tmp_path, **BENCH_OPTIONS).rows
    row = next(r for r in rows if r["kind"] == "tflm")
    side = read_json(litert_sidecar(path))
    assert row["status"] == "ok" and row["runtime"] == "TFLite Micro"
    assert row["flash_kb"] == pytest.approx(side["flash_bytes"] / 1024, abs=0.1)
    assert row["ram_kb"] == pytest.approx(side["arena_bytes"] / 1024, abs=0.1)
    assert 0 <= row["macro_f1"] <= 1
    torch_row = next(r for r in rows if r["kind"] == "pytorch")
    assert torch_row.get("flash_kb") is None
    assert "flash_kb" in (tmp_path / "bench.md").read_text()

    from ecgtool.report.build import report

    fits = report(tmp_path, mcu_budget="1024,256")
    assert (tmp_path / "report_pareto_flash.png").stat().st_size > 0
    line = next(x for x in fits.recommendation if x.startswith("Microcontroller budget 1024 KB flash, 256 KB RAM"))
    assert "se_resnet18 int8 on TFLite Micro" in line
    assert "flash/RAM KB" in (tmp_path / "report.md").read_text()  # the artifact table's column (flash_kb in report.csv)
    assert "flash_kb" in (tmp_path / "report.csv").read_text().splitlines()[0]
    tight = report(tmp_path, mcu_budget="100,8")  # the model alone is ~187 KB
    assert any("no artifact fits" in x for x in tight.recommendation)
    with pytest.raises(BadInput, match="expected FLASH_KB,RAM_KB"):
        report(tmp_path, mcu_budget="1024")


@pytest.mark.slow  # 11 s on the AVX2 CPU; the INT8 TFLM path is covered by the tier's other tests
def test_resnet18_and_fp32_convert_and_run_in_tflm(int8, tmp_path):
    from ecgtool.export import export

    _, data, _, _ = int8
    torch.manual_seed(0)
    folder = save_model(tmp_path / "resnet18", get_model("resnet18", width=8, extra={"input_length": LENGTH}))
    r = export(folder, "litert-fp32", data=data)
    side = read_json(litert_sidecar(r.path))
    assert side["input"]["dtype"] == "float32" and side["precision"] == "fp32"
    assert not {"LOGISTIC", "MUL"} & set(side["ops"])  # no SE block
    assert r.check["status"] == "ok" and r.check["max_abs_diff"] < 1e-3  # FP32 TFLM reference kernels
    assert runtime.load(r.path).precision == "fp32"


@pytest.mark.slow  # 22 s on the AVX2 CPU; the search budget rules are covered by test_search.py
def test_search_with_a_microcontroller_budget(int8, tmp_path):
    from ecgtool.core.errors import EcgtoolError
    from ecgtool.search.budget import search

    _, data, _, _ = int8
    fitting = search(data, mcu_budget="256,128", archs=["resnet"], depths=[18], widths=[8], threads=1, out=tmp_path)
    assert [(r["model"], r["format"]) for r in fitting] == [("resnet18", "litert-int8")]
    assert 0 < fitting[0]["flash_kb"] <= 256 and 0 < fitting[0]["ram_kb"] <= 128
    assert "KB flash" in (tmp_path / "search.md").read_text()
    with pytest.raises(EcgtoolError, match="no candidate fits"):  # w8 is ~185 KB of flash: skipped unmeasured
        search(data, mcu_budget="100,128", archs=["resnet"], depths=[18], widths=[8], threads=1, out=tmp_path / "b")


#: a bundle's run.py in a fresh interpreter where torch, ecgtool and onnxruntime cannot be imported
BLOCKED_RUN = """
import importlib.abc, runpy, sys
BLOCKED = ('torch', 'ecgtool', 'onnxruntime')
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ImportError(name + ' is not available on the device')
sys.meta_path.insert(0, Block())
sys.argv = ['run.py'] + sys.argv[1:]
try:
    runpy.run_path('run.py', run_name='__main__')
finally:
    assert not [m for m in sys.modules if m.split('.')[0] in BLOCKED]
"""


@pytest.fixture(scope="module")
def record(int8, tmp_path_factory):
    """A .npy record at the tiny model's rate: four test windows of the tiny dataset end to end."""
    from ecgtool.data.dataset import load_dataset

    _, data, _, _ = int8
    x, _ = load_dataset(data).split("test")
    path = tmp_path_factory.mktemp("rec") / "rec.npy"
    np.save(path, np.concatenate([np.asarray(x[i, 0], np.float32) for i in range(4)]))
    return path


def _probs(doc_records: list[dict]) -> np.ndarray:
    return np.array([[w["probabilities"][c] for c in w["probabilities"]] for r in doc_records for w in r["windows"]])


def test_predict_runs_a_tflite_in_tflm(int8, record, tmp_path):
    import json

    from ecgtool.cli.main import main

    folder, _, path, _ = int8
    args = [str(record), "--fs", "100", "--no-quality", "--format", "json"]
    res = CliRunner().invoke(main, ["predict", str(path), *args])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["kind"] == "tflm" and doc["precision"] == "int8"
    assert doc["classes"] == read_json(folder / "config.json")["classes"]
    windows = doc["records"][0]["windows"]
    assert len(windows) == 4
    # the same TFLM interpreter on the same windows: predict's preprocessing (min-max per window) is training's
    x = np.load(record).reshape(4, 1, LENGTH)
    x = (x - x.min(axis=2, keepdims=True)) / (x.max(axis=2, keepdims=True) - x.min(axis=2, keepdims=True))
    direct = runtime.load(path).predict(x.astype(np.float32))
    assert [w["rhythm"] for w in windows] == [doc["classes"][k] for k in direct.argmax(1)]
    # the model folder with --export-format litert-int8 is the same .tflite
    via = CliRunner().invoke(main, ["predict", str(folder), *args, "--export-format", "litert-int8"])
    assert via.exit_code == 0, via.output
    assert json.loads(via.stdout)["kind"] == "tflm" and json.loads(via.stdout)["records"] == doc["records"]
    # a lone .tflite with its sidecar (no config.json anywhere above it) predicts the same
    lone = tmp_path / path.name
    shutil.copy(path, lone)
    shutil.copy(litert_sidecar(path), litert_sidecar(lone))
    alone = CliRunner().invoke(main, ["predict", str(lone), *args])
    assert alone.exit_code == 0, alone.output
    assert json.loads(alone.stdout)["records"][0]["windows"] == windows
    torch_doc = json.loads(CliRunner().invoke(main, ["predict", str(folder), *args]).stdout)
    assert torch_doc["kind"] == "pytorch"
    assert np.abs(_probs(torch_doc["records"]) - _probs(doc["records"])).max() < 0.1  # INT8 vs FP32
    bad = CliRunner().invoke(main, ["predict", str(folder), *args, "--export-format", "litert-fp32"])
    assert bad.exit_code == 2 and "no model.fp32.tflite in it" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_package_a_tflite_bundle_runs_without_torch_ecgtool_or_onnxruntime(int8, record, tmp_path):
    import json
    import sys

    from ecgtool.core.names import BUNDLE_TFLITE, BUNDLE_TFLITE_IO
    from ecgtool.deploy.package import package
    from ecgtool.deploy.predict import predict

    folder, _, path, _ = int8
    bundle = package(path, tmp_path / "bundle", tar=True)
    names = {p.name for p in bundle.iterdir()}
    assert {BUNDLE_TFLITE, BUNDLE_TFLITE_IO, "model.json", "run.py", "requirements.txt", "SHA256SUMS"} <= names
    assert "model.onnx" not in names
    assert (bundle / BUNDLE_TFLITE).read_bytes() == path.read_bytes()
    meta = json.loads((bundle / "model.json").read_text())
    side = read_json(litert_sidecar(path))
    assert meta["model_file"] == BUNDLE_TFLITE and meta["format"] == "litert-int8" and meta["precision"] == "int8"
    assert meta["input"] == side["input"] and meta["arena_bytes"] == side["arena_bytes"]
    assert meta["metrics"]["export_check"]["runtime"] == "tflm"
    assert "ai-edge-litert" in (bundle / "requirements.txt").read_text()
    assert "onnxruntime" not in (bundle / "requirements.txt").read_text()
    ours = predict(path, [record], fs=100, quality=False)
    for interp in ("tflm", "litert"):  # the bundle can run on either; tflm is what ecgtool measured
        proc = subprocess.run([sys.executable, "-c", BLOCKED_RUN, str(record), "--fs", "100", "--no-quality",
                               "--interpreter", interp], cwd=bundle, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        doc = json.loads(proc.stdout)
        assert doc["kind"] == interp and doc["precision"] == "int8"
        got = doc["records"][0]["windows"]
        assert [w["rhythm"] for w in got] == [w["rhythm"] for w in ours[0]["windows"]]
        diff = np.abs(_probs(doc["records"]) - _probs(ours)).max()
        assert diff < (1e-6 if interp == "tflm" else 0.02), (interp, diff)
    # refusals: one line each, nothing written
    with pytest.raises(BadInput, match=r"this \.tflite is int8, not fp32"):
        package(path, tmp_path / "b2", precision="fp32")
    lone = tmp_path / "lone.tflite"
    shutil.copy(path, lone)
    with pytest.raises(BadInput, match=r"lone\.tflite: no lone\.litert\.json beside it"):
        package(lone, tmp_path / "b3")
    assert not (tmp_path / "b2").exists() and not (tmp_path / "b3").exists()


def test_without_the_extra_export_and_load_say_how_to_install(tmp_path):
    import importlib.util

    if importlib.util.find_spec("litert_torch") or importlib.util.find_spec("tflite_micro"):
        pytest.skip("the [mcu] extra is installed")
    from ecgtool.export import export

    torch.manual_seed(0)
    folder = save_model(tmp_path / "m", get_model("resnet18", width=8, extra={"input_length": LENGTH}))
    with pytest.raises(BadInput, match=r"m: litert export needs the \[mcu\] extra"):
        export(folder, "litert-fp32")
    fake = folder / "model.fp32.tflite"
    fake.write_bytes(b"TFL3")
    with pytest.raises(BadInput, match=r"model\.fp32\.tflite: TensorFlow Lite Micro is not installed"):
        runtime.load(fake)


def test_converter_output_is_kept_out_of_the_console_unless_the_conversion_fails(capfd, monkeypatch):
    """_quiet captures what the converters write (file descriptors 1 and 2, as TensorFlow's C++ logging
    does, and Python warnings); on success nothing reaches the console, on failure the log's tail does."""
    import os
    import warnings

    from ecgtool.export import litert

    monkeypatch.delenv(litert.CONVERTER_LOG_ENV, raising=False)
    with litert._quiet():
        os.write(1, b"I0000 progress on fd 1\n")
        os.write(2, b"W0000 log on fd 2\n")
        print("(00:00) [START] Convert")
        warnings.warn("a library warning")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    with pytest.raises(RuntimeError):
        with litert._quiet():
            os.write(2, b"E0000 the reason it failed\n")
            raise RuntimeError("conversion failed")
    out, err = capfd.readouterr()
    assert out == "" and "the converter's last output lines" in err and "E0000 the reason it failed" in err
    monkeypatch.setenv(litert.CONVERTER_LOG_ENV, "show")
    with litert._quiet():
        print("shown")
    out, err = capfd.readouterr()
    assert out == "" and "shown" in err
