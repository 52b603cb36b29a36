"""threads "auto" (core.machine.resolve_threads): decided by what is busy now, not by the lagging load average."""

from __future__ import annotations

import pytest

from ecgtool.core import machine
from ecgtool.core.errors import BadInput


@pytest.fixture
def auto(monkeypatch):
    """resolve_threads('auto') on a 2-core machine with a given load average and /proc/stat jiffies."""
    monkeypatch.delenv(machine.THREADS_ENV, raising=False)
    monkeypatch.setattr(machine.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(machine.time, "sleep", lambda s: None)
    monkeypatch.setattr(machine, "_busy_seen", [])

    def run(load: float, jiffies: list | None):
        monkeypatch.setattr(machine.os, "getloadavg", lambda: (load, load, load))
        seq = iter(jiffies) if jiffies is not None else None
        monkeypatch.setattr(machine, "_cpu_jiffies", lambda: None if seq is None else next(seq))
        machine._busy_seen.clear()
        return machine.resolve_threads("auto")
    return run


def test_idle_machine_after_a_busy_minute_takes_every_core(auto):
    # load average 1.55 (the minute of `make test` just ended), but 2 of 1000 jiffies busy now
    n, why = auto(1.55, [(1000, 10000), (1002, 11000)])
    assert n == 2 and "quiet" in why and "0.00 cores busy now" in why and "1.55" in why


def test_a_job_that_just_started_is_seen_although_the_load_average_is_low(auto):
    # load average 0.10, but one of the two cores busy over the sample
    n, why = auto(0.10, [(0, 0), (500, 1000)])
    assert n == 1 and "busy" in why and "1.00 cores busy now" in why


def test_without_proc_stat_the_load_average_decides(auto):
    assert auto(0.4, None)[0] == 2
    n, why = auto(1.2, None)
    assert n == 1 and why == "auto: machine busy, load average 1.20 >= 1 on 2 cores"


def test_a_measurement_is_reused_for_a_while(auto, monkeypatch):
    auto(0.0, [(0, 0), (0, 1000)])
    monkeypatch.setattr(machine, "_cpu_jiffies", lambda: pytest.fail("measured again"))
    assert machine.resolve_threads("auto")[0] == 2


def test_explicit_and_env_settings_are_not_measured(auto, monkeypatch):
    monkeypatch.setattr(machine, "_cpu_jiffies", lambda: pytest.fail("measured"))
    assert machine.resolve_threads(3) == (3, "as given")
    monkeypatch.setenv(machine.THREADS_ENV, "1")
    assert machine.resolve_threads("auto") == (1, f"${machine.THREADS_ENV}")
    with pytest.raises(BadInput):
        machine.resolve_threads("many")


def test_the_real_proc_stat_gives_a_number_of_cores(monkeypatch):
    monkeypatch.setattr(machine, "_busy_seen", [])
    if machine._cpu_jiffies() is None:
        pytest.skip("no /proc/stat on this system")
    busy = machine.busy_cores(0.05)
    assert busy is not None and 0.0 <= busy <= (machine.os.cpu_count() or 1) + 1e-9
