"""Label sets: the packaged default, priority resolution, and clear errors for a bad user file."""

from __future__ import annotations

import pytest

from ecgtool.data.classes import DEFAULT_CLASSES
from ecgtool.data.labels import default_label_set_path, load_label_set
from ecgtool.core.errors import BadInput


def test_default_is_the_papers_seven_with_documented_table():
    ls = load_label_set()
    assert ls.classes == DEFAULT_CLASSES
    assert ls.priority == ["PVC", "AF", "AFL", "FAB", "SB", "ST", "Normal"]
    table = {"426783006": "Normal", "164889003": "AF", "164890007": "AFL", "270492004": "FAB",
             "426177001": "SB", "427084000": "ST", "427172004": "PVC", "17338001": "PVC"}
    for code, cls in table.items():
        assert ls.label("snomed", [code]) == cls
    assert default_label_set_path().is_file()


def test_priority_and_sources():
    ls = load_label_set()
    assert ls.label("snomed", ["426783006", "164889003"]) == "AF"          # AF over sinus rhythm
    assert ls.label("snomed", ["164889003", "427172004"]) == "PVC"         # PVC first
    assert ls.label("snomed", ["426177001", "270492004"]) == "FAB"         # conduction over rate
    assert ls.label("snomed", ["59118001"]) is None                          # not a target code
    assert ls.label("challenge", ["i-avb"]) == "FAB" and ls.label("challenge", ["STACH"]) == "ST"
    assert ls.label("ptbxl", ["NORM", "SR"]) == "Normal" and ls.label("ptbxl", ["AFLT", "SR"]) == "AFL"
    assert ls.label("cinc2017", ["O"]) is None and ls.label("mitdb", ["(SBR"]) == "SB"
    assert ls.beat_rules["PVC"] == (frozenset({"V"}), frozenset({"(N"}))


def test_user_file_with_extra_class(tmp_path):
    f = tmp_path / "svt.yaml"
    f.write_text("classes:\n  - {name: Normal, snomed: [426783006]}\n  - {name: SVT, snomed: [426761007], mitdb: ['(SVTA']}\n"
                 "priority: [SVT, Normal]\n")
    ls = load_label_set(f)
    assert ls.classes == ["Normal", "SVT"] and ls.label("snomed", ["426783006", "426761007"]) == "SVT"
    assert ls.to_meta()["file"] == str(f)


BAD = {
    "not_yaml": ("classes: [unclosed\n", "not valid YAML"),
    "not_mapping": ("- a\n- b\n", "expected a mapping"),
    "no_classes": ("priority: [A]\n", "'classes' must be a non-empty list"),
    "unnamed": ("classes:\n  - {snomed: [1]}\n  - {name: B}\n", "class #1 needs a 'name'"),
    "duplicate": ("classes:\n  - {name: A}\n  - {name: A}\n", "class 'A' is defined twice"),
    "typo_key": ("classes:\n  - {name: A, snowmed: [1]}\n  - {name: B}\n", "unknown key(s) snowmed"),
    "conflict": ("classes:\n  - {name: A, snomed: [1]}\n  - {name: B, snomed: [1]}\n", "maps to both 'A' and 'B'"),
    "bad_labels": ("classes:\n  - {name: A, snomed: {x: 1}}\n  - {name: B}\n", "must be a list of labels"),
    "priority_unknown": ("classes:\n  - {name: A}\n  - {name: B}\npriority: [A, B, C]\n", "unknown class(es) C"),
    "priority_missing": ("classes:\n  - {name: A}\n  - {name: B}\npriority: [A]\n", "lacks class(es) B"),
    "one_class": ("classes:\n  - {name: A}\n", "at least two classes"),
    "bad_beat_rule": ("classes:\n  - {name: A, mitdb_beats: [V]}\n  - {name: B}\n", "'mitdb_beats' must be"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_user_file_names_file_and_reason(tmp_path, case):
    text, reason = BAD[case]
    f = tmp_path / f"{case}.yaml"
    f.write_text(text)
    with pytest.raises(BadInput) as exc:
        load_label_set(f)
    msg = str(exc.value)
    assert msg.startswith(str(f) + ": ") and reason in msg and "\n" not in msg


def test_missing_and_non_utf8_file(tmp_path):
    with pytest.raises(BadInput, match="label-set file not found"):
        load_label_set(tmp_path / "nope.yaml")
    f = tmp_path / "latin.yaml"
    f.write_bytes(b"classes:\n  - {name: \xc4rger}\n")
    with pytest.raises(BadInput, match="not UTF-8"):
        load_label_set(f)
