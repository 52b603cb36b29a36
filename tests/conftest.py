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


@pytest.fixture(scope="session")
def trained_source(tmp_path_factory) -> Path:
    """One width-8 se_resnet18 trained through `fit` on the tiny sinusoid dataset, once per session.

    Trained rather than random so that INT8 agreement and F1 mean something. Tests take private
    copies with `copy_trained` (they export into the folder).
    """
    from tiny_dataset import LENGTH, make_tiny_dataset

    from ecgtool.data.dataset import load_dataset
    from ecgtool.data.preprocess import spec_from_meta
    from ecgtool.models import get_model, save_model
    from ecgtool.train.fit import fit

    root = tmp_path_factory.mktemp("trained")
    ds = load_dataset(make_tiny_dataset(root / "data", per_class=20, length=LENGTH, seed=0))
    torch.manual_seed(0)
    model = get_model("se_resnet18", width=8, classes=ds.classes, preprocessing=spec_from_meta(ds.meta),
                      extra={"input_length": LENGTH})
    model, _ = fit(model, ds, epochs=30, batch_size=32, lr=1e-2, patience=30, device="cpu", seed=0, precise_bn=0)
    save_model(root / "run" / "se_resnet18", model)
    return root


def copy_trained(source: Path, dest: Path) -> tuple[Path, Path]:
    """(model folder, dataset) of a private copy of `trained_source` under `dest`."""
    import shutil

    shutil.copytree(source, dest, dirs_exist_ok=True)
    return dest / "run" / "se_resnet18", dest / "data"


@pytest.fixture(scope="session")
def benched(tmp_path_factory) -> tuple[Path, Path, list[dict]]:
    """The tiny run of tiny_run.make_run after `bench` (rows), once per session."""
    from tiny_run import BENCH_OPTIONS, make_run

    from ecgtool.bench.runner import bench

    run, data = make_run(tmp_path_factory.mktemp("tiny"))
    return run, data, bench([run], data, out=run, **BENCH_OPTIONS).rows


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
