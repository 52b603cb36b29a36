"""Do explanations point at the beat? On MIT-BIH windows predicted PVC that contain annotated V beats:
how often the top explanation span (evaluate.explain.top_spans, k=1) contains a V beat, for occlusion
and Grad-CAM, against the chance that a random span of the same width (uniform start) contains one.

    PYTHONPATH=toolkit python benchmarks/bench_explain_localisation.py MODEL_FOLDER [--records 119,203,208,213,233]
        [--per-record 20]

MODEL_FOLDER: a PyTorch model folder (Grad-CAM needs one) trained on MIT-BIH, e.g.
`ecgtool data import mitdb /work/shared/data/mitdb --out /tmp/mitdb --window-policy all` then
`ecgtool train --data /tmp/mitdb --arch se_resnet --depth 18 --width 16 --epochs 3 --class-weights auto`.
(The records are in that model's training split or not depending on the patient split: the question
here is where the explanation points, not accuracy.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def chance(v: np.ndarray, w: int, length: int) -> float:
    """P(a span [s, s+w) with s uniform in 0..length-w contains a V beat at one of the indices v)."""
    n = length - w + 1
    cover = np.zeros(n, dtype=bool)
    for b in v:
        cover[max(0, b - w + 1):min(n, b + 1)] = True
    return float(cover.mean())


def main() -> int:
    import torch
    import wfdb

    from ecgtool.data import preprocess
    from ecgtool.deploy.predict import preprocessing_spec
    from ecgtool.evaluate import explain as xai
    from ecgtool.runtime import load

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--records", default="119,203,208,213,233")
    ap.add_argument("--per-record", type=int, default=20)
    ap.add_argument("--data", default="/work/shared/data/mitdb")
    args = ap.parse_args()
    pred = load(args.model)
    spec = {**preprocessing_spec(pred.config), "window_policy": "all"}
    fs, length = float(spec["sampling_rate"]), int(spec["window_len"])
    pvc = list(pred.classes).index("PVC")
    flags = next((ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")), "")
    print("CPU flags:", " ".join(f for f in ("avx2", "avx512_vnni", "amx_tile") if f" {f}" in flags),
          "| load before:", os.getloadavg())
    stats = {m: {"hits": 0, "chance": [], "width_s": []} for m in ("occlusion", "gradcam")}
    n_win, example = 0, None
    t0 = time.perf_counter()
    for rec in args.records.split(","):
        r = wfdb.rdrecord(f"{args.data}/{rec}", channels=[0])
        ann = wfdb.rdann(f"{args.data}/{rec}", "atr")
        v = np.array([s for s, sym in zip(ann.sample, ann.symbol) if sym == "V"]) * fs / r.fs
        x, starts, _ = preprocess.windows_for_spec(r.p_signal[:, 0][None], r.fs, spec)
        logits = np.concatenate([pred.predict(x[i:i + 64]) for i in range(0, len(x), 64)])
        chosen = []
        for i, s in enumerate(starts):
            inside = v[(v >= s) & (v < s + length)] - s
            if logits[i].argmax() == pvc and len(inside):
                chosen.append((i, inside.astype(int)))
        chosen = chosen[:args.per_record]
        if not chosen:
            print(f"{rec}: no window predicted PVC with a V beat")
            continue
        idx = [i for i, _ in chosen]
        target = np.full(len(idx), pvc)
        for m in stats:
            rel, _ = xai.explain(pred, x[idx], target, method=m, fs=fs)
            for (i, inside), rr in zip(chosen, rel):
                top = xai.top_spans(rr, fs, k=1)
                if not top:
                    continue
                a, b = int(round(top[0]["start_s"] * fs)), int(round(top[0]["end_s"] * fs))
                hit = bool(((inside >= a) & (inside < b)).any())
                stats[m]["hits"] += hit
                stats[m]["chance"].append(chance(inside, max(1, b - a), length))
                stats[m]["width_s"].append((b - a) / fs)
                if m == "occlusion" and hit and example is None:
                    example = {"record": rec, "window_s": [starts[i] / fs, (starts[i] + length) / fs],
                               "v_beats_s": [round((starts[i] + q) / fs, 2) for q in inside],
                               "top_span_s": [round(starts[i] / fs + a / fs, 2), round(starts[i] / fs + b / fs, 2)]}
        n_win += len(chosen)
        print(f"{rec}: {len(chosen)} window(s)", flush=True)
    out = {}
    for m, s in stats.items():
        n = len(s["chance"])
        if not n:
            continue
        rate, ch = s["hits"] / n, float(np.mean(s["chance"]))
        out[m] = {"windows": n, "hit_rate": round(rate, 3), "chance": round(ch, 3),
                  "ratio": round(rate / ch, 2) if ch else None, "mean_span_s": round(float(np.mean(s["width_s"])), 2)}
    print(json.dumps({"results": out, "example": example, "seconds": round(time.perf_counter() - t0, 1),
                      "load_after": os.getloadavg()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
