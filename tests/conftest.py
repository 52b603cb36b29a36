"""Shared fixtures. Tests keep torch to one thread: CI has two cores and the suite must stay fast."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data(name: str) -> Path:
    """Path of a real PhysioNet collection in ../shared/data, or skip the test saying why."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data not present: {path} (see ../shared/data/README.md)")
    return path


# Property-based (hostile input) tests: a fast profile in `make test`, a long one in `make test-slow`
# (HYPOTHESIS_PROFILE=long: at least 10,000 generated inputs over the hostile-input tests, bounded in time).
try:
    from hypothesis import HealthCheck, settings

    settings.register_profile("fast", max_examples=40, deadline=None, derandomize=True,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("long", max_examples=2500, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    import os as _os

    settings.load_profile(_os.environ.get("HYPOTHESIS_PROFILE", "fast"))
except ImportError:  # hypothesis is a [dev] dependency; the hostile-input tests skip without it
    pass
