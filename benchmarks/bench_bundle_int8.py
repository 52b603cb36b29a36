"""Window agreement of INT8 deploy bundles with the FP32 bundle on whole MIT-BIH records.

Each artifact is packaged with `ecgtool package ARTIFACT --out DIR` and the bundle's own `run.py` is run on
each record (a subprocess, as on a device); the per-window rhythms are compared with the FP32 bundle's
(the model folder's model.onnx). Also says, per record, which split of the model's prepared dataset its
windows were in (train / val / test), from the dataset's records.csv and splits.json.

    PYTHONPATH=toolkit python benchmarks/bench_bundle_int8.py MODEL_FOLDER DATA MITDB_DIR --out /tmp/bb \
        --int8 MODEL_FOLDER/model.int8.onnx --int8 MODEL_FOLDER/model.qat-int8.onnx [--records 201,203,210,219]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ecgtool.core.ui import markdown_table

from bench_int8 import QEMU_EVAL, cpu_line  # noqa: E402  (same folder)


def qemu_agreement(bundles: dict[str, Path], record: Path, out: Path) -> dict[str, float]:
    """Windows of `record` as the FP32 bundle prepares them (natively), then every INT8 bundle's model.onnx run
    under `qemu-x86_64 -cpu Haswell` (AVX2, no VNNI): argmax agreement with the FP32 bundle run natively, %.
    (The whole run.py does not run under QEMU 7.2 here: the interpreter segfaults importing wfdb's stack.)"""
    import shutil

    sys.path.insert(0, str(bundles["fp32"]))
    from run import Bundle  # the bundle's own runner

    fp32 = Bundle(bundles["fp32"], threads=1)
    x = np.ascontiguousarray(fp32.windows(record)[0], dtype=np.float32)
    ref = fp32.predict(x).argmax(1)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / f"{record.stem}.npy", x)
    (out / "qemu_eval.py").write_text(QEMU_EVAL)
    res = {}
    for k, b in bundles.items():
        if k == "fp32":
            continue
        model = out / f"{record.stem}-{b.name}.onnx"
        shutil.copyfile(b / "model.onnx", model)
        subprocess.run(["qemu-x86_64", "-cpu", "Haswell", sys.executable, str(out / "qemu_eval.py"),
                        str(out / f"{record.stem}.npy"), str(model)], check=True, capture_output=True)
        res[k] = round(100 * float(np.mean(np.load(str(model) + ".qemu.npy").argmax(1) == ref)), 2)
    return res


def split_of_records(data: Path, records: list[str]) -> dict[str, str]:
    """record -> the split(s) its windows are in (records.csv's `record` column, splits.json's indices)."""
    rows = list(csv.DictReader(open(data / "records.csv", encoding="utf-8")))
    splits = json.loads((data / "splits.json").read_text())
    where = {}
    for name in ("train", "val", "test"):
        for i in splits.get(name, []):
            where[int(i)] = name
    out = {}
    for rec in records:
        found = {where.get(i) for i, r in enumerate(rows) if str(r.get("record", "")) == rec}
        out[rec] = "/".join(sorted(s for s in found if s)) or "not imported"
    return out


def package(artifact: Path, out: Path) -> Path:
    cmd = [sys.executable, "-m", "ecgtool", "package", str(artifact), "--out", str(out), "--overwrite", "-q"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


def rhythms(bundle: Path, record: Path) -> list[str]:
    r = subprocess.run([sys.executable, str(bundle / "run.py"), str(record)], check=True, capture_output=True, text=True)
    doc = json.loads(r.stdout)
    return [w["rhythm"] for w in doc["records"][0]["windows"]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("mitdb", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--int8", type=Path, action="append", required=True)
    ap.add_argument("--records", default="201,203,210,219")
    ap.add_argument("--qemu", action="store_true", help="also run the INT8 models under qemu-x86_64 -cpu Haswell")
    args = ap.parse_args()
    print(cpu_line())
    records = args.records.split(",")
    where = split_of_records(args.data, records)
    bundles = {"fp32": package(args.model / "model.onnx", args.out / "fp32")}
    for p in args.int8:
        bundles[p.name] = package(p, args.out / p.stem.replace(".", "-"))
    rows = []
    for rec in records:
        got = {k: rhythms(b, args.mitdb / f"{rec}.hea") for k, b in bundles.items()}
        ref = np.array(got["fp32"])
        row = {"record": rec, "split (model's dataset)": where[rec], "windows": len(ref),
               "fp32 rhythms": ", ".join(f"{c} {n}" for c, n in zip(*np.unique(ref, return_counts=True)))}
        for k in bundles:
            if k != "fp32":
                row[f"{k} agreement %"] = round(100 * float(np.mean(np.array(got[k]) == ref)), 2)
        if args.qemu:
            for k, v in qemu_agreement(bundles, args.mitdb / f"{rec}.hea", args.out / "qemu").items():
                row[f"{k} under qemu Haswell %"] = v
        rows.append(row)
    print(f"bundle run.py, one process per record, load average {os.getloadavg()}")
    print(markdown_table(rows, list(rows[0])))
    (args.out / "bundle_agreement.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
