"""`ecgtool bench`: every artifact of a run side by side: status, size, F1, latency, throughput, memory.

Fair timing on a shared machine: all artifacts are loaded first, warmed up, then timed round-robin
(a 20-ms burst of calls each per round after a 2-ms pause, the order shuffled every round) so that
drift hits every backend alike; an artifact leaves the rotation once it has both `min_runs` runs
and `min_time_s` seconds of timed calls.
Outliers beyond Tukey's fences (1.5 IQR) are dropped before p50/p95. Every CPU backend gets the same
thread count. Peak memory is the growth of the process's peak resident set (VmHWM, reset through
/proc/self/clear_refs) while an artifact loads and runs one latency batch. The first artifact of each
kind is loaded twice (unless that load took over 2 s) so that library imports count in neither its
load time nor its memory. Throughput uses `throughput_batch`, smaller only where one call would take
over a second (the row says which batch).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import click
import numpy as np

from ecgtool.core.manifest import find_run_root, record_artifact
from ecgtool.core.files import write_csv, write_json, write_text
from ecgtool.core.names import BENCH_CSV, BENCH_JSON, BENCH_MD, CONFIG
from ecgtool.bench.discover import artifact_kind_of, describe, discover, params_macs
from ecgtool.bench.int8 import ARGMAX, compare_with_parents, int8_columns, score_tensorrt_simulated
from ecgtool.bench.external import external_columns, load_externals, score_externals
from ecgtool.bench.windows import Windows
from ecgtool.core.errors import BadInput, EcgtoolError
from ecgtool.core.machine import machine_info, machine_lines, tensorrt_skip_reason
from ecgtool.compress.gate import DEFAULT_CLASS_POINTS, DEFAULT_MACRO_POINTS, DEFAULT_MIN_WINDOWS
from ecgtool.core.ui import PERCENT_COLUMNS, as_percent, info, markdown_table, print_table, progress_bar, quiet_option
from ecgtool.core.machine import THREADS_AUTO_HELP, resolve_threads
from ecgtool.train.defaults import THREADS

SLOW_LOAD_MS = 2000.0  # a first load this slow is dominated by the load itself, not by library imports
THROUGHPUT_CALL_S = 1.0  # longest single call for throughput; slow artifacts get a smaller batch
#: The columns that fit a terminal (the pipeline's closing table); bench.md/csv/json hold them all.
SCREEN_COLUMNS = ["model", "variant", "runtime", "status", "size_mb", "macro_f1", "accuracy", "p50_ms", "p95_ms",
                  "throughput_sps", "peak_mem_mb"]
TABLE_COLUMNS = ["model", "variant", "runtime", "status", "params", "macs", "size_mb", "macro_f1", "weighted_f1",
                 "accuracy", "p50_ms", "p95_ms", "throughput_sps", "peak_mem_mb", "load_ms"]
#: INT8 columns (bench.md's second table, bench.csv/json): see ecgtool.bench.int8
INT8_COLUMNS = ["model", "variant", "runtime", "int8_target", "int8_form", "int8_fp32_nodes", "int8_qat_epochs", "f1_source",
                "macro_f1", "f1_delta_macro", "f1_delta_worst", "f1_delta_worst_class", "agreement_fp32", "int8_gate"]

#: microcontroller footprint (from a .tflite's sidecar: flash estimate, measured TFLM arena), shown where any row has it
MCU_COLUMNS = ["flash_kb", "ram_kb"]


def table_columns(rows: Sequence[dict], columns: Sequence[str] = TABLE_COLUMNS) -> list[str]:
    """`columns`, with flash_kb / ram_kb after size_mb when some row has them."""
    cols = list(columns)
    if any(r.get(c) is not None for r in rows for c in MCU_COLUMNS):
        at = cols.index("size_mb") + 1 if "size_mb" in cols else len(cols)
        cols[at:at] = MCU_COLUMNS
    return cols

# --- measuring ----------------------------------------------------------------------------------------

def _proc_kb(field: str) -> int:
    try:
        for line in open("/proc/self/status", encoding="utf-8"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _open(path: Path, threads: int | None, device: str) -> Any:
    from ecgtool.runtime import load

    opts: dict = {"threads": threads} if threads else {}
    if device != "cpu":
        opts["device"] = device
    try:
        return load(path, **opts)
    except TypeError:  # a loader without those options
        return load(path)


def clip_outliers(times: Sequence[float]) -> np.ndarray:
    """Drop values beyond Tukey's fences (1.5 IQR outside the quartiles)."""
    t = np.asarray(times, dtype=float)
    if len(t) < 4:
        return t
    q1, q3 = np.percentile(t, [25, 75])
    iqr = q3 - q1
    return t[(t >= q1 - 1.5 * iqr) & (t <= q3 + 1.5 * iqr)]


def time_round_robin(calls: dict[str, Callable[[], Any]], *, warmup: int, min_runs: int, min_time_s: float,
                     max_runs: int = 5000, max_time_s: float | None = None, burst_s: float = 0.02,
                     switch_pause_s: float = 0.002, seed: int = 0) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Seconds per call for each key, interleaved: every round gives each active key one turn, in a shuffled order.

    A turn is a short pause (so that the previous backend's worker threads stop spinning on the shared
    cores), then timed calls until `burst_s` seconds have passed (at least one call). A key stays active
    until it has min_runs calls and min_time_s seconds of timed calls, or max_runs calls, or (with at
    least 3 calls) max_time_s seconds: a very slow artifact cannot hold up the rest. A call that raises
    ends that key with its error message, and the others go on.
    """
    errors: dict[str, str] = {}
    for key, fn in calls.items():
        try:
            for _ in range(warmup):
                fn()
        except Exception as exc:
            errors[key] = _reason(exc)
    times: dict[str, list[float]] = {k: [] for k in calls if k not in errors}

    def wanted(k: str) -> bool:
        t = times[k]
        return len(t) < max_runs and (len(t) < min_runs or sum(t) < min_time_s) and \
            not (max_time_s and len(t) >= 3 and sum(t) >= max_time_s)

    active = list(times)
    rng = random.Random(seed)
    while active:
        rng.shuffle(active)
        for key in list(active):
            if switch_pause_s:
                time.sleep(switch_pause_s)
            start = time.perf_counter()
            while True:
                t0 = time.perf_counter()
                try:
                    calls[key]()
                except Exception as exc:
                    errors[key] = _reason(exc)
                    active.remove(key)
                    break
                t1 = time.perf_counter()
                times[key].append(t1 - t0)
                if t1 - start >= burst_s or not wanted(key):
                    break
        active = [k for k in active if wanted(k)]
    return times, errors


def _reason(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"{type(exc).__name__}: {text}"[:160] if not isinstance(exc, BadInput) else text[:160]


def _metrics(pred: Any, x: np.ndarray, y: np.ndarray, classes: list[str], batch: int) -> dict:
    from ecgtool.evaluate.metrics import compute_metrics
    from ecgtool.runtime.base import predict_in_batches

    logits = predict_in_batches(pred, x, batch)
    model_classes = list(getattr(pred, "classes", None) or classes)
    if model_classes != classes:
        if sorted(model_classes) != sorted(classes):
            raise BadInput(f"classes {model_classes} differ from the dataset's {classes}")
        logits = logits[:, [model_classes.index(c) for c in classes]]
    m = compute_metrics(y, logits.argmax(1), classes)
    per_class = m.get("per_class") or {}
    f1 = {c: (per_class[c]["f1"] if isinstance(per_class, dict) else per_class[i]["f1"]) for i, c in enumerate(classes)} \
        if per_class else {}
    frac = lambda v: None if v is None else round(float(v), 6)  # noqa: E731
    return {"macro_f1": frac(m["macro_f1"]), "weighted_f1": frac(m["weighted_f1"]), "accuracy": frac(m["accuracy"]),
            "per_class_f1": {c: frac(v) for c, v in f1.items()}, ARGMAX: logits.argmax(1),
            "confusion": np.asarray(m.get("confusion_matrix", m.get("confusion", []))).tolist()}


def _gpu_call_without_copies(pred: Any, x: np.ndarray) -> Callable[[], Any] | None:
    """A synchronised call of a PyTorch predictor's network on a batch already on the GPU (None otherwise)."""
    import torch

    model = getattr(pred, "model", None)
    if not isinstance(model, torch.nn.Module) or not str(getattr(pred, "device", "cpu")).startswith("cuda"):
        return None
    xt = torch.from_numpy(x).to(pred.device)

    def call() -> None:
        with torch.inference_mode():
            model(xt)
        torch.cuda.synchronize()

    return call


# --- the benchmark ------------------------------------------------------------------------------------

@dataclass
class BenchResult:
    """What `bench` measured: one row per artifact, the machine, the settings, the dataset, files written."""

    rows: list[dict]
    machine: dict
    settings: dict
    dataset: dict
    paths: list[Path] = field(default_factory=list)


def bench(paths: Sequence[str | os.PathLike], data: Any, *, threads: int | str | None = THREADS, batch: int = 1,
          throughput_batch: int = 64, warmup: int = 10, min_runs: int = 30, min_time_s: float = 0.5,
          split: str = "test", max_eval: int | None = None, device: str = "cpu", out: str | os.PathLike | None = None,
          seed: int = 0, external: Sequence[str | os.PathLike] = ()) -> BenchResult:
    """Bench every runnable artifact under `paths` (RUN folders or artifacts) on `data` (a prepared dataset).

    One row per artifact: status, params, MACs, size on disk (MB), macro-F1 / weighted F1 / accuracy (fractions
    in [0, 1]) on `split` (first `max_eval` records), latency p50/p95 (ms) at `batch`, throughput (samples/s) at
    `throughput_batch`, peak memory (MB), load time (ms). A failing artifact becomes a `failed: ...` row.
    With `out`, writes bench.csv, bench.json and bench.md there and records them in its manifest.
    `external`: other datasets (e.g. other devices), each adding an ext_f1_<name> column and worst_f1 (bench/external.py).
    """
    import torch

    from ecgtool.data.dataset import PreparedDataset, load_dataset

    ds = data if isinstance(data, PreparedDataset) else load_dataset(data)
    idx = ds.indices(split)
    n = len(idx) if max_eval is None else min(len(idx), int(max_eval))
    if n == 0:
        raise BadInput(f"{ds.root}: the {split!r} split is empty")
    # each artifact reads the windows as it is deployed (a --leads any model: the deployment lead alone)
    x = Windows(ds, idx[:n], batch)
    y = np.asarray(ds.labels[idx[:n]], dtype=np.int64)
    if (y < 0).any():
        raise BadInput(f"{ds.root}: split {split!r} has unlabelled windows (label -1); bench needs labels "
                       "(unlabelled data is for `ecgtool adapt`)")
    externals = load_externals(external, max_eval) if external else []
    candidates = discover(paths)
    if not candidates:
        raise BadInput(f"{Path(paths[0])}: no runnable artifacts found (expected model folders, .onnx, .xml ...)")
    run_root = Path(out).resolve() if out else _default_out(paths)
    if threads is not None:
        threads, why = resolve_threads(threads)
        info(f"bench: {threads} thread(s) for every CPU backend ({why})")
        torch.set_num_threads(threads)
    rows = _describe_all(candidates, run_root, int(ds.signals.shape[-1]))
    load_start = _load_average()
    with progress_bar("bench", total=2 * len(rows) + 2) as bar:
        preds = _open_all(rows, candidates, threads, device, x, bar)
        _score_all(rows, preds, x, y, ds.classes, throughput_batch, bar)
        simulated = score_tensorrt_simulated(rows, candidates, x.of, y, ds.classes, threads, throughput_batch, _metrics)
        compare_with_parents(rows, ds.classes, y)
        if externals:  # the TensorRT rows too, by their simulated arithmetic (they are not timed)
            score_externals(rows, {**preds, **simulated}, externals, throughput_batch)
        del simulated
        _time_all(rows, preds, x, batch=batch, throughput_batch=throughput_batch, warmup=warmup,
                  min_runs=min_runs, min_time_s=min_time_s, device=device, seed=seed, bar=bar)
    del preds
    gc.collect()
    settings = {"data": str(Path(ds.root).resolve()), "split": split, "n_eval": n, "threads": threads,
                "batch": batch, "throughput_batch": throughput_batch, "warmup": warmup, "min_runs": min_runs,
                "min_time_s": min_time_s, "device": device, "seed": seed,
                "external": [{"name": e["name"], "path": e["path"], "n": int(len(e["y"])), "rate_check": e["rate_check"]}
                             for e in externals]}
    if externals:  # the own data's labels against the rate definitions too, beside the externals'
        from ecgtool.bench.external import rate_check

        settings["rate_check"] = rate_check(ds.root)
    machine = {**machine_info(threads, device), "load_start": load_start, "load_end": _load_average()}
    result = BenchResult(rows, machine, settings, _dataset_summary(ds))
    if out is not None:
        result.paths = write_bench(run_root, rows, machine, settings, result.dataset)
    return result


def _describe_all(candidates: list[dict], run_root: Path, length: int) -> list[dict]:
    rows = [describe(c, run_root) for c in candidates]
    for row, cand in zip(rows, candidates):
        if row.get("precision") == "int8":
            row.update(int8_columns(cand["path"]))
        try:
            row.update(params_macs(cand["path"], length))
        except Exception as exc:
            row.update(params=None, macs=None)
            info(f"{cand['path']}: parameters/MACs not counted ({_reason(exc)})")
        if cand["kind"] == "tflm":
            from ecgtool.runtime.tflm import footprint

            row.update(footprint(cand["path"]))
    return rows


def _open_all(rows: list[dict], candidates: list[dict], threads: int | None, device: str, x: Windows,
              bar: Any) -> dict[str, Any]:
    """Open every runnable artifact (load time and memory measured); key: the row's index as a string."""
    import torch

    no_cuda = device.startswith("cuda") and not torch.cuda.is_available()
    preds: dict[str, Any] = {}
    kinds_seen: set[str] = set()
    for i, (row, cand) in enumerate(zip(rows, candidates)):
        bar.update(f"load {row['model']} {row['variant']} {row['runtime']}")
        if cand["trt"]:
            row["status"] = tensorrt_skip_reason()
        elif no_cuda:
            row["status"] = "skipped: no CUDA device"
        else:
            x.prefetch(cand["path"])  # its windows are read before its load is measured
            pred = _load_measured(row, cand["path"], threads, device, x)
            if pred is not None and cand["kind"] not in kinds_seen and row["load_ms"] < SLOW_LOAD_MS:
                # the first load of a kind imports its libraries: measure the load again without them,
                # the first instance still alive (freed, its pages would be reused and the growth read ~0 MB)
                first = pred
                pred = _load_measured(row, cand["path"], threads, device, x)
                del first
            if pred is not None:
                preds[str(i)] = pred
                kinds_seen.add(cand["kind"])
        bar.advance()
    return preds


def _score_all(rows: list[dict], preds: dict[str, Any], x: Windows, y: np.ndarray, classes: list[str],
               batch: int, bar: Any) -> None:
    """F1 of every open artifact; one that fails to predict becomes a failed row and leaves `preds`."""
    for key, pred in list(preds.items()):
        row = rows[int(key)]
        bar.update(f"F1 {row['model']} {row['variant']} {row['runtime']}")
        try:
            row.update(_metrics(pred, x.of(pred), y, classes, batch))
        except Exception as exc:
            row["status"] = f"failed: {_reason(exc)}"
            del preds[key]
        bar.advance()


def _time_all(rows: list[dict], preds: dict[str, Any], windows: Windows, *, batch: int,
              throughput_batch: int, warmup: int, min_runs: int, min_time_s: float, device: str, seed: int,
              bar: Any) -> None:
    """Latency at `batch` and throughput at `throughput_batch`, every artifact timed round-robin (each on its
    own view of the windows, `windows.of(pred)`)."""
    n = len(windows)
    bar.update(f"latency at batch {batch} (round-robin)")
    max_time_s = max(3.0, 5 * min_time_s)
    lat, errs = time_round_robin({k: (lambda p=p, x1=windows.one_batch(p): p.predict(x1)) for k, p in preds.items()},
                                 warmup=warmup,
                                 min_runs=min_runs, min_time_s=min_time_s, max_time_s=max_time_s, seed=seed)
    _fill_latency(rows, lat, errs, "p50_ms", "p95_ms")
    if device.startswith("cuda"):
        calls = {k: c for k, p in preds.items() if (c := _gpu_call_without_copies(p, windows.one_batch(p))) is not None}
        lat_gpu, errs_gpu = time_round_robin(calls, warmup=warmup, min_runs=min_runs, min_time_s=min_time_s,
                                             max_time_s=max_time_s, seed=seed)
        _fill_latency(rows, lat_gpu, errs_gpu, "p50_ms_no_copy", "p95_ms_no_copy")
    bar.advance()
    bar.update(f"throughput at batch {throughput_batch}")
    batches = {k: _throughput_batch(rows[int(k)], throughput_batch, batch) for k in preds if k not in errs}
    tp, errs = time_round_robin({k: (lambda p=p, xb=windows.of(p)[np.arange(b) % n]: p.predict(xb)) for (k, p), b in
                                 zip(preds.items(), batches.values()) if k in batches},
                                warmup=1, min_runs=3, min_time_s=min_time_s / 2, max_time_s=max_time_s, seed=seed)
    for key, t in tp.items():
        rows[int(key)]["throughput_batch"] = batches[key]
        rows[int(key)]["throughput_sps"] = round(batches[key] / float(np.median(clip_outliers(t))))
    for key, msg in errs.items():
        rows[int(key)]["status"] = f"failed: {msg}"
    bar.advance()


def _load_average() -> float | None:
    """The 1-minute load average: how busy the shared machine was while timing."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _default_out(paths: Sequence[str | os.PathLike]) -> Path:
    first = Path(paths[0]).resolve()
    if first.is_dir() and artifact_kind_of(first) is None and not (first / CONFIG).exists():
        return first
    return find_run_root(first)


def _throughput_batch(row: dict, largest: int, batch: int) -> int:
    """`largest`, unless one call would take over THROUGHPUT_CALL_S at the measured latency (slow artifacts)."""
    p50 = row.get("p50_ms")
    if not p50:
        return largest
    per_sample_s = p50 / 1e3 / batch
    return int(max(1, min(largest, THROUGHPUT_CALL_S // per_sample_s)))


def _load_measured(row: dict, path: Path, threads: int | None, device: str, windows: Windows) -> Any | None:
    """Open an artifact, timing the load (ms) and the peak-RSS growth (MB) over load + one latency batch."""
    gc.collect()
    peak_reset = _reset_peak_rss()
    rss0 = _proc_kb("VmRSS")
    try:
        t0 = time.perf_counter()
        pred = _open(path, threads, device)
        row["load_ms"] = round(1e3 * (time.perf_counter() - t0), 2)
        pred.predict(windows.one_batch(pred))
    except Exception as exc:
        row["status"] = f"failed: {_reason(exc)}"
        return None
    end = _proc_kb("VmHWM") if peak_reset else _proc_kb("VmRSS")
    row["peak_mem_mb"] = round(max(0, end - rss0) / 1024, 2)
    row["precision"] = getattr(pred, "precision", row["precision"]) or row["precision"]
    return pred


def _fill_latency(rows: list[dict], times: dict[str, list[float]], errors: dict[str, str], p50: str, p95: str) -> None:
    for key, t in times.items():
        kept = clip_outliers(t) * 1e3
        rows[int(key)].update({p50: round(float(np.percentile(kept, 50)), 4), p95: round(float(np.percentile(kept, 95)), 4),
                               "n_runs": len(t), "n_clipped": len(t) - len(kept)})
    for key, msg in errors.items():
        rows[int(key)]["status"] = f"failed: {msg}"


def _dataset_summary(ds: Any) -> dict:
    meta = ds.meta
    return {"path": str(Path(ds.root).resolve()), "source": meta.get("source"), "classes": ds.classes,
            "split_kind": meta.get("split") or meta.get("split_kind"), "counts": meta.get("counts"),
            "sampling_rate": meta.get("sampling_rate"), "seconds": meta.get("seconds"), "n_records": len(ds)}


# --- outputs ------------------------------------------------------------------------------------------

def csv_rows(rows: Sequence[dict]) -> tuple[list[dict], list[str]]:
    """Flat rows for CSV: per-class F1 as f1_<class> columns; the confusion matrix stays in JSON."""
    flat, columns = [], []
    for r in rows:
        f = {k: v for k, v in r.items() if k not in ("per_class_f1", "confusion", "f1_delta", "external")}
        f.update({f"f1_{c}": v for c, v in (r.get("per_class_f1") or {}).items()})
        flat.append(f)
        columns += [k for k in f if k not in columns]
    return flat, columns


def _pct_columns(rows: Sequence[dict]) -> tuple[str, ...]:
    """The fraction columns shown in %: the standard ones plus the external ones."""
    from ecgtool.core.ui import PERCENT_COLUMNS

    return (*PERCENT_COLUMNS, *external_columns(rows))


def write_bench(out: Path, rows: list[dict], machine: dict, settings: dict, dataset: dict) -> list[Path]:
    """Write bench.json, bench.csv and bench.md into `out` (atomically) and record them in its manifest."""
    flat, columns = csv_rows(rows)
    md = ["# Benchmark", "", *[f"- {line}" for line in machine_lines(machine)],
          f"- Data: {dataset['path']} split {settings['split']} ({settings['n_eval']} records); F1 and accuracy in %",
          f"- Timing: latency at batch {settings['batch']} (p50/p95 ms, {settings['warmup']} warm-up runs, >= "
          f"{settings['min_runs']} runs and >= {settings['min_time_s']} s each, round-robin, outliers beyond 1.5 IQR "
          f"dropped); throughput at batch {settings['throughput_batch']} (samples/s; smaller where one call would "
          "exceed 1 s, see bench.csv); peak memory = growth of peak RSS (VmHWM) over load + one latency batch; "
          "load time excludes library imports",
          f"- Date: {machine['date']}", "", markdown_table(as_percent(rows, _pct_columns(rows)), table_columns(rows) + external_columns(rows))]
    int8 = [r for r in rows if r.get("precision") == "int8"]
    if int8:
        md += ["", "## INT8 against FP32 (the PyTorch row of the same model, same records; deltas and agreement in %, "
               f"gate: macro-F1 loss <= {DEFAULT_MACRO_POINTS} and every class <= {DEFAULT_CLASS_POINTS} points, a loss "
               f"counting when >= {DEFAULT_MIN_WINDOWS} windows carry it (net); "
               "f1_source simulated-qdq: TensorRT's INT8 arithmetic run by ONNX Runtime without graph optimisations)", "",
               markdown_table(as_percent(int8, PERCENT_COLUMNS + ("agreement_fp32",)), INT8_COLUMNS)]
    paths = [write_json(out / BENCH_JSON, {"machine": machine, "settings": settings, "dataset": dataset, "rows": rows}),
             write_csv(out / BENCH_CSV, flat, columns), write_text(out / BENCH_MD, "\n".join(md))]
    for p in paths:
        record_artifact(p, run_dir=out)
    return paths


@click.command("bench")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--data", required=True, type=click.Path(), help="Prepared dataset to score F1 on.")
@click.option("--split", default=None, help="Split to score on [default: test].")
@click.option("--max-eval", type=int, default=None, help="Score only the first N records of the split.")
@click.option("--threads", default=None, help=f"Threads for every CPU backend: N or auto [default: {THREADS}: "
              f"{THREADS_AUTO_HELP}].")
@click.option("--batch", type=int, default=None, help="Batch size for latency [default: 1].")
@click.option("--throughput-batch", type=int, default=None, help="Batch size for throughput [default: 64].")
@click.option("--warmup", type=int, default=None, help="Warm-up calls per artifact [default: 10].")
@click.option("--min-runs", type=int, default=None, help="Timed calls per artifact at least [default: 30].")
@click.option("--min-time", "min_time_s", type=float, default=None, help="Seconds of timed calls per artifact at least [default: 0.5].")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None, help="Where to run [default: cpu].")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Folder for bench.csv/json/md [default: the run].")
@click.option("--external", multiple=True, type=click.Path(), help="Another device's prepared dataset (all windows, "
              "classes matched by name): adds an ext_f1 column and worst_f1 (repeatable).")
@quiet_option
def bench_command(paths: tuple[str, ...], data: str, out: str | None, **options: Any) -> None:
    """Bench RUN folders or artifacts side by side: status, size, F1, latency, throughput, memory."""
    options = {k: v for k, v in options.items() if v is not None}
    target = Path(out) if out else _default_out(paths)
    result = bench(paths, data, out=target, **options)
    for line in machine_lines(result.machine):
        click.echo(line)
    print_table(as_percent(result.rows, _pct_columns(result.rows)), table_columns(result.rows) + external_columns(result.rows), title="ecgtool bench (F1 and accuracy in %, latency in ms, size in MB)")
    click.echo(f"wrote {target / 'bench.csv'}, bench.json, bench.md")
    if not any(r["status"] == "ok" for r in result.rows):
        raise EcgtoolError(f"{paths[0]}: no artifact ran (see the status column)")
