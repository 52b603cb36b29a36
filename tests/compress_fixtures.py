"""Shared set-up for the export / quantisation / runtime tests: a tiny dataset and a briefly trained tiny model."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from tiny_dataset import make_tiny_dataset

from ecgtool.data.dataset import load_dataset
from ecgtool.data.preprocess import spec_from_meta
from ecgtool.models import get_model, save_model

LENGTH = 256
WIDTH = 8


def make_trained_run(root: Path, name: str = "se_resnet18", epochs: int = 30, seed: int = 0) -> tuple[Path, Path]:
    """(model folder, dataset): a width-8 model trained a few full-batch epochs on easily separable sinusoids.

    Trained rather than random so that INT8 agreement and F1 mean something.
    """
    data = make_tiny_dataset(root / "data", per_class=20, length=LENGTH, seed=seed)
    ds = load_dataset(data)
    x_np, y_np = ds.split("train")
    x, y = torch.from_numpy(np.asarray(x_np)), torch.from_numpy(y_np)
    torch.manual_seed(seed)
    model = get_model(name, width=WIDTH, classes=ds.classes, preprocessing=spec_from_meta(ds.meta),
                      extra={"input_length": LENGTH})
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=epochs * -(-len(x) // 32))
    model.train()
    for _ in range(epochs):
        for i in range(0, len(x), 32):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i:i + 32]), y[i:i + 32]).backward()
            opt.step()
            sched.step()
    model.eval()
    folder = save_model(root / "run" / name, model)
    return folder, data


_CACHE: dict[str, Path] = {}


def trained_run(dest: Path, name: str = "se_resnet18") -> tuple[Path, Path]:
    """A private copy (under `dest`) of one trained run per pytest session: trained once, copied per test module."""
    if name not in _CACHE:
        root = Path(tempfile.mkdtemp(prefix="ecgtool-trained-"))
        atexit.register(shutil.rmtree, root, True)
        make_trained_run(root, name)
        _CACHE[name] = root
    shutil.copytree(_CACHE[name], dest, dirs_exist_ok=True)
    return dest / "run" / name, dest / "data"
