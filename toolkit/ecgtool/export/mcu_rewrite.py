"""The microcontroller rewrite of an ECGResNet, for export only (the model itself is not changed).

Numerically equivalent in FP32 (max |diff| ~1e-5), it turns the network into what LiteRT and TFLM
take well:
1. BatchNorm folded into the conv right before it (stem conv -> bn; block convs[i] -> bns[i + 1]).
2. The pre-activation BatchNorms (bns[0] on the residual sum, head_bn) cannot be folded: each becomes a
   depthwise 1x1 conv (one DEPTHWISE_CONV_2D with per-channel int8 weights, instead of MUL + ADD with a
   per-tensor constant).
3. The whole network lifted to 2-D ([N, C, 1, L], kernels (1, k)) so the converter's NCHW -> NHWC pass
   runs through every op; otherwise each 1-D conv is wrapped in RESHAPE + TRANSPOSE pairs.
The SE block (average pool, 1x1 convs, sigmoid gate, multiply) then maps to MEAN, CONV_2D, LOGISTIC, MUL.
A layer with no rewrite is refused by name (BadInput).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ecgtool.core.errors import BadInput

#: layer types the rewrite knows (containers included)
SUPPORTED = (nn.Conv1d, nn.BatchNorm1d, nn.ReLU, nn.MaxPool1d, nn.AdaptiveAvgPool1d, nn.Sigmoid, nn.Linear,
             nn.Dropout, nn.Identity, nn.Sequential, nn.ModuleList)


def check_layers(model: nn.Module, where: str = "model") -> None:
    """BadInput naming the first layer the microcontroller rewrite cannot take."""
    from ecgtool.models.network import ECGResNet, PreActBlock, SqueezeExcite

    for name, mod in model.named_modules():
        if isinstance(mod, (ECGResNet, PreActBlock, SqueezeExcite) + SUPPORTED):
            if isinstance(mod, nn.AdaptiveAvgPool1d) and mod.output_size not in (1, (1,)):
                raise BadInput(f"{where}: layer {name} (AdaptiveAvgPool1d to {mod.output_size}) has no "
                               "microcontroller rewrite (only global pooling)")
            continue
        raise BadInput(f"{where}: layer {name or '(root)'} ({type(mod).__name__}) has no microcontroller rewrite "
                       f"(supported: {', '.join(t.__name__ for t in SUPPORTED)})")


def _fold(conv: nn.Conv1d, bn: nn.BatchNorm1d) -> nn.Conv1d:
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    new = nn.Conv1d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, bias=True)
    with torch.no_grad():
        new.weight.copy_(conv.weight * s[:, None, None])
        b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        new.bias.copy_((b - bn.running_mean) * s + bn.bias)
    return new


def _bn_as_depthwise(bn: nn.BatchNorm1d) -> nn.Conv1d:
    c = bn.num_features
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    dw = nn.Conv1d(c, c, 1, groups=c, bias=True)
    with torch.no_grad():
        dw.weight.copy_(s[:, None, None])
        dw.bias.copy_(bn.bias - bn.running_mean * s)
    return dw


def _to2d(mod: nn.Module) -> nn.Module:
    if isinstance(mod, nn.Conv1d):
        new = nn.Conv2d(mod.in_channels, mod.out_channels, (1, mod.kernel_size[0]), (1, mod.stride[0]),
                        (0, mod.padding[0]), (1, mod.dilation[0]), mod.groups, bias=mod.bias is not None)
        with torch.no_grad():
            new.weight.copy_(mod.weight.unsqueeze(2))
            if mod.bias is not None:
                new.bias.copy_(mod.bias)
        return new
    if isinstance(mod, nn.MaxPool1d):
        k, s, p = [v if isinstance(v, int) else v[0] for v in (mod.kernel_size, mod.stride, mod.padding)]
        return nn.MaxPool2d((1, k), (1, s), (0, p))
    if isinstance(mod, nn.AdaptiveAvgPool1d):
        return nn.AdaptiveAvgPool2d(1)
    if isinstance(mod, nn.BatchNorm1d):
        raise BadInput("model: a BatchNorm1d is left after folding (an unexpected layer order)")
    for name, child in mod.named_children():
        setattr(mod, name, _to2d(child))
    return mod


class MCUWrapper(nn.Module):
    """[N, 1, L] float in, [N, classes] logits out, as the model; 2-D inside."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.unsqueeze(2))


def mcu_rewrite(model: nn.Module, where: str = "model") -> nn.Module:
    """A copy of `model` rewritten for LiteRT / TFLM (see the module docstring); the model is untouched."""
    check_layers(model, where)
    m = copy.deepcopy(model).eval()
    m.stem[0] = _fold(m.stem[0], m.stem[1])
    m.stem[1] = nn.Identity()
    for blk in m.blocks:
        for i in range(1, len(blk.bns)):
            blk.convs[i - 1] = _fold(blk.convs[i - 1], blk.bns[i])
            blk.bns[i] = nn.Identity()
        blk.bns[0] = _bn_as_depthwise(blk.bns[0])
    m.head_bn = _bn_as_depthwise(m.head_bn)
    return MCUWrapper(_to2d(m)).eval()
