"""The run manifest: concurrent writers lose nothing, verify is bounded, tampered artifacts are refused."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from ecgtool.cli.main import main
from ecgtool.core.errors import BadInput
from ecgtool.core.files import write_text
from ecgtool.core.manifest import read_manifest, record_artifact, record_in_run, verify_artifact, verify_manifest


def _record_many(run: str, start: int) -> None:
    for i in range(start, start + 20):
        f = Path(run) / f"a{i}.txt"
        write_text(f, str(i))
        record_artifact(f, run_dir=run, command="test")


def test_a_file_written_outside_any_run_is_not_recorded(tmp_path):
    run, model = tmp_path / "run", tmp_path / "run" / "m"
    model.mkdir(parents=True)
    write_text(model / "config.json", "{}")
    parent = model / "model.onnx"
    write_text(parent, "fp32")
    inside, stray = model / "model.int8.onnx", tmp_path / "elsewhere" / "x.onnx"
    stray.parent.mkdir()
    write_text(inside, "int8")
    write_text(stray, "int8")
    assert record_in_run(inside, parent=parent)["parent"] == "m/model.onnx"
    assert "m/model.int8.onnx" in read_manifest(run)["artifacts"]
    assert record_in_run(stray, parent=parent) is None and not (stray.parent / "manifest.json").exists()
    write_text(stray.parent / "manifest.json", '{"artifacts": {}}')  # a run folder of its own: recorded there
    assert record_in_run(stray, parent=parent) is not None and "x.onnx" in read_manifest(stray.parent)["artifacts"]


def test_evaluating_a_lone_file_writes_no_manifest_beside_it(tmp_path):
    """`ecgtool evaluate /tmp/x.onnx` wrote /tmp/manifest.json, which then made /tmp the run of every later file
    below it (a test in /tmp/pytest-of-*/ failed on it). A lone file's evaluation is written, not recorded."""
    from ecgtool.evaluate.artifact import write_evaluation

    lone = tmp_path / "x.onnx"
    write_text(lone, "int8")
    metrics = {"artifact": str(lone), "data": str(tmp_path / "d"), "split": "test", "macro_f1": 0.5,
               "confusion_matrix": [[1, 0], [0, 1]], "classes": ["A", "B"]}
    out, png = write_evaluation(metrics, tmp_path / "x.eval-d-test.json")
    assert out.exists() and png.exists() and not (tmp_path / "manifest.json").exists()
    model = tmp_path / "run" / "m"  # beside a model folder's own file: recorded in its run
    model.mkdir(parents=True)
    write_text(model / "config.json", "{}")
    write_text(model / "model.onnx", "fp32")
    write_evaluation({**metrics, "artifact": str(model / "model.onnx")}, model / "model.eval-d-test.json")
    assert "m/model.eval-d-test.json" in read_manifest(tmp_path / "run")["artifacts"]


def test_two_processes_recording_into_one_run_lose_no_entry(tmp_path):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_record_many, args=(str(tmp_path), k * 100)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert len(read_manifest(tmp_path)["artifacts"]) == 40


def test_verify_reads_only_regular_files_inside_the_run(tmp_path):
    run = tmp_path / "run"
    write_text(run / "ok.txt", "fine")
    record_artifact(run / "ok.txt", run_dir=run, command="t")
    os.symlink("/dev/zero", run / "zero")
    doc = json.loads((run / "manifest.json").read_text())
    doc["artifacts"]["zero"] = {"sha256": "0" * 64, "size_bytes": 10}
    doc["artifacts"]["../outside.txt"] = {"sha256": "0" * 64, "size_bytes": 1}
    doc["artifacts"]["bad"] = "not an entry"
    (run / "manifest.json").write_text(json.dumps(doc))
    status = {r["artifact"]: r["status"] for r in verify_manifest(run)}
    assert status == {"ok.txt": "ok", "zero": "not a regular file", "../outside.txt": "outside the run folder",
                      "bad": "malformed entry"}


def test_malformed_manifest_is_one_line_exit_2(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    r = CliRunner().invoke(main, ["verify", str(tmp_path)])
    assert r.exit_code == 2 and "manifest.json" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(BadInput, match="malformed manifest"):
        verify_manifest(tmp_path)


def test_a_tampered_artifact_is_refused_before_use(tmp_path):
    run = tmp_path / "run"
    f = run / "model.onnx"
    write_text(f, "original bytes")
    record_artifact(f, run_dir=run, command="t")
    verify_artifact(f)  # unchanged: accepted
    f.write_text("tampered bytes")
    with pytest.raises(BadInput, match="differs from its SHA-256"):
        verify_artifact(f)


def test_no_verify_lasts_one_invocation(tmp_path):
    """`--no-verify` in one in-process call (a test, a notebook) must not switch the check off for the next."""
    run = tmp_path / "run"
    f = run / "model.onnx"
    write_text(f, "original bytes")
    record_artifact(f, run_dir=run, command="t")
    f.write_text("tampered bytes")
    assert CliRunner().invoke(main, ["--no-verify", "models"]).exit_code == 0
    with pytest.raises(BadInput, match="differs from its SHA-256"):
        verify_artifact(f)
    assert CliRunner().invoke(main, ["models"]).exit_code == 0
    with pytest.raises(BadInput, match="differs from its SHA-256"):
        verify_artifact(f)
