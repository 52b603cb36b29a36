"""The control for QAT: how much of QAT's change is the extra fine-tuning, and how much is quantisation?

QAT fine-tunes for `--epochs` more epochs; against the original FP32 it therefore mixes two effects. This
fine-tunes the same FP32 model with the same recipe *without* fake quantisation (train.fit, lr
FINE_TUNE_LR, batch 32, seed 0, BatchNorm frozen as in compress.qat) and compares, on the test split,
macro-F1, worst per-class delta and argmax agreement of: the FP32 control vs the original FP32, and the QAT
INT8 file (made by bench_qat.py) vs the FP32 control (the quantisation cost with training held equal).

    PYTHONPATH=toolkit:benchmarks python benchmarks/bench_qat_control.py MODEL_FOLDER DATA QAT.onnx [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ecgtool.core.ui import markdown_table
from ecgtool.data.dataset import load_dataset
from ecgtool.models import load_model
from ecgtool.runtime import load
from ecgtool.train import defaults as D
from ecgtool.train.fit import fit

from bench_int8 import cpu_line, scores  # noqa: E402  (same folder)


class FrozenBN(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("qat", type=Path)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(cpu_line())
    ds = load_dataset(args.data)
    idx = np.sort(ds.indices("test"))
    x, y = np.ascontiguousarray(ds.signals[idx], dtype=np.float32), ds.labels[idx]
    orig = load(args.model, threads=1)
    torch.manual_seed(0)
    net, _ = fit(FrozenBN(load_model(args.model)), ds, epochs=args.epochs, lr=D.FINE_TUNE_LR, batch_size=D.BATCH_SIZE,
                 patience=args.epochs, device="cpu", seed=0, precise_bn=0, desc="fp32 control")
    net.eval()
    with torch.no_grad():
        control = np.concatenate([net(torch.from_numpy(x[i:i + 64])).numpy() for i in range(0, len(x), 64)]).argmax(1)
    a = np.concatenate([orig.predict(x[i:i + 64]) for i in range(0, len(x), 64)]).argmax(1)
    q = load(args.qat, threads=1, verify=False)
    b = np.concatenate([q.predict(x[i:i + 64]) for i in range(0, len(x), 64)]).argmax(1)
    rows = [{"compared": "FP32 control (fine-tuned, no fake quant) vs original FP32", **scores(y, a, control, ds.classes)},
            {"compared": "QAT INT8 vs original FP32", **scores(y, a, b, ds.classes)},
            {"compared": "QAT INT8 vs FP32 control (quantisation cost, training equal)", **scores(y, control, b, ds.classes)}]
    print(f"test n={len(y)}, {args.epochs} epochs, load average {os.getloadavg()}")
    print(markdown_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
