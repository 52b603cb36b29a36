"""Run an ecgtool deploy bundle: rhythm per 10-s window of an ECG record, as JSON on stdout.

This file is copied into every bundle as run.py, beside ecg_preprocess.py (a copy of
ecgtool/data/preprocess.py: the same readers and preprocessing as ecgtool's, not a re-implementation).
In a bundle it imports only numpy, onnxruntime and that module (numpy, scipy; wfdb if installed, for
WFDB .hea records) -- never torch or ecgtool -- so it runs on a Raspberry Pi or a Jetson with
`pip install -r requirements.txt`. Inside ecgtool (as ecgtool.deploy.bundle_runner) it uses
ecgtool.data.preprocess itself. The preprocessing spec (rate, window, lead, band-pass) is the one the
model froze at training time, copied into model.json by `ecgtool package`.

    python run.py RECORD.npy|RECORD.csv|RECORD.hea [RECORD ...] [--fs HZ] [--lead II] [--threads N]

Exit code 0 when at least one record was read, 2 when none could be (one line per bad record on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

if __package__:  # ecgtool.deploy.bundle_runner
    from ecgtool.data import preprocess as pre
else:  # run.py in a bundle folder: the copy of the same module beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import ecg_preprocess as pre

SPEC_FILE = "model.json"  # ecgtool.core.names.BUNDLE_SPEC (this file cannot import ecgtool)
RecordError = pre.UnusableRecord


# --- results (shared with `ecgtool predict`, so both print the same JSON) -------------------------


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def window_results(probs: np.ndarray, starts: list[int], classes: list[str], fs: float, length: int) -> list[dict]:
    """One dict per window: start_s, end_s (s from the record start), rhythm, probability, all probabilities."""
    out = []
    for p, s in zip(probs, starts):
        if not np.isfinite(p).all():  # a non-finite probability never becomes a class (nor NaN in JSON)
            out.append({"start_s": round(s / fs, 3), "end_s": round((s + length) / fs, 3), "rhythm": None,
                        "probability": None, "probabilities": None, "error": "non-finite model output"})
            continue
        k = int(np.argmax(p))
        out.append({"start_s": round(s / fs, 3), "end_s": round((s + length) / fs, 3), "rhythm": classes[k],
                    "probability": round(float(p[k]), 6),
                    "probabilities": {c: round(float(v), 6) for c, v in zip(classes, p)}})
    return out


def summarise(windows: list[dict], classes: list[str]) -> dict:
    """Record-level rhythm: the majority over windows (ties: higher mean probability), per-class max probability."""
    scored = [w for w in windows if w.get("probabilities")]
    if not scored:
        return {"rhythm": None, "windows": len(windows), "counts": {}, "mean_probabilities": None,
                "max_probabilities": None}
    counts = {c: sum(w["rhythm"] == c for w in scored) for c in classes}
    mean = {c: float(np.mean([w["probabilities"][c] for w in scored])) for c in classes}
    majority = max(classes, key=lambda c: (counts[c], mean[c]))
    peak = {c: max(w["probabilities"][c] for w in scored) for c in classes}
    return {"rhythm": majority, "windows": len(windows), "counts": {c: n for c, n in counts.items() if n},
            "mean_probabilities": {c: round(v, 6) for c, v in mean.items()},
            "max_probabilities": {c: round(v, 6) for c, v in peak.items()}}


def record_result(record: str, fs: float, n_samples: int, windows: list[dict], dropped: list[dict],
                  classes: list[str]) -> dict:
    return {"record": record, "fs": fs, "seconds": round(n_samples / fs, 3), "windows": windows,
            "dropped_windows": dropped, "summary": summarise(windows, classes)}


# --- the bundle -----------------------------------------------------------------------------------


class Bundle:
    """A bundle folder: model.json (classes, preprocessing) and the ONNX model on ONNX Runtime's CPU provider."""

    def __init__(self, folder: str | Path = ".", threads: int | None = None):
        import onnxruntime as ort

        self.folder = Path(folder)
        self.spec = json.loads((self.folder / SPEC_FILE).read_text(encoding="utf-8"))
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(str(self.folder / self.spec["model_file"]), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.dtype = np.float16 if inp.type == "tensor(float16)" else np.float32

    def predict(self, batch: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Logits [N, K] of windows [N, C, L]."""
        return np.concatenate([self.session.run(None, {self.input_name: batch[i:i + batch_size].astype(self.dtype)})[0]
                               for i in range(0, len(batch), batch_size)]).astype(np.float32)

    def windows(self, path: str | Path, fs: float | None = None,
                lead: str | None = None) -> tuple[np.ndarray, float, int, list[int], list[dict]]:
        """(windows [n, C, L], record Hz, record samples, window starts, dropped windows) of one record."""
        spec = self.spec["preprocessing"]
        signal, fs = pre.read_record(path, fs, lead or spec.get("lead"), int(spec["channels"]))
        windows, starts, dropped = pre.windows_for_spec(signal, fs, spec)
        return windows, fs, signal.shape[-1], starts, dropped

    def run_record(self, path: str | Path, fs: float | None = None, lead: str | None = None) -> dict:
        spec = self.spec["preprocessing"]
        windows, fs, n_samples, starts, dropped = self.windows(path, fs, lead)
        probs = softmax(self.predict(windows))
        classes = self.spec["classes"]
        res = window_results(probs, starts, classes, spec["sampling_rate"], int(spec["window_len"]))
        return record_result(str(path), fs, n_samples, res, dropped, classes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Rhythm per 10-s window of ECG records, as JSON.")
    ap.add_argument("records", nargs="+", help="RECORD.npy, RECORD.csv or a WFDB RECORD.hea")
    ap.add_argument("--fs", type=float, help="sampling rate (Hz) of .npy/.csv records")
    ap.add_argument("--lead", help="lead name (WFDB/CSV header) or row index (.npy)")
    ap.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    ap.add_argument("--bundle", default=str(Path(__file__).resolve().parent), help="bundle folder (default: beside run.py)")
    args = ap.parse_args(argv)
    if args.fs is not None:
        try:
            pre.check_fs(args.fs, "--fs")
        except pre.UnusableRecord as exc:
            print(f"run.py: {exc}", file=sys.stderr)
            return 2
    bundle = Bundle(args.bundle, threads=args.threads)
    results = []
    for rec in args.records:
        try:
            results.append(bundle.run_record(rec, args.fs, args.lead))
        except pre.UnusableRecord as exc:
            print(f"{rec}: {exc}", file=sys.stderr)
            results.append({"record": rec, "error": str(exc)})
    spec = bundle.spec
    print(json.dumps({"artifact": spec["model_file"], "kind": "onnxruntime", "precision": spec.get("precision"),
                      "classes": spec["classes"], "records": results}, indent=2, allow_nan=False))
    return 0 if any("error" not in r for r in results) else 2


if __name__ == "__main__":
    sys.exit(main())
