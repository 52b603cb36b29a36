"""The RR head's inputs for every window of a prepared dataset (`train --rr-head`), cached beside it.

They are the classical baseline's window features (ecgtool.baseline.features: R peaks by wfdb's
XQRS, RR irregularity, premature beats, QRS width, P wave, atrial activity), compressed by
`head_vector`; the same function runs in every predictor and in the deploy bundle, so a model sees
the same numbers in training and in deployment. They are computed once per dataset and lead and cached
beside it (ecgtool.baseline.cache: window_feature_table).
"""

from __future__ import annotations

import numpy as np

from ecgtool.baseline.cache import window_feature_table
from ecgtool.baseline.features import head_vector
from ecgtool.data.dataset import PreparedDataset


def dataset_rr_inputs(data: PreparedDataset, channels: int | list[int] = 0, progress: bool = True,
                      bins: list[list[float]] | None = None, workers: int | str | None = None) -> np.ndarray:
    """RR-head inputs of every window: [N, D] for one channel, [N, len(channels), D] for a list
    (D = head_dim(bins); `bins`: the bin edges of a model trained with --rr-bins, else None)."""
    if isinstance(channels, int):
        return head_vector(window_feature_table(data, channels, progress, workers), bins)
    return np.stack([head_vector(window_feature_table(data, c, progress, workers), bins) for c in channels], axis=1)


# --- binned RR inputs (`train --rr-head --rr-bins N`) --------------------------------------------------

#: scikit-learn settings of the bin edges (KBinsDiscretizer; recorded in config.json as extra["rr_bins_fit"])
BINS_PARAMS = {"strategy": "quantile", "quantile_method": "averaged_inverted_cdf", "encode": "ordinal"}


def fit_rr_bins(feats: np.ndarray, n_bins: int) -> list[list[float]]:
    """Bin edges per feature (the interior edges, ascending, duplicates dropped) of scikit-learn's
    KBinsDiscretizer (quantile strategy, `n_bins`) fitted on the finite values of each column of the
    training rows' window features [N, F]; a feature with fewer than 2 distinct values gets no edges.
    baseline.features.bin_indicators codes a value against them (numpy only, so the bundle can)."""
    import warnings

    from sklearn.preprocessing import KBinsDiscretizer

    from ecgtool.core.errors import BadInput

    if n_bins < 2:
        raise BadInput(f"--rr-bins {n_bins}: give 2 or more bins (0 for none)")
    f = np.asarray(feats, dtype=np.float64)
    edges: list[list[float]] = []
    for j in range(f.shape[1]):
        col = f[np.isfinite(f[:, j]), j]
        if len(np.unique(col)) < 2:
            edges.append([])
            continue
        with warnings.catch_warnings():  # "bins whose width are too small are removed": what we want here
            warnings.simplefilter("ignore")
            kb = KBinsDiscretizer(n_bins=n_bins, subsample=None, **BINS_PARAMS).fit(col[:, None])
        edges.append([float(e) for e in np.unique(kb.bin_edges_[0][1:-1])])
    return edges


# --- starting the hybrid from the RR model (`train --rr-head --rr-init logreg`) -----------------------

#: `--rr-init` choices: the RR head starts as a logistic regression on the RR features (trunk columns zero);
#: "logreg-frozen" also keeps those RR columns, the classifier's bias and rr_norm fixed in training, so the
#: trunk can only add a residual to the regression's logits
RR_INITS = ("logreg", "logreg-frozen")
#: scikit-learn settings of the initial regression (recorded in config.json)
LOGREG_PARAMS = {"C": 1.0, "class_weight": "balanced", "max_iter": 2000, "solver": "lbfgs"}


def standardise(rr: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z, mean, var): rr [N, F] standardised as an eval-mode BatchNorm with these running statistics,
    weight 1 and bias 0 computes it, (rr - mean) / sqrt(var + eps)."""
    x = np.asarray(rr, dtype=np.float64)
    mean, var = x.mean(axis=0), x.var(axis=0)
    return (x - mean) / np.sqrt(var + eps), mean, var


def fit_rr_logreg(rr: np.ndarray, labels: np.ndarray, eps: float = 1e-5, seed: int = 0):
    """scikit-learn's multinomial LogisticRegression (balanced class weights) on standardised RR-head inputs;
    returns (classifier, mean, var) of the standardisation."""
    from sklearn.linear_model import LogisticRegression

    from ecgtool.core.errors import BadInput

    labels = np.asarray(labels, dtype=np.int64)
    if len(np.unique(labels)) < 2:
        raise BadInput(f"--rr-init logreg: the training split has {len(np.unique(labels))} class(es); it needs 2")
    z, mean, var = standardise(rr, eps)
    clf = LogisticRegression(random_state=seed, **LOGREG_PARAMS).fit(z, labels)
    return clf, mean, var


def init_rr_head(model, rr: np.ndarray, labels: np.ndarray, train_idx: np.ndarray, mode: str = "logreg",
                 seed: int = 0) -> dict:
    """Make an RR-head model's untrained output the logistic regression's on its RR features.

    rr: the dataset's RR-head inputs, [N, F] (or [N, C, F] per lead, `--leads any`: every lead's row is a
    training example). rr_norm gets the training rows' mean and variance (weight 1, bias 0); fc's RR columns
    and bias the regression's coefficients and intercepts; fc's trunk columns 0, so training starts from the
    regression and adds the trunk as a residual. A class absent from the training split gets bias 10 below
    the lowest winning logit on the training rows (never predicted there, and no outlier for an INT8 scale).
    mode "logreg-frozen": the RR columns, the bias and rr_norm's affine parameters get no updates in
    training. Returns what config.json records (extra["rr_init_fit"]).
    """
    import torch

    from ecgtool.core.errors import BadInput

    if mode not in RR_INITS:
        raise BadInput(f"--rr-init {mode}: choose from {', '.join(RR_INITS)}")
    if getattr(model, "rr_norm", None) is None:
        raise BadInput("--rr-init applies to an RR-head model (--rr-head)")
    idx = np.asarray(train_idx, dtype=np.int64)
    x = np.asarray(rr[idx], dtype=np.float64)
    y = np.asarray(labels[idx], dtype=np.int64)
    if x.ndim == 3:  # every lead of each training record
        y = np.repeat(y, x.shape[1])
        x = x.reshape(-1, x.shape[-1])
    norm, fc = model.rr_norm, model.fc
    clf, mean, var = fit_rr_logreg(x, y, eps=float(norm.eps), seed=seed)
    z = standardise(x, float(norm.eps))[0]
    present = clf.classes_.astype(np.int64)
    logits = z @ clf.coef_.T + clf.intercept_ if len(present) > 2 else None
    k, f = fc.out_features, x.shape[1]
    trunk = fc.in_features - f
    weight = np.zeros((k, fc.in_features))
    bias = np.zeros(k)
    if len(present) == 2:  # scikit-learn's binary form: one coefficient row, for the second class
        weight[present[1], trunk:] = clf.coef_[0] / 2
        weight[present[0], trunk:] = -clf.coef_[0] / 2
        bias[present[1]], bias[present[0]] = clf.intercept_[0] / 2, -clf.intercept_[0] / 2
        logits = np.stack([-(z @ clf.coef_[0] + clf.intercept_[0]) / 2, (z @ clf.coef_[0] + clf.intercept_[0]) / 2], 1)
    else:
        weight[present, trunk:] = clf.coef_
        bias[present] = clf.intercept_
    absent = sorted(set(range(k)) - set(present.tolist()))
    if absent:
        bias[absent] = float(logits.max(axis=1).min()) - 10.0
    with torch.no_grad():
        norm.running_mean.copy_(torch.from_numpy(mean))
        norm.running_var.copy_(torch.from_numpy(var))
        norm.weight.fill_(1.0)
        norm.bias.zero_()
        fc.weight.copy_(torch.from_numpy(weight))
        fc.bias.copy_(torch.from_numpy(bias))
    if mode == "logreg-frozen":
        mask = torch.ones_like(fc.weight)
        mask[:, trunk:] = 0
        fc.weight.register_hook(lambda g: g * mask.to(g.device))
        for p in (fc.bias, norm.weight, norm.bias):
            p.requires_grad_(False)
    pred = clf.predict(z)
    return {"mode": mode, "estimator": "sklearn.linear_model.LogisticRegression", "params": dict(LOGREG_PARAMS),
            "train_rows": int(len(y)), "classes": [int(c) for c in present], "absent_bias": [int(c) for c in absent],
            "train_accuracy": round(float(np.mean(pred == y)), 4), "iterations": int(np.max(clf.n_iter_))}


# --- choosing N by cross-validation on the training split (`train --rr-bins auto`) ---------------------

def parse_rr_bins(value) -> int | str:
    """`--rr-bins` / train.rr_bins: "auto", or a count, 0 (none) or 2..RR_BINS_MAX; BadInput otherwise."""
    from ecgtool.core.errors import BadInput
    from ecgtool.train.defaults import RR_BINS_MAX

    if value is None:
        return 0
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        if isinstance(value, bool) or float(value) != int(float(value)):
            raise ValueError
        n = int(float(value))
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"--rr-bins {value!r}: expected auto or a number of bins (0 for none, 2 to {RR_BINS_MAX})") from None
    if n < 0 or n > RR_BINS_MAX:
        raise BadInput(f"--rr-bins {n}: expected auto or a number of bins (0 for none, 2 to {RR_BINS_MAX})")
    if n == 1:
        raise BadInput(f"--rr-bins {n}: give 2 or more bins (0 for none)")
    return n


def _coded_logreg(n_bins: int, seed: int):
    """scikit-learn Pipeline: the window features -> head_vector with `n_bins` quantile bins fitted on the rows
    it is fitted on (fit_rr_bins; 0: none) -> standardise -> the regression of --rr-init (LOGREG_PARAMS)."""
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    class RRCode(TransformerMixin, BaseEstimator):
        def __init__(self, n_bins: int = 0, eps: float = 1e-5):
            self.n_bins, self.eps = n_bins, eps

        def fit(self, x, y=None):
            self.bins_ = fit_rr_bins(x, self.n_bins) if self.n_bins else None
            _, self.mean_, self.var_ = standardise(head_vector(x, self.bins_), self.eps)
            return self

        def transform(self, x):
            return (np.asarray(head_vector(x, self.bins_), dtype=np.float64) - self.mean_) / np.sqrt(self.var_ + self.eps)

    return make_pipeline(RRCode(n_bins), LogisticRegression(random_state=seed, **LOGREG_PARAMS))


def choose_rr_bins(feats: np.ndarray, labels: np.ndarray, groups: np.ndarray, group_kind: str = "record",
                   candidates=None, folds: int | None = None, seed: int = 0) -> dict:
    """`--rr-bins auto`: the candidate N whose --rr-init regression on the RR inputs coded with N bins has the best
    mean macro-F1 in scikit-learn's StratifiedGroupKFold cross-validation of these (training) rows, grouped so
    that one patient's (record's) windows never sit on both sides of a fold; the edges are fitted inside each fold.
    Ties go to fewer bins. feats: the window features [N, F] (baseline.features, not yet head_vector'd).
    Returns what config.json records (extra["rr_bins_fit"]["auto"]); "chosen" is the N."""
    import time
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold, cross_val_score

    from ecgtool.core.errors import BadInput
    from ecgtool.train.defaults import RR_BINS_AUTO, RR_BINS_CV_FOLDS

    candidates = [int(c) for c in (RR_BINS_AUTO if candidates is None else candidates)]
    y = np.asarray(labels, dtype=np.int64)
    g = np.asarray(groups)
    n_groups = len(np.unique(g))
    k = min(int(folds or RR_BINS_CV_FOLDS), n_groups)
    if len(np.unique(y)) < 2 or k < 2:
        raise BadInput(f"--rr-bins auto: the training split has {len(np.unique(y))} class(es) in {n_groups} "
                       f"{group_kind} group(s); cross-validation needs 2 classes and 2 groups")
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    t0, scores, means = time.perf_counter(), [], []
    for n in candidates:
        with warnings.catch_warnings():  # a class rarer than the folds, a fold without a class: scored as it is
            warnings.simplefilter("ignore", UserWarning)
            s = cross_val_score(_coded_logreg(n, seed), feats, y, groups=g, cv=cv, scoring="f1_macro",
                                error_score="raise")
        means.append(float(np.mean(s)))
        scores.append({"n_bins": n, "mean": round(float(np.mean(s)), 4), "sd": round(float(np.std(s, ddof=1)), 4),
                       "folds": [round(float(v), 4) for v in s]})
    chosen = min(n for n, m in zip(candidates, means) if m >= max(means) - 1e-12)
    return {"chosen": chosen, "candidates": candidates, "scores": scores, "scoring": "f1_macro",
            "cv": "sklearn.model_selection.StratifiedGroupKFold", "folds": k, "shuffle_seed": int(seed),
            "groups": group_kind, "n_groups": int(n_groups), "rows": int(len(y)),
            "estimator": "sklearn.linear_model.LogisticRegression", "params": dict(LOGREG_PARAMS),
            "rule": "highest mean CV macro-F1 on the training split; ties: fewer bins",
            "seconds": round(time.perf_counter() - t0, 1)}
