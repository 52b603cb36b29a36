"""The pipeline's time budget: a short probe of training steps at start sizes the training to `train.budget_s`
and predicts the duration of the whole run (pipeline/run.py prints it and keeps the plan in pipeline.json)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ecgtool.core.ui import info
from ecgtool.pipeline import config as pc
from ecgtool.train import defaults as D


# --- the time budget: a short probe at start sizes the training -------------------------------------------

PROBE_S = 2.0  # seconds of timed training steps
#: quantize + export + bench + report of one compressed model (and its pruned versions), LiteRT aside, rough: a
#: fixed part (library loads, the INT8 gates' scans, bench's minimum timing) and a part that scales with the probe.
#: Fitted to `make demo` on the 2-core AVX2 CPU of benchmarks/RESULTS.md ("The RR baseline as it ships"): 171 s at
#: 4.78 ms per record and 178 s at 5.80 (2 threads, quiet); the gates' scans made the older (20, 16) read ~96 s
REST_S = (110.0, 11.0)
#: one litert-* export (PyTorch -> LiteRT conversion, full-integer calibration, the TFLM check, TensorFlow's
#: import): the demo's pruned child took ~25 s and its 636-KB parent 41.6 s (benchmarks/RESULTS.md, make demo)
LITERT_S = 30.0


def probe_ms_per_record(width: int, length: int, channels: int, classes: int, batch_size: int,
                        seconds: float = PROBE_S) -> float:
    """Milliseconds per record of a training step (forward, backward, Adam) of se_resnet18 at `width` here."""
    import torch
    from torch import nn

    from ecgtool.models import get_model
    from ecgtool.train.fit import train_step

    torch.manual_seed(0)
    model = get_model("se_resnet18", width=width, in_channels=channels, num_classes=classes).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = nn.CrossEntropyLoss()
    x, y = torch.rand(batch_size, channels, length), torch.randint(0, classes, (batch_size,))
    train_step(model, opt, crit, x, y)  # warm-up: first-call allocations
    n, t0 = 0, time.perf_counter()
    while n < 2 or time.perf_counter() - t0 < seconds:
        train_step(model, opt, crit, x, y)
        n += 1
    return (time.perf_counter() - t0) * 1e3 / (n * batch_size)


def probe_feature_ms(windows, fs: float, seconds: float = 0.5) -> float:
    """Milliseconds per window of the RR baseline's features (baseline.features.window_features: wfdb's XQRS and
    the rest) on these windows [N, C, L] (channel 0), timed for about `seconds` here."""
    from ecgtool.baseline.features import window_features

    window_features(np.asarray(windows[0, 0], dtype=np.float32), fs)  # warm-up: wfdb's import
    n, t0 = 0, time.perf_counter()
    while n < 2 or (time.perf_counter() - t0 < seconds and n < 4 * len(windows)):
        window_features(np.asarray(windows[n % len(windows), 0], dtype=np.float32), fs)
        n += 1
    return (time.perf_counter() - t0) * 1e3 / n


def _record_counts(cfg: dict, out: Path) -> tuple[int, int, int, int, int, float] | None:
    """(train, val, samples per window, classes, all windows, baseline feature ms per window) of the dataset the run
    trains on; None if not known yet. The feature probe runs on the first windows of the dataset, or of a few
    synthetic records drawn like the configured ones."""
    src = cfg["data"]
    if (out / "data" / "meta.json").exists() or "import" in src:
        if not (out / "data" / "meta.json").exists():
            return None
        from ecgtool.data.dataset import load_dataset

        ds = load_dataset(out / "data")
        feat_ms = probe_feature_ms(ds.signals[:8], ds.sampling_rate) if cfg["train"].get("baseline") else 0.0
        return (len(ds.indices("train")), len(ds.indices("val")), int(ds.signals.shape[2]), len(ds.classes), len(ds),
                feat_ms)
    from ecgtool.data.synth import FS, class_counts, synthesize

    s = src["synth"] or {}
    counts = class_counts(s.get("per_class"), s.get("total"), s.get("balance", "paper"))
    n = int(sum(counts))
    feat_ms = 0.0
    if cfg["train"].get("baseline"):
        sample, _, _ = synthesize(per_class=1, seed=1, morphology=s.get("morphology", "standard"))
        feat_ms = probe_feature_ms(sample, FS)
    return int(0.64 * n), int(0.16 * n), 2000, len(counts), n, feat_ms


def plan_training(cfg: dict, out: Path, threads: int) -> dict | None:
    """Epochs that fit train.budget_s (probe of PROBE_S s) and the expected seconds of every step; None
    without a budget or before the dataset's size is known (imported data: planned after the data step)."""
    import torch

    from ecgtool.models import get_model, model_stats

    t = cfg["train"]
    budget = t.get("budget_s")
    archs = [a for a in t.get("archs") or [] if a != "rr_baseline"]
    if not budget or not archs:
        return None
    counts = _record_counts(cfg, out)
    if counts is None:
        return None
    n_train, n_val, length, k, n_all, feat_ms = counts
    width, bs = int(t.get("width", 64)), int(t.get("batch_size", D.BATCH_SIZE))
    torch.set_num_threads(threads)
    ms = probe_ms_per_record(width, length, 1, k, bs)
    macs = lambda name, w=width: model_stats(get_model(name, width=w, num_classes=k), length=length)["macs"]  # noqa: E731
    ref = macs("se_resnet18")
    # an epoch: train records (forward+backward) + validation and precise-BN records (forward, ~1/3 the cost)
    per_record = (n_train + (n_val + min(n_train, int(t.get("precise_bn", 32)) * bs)) / 3) * ms / 1e3
    epoch_s = sum(per_record * macs(f"{a}{d}") / ref for a in archs for d in t.get("depths") or [])
    most = int(t.get("epochs", D.EPOCHS))
    epochs = max(1, min(most, math.floor(budget / epoch_s)))
    p = cfg.get("prune") or {}
    # a pruned epoch costs about its kept fraction of channels (not its MACs, the square: at width 16 the small
    # convolutions are bound by per-layer overheads; the demo's 50 % child fine-tuned in 45-50 s, 8.6 s per parent epoch)
    prune_s = sum(per_record * (1 - r) * int(p.get("epochs", 10)) + 2
                  for r in p.get("ratios") or [] for _ in (cfg.get("compress") or {}).get("models") or [])
    rest_s = (REST_S[0] + REST_S[1] * ms) * max(1, len((cfg.get("compress") or {}).get("models") or []))
    # the RR baseline: its features for every window in train (in `threads` processes: baseline.features), the
    # test windows again in bench (batches of 64: one process), and the fit
    from ecgtool.baseline.features import feature_workers

    n_test = n_all - n_train - n_val
    baseline_s = (n_all / feature_workers(threads, n_all) + n_test) * feat_ms / 1e3 + 5 * bool(t.get("baseline"))
    expected = 5 + epochs * epoch_s + baseline_s + prune_s + rest_s + _litert_s(cfg, width, k, length)
    return {"epochs": epochs, "most_epochs": most, "budget_s": budget, "epoch_s": round(epoch_s, 1),
            "probe_ms_per_record": round(ms, 3), "threads": threads, "feature_ms_per_window": round(feat_ms, 2),
            "baseline_s": round(baseline_s), "expected_s": round(expected)}


def _litert_s(cfg: dict, width: int, classes: int, length: int) -> float:
    """Expected seconds of the litert-* exports: LITERT_S for each compressed model (pruned children by their
    kept fraction squared of the parameters) whose flash estimate fits export.mcu_flash_kb (as _fits_mcu)."""
    from ecgtool.export.formats import FORMATS
    from ecgtool.models import get_model, model_stats
    from ecgtool.runtime.tflm import params_flash_kb

    ex = cfg.get("export") or {}
    n_fmt = sum(1 for f in ex.get("formats") or [] if f in FORMATS and FORMATS[f].target == "litert")
    if not n_fmt or pc.unavailable_formats([f for f in ex.get("formats") or [] if f in FORMATS and FORMATS[f].target == "litert"]):
        return 0.0
    limit = ex.get("mcu_flash_kb")
    kept = [1.0] + [1 - r for r in (cfg.get("prune") or {}).get("ratios") or []]
    n = 0
    for name in (cfg.get("compress") or {}).get("models") or []:
        params = model_stats(get_model(name, width=width, num_classes=classes), length=length)["params"]
        n += sum(1 for f in kept if limit is None or params_flash_kb(params * f * f) <= limit)
    return LITERT_S * n_fmt * n


def say_plan(plan: dict, threads_why: str) -> None:
    capped = "" if plan["epochs"] < plan["most_epochs"] else " (the most, train.epochs)"
    info(f"pipeline: expected duration ~{max(1, round(plan['expected_s'] / 60))} min "
         f"({plan['expected_s']} s): probe {plan['probe_ms_per_record']:.2f} ms per training record on "
         f"{plan['threads']} thread(s) ({threads_why}); about {plan['epoch_s']:.0f} s per epoch of all networks, "
         f"so {plan['epochs']} epoch(s){capped} fit train.budget_s {plan['budget_s']:g} s"
         + (f"; the RR baseline's features {plan['feature_ms_per_window']:.1f} ms per window (~{plan['baseline_s']} s)"
            if plan.get("feature_ms_per_window") else ""))
    if plan["epochs"] * plan["epoch_s"] > 1.2 * plan["budget_s"]:
        info(f"pipeline: even 1 epoch takes about {plan['epoch_s']:.0f} s, over train.budget_s {plan['budget_s']:g} s")


