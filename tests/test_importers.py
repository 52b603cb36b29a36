"""Importers on small records written with wfdb in tmp_path: each source, splits, and every bad input."""

from __future__ import annotations

import csv
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import wfdb
from click.testing import CliRunner
from scipy.signal import resample_poly

from ecgtool.cli.main import main
from ecgtool.data.dataset import load_dataset
from ecgtool.data.importers import import_dataset
from ecgtool.data.splits import split_overlap
from ecgtool.core.errors import BadInput

LEADS12 = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def ecg_like(seconds: float, fs: float, n_leads: int = 1, bpm: float = 70, seed: int = 0) -> np.ndarray:
    """[T, n_leads] mV: narrow R-like pulses at `bpm` plus a little noise (not flat, finite)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * fs))) / fs
    phase = (t * bpm / 60.0) % 1.0
    beat = np.exp(-((phase - 0.3) ** 2) / 0.0005) + 0.2 * np.sin(2 * np.pi * phase)
    sig = beat[:, None] * np.linspace(0.5, 1.5, n_leads)[None, :]
    return sig + 0.01 * rng.standard_normal(sig.shape)


def write_record(folder: Path, name: str, signal: np.ndarray, fs: float, leads: list[str],
                 comments: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    n = signal.shape[1]
    wfdb.wrsamp(name, fs=fs, units=["mV"] * n, sig_name=leads, p_signal=signal, fmt=["16"] * n,
                adc_gain=[1000.0] * n, baseline=[0] * n, comments=comments or [], write_dir=str(folder))
    return folder / name


def challenge_record(folder: Path, name: str, dx: str, seconds: float = 10, fs: float = 500, seed: int = 0,
                     signal: np.ndarray | None = None) -> Path:
    sig = ecg_like(seconds, fs, 12, seed=seed) if signal is None else signal
    return write_record(folder, name, sig, fs, LEADS12, ["Age: 60", f"Dx: {dx}"])


def challenge_folder(tmp_path: Path, n_per_class: int = 3) -> Path:
    src = tmp_path / "challenge"
    codes = {"426783006": "N", "164889003": "AF", "426177001": "SB"}
    i = 0
    for code, tag in codes.items():
        for _ in range(n_per_class):
            challenge_record(src, f"A{i:04d}", code, seed=i)
            i += 1
    return src


def skipped_reasons(out: Path) -> dict[str, str]:
    with open(out / "skipped.csv", newline="", encoding="utf-8") as fh:
        return {r["record_id"]: r["reason"] for r in csv.DictReader(fh)}


# ---------------------------------------------------------------- challenge

def test_challenge_lead_ii_gain_and_labels(tmp_path):
    src = challenge_folder(tmp_path)
    sig = ecg_like(10, 500, 12, seed=99)
    sig[:, 1] *= -1.0  # lead II upside down: only lead II selection gives the flipped window
    challenge_record(src, "B0001", "164889003,426783006", signal=sig)  # AF + sinus -> AF by priority
    out = import_dataset("challenge", src, tmp_path / "out")
    ds = load_dataset(out)
    assert ds.signals.shape == (10, 1, 2000)
    assert ds.meta["lead"] == "II" and ds.meta["leads"] == ["II"]
    assert ds.meta["sampling_rate"] == 200 and ds.meta["split"]["kind"] == "random"
    assert ds.meta["label_priority"][0] == "PVC" and ds.meta["label_priority"][-1] == "Normal"
    assert float(ds.signals.min()) == 0.0 and float(ds.signals.max()) == 1.0
    rows = {r["record_id"]: (i, r) for i, r in enumerate(ds.records)}
    i, row = rows["B0001"]
    assert row["label"] == "AF" and ds.classes[ds.labels[i]] == "AF"
    # the stored window is lead II (flipped), not lead I: it correlates negatively with lead I's shape
    ref = resample_poly(ecg_like(10, 500, 12, seed=99)[:, 0], 2, 5)
    assert np.corrcoef(ds.signals[i, 0], ref)[0, 1] < -0.9
    assert ds.meta["counts"]["all"]["AF"] == 4 and ds.meta["counts"]["all"]["SB"] == 3


def test_challenge_abbreviations_and_all_leads(tmp_path):
    src = tmp_path / "c2020"
    for i, dx in enumerate(["AF", "i-avb", "Normal", "PVC", "Normal", "AF"]):
        challenge_record(src, f"Q{i}", dx, seed=i)
    out = import_dataset("challenge", src, tmp_path / "out", lead="all")
    ds = load_dataset(out)
    assert ds.signals.shape == (6, 12, 2000)
    assert [r["label"] for r in ds.records] == ["AF", "FAB", "Normal", "PVC", "Normal", "AF"]


def test_challenge_missing_lead_lists_available(tmp_path):
    src = challenge_folder(tmp_path, 1)
    with pytest.raises(BadInput, match=r"no lead V7 \(leads: I, II, III"):
        import_dataset("challenge", src, tmp_path / "out", lead="V7")


def test_challenge_header_quirk_record_name_with_suffix(tmp_path):
    src = challenge_folder(tmp_path, 2)
    rec = challenge_record(src, "E07500", "164889003", seed=7)
    hea = rec.with_suffix(".hea")
    lines = hea.read_text().splitlines()
    lines[0] = lines[0].replace("E07500", "E07500.dat", 1)
    hea.write_text("\n".join(lines) + "\n")
    with pytest.raises(wfdb.io.header.HeaderSyntaxError):
        wfdb.rdheader(str(rec))
    ds = load_dataset(import_dataset("challenge", src, tmp_path / "out"))
    assert "E07500" in [r["record_id"] for r in ds.records]


def test_window_policy_all_groups_by_record(tmp_path):
    src = tmp_path / "long"
    for i in range(6):
        challenge_record(src, f"L{i}", ["426783006", "164889003"][i % 2], seconds=35, seed=i)
    ds = load_dataset(import_dataset("challenge", src, tmp_path / "out", window_policy="all"))
    assert len(ds) == 18  # 3 full windows in 35 s
    assert ds.meta["split"]["kind"] == "patient" and ds.meta["split"]["group"] == "record"
    groups = [r["record"] for r in ds.records]
    assert all(v == 0 for v in split_overlap(groups, ds.splits).values())
    first = load_dataset(import_dataset("challenge", src, tmp_path / "first", window_policy="first"))
    assert len(first) == 6


def test_bandpass_changes_signal_and_is_recorded(tmp_path):
    src = challenge_folder(tmp_path, 1)
    plain = load_dataset(import_dataset("challenge", src, tmp_path / "a"))
    band = load_dataset(import_dataset("challenge", src, tmp_path / "b", bandpass=True))
    assert band.meta["preprocessing"]["bandpass"] and not plain.meta["preprocessing"]["bandpass"]
    assert not np.allclose(plain.signals[:], band.signals[:], atol=1e-3)


# ---------------------------------------------------------------- mitdb (synthetic)

def mitdb_record(folder: Path, name: str, seconds: float = 60, bpm: float = 75,
                 episodes=(("(N", 0.0), ("(AFIB", 30.0)), v_at: tuple[float, ...] = (25.0,)) -> None:
    fs = 360
    write_record(folder, name, ecg_like(seconds, fs, 2, bpm=bpm), fs, ["MLII", "V1"])
    beats = np.arange(0.3, seconds, 60.0 / bpm)
    samples = [int(b * fs) for b in beats]
    symbols = ["N"] * len(samples)
    for v in v_at:
        j = int(np.argmin(np.abs(beats - v)))
        symbols[j] = "V"
    rhythm = [(int(t * fs), note) for note, t in episodes]
    allv = sorted([(s, sym, "") for s, sym in zip(samples, symbols)] + [(s, "+", n) for s, n in rhythm])
    wfdb.wrann(name, "atr", np.array([a[0] for a in allv]), symbol=[a[1] for a in allv],
               aux_note=[a[2] for a in allv], write_dir=str(folder))


def test_mitdb_windows_labels_and_patients(tmp_path):
    src = tmp_path / "mitdb"
    for name in ("100", "201", "202", "203", "104"):
        mitdb_record(src, name)
    out = import_dataset("mitdb", src, tmp_path / "out", seed=1)
    ds = load_dataset(out)
    assert skipped_reasons(out) == {"104": "paced record: left out, its rhythm is the pacemaker's"}
    per_rec = [(r["record"], r["start_s"], r["label"]) for r in ds.records if r["record"] == "100"]
    assert per_rec == [("100", "0.0", "Normal"), ("100", "10.0", "Normal"), ("100", "20.0", "PVC"),
                       ("100", "30.0", "AF"), ("100", "40.0", "AF"), ("100", "50.0", "AF")]
    assert {r["patient_id"] for r in ds.records if r["record"] in ("201", "202")} == {"201"}
    assert ds.meta["split"]["kind"] == "patient"
    assert all(v == 0 for v in ds.meta["split"]["overlap"].values())
    groups = [r["patient_id"] for r in ds.records]
    assert all(v == 0 for v in split_overlap(groups, ds.splits).values())
    leaky = load_dataset(import_dataset("mitdb", src, tmp_path / "random", split="random"))
    assert leaky.meta["split"]["kind"] == "random" and sum(leaky.meta["split"]["overlap"].values()) > 0


def test_mitdb_derive_st_marks_windows(tmp_path):
    src = tmp_path / "mitdb"
    mitdb_record(src, "100", seconds=30, bpm=120, episodes=(("(N", 0.0),), v_at=())
    mitdb_record(src, "101", seconds=30, bpm=70, episodes=(("(N", 0.0),), v_at=())
    mitdb_record(src, "103", seconds=30, bpm=70, episodes=(("(AFIB", 0.0),), v_at=())
    ds = load_dataset(import_dataset("mitdb", src, tmp_path / "st", derive_st=True))
    by_rec = {}
    for r in ds.records:
        by_rec.setdefault(r["record"], set()).add((r["label"], bool(r["derived"])))
    assert by_rec == {"100": {("ST", True)}, "101": {("Normal", False)}, "103": {("AF", False)}}
    assert ds.meta["derived"] == {"ST": 3}
    plain = load_dataset(import_dataset("mitdb", src, tmp_path / "plain"))
    assert "ST" not in {r["label"] for r in plain.records}


def test_custom_label_set_adds_a_class(tmp_path):
    src = tmp_path / "mitdb"
    mitdb_record(src, "100", episodes=(("(N", 0.0), ("(SVTA", 30.0)), v_at=())
    mitdb_record(src, "101", episodes=(("(VT", 0.0), ("(N", 30.0)), v_at=())
    yaml_file = tmp_path / "classes.yaml"
    yaml_file.write_text(
        "classes:\n"
        "  - {name: Normal, mitdb: ['(N']}\n"
        "  - {name: SVT, mitdb: ['(SVTA'], snomed: [426761007]}\n"
        "  - {name: VT, mitdb: ['(VT']}\n"
        "priority: [VT, SVT, Normal]\n")
    ds = load_dataset(import_dataset("mitdb", src, tmp_path / "out", classes_file=yaml_file))
    assert ds.classes == ["Normal", "SVT", "VT"]
    assert ds.meta["counts"]["all"] == {"Normal": 6, "SVT": 3, "VT": 3}


# ---------------------------------------------------------------- cinc2017 and ptbxl

def test_cinc2017_reference_letters(tmp_path):
    src = tmp_path / "cinc2017"
    letters = {"A00001": "N", "A00002": "A", "A00003": "O", "A00004": "~", "A00005": "N", "A00006": "A",
               "A00007": "N"}
    for i, name in enumerate(letters):
        write_record(src, name, ecg_like(30 if i % 2 else 9.5, 300, 1, seed=i) if i != 6 else ecg_like(12, 300, 1),
                     300, ["ECG"])
    (src / "REFERENCE.csv").write_text("".join(f"{k},{v}\n" for k, v in letters.items()))
    out = import_dataset("cinc2017", src, tmp_path / "out")
    ds = load_dataset(out)
    reasons = skipped_reasons(out)
    assert reasons["A00003"].startswith("no target label: 'O'") and reasons["A00004"].startswith("no target label: '~'")
    assert reasons["A00001"].startswith("too short: 9.50 s") and reasons["A00005"].startswith("too short")
    assert sorted((r["record_id"], r["label"]) for r in ds.records) == [("A00002", "AF"), ("A00006", "AF"), ("A00007", "Normal")]
    assert ds.meta["lead"] == "single (AliveCor)"


def test_cinc2017_without_reference_is_bad_input(tmp_path):
    write_record(tmp_path / "c", "A00001", ecg_like(12, 300, 1), 300, ["ECG"])
    with pytest.raises(BadInput, match="REFERENCE.csv: not found"):
        import_dataset("cinc2017", tmp_path / "c", tmp_path / "out")


def ptbxl_folder(tmp_path: Path) -> Path:
    src = tmp_path / "ptbxl"
    rows = []
    codes = ["{'NORM': 100.0, 'SR': 0.0}", "{'AFIB': 100.0}", "{'1AVB': 100.0, 'SR': 0.0}",
             "{'SBRAD': 0.0}", "{'STACH': 0.0}", "{'IMI': 50.0}", "{'NORM': 100.0, 'SR': 0.0}",
             "{'AFLT': 0.0}", "{'PVC': 100.0, 'SR': 0.0}", "{'NORM': 80.0, 'SR': 0.0}"]
    for i, code in enumerate(codes, start=1):
        hr = f"records500/00000/{i:05d}_hr"
        lr = f"records100/00000/{i:05d}_lr"
        write_record(src / "records100" / "00000", f"{i:05d}_lr", ecg_like(10, 100, 12, seed=i), 100, LEADS12)
        if i % 2:
            write_record(src / "records500" / "00000", f"{i:05d}_hr", ecg_like(10, 500, 12, seed=i), 500, LEADS12)
        rows.append({"ecg_id": i, "patient_id": f"{1000 + i // 2}.0", "scp_codes": code, "strat_fold": (i % 10) + 1,
                     "filename_lr": lr, "filename_hr": hr})
    with open(src / "ptbxl_database.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return src


def test_ptbxl_statements_patients_and_strat_fold(tmp_path):
    src = ptbxl_folder(tmp_path)
    out = import_dataset("ptbxl", src, tmp_path / "out")
    ds = load_dataset(out)
    labels = {r["record_id"]: r["label"] for r in ds.records}
    assert labels == {"1": "Normal", "2": "AF", "3": "FAB", "4": "SB", "5": "ST", "7": "Normal",
                      "8": "AFL", "9": "PVC", "10": "Normal"}
    assert skipped_reasons(out)["6"] == "no target label: scp_codes IMI"
    assert ds.meta["split"]["kind"] == "patient" and ds.records[0]["patient_id"] == "1000"
    folds = load_dataset(import_dataset("ptbxl", src, tmp_path / "folds", split="strat-fold"))
    fold_of = {r["record_id"]: int(r["strat_fold"]) for r in folds.records}
    test_ids = {folds.records[i]["record_id"] for i in folds.splits["test"]}
    assert test_ids == {k for k, f in fold_of.items() if f == 10}
    assert folds.meta["split"]["kind"] == "strat-fold"


def test_strat_fold_only_for_ptbxl(tmp_path):
    with pytest.raises(BadInput, match="strat-fold"):
        import_dataset("challenge", challenge_folder(tmp_path, 1), tmp_path / "o", split="strat-fold")


# ---------------------------------------------------------------- bad input: skipped with a reason

def _edit_header(rec: Path, fn) -> None:
    hea = rec.with_suffix(".hea")
    lines = hea.read_text().splitlines()
    hea.write_text("\n".join(fn(lines)) + "\n")


def _first_line_field(i: int, value: str):
    def fn(lines):
        parts = lines[0].split()
        parts[i] = value
        lines[0] = " ".join(parts)
        return lines
    return fn


def _bad_missing_signal(rec):
    rec.with_suffix(".dat").unlink()


def _bad_truncated(rec):
    dat = rec.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[: 1000])


def _bad_unparseable(rec):
    rec.with_suffix(".hea").write_text("this is not a header\n")


def _bad_fs0(rec):
    _edit_header(rec, _first_line_field(2, "0"))


def _bad_fs_absurd(rec):
    _edit_header(rec, _first_line_field(2, "5000000"))


def _bad_enormous(rec):
    _edit_header(rec, _first_line_field(3, "900000000000"))


def _bad_length_beyond_file(rec):
    _edit_header(rec, _first_line_field(3, "50000000"))  # 28 h at 500 Hz: plausible, but not in the file


def _bad_non_utf8(rec):
    hea = rec.with_suffix(".hea")
    hea.write_bytes(hea.read_bytes() + b"# Sex: M\xe4nnlich\xff\n")


def _bad_unknown_label(rec):
    _edit_header(rec, lambda lines: [ln if not ln.startswith("# Dx") else "# Dx: 999999999,XYZ" for ln in lines])


BAD_RECORDS = {
    "missing_signal": (_bad_missing_signal, "signal file missing: BAD.dat"),
    "truncated_signal": (_bad_truncated, "signal file truncated: BAD.dat has 1000 bytes"),
    "unparseable_header": (_bad_unparseable, "header does not parse"),
    "sampling_rate_zero": (_bad_fs0, "bad sampling rate: 0"),
    "sampling_rate_absurd": (_bad_fs_absurd, "bad sampling rate: 5000000"),
    "enormous_length": (_bad_enormous, "enormous length: header claims 900000000000 samples"),
    "length_beyond_file": (_bad_length_beyond_file, "signal file truncated: BAD.dat has 120000 bytes"),
    "non_utf8_header": (_bad_non_utf8, "header not UTF-8: byte 0xe4"),
    "unknown_label": (_bad_unknown_label, "no target label: Dx 999999999,XYZ"),
}


@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_bad_record_is_skipped_with_reason(tmp_path, case):
    src = challenge_folder(tmp_path, 1)
    spoil, reason = BAD_RECORDS[case]
    spoil(challenge_record(src, "BAD", "164889003", seed=5))
    tracemalloc.start()
    try:
        out = import_dataset("challenge", src, tmp_path / "out")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100e6  # a claimed length is checked before anything of that size is allocated
    assert skipped_reasons(out)["BAD"].startswith(reason), skipped_reasons(out)["BAD"]
    ds = load_dataset(out)
    assert len(ds) == 3 and "BAD" not in [r["record_id"] for r in ds.records]
    assert ds.meta["skipped"]["count"] == 1


@pytest.mark.parametrize("case,make,reason", [
    ("nan", lambda s: s.__setitem__((1234, 1), np.nan), "non-finite samples: 1 NaN"),
    ("flat", lambda s: s.__setitem__((slice(None), 1), 0.25), "flat line"),
    ("short", None, "too short: 6.00 s"),
])
def test_bad_samples_are_skipped(tmp_path, case, make, reason):
    src = challenge_folder(tmp_path, 1)
    sig = ecg_like(6 if case == "short" else 10, 500, 12, seed=3)
    if make:
        make(sig)
    challenge_record(src, "BAD", "164889003", signal=sig)
    out = import_dataset("challenge", src, tmp_path / "out")
    assert skipped_reasons(out)["BAD"].startswith(reason)
    assert len(load_dataset(out)) == 3


def test_infinite_samples_rejected():
    from ecgtool.data.preprocess import UnusableRecord, prepare

    x = np.ones((1, 4000))
    x[0, 7] = np.inf
    with pytest.raises(UnusableRecord, match="non-finite samples: 1 infinite"):
        prepare(x, 200)


# ---------------------------------------------------------------- bad input: exit code 2, nothing written

def test_cli_nothing_usable_exit_2_one_line(tmp_path):
    src = tmp_path / "bad"
    for i in range(3):
        rec = challenge_record(src, f"X{i}", "164889003", seed=i)
        _bad_truncated(rec) if i else _bad_fs0(rec)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["data", "import", "challenge", str(src), "--out", str(out), "-q"])
    assert res.exit_code == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and str(src) in err[0] and "nothing usable" in err[0] and "truncated" in err[0]
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("what", ["not_a_folder", "empty_folder"])
def test_cli_src_not_records_exit_2(tmp_path, what):
    src = tmp_path / "src"
    if what == "empty_folder":
        src.mkdir()
    res = CliRunner().invoke(main, ["data", "import", "mitdb", str(src), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and str(src) in res.stderr
    assert ("not a folder" if what == "not_a_folder" else "no mitdb records") in res.stderr


def test_cli_refuses_to_overwrite_then_overwrites(tmp_path):
    src = challenge_folder(tmp_path, 1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["data", "import", "challenge", str(src), "--out", str(out), "-q"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "--overwrite" in res.stderr and (out / "keep.txt").read_text() == "mine"
    res = CliRunner().invoke(main, args + ["--overwrite", "--split", "random", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert "windows per class" in res.stdout and not (out / "keep.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind
    meta = json.loads((out / "meta.json").read_text())
    assert meta["split"] == {"kind": "random", "seed": 3, "stratified": False, "group": "record",
                             "overlap": {"train&val": 0, "train&test": 0, "val&test": 0}}
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"signals.npy", "labels.npy", "meta.json"} <= set(manifest["artifacts"])


def test_cli_records_filter_and_lead(tmp_path):
    src = challenge_folder(tmp_path, 2)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["data", "import", "challenge", str(src), "--out", str(out), "-q",
                                    "--records", "A0000,A0002,A0004", "--lead", "V1"])
    assert res.exit_code == 0, res.output
    ds = load_dataset(out)
    assert [r["record_id"] for r in ds.records] == ["A0000", "A0002", "A0004"] and ds.meta["leads"] == ["V1"]
    res = CliRunner().invoke(main, ["data", "import", "challenge", str(src), "--out", str(tmp_path / "o2"),
                                    "--records", "Z9"])
    assert res.exit_code == 2 and "no challenge records found matching the records filter" in res.stderr
