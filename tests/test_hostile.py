"""Hostile inputs (hypothesis): the only outcomes allowed are a result or one clear BadInput (exit 2).

Never a traceback, a hang, or an allocation sized by a file's claims. `make test` runs the fast
profile; `make test-slow` the long one (HYPOTHESIS_PROFILE=long), whose counts are in RESULTS.md.
"""

from __future__ import annotations

import json

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is a [dev] dependency (pip install -e .[dev])")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from conftest import copy_trained  # noqa: E402
from ecgtool.core.errors import BadInput  # noqa: E402
from ecgtool.core.manifest import verify_manifest  # noqa: E402
from ecgtool.models import ModelConfig, build_model  # noqa: E402

pytestmark = pytest.mark.hostile

COUNTS = {"configs": 0, "manifests": 0}

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**25, max_value=10**25),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                                 st.dictionaries(st.text(max_size=10), inner, max_size=5)),
                           max_leaves=20)

config_keys = st.sampled_from(["arch", "depth", "width", "kernel_size", "in_channels", "num_classes", "se_reduction",
                               "dropout", "classes", "channels", "extra"])
plausible = {"arch": st.sampled_from(["se_resnet", "resnet", "se_resent"]), "depth": st.sampled_from([18, 34, 19, -1]),
             "width": st.integers(-5, 10**6), "kernel_size": st.integers(-5, 10**8), "extra": st.dictionaries(
                 st.sampled_from(["input_length", "sampling_rate", "length", "note"]), json_scalars, max_size=3)}


@given(st.dictionaries(config_keys, st.one_of(json_values, *plausible.values()), max_size=8))
def test_any_config_dict_builds_a_small_network_or_is_refused(cfg):
    COUNTS["configs"] += 1
    try:
        model_cfg = ModelConfig.from_dict({"depth": 18, **cfg})
    except BadInput as exc:
        assert "\n" not in str(exc)
        return
    # accepted: it is within the bounds, so building it is cheap (no 10^4-wide, 10^7-kernel network)
    assert model_cfg.width <= 1024 and model_cfg.kernel_size <= 255
    if model_cfg.width <= 16 and model_cfg.kernel_size <= 31 and model_cfg.channels is None:
        build_model(model_cfg)


@given(json_values)
def test_any_manifest_is_verified_or_refused_in_one_line(tmp_path_factory, doc):
    COUNTS["manifests"] += 1
    run = tmp_path_factory.mktemp("m")
    (run / "manifest.json").write_text(json.dumps(doc) if not isinstance(doc, float) else "nan")
    try:
        rows = verify_manifest(run)
    except BadInput as exc:
        assert "\n" not in str(exc)
        return
    assert all(r["status"] in ("ok", "missing", "changed", "malformed entry", "outside the run folder",
                               "not a regular file") for r in rows)


# --- the validated reader layer (data/preprocess.py), used by the importers, predict and the bundle ------

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from hypothesis import settings  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from ecgtool.data import preprocess as pre  # noqa: E402
from ecgtool.data.preprocess import UnusableRecord  # noqa: E402
from ecgtool.deploy import bundle_runner  # noqa: E402

COUNTS.update({"wfdb": 0, "npy": 0, "csv": 0, "window_results": 0, "pipeline": 0, "predict": 0, "importer": 0})
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
SPEC = pre.make_spec(classes=["Normal", "AF", "AFL", "FAB", "SB", "ST", "PVC"])
FS = 360
N = 12 * FS  # 12 s

hostile_tokens = st.one_of(
    st.sampled_from(["0", "-360", "nan", "inf", "-inf", "1e-9", "0.001", "abc", "1" * 23, "360/0", "360(x)", "1e308",
                     "10000000000000", "x" * 500, "../etc/passwd", "/dev/zero", "a/b.dat", "-1", "16x0", "16x2000",
                     "16+99999999", "212", "999", "0(0)/mV", "nan/mV", "inf(0)/mV", "200(0)/uV", "~", "1e400", "\x00"]),
    st.integers(-10**15, 10**15).map(str), st.floats().map(str),
    st.text(alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=30))


def _ecg(n: int = N) -> np.ndarray:
    t = np.arange(n) / FS
    return np.sin(2 * np.pi * 1.2 * t) ** 15 * 1.2 + 0.05 * np.sin(2 * np.pi * 7 * t)


def _write_wfdb(folder: Path, name: str = "rec", comments: str = "") -> Path:
    (folder / f"{name}.dat").write_bytes((np.round(_ecg() * 200)).astype("<i2").tobytes())
    (folder / f"{name}.hea").write_text(f"{name} 1 {FS} {N}\n{name}.dat 16 200(0)/mV 16 0 0 0 0 II\n{comments}")
    return folder / f"{name}.hea"


def _mutate_wfdb(hea: Path, kind: str, index: int, token: str, cut: int) -> None:
    dat = hea.with_suffix(".dat")
    lines = hea.read_text().splitlines()
    if kind == "record":
        tok = lines[0].split()
        tok[1 + index % 3] = token
        lines[0] = " ".join(tok)
    elif kind == "signal":
        tok = lines[1].split()
        tok[index % 3] = token
        lines[1] = " ".join(tok)
    elif kind == "comments":
        lines = ["# " + token] * (1 + index % 50)
    elif kind == "text":
        lines = [token]
    elif kind == "truncate":
        dat.write_bytes(dat.read_bytes()[:cut])
    elif kind in ("zero", "fifo"):
        target = hea if index % 2 else dat
        target.unlink()
        if kind == "zero":
            target.symlink_to("/dev/zero")
        else:
            os.mkfifo(target)
        return
    hea.write_text("\n".join(lines) + "\n")


def _allowed(fn, *args):
    """Run a reader: (result, None) or (None, one-line reason); anything else fails the test."""
    try:
        return fn(*args), None
    except UnusableRecord as exc:
        assert "\n" not in str(exc) and str(exc), repr(exc)
        return None, str(exc)


def _windows_ok(signal, fs) -> None:
    got, _ = _allowed(pre.windows_for_spec, signal, fs, SPEC)
    if got is not None:
        windows, starts, dropped = got
        assert np.isfinite(windows).all() and windows.min() >= 0 and windows.max() <= 1
        assert len(starts) == len(windows)


@given(kind=st.sampled_from(["record", "signal", "comments", "text", "truncate", "zero", "fifo"]),
       index=st.integers(0, 100), token=hostile_tokens, cut=st.integers(0, 2 * N))
def test_wfdb_mutations_give_a_record_or_one_reason(tmp_path_factory, kind, index, token, cut):
    COUNTS["wfdb"] += 1
    from ecgtool.data.importers import wfdb_read

    hea = _write_wfdb(tmp_path_factory.mktemp("w"))
    _mutate_wfdb(hea, kind, index, token, cut)
    tracemalloc.start()
    try:
        got, why = _allowed(pre.read_record, hea, None, "II")
        raw, why2 = _allowed(wfdb_read.read_record, hea.with_suffix(""), "II")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200e6, f"{peak / 1e6:.0f} MB for a {N}-sample record"  # never sized by the header's claims
    assert (got is None) == (raw is None), (why, why2)  # predict/bundle and the importers: one layer, one verdict
    if got is not None:
        signal, fs = got
        # a WFDB "invalid sample" value reads as NaN (a gap): the reader may return it, the windows refuse it
        assert pre.MIN_FS <= fs <= pre.MAX_FS and signal.ndim == 2
        _windows_ok(signal, fs)


def test_wfdb_invalid_rates_are_refused_not_defaulted(tmp_path):
    """wfdb falls back to 250 Hz for these; the shared layer parses the rate itself and refuses them."""
    for token in ("-360", "nan", "inf", "abc", "1" * 23, "0", "0.001", "20000"):
        hea = _write_wfdb(tmp_path)
        _mutate_wfdb(hea, "record", 1, token, 0)
        _, why = _allowed(pre.read_record, hea, None, "II")
        assert why and why.startswith("bad sampling rate"), (token, why)
    hea = _write_wfdb(tmp_path)
    signal, fs = pre.read_record(hea, None, "II")
    assert fs == FS and signal.shape == (1, N)


npy_arrays = st.one_of(
    hnp.arrays(st.one_of(hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(),
                         hnp.complex_number_dtypes(), hnp.boolean_dtypes(), hnp.datetime64_dtypes(),
                         hnp.byte_string_dtypes(max_len=4)),
               hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)),
    st.builds(lambda n, big, lo: np.where(np.arange(n) % 2, big, lo).astype(np.float64),
              st.integers(2000, 6000), st.sampled_from([1e308, 1e30, 1e8, 1.0]), st.sampled_from([-1e308, 0.0, -1.0])),
    st.builds(lambda n, c: np.tile(_ecg(n), (c, 1)), st.integers(1000, 5000), st.integers(1, 20)))
fs_values = st.one_of(st.sampled_from([360, 1e-9, 0, -360, float("nan"), float("inf"), 49.9, 10_001, 1e300]),
                      st.floats(allow_nan=True, allow_infinity=True))


@given(arr=npy_arrays, fs=fs_values, how=st.sampled_from(["plain", "pickle", "corrupt", "shape"]), at=st.integers(0, 200),
       byte=st.integers(0, 255))
def test_npy_mutations_give_a_record_or_one_reason(tmp_path_factory, arr, fs, how, at, byte):
    COUNTS["npy"] += 1
    path = tmp_path_factory.mktemp("n") / "rec.npy"
    if how == "pickle":
        np.save(path, np.array([{"x": 1}, arr], dtype=object), allow_pickle=True)
    else:
        np.save(path, arr)
    raw = bytearray(path.read_bytes())
    if how == "corrupt" and raw:
        raw[at % len(raw)] = byte
    elif how == "shape":  # a header claiming 10^12 samples in a file of a few bytes
        raw = bytearray(bytes(raw).replace(b"'shape': (", b"'shape': (1000000000000, ", 1))
    path.write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        got, _ = _allowed(pre.read_record, path, fs, None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200e6
    if got is not None:
        signal, rate = got
        assert signal.shape[0] == 1 and pre.MIN_FS <= rate <= pre.MAX_FS
        _windows_ok(signal, rate)


csv_fields = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-10**30, 10**30).map(str),
                       st.sampled_from(["", "nan", "1e308", "-1e308", '"', '"1"', "II", "MLII", "x" * 200_000, "1e999"]),
                       st.text(max_size=8))


@given(header=st.one_of(st.none(), st.lists(st.sampled_from(["II", "MLII", "V1", "x" * 140_000, '"']), min_size=1,
                                                 max_size=3)),
       rows=st.lists(st.lists(csv_fields, min_size=1, max_size=3), max_size=20), good=st.integers(0, 5000),
       fs=fs_values, lead=st.sampled_from([None, "II", "0", "7"]))
def test_csv_mutations_give_a_record_or_one_reason(tmp_path_factory, header, rows, good, fs, lead):
    COUNTS["csv"] += 1
    path = tmp_path_factory.mktemp("c") / "rec.csv"
    lines = ([",".join(header)] if header else []) + [f"{v:.4f}" for v in _ecg(good)] + [",".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    got, _ = _allowed(pre.read_record, path, fs, lead)
    if got is not None:
        assert pre.MIN_FS <= got[1] <= pre.MAX_FS
        _windows_ok(*got)


# --- results: a non-finite probability never becomes a class, never NaN in JSON ----------------------------

@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.just(7)),
                  elements=st.floats(allow_nan=True, allow_infinity=True, width=64)))
def test_window_results_never_give_a_class_to_nan(logits):
    COUNTS["window_results"] += 1
    with np.errstate(all="ignore"):
        probs = bundle_runner.softmax(logits)
    classes = SPEC["classes"]
    windows = bundle_runner.window_results(probs, [i * 2000 for i in range(len(probs))], classes, 200, 2000)
    for p, w in zip(probs, windows):
        assert (w["rhythm"] is None) == (not np.isfinite(p).all())
    doc = bundle_runner.record_result("r", 360.0, 8000, windows, [], classes)
    json.dumps(doc, allow_nan=False)  # raises on NaN / inf


# --- pipeline YAML value bounds ------------------------------------------------------------------------------

def _pipeline_keys():
    from ecgtool.pipeline.run import VALUE_BOUNDS
    return sorted(VALUE_BOUNDS)


@given(st.dictionaries(st.sampled_from(_pipeline_keys()),
                       st.one_of(json_scalars, st.sampled_from([0, -1, 10**9, 0.5, 1, 1e-300, 2**40])), max_size=4))
def test_pipeline_values_in_bounds_or_refused_naming_the_key(values):
    COUNTS["pipeline"] += 1
    from ecgtool.pipeline.run import VALUE_BOUNDS, default_config, validate_config

    cfg = default_config()
    for key, v in values.items():
        *path, name = key.split(".")
        node = cfg
        for part in path:
            node = node.setdefault(part, {}) if isinstance(node.get(part), dict) or part not in node else node[part]
        node[name] = v
    try:
        validate_config(cfg, "p.yaml")
    except BadInput as exc:
        msg = str(exc)
        assert "\n" not in msg and msg.startswith("p.yaml: ")
        return
    for key, v in values.items():
        lo, hi, integer, _ = VALUE_BOUNDS[key]
        assert v is None or (lo <= v <= hi and not isinstance(v, bool)), (key, v)


# --- predict (CliRunner), the importers, package and the bundle's run.py -------------------------------------

def _no_nan(text: str):
    def refuse(name):
        raise AssertionError(f"{name} in JSON output")
    return json.loads(text, parse_constant=refuse)


@settings(max_examples=300 if LONG else 12)
@given(arr=npy_arrays, fs=fs_values, kind=st.sampled_from(["npy", "wfdb"]), token=hostile_tokens,
       index=st.integers(0, 100))
def test_predict_cli_exits_0_or_2_with_one_line(trained_source, tmp_path_factory, arr, fs, kind, token, index):
    COUNTS["predict"] += 1
    from click.testing import CliRunner

    from ecgtool.cli.main import main

    folder = tmp_path_factory.mktemp("p")
    if kind == "npy":
        rec = folder / "rec.npy"
        np.save(rec, arr)
        args = [str(rec), "--fs", repr(float(fs))]
    else:
        rec = _write_wfdb(folder)
        _mutate_wfdb(rec, ["record", "signal", "comments", "truncate"][index % 4], index, token, index * 50)
        args = [str(rec)]
    r = CliRunner().invoke(main, ["--quiet", "predict", str(trained_source / "run" / "se_resnet18"), *args])
    assert r.exit_code in (0, 2), (r.exit_code, r.output, r.exception)
    assert "Traceback" not in r.output and "Traceback" not in r.stderr
    if r.exit_code == 2:
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    else:
        doc = _no_nan(r.stdout)
        for w in doc["records"][0]["windows"]:
            assert w["rhythm"] in doc["classes"] or w["rhythm"] in (None, "unclassifiable")


@settings(max_examples=60 if LONG else 4)
@given(kind=st.sampled_from(["record", "signal", "comments", "text", "truncate", "zero", "fifo"]),
       index=st.integers(0, 100), token=hostile_tokens, cut=st.integers(0, 2 * N))
def test_import_one_bad_record_among_good_ones(tmp_path_factory, kind, index, token, cut):
    COUNTS["importer"] += 1
    from ecgtool.data.importers import import_dataset

    src = tmp_path_factory.mktemp("src")
    for i, dx in enumerate(["426783006", "164889003", "426783006"]):  # Normal, AF, Normal (SNOMED)
        _write_wfdb(src, f"G{i}", f"# Dx: {dx}\n")
    bad = _write_wfdb(src, "BAD", "# Dx: 426783006\n")
    _mutate_wfdb(bad, kind, index, token, cut)
    out = import_dataset("challenge", src, tmp_path_factory.mktemp("out") / "ds")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["records_read"] >= 3  # the good ones are imported whatever the bad one holds
    skipped = (out / "skipped.csv").read_text() if (out / "skipped.csv").exists() else ""
    assert meta["records_read"] == 4 or "BAD" in skipped


@pytest.fixture(scope="module")
def bundle(trained_source, tmp_path_factory):
    from ecgtool.deploy.package import package

    model, _ = copy_trained(trained_source, tmp_path_factory.mktemp("b"))
    return model, package(model, model.parent / "bundle", precision="fp32")


def _run_py(bundle_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(bundle_dir / "run.py"), *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": ""}, cwd=bundle_dir)


def test_bundle_run_py_one_line_exit_2(bundle, tmp_path):
    _, b = bundle
    hea0 = _write_wfdb(tmp_path, "rate0")
    _mutate_wfdb(hea0, "record", 1, "0", 0)
    hea_none = _write_wfdb(tmp_path, "nosig")
    _mutate_wfdb(hea_none, "record", 0, "0", 0)
    np.save(tmp_path / "x.npy", _ecg())
    proc = _run_py(b, str(hea0), str(hea_none))  # header rate 0, zero signals: one line each, exit 2
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 2 and "bad sampling rate" in proc.stderr, proc.stderr
    proc = _run_py(b, str(tmp_path / "x.npy"), "--fs", "nan")
    assert proc.returncode == 2 and proc.stderr.strip() == "run.py: bad --fs: nan Hz is outside 50-10000 Hz"
    for fs in ("0", "1e-9", "inf", "-360"):  # refused before the bundle is opened: in-process is enough
        assert bundle_runner.main([str(tmp_path / "x.npy"), "--fs", fs, "--bundle", str(b)]) == 2
    np.save(tmp_path / "huge.npy", np.where(np.arange(4000) % 2, 1e308, -1e308))
    proc = _run_py(b, str(tmp_path / "x.npy"), str(tmp_path / "huge.npy"), "--fs", "360")
    assert proc.returncode == 0, proc.stderr
    doc = _no_nan(proc.stdout)
    assert doc["records"][0]["summary"]["rhythm"] in doc["classes"]
    garbage = doc["records"][1]  # refused whole, or every window unclassifiable by the quality gate: never a rhythm
    assert "error" in garbage or all(w["rhythm"] in (None, "unclassifiable") for w in garbage["windows"])


def test_package_refuses_a_tampered_model(bundle, tmp_path):
    from ecgtool.deploy.package import package

    model, _ = bundle
    onnx_file = model / "model.onnx"
    saved = onnx_file.read_bytes()
    try:
        onnx_file.write_bytes(saved[:-8] + b"tampered")
        with pytest.raises(BadInput, match="differs from its SHA-256"):
            package(onnx_file, tmp_path / "b1")
        with pytest.raises(BadInput, match="differs from its SHA-256"):
            package(model, tmp_path / "b2", precision="fp32")
        assert not (tmp_path / "b1").exists() and not (tmp_path / "b2").exists()
    finally:
        onnx_file.write_bytes(saved)


def test_package_bundles_external_data_weights_or_refuses(bundle, tmp_path):
    import onnx

    from ecgtool.deploy.package import package

    model, _ = bundle
    m = onnx.load(str(model / "model.onnx"))
    ext = tmp_path / "ext"
    ext.mkdir()
    onnx.save_model(m, str(ext / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.weights", size_threshold=0)
    b = package(ext / "m.onnx", tmp_path / "bundle")
    assert (b / "m.weights").is_file() and "m.weights" in (b / "SHA256SUMS").read_text()
    np.save(tmp_path / "x.npy", _ecg())
    proc = _run_py(b, str(tmp_path / "x.npy"), "--fs", "360")
    assert proc.returncode == 0, proc.stderr
    (ext / "m.weights").unlink()
    with pytest.raises(BadInput, match="external-data weights missing"):
        package(ext / "m.onnx", tmp_path / "bundle2")


def test_zz_counts(capsys):
    """Prints how many inputs each property test generated (RESULTS.md records the long profile's)."""
    with capsys.disabled():
        print(f"\nhostile inputs generated: {COUNTS} total {sum(COUNTS.values())}")


def test_mitdb_annotation_linked_to_dev_zero_is_skipped_not_read(tmp_path):
    from conftest import shared_data

    from ecgtool.data.importers import import_dataset

    mitdb = shared_data("mitdb")
    src = tmp_path / "src"
    src.mkdir()
    for rec in ("100", "101", "103"):
        for ext in (".hea", ".dat", ".atr"):
            (src / f"{rec}{ext}").symlink_to("/dev/zero" if (rec, ext) == ("101", ".atr") else mitdb / f"{rec}{ext}")
    out = import_dataset("mitdb", src, tmp_path / "ds")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["records_read"] == 2
    assert '101,"annotation file not a regular file: 101.atr' in (out / "skipped.csv").read_text()
