"""Static INT8 quantisation: QDQ forms, calibration sets (stratified, saved, reused), methods, reports, bad input."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from conftest import copy_trained

from ecgtool.core.files import read_json
from ecgtool.compress.calibration import CalibrationReader, calibration_set, stratified_sample
from ecgtool.cli.main import main
from ecgtool.core.errors import BadInput
from ecgtool.compress.quantize import qdq_properties
from ecgtool.export.int8 import quantize_folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory, trained_source):
    return copy_trained(trained_source, tmp_path_factory.mktemp("quant"))


def test_stratified_sample_keeps_class_shares():
    labels = np.repeat(np.arange(4), [40, 30, 20, 10])
    pick = stratified_sample(labels, 50, seed=1)
    assert len(pick) == 50 and len(set(pick)) == 50
    np.testing.assert_array_equal(np.bincount(labels[pick]), [20, 15, 10, 5])


def test_stratified_sample_of_nearly_all_windows_keeps_every_class():
    # sklearn refuses to stratify when fewer windows than classes are left out (it raised a traceback here)
    labels = np.repeat(np.arange(7), [12, 2, 2, 2, 8, 6, 3])
    for size in (len(labels) - 6, len(labels) - 1):
        pick = stratified_sample(labels, size, seed=0)
        assert len(pick) == size and len(set(pick)) == size and (np.bincount(labels[pick], minlength=7) > 0).all()


def test_calibration_set_is_saved_reused_and_read(trained, tmp_path):
    _, data = trained
    a = calibration_set(data, size=21, seed=3, calib_dir=tmp_path)
    meta = json.loads(a.path.with_suffix(".json").read_text())
    assert meta["size"] == 21 and meta["seed"] == 3 and len(meta["source_sha256"]) == 64
    assert sorted(meta["counts"].values()) == [3] * 7  # 21 of a balanced 7-class split: 3 each
    mtime = a.path.stat().st_mtime_ns
    b = calibration_set(data, size=21, seed=3, calib_dir=tmp_path)
    assert b.path == a.path and a.path.stat().st_mtime_ns == mtime  # reused, not rewritten
    np.testing.assert_array_equal(a.signals, b.signals)
    assert calibration_set(data, size=21, seed=4, calib_dir=tmp_path).path != a.path
    reader = CalibrationReader(a.signals, batch_size=8)
    sizes = []
    while (feed := reader.get_next()) is not None:
        sizes.append(feed["input"].shape[0])
    assert sizes == [8, 8, 5]


def test_missing_class_in_calibration_set_is_bad_input(trained, tmp_path):
    _, data = trained
    with pytest.raises(BadInput, match="lacks class"):
        calibration_set(data, size=4, calib_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # nothing saved


def test_quantize_ort_form_reports_and_records(trained, tmp_path):
    folder, data = trained
    r = quantize_folder(folder, data, calib_size=42, calib_dir=tmp_path)
    out = folder / "model.int8.onnx"
    assert r["path"] == str(out) and out.stat().st_size < 0.5 * (folder / "model.onnx").stat().st_size
    q = qdq_properties(out)
    assert q["quantize"] > 10 and "uint8" in q["zero_point_types"]  # ONNX Runtime's form: unsigned activations
    assert r["top1_agreement"] >= 0.9 and abs(r["fp32_macro_f1"] - r["int8_macro_f1"]) <= 0.1
    assert r["fp32_macro_f1"] > 0.3  # the fixture model learnt something, so agreement means something
    entry = read_json(folder.parent / "manifest.json")["artifacts"]["se_resnet18/model.int8.onnx"]
    assert entry["parent"] == "se_resnet18/model.onnx" and entry["quantization"]["method"] == "minmax"
    assert entry["check"]["precision"] == "int8" and entry["check"]["argmax_agreement"] >= 0.9


def test_symmetric_form_and_excluded_node(trained, tmp_path):
    folder, data = trained
    out = tmp_path / "sym.onnx"
    onnx_path = folder / "model.onnx"
    if not onnx_path.exists():
        quantize_folder(folder, data, calib_size=21, calib_dir=tmp_path)
    first_conv = next(n.name for n in onnx.load(str(onnx_path)).graph.node if n.op_type == "Conv")
    quantize_folder(folder, data, out=out, symmetric=True, calib_size=21, calib_dir=tmp_path, exclude=[first_conv],
                    gate=False)
    q = qdq_properties(out)
    assert q["zero_point_types"] == ["int8"] and q["nonzero_zero_points"] == 0 and q["tensorrt_ready"]
    g = onnx.load(str(out)).graph
    dq_outputs = {o for n in g.node if n.op_type == "DequantizeLinear" for o in n.output}
    conv = next(n for n in g.node if n.name == first_conv)
    assert conv.input[1] not in dq_outputs  # the excluded conv keeps float weights
    others = [n for n in g.node if n.op_type == "Conv" and n.name != first_conv]
    assert all(n.input[1] in dq_outputs for n in others)
    assert not (tmp_path / "manifest.json").exists()  # --out outside the run: no stray manifest beside it


def test_method_auto_tries_minmax_and_percentile(trained, tmp_path):
    folder, data = trained
    r = quantize_folder(folder, data, out=tmp_path / "auto.onnx", method="auto", calib_size=21, calib_dir=tmp_path)
    assert set(r["methods_tried"]) == {"minmax", "percentile"}  # entropy = minmax in ORT's quantize_static
    assert r["method"] == max(r["methods_tried"], key=r["methods_tried"].get)
    assert not list(folder.glob("ecgtool-auto-*"))  # candidates cleaned up


def test_bad_input_exits_2(trained, tmp_path):
    folder, data = trained
    runner = CliRunner()
    r = runner.invoke(main, ["quantize", str(folder), "--data", str(data), "--method", "kl", "--calib-dir", str(tmp_path)])
    assert r.exit_code == 2 and "--method kl: unknown calibration method" in r.stderr
    r = runner.invoke(main, ["quantize", str(folder), "--data", str(data), "--exclude", "nope", "--calib-size", "21",
                             "--calib-dir", str(tmp_path), "--out", str(tmp_path / "x.onnx")])
    assert r.exit_code == 2 and "--exclude names no node" in r.stderr and not (tmp_path / "x.onnx").exists()
    r = runner.invoke(main, ["quantize", str(folder / "model.onnx"), "--data", str(data)])
    assert r.exit_code == 2 and "this command takes a PyTorch model folder" in r.stderr
