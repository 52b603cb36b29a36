"""Data-parallel training under `torchrun` (DistributedDataParallel: gloo on CPU, nccl on GPU).

Outside torchrun (no WORLD_SIZE, or 1) every helper is a no-op: rank 0 of a world of 1.
Example: `torchrun --nproc-per-node 2 -m ecgtool train --data DIR --arch se_resnet --depth 18 --out RUN`.
"""

from __future__ import annotations

import os

import numpy as np
import torch


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup() -> tuple[int, int]:
    """(rank, world size); joins the process group on first use when launched by torchrun."""
    world = world_size()
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def is_main() -> bool:
    """True in the process that writes files and shows progress (rank 0, or no torchrun)."""
    return setup()[0] == 0


def local_device() -> torch.device:
    """This process's GPU under torchrun (LOCAL_RANK), else cuda:0."""
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def shard(order: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This rank's share of an epoch's record order: equal lengths on every rank (a few records dropped),
    so each rank runs the same number of batches and no collective waits forever."""
    if world <= 1:
        return order
    usable = len(order) // world * world
    return order[:usable][rank::world]


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model to train: DistributedDataParallel under torchrun, the model itself otherwise."""
    if world_size() <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    setup()
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def sum_all(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of `values` over all ranks."""
    if world_size() <= 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        setup()
        dist.barrier()
