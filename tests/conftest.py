"""Shared fixtures. Tests keep torch to one thread: CI has two cores and the suite must stay fast."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("ECGTOOL_THREADS", "1")  # what threads "auto" (train, bench, search, pipeline) resolves to

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data(name: str) -> Path:
    """Path of a real PhysioNet collection in ../shared/data, or skip the test saying why."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data not present: {path} (see ../shared/data/README.md)")
    return path
