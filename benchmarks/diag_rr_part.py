"""Where the RR part loses Challenge -> MIT-BIH: the head (linear vs boosted) or the features (head_vector)?

Fits, on the source's train split, scikit-learn classifiers on the RR features bench_cross.py caches in
each prepared dataset (baseline/cache.py window_feature_table), and scores them on the cross target as bench_cross
does (macro-F1 over the classes both share, real_data.shared_macro_f1), with confusion matrices:

  hgb-raw        HistGradientBoosting on the 28 raw features (rr_baseline's classifier and settings)
  hgb-head       the same on head_vector (sign*log1p + NaN flags): what the compression costs a tree model
  logreg-head    LogisticRegression on standardised head_vector (= `rr-logreg`, the untrained `--rr-init` hybrid)
  logreg-bins-N  LogisticRegression on head_vector with the thermometer code of `--rr-bins N` (quantile edges
                 of the train rows, train/rr.py fit_rr_bins; = the untrained `--rr-bins N --rr-init` hybrid)
  logreg-leads   logreg-head fitted on every lead of each training record (--keep-leads data; `--leads any`)
  logreg-tree-N  as logreg-bins-N, but each feature's edges are the split thresholds of a one-feature decision tree
                 (scikit-learn, at most N leaves, balanced class weights, >= 5 rows a leaf) fitted on the train rows'
                 labels: supervised edges, where the classes change along that feature (--tree-bins N)
  logreg-ramp-N  as logreg-bins-N, but the step code replaced by scikit-learn's SplineTransformer (degree 1, N+1
                 quantile knots of the train rows, per feature): hat functions, so the fit can bend each feature
                 between knots (NaN: the feature's train median, its basis then 0) (--ramp-bins N)

    PYTHONPATH=toolkit OMP_NUM_THREADS=1 .venv/bin/python benchmarks/diag_rr_part.py --out /tmp/c2m --source challenge
(run after bench_cross.py --out /tmp/c2m, which imports the data and caches the target's features)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_data as R  # noqa: E402


def fit_predict(name: str, xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, seed: int = 0) -> np.ndarray:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from ecgtool.baseline.classifier import DEFAULT_PARAMS
    from ecgtool.train.rr import fit_rr_logreg

    if name.startswith("hgb"):
        return HistGradientBoostingClassifier(random_state=seed, **DEFAULT_PARAMS).fit(xtr, ytr).predict(xte)
    clf, mean, var = fit_rr_logreg(xtr, ytr, seed=seed)
    return clf.predict((np.asarray(xte, dtype=np.float64) - mean) / np.sqrt(var + 1e-5))


def tree_edges(feats: np.ndarray, labels: np.ndarray, leaves: int, seed: int = 0) -> list[list[float]]:
    """Per feature, the ascending split thresholds of a decision tree on that feature alone (finite rows)."""
    from sklearn.tree import DecisionTreeClassifier

    edges = []
    for j in range(feats.shape[1]):
        v = np.asarray(feats[:, j], dtype=np.float64)
        ok = np.isfinite(v)
        if ok.sum() < 10 or len(np.unique(v[ok])) < 2 or len(np.unique(labels[ok])) < 2:
            edges.append([])
            continue
        t = DecisionTreeClassifier(max_leaf_nodes=leaves, min_samples_leaf=5, class_weight="balanced",
                                   random_state=seed).fit(v[ok, None], labels[ok]).tree_
        edges.append(sorted(float(x) for x, f in zip(t.threshold, t.feature) if f >= 0))
    return edges


def ramp_code(ftr: np.ndarray, fte: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """head_vector plus a degree-1 spline basis per feature (fitted on ftr's finite values) of ftr and fte."""
    from sklearn.preprocessing import SplineTransformer

    from ecgtool.baseline.features import head_vector

    parts_tr, parts_te = [head_vector(ftr)], [head_vector(fte)]
    for j in range(ftr.shape[1]):
        ok = np.isfinite(ftr[:, j])
        if ok.sum() < n + 1 or len(np.unique(ftr[ok, j])) < 3:
            continue
        med = float(np.median(ftr[ok, j]))
        st = SplineTransformer(n_knots=n + 1, degree=1, knots="quantile", extrapolation="constant")
        st.fit(ftr[ok, j:j + 1].astype(np.float64))
        for f, parts in ((ftr, parts_tr), (fte, parts_te)):
            v = np.where(np.isfinite(f[:, j]), f[:, j], med).astype(np.float64)[:, None]
            b = st.transform(v)
            b[~np.isfinite(f[:, j])] = 0.0
            parts.append(b.astype(np.float32))
    return np.concatenate(parts_tr, axis=1), np.concatenate(parts_te, axis=1)


def main() -> None:
    from ecgtool.baseline.features import head_vector
    from ecgtool.data.dataset import load_dataset
    from ecgtool.evaluate.metrics import compute_metrics
    from ecgtool.baseline.cache import window_feature_table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--source", default="challenge", choices=["challenge", "mitdb"])
    ap.add_argument("--bins", default="", help="comma list of bin counts N: logreg-bins-N rows")
    ap.add_argument("--tree-bins", default="", help="comma list of leaf counts N: logreg-tree-N rows")
    ap.add_argument("--ramp-bins", default="", help="comma list of N: logreg-ramp-N rows")
    ap.add_argument("--leads", action="store_true", help="also the logreg-leads row (imports --keep-leads data)")
    ap.add_argument("--confusion", default="hgb-raw,logreg-head", help="rows whose confusion matrix is printed")
    args = ap.parse_args()
    paths, cross = R.cross_targets(args.out, 4)
    target = "mitdb" if args.source == "challenge" else "challenge"
    src_path = paths[args.source]
    if args.source == "mitdb":
        src_path = R.strided_dataset(src_path, 4, args.out / "data" / f"{src_path.name}-every4")
    src, tgt = load_dataset(src_path), load_dataset(cross[target])
    counts = load_dataset(paths[args.source]).meta["counts"]["train"]
    ftr_all, fte = window_feature_table(src, 0), window_feature_table(tgt, 0)
    tr, te = src.indices("train"), tgt.indices("all")
    ytr, yte = src.labels[tr], tgt.labels[te]
    rows = {"hgb-raw": (ftr_all[tr], fte[te]), "hgb-head": (head_vector(ftr_all[tr]), head_vector(fte[te])),
            "logreg-head": (head_vector(ftr_all[tr]), head_vector(fte[te]))}
    if args.bins:
        from ecgtool.train.rr import fit_rr_bins

        for n in [int(b) for b in args.bins.split(",") if b]:
            edges = fit_rr_bins(ftr_all[tr], n)
            rows[f"logreg-bins-{n}"] = (head_vector(ftr_all[tr], edges), head_vector(fte[te], edges))
    for n in [int(b) for b in args.tree_bins.split(",") if b]:
        edges = tree_edges(ftr_all[tr], ytr, n)
        print(f"logreg-tree-{n}: {sum(map(len, edges))} edges over {sum(1 for e in edges if e)} features")
        rows[f"logreg-tree-{n}"] = (head_vector(ftr_all[tr], edges), head_vector(fte[te], edges))
    for n in [int(b) for b in args.ramp_bins.split(",") if b]:
        rows[f"logreg-ramp-{n}"] = ramp_code(ftr_all[tr], fte[te], n)
    ys = {name: ytr for name in rows}
    if args.leads:
        import bench_cross as B

        lp, _ = B.leads_paths(args.out, 4)
        ls = lp[args.source]
        if args.source == "mitdb":
            ls = R.strided_dataset(ls, 4, args.out / "data" / f"{ls.name}-every4")
        ld = load_dataset(ls)
        ltr = ld.indices("train")
        x = np.concatenate([head_vector(window_feature_table(ld, c)[ltr]) for c in range(ld.signals.shape[1])])
        rows["logreg-leads"] = (x, head_vector(fte[te]))
        ys["logreg-leads"] = np.tile(ld.labels[ltr], ld.signals.shape[1])
    print(f"{R.NAMES[args.source]} -> {R.NAMES[target]}: {len(tr)} training windows, {len(te)} target windows")
    print("| RR part | target macro-F1 (shared) | per class |\n|---|---|---|")
    conf = {}
    for name, (xtr, xte) in rows.items():
        m = compute_metrics(yte, fit_predict(name, xtr, ys[name], xte), tgt.classes)
        f1, shared = R.shared_macro_f1(m, counts)
        print(f"| {name} | {f1:.3f} | " + " ".join(f"{c} {m['per_class'][c]['f1']:.2f}" for c in shared) + " |")
        conf[name] = m
    for name in [c for c in args.confusion.split(",") if c in conf]:
        print(f"\n{name}: confusion on the target (rows true, columns predicted)\n")
        print(R.confusion_md(conf[name]))


if __name__ == "__main__":
    main()
