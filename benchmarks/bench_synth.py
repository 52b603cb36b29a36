"""Synthetic generation rate: the paper-sized set (28,308 records of 10 s at 200 Hz) in records/s.

Usage: .venv/bin/python benchmarks/bench_synth.py [--total 28308] [--repeats 2] [--no-noise] [--morphology M]
       .venv/bin/python benchmarks/bench_synth.py --separability 150 [--morphology diverse]
The second form checks that the classes are not separable by amplitude statistics alone: a random
forest on per-record mean, std, skew, kurtosis and percentiles, 3-fold cross-validated accuracy.
Prints the machine, the wall and CPU time of each repeat (CPU time is what the generator costs
when the machine is shared) and the best rate, as a markdown line for RESULTS.md.
`--morphology both` times the standard and the diverse generator alternately in one process and
prints the diverse/standard CPU-time ratio (the figure to quote on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from ecgtool.data.synth import synthesize


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def separability(per_class: int, morphology: str = "standard") -> float:
    """3-fold CV accuracy of a random forest on amplitude statistics only (chance = 1/7)."""
    import numpy as np
    from scipy.stats import kurtosis, skew
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import cross_val_score

    signals, labels, _ = synthesize(per_class=per_class, seed=2, morphology=morphology)
    x = signals[:, 0]
    feats = np.c_[x.mean(1), x.std(1), skew(x, 1), kurtosis(x, 1), np.percentile(x, [5, 25, 50, 75, 95], axis=1).T]
    rf = RandomForestClassifier(200, random_state=0, n_jobs=1)
    return float(cross_val_score(rf, feats, labels, cv=3).mean())


def plot_examples(path: str, seed: int = 5) -> None:
    """One 5-s record per class, standard (left) beside diverse on a random limb lead (right), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ecgtool.data.classes import DEFAULT_CLASSES

    std, lab_s, _ = synthesize(per_class=1, seed=seed)
    div, lab_d, rec = synthesize(per_class=1, seed=seed, morphology="diverse", lead="random")
    fig, ax = plt.subplots(len(DEFAULT_CLASSES), 2, figsize=(12, 11), sharex=True)
    t = np.arange(1000) / 200
    for k, cls in enumerate(DEFAULT_CLASSES):
        i, j = int(np.flatnonzero(lab_s == k)[0]), int(np.flatnonzero(lab_d == k)[0])
        ax[k, 0].plot(t, std[i, 0, :1000], lw=0.8)
        ax[k, 0].set_title(f"{cls}: standard (lead II)", fontsize=8, loc="left")
        r = rec[j]
        extra = ", ".join(x for x, on in (("wide QRS", r["bundle_branch_block"]), ("T inverted", r["t_inverted"]),
                                          ("low voltage", r["low_voltage"])) if on)
        ax[k, 1].plot(t, div[j, 0, :1000], lw=0.8, color="C1")
        ax[k, 1].set_title(f"{cls}: diverse, lead {r['lead']}, QRS axis {r['qrs_axis_deg']} deg, SNR {r['snr_db']} dB"
                           f" ({r['noise']}){'; ' + extra if extra else ''}", fontsize=8, loc="left")
        for a in ax[k]:
            a.set_yticks([])
    ax[-1, 0].set_xlabel("s")
    ax[-1, 1].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--total", type=int, default=28308)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-noise", action="store_true", help="time the clean generator only")
    ap.add_argument("--separability", type=int, metavar="PER_CLASS", help="run the separability check instead")
    ap.add_argument("--morphology", choices=["standard", "diverse", "both"], default="standard")
    ap.add_argument("--plot", metavar="PNG", help="draw one record per class, standard beside diverse, and stop")
    args = ap.parse_args()
    if args.plot:
        plot_examples(args.plot)
        print(f"wrote {args.plot}")
        return
    if args.separability:
        for m in (["standard", "diverse"] if args.morphology == "both" else [args.morphology]):
            acc = separability(args.separability, m)
            print(f"amplitude statistics only, {7 * args.separability} records ({m}): random forest 3-fold CV "
                  f"accuracy {acc:.3f} (chance {1 / 7:.3f})")
        return
    kinds = ["standard", "diverse"] if args.morphology == "both" else [args.morphology]
    times: dict[str, list[float]] = {k: [] for k in kinds}
    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.repeats):
        for kind in kinds:  # alternate, so both see the same machine load
            t0, c0 = time.perf_counter(), time.process_time()
            signals, labels, records = synthesize(total=args.total, seed=0, noise=not args.no_noise, morphology=kind)
            times[kind].append(time.perf_counter() - t0)
            cpu[kind].append(time.process_time() - c0)
            print(f"  {kind}: {len(labels)} records in {times[kind][-1]:.2f} s wall, {cpu[kind][-1]:.2f} s CPU "
                  f"({len(labels) / times[kind][-1]:.0f} records/s)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine = f"{cpu_model()}, {os.cpu_count()} cores, load average {load:.1f} at the end"
    for kind in kinds:
        best = min(times[kind])
        print(f"| {args.total} records{'' if not args.no_noise else ' (no noise)'}, {kind} | best of {args.repeats}: "
              f"{best:.1f} s wall ({min(cpu[kind]):.1f} s CPU) | {args.total / best:.0f} records/s "
              f"({args.total / min(cpu[kind]):.0f} per CPU-s) | {machine} |")
    if len(kinds) == 2:
        print(f"diverse / standard, best CPU time: {min(cpu['diverse']) / min(cpu['standard']):.2f}x; "
              f"best wall: {min(times['diverse']) / min(times['standard']):.2f}x")


if __name__ == "__main__":
    main()
