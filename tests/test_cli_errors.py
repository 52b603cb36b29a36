"""Bad paths and failed work reach the user as one line and an exit code, never a traceback."""

from __future__ import annotations

from click.testing import CliRunner
from tiny_dataset import make_tiny_dataset

from ecgtool.cli.main import main


def test_an_unwritable_out_is_one_line_exit_2():
    for out in ("/proc/ecgtool-nope", "/dev/null/x"):
        r = CliRunner().invoke(main, ["data", "synth", "--out", out, "--per-class", "6"])
        assert r.exit_code == 2, r.output
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("ecgtool: error:")]
        assert len(lines) == 1 and "Traceback" not in r.output


def test_bench_exits_1_when_no_artifact_ran(tmp_path):
    data = make_tiny_dataset(tmp_path / "data")
    bad = tmp_path / "arts" / "broken.onnx"
    bad.parent.mkdir()
    bad.write_bytes(b"not an onnx model")
    r = CliRunner().invoke(main, ["bench", str(bad), "--data", str(data), "--out", str(tmp_path / "b"),
                                  "--min-runs", "2", "--warmup", "1", "--min-time", "0.01"])
    assert r.exit_code == 1 and "no artifact ran" in r.stderr and "failed:" in r.output
