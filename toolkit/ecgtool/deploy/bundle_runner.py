"""Run an ecgtool deploy bundle: rhythm per 10-s window of an ECG record, as JSON on stdout.

This file is copied into every bundle as run.py, beside ecg_preprocess.py (a copy of
ecgtool/data/preprocess.py: the same readers and preprocessing as ecgtool's, not a re-implementation).
In a bundle it imports only numpy, onnxruntime and that module (numpy, scipy; wfdb if installed, for
WFDB .hea records) -- never torch or ecgtool -- so it runs on a Raspberry Pi or a Jetson with
`pip install -r requirements.txt`. A bundle of a .tflite (LiteRT, for microcontrollers) runs it with
ecg_tflite.py (a copy of ecgtool/runtime/tflite_io.py) on ai-edge-litert's or tflite-micro's interpreter
instead of onnxruntime. Inside ecgtool (as ecgtool.deploy.bundle_runner) it uses
ecgtool.data.preprocess itself. The preprocessing spec (rate, window, lead, band-pass) is the one the
model froze at training time, copied into model.json by `ecgtool package`.

    python run.py RECORD.npy|RECORD.csv|RECORD.hea [RECORD ...] [--fs HZ] [--lead II] [--threads N] [--hop S]
    some-serial-reader | python run.py --stdin --fs 360 [--raw]     # live samples, one JSON line per window

Exit code 0 when at least one record was read, 2 when none could be (one line per bad record on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

if __package__:  # ecgtool.deploy.bundle_runner
    from ecgtool.baseline import features as feat
    from ecgtool.data import preprocess as pre
    from ecgtool.data import stream as st
    from ecgtool.deploy import episodes as epi
else:  # run.py in a bundle folder: the copies of the same modules beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import ecg_preprocess as pre
    import ecg_stream as st
    import ecg_episodes as epi
    try:  # ecg_features.py (baseline/features.py) ships only in the bundles of RR-head models and the RR baseline
        import ecg_features as feat
    except ImportError:
        feat = None

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


def long_record_result(record: str, fs: float, chunks, predict_fn, spec: dict, classes: list[str], *,
                       hop_s: float | None = None, quality: bool = True, min_episode_s: float = epi.MIN_EPISODE_S,
                       gap_s: float = epi.GAP_S) -> dict:
    """A record read in chunks through the streaming path (ecg_stream.StreamCore): per-window results with
    quality, the tail, and the clinical summary (burden, episodes, heart rate); the same keys as
    `record_result` plus "clinical" and "tail". UnusableRecord when no full window fits."""
    core = st.StreamCore(predict_fn, spec, fs, classes, hop_s=hop_s, quality=quality)
    windows: list[dict] = []
    for chunk in chunks:
        windows += core.push(chunk)
    rest, tail = core.close()
    windows += rest
    seconds = core.seconds
    if not windows:
        raise pre.UnusableRecord(f"too short: {seconds:.2f} s < {core.length / core.fs:g} s window")
    ok = [w for w in windows if w["rhythm"] != "unclassifiable"]
    dropped = [{"start_s": w["start_s"], "reason": f"{w['quality']}: {w.get('reason', '')}".rstrip(": ")}
               for w in windows if w["rhythm"] == "unclassifiable"]
    summary = summarise(ok, classes) if ok else {"rhythm": None, "windows": 0, "counts": {}}
    return {"record": record, "fs": fs, "seconds": round(seconds, 3), "windows": windows, "dropped_windows": dropped,
            "summary": summary, "tail": tail,
            "clinical": epi.clinical_summary(windows, classes, seconds, tail, min_episode_s=min_episode_s, gap_s=gap_s)}


# --- the bundle -----------------------------------------------------------------------------------


def baseline_logits(seen: np.ndarray, class_index: list[int], k: int) -> np.ndarray:
    """The RR baseline's logits [N, k] from its classifier's probabilities over the classes it saw in training
    (columns `class_index` of the model's k classes): log probabilities clipped at 1e-7, as RRBaseline's."""
    proba = np.zeros((len(seen), k))
    proba[:, class_index] = seen
    return np.log(np.clip(proba, 1e-7, 1.0)).astype(np.float32)


def _tflite_io():
    """The .tflite interpreters' module: ecgtool.runtime.tflite_io, or its copy ecg_tflite.py in a bundle."""
    if __package__:
        from ecgtool.runtime import tflite_io
    else:
        import ecg_tflite as tflite_io
    return tflite_io


class Bundle:
    """A bundle folder: model.json (classes, preprocessing) and its model: an ONNX file on ONNX Runtime's CPU
    provider, or a .tflite (LiteRT, for microcontrollers) on `interpreter` (auto: TFLM's where tflite-micro
    is installed, else LiteRT's; see ecg_tflite.py)."""

    def __init__(self, folder: str | Path = ".", threads: int | None = None, interpreter: str | None = None):
        self.folder = Path(folder)
        self.spec = json.loads((self.folder / SPEC_FILE).read_text(encoding="utf-8"))
        model_file = self.folder / self.spec["model_file"]
        if model_file.suffix == ".tflite":
            tio = _tflite_io()
            self.tflite = tio.open_tflite(model_file.read_bytes(), interpreter or "auto",
                                          arena=self.spec.get("arena_bytes"), threads=threads)
            self.kind = self.tflite.kind
            return
        if interpreter:
            raise ValueError(f"--interpreter {interpreter}: this bundle's model is {model_file.name}, not a .tflite")
        import onnxruntime as ort

        self.tflite = None
        self.kind = "onnxruntime"
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(str(model_file), sess_options=opts, providers=["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        inp = inputs[0]
        self.input_name = inp.name
        self.dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        #: an RR-head model's second input: the baseline's window features, computed here in numpy (ecg_features.py)
        self.rr = self.spec.get("rr_input")
        if len(inputs) > 1 and (not self.rr or feat is None):
            raise SystemExit(f"{self.folder}: the model has a second input ({inputs[1].name}) but the bundle lacks "
                             "its rr_input spec or ecg_features.py")
        #: the RR baseline: the graph is its classifier, whose input is the window features (ecg_features.py)
        self.classifier = self.spec.get("rr_classifier")
        if self.classifier and feat is None:
            raise SystemExit(f"{self.folder}: an RR-baseline bundle without ecg_features.py")

    def _feeds(self, x: np.ndarray) -> dict:
        feeds = {self.input_name: x.astype(self.dtype)}
        if self.rr:
            fs = float(self.spec["preprocessing"]["sampling_rate"])
            feeds[self.rr["name"]] = feat.head_inputs(x.astype(np.float32), fs, int(self.rr.get("channel", 0)),
                                                      bins=self.rr.get("bins")).astype(self.dtype)
        return feeds

    def _classify(self, x: np.ndarray) -> np.ndarray:
        """The RR baseline's logits: log class probabilities (clipped at 1e-7, as ecgtool's RRBaseline) of the
        window features, over every class (classes it never saw in training get 1e-7)."""
        fs = float(self.spec["preprocessing"]["sampling_rate"])
        ch = int(self.classifier.get("channel", 0))
        feats = np.stack([feat.window_features(np.asarray(w[ch], dtype=np.float32), fs) for w in x]).astype(np.float32)
        seen = self.session.run([self.spec["output"]["name"]], {self.input_name: feats})[0]
        return baseline_logits(seen, self.classifier["class_index"], len(self.spec["classes"]))

    def predict(self, batch: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Logits [N, K] of windows [N, C, L]."""
        if self.tflite is not None:
            return self.tflite.predict(batch)
        if self.classifier:
            return np.concatenate([self._classify(batch[i:i + batch_size]) for i in range(0, len(batch), batch_size)]
                                  or [np.zeros((0, len(self.spec["classes"])), np.float32)])
        return np.concatenate([self.session.run(None, self._feeds(batch[i:i + batch_size]))[0]
                               for i in range(0, len(batch), batch_size)]).astype(np.float32)

    def windows(self, path: str | Path, fs: float | None = None,
                lead: str | None = None) -> tuple[np.ndarray, float, int, list[int], list[dict]]:
        """(windows [n, C, L], record Hz, record samples, window starts, dropped windows) of one record."""
        spec = self.spec["preprocessing"]
        signal, fs = pre.read_record(path, fs, lead or spec.get("lead"), int(spec["channels"]))
        windows, starts, dropped = pre.windows_for_spec(signal, fs, spec)
        return windows, fs, signal.shape[-1], starts, dropped

    def run_record(self, path: str | Path, fs: float | None = None, lead: str | None = None,
                   hop_s: float | None = None, quality: bool = True) -> dict:
        """One record read in chunks (bounded memory) through the streaming path; see long_record_result."""
        spec = self.spec["preprocessing"]
        rec_fs, chunks = st.open_record(path, fs, lead or spec.get("lead"), int(spec["channels"]))
        return long_record_result(str(path), rec_fs, chunks, self.predict, spec, self.spec["classes"],
                                  hop_s=hop_s, quality=quality)

    def stream(self, fs: float, hop_s: float | None = None, quality: bool = True) -> "st.StreamCore":
        """A live stream: `s.push(samples)` -> results of the windows completed so far; `s.close()` at the end."""
        return st.StreamCore(self.predict, self.spec["preprocessing"], fs, self.spec["classes"], hop_s=hop_s,
                             quality=quality)


def read_stdin(raw: bool, channels: int, block: int = 4096):
    """Chunks [C, n] of samples from standard input: text (one sample per line, C comma-separated values
    for C leads) or, with `raw`, little-endian float32 interleaved by lead."""
    if raw:
        buf = sys.stdin.buffer
        size = 4 * channels * block
        rest = b""
        while True:
            data = buf.read1(size) if hasattr(buf, "read1") else buf.read(size)
            if not data:
                return
            data = rest + data
            n = len(data) // (4 * channels) * 4 * channels
            rest = data[n:]
            if n:
                yield np.frombuffer(data[:n], dtype="<f4").reshape(-1, channels).T.astype(np.float64)
    else:
        for line in sys.stdin:
            line = line.strip()
            if line:
                try:
                    vals = [float(v) for v in line.replace(";", ",").split(",")]
                except ValueError:
                    raise pre.UnusableRecord(f"stdin: not a number: {line[:40]!r}") from None
                if len(vals) != channels:
                    raise pre.UnusableRecord(f"stdin: {len(vals)} value(s) on a line, the model takes {channels}")
                yield np.asarray(vals, dtype=np.float64)[:, None]


def run_stdin(bundle: "Bundle", fs: float | None, raw: bool, hop_s: float | None, quality: bool) -> int:
    """--stdin: one JSON line per window as soon as it completes, then {"tail", "clinical"} at end of input."""
    if not fs:
        print("stdin: --stdin needs the sampling rate: --fs HZ", file=sys.stderr)
        return 2
    spec = bundle.spec
    core = bundle.stream(fs, hop_s, quality)
    windows = []
    try:
        for chunk in read_stdin(raw, int(spec["preprocessing"]["channels"])):
            for w in core.push(chunk):
                windows.append(w)
                print(json.dumps(w), flush=True)
    except pre.UnusableRecord as exc:
        print(str(exc), file=sys.stderr)
        return 2
    rest, tail = core.close()
    for w in rest:
        windows.append(w)
        print(json.dumps(w), flush=True)
    print(json.dumps({"tail": tail, "clinical": epi.clinical_summary(windows, spec["classes"], core.seconds, tail)}))
    return 0 if windows else 2


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Rhythm per 10-s window of ECG records, as JSON.")
    ap.add_argument("records", nargs="*", help="RECORD.npy, RECORD.csv or a WFDB RECORD.hea")
    ap.add_argument("--stdin", action="store_true", help="read samples from standard input (needs --fs); one JSON line per window")
    ap.add_argument("--raw", action="store_true", help="with --stdin: little-endian float32 samples, not text lines")
    ap.add_argument("--hop", type=float, help="seconds between window starts (default: one window, no overlap)")
    ap.add_argument("--no-quality", action="store_true", help="classify every window, skipping the signal-quality gate")
    ap.add_argument("--fs", type=float, help="sampling rate (Hz) of .npy/.csv records")
    ap.add_argument("--lead", help="lead name (WFDB/CSV header) or row index (.npy)")
    ap.add_argument("--threads", type=int, help="ONNX Runtime (or LiteRT) intra-op threads")
    ap.add_argument("--interpreter", choices=["auto", "tflm", "litert"],
                    help=".tflite bundles: tflm (tflite-micro, the microcontroller's interpreter; Linux x86_64), "
                         "litert (ai-edge-litert) or auto (default: tflm where installed, else litert)")
    ap.add_argument("--bundle", default=str(Path(__file__).resolve().parent), help="bundle folder (default: beside run.py)")
    args = ap.parse_args(argv)
    if args.fs is not None:
        try:
            pre.check_fs(args.fs, "--fs")
        except pre.UnusableRecord as exc:
            print(f"run.py: {exc}", file=sys.stderr)
            return 2
    try:
        bundle = Bundle(args.bundle, threads=args.threads, interpreter=args.interpreter)
    except (ImportError, ValueError) as exc:
        print(f"run.py: {exc}", file=sys.stderr)
        return 2
    if args.stdin:
        return run_stdin(bundle, args.fs, args.raw, args.hop, not args.no_quality)
    if not args.records:
        ap.error("give RECORD(s) or --stdin")
    results = []
    for rec in args.records:
        try:
            results.append(bundle.run_record(rec, args.fs, args.lead, args.hop, not args.no_quality))
        except pre.UnusableRecord as exc:
            print(f"{rec}: {exc}", file=sys.stderr)
            results.append({"record": rec, "error": str(exc)})
    spec = bundle.spec
    print(json.dumps({"artifact": spec["model_file"], "kind": bundle.kind, "precision": spec.get("precision"),
                      "classes": spec["classes"], "records": results}, indent=2, allow_nan=False))
    return 0 if any("error" not in r for r in results) else 2


if __name__ == "__main__":
    sys.exit(main())
