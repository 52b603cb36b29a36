"""The paper's training recipe for one network: `fit` (with `train_step`, validation, precise BN).

Recipe: Adam (lr from ecgtool.train.defaults: 1e-3; the paper's 1e-4 was for 28k records), cross-entropy
(optionally inverse-frequency class weights), early stopping on validation loss with a patience, best-validation weights restored. Batches are read from the
memory-mapped dataset one at a time, so a dataset larger than RAM trains. Every epoch is seeded from
(seed, epoch), so a run resumed from its checkpoint continues exactly as the uninterrupted one would.

One addition to the paper's recipe: before each validation the BatchNorm statistics are re-estimated
on a few training batches ("precise BN"). With few batches per epoch the running averages lag the
weights, and validation loss then rises while the model improves, which stops training early for the
wrong reason; the trained parameters are unchanged by it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ecgtool.core.errors import BadInput
from ecgtool.core.files import atomic_path, write_csv
from ecgtool.train import defaults as D
from ecgtool.train.augment import build_augment, parse_augment
from ecgtool.data.dataset import PreparedDataset, deployment_signals
from ecgtool.core.ui import progress_bar

HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "val_macro_f1", "val_accuracy", "lr", "seconds")


def check_splits(data: PreparedDataset) -> None:
    """BadInput when train or val is empty, or a class of val/test never occurs in train (names it)."""
    from ecgtool.data.dataset import require_labels

    require_labels(data, data.indices("all"), "training")

    for name in ("train", "val"):
        if len(data.indices(name)) < 2:
            raise BadInput(f"{data.root / 'splits.json'}: the {name} split has {len(data.indices(name))} records")
    in_train = set(np.unique(data.labels[data.indices("train")]).tolist())
    for name in ("val", "test"):
        lacking = sorted(set(np.unique(data.labels[data.indices(name)]).tolist()) - in_train)
        if lacking:
            names = ", ".join(data.classes[i] for i in lacking)
            raise BadInput(f"{data.root / 'splits.json'}: class {names} is in the {name} split but missing from train")


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` -> cuda when available, else cpu."""
    from ecgtool.train import distributed

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BadInput(f"--device {device}: no CUDA device is available")
    if device == "cuda" and distributed.world_size() > 1:
        return distributed.local_device()
    return torch.device(device)


def class_weight_vector(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights n / (k * n_c) (scikit-learn's "balanced"); 1.0 for absent classes."""
    from sklearn.utils.class_weight import compute_class_weight

    weights = np.ones(num_classes, dtype=np.float64)
    present = np.unique(labels)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels)
    return weights


def epoch_order(train_idx: np.ndarray, labels: np.ndarray, sampler: str | None, seed: int, epoch: int) -> np.ndarray:
    """Record indices of one epoch: a shuffle, or draws with replacement weighted 1/class count ("balanced")."""
    rng = np.random.default_rng([seed, epoch])
    if sampler == "balanced":
        counts = np.bincount(labels[train_idx])
        p = 1.0 / counts[labels[train_idx]]
        return rng.choice(train_idx, size=len(train_idx), replace=True, p=p / p.sum())
    return rng.permutation(train_idx)


def _batch(data: PreparedDataset, idx: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    order = np.argsort(idx, kind="stable")  # sorted reads are kinder to a memory map
    idx = idx[order]
    x = torch.from_numpy(np.ascontiguousarray(data.signals[idx], dtype=np.float32))
    y = torch.from_numpy(data.labels[idx])
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


class RRBound(nn.Module):
    """An RR-head model bound to its dataset's RR features [N, F]: called with (x, idx), it adds rr[idx].

    Lets every place that calls `model(x)` on dataset rows (validation, precise BN, pruning's gradients)
    feed an RR-head model without knowing about its second input. `idx` must be the rows of x
    in order (the sorted indices `_batch` reads).
    """

    def __init__(self, model: nn.Module, rr: np.ndarray):
        super().__init__()
        self.model = model
        self.rr = torch.from_numpy(np.ascontiguousarray(rr, dtype=np.float32))

    def forward(self, x: torch.Tensor, idx: np.ndarray | torch.Tensor) -> torch.Tensor:
        idx = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        return self.model(x, self.rr[idx].to(x.device))


def _call(model: nn.Module, x: torch.Tensor, idx: np.ndarray, rr: np.ndarray | torch.Tensor | None) -> torch.Tensor:
    """model(x), or model(x, rr[idx]) for an RR-head model (rr: the dataset's RR-head inputs [N, F], or the
    batch's own [B, F] as a tensor)."""
    if rr is None:
        return model(x)
    if isinstance(rr, torch.Tensor):
        return model(x, rr.to(x.device))
    return model(x, torch.from_numpy(np.ascontiguousarray(rr[np.sort(idx)], dtype=np.float32)).to(x.device))


def random_leads(x: torch.Tensor, gen: torch.Generator, rr: np.ndarray | None = None,
                 idx: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`--leads any`: one random lead per record of a [B, C, L] batch -> [B, 1, L]; with the dataset's
    per-lead RR-head inputs rr [N, C, F], the same lead's features [B, F] of rows `idx` (sorted)."""
    b, c, _ = x.shape
    lead = torch.randint(c, (b,), generator=gen)
    out = x[torch.arange(b), lead.to(x.device)].unsqueeze(1)
    if rr is None:
        return out, None
    rows = np.sort(np.asarray(idx))
    return out, torch.from_numpy(np.ascontiguousarray(rr[rows, lead.numpy()], dtype=np.float32))


class DeployLead:
    """A dataset view that reads the deployment lead (channel 0 of an `import --keep-leads` dataset) alone,
    for validation and BatchNorm statistics of a `--leads any` model (the same attributes `_batch` reads)."""

    def __init__(self, data: PreparedDataset):
        self._data = data
        self.signals = deployment_signals(data, {"in_channels": 1})
        self.labels = data.labels
        self.classes = data.classes


def validate(model: nn.Module, data: PreparedDataset, idx: np.ndarray, criterion: nn.Module, device: torch.device,
             batch_size: int = 256, rr: np.ndarray | None = None) -> dict[str, float]:
    """Validation loss (mean per record), macro-F1 and accuracy of `model` on records `idx`."""
    from ecgtool.evaluate.metrics import compute_metrics

    model.eval()
    total, preds, trues = 0.0, [], []
    with torch.no_grad():
        for start in range(0, len(idx), batch_size):
            rows = idx[start : start + batch_size]
            x, y = _batch(data, rows, device)
            out = _call(model, x, rows, rr)
            total += float(criterion(out, y)) * len(y)
            preds.append(out.argmax(1).cpu().numpy())
            trues.append(y.cpu().numpy())
    m = compute_metrics(np.concatenate(trues), np.concatenate(preds), data.classes)
    return {"val_loss": total / max(1, len(idx)), "val_macro_f1": m["macro_f1"], "val_accuracy": m["accuracy"]}


def write_history(path: str | os.PathLike, history: Sequence[dict]) -> None:
    write_csv(path, history, HISTORY_FIELDS)


def read_checkpoint(path: Path) -> dict:
    """A checkpoint ecgtool wrote, read without unpickling code (weights_only); BadInput for anything else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt zip, a pickle with code, a truncated file: all refused the same way
        kind = "holds objects other than tensors" if "weights_only" in str(exc) else "unreadable or corrupt"
        raise BadInput(f"{path}: not a checkpoint ecgtool wrote ({kind}); delete it to train from the start") from None
    if not isinstance(state, dict):
        raise BadInput(f"{path}: not a checkpoint ecgtool wrote; delete it to train from the start")
    return state


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def recalibrate_bn(model: nn.Module, data: PreparedDataset, idx: np.ndarray, batch_size: int,
                   device: torch.device, rr: np.ndarray | None = None) -> None:
    """Re-estimate BatchNorm running statistics as exact averages over records `idx` (no augmentation)."""
    from torch.optim.swa_utils import update_bn

    if rr is None:
        batches = (_batch(data, idx[s : s + batch_size], device)[0] for s in range(0, len(idx), batch_size))
        update_bn(batches, model, device=None)
        return
    # update_bn passes one object to the model: (signals, rows) dicts through RRBound
    bound = DictCall(RRBound(model, rr))
    batches = ({"x": _batch(data, rows, device)[0], "idx": np.sort(rows)}
               for rows in (idx[s : s + batch_size] for s in range(0, len(idx), batch_size)))
    update_bn(batches, bound, device=None)


class DictCall(nn.Module):
    """Calls `inner(**batch)`: torch's update_bn hands the model one object per batch."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, batch: dict) -> torch.Tensor:
        return self.inner(**batch)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module, x: torch.Tensor,
               y: torch.Tensor, loss_fn: Any = None, idx: np.ndarray | None = None,
               rr: np.ndarray | torch.Tensor | None = None) -> float:
    """One optimisation step on one batch; returns the batch's mean loss.

    `loss_fn(model, x, y, criterion, idx)` replaces cross-entropy; `idx` are the batch's record indices
    in the dataset (distillation takes the teacher's logits by index, whatever augmentation did to x).
    """
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model, x, y, criterion, idx) if loss_fn else criterion(_call(model, x, idx, rr), y)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def fit(
    model: nn.Module,
    data: PreparedDataset,
    *,
    epochs: int = D.EPOCHS,
    batch_size: int = D.BATCH_SIZE,
    lr: float = D.LR,
    patience: int = D.PATIENCE,
    device: str = "auto",
    class_weights: str | None = None,
    sampler: str | None = None,
    augment: Sequence[str] = (),
    seed: int = 0,
    desc: str = "",
    history_path: str | os.PathLike | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = False,
    loss_fn: Any = None,
    precise_bn: int = 32,
    rr: np.ndarray | None = None,
    leads: str = "deploy",
) -> tuple[nn.Module, list[dict]]:
    """Train on the train split, stop early on validation loss, return (model with best-val weights, history).

    history: one dict per epoch (epoch, train_loss, val_loss, val_macro_f1, val_accuracy, lr, seconds).
    `checkpoint_path`: model + optimizer state saved each epoch (torch.save of tensors, read back with
    weights_only=True); with `resume=True` an existing checkpoint is continued. `loss_fn(model, x, y,
    criterion, idx) -> loss` replaces the plain criterion in training; `idx` are the batch's dataset indices
    (distillation takes the teacher's logits by them). `precise_bn`:
    training batches used to re-estimate BatchNorm statistics before each validation (0: off). `rr`: the
    dataset's RR-head inputs [N, F] for an RR-head model (train/rr.py), fed beside each batch. `leads="any"`
    (an `import --keep-leads` dataset): each training record is one of its leads at random (rr then holds
    every lead's inputs [N, C, F]); validation and BatchNorm statistics use the deployment lead, channel 0.
    Under torchrun each rank trains on its shard with DistributedDataParallel (batch_size is the global
    batch); every rank validates the whole split, so all make the same early-stopping decision.
    """
    from ecgtool.train import distributed
    from ecgtool.core.ui import set_quiet

    if rr is not None and loss_fn is not None:
        raise BadInput("train: an RR-head model cannot be trained with a custom loss (distillation) yet")
    rank, world = distributed.setup()
    if rank > 0:
        set_quiet(True)
    dev = resolve_device(device)
    model.to(dev)
    net = distributed.wrap(model, dev)
    rank_batch = max(2, batch_size // world)
    train_idx, val_idx = data.indices("train"), np.sort(data.indices("val"))
    k = len(data.classes)
    weight = None
    if class_weights == "auto":
        weight = torch.tensor(class_weight_vector(data.labels[train_idx], k), dtype=torch.float32, device=dev)
    criterion = nn.CrossEntropyLoss(weight=weight)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    augmenter = build_augment(parse_augment(list(augment)), data.sampling_rate)
    if leads not in ("deploy", "any"):
        raise BadInput(f"--leads {leads}: choose deploy or any")
    eval_data, eval_rr = (DeployLead(data), (rr[:, 0] if rr is not None else None)) if leads == "any" else (data, rr)

    best, history, start_epoch = _start_state(model, optimizer, checkpoint_path, resume, patience, epochs)
    ckpt = Path(checkpoint_path) if checkpoint_path else None
    n_rank = len(distributed.shard(train_idx, rank, world))
    n_batches = n_rank // rank_batch + (n_rank % rank_batch > 1)
    todo = max(0, epochs - start_epoch + 1)
    with progress_bar(desc or "train", todo * n_batches) as bar:
        for epoch in range(start_epoch, epochs + 1):
            t0 = time.perf_counter()
            torch.manual_seed(seed * 100003 + epoch)
            gen = torch.Generator().manual_seed(seed * 100003 + epoch)
            order = epoch_order(train_idx, data.labels, sampler, seed, epoch)
            mine = distributed.shard(order, rank, world)
            running, seen = _train_epoch(net, optimizer, criterion, data, mine, rank_batch, dev, augmenter, gen,
                                         loss_fn, bar, rr, leads)
            if precise_bn > 0:
                recalibrate_bn(model, eval_data, order[: precise_bn * batch_size], batch_size, dev, eval_rr)
            running, seen = distributed.sum_all([running, seen], dev)
            row = {"epoch": epoch, "train_loss": running / max(1, seen),
                   **validate(model, eval_data, val_idx, criterion, dev, rr=eval_rr), "lr": optimizer.param_groups[0]["lr"]}
            row["seconds"] = round(time.perf_counter() - t0, 3)
            history.append(row)
            if row["val_loss"] < best["loss"]:
                best = {"loss": row["val_loss"], "epoch": epoch, "state": _cpu_state(model), "bad": 0}
            else:
                best["bad"] += 1
            bar.update(f"epoch {epoch}/{epochs} loss {row['train_loss']:.3f} val {row['val_loss']:.3f} "
                       f"F1 {row['val_macro_f1']:.3f}")
            if rank == 0:
                _save_progress(history_path, ckpt, model, optimizer, best, epoch, history)
            if best["bad"] >= patience:
                break
    model.load_state_dict(best["state"])
    model.eval()
    for row in history:
        row["best"] = row["epoch"] == best["epoch"]
    return model, history


def _start_state(model: nn.Module, optimizer: torch.optim.Optimizer, checkpoint_path: Any, resume: bool,
                 patience: int, epochs: int) -> tuple[dict, list[dict], int]:
    """(best-so-far, history, first epoch): fresh, or continued from a checkpoint when resuming."""
    best = {"loss": float("inf"), "epoch": 0, "state": _cpu_state(model), "bad": 0}
    ckpt = Path(checkpoint_path) if checkpoint_path else None
    if not (ckpt and resume and ckpt.exists()):
        return best, [], 1
    state = read_checkpoint(ckpt)
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        best = {"loss": float(state["best_loss"]), "epoch": int(state["best_epoch"]), "state": state["best_state"],
                "bad": int(state["bad_epochs"])}
        history = [dict(h) for h in state["history"]]
        start_epoch = int(state["epoch"]) + 1
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise BadInput(f"{ckpt}: does not match this model and recipe ({type(exc).__name__}); "
                       "delete it to train from the start") from None
    if best["bad"] >= patience:
        start_epoch = epochs + 1  # it had already stopped early
    return best, history, start_epoch


def _train_epoch(net: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module, data: PreparedDataset,
                 order: np.ndarray, batch: int, dev: torch.device, augmenter: Any, gen: torch.Generator,
                 loss_fn: Any, bar: Any, rr: np.ndarray | None = None, leads: str = "deploy") -> tuple[float, int]:
    """One pass over `order` in batches; (summed loss, records seen)."""
    net.train()
    running, seen = 0.0, 0
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        if len(idx) < 2:  # BatchNorm needs two records
            continue
        x, y = _batch(data, idx, dev)
        batch_rr: Any = rr
        if leads == "any":
            x, batch_rr = random_leads(x, gen, rr, idx)
        if augmenter is not None:
            x = augmenter(x, gen)
        running += train_step(net, optimizer, criterion, x, y, loss_fn, np.sort(idx), batch_rr) * len(y)
        seen += len(y)
        bar.advance()
    return running, seen


def _save_progress(history_path: Any, ckpt: Path | None, model: nn.Module, optimizer: torch.optim.Optimizer,
                   best: dict, epoch: int, history: list[dict]) -> None:
    """history.csv and the checkpoint after each epoch (main process only)."""
    if history_path:
        write_history(history_path, history)
    if ckpt:
        _save_checkpoint(ckpt, {"model": _cpu_state(model), "optimizer": optimizer.state_dict(),
                                "best_state": best["state"], "best_loss": best["loss"], "best_epoch": best["epoch"],
                                "bad_epochs": best["bad"], "epoch": epoch, "history": history})


def curves_png(history: Sequence[dict], path: str | os.PathLike, title: str = "") -> Path:
    """Training curve: train and validation loss (left axis) and validation macro-F1 (right axis)."""
    from ecgtool.core.plots import pyplot, save_figure

    plt = pyplot()

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot(ep, [h["train_loss"] for h in history], label="train loss")
    ax.plot(ep, [h["val_loss"] for h in history], label="val loss")
    best = [h["epoch"] for h in history if h.get("best")]
    if best:
        ax.axvline(best[0], color="grey", linestyle=":", label="best val loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax2 = ax.twinx()
    ax2.plot(ep, [h["val_macro_f1"] for h in history], color="tab:green", label="val macro-F1")
    ax2.set_ylabel("macro-F1")
    ax2.set_ylim(0, 1)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="center right")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return Path(path)


