"""Importers on the real PhysioNet records in ../shared/data (skipped where absent)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import wfdb
from scipy.signal import resample_poly

from conftest import shared_data
from ecgtool.data.dataset import load_dataset
from ecgtool.data.importers import import_dataset
from ecgtool.data.splits import split_overlap

MITDB_FEW = ["100", "102", "201", "202", "203", "232"]


def _windows_by(ds, key="record"):
    out: dict[str, Counter] = {}
    for r in ds.records:
        out.setdefault(r["label"], Counter())[r[key]] += 1
    return out


def test_mitdb_few_records(tmp_path):
    src = shared_data("mitdb")
    ds = load_dataset(import_dataset("mitdb", src, tmp_path / "m", records=MITDB_FEW))
    assert ds.meta["leads"] == ["MLII"] and ds.meta["sampling_rate"] == 200
    assert ds.signals.shape[1:] == (1, 2000)
    by = _windows_by(ds)
    assert set(by["SB"]) == {"232"} and by["SB"]["232"] == 180
    assert set(by["AF"]) <= {"201", "202", "203"} and sum(by["AF"].values()) > 100
    assert set(by["AFL"]) <= {"202", "203"} and sum(by["AFL"].values()) > 0
    assert "102" not in {r["record"] for r in ds.records}
    assert ds.meta["skipped"]["reasons"] == {"paced record": 1}
    assert {r["patient_id"] for r in ds.records if r["record"] in ("201", "202")} == {"201"}
    groups = [r["patient_id"] for r in ds.records]
    assert split_overlap(groups, ds.splits) == {"train&val": 0, "train&test": 0, "val&test": 0}
    # every PVC window holds a V beat; no Normal window does
    assert all("V" in r["source_labels"].split(";") for r in ds.records if r["label"] == "PVC")
    assert not any("V" in r["source_labels"].split(";") for r in ds.records if r["label"] == "Normal")


def test_challenge_sample_all_records(tmp_path):
    src = shared_data("cinc2021-sample")
    out = import_dataset("challenge", src, tmp_path / "c")
    ds = load_dataset(out)
    counts = ds.meta["counts"]["all"]
    # README of the sample: AF 5, 1st-degree AV block 3 records; PVC 7 + 1 (17338001)
    assert counts["AF"] == 5 and counts["FAB"] == 3 and counts["PVC"] == 8
    assert counts["SB"] <= 34 and counts["ST"] <= 33 and counts["Normal"] <= 54 and counts["AFL"] <= 7
    ids = [r["record_id"] for r in ds.records]
    assert sum(i.startswith("E") for i in ids) > 10  # the E* headers with the `.mat` quirk are read
    assert set(ds.meta["skipped"]["reasons"]) == {"no target label"}
    # the stored window is lead II, resampled and min-max normalised
    rec = wfdb.rdrecord(str(src / "A0689"))
    lead2 = rec.p_signal[:, rec.sig_name.index("II")]
    want = resample_poly(lead2, 2, 5, padtype="line")[:2000]
    want = (want - want.min()) / (want.max() - want.min())
    got = ds.signals[ids.index("A0689"), 0]
    assert np.allclose(got, want, atol=1e-5)


@pytest.mark.slow
def test_mitdb_full_import(tmp_path):
    src = shared_data("mitdb")
    ds = load_dataset(import_dataset("mitdb", src, tmp_path / "m"))
    counts = ds.meta["counts"]["all"]
    by = _windows_by(ds)
    assert ds.meta["records_read"] == 44 and ds.meta["skipped"]["reasons"] == {"paced record": 4}
    assert counts["SB"] == 180 and set(by["SB"]) == {"232"}
    assert counts["AFL"] == 60 and set(by["AFL"]) == {"202", "203", "222"}
    assert counts["PVC"] == 1239 and 700 <= counts["AF"] <= 752 and counts["FAB"] == counts["ST"] == 0
    assert not {"102", "104", "107", "217"} & {r["record"] for r in ds.records}
    groups = [r["patient_id"] for r in ds.records]
    assert all(v == 0 for v in split_overlap(groups, ds.splits).values())
