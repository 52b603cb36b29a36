"""Quantisation-aware training (QAT): fine-tune a model folder's FP32 weights with fake quantisation, export QDQ ONNX.

For models whose post-training INT8 (compress.quantize) cannot pass the accuracy gate, e.g. pruned children.
The fake quantisation is PyTorch's own (`torch.ao.quantization`, FX graph mode: `prepare_qat_fx` with
`FakeQuantize` modules and moving-average min/max observers), chosen over NNCF's torch backend because, on
this torch (2.13), NNCF 3.4's torch quantiser JIT-compiles a C++ extension on first use (over 60 s on a
busy 2-core machine, and a compiler on every user's machine), and over `prepare_qat_pt2e`, which torch 2.13
no longer ships (it moved to torchao). The fake-quantised graph exports through the TorchScript ONNX exporter
as plain QuantizeLinear/DequantizeLinear pairs around FP32 operators: the QDQ form ONNX Runtime fuses into
integer kernels, OpenVINO reads, and TensorRT 10 builds INT8 engines from.

Recipe (one `train.fit` call, so early stopping and best-validation weights are the usual ones):
1. Conv+BatchNorm pairs are folded (eval statistics, as ONNX Runtime's `quant_pre_process` does for PTQ);
   the pre-activation BatchNorms that stay are frozen (eval) during fine-tuning.
2. Fake quantisation in the INT8 form of the target (compress.targets): u8 asymmetric activations for the
   x86 forms (weights 7-bit for x86-avx2, ONNX Runtime's `reduce_range`), s8 symmetric activations with zero
   points 0 for arm64 and TensorRT; weights s8 symmetric per channel, zero points 0 (scale max|w| / 127.5; with
   reduce_range the observer sizes the scale for -64..63, as the ONNX exporter takes only the full int8 range).
   The s8 forms use torch's TensorRT backend config (qint8 activations), the u8 forms the native (x86) one.
3. Observers are initialised on the calibration set (train split, compress.calibration), then the model is
   fine-tuned on the train split for `epochs` (lr train.defaults.FINE_TUNE_LR); observers update while
   training and are frozen for validation and export. The validation split only selects the epoch.
4. Export: QuantizeLinear of each constant weight is folded into an int8 initializer (ONNX's reference
   evaluator computes it), identity nodes removed (onnxscript's optimizer); biases stay float.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ecgtool.compress.calibration import DEFAULT_DIR, DEFAULT_SEED, DEFAULT_SIZE, calibration_set
from ecgtool.compress.gate import DEFAULT_AGREEMENT, DEFAULT_CLASS_POINTS, DEFAULT_MACRO_POINTS, DEFAULT_MIN_WINDOWS, judge
from ecgtool.compress.quantize import EVALUATED, check_agreement_floor, deployed, onnx_logits, report_on_test
from ecgtool.compress.targets import Int8Form, form_for
from ecgtool.core import ui
from ecgtool.core.errors import BadInput
from ecgtool.core.files import atomic_path
from ecgtool.train import defaults as D


def qconfig(form: Int8Form):
    """torch.ao QConfig (FakeQuantize activation and weight) for one INT8 form."""
    from torch.ao.quantization import (FakeQuantize, MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver,
                                       QConfig)

    if form.symmetric:
        act = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=-128, quant_max=127,
                                     dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    else:
        act = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255,
                                     dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    # ONNX export takes only the full int8 range; reduce_range makes the observer size the scale for 7 bits
    rr = form.reduce_range
    if form.per_channel:
        wt = FakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver, quant_min=-128, quant_max=127,
                                    dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0, reduce_range=rr)
    else:
        wt = FakeQuantize.with_args(observer=MovingAverageMinMaxObserver, quant_min=-128, quant_max=127,
                                    dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, reduce_range=rr)
    return QConfig(activation=act, weight=wt)


class QATNet(nn.Module):
    """The fake-quantised graph, with BatchNorm frozen and observers on only in training mode."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def train(self, mode: bool = True) -> "QATNet":
        from torch.ao.quantization import disable_observer, enable_observer

        super().train(mode)
        for m in self.net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        self.net.apply(enable_observer if mode else disable_observer)
        return self


def prepare(model: nn.Module, form: Int8Form, example: torch.Tensor) -> QATNet:
    """Fold Conv+BN, insert fake quantisation for `form` (FX graph mode QAT), wrapped in QATNet."""
    from torch.ao.quantization import QConfigMapping, quantize_fx
    from torch.ao.quantization.backend_config import get_native_backend_config, get_tensorrt_backend_config
    from torch.fx.experimental.optimization import fuse

    folded = fuse(model.eval())
    backend = get_tensorrt_backend_config() if form.symmetric else get_native_backend_config()
    folded.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice (it points at torchao)
        net = quantize_fx.prepare_qat_fx(folded, QConfigMapping().set_global(qconfig(form)), (example,),
                                         backend_config=backend)
    return QATNet(net)


@torch.no_grad()
def observe(net: QATNet, signals: np.ndarray, batch: int = 32) -> None:
    """Initialise the observers' ranges on `signals` (BatchNorm frozen, no weight update)."""
    net.train()
    for i in range(0, len(signals), batch):
        net(torch.from_numpy(np.ascontiguousarray(signals[i:i + batch], dtype=np.float32)))
    net.eval()


def export_qdq(net: QATNet, out: str | os.PathLike, example: torch.Tensor, opset: int = 17) -> Path:
    """The fake-quantised network as a QDQ ONNX (input 'input', output 'logits', batch axis dynamic)."""
    import onnx

    from torch.ao.quantization import FakeQuantize

    net.eval()
    for name, m in net.net.named_modules():
        if isinstance(m, FakeQuantize) and name.endswith("weight_fake_quant") and (m.quant_min, m.quant_max) == (-64, 63):
            # reduce_range: the exporter takes only the full int8 range; the 7-bit scale keeps the weights in
            # -64..64 (the one max-magnitude weight of a channel may round to 64 where torch clamped to 63)
            m.quant_min, m.quant_max = -128, 127
            m.activation_post_process.quant_min, m.activation_post_process.quant_max = -128, 127
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="ecgtool-qat-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(net.net, (example,), str(raw), dynamo=False, opset_version=opset, input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                              do_constant_folding=True)
        model = fold_constant_quantize(onnx.load(str(raw)))
        with atomic_path(out) as dst:
            onnx.save(model, str(dst))
    return out


def fold_constant_quantize(model):
    """QuantizeLinear of constant inputs (the weights) replaced by its int8 result; identities removed."""
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator
    from onnxscript import optimizer

    model = optimizer.optimize(model)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    keep, folded = [], []
    for node in g.node:
        if node.op_type == "QuantizeLinear" and all(i in inits for i in node.input if i):
            one = helper.make_model(helper.make_graph(
                [node], "q", [], [helper.make_tensor_value_info(node.output[0], onnx.TensorProto.UNDEFINED, None)],
                [inits[i] for i in node.input if i]), opset_imports=model.opset_import)
            (value,) = ReferenceEvaluator(one).run(None, {})
            folded.append(numpy_helper.from_array(np.asarray(value), node.output[0]))
        else:
            keep.append(node)
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(folded)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    live = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(live)
    onnx.checker.check_model(model)
    return model


def qat_model(folder: str | os.PathLike, fp32_onnx: str | os.PathLike, data: str | os.PathLike,
              out: str | os.PathLike, *, target: str | None = None, per_channel: bool | None = None,
              epochs: int = D.QAT_EPOCHS, lr: float = D.FINE_TUNE_LR, batch_size: int = D.BATCH_SIZE,
              calib_size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED, calib_dir: str | os.PathLike = DEFAULT_DIR,
              threads: int | None = None, gate_macro: float = DEFAULT_MACRO_POINTS,
              gate_class: float = DEFAULT_CLASS_POINTS, gate_min_windows: int = DEFAULT_MIN_WINDOWS,
              gate_agreement: float = DEFAULT_AGREEMENT, opset: int = 17) -> dict:
    """QAT of the model in `folder` for `target`, QDQ ONNX at `out`; the same report as compress.quantize.quantize_model.

    The gate is judged (validation split, FP32 = `fp32_onnx`) but not enforced by FP32 fallbacks: QAT is
    what comes after the gated PTQ. Test macro-F1 and agreement are reported as for PTQ.
    """
    from ecgtool.data.dataset import load_dataset
    from ecgtool.models import load_model
    from ecgtool.train.fit import fit

    if epochs < 1:
        raise BadInput(f"--qat-epochs {epochs}: must be at least 1")
    check_agreement_floor(gate_agreement)
    folder, out = Path(folder), Path(out)
    target, form = form_for(target, per_channel, keep_fp32=[])  # QAT fake-quantises every node: no group kept FP32
    ds = load_dataset(data)
    model = load_model(folder)
    if int(getattr(model.config, "rr_features", 0) or 0):
        raise BadInput(f"{folder}: an RR-head model (train --rr-head); --qat does not feed its second input (the RR "
                       "features) yet: use post-training INT8 (`ecgtool quantize MODEL --data DIR`, gated), which does")
    classes = list(model.config.classes or [])
    if classes and classes != list(ds.classes):
        raise BadInput(f"{ds.root}: classes {', '.join(ds.classes)} are not the model's ({', '.join(classes)}); "
                       "QAT trains on the model's own dataset")
    from ecgtool.core.artifacts import find_config

    config = find_config(folder)
    cs = calibration_set(ds.root, calib_size, seed, calib_dir, config=config)
    ui.info(f"qat: target {target}, form {form.label}, {epochs} epoch(s) at lr {lr:g} on {ds.root} train split; "
            f"observers from {cs.path} ({len(cs.labels)} records)")
    start = time.perf_counter()
    torch.manual_seed(seed)
    example = torch.from_numpy(np.ascontiguousarray(cs.signals[:2], dtype=np.float32))
    net = prepare(model, form, example)
    observe(net, cs.signals)
    # a `--leads any` model goes on as it was trained: a random lead per record, validated on the deployment lead
    leads = "any" if (config.get("extra") or {}).get("leads") == "any" else "deploy"
    net, history = fit(net, ds, epochs=epochs, lr=lr, batch_size=batch_size, patience=epochs, device="cpu", seed=seed,
                       precise_bn=0, desc="qat", leads=leads)
    net.eval()
    export_qdq(net, out, example, opset)
    evaluated = "simulated-qdq" if target == "tensorrt" else "onnxruntime"
    val = np.sort(ds.indices("val"))
    signals = deployed(ds, fp32_onnx)
    fp32_val = onnx_logits(Path(fp32_onnx), signals, val, threads, "fp32 val").argmax(1)
    qat_val = onnx_logits(out, signals, val, threads, "qat val", **EVALUATED[evaluated]).argmax(1)
    v = judge(ds.labels[val], fp32_val, qat_val, ds.classes, gate_macro, gate_class, gate_min_windows, gate_agreement)
    gate = {"macro_points": gate_macro, "class_points": gate_class, "min_windows": gate_min_windows,
            "agreement_floor": gate_agreement,
            "reason": v.as_dict().get("reason"), "split": "val", "n": int(len(val)),
            "before": v.as_dict(), "after": v.as_dict(), "passed": v.passed, "kept_fp32": [], "groups_fp32": [],
            "scan": []}
    msg = (f"gate {'passed' if v.passed else 'FAILED'} (QAT): validation macro-F1 loss {v.macro_loss_points:.2f} points "
           f"(limit {gate_macro}), worst class {v.worst_class[0]} loss {v.worst_class[1]:.2f} (limit {gate_class}; "
           f"negative = INT8 gained), agreement {100 * v.agreement:.2f} % (floor {gate_agreement:g} %)")
    (ui.info if v.passed else ui.warn)(msg)
    seconds = time.perf_counter() - start
    best = next((h["epoch"] for h in history if h.get("best")), None)
    return report_on_test(Path(fp32_onnx), out, ds, threads, evaluated, cs, seconds, "qat", "QAT INT8",
                       {"target": target, "form": form.as_dict(), "method": "qat", "methods_tried": {},
                        "per_channel": form.per_channel, "exclude": [], "symmetric": form.symmetric,
                        "reduce_range": form.reduce_range, "gate": gate,
                        "qat": {"epochs": epochs, "epochs_run": len(history), "best_epoch": best, "lr": lr,
                                "batch_size": batch_size,
                                "library": f"torch.ao.quantization (FX QAT, torch {torch.__version__})",
                                "history": [{k: h[k] for k in ("epoch", "train_loss", "val_loss", "val_macro_f1")}
                                            for h in history]}})
