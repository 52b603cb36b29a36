"""AF burden and AF episodes from `predict` against MIT-BIH's reference rhythm annotations, on records no
model saw in training (leave-records-out).

    PYTHONPATH=toolkit python benchmarks/bench_af_truth.py --fold RUN_A:201,202,210,222 --fold RUN_B:203,219,221
        [--models se_resnet18,rr_baseline] [--data /work/shared/data/mitdb] [--json OUT.json]

Each --fold is a run folder trained on a dataset imported with `ecgtool data import mitdb ... --holdout
RECORDS` (those records, and any other record of the same patient, are its test split and never seen in
training) and the records it held out. MIT-BIH has AF only in 201, 202, 203, 210, 219, 221, 222 (and the
paced 217, which the importer skips), so a model trained without all seven has never seen AF: hence two
folds, each AF record scored by the fold that held it out. Every model predicts each whole record through
`predict_records` (chunked, quality gate on, predict's episode rule) with its own backend (the
rr_baseline through runtime/baseline.py), and evaluate/rhythm_truth.py scores it: burden error, episode
and duration sensitivity / PPV (see that module for the rules). Prints a markdown table, the CPU flags
and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

#: the two leave-records-out folds (`data import mitdb --holdout`): every AF record held out by one of them
#: (201 and 202 are one patient and stay together); bench_af_folds.py trains and scores the same folds
FOLDS = {"A": ["201", "202", "210", "222"], "B": ["203", "219", "221"]}


def main() -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from ecgtool.core import ui
    from ecgtool.deploy.predict import predict_records
    from ecgtool.evaluate.rhythm_truth import pool, read_reference, score_record
    from ecgtool.runtime import load

    ap = argparse.ArgumentParser()
    ap.add_argument("--fold", action="append", required=True, help="RUN_FOLDER:REC,REC,...")
    ap.add_argument("--models", default="se_resnet18,rr_baseline")
    ap.add_argument("--data", default="/work/shared/data/mitdb")
    ap.add_argument("--json")
    args = ap.parse_args()
    ui.set_quiet(True)
    flags = next((ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")), "")
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile") if f" {f}" in flags]
    print(f"CPU flags: {', '.join(isa)}; cores {os.cpu_count()}; load before: {os.getloadavg()}", flush=True)
    rows: dict[str, list[dict]] = {}
    t0 = time.perf_counter()
    for fold in args.fold:
        run, recs = fold.rsplit(":", 1)
        for name in args.models.split(","):
            pred = load(Path(run) / name, threads=1)
            for rec in recs.split(","):
                path = Path(args.data) / f"{rec}.hea"
                t = time.perf_counter()
                res = predict_records(pred, [str(path)])[0]
                ref, _ = read_reference(path)
                row = {"model": name, "fold": Path(run).name, **score_record(res, ref),
                       "seconds": round(time.perf_counter() - t, 1)}
                row["record"] = rec
                rows.setdefault(name, []).append(row)
                print(json.dumps(row), flush=True)
    pct = lambda v: "-" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    print("\n| model | record | fold | reference AF burden | predicted | error (pp) | AF episodes: detected / reference "
          "| true / predicted | duration sens. | duration PPV |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, rs in rows.items():
        for r in sorted(rs, key=lambda r: r["record"]):
            print(f"| {name} | {r['record']} | {r['fold']} | {pct(r['burden_reference'])} | {pct(r['burden_predicted'])} "
                  f"| {r['burden_error_pp']:+.1f} | {r['detected']} / {r['reference_episodes']} "
                  f"| {r['true_predicted']} / {r['predicted_episodes']} | {pct(r['duration_sensitivity'])} "
                  f"| {pct(r['duration_ppv'])} |")
    print("\n| model | records | mean burden error (pp) | mean abs. burden error (pp) | episode sensitivity | episode PPV "
          "| duration sensitivity | duration PPV |")
    print("|---|---|---|---|---|---|---|---|")
    pooled = {}
    for name, rs in rows.items():
        p = pooled[name] = pool(rs)
        print(f"| {name} | {p['records']} | {p['mean_burden_error_pp']:+.1f} | {p['mean_abs_burden_error_pp']:.1f} "
              f"| {pct(p['sensitivity'])} ({p['detected']}/{p['reference_episodes']}) "
              f"| {pct(p['ppv'])} ({p['true_predicted']}/{p['predicted_episodes']}) "
              f"| {pct(p['duration_sensitivity'])} | {pct(p['duration_ppv'])} |")
    print(f"\n{time.perf_counter() - t0:.0f} s; CPU flags: {', '.join(isa)}; load after: {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"records": rows, "pooled": pooled}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
