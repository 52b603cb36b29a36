"""Long recordings: streaming resampler, signal quality on real MIT-BIH windows, Stream == predict,
burden/episodes, output formats, the bundle's --stdin, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.signal import resample_poly

from conftest import copy_trained, shared_data
from ecgtool.cli.main import main as cli
from ecgtool.data.preprocess import resample
from ecgtool.data.quality import batch_quality, window_quality
from ecgtool.data.stream import Resampler, StreamCore
from ecgtool.deploy.episodes import clinical_summary, episodes
from ecgtool.deploy.package import package
from ecgtool.deploy.predict import predict
from ecgtool.deploy.stream import Stream


@pytest.mark.parametrize("fs_in", [360, 500, 128])
def test_resampler_chunks_equal_one_push_and_resample_poly(fs_in):
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(size=(1, 5000)), axis=1) * 0.01
    r = Fraction(200) / Fraction(fs_in)
    ref = resample_poly(x, r.numerator, r.denominator, axis=-1, padtype="line")
    one = Resampler(fs_in, 200)
    whole = np.concatenate([one.push(x), one.flush()], axis=1)
    many, parts, i = Resampler(fs_in, 200), [], 0
    while i < x.shape[1]:
        n = int(rng.integers(1, 50))
        parts.append(many.push(x[:, i:i + n]))
        i += n
    chunked = np.concatenate(parts + [many.flush()], axis=1)
    assert whole.shape == ref.shape == chunked.shape
    np.testing.assert_array_equal(whole, chunked)
    np.testing.assert_allclose(whole[:, 20:-20], ref[:, 20:-20], atol=1e-5 * np.abs(x).max())


def _mitdb_windows(rec: str, n: int = 30):
    import wfdb

    r = wfdb.rdrecord(str(shared_data("mitdb") / rec), sampto=360 * 10 * n, channels=[0])
    raw = r.p_signal[:, 0]
    return [raw[k * 3600:(k + 1) * 3600] for k in range(n)]


def _q(raw):
    return window_quality(resample(raw[None], 360)[0], 200, raw, 360)[0]


@pytest.mark.parametrize("rec", ["100", "119", "201"])
def test_quality_on_real_windows_clean_ok_and_damage_marked(rec):
    rng = np.random.default_rng(0)
    wins = _mitdb_windows(rec)
    clean = [_q(w) for w in wins]
    assert clean.count("ok") >= 0.95 * len(wins), clean
    noisy = [_q(w + rng.normal(0, w.std(), w.size)) for w in wins]  # white noise at 0 dB SNR
    assert noisy.count("noisy") >= 0.8 * len(wins), noisy
    assert all(_q(np.clip(w, None, np.percentile(w, 97))) == "clipped" for w in wins)
    off = [w.copy() for w in wins]
    for w in off:
        w[1000:1900] = w[1000]  # 2.5 s lead-off
    assert all(_q(w) == "flat" for w in off)
    bad = wins[0].copy()
    bad[50] = np.nan
    assert _q(bad) == "non-finite"


def _damaged(wins, rng):
    """Real windows, each left clean or given one kind of damage (noise at a random SNR, lead-off of 1-3 s,
    clipping at a random percentile, a NaN, a flat line, a 60-Hz hum)."""
    out = []
    for i, w in enumerate(wins):
        w = w.copy()
        kind = i % 7
        if kind == 1:
            w = w + rng.normal(0, w.std() * rng.uniform(0.2, 2.0), w.size)
        elif kind == 2:
            a = int(rng.integers(0, w.size - 1100))
            w[a:a + int(rng.uniform(1.0, 3.0) * 360)] = w[a]
        elif kind == 3:
            w = np.minimum(w, np.percentile(w, rng.uniform(90, 99.8)))
        elif kind == 4:
            w[int(rng.integers(0, w.size))] = np.nan
        elif kind == 5:
            w = w + 0.3 * w.std() * rng.uniform(0.5, 3) * np.sin(2 * np.pi * 60 * np.arange(w.size) / 360)
        elif kind == 6 and i % 14 == 6:
            w[:] = w[0]
        out.append(w)
    return out


@pytest.mark.parametrize("rec", ["105", "203"])
def test_batched_gate_equals_per_window_definition_on_real_damaged_windows(rec):
    """batch_quality (one FFT / filter / percentile over the batch) decides exactly as window_quality does,
    window for window: status, reason and the rounded details (hr_bpm, sqi, hf)."""
    rng = np.random.default_rng(int(rec))
    raws = _damaged(_mitdb_windows(rec, 28), rng)
    xs = [resample(np.nan_to_num(w, nan=0.0)[None], 360)[0] for w in raws]
    ref = [window_quality(x, 200, w, 360) for x, w in zip(xs, raws)]
    got = batch_quality(np.stack(xs)[:, None], 200, [w[None] for w in raws], 360)
    assert got == ref
    statuses = {r[0] for r in ref}
    assert {"ok", "noisy", "flat", "clipped", "non-finite"} <= statuses, statuses  # every branch was exercised
    # and at the model rate with the window itself as the input (a 200-Hz record), in uneven batches
    # raw windows of uneven length (2.56-s windows at 100 Hz: 921 or 922 input samples), damaged
    sig = np.concatenate(raws)
    m = resample(np.nan_to_num(sig, nan=0.0)[None], 360, 100)[0]
    starts = range(0, len(m) - 256, 256)
    cuts = [(int(round(s * 3.6)), int(round((s + 256) * 3.6))) for s in starts]
    assert len({b - a for a, b in cuts}) == 2
    ref100 = [window_quality(m[s:s + 256], 100, sig[a:b], 360) for s, (a, b) in zip(starts, cuts)]
    got100 = batch_quality(np.stack([m[s:s + 256] for s in starts])[:, None], 100,
                           [sig[a:b][None] for a, b in cuts], 360)
    assert got100 == ref100 and len({r[0] for r in ref100}) >= 4
    ref200 = [window_quality(x, 200) for x in xs]
    got200 = batch_quality(np.stack(xs[:5])[:, None], 200) + batch_quality(np.stack(xs[5:])[:, None], 200)
    assert got200 == ref200


def test_stream_gate_per_push_equals_per_window_definition(monkeypatch):
    """StreamCore gates the windows of each push together: its results (with 360-Hz input, resampled, in
    uneven pushes) equal those of a StreamCore whose gate calls window_quality window by window."""
    from ecgtool.data import stream as st

    raws = _damaged(_mitdb_windows("119", 28), np.random.default_rng(3))
    sig = np.concatenate(raws)
    spec = {"sampling_rate": 200, "window_len": 2000}

    def run():
        core = StreamCore(lambda w: np.stack([w.mean(axis=(1, 2)), w.std(axis=(1, 2))], axis=1), spec, 360, ["a", "b"])
        out = core.push(sig[:17_001]) + core.push(sig[17_001:17_002]) + core.push(sig[17_002:])
        return out + core.close()[0]

    batched = run()
    monkeypatch.setattr(st, "batch_quality", lambda x, fs, raws, fs_raw, flat: [
        window_quality(w, fs, r, fs_raw, flat) for w, r in zip(x, raws)])
    per_window = run()
    assert len(batched) == 28 and batched == per_window
    assert {"ok", "noisy", "flat", "clipped", "non-finite"} <= {w["quality"] for w in batched}


@pytest.fixture(scope="module")
def model(trained_source, tmp_path_factory):
    folder, _ = copy_trained(trained_source, tmp_path_factory.mktemp("clinical"))
    return folder


def _signal(seconds: float, fs: float = 360.0) -> np.ndarray:
    import wfdb

    r = wfdb.rdrecord(str(shared_data("mitdb") / "100"), sampto=int(seconds * 360), channels=[0])
    return resample_poly(r.p_signal[:, 0], int(fs), 360) if fs != 360 else r.p_signal[:, 0]


def _probs(ws):
    return [(w["start_s"], w["rhythm"], w["quality"], None if w["probabilities"] is None
             else np.round(list(w["probabilities"].values()), 5).tolist()) for w in ws]


def test_stream_random_chunks_down_to_one_sample_equal_one_push_and_predict(model, tmp_path):
    x = _signal(14.0)  # the tiny model: 2.56-s windows at 100 Hz; 360 Hz input
    x[2000:2100] = np.nan  # one stretch of non-finite samples: those windows only
    one = Stream(model, fs=360, hop_s=1.0)
    a = one.push(x)
    a += one.close()[0]
    many, b, i = Stream(model, fs=360, hop_s=1.0), [], 0
    rng = np.random.default_rng(0)
    while i < x.size:
        n = 1 if i < 400 else int(rng.integers(1, 700))
        b += many.push(x[i:i + n])
        i += n
    b += many.close()[0]
    assert _probs(a) == _probs(b)
    assert {w["quality"] for w in a} >= {"non-finite"} and any(w["rhythm"] != "unclassifiable" for w in a)
    assert all(w["probabilities"] is None for w in a if w["quality"] != "ok")
    np.save(tmp_path / "r.npy", x)
    res = predict(model, [tmp_path / "r.npy"], fs=360, hop=1.0)[0]
    assert _probs(res["windows"]) == _probs(a)  # predict reads in chunks through the same StreamCore
    assert res["tail"] is not None and res["tail"]["seconds"] > 0  # 14 s is not a whole number of windows
    assert "non-finite" in res["clinical"]["unclassifiable_s"]


def test_non_finite_model_output_is_never_a_class(model):
    from ecgtool.runtime import load

    p = load(model)

    def poisoned(x):  # the real model, with its second window's output made NaN
        out = np.asarray(p.predict(x), dtype=np.float64)
        out[1:2] = np.nan
        return out

    core = StreamCore(poisoned, {**p.config["preprocessing"]}, 360, list(p.classes))
    ws = core.push(_signal(10.0)) + core.close()[0]
    assert ws[1]["rhythm"] == "unclassifiable" and ws[1]["quality"] == "non-finite-output"
    assert ws[0]["rhythm"] != "unclassifiable"


def _w(start, rhythm, p=0.9, length=10.0, quality="ok"):
    return {"start_s": start, "end_s": start + length, "rhythm": rhythm, "probability": p if rhythm != "unclassifiable" else None,
            "quality": quality, "hr_bpm": 70.0}


def test_episode_rule_and_burden():
    ws = ([_w(t, "AF") for t in range(0, 40, 10)] + [_w(40, "Normal")] + [_w(t, "AF", 0.7) for t in range(50, 80, 10)]
          + [_w(t, "unclassifiable", quality="noisy") for t in range(80, 110, 10)] + [_w(110, "AF")]
          + [_w(t, "Normal") for t in range(120, 200, 10)])
    classes = ["Normal", "AF"]
    eps = episodes(ws, min_episode_s=30, gap_s=10)
    af = [e for e in eps if e["rhythm"] == "AF"]
    # one Normal window (10 s) is bridged; the 30-s noisy gap is not; the lone 10-s AF window is too short
    assert [(e["start_s"], e["end_s"]) for e in af] == [(0, 80)]
    assert af[0]["windows"] == 7 and af[0]["mean_probability"] == pytest.approx((4 * 0.9 + 3 * 0.7) / 7)
    s = clinical_summary(ws, classes, 200.0)
    assert s["classifiable_s"] == 170 and s["unclassifiable_s"] == {"noisy": 30}
    assert s["af_burden"] == pytest.approx(80 / 170, abs=1e-6)
    # overlapping windows (hop 5 s): each second counted once
    ov = [_w(t, "AF") for t in range(0, 100, 5)]
    assert clinical_summary(ov, classes, 105.0)["time_in_rhythm_s"] == {"AF": 105.0}
    assert episodes(ws, min_episode_s=0, gap_s=0)[0]["end_s"] == 40


def test_predict_formats_and_bad_input(model, tmp_path):
    x = _signal(30.0)
    np.save(tmp_path / "rec.npy", x)
    np.save(tmp_path / "short.npy", x[:300])
    run = CliRunner().invoke
    r = run(cli, ["predict", str(model), str(tmp_path / "rec.npy"), "--fs", "360", "--format", "table", "-q"])
    assert r.exit_code == 0 and "AF burden" in r.output and "tail" in r.output, r.output
    r = run(cli, ["predict", str(model), str(tmp_path / "rec.npy"), "--fs", "360", "--format", "csv", "-q"])
    lines = r.output.strip().splitlines()
    assert lines[0].startswith("record,start_s,end_s,rhythm") and len(lines) == 1 + 11  # 11 windows of 2.56 s
    r = run(cli, ["predict", str(model), str(tmp_path / "rec.npy"), "--fs", "360", "--format", "wfdb", "--out",
                  str(tmp_path / "ann"), "-q"])
    assert r.exit_code == 0, r.output
    import wfdb

    ann = wfdb.rdann(str(tmp_path / "ann" / "rec"), "ecg")
    assert ann.sample[0] == 0 and all(a.startswith("(") for a in ann.aux_note)
    # batch: the short record is reported, the good one goes on
    r = run(cli, ["predict", str(model), str(tmp_path / "short.npy"), str(tmp_path / "rec.npy"), "--fs", "360",
                  "--format", "json", "-q"])
    doc = json.loads(r.output[r.output.index("{"):])
    assert "too short" in doc["records"][0]["error"] and doc["records"][1]["windows"]
    for args, msg in ((["--fs", "3"], "bad --fs: 3"), (["--fs", "360", "--hop", "0"], "--hop")):
        r = run(cli, ["predict", str(model), str(tmp_path / "rec.npy"), *args, "-q"])
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, r.output
    r = run(cli, ["predict", str(model), str(tmp_path / "short.npy"), "--fs", "360", "-q"])
    assert r.exit_code == 2 and "too short" in r.output


def test_bundle_stdin_text_and_raw_equal_file(model, tmp_path):
    x = _signal(12.0).astype(np.float32)
    np.save(tmp_path / "rec.npy", x)
    bundle = package(model, tmp_path / "bundle", precision="fp32")
    def run(*args, stdin=None):
        return subprocess.run([sys.executable, "run.py", *args], cwd=bundle, input=stdin, capture_output=True,
                              timeout=120)
    f = run(str(tmp_path / "rec.npy"), "--fs", "360")
    assert f.returncode == 0, f.stderr
    file_ws = json.loads(f.stdout)["records"][0]["windows"]
    text = run("--stdin", "--fs", "360", stdin="\n".join(f"{v:.9g}" for v in x).encode())
    raw = run("--stdin", "--fs", "360", "--raw", stdin=x.astype("<f4").tobytes())
    for out in (text, raw):
        assert out.returncode == 0, out.stderr
        lines = [json.loads(ln) for ln in out.stdout.decode().splitlines()]
        assert _probs(lines[:-1]) == _probs(file_ws)
        assert lines[-1]["tail"]["seconds"] > 0 and "af_burden" in lines[-1]["clinical"]


def test_predict_reference_scores_against_wfdb_rhythm_annotations(model, tmp_path):
    import wfdb

    from ecgtool.evaluate.rhythm_truth import read_reference, score_record

    x = _signal(60.0)
    wfdb.wrsamp("rec", fs=360, units=["mV"], sig_name=["MLII"], p_signal=x[:, None], fmt=["212"],
                write_dir=str(tmp_path))
    wfdb.wrann("rec", "atr", np.array([0, 20 * 360]), symbol=["+", "+"], aux_note=["(N", "(AFIB"],
               write_dir=str(tmp_path))
    run = CliRunner().invoke
    r = run(cli, ["predict", str(model), str(tmp_path / "rec.hea"), "--reference", "atr", "--format", "json", "-q"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output[r.output.index("{"):])["records"][0]
    ref = res["reference"]
    ok = [w for w in res["windows"] if w["rhythm"] != "unclassifiable"]
    assert ok and ref["reference_episodes"] == 1 and ref["reference_af_s"] == pytest.approx(
        min(60.0, res["windows"][-1]["end_s"]) - 20.0, abs=0.01)
    assert ref == {"annotations": "atr", "rule": ref["rule"],
                   **score_record({k: v for k, v in res.items() if k != "reference"}, read_reference(tmp_path / "rec")[0])}
    r = run(cli, ["predict", str(model), str(tmp_path / "rec.hea"), "--reference", "atr", "-q", "--format", "table"])
    assert r.exit_code == 0 and "vs reference (atr): AF burden" in r.output, r.output
    r = run(cli, ["predict", str(model), str(tmp_path / "rec.hea"), "--reference", "qrs", "-q", "--format", "table"])
    assert r.exit_code == 0 and "no reference annotations rec.qrs" in r.output, r.output


def test_batched_gate_equals_per_window_definition_on_generated_windows():
    """Hostile and odd windows (hypothesis): constant stretches, spikes, steps, NaN/inf, tiny and huge
    amplitudes, 1-3 leads, raw windows of uneven length: batch_quality == window_quality, window for window."""
    pytest.importorskip("hypothesis", reason="hypothesis is a [dev] dependency")
    from hypothesis import given
    from hypothesis import strategies as hs

    base = _mitdb_windows("119", 6)

    @given(hs.data())
    def check(data):
        n = data.draw(hs.integers(1, 5))
        leads = data.draw(hs.integers(1, 3))
        fs, length = 100, 256
        xs, raws = [], []
        for _ in range(n):
            src = base[data.draw(hs.integers(0, len(base) - 1))]
            a = data.draw(hs.integers(0, len(src) - 1000))
            m = data.draw(hs.sampled_from([921, 922]))
            chans = []
            for _ in range(leads):
                r = src[a:a + m] * data.draw(hs.sampled_from([1.0, 1e-4, 1e3, -1.0]))
                kind = data.draw(hs.sampled_from(["clean", "const", "spike", "step", "nan", "inf", "zero-run"]))
                r = r.copy()
                i = data.draw(hs.integers(0, m - 1))
                if kind == "const":
                    r[:] = r[i]
                elif kind == "spike":
                    r[i] += 50.0
                elif kind == "step":
                    r[i:] += 2.0
                elif kind in ("nan", "inf"):
                    r[i] = np.nan if kind == "nan" else np.inf
                elif kind == "zero-run":
                    r[i:i + data.draw(hs.integers(1, 900))] = 0.0
                chans.append(r)
            raw = np.stack(chans)
            raws.append(raw)
            xs.append(resample(np.nan_to_num(raw, nan=0.0, posinf=0.0)[:, :921], 360, fs)[:, :length])
        x = np.stack(xs)
        ref = [window_quality(w, fs, r, 360) for w, r in zip(x, raws)]
        assert batch_quality(x, fs, raws, 360) == ref

    check()


@pytest.mark.parametrize("text", ["0.5\n-1.25\n\n3e-3\n" * 50, "MLII,V5\n0.5,1\n-1.25,2\n\n3e-3,4\n" * 1])
def test_csv_chunks_are_the_same_with_pandas_and_with_loadtxt(tmp_path, monkeypatch, text):
    """ecgtool reads CSV with pandas' C parser (installed with wfdb); a bundle without it uses np.loadtxt: the same
    float64 values, blank lines skipped, a non-numeric value refused by both."""
    import sys

    from ecgtool.data import preprocess as pre
    from ecgtool.data.stream import open_record

    pytest.importorskip("pandas")
    f = tmp_path / "r.csv"
    f.write_text(text)

    def read(lead=None):
        _, chunks = open_record(f, 100.0, lead, 1, chunk_s=0.07)
        return np.concatenate(list(chunks), axis=1)

    with_pandas = read("MLII" if text.startswith("MLII") else None)
    monkeypatch.setitem(sys.modules, "pandas", None)
    without = read("MLII" if text.startswith("MLII") else None)
    assert with_pandas.dtype == without.dtype == np.float64 and np.array_equal(with_pandas, without)
    assert with_pandas.shape[1] == text.count("\n") - text.count("\n\n") - text.startswith("MLII")
    monkeypatch.undo()
    f.write_text(text.replace("-1.25", "abc", 1))
    for block in (False, True):
        if block:
            monkeypatch.setitem(sys.modules, "pandas", None)
        with pytest.raises(pre.UnusableRecord, match="non-numeric value in CSV"):
            read("MLII" if text.startswith("MLII") else None)


def test_stream_samples_near_the_float_limit_are_gated_without_warnings():
    """Finite samples of opposite sign near float64's limit overflow the resampler's offset subtraction: the
    window says so (quality non-finite, a reason, no class) and no RuntimeWarning escapes (hostile-input test)."""
    import warnings

    spec = {"sampling_rate": 200, "window_len": 2000}
    sig = np.sin(np.arange(360 * 30) / 20.0)
    sig[:3], sig[360 * 12:360 * 13] = -1.7e308, 1.7e308
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        core = StreamCore(lambda w: np.stack([w.mean(axis=(1, 2)), w.std(axis=(1, 2))], axis=1), spec, 360, ["a", "b"])
        out = core.push(sig) + core.close()[0]
    assert len(out) == 3
    middle = out[1]
    assert middle["quality"] == "non-finite" and middle["rhythm"] == "unclassifiable"
    assert "float limit" in middle["reason"] and middle["probability"] is None and not middle.get("probabilities")


def test_clipped_share_counts_a_sample_once_and_survives_the_float_limit():
    """A window railed at +-1.7e308 (span overflows to inf) or railed at one value everywhere is 100 % on
    plateaus, not 200 % (each sample counted on both rails before), with no RuntimeWarning; both gates agree."""
    import warnings

    fs, fs_raw = 200, 360
    x = np.sin(np.arange(2000) / 5.0)[None]  # the model-rate window: not flat, so the clip rule decides
    railed = np.where(np.arange(3600) % 400 < 200, 1.7e308, -1.7e308)[None].astype(np.float64)
    constant = np.full((1, 3600), 4.0)
    half = np.concatenate([np.full(1800, 4.0), np.sin(np.arange(1800) / 5.0)])[None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for raw, share in ((railed, "100.0 %"), (constant, "100.0 %"), (half, "50.0 %")):
            one = window_quality(x, fs, raw, fs_raw)
            batch = batch_quality(x[None], fs, [raw], fs_raw)[0]
            assert one == batch
            assert one[0] == "clipped" and one[1]["reason"].startswith(share), one
