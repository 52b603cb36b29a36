"""Train/validation/test splits: the paper's stratified 64/16/20, or grouped by patient."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split


def random_split(labels: np.ndarray, seed: int = 0, test: float = 0.2, val: float = 0.2) -> dict[str, np.ndarray]:
    """The paper's split: 80/20 train/test, then 80/20 of train into train/val (64/16/20), stratified."""
    idx = np.arange(len(labels))
    strat = labels if _stratifiable(labels) else None
    trval, te = train_test_split(idx, test_size=test, random_state=seed, stratify=strat)
    strat2 = labels[trval] if strat is not None and _stratifiable(labels[trval]) else None
    tr, va = train_test_split(trval, test_size=val, random_state=seed, stratify=strat2)
    return {"train": np.sort(tr), "val": np.sort(va), "test": np.sort(te)}


def _stratifiable(labels: np.ndarray) -> bool:
    """Stratification needs two members of every class that is present (absent classes do not count)."""
    counts = np.bincount(labels)
    return bool(counts[counts > 0].min() >= 2) if len(labels) else False


def patient_split(
    labels: np.ndarray, groups: Sequence[str], seed: int = 0, test: float = 0.2, val: float = 0.2
) -> dict[str, np.ndarray]:
    """Split so that no patient is in two splits, stratified by class as far as the groups allow.

    Uses scikit-learn's StratifiedGroupKFold: 1/round(1/test) of the groups for test, then the same
    for validation out of the rest (64/16/20 for the defaults).
    """
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    idx = np.arange(len(labels))

    def _hold_out(sub: np.ndarray, frac: float, s: int) -> tuple[np.ndarray, np.ndarray]:
        n_groups = len(np.unique(groups[sub]))
        k = max(2, min(int(round(1 / frac)), n_groups))
        if n_groups < 2:
            return sub, sub[:0]
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=s)
        keep, hold = next(cv.split(sub, labels[sub], groups[sub]))
        return sub[keep], sub[hold]

    trval, te = _hold_out(idx, test, seed)
    tr, va = _hold_out(trval, val, seed + 1)
    return {"train": np.sort(tr), "val": np.sort(va), "test": np.sort(te)}


def split_overlap(groups: Sequence[str], splits: dict[str, np.ndarray]) -> dict[str, int]:
    """Number of patients shared by each pair of splits (all zero for a proper patient split)."""
    groups = np.asarray(groups)
    sets = {k: set(groups[v].tolist()) for k, v in splits.items()}
    names = list(sets)
    return {
        f"{a}&{b}": len(sets[a] & sets[b]) for i, a in enumerate(names) for b in names[i + 1 :]
    }


def holdout_split(labels: np.ndarray, groups: Sequence[str], records: Sequence[str], holdout: Sequence[str],
                  seed: int = 0, val: float = 0.2) -> dict[str, np.ndarray]:
    """Leave-records-out: every window of the `holdout` records, and of any record sharing a patient
    (`groups`) with one of them, is the test split; the other windows are split by patient into
    train/validation (`val` of the patients, stratified as far as the groups allow). A class that the
    validation patients have and the training patients lack (one patient holds it all) moves with those
    patients to train: a class seen only in validation could not be learnt."""
    labels, groups, records = np.asarray(labels), np.asarray(groups), np.asarray(records).astype(str)
    held_patients = set(groups[np.isin(records, [str(r) for r in holdout])].tolist())
    test_mask = np.isin(groups, list(held_patients))
    te, rest = np.flatnonzero(test_mask), np.flatnonzero(~test_mask)
    if not len(rest):
        return {"train": rest, "val": rest, "test": te}
    n_groups = len(np.unique(groups[rest]))
    if n_groups < 2:
        return {"train": rest, "val": rest[:0], "test": te}
    k = max(2, min(int(round(1 / val)), n_groups))
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    keep, hold = next(cv.split(rest, labels[rest], groups[rest]))
    tr, va = rest[keep], rest[hold]
    missing = set(labels[va].tolist()) - set(labels[tr].tolist())
    if missing:
        move = np.isin(groups[va], np.unique(groups[va][np.isin(labels[va], list(missing))]))
        tr, va = np.concatenate([tr, va[move]]), va[~move]
    return {"train": np.sort(tr), "val": np.sort(va), "test": np.sort(te)}
