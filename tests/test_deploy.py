"""`ecgtool predict` and `ecgtool package`: input formats, preprocessing parity, the torch-free bundle."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import shared_data
from deploy_fixtures import record_360, trained
from ecgtool.deploy import bundle_runner
from ecgtool.cli.main import main as cli
from ecgtool.deploy.package import package
from ecgtool.deploy.predict import predict, prepare_windows, preprocessing_spec
from ecgtool.core.errors import BadInput

#: runs a bundle's run.py in a fresh interpreter where importing torch or ecgtool fails
BLOCKED_RUN = """
import importlib.abc, runpy, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'ecgtool'):
            raise ImportError(name + ' is not available on the device')
sys.meta_path.insert(0, Block())
sys.argv = ['run.py'] + sys.argv[1:]
try:
    runpy.run_path('run.py', run_name='__main__')
finally:
    assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'ecgtool')]
"""


def run_bundle(bundle: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKED_RUN, *args], cwd=bundle, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from ecgtool.export import torch2onnx

    folder, data = trained(tmp_path_factory)
    if not (folder / "model.onnx").exists():
        torch2onnx(folder)
    recs = record_360(tmp_path_factory.mktemp("records"), data)
    return folder, data, recs


def _spec(band: bool) -> dict:
    return {**preprocessing_spec({}), "bandpass_hz": [0.5, 40.0] if band else None}


@pytest.mark.parametrize("fs,band", [(360, False), (500, True), (250, False), (200, True)])
def test_runner_preprocessing_matches_ecgtool(fs, band):
    rng = np.random.default_rng(fs)
    t = np.arange(int(30.3 * fs)) / fs
    sig = (np.sin(2 * np.pi * 1.2 * t) ** 31 + 0.3 * np.sin(2 * np.pi * 0.2 * t) + 0.05 * rng.standard_normal(len(t)))
    if not band:  # a flat last stretch: both drop that window (a band-pass would ring into it)
        sig[int(19 * fs):] = 0.2
    a, sa, da = prepare_windows(sig[None], fs, _spec(band))
    b, sb, db = bundle_runner.preprocess(sig[None], fs, _spec(band))
    assert da == db and [d["start_s"] for d in da] == ([] if band else [20.0])
    assert sa == sb == ([0, 2000, 4000] if band else [0, 2000])
    assert a.shape == (len(sa), 1, 2000)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert a.min() == 0 and a.max() == 1


def test_spec_reads_training_config_and_dataset_meta(setup, tmp_path):
    from ecgtool.core.artifacts import find_config

    folder, data, _ = setup
    spec = preprocessing_spec(find_config(folder))
    assert (spec["sampling_rate"], spec["window_len"], spec["window_s"], spec["lead"]) == (200, 2000, 10, "II")
    assert spec["bandpass_hz"] is None and "meta.json" in spec["from"]  # synthetic data: no band-pass
    (tmp_path / "meta.json").write_text(json.dumps({"lead": "MLII", "preprocessing": {"bandpass": "Butterworth"}}))
    spec = preprocessing_spec({"in_channels": 1, "extra": {"dataset": str(tmp_path), "sampling_rate": 100,
                                                            "input_length": 500}})
    assert (spec["sampling_rate"], spec["window_s"], spec["lead"], spec["bandpass_hz"]) == (100, 5, "MLII", [0.5, 40.0])


def test_predict_same_answer_from_every_format(setup):
    folder, _, recs = setup
    res = predict(folder, [recs["npy"], recs["csv"], recs["wfdb"]], fs=360)
    assert [len(r["windows"]) for r in res] == [3, 3, 3]
    rhythms = [[w["rhythm"] for w in r["windows"]] for r in res]
    assert rhythms[0] == rhythms[1] == rhythms[2]
    for r in res:
        for w in r["windows"]:
            assert abs(sum(w["probabilities"].values()) - 1) < 1e-4
            assert w["probability"] == max(w["probabilities"].values())
        assert [w["start_s"] for w in r["windows"]] == [0.0, 10.0, 20.0]
        assert r["summary"]["rhythm"] in [w["rhythm"] for w in r["windows"]]
    for a, b in zip(res[0]["windows"], res[2]["windows"]):  # WFDB stores 16-bit samples: close, not equal
        assert abs(a["probability"] - b["probability"]) < 1e-3


def test_predict_bad_records_reported_others_go_on(setup, tmp_path):
    folder, _, recs = setup
    np.save(tmp_path / "short.npy", np.zeros(1000, dtype=np.float32))
    (tmp_path / "bad.csv").write_text("II\n0.1\nabc\n")
    res = predict(folder, [recs["npy"], tmp_path / "short.npy", tmp_path / "nothere.hea", tmp_path / "bad.csv"], fs=360)
    assert "windows" in res[0]
    assert "too short" in res[1]["error"]
    assert "header missing" in res[2]["error"]
    assert "non-numeric" in res[3]["error"]
    r = CliRunner().invoke(cli, ["predict", str(folder), str(recs["npy"]), str(tmp_path / "short.npy"), "--fs", "360", "-q"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["records"]) == 2
    r = CliRunner().invoke(cli, ["predict", str(folder), str(tmp_path / "short.npy"), "--fs", "360", "-q"])
    assert r.exit_code == 2 and f"{tmp_path / 'short.npy'}: none could be read (too short" in r.stderr.strip().splitlines()[-1]
    r = CliRunner().invoke(cli, ["predict", str(tmp_path / "nomodel"), str(recs["npy"]), "--fs", "360"])
    assert r.exit_code == 2 and "no such file or folder" in r.stderr
    r = CliRunner().invoke(cli, ["predict", str(folder), str(recs["npy"])])  # .npy without --fs
    assert r.exit_code == 2 and "--fs" in r.stderr


def test_predict_explain_writes_spans_and_pngs(setup, tmp_path):
    folder, _, recs = setup
    out = tmp_path / "pred"
    r = CliRunner().invoke(cli, ["predict", str(folder), str(recs["npy"]), "--fs", "360", "--explain", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "predictions.json").read_text())
    for w in doc["records"][0]["windows"]:
        ex = w["explanation"]
        assert ex["method"] == "gradcam" and 1 <= len(ex["top_spans"]) <= 3
        assert all(w["start_s"] <= s["start_s"] < s["end_s"] <= w["end_s"] for s in ex["top_spans"])
        assert (out / ex["png"]).read_bytes()[:4] == b"\x89PNG"
    manifest = json.loads((out / "manifest.json").read_text())["artifacts"]
    assert manifest[doc["records"][0]["windows"][0]["explanation"]["png"]]["parent"] == "predictions.json"


def _check_bundle(bundle: Path) -> dict:
    names = {p.name for p in bundle.iterdir()}
    assert names == {"model.onnx", "model.json", "run.py", "requirements.txt", "README.md", "SHA256SUMS"}
    for line in (bundle / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((bundle / name).read_bytes()).hexdigest() == digest
    assert set((bundle / "requirements.txt").read_text().split("\n")[:3]) >= {"numpy>=1.22", "scipy>=1.8", "onnxruntime>=1.16"}
    imported = set()
    for node in ast.walk(ast.parse((bundle / "run.py").read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"numpy", "scipy", "onnxruntime", "wfdb"}
    return json.loads((bundle / "model.json").read_text())


def _compare(bundle_doc: dict, ecgtool_res: list[dict], atol: float) -> None:
    assert len(bundle_doc["records"]) == len(ecgtool_res)
    for a, b in zip(bundle_doc["records"], ecgtool_res):
        assert [w["rhythm"] for w in a["windows"]] == [w["rhythm"] for w in b["windows"]]
        pa = np.array([list(w["probabilities"].values()) for w in a["windows"]])
        pb = np.array([list(w["probabilities"].values()) for w in b["windows"]])
        np.testing.assert_allclose(pa, pb, atol=atol)
        assert a["summary"]["rhythm"] == b["summary"]["rhythm"]


def test_package_runs_without_torch_and_matches_predict(setup, tmp_path):
    folder, _, recs = setup
    bundle = package(folder, tmp_path / "bundle", precision="fp32", tar=True)
    meta = _check_bundle(bundle)
    assert meta["classes"] == ["Normal", "AF", "AFL", "FAB", "SB", "ST", "PVC"] and meta["precision"] == "fp32"
    assert meta["preprocessing"]["sampling_rate"] == 200 and meta["input"]["shape"][1:] == [1, 2000]
    assert meta["source"]["sha256"] == hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    assert "macro_f1" in meta["metrics"]
    assert (tmp_path / "bundle.tar.gz").stat().st_size > 1000
    proc = run_bundle(bundle, str(recs["npy"]), str(recs["wfdb"]), str(tmp_path / "missing.npy"), "--fs", "360")
    assert proc.returncode == 0, proc.stderr
    assert "missing.npy: no such file" in proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["records"][2] == {"record": str(tmp_path / "missing.npy"), "error": "no such file"}
    doc["records"] = doc["records"][:2]
    _compare(doc, predict(folder, [recs["npy"], recs["wfdb"]], fs=360), atol=1e-4)
    manifest = json.loads((folder.parent / "manifest.json").read_text())["artifacts"]
    entry = next(v for k, v in manifest.items() if k.endswith("bundle/model.onnx"))
    assert entry["parent"] == "se_resnet18/model.onnx"
    assert next(v for k, v in manifest.items() if k.endswith("bundle.tar.gz"))["parent"].endswith("bundle/model.onnx")
    proc = run_bundle(bundle, str(tmp_path / "missing.npy"), "--fs", "360")
    assert proc.returncode == 2


def test_package_int8_bundle(setup, tmp_path):
    folder, data, recs = setup
    bundle = package(folder, tmp_path / "b8", precision="int8", data=data)
    assert _check_bundle(bundle)["precision"] == "int8"
    proc = run_bundle(bundle, str(recs["npy"]), "--fs", "360")
    assert proc.returncode == 0, proc.stderr
    _compare(json.loads(proc.stdout), predict(folder / "model.int8.onnx", [recs["npy"]], fs=360), atol=1e-4)
    # auto now picks the fresh INT8 export
    assert _check_bundle(package(folder, tmp_path / "auto"))["precision"] == "int8"


def test_package_bad_input_changes_nothing(setup, tmp_path):
    folder, _, _ = setup
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(BadInput, match="exists and is not an empty folder"):
        package(folder, tmp_path / "taken")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]
    (tmp_path / "x.png").write_bytes(b"png")
    with pytest.raises(BadInput, match="package takes a PyTorch model folder or an .onnx file"):
        package(tmp_path / "x.png", tmp_path / "b")
    with pytest.raises(BadInput, match="an fp32 ONNX model, not int8"):
        package(folder / "model.onnx", tmp_path / "b", precision="int8")
    r = CliRunner().invoke(cli, ["package", str(tmp_path / "none"), "--out", str(tmp_path / "b")])
    assert r.exit_code == 2 and r.stderr.strip().endswith(f"{tmp_path / 'none'}: no such file or folder")
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_real_records_bundle_equals_predict(setup, tmp_path):
    """MIT-BIH 100 (360 Hz, MLII, 30 min) and a Challenge record with the `E00271.mat` header quirk (500 Hz)."""
    mitdb, cinc = shared_data("mitdb"), shared_data("cinc2021-sample")
    folder, _, _ = setup
    recs = [mitdb / "100.hea", cinc / "E00271.hea"]
    bundle = package(folder / "model.onnx", tmp_path / "bundle")
    proc = run_bundle(bundle, *map(str, recs))
    assert proc.returncode == 0, proc.stderr
    res = predict(folder / "model.onnx", recs)
    assert [len(r["windows"]) for r in res] == [180, 1]
    _compare(json.loads(proc.stdout), res, atol=1e-5)


def test_twelve_lead_model_predict_and_bundle(tmp_path):
    """A 12-lead model reads every lead of a WFDB record and every row of a [12, T] array, in both paths."""
    from ecgtool.models import ModelConfig, build_model, save_model

    cfg = ModelConfig(arch="se_resnet", depth=18, width=8, in_channels=12, num_classes=7,
                      classes=["Normal", "AF", "AFL", "FAB", "SB", "ST", "PVC"],
                      extra={"sampling_rate": 200, "input_length": 2000})
    save_model(tmp_path / "m12", build_model(cfg).eval(), cfg)
    np.save(tmp_path / "x12.npy", np.random.default_rng(0).standard_normal((12, 12 * 500)))
    np.save(tmp_path / "x3.npy", np.random.default_rng(0).standard_normal((3, 12 * 500)))
    res = predict(tmp_path / "m12", [tmp_path / "x12.npy", tmp_path / "x3.npy"], fs=500)
    assert len(res[0]["windows"]) == 1 and "3 rows, the model takes 12" in res[1]["error"]
    bundle = package(tmp_path / "m12", tmp_path / "bundle")
    assert json.loads((bundle / "model.json").read_text())["preprocessing"]["channels"] == 12
    proc = run_bundle(bundle, str(tmp_path / "x12.npy"), "--fs", "500")
    assert proc.returncode == 0, proc.stderr
    _compare(json.loads(proc.stdout), res[:1], atol=1e-5)
