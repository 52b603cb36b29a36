"""`ecgtool predict` and `ecgtool package`: input formats, preprocessing parity, the torch-free bundle,
and the preprocessing travelling with the model (config.json, ONNX metadata), not with the dataset."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import shared_data
from deploy_fixtures import bandpassed_dataset, record_360, trained
from ecgtool.deploy import bundle_runner
from ecgtool.cli.main import main as cli
from ecgtool.core.names import BUNDLE_EPISODES, BUNDLE_FEATURES, BUNDLE_PREPROCESS, BUNDLE_QUALITY, BUNDLE_STREAM
from ecgtool.data import preprocess
from ecgtool.data.preprocess import SPEC_KEYS, make_spec, spec_from_meta
from ecgtool.deploy.package import package
from ecgtool.deploy.predict import predict, prepare_windows, preprocessing_spec
from ecgtool.core.errors import BadInput

#: a fresh interpreter where importing torch or ecgtool fails, in a bundle folder
BLOCK = """
import importlib.abc, runpy, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'ecgtool'):
            raise ImportError(name + ' is not available on the device')
sys.meta_path.insert(0, Block())
"""
#: runs a bundle's run.py there
BLOCKED_RUN = BLOCK + """
sys.argv = ['run.py'] + sys.argv[1:]
try:
    runpy.run_path('run.py', run_name='__main__')
finally:
    assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'ecgtool')]
"""
#: saves the windows run.py's Bundle cuts from record argv[1] at argv[2] Hz to argv[3] (.npy)
BLOCKED_WINDOWS = BLOCK + """
import numpy as np
bundle = runpy.run_path('run.py', run_name='bundle_run')['Bundle']('.')
np.save(sys.argv[3], bundle.windows(sys.argv[1], float(sys.argv[2]))[0])
assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'ecgtool')]
"""


def run_bundle(bundle: Path, *args: str, script: str = BLOCKED_RUN) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, *args], cwd=bundle, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from ecgtool.export import export

    folder, data = trained(tmp_path_factory)
    if not (folder / "model.onnx").exists():
        export(folder, "onnx", data=data)  # stamped with the config (and its preprocessing spec)
    recs = record_360(tmp_path_factory.mktemp("records"), data)
    return folder, data, recs


def _spec(band: bool) -> dict:
    return make_spec(bandpass_hz=[0.5, 40.0] if band else None)


def _standalone_preprocess(tmp_path: Path):
    """ecgtool/data/preprocess.py loaded the way a bundle loads its copy: a top-level module, no ecgtool package."""
    path = tmp_path / BUNDLE_PREPROCESS
    shutil.copyfile(preprocess.__file__, path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("fs,band", [(360, False), (500, True), (250, False), (200, True)])
def test_runner_preprocessing_matches_ecgtool(fs, band, tmp_path):
    rng = np.random.default_rng(fs)
    t = np.arange(int(30.3 * fs)) / fs
    sig = (np.sin(2 * np.pi * 1.2 * t) ** 31 + 0.3 * np.sin(2 * np.pi * 0.2 * t) + 0.05 * rng.standard_normal(len(t)))
    if not band:  # a flat last stretch: both drop that window (a band-pass would ring into it)
        sig[int(19 * fs):] = 0.2
    a, sa, da = prepare_windows(sig[None], fs, _spec(band))
    assert bundle_runner.pre is preprocess  # inside ecgtool the runner uses the package's module itself
    b, sb, db = _standalone_preprocess(tmp_path).windows_for_spec(sig[None], fs, _spec(band))
    assert da == db and [d["start_s"] for d in da] == ([] if band else [20.0])
    assert sa == sb == ([0, 2000, 4000] if band else [0, 2000])
    assert a.shape == (len(sa), 1, 2000)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert a.min() == 0 and a.max() == 1


def test_spec_is_frozen_in_config_and_onnx_metadata(setup, tmp_path):
    from ecgtool import __version__
    from ecgtool.core.artifacts import find_config
    from ecgtool.core.files import read_json
    from ecgtool.runtime.onnxruntime import read_metadata

    folder, data, _ = setup
    config = find_config(folder)
    assert tuple(config["preprocessing"]) == SPEC_KEYS
    assert config["preprocessing"] == spec_from_meta(read_json(data / "meta.json"))
    spec = preprocessing_spec(config)
    assert (spec["sampling_rate"], spec["window_len"], spec["window_s"], spec["lead"]) == (200, 2000, 10, "II")
    assert spec["bandpass_hz"] is None and spec["normalisation"] == "minmax"  # synthetic data: no band-pass
    assert spec["classes"] == config["classes"] == ["Normal", "AF", "AFL", "FAB", "SB", "ST", "PVC"]
    meta = read_metadata(folder / "model.onnx")
    assert meta["config"]["preprocessing"] == meta["preprocessing"] == config["preprocessing"]
    assert meta["version"] == __version__
    assert meta["source_sha256"] == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_old_config_without_spec_gets_paper_defaults_not_the_dataset(tmp_path, capsys):
    """A config from before specs were frozen: its own rate and length, else the paper's; the dataset
    meta.json its recipe points to is not read (it may be gone, or moved, or another dataset by now)."""
    (tmp_path / "meta.json").write_text(json.dumps({"lead": "MLII", "preprocessing": {"bandpass": "Butterworth"}}))
    spec = preprocessing_spec({"in_channels": 1, "extra": {"dataset": str(tmp_path), "sampling_rate": 100,
                                                            "input_length": 500}}, source="old-model")
    assert (spec["sampling_rate"], spec["window_s"], spec["lead"], spec["bandpass_hz"]) == (100, 5, "II", None)
    assert capsys.readouterr().err.count("old-model: no preprocessing spec") == 1
    spec = preprocessing_spec({}, lead="MLII")
    assert (spec["sampling_rate"], spec["window_len"], spec["lead"]) == (200, 2000, "MLII")


@pytest.fixture(scope="module")
def moved_bandpassed(tmp_path_factory, setup):
    """A model trained on a band-passed dataset, predicted on, then its run moved and the dataset deleted."""
    from ecgtool.train.run import train_models

    _, _, recs = setup
    root = tmp_path_factory.mktemp("bandpassed")
    data = bandpassed_dataset(root / "data")
    train_models(data, ["se_resnet"], [18], root / "run", width=8, epochs=1, batch_size=32, device="cpu")
    before = predict(root / "run" / "se_resnet18", [recs["npy"]], fs=360)
    shutil.move(root / "run", root / "elsewhere")
    shutil.rmtree(data)
    return root / "elsewhere" / "se_resnet18", before, recs


def _probs(res: list[dict]) -> np.ndarray:
    return np.array([[list(w["probabilities"].values()) for w in r["windows"]] for r in res])


def test_model_predicts_the_same_once_moved_and_its_dataset_deleted(moved_bandpassed):
    from ecgtool.core.artifacts import find_config
    from ecgtool.runtime import load

    folder, before, recs = moved_bandpassed
    assert find_config(folder)["preprocessing"]["bandpass_hz"] == [0.5, 40.0]
    after = predict(folder, [recs["npy"]], fs=360)
    assert np.array_equal(_probs(after), _probs(before)) and len(after[0]["windows"]) == 3
    # the band-pass matters: the same model fed unfiltered windows answers differently
    predictor = load(folder)
    spec = preprocessing_spec(find_config(folder))
    filtered = prepare_windows(np.load(recs["npy"])[None], 360, spec)[0]
    unfiltered = prepare_windows(np.load(recs["npy"])[None], 360, {**spec, "bandpass_hz": None})[0]
    assert not np.allclose(predictor.predict(filtered), predictor.predict(unfiltered), atol=1e-3)


def test_lone_onnx_predicts_like_its_folder(moved_bandpassed, tmp_path):
    from ecgtool.export import export

    folder, before, recs = moved_bandpassed
    export(folder, "onnx")  # no --data: the dataset is gone, the check runs on random inputs
    lone = tmp_path / "alone" / "model.onnx"
    lone.parent.mkdir()
    shutil.copyfile(folder / "model.onnx", lone)
    in_folder = predict(folder / "model.onnx", [recs["npy"], recs["wfdb"]], fs=360)
    alone = predict(lone, [recs["npy"], recs["wfdb"]], fs=360)
    assert np.array_equal(_probs(alone), _probs(in_folder))
    np.testing.assert_allclose(_probs(alone)[:1], _probs(before), atol=1e-4)  # ONNX Runtime vs PyTorch
    r = CliRunner().invoke(cli, ["predict", str(lone), str(recs["npy"]), "--fs", "360", "-q"])
    assert r.exit_code == 0, r.output
    assert np.array_equal(_probs(json.loads(r.stdout)["records"]), _probs(alone[:1]))
    bundle = package(lone, tmp_path / "bundle")
    assert _check_bundle(bundle)["preprocessing"]["bandpass_hz"] == [0.5, 40.0]
    proc = run_bundle(bundle, str(recs["npy"]), "--fs", "360")
    assert proc.returncode == 0, proc.stderr
    _compare(json.loads(proc.stdout), alone[:1], atol=1e-6)


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
        assert ex["method"] == "occlusion" and 1 <= len(ex["top_spans"]) <= 3  # auto = occlusion
        assert all(w["start_s"] <= s["start_s"] < s["end_s"] <= w["end_s"] for s in ex["top_spans"])
        assert (out / ex["png"]).read_bytes()[:4] == b"\x89PNG"
    manifest = json.loads((out / "manifest.json").read_text())["artifacts"]
    assert manifest[doc["records"][0]["windows"][0]["explanation"]["png"]]["parent"] == "predictions.json"


def _check_bundle(bundle: Path) -> dict:
    names = {p.name for p in bundle.iterdir()}
    assert names == {"model.onnx", "model.json", "run.py", BUNDLE_PREPROCESS, BUNDLE_STREAM, BUNDLE_QUALITY,
                     BUNDLE_EPISODES, "requirements.txt", "README.md", "SHA256SUMS"}
    runner_imports = {Path(n).stem for n in (BUNDLE_PREPROCESS, BUNDLE_STREAM, BUNDLE_EPISODES)}
    shipped = runner_imports | {Path(BUNDLE_QUALITY).stem}
    assert (bundle / BUNDLE_PREPROCESS).read_bytes() == Path(preprocess.__file__).read_bytes()  # one implementation
    for line in (bundle / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((bundle / name).read_bytes()).hexdigest() == digest
    assert set((bundle / "requirements.txt").read_text().split("\n")[:3]) >= {"numpy>=1.22", "scipy>=1.8", "onnxruntime>=1.16"}
    imported = {}
    for name in ("run.py", BUNDLE_PREPROCESS, BUNDLE_STREAM, BUNDLE_QUALITY, BUNDLE_EPISODES):
        imported[name] = set()
        for node in ast.walk(ast.parse((bundle / name).read_text())):
            if isinstance(node, ast.Import):
                imported[name] |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported[name].add(node.module.split(".")[0])
    # run.py imports ecgtool only when it runs as ecgtool.deploy.bundle_runner; in a bundle, the copy beside it
    # (ecg_features, a copy of baseline/features.py, which only an RR-head model's bundle ships;
    #  ecg_tflite: only for a .tflite model, which an ONNX bundle does not hold;
    #  pandas: ecg_stream reads CSV with it where installed (with wfdb), else np.loadtxt)
    optional = {Path(BUNDLE_FEATURES).stem, "ecg_tflite", "pandas"}
    assert imported["run.py"] - set(sys.stdlib_module_names) == ({"numpy", "onnxruntime", "ecgtool"} | runner_imports
                                                                   | optional - {"pandas"})
    assert imported[BUNDLE_PREPROCESS] - set(sys.stdlib_module_names) == {"numpy", "scipy", "wfdb"}
    assert ((set().union(*imported.values())) - set(sys.stdlib_module_names)
            - {"ecgtool"} - shipped - optional) == {"numpy", "scipy", "onnxruntime", "wfdb"}
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
    from ecgtool.deploy.predict import read_input

    for kind in ("npy", "wfdb"):  # the bundle's windows, cut where torch and ecgtool cannot import, are ecgtool's
        proc = run_bundle(bundle, str(recs[kind]), "360", str(tmp_path / f"{kind}.npy"), script=BLOCKED_WINDOWS)
        assert proc.returncode == 0, proc.stderr
        ours = prepare_windows(*read_input(recs[kind], 360, "II", 1), meta["preprocessing"])[0]
        assert ours.shape == (3, 1, 2000) and np.array_equal(np.load(tmp_path / f"{kind}.npy"), ours)


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
    with pytest.raises(BadInput, match="package takes a PyTorch model folder, an .onnx or a .tflite file"):
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
    # white noise is no ECG: the quality gate would mark it noisy, so it is off here (both paths)
    res = predict(tmp_path / "m12", [tmp_path / "x12.npy", tmp_path / "x3.npy"], fs=500, quality=False)
    assert len(res[0]["windows"]) == 1 and "3 rows, the model takes 12" in res[1]["error"]
    bundle = package(tmp_path / "m12", tmp_path / "bundle")
    assert json.loads((bundle / "model.json").read_text())["preprocessing"]["channels"] == 12
    proc = run_bundle(bundle, str(tmp_path / "x12.npy"), "--fs", "500", "--no-quality")
    assert proc.returncode == 0, proc.stderr
    _compare(json.loads(proc.stdout), res[:1], atol=1e-5)
