"""`ecgtool data synth` and `ecgtool data info` end to end, dataset_info(), and bad usage (exit 2)."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from ecgtool.core.manifest import verify_manifest
from ecgtool.cli.main import main
from ecgtool.data.classes import DEFAULT_CLASSES
from ecgtool.data.dataset import load_dataset, write_dataset
from ecgtool.data.info import dataset_info
from ecgtool.data.synth import write_synthetic_dataset


def test_cli_synth_then_info(tmp_path):
    out = tmp_path / "syn"
    runner = CliRunner()
    res = runner.invoke(main, ["data", "synth", "--out", str(out), "--total", "70", "--balance", "equal",
                               "--seed", "3", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "70 records (Normal 10, AF 10" in res.output
    ds = load_dataset(out)
    assert ds.signals.shape == (70, 1, 2000) and ds.meta["source"] == "synthetic"
    assert ds.meta["sampling_rate"] == 200 and ds.meta["lead"] == "II" and ds.meta["seed"] == 3
    assert "min-max" in ds.meta["preprocessing"]
    assert sorted(np.concatenate(list(ds.splits.values())).tolist()) == list(range(70))
    assert [len(ds.splits[k]) for k in ("train", "val", "test")] == [44, 12, 14]  # 64/16/20, sklearn rounding
    assert all(r["status"] == "ok" for r in verify_manifest(out)) and len(verify_manifest(out)) == 5

    res = runner.invoke(main, ["data", "info", str(out)])
    assert res.exit_code == 0, res.output
    assert "records per class per split" in res.output and "no patient in two splits" in res.output
    assert "no records of" not in res.output
    res = runner.invoke(main, ["data", "info", str(out), "--json"])
    info = json.loads(res.output)
    assert info["counts"]["all"] == {c: 10 for c in DEFAULT_CLASSES}
    assert sum(info["counts"]["test"].values()) == 14 and info["patients"]["total"] == 70


def test_synth_bad_usage_exits_2_and_overwrites_nothing(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["data", "synth", "--out", str(tmp_path / "a"), "--per-class", "5", "--total", "70"])
    assert res.exit_code == 2 and "not both" in res.output and not (tmp_path / "a").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    res = runner.invoke(main, ["data", "synth", "--out", str(busy), "--per-class", "6"])
    assert res.exit_code == 2 and "not empty" in res.output
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    res = runner.invoke(main, ["data", "synth", "--out", str(tmp_path / "b"), "--total", "30"])
    assert res.exit_code == 2 and "at least 6" in res.output and not (tmp_path / "b").exists()
    res = runner.invoke(main, ["data", "info", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and str(tmp_path / "nothing") in res.output


def test_same_seed_same_files(tmp_path):
    a = write_synthetic_dataset(tmp_path / "a", per_class=6, seed=4)
    b = write_synthetic_dataset(tmp_path / "b", per_class=6, seed=4)
    for name in ("signals.npy", "labels.npy", "records.csv", "splits.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_info_reports_patient_overlap_and_label_priority(tmp_path):
    n = 14
    labels = np.arange(n) % 7
    records = [{"record_id": f"r{i}", "patient_id": f"p{i // 2}"} for i in range(n)]  # 2 records/patient
    splits = {"train": np.arange(0, 10), "val": np.arange(10, 12), "test": np.arange(12, 14)}
    splits["test"] = np.array([9, 13])  # record 9 (patient p4) is also in train: a leak
    meta = {"sampling_rate": 500, "source": "test", "label_priority": ["AF", "AFL", "Normal"],
            "split": {"kind": "patient", "seed": 5}}
    write_dataset(tmp_path / "d", np.zeros((n, 1, 50), np.float32), labels, DEFAULT_CLASSES, records, splits,
                  meta, skipped=[{"record": "x", "reason": "too short: 3 s"}])
    info = dataset_info(tmp_path / "d")
    assert info["patients"] == {"total": 7, "train": 5, "val": 1, "test": 2}
    assert info["patient_overlap"]["train&test"] == 1 and not info["patients_disjoint"]
    assert info["label_priority"] == ["AF", "AFL", "Normal"]
    assert info["split"] == "patient" and info["seed"] == 5
    assert info["missing"]["val"] == ["Normal", "AF", "AFL", "ST", "PVC"]  # val holds FAB, SB and "all" not in info["missing"]
    assert info["skipped"] == {"count": 1, "reasons": {"too short": 1}}
    res = CliRunner().invoke(main, ["data", "info", str(tmp_path / "d")])
    assert res.exit_code == 0 and "train&test 1 (patients in two splits)" in res.output
    assert "label priority" in res.output and "no records of Normal, AF, AFL, ST, PVC in val" in res.output


def test_cli_synth_diverse_morphology_and_its_bad_usage(tmp_path):
    runner = CliRunner()
    out = tmp_path / "div"
    res = runner.invoke(main, ["data", "synth", "--out", str(out), "--per-class", "6", "--morphology", "diverse",
                               "--lead", "random", "--quiet"])
    assert res.exit_code == 0, res.output
    ds = load_dataset(out)
    gen = ds.meta["generator"]
    assert gen["version"] == 2 and gen["morphology"] == "diverse" and gen["lead"] == "random"
    assert ds.meta["lead"].startswith("random limb lead") and {r["lead"] for r in ds.records} <= {
        "I", "II", "III", "aVR", "aVL", "aVF"}
    std = write_synthetic_dataset(tmp_path / "std", per_class=6, seed=0)
    assert "morphology" not in load_dataset(std).meta["generator"] and load_dataset(std).meta["generator"]["version"] == 1
    assert dataset_info(out)["generator"] == "ecgtool.data.synth v2, morphology diverse, lead random"
    assert dataset_info(std)["generator"] == "ecgtool.data.synth v1"
    res = runner.invoke(main, ["data", "synth", "--out", str(tmp_path / "bad"), "--per-class", "6", "--lead", "aVR"])
    assert res.exit_code == 2 and "needs morphology 'diverse'" in res.output and not (tmp_path / "bad").exists()
    assert "Traceback" not in res.output


def test_rates_profile_follows_the_labels_and_warns_where_they_break_the_definition(tmp_path):
    """Synthetic sinus classes are generated inside their rate definitions (SB 38-60, Normal 60-100, ST 100-160
    bpm): no warning. The same windows with every SB window relabelled Normal: Normal's slow windows fall outside
    60-100 bpm by more than the margin, and the CLI names the folder and the class."""
    from ecgtool.core.names import RR_HEAD_CACHE
    from ecgtool.data.info import RATE_MARGIN_BPM, rate_profile

    out = tmp_path / "syn"
    runner = CliRunner()
    assert runner.invoke(main, ["data", "synth", "--out", str(out), "--total", "140", "--balance", "equal",
                                "--seed", "1", "--quiet"]).exit_code == 0
    res = runner.invoke(main, ["data", "info", str(out), "--rates", "--json", "--workers", "1"])
    assert res.exit_code == 0, res.output
    rates = {r["class"]: r for r in json.loads(res.output)["rates"]["classes"]}
    assert rates["SB"]["median_bpm"] < 60 < rates["Normal"]["median_bpm"] < 100 < rates["ST"]["median_bpm"]
    assert not any(r.get("warn") for r in rates.values())
    assert rates["SB"]["definition"] == "< 60 bpm" and "definition" not in rates["AF"]

    ds = load_dataset(out)
    labels = ds.labels.copy()
    sb, normal = DEFAULT_CLASSES.index("SB"), DEFAULT_CLASSES.index("Normal")
    labels[labels == sb] = normal
    bad = tmp_path / "relabelled"
    write_dataset(bad, np.asarray(ds.signals), labels, DEFAULT_CLASSES, ds.records, ds.splits,
                  {"sampling_rate": ds.sampling_rate})
    prof = {r["class"]: r for r in rate_profile(bad, workers=1, progress=False)["classes"]}
    assert prof["Normal"]["warn"] and prof["Normal"]["windows"] == 40 and prof["SB"]["windows"] == 0
    share = prof["Normal"]["outside_definition"]
    assert 0.1 <= share <= 0.5 and prof["Normal"]["under_60"] >= share  # below 60 - margin counts, not 55-60
    res = runner.invoke(main, ["data", "info", str(bad), "--rates", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert f"{bad}: {share * 100:.1f} % of 40 Normal windows are more than {RATE_MARGIN_BPM:g} bpm outside" in res.output
    whole = rate_profile(bad, workers=1, progress=False, max_windows=70)  # cached by the first call: every window
    assert not whole["sampled"] and whole["windows"] == 140
    (bad / RR_HEAD_CACHE).unlink()
    sampled = rate_profile(bad, workers=1, progress=False, max_windows=70)
    assert sampled["sampled"] and sampled["windows"] == 70 and sum(r["windows"] for r in sampled["classes"]) == 70
    assert not (bad / RR_HEAD_CACHE).exists()  # a sample is not cached
    res = runner.invoke(main, ["data", "info", str(bad), "--rates", "--split", "nope"])
    assert res.exit_code == 2 and "no split named 'nope'" in res.output
    res = runner.invoke(main, ["data", "info", str(bad), "--rates", "--workers", "many"])  # features cached by now
    assert res.exit_code == 2 and "neither a number nor auto" in res.output
    unl = tmp_path / "unlabelled"
    write_dataset(unl, np.asarray(ds.signals[:3]), np.full(3, -1), DEFAULT_CLASSES, ds.records[:3],
                  {"train": np.arange(3), "val": [], "test": []}, {"sampling_rate": ds.sampling_rate})
    res = runner.invoke(main, ["data", "info", str(unl), "--rates", "--workers", "1"])
    assert res.exit_code == 0 and "no labelled window in split 'all' (3 unlabelled)" in res.output


def test_rates_on_real_records_mitdb_slow_normal_and_the_challenge_sample(tmp_path):
    """Real PhysioNet data (skipped where ../shared/data is absent): MIT-BIH record 117's rhythm annotation is
    normal sinus rhythm at about 50 bpm, record 100's at about 75 bpm, so with 117 the Normal class breaks its
    rate definition and without it does not; the Challenge-2021 sample's labels follow the definitions."""
    from conftest import shared_data
    from ecgtool.data.importers import import_dataset
    from ecgtool.data.info import rate_profile

    mitdb = shared_data("mitdb")
    both = import_dataset("mitdb", mitdb, tmp_path / "m2", records=["100", "117"], split="random")
    prof = {r["class"]: r for r in rate_profile(both, workers=1, progress=False)["classes"]}
    assert prof["Normal"]["warn"] and 0.3 < prof["Normal"]["outside_definition"] < 0.7
    assert prof["Normal"]["p10_bpm"] < 55 < 70 < prof["Normal"]["p90_bpm"]
    alone = import_dataset("mitdb", mitdb, tmp_path / "m1", records=["100"], split="random")
    prof = {r["class"]: r for r in rate_profile(alone, workers=1, progress=False)["classes"]}
    assert not prof["Normal"]["warn"] and 60 < prof["Normal"]["median_bpm"] < 100
    ch = import_dataset("challenge", shared_data("cinc2021-sample"), tmp_path / "c")
    prof = rate_profile(ch, workers=1, progress=False)
    assert not any(r.get("warn") for r in prof["classes"])
    assert {r["class"]: r for r in prof["classes"]}["ST"]["median_bpm"] > 100
