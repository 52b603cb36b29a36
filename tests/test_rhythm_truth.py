"""Scoring predicted AF against reference rhythm annotations (evaluate/rhythm_truth.py), on hand-made lists."""

from __future__ import annotations

import pytest

from conftest import shared_data
from ecgtool.evaluate.rhythm_truth import (classifiable_spans, intersect, merge, pool, read_reference,
                                           rhythm_intervals, score_episodes, score_record)


def test_intervals_merge_and_intersect():
    assert merge([(5, 8), (0, 2), (1, 3), (8, 9)]) == [(0, 3), (5, 9)]
    assert intersect([(0, 10), (20, 30)], [(5, 25)]) == [(5, 10), (20, 25)]
    assert intersect([(0, 1)], [(1, 2)]) == []  # touching is not overlapping


def test_rhythm_intervals_from_aux_notes_strip_nul_and_run_to_the_next_note():
    got = rhythm_intervals([0, 3600, 7200, 7300], ["(N", "(AFIB\x00", "", "(N"], 360.0, 36000)
    assert got == {"(N": [(0.0, 10.0), (7300 / 360, 100.0)], "(AFIB": [(10.0, 7300 / 360)]}


def test_episode_sensitivity_ppv_and_durations():
    ref = [(100, 200), (400, 410), (600, 700)]  # the 10-s one is under the 30-s minimum
    pred = [(150, 250), (405, 440), (800, 850)]
    s = score_episodes(pred, ref, min_ref_s=30)
    assert (s["reference_episodes"], s["detected"], s["sensitivity"]) == (2, 1, 0.5)
    # (405, 440) overlaps a short reference episode: a true positive, though that one is not counted for sensitivity
    assert (s["predicted_episodes"], s["true_predicted"]) == (3, 2) and s["ppv"] == pytest.approx(2 / 3)
    assert s["overlap_s"] == 55 and s["duration_sensitivity"] == pytest.approx(55 / 210)
    assert s["duration_ppv"] == pytest.approx(55 / 185)
    none = score_episodes([], ref, 30)
    assert none["sensitivity"] == 0 and none["ppv"] is None and none["duration_ppv"] is None
    assert score_episodes(pred, [], 30)["ppv"] == 0 and score_episodes(pred, [], 30)["sensitivity"] is None
    # reference AF outside the part the windows cover is left out
    assert score_episodes([], [(0, 100)], 30, covered=(0, 50))["reference_af_s"] == 50


def _w(start, rhythm, length=10.0):
    return {"start_s": start, "end_s": start + length, "rhythm": rhythm}


def test_score_record_burden_over_classifiable_time_and_pool():
    rhythms = ["Normal"] * 3 + ["AF"] * 4 + ["unclassifiable"] + ["AF"] * 2
    windows = [_w(10.0 * i, r) for i, r in enumerate(rhythms)]  # 0-100 s
    assert classifiable_spans(windows) == [(0.0, 70.0), (80.0, 100.0)]
    result = {"record": "r", "windows": windows,
              "clinical": {"af_burden": 6 / 9, "episode_rule": {"min_episode_s": 30.0, "gap_s": 10.0}, "episodes": [{"rhythm": "AF", "start_s": 30.0, "end_s": 100.0},
                                                            {"rhythm": "Normal", "start_s": 0.0, "end_s": 30.0}]}}
    ref = {"(AFIB": [(40.0, 100.0)], "(N": [(0.0, 40.0)]}
    r = score_record(result, ref)
    # reference AF inside classifiable time: 40-70 and 80-100 = 50 s of 90 s
    assert r["burden_reference"] == pytest.approx(50 / 90, abs=1e-6)
    assert r["burden_error_pp"] == pytest.approx(100 * (6 / 9 - 50 / 90), abs=0.01)
    assert (r["detected"], r["reference_episodes"], r["true_predicted"], r["predicted_episodes"]) == (1, 1, 1, 1)
    miss = score_record({**result, "clinical": {**result["clinical"], "af_burden": 0.0, "episodes": []}}, ref)
    # the reference minimum follows the prediction's episode rule: a 40-s minimum leaves no reference episode
    assert score_record({**result, "clinical": {**result["clinical"], "episode_rule": {"min_episode_s": 40.0}}},
                        {"(AFIB": [(40.0, 70.0)]})["reference_episodes"] == 0
    assert miss["sensitivity"] == 0 and miss["burden_error_pp"] == pytest.approx(-100 * 50 / 90, abs=0.01)
    p = pool([r, miss])
    assert (p["detected"], p["reference_episodes"], p["sensitivity"]) == (1, 2, 0.5)
    assert p["ppv"] == 1.0 and p["mean_abs_burden_error_pp"] == pytest.approx((abs(r["burden_error_pp"]) + abs(miss["burden_error_pp"])) / 2, abs=0.01)


def test_read_reference_on_real_mitdb_af_record():
    ref, seconds = read_reference(shared_data("mitdb") / "201.hea")
    assert 1800 < seconds < 1810
    af = ref["(AFIB"]
    assert af and all(0 <= a < b <= seconds for a, b in af)
    covered = sum(b - a for v in ref.values() for a, b in v)
    assert covered <= seconds + 1e-6 and covered > 0.95 * seconds
