"""Compression speed benchmark: PyTorch eager FP32 against ONNX Runtime / OpenVINO FP32, BF16, INT8, pruned INT8.

se_resnet18 at width 64 is trained briefly on synthetic data (`ecgtool train`), pruned to half its
channels and fine-tuned (`ecgtool.compress.prune`), exported to every CPU format (`ecgtool.export`), scored
on the test split (macro-F1) and timed at batch 1 with the same number of threads, every backend
interleaved round-robin in this one process (`ecgtool.bench.runner.time_round_robin`, outliers clipped),
so every ratio is against a PyTorch baseline measured at the same time. se_resnet50 and se_resnet152
(random weights, latency only) get the same ratios. Achieved operations per second (2 x MACs /
latency) are set against the peak this CPU reaches on a large matrix multiply in each precision.

    .venv/bin/python benchmarks/bench_compress.py --out /tmp/bench_compress
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ecgtool import runtime
from ecgtool.bench.runner import clip_outliers, time_round_robin
from ecgtool.compress.calibration import calibration_set
from ecgtool.evaluate.artifact import evaluate_artifact
from ecgtool.export.formats import FORMATS
from ecgtool.export import export, onnx2openvino, torch2onnx
from ecgtool.models import get_model, load_model, model_stats, save_model
from ecgtool.compress.quantize import onnx2int8
from ecgtool.core.ui import markdown_table

LENGTH = 2000
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def machine(threads: int) -> dict:
    flags = set()
    name = platform.processor() or "unknown CPU"
    for line in open("/proc/cpuinfo", encoding="utf-8"):
        if line.startswith("model name"):
            name = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    import onnxruntime
    import openvino

    return {"cpu": name, "cores": os.cpu_count(), "threads": threads,
            "flags": {f: f in flags for f in CPU_FLAGS}, "load_average": os.getloadavg(),
            "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                         "openvino": openvino.__version__.split("-")[0]},
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


# --- peaks ----------------------------------------------------------------------------------------


def _best_rate(fn, ops: float, repeats: int = 25) -> float:
    fn()
    best = min(_timed(fn) for _ in range(repeats))
    return ops / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _ort_session(model, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _ov_request(model, threads: int, hint: str):
    import openvino as ov

    with tempfile.TemporaryDirectory() as tmp:
        import onnx

        path = Path(tmp) / "m.onnx"
        onnx.save(model, str(path))
        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                                             "INFERENCE_PRECISION_HINT": hint})
    return compiled.create_infer_request()


def measured_peaks(threads: int, sizes: tuple[int, ...] = (512, 1024)) -> dict:
    """Best operations/s of an n x n matrix multiply per precision, over torch, ONNX Runtime, OpenVINO and `sizes`.

    Best of 25 runs each, and the best runtime and size is the peak: on a loaded machine a long call is
    always preempted (so sizes stay moderate), and one runtime's threading may stall where another's does not.
    """
    peaks: dict = {}
    for n in sizes:
        for prec, (name, rate, every) in _peaks_at(threads, n).items():
            if prec not in peaks or rate > peaks[prec][1]:
                peaks[prec] = (f"{name}, n={n}", rate)
            peaks.setdefault("all", {}).setdefault(prec, {}).update({f"{k} n={n}": v for k, v in every.items()})
    return peaks


def _peaks_at(threads: int, n: int) -> dict:
    from onnx import TensorProto, helper, numpy_helper

    torch.set_num_threads(threads)
    ops = 2.0 * n ** 3
    rng = np.random.default_rng(0)
    a32, b32 = torch.randn(n, n), torch.randn(n, n)
    x = a32.numpy()
    w8 = rng.integers(-127, 128, (n, n), dtype=np.int8)
    opset = [helper.make_opsetid("", 17)]
    fin = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, n])]
    fout = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])]
    mm32 = helper.make_model(helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm", fin, fout,
                                               [numpy_helper.from_array(b32.numpy(), "w")]), opset_imports=opset)
    mmi = helper.make_model(helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])], "mmi",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])], [numpy_helper.from_array(w8, "w")]),
        opset_imports=opset)
    qdq = helper.make_model(helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]), helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
         helper.make_node("DequantizeLinear", ["w", "sw", "zw"], ["wd"]), helper.make_node("MatMul", ["xd", "wd"], ["y"])],
        "qdq", fin, fout,
        [numpy_helper.from_array(w8, "w"), numpy_helper.from_array(np.float32(0.02), "s"),
         numpy_helper.from_array(np.uint8(128), "z"), numpy_helper.from_array(np.float32(0.01), "sw"),
         numpy_helper.from_array(np.int8(0), "zw")]), opset_imports=opset)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    s32, si8 = _ort_session(mm32, threads), _ort_session(mmi, threads)
    ov32, ovbf, ov8 = _ov_request(mm32, threads, "f32"), _ov_request(mm32, threads, "bf16"), _ov_request(qdq, threads, "f32")
    a8 = rng.integers(0, 256, (n, n), dtype=np.uint8)
    candidates = {
        "fp32": {"torch.mm": lambda: torch.mm(a32, b32), "onnxruntime MatMul": lambda: s32.run(None, {"x": x}),
                 "openvino MatMul": lambda: ov32.infer({0: x})},
        "bf16": {"torch.mm bf16": lambda: torch.mm(a16, b16), "openvino MatMul bf16 hint": lambda: ovbf.infer({0: x})},
        "int8": {"onnxruntime MatMulInteger": lambda: si8.run(None, {"a": a8}), "openvino QDQ MatMul": lambda: ov8.infer({0: x})},
    }
    out = {}
    for prec, fns in candidates.items():
        rates = {name: _best_rate(fn, ops) for name, fn in fns.items()}
        best = max(rates, key=rates.get)
        out[prec] = (best, rates[best], {k: round(v / 1e9, 1) for k, v in rates.items()})
    return out


# --- model preparation ----------------------------------------------------------------------------


def prepare(args) -> tuple[Path, Path, Path]:
    """(dataset, trained model folder, pruned + fine-tuned folder), made once under --out and reused."""
    from click.testing import CliRunner

    from ecgtool.cli.main import main
    from ecgtool.compress.prune import prune_artifact
    from ecgtool.train.run import train_models

    data = args.data or args.out / "data"
    if not (Path(data) / "meta.json").exists():
        r = CliRunner().invoke(main, ["data", "synth", "--out", str(data), "--per-class", str(args.per_class), "--quiet"])
        if r.exit_code:
            raise SystemExit(r.output)
    model = args.model or args.out / "run" / "se_resnet18"
    if not (Path(model) / "model.safetensors").exists():
        train_models(data, ["se_resnet"], [18], args.out / "run", width=args.width, epochs=args.epochs, lr=args.lr,
                     device="cpu", threads=args.train_threads)
    pruned = args.pruned or Path(f"{model}-pruned50")
    if not (Path(pruned) / "model.safetensors").exists():
        prune_artifact(model, data, 0.5, out=pruned, fine_tune_epochs=args.fine_tune_epochs, lr=args.lr, device="cpu",
                       overwrite=True)
    return Path(data), Path(model), Path(pruned)


def artifacts(model: Path, pruned: Path, data: Path, calib_dir: Path) -> dict[str, Path]:
    """Every CPU artifact of the trained and the pruned model, exported with ecgtool.export."""
    q = {"calib_dir": calib_dir}
    for fmt in ("onnx", "onnx-int8", "onnx-fp16", "openvino-fp32", "openvino-bf16", "openvino-int8"):
        export(model, fmt, data=data, **(q if fmt.endswith("int8") else {}))
    try:
        export(model, "tensorrt-int8", data=data, **q)  # writes model.trt-int8.onnx (symmetric), then needs CUDA
    except Exception as exc:  # noqa: BLE001 - the TensorRT skip is expected here
        print(f"tensorrt-int8: {exc}", file=sys.stderr)
    for fmt in ("onnx", "onnx-int8", "openvino-int8"):
        export(pruned, fmt, data=data, **(q if fmt.endswith("int8") else {}))
    arts = {"PyTorch eager FP32": model}
    names = {"onnx": "ORT FP32", "onnx-int8": "ORT INT8 (uint8 act.)", "onnx-fp16": "ORT FP16",
             "openvino-fp32": "OpenVINO FP32", "openvino-bf16": "OpenVINO BF16", "openvino-int8": "OpenVINO INT8"}
    arts.update({label: model / FORMATS[fmt].artifact for fmt, label in names.items()})
    arts["ORT INT8 symmetric (TensorRT form)"] = model / "model.trt-int8.onnx"
    arts["pruned-0.5 ORT FP32"] = pruned / "model.onnx"
    arts["pruned-0.5 ORT INT8"] = pruned / "model.int8.onnx"
    arts["pruned-0.5 OpenVINO INT8"] = pruned / "openvino-int8" / "model.xml"
    return {k: v for k, v in arts.items() if v.exists()}


def disk_mb(path: Path) -> float:
    if path.is_dir():
        path = path / "model.safetensors"
    files = [path] + ([path.with_suffix(".bin")] if path.suffix == ".xml" else [])
    return sum(f.stat().st_size for f in files) / 1e6


def time_all(paths: dict[str, Path], x: np.ndarray, threads: int, min_time: float) -> dict[str, float]:
    """Median batch-1 latency (ms) of every artifact, interleaved round-robin in this process."""
    preds = {k: runtime.load(p, threads=threads) for k, p in paths.items()}
    torch.set_num_threads(threads)
    calls = {k: (lambda p=p: p.predict(x)) for k, p in preds.items()}
    times, errors = time_round_robin(calls, warmup=5, min_runs=30, min_time_s=min_time, max_time_s=6 * min_time)
    for k, e in errors.items():
        print(f"{k}: failed: {e}", file=sys.stderr)
    return {k: float(np.median(clip_outliers(t)) * 1e3) for k, t in times.items()}


def precision_of(label: str) -> str:
    return next((p for p in ("int8", "bf16", "fp16") if p.upper() in label), "fp32")


# --- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_compress"))
    ap.add_argument("--data", type=Path, help="Prepared dataset (default: synthetic, made under --out).")
    ap.add_argument("--model", type=Path, help="Trained se_resnet18 folder to reuse (default: trained under --out).")
    ap.add_argument("--pruned", type=Path, help="Its pruned + fine-tuned folder to reuse.")
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--fine-tune-epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2, help="Threads of every timed backend.")
    ap.add_argument("--train-threads", type=int, default=1, help="Torch threads for training and fine-tuning.")
    ap.add_argument("--min-time", type=float, default=3.0, help="Seconds of timed calls per backend (at least 30 calls).")
    ap.add_argument("--deep", default="50,152", help="Depths timed with random weights (comma list, '' for none).")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    mach = machine(args.threads)
    peaks = measured_peaks(args.threads)
    torch.set_num_threads(args.train_threads)  # training under load: one thread avoids OpenMP barrier stalls
    data, model, pruned = prepare(args)
    calib = args.out / "calibration"
    arts = artifacts(model, pruned, data, calib)
    from ecgtool.data.dataset import load_dataset

    ds = load_dataset(data)
    x = np.ascontiguousarray(ds.split("test")[0][:1], dtype=np.float32)
    lat = time_all(arts, x, args.threads, args.min_time)
    base = lat["PyTorch eager FP32"]
    macs = {False: model_stats(load_model(model), LENGTH)["macs"], True: model_stats(load_model(pruned), LENGTH)["macs"]}
    rows = []
    for label, path in arts.items():
        f1 = evaluate_artifact(path, ds, threads=args.threads)["macro_f1"]
        prec = precision_of(label)
        gops = 2 * macs[label.startswith("pruned")] / (lat[label] / 1e3) / 1e9
        rows.append({"artifact": label, "file": str(path.relative_to(path.parents[1] if path.is_file() else path.parent)),
                     "size (MB)": round(disk_mb(path), 3), "macro-F1 (%)": round(100 * f1, 2),
                     "median ms": round(lat[label], 3), "speed-up vs PyTorch": round(base / lat[label], 2),
                     "GOP/s": round(gops, 2), "% of peak": round(100 * gops * 1e9 / peaks["int8" if prec == "int8" else
                                                                                    "bf16" if prec == "bf16" else "fp32"][1], 1)})
    by = {r["artifact"]: r for r in rows}
    ref = by["PyTorch eager FP32"]
    unpruned = [r for r in rows if not r["artifact"].startswith(("pruned", "PyTorch"))]
    fastest = min(unpruned, key=lambda r: r["median ms"])
    pruned_int8 = min((r for r in rows if r["artifact"].startswith("pruned") and "INT8" in r["artifact"]),
                      key=lambda r: r["median ms"])
    pruned_ort = by["pruned-0.5 ORT INT8"]
    goals = [
        ("ORT FP32 >= 1.3x", by["ORT FP32"]["speed-up vs PyTorch"], by["ORT FP32"]["speed-up vs PyTorch"] >= 1.3),
        ("ORT INT8 >= 4x", by["ORT INT8 (uint8 act.)"]["speed-up vs PyTorch"], by["ORT INT8 (uint8 act.)"]["speed-up vs PyTorch"] >= 4),
        (f"pruned-0.5 + INT8 >= 10x faster ({pruned_int8['artifact']})", pruned_int8["speed-up vs PyTorch"],
         pruned_int8["speed-up vs PyTorch"] >= 10),
        ("pruned-0.5 ORT INT8 >= 12x smaller than model.safetensors", round(ref["size (MB)"] / pruned_ort["size (MB)"], 2),
         ref["size (MB)"] / pruned_ort["size (MB)"] >= 12),
        ("pruned-0.5 INT8 macro-F1 within 1 point", round(pruned_int8["macro-F1 (%)"] - ref["macro-F1 (%)"], 2),
         ref["macro-F1 (%)"] - pruned_int8["macro-F1 (%)"] <= 1),
        (f"fastest unpruned artifact >= 10x ({fastest['artifact']})", fastest["speed-up vs PyTorch"],
         fastest["speed-up vs PyTorch"] >= 10),
        ("fastest unpruned artifact macro-F1 within 1 point", round(fastest["macro-F1 (%)"] - ref["macro-F1 (%)"], 2),
         ref["macro-F1 (%)"] - fastest["macro-F1 (%)"] <= 1),
    ]
    deep = deep_rows([int(d) for d in args.deep.split(",") if d], args, ds, calib, peaks)
    mach["load_average_end"] = os.getloadavg()
    report = {"machine": mach, "peaks": {k: v for k, v in peaks.items()}, "rows": rows,
              "goals": [{"goal": g, "measured": m, "met": bool(ok)} for g, m, ok in goals], "deep": deep,
              "macs": {"se_resnet18": macs[False], "pruned": macs[True]}}
    (args.out / "bench_compress.json").write_text(json.dumps(report, indent=2, default=str))
    print_markdown(report, argv if argv is not None else sys.argv[1:], args)
    return report


def deep_rows(depths: list[int], args, ds, calib: Path, peaks: dict) -> list[dict]:
    """Latency ratios of deeper models (random weights): ORT FP32/INT8 and OpenVINO FP32/BF16/INT8 vs PyTorch."""
    cs = calibration_set(ds.root, 64, 0, calib)
    out = []
    for depth in depths:
        torch.manual_seed(0)
        folder = save_model(args.out / "random" / f"se_resnet{depth}",
                            get_model(f"se_resnet{depth}", width=args.width, extra={"input_length": LENGTH}).eval())
        onnx_path = torch2onnx(folder)
        int8 = onnx2int8(onnx_path, folder / "model.int8.onnx", cs.signals[:64])
        arts = {"PyTorch eager FP32": folder, "ORT FP32": onnx_path, "ORT INT8 (uint8 act.)": int8}
        for prec, src in (("fp32", onnx_path), ("bf16", onnx_path), ("int8", int8)):
            arts[f"OpenVINO {prec.upper()}"] = onnx2openvino(src, folder / f"openvino-{prec}" / "model.xml", prec)
        x = np.ascontiguousarray(ds.split("test")[0][:1], dtype=np.float32)
        lat = time_all(arts, x, args.threads, args.min_time)
        macs = model_stats(load_model(folder), LENGTH)["macs"]
        for label, ms in lat.items():
            prec = precision_of(label)
            gops = 2 * macs / (ms / 1e3) / 1e9
            out.append({"model": f"se_resnet{depth}", "artifact": label, "median ms": round(ms, 2),
                        "speed-up vs PyTorch": round(lat["PyTorch eager FP32"] / ms, 2), "GOP/s": round(gops, 2),
                        "% of peak": round(100 * gops * 1e9 / peaks[prec if prec in peaks else "fp32"][1], 1)})
    return out


def print_markdown(report: dict, argv: list[str], args) -> None:
    m = report["machine"]
    flags = ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in m["flags"].items())
    print(f"Command: `.venv/bin/python benchmarks/bench_compress.py {' '.join(shlex.quote(a) for a in argv)}`  ")
    print(f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} threads per backend; CPU flags: {flags}  ")
    print(f"Load average (1/5/15 min) at start {tuple(round(v, 1) for v in m['load_average'])}, "
          f"at end {tuple(round(v, 1) for v in m['load_average_end'])} (machine shared with other jobs)  ")
    print(f"Versions: {m['versions']}; date {m['date']}; se_resnet18 width {args.width}, input 1x{LENGTH}, batch 1, "
          f"MACs {report['macs']['se_resnet18'] / 1e6:.0f} M (pruned {report['macs']['pruned'] / 1e6:.0f} M)\n")
    print("Measured peaks (n x n matrix multiply, best of 25 runs, best runtime and n):\n")
    print(markdown_table([{"precision": k, "how": v[0], "GOP/s": round(v[1] / 1e9, 1)}
                          for k, v in report["peaks"].items() if k != "all"]))
    print("Every candidate (GOP/s): " + "; ".join(f"{p}: {c}" for p, c in report["peaks"]["all"].items()) + "\n")
    print("se_resnet18 (trained on synthetic data), test split:\n")
    print(markdown_table(report["rows"]))
    print("Goals:\n")
    print(markdown_table(report["goals"]))
    if report["deep"]:
        print("Deeper models (random weights, latency only):\n")
        print(markdown_table(report["deep"]))


if __name__ == "__main__":
    main()
