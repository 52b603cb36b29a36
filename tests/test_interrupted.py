"""SIGKILL at a random moment of export / quantize / package: the run folder stays verifiable and the next
command succeeds (slow: each case starts ecgtool in a subprocess; `make test-slow`)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, copy_trained
from ecgtool.core.manifest import record_artifact

pytestmark = pytest.mark.slow

ENV = {**os.environ, "PYTHONPATH": str(REPO / "toolkit"), "OMP_NUM_THREADS": "1", "ECGTOOL_THREADS": "1"}


def ecgtool(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ecgtool", "--quiet", *args], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def killed_after(delay: float, *args: str) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "ecgtool", "--quiet", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


COMMANDS = {
    "export": lambda m, d: ["export", str(m), "--format", "onnx"],
    "quantize": lambda m, d: ["export", str(m), "--format", "onnx-int8", "--data", str(d)],
    "package": lambda m, d: ["package", str(m), "--out", str(m.parent / "bundle"), "--precision", "fp32",
                             "--overwrite"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_sigkill_leaves_the_run_verifiable_and_the_rerun_correct(trained_source, tmp_path, command):
    rng = random.Random(12)
    delays = sorted(rng.uniform(0.3, 6.0) for _ in range(4))
    for i, delay in enumerate(delays):
        model, data = copy_trained(trained_source, tmp_path / f"k{i}")
        for f in sorted(model.iterdir()):  # the run as `ecgtool train` leaves it: its files in manifest.json
            record_artifact(f, run_dir=model.parent)
        args = COMMANDS[command](model, data)
        killed_after(delay, *args)
        v = ecgtool("verify", str(model.parent))
        assert v.returncode == 0, f"{command} killed after {delay:.2f} s: verify says\n{v.stdout}{v.stderr}"
        again = ecgtool(*args)
        assert again.returncode == 0, f"{command} after a kill at {delay:.2f} s:\n{again.stderr}"
        v = ecgtool("verify", str(model.parent))
        assert v.returncode == 0, f"{command} rerun after a kill at {delay:.2f} s: verify says\n{v.stdout}{v.stderr}"
        assert not list(model.parent.rglob("*.tmp*")) or command == "package"
