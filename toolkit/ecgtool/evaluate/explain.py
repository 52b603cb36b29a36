"""Why a window got its rhythm: a relevance curve over time, one value per input sample in [0, 1].

Two methods, answering the paper's fourth limitation ("no explanation of decisions"):
- Grad-CAM (Selvaraju et al. 2017) for PyTorch model folders: the last feature map of ECGResNet
  (`features(x)`, [N, F, L']) weighted by the time-averaged gradient of the chosen class logit,
  rectified and linearly upsampled to the input length.
- Occlusion sensitivity (Zeiler & Fergus 2014) for any artifact kind (ONNX, OpenVINO, baseline):
  a span of the window is replaced by the straight line between its end samples (the beats inside
  vanish, the trace stays continuous), and the drop of the class probability is credited to the
  samples of that span. Model-agnostic: it only calls `predictor.predict`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

OCCLUSION_S = 0.4  # s: a little wider than a wide (PVC) QRS complex
OCCLUSION_STRIDE_S = 0.2  # s


def _normalise(rel: np.ndarray) -> np.ndarray:
    """Min-max scale each row to [0, 1], as Grad-CAM maps usually are (a constant row becomes zeros).

    A CAM of a globally pooled net is positive almost everywhere; its contrast, not its level, says where."""
    lo = rel.min(axis=1, keepdims=True)
    span = rel.max(axis=1, keepdims=True) - lo
    return np.where(span > 0, (rel - lo) / np.where(span > 0, span, 1), 0.0).astype(np.float32)


def gradcam(model, x: np.ndarray, target: Sequence[int] | None = None) -> np.ndarray:
    """Grad-CAM relevance [N, L] of windows x [N, C, L] for class `target` (default: the predicted one)."""
    import torch
    import torch.nn.functional as F

    model.eval()
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    with torch.enable_grad():
        feats = model.features(xt)
        logits = model.fc(model.dropout(torch.flatten(model.pool(feats), 1)))
        idx = logits.argmax(1) if target is None else torch.as_tensor(np.asarray(target), dtype=torch.long)
        (grad,) = torch.autograd.grad(logits.gather(1, idx[:, None]).sum(), feats)
    with torch.no_grad():
        weights = grad.mean(dim=2, keepdim=True)  # [N, F, 1]
        cam = torch.relu((weights * feats).sum(dim=1, keepdim=True))  # [N, 1, L']
        cam = F.interpolate(cam, size=x.shape[-1], mode="linear", align_corners=False)[:, 0]
    return _normalise(cam.numpy().astype(np.float64))


def occlusion(predict_proba: Callable[[np.ndarray], np.ndarray], x: np.ndarray, target: Sequence[int] | None = None,
              *, span: int = 80, stride: int = 40, batch_size: int = 64) -> np.ndarray:
    """Occlusion relevance [N, L] of windows x [N, C, L]: mean drop of P(target) when a span covering the sample is masked.

    `span`/`stride` are in samples; `predict_proba` maps [B, C, L] to class probabilities [B, K].
    """
    x = np.asarray(x, dtype=np.float32)
    n, _, length = x.shape
    span = max(2, min(int(span), length))
    starts = list(range(0, length - span + 1, max(1, int(stride))))
    if starts[-1] != length - span:
        starts.append(length - span)
    base = predict_proba(x)
    target = base.argmax(1) if target is None else np.asarray(target)
    ramp = np.linspace(0.0, 1.0, span, dtype=np.float32)
    rel = np.zeros((n, length))
    cover = np.zeros(length)
    for s in starts:
        cover[s:s + span] += 1
    for i in range(n):
        variants = np.repeat(x[i:i + 1], len(starts), axis=0)
        for j, s in enumerate(starts):
            a, b = variants[j, :, s:s + 1], variants[j, :, s + span - 1:s + span]
            variants[j, :, s:s + span] = a + (b - a) * ramp
        probs = np.concatenate([predict_proba(variants[k:k + batch_size]) for k in range(0, len(variants), batch_size)])
        drop = np.clip(base[i, target[i]] - probs[:, target[i]], 0.0, None)
        for j, s in enumerate(starts):
            rel[i, s:s + span] += drop[j]
    return _normalise(rel / np.maximum(cover, 1))


def explain(predictor, x: np.ndarray, target: Sequence[int] | None = None, *, method: str = "auto", fs: float = 200,
            batch_size: int = 64) -> tuple[np.ndarray, str]:
    """(relevance [N, L], method used) for any runtime predictor. 'auto' is occlusion for every kind: on MIT-BIH
    windows predicted PVC its top span contained an annotated V beat 1.47x as often as a random span of the
    same width, Grad-CAM's 0.83x (benchmarks/bench_explain_localisation.py, RESULTS.md); 'gradcam' on request."""
    from scipy.special import softmax

    if method not in ("auto", "gradcam", "occlusion"):
        raise ValueError(f"explanation method must be auto, gradcam or occlusion, not {method!r}")
    model = getattr(predictor, "model", None)
    has_features = predictor.kind == "pytorch" and hasattr(model, "features")
    if method == "gradcam" and not has_features:
        from ecgtool.core.errors import BadInput

        raise BadInput(f"{predictor.path}: Grad-CAM needs a PyTorch model folder ({predictor.kind} given); use occlusion")
    if method == "gradcam" and getattr(model, "rr_norm", None) is not None:
        from ecgtool.core.errors import BadInput

        raise BadInput(f"{predictor.path}: Grad-CAM of an RR-head model is not implemented (its head also reads "
                       "the RR features); use occlusion")
    if method == "gradcam":
        return gradcam(model, x, target), "gradcam"
    span = int(round(OCCLUSION_S * fs))
    rel = occlusion(lambda b: softmax(predictor.predict(b), axis=1), x, target, span=span,
                    stride=max(1, int(round(OCCLUSION_STRIDE_S * fs))), batch_size=batch_size)
    return rel, "occlusion"


def top_spans(relevance: np.ndarray, fs: float, *, offset_s: float = 0.0, k: int = 3, threshold: float = 0.5) -> list[dict]:
    """The `k` time spans (s, from the record start) where relevance stays >= threshold x its maximum,
    ordered by relevance mass; each {start_s, end_s, score} with score the mean relevance in the span."""
    r = np.asarray(relevance, dtype=np.float64)
    if r.max() <= 0:
        return []
    mask = np.concatenate([[False], r >= threshold * r.max(), [False]])
    edges = np.flatnonzero(np.diff(mask.astype(np.int8)))
    runs = list(zip(edges[::2], edges[1::2]))
    runs.sort(key=lambda ab: -r[ab[0]:ab[1]].sum())
    return [{"start_s": round(float(offset_s + a / fs), 3), "end_s": round(float(offset_s + b / fs), 3),
             "score": round(float(r[a:b].mean()), 4)} for a, b in runs[:k]]


def relevance_png(path: str | os.PathLike, window: np.ndarray, relevance: np.ndarray, fs: float, start_s: float,
                  title: str, method: str = "") -> Path:
    """The window's trace (first lead, black) over its relevance as a red band (darker: more relevant); written atomically."""
    from ecgtool.core.plots import pyplot, save_figure

    plt = pyplot()

    trace = np.asarray(window)[0] if np.ndim(window) == 2 else np.asarray(window)
    t = start_s + np.arange(len(trace)) / fs
    rel = np.asarray(relevance, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(12, 3), dpi=100)
    lo, hi = float(trace.min()) - 0.05, float(trace.max()) + 0.05
    band = ax.imshow(rel[None], extent=(t[0], t[-1], lo, hi), aspect="auto", cmap="Reds", vmin=0, vmax=1,
                     alpha=0.7, origin="lower", interpolation="nearest")
    ax.plot(t, trace, color="black", linewidth=0.8)
    ax.set_xlim(t[0], t[-1])
    ax.set_ylim(lo, hi)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("normalised ECG")
    ax.set_title(f"{title}  [{method}]" if method else title, fontsize=10)
    fig.colorbar(band, ax=ax, pad=0.01, label="relevance")
    fig.tight_layout()
    save_figure(fig, path)
    return Path(path)
