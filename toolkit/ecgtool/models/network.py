"""The 1-D pre-activation ResNet / SE-ResNet family: one block, one network class, a depth table, a registry.

ResNet and SE-ResNet differ in one argument (`se`). Every depth is the same network class built from
DEPTHS: depth -> (block kind, blocks per stage). Channel counts can be given explicitly (a "plan"),
which is how a pruned network is rebuilt from its config.json without unpickling anything.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ecgtool.core.artifacts import is_model_folder
from ecgtool.core.errors import BadInput
from ecgtool.core.names import CONFIG, WEIGHTS

DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
ARCHS = ("se_resnet", "resnet")
EXPANSION = {"basic": 1, "bottleneck": 4}
STEM_KERNEL = 15  # 75 ms at 200 Hz: about one QRS complex


@dataclass
class ModelConfig:
    """Everything needed to rebuild a network (written to config.json beside the weights)."""

    arch: str = "se_resnet"
    depth: int = 18
    width: int = 64
    kernel_size: int = 7
    in_channels: int = 1
    num_classes: int = 7
    se_reduction: int = 16
    dropout: float = 0.0
    classes: list[str] | None = None
    #: Explicit channel counts (set for pruned networks): {"stem": int, "blocks": [{"mid": [...], "out": int, "se": int, "proj": bool}]}
    channels: dict | None = None
    #: The preprocessing spec frozen at training time (ecgtool.data.preprocess.SPEC_KEYS); not used to build
    #: the network, carried so the model folder and its exports predict the same without the training data.
    preprocessing: dict | None = None
    #: width of the RR head's second input (0: none). With it, the head sees the pooled trunk features
    #: concatenated with the baseline's window features (ecgtool.baseline.features.head_inputs) after a
    #: BatchNorm (`train --rr-head`); its spec (feature names, transform) is in extra["rr_head"].
    rr_features: int = 0
    #: RR head only: in training, the pooled trunk features of this fraction of the records are zeroed (the rest
    #: scaled by 1/(1-p), as dropout does), so the classifier also learns to decide from the RR features alone
    #: ("modality dropout"); nothing changes at inference
    rr_trunk_dropout: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.arch}{self.depth}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """A validated config from a dict (config.json); BadInput naming the key for anything out of bounds."""
        if not isinstance(d, dict):
            raise BadInput(f"model config: expected a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        try:
            cfg = cls(**{k: v for k, v in d.items() if k in known})
        except TypeError as exc:
            raise BadInput(f"model config: {exc}") from None
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Bounds on every field, so that a hostile config.json cannot ask for a 10^4-wide or 10^7-kernel net."""
        if not isinstance(self.arch, str) or self.arch not in ARCHS:
            raise BadInput(f"unknown architecture {self.arch!r} (choose from {', '.join(ARCHS)})")
        if not isinstance(self.depth, int) or isinstance(self.depth, bool) or self.depth not in DEPTHS:
            raise BadInput(f"unknown depth {self.depth} (choose from {', '.join(map(str, DEPTHS))})")
        for key, (lo, hi) in CONFIG_BOUNDS.items():
            _check_int(key, getattr(self, key), lo, hi)
        if not isinstance(self.dropout, (int, float)) or isinstance(self.dropout, bool) or not 0 <= self.dropout < 1:
            raise BadInput(f"model config: dropout = {self.dropout!r}: must be a number in [0, 1)")
        p = self.rr_trunk_dropout
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p < 1:
            raise BadInput(f"model config: rr_trunk_dropout = {p!r}: must be a number in [0, 1)")
        if self.classes is not None:
            if (not isinstance(self.classes, list) or len(self.classes) != self.num_classes
                    or not all(isinstance(c, str) and 0 < len(c) <= 64 for c in self.classes)
                    or len(set(self.classes)) != len(self.classes)):
                raise BadInput(f"model config: classes must be {self.num_classes} distinct names of 1-64 characters")
        if not isinstance(self.extra, dict):
            raise BadInput("model config: extra must be an object")
        for key, (lo, hi) in EXTRA_BOUNDS.items():
            value = self.extra.get(key)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                      or not lo <= value <= hi):
                raise BadInput(f"model config: extra.{key} = {value!r}: must be a number in [{lo:g}, {hi:g}]")
        if self.channels is not None:
            _check_plan(self.channels, len(_strides(self.depth)))


#: inclusive bounds of the integer fields of ModelConfig
CONFIG_BOUNDS = {"width": (1, 1024), "kernel_size": (1, 255), "in_channels": (1, 16), "num_classes": (2, 256),
                 "se_reduction": (1, 1024), "rr_features": (0, 1024)}
#: bounds of the recipe facts in `extra` that size inputs (samples, Hz)
EXTRA_BOUNDS = {"input_length": (16, 200_000), "length": (16, 200_000), "sampling_rate": (1, 10_000)}
MAX_CHANNELS = 8192


def _check_int(key: str, value: Any, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise BadInput(f"model config: {key} = {value!r}: must be an integer in [{lo}, {hi}]")


def _check_plan(plan: Any, n_blocks: int) -> None:
    """A pruned network's channel plan: the depth's number of blocks, every count in [1, MAX_CHANNELS]."""
    if not isinstance(plan, dict) or not isinstance(plan.get("blocks"), list) or len(plan["blocks"]) != n_blocks:
        raise BadInput(f"model config: channels must hold a stem and {n_blocks} blocks")
    _check_int("channels.stem", plan.get("stem"), 1, MAX_CHANNELS)
    for i, b in enumerate(plan["blocks"]):
        if not isinstance(b, dict) or not isinstance(b.get("mid"), list):
            raise BadInput(f"model config: channels.blocks[{i}] must be an object with a mid list")
        for c in [*b["mid"], b.get("out"), b.get("se")]:
            _check_int(f"channels.blocks[{i}]", c, 1, MAX_CHANNELS)


def default_plan(cfg: ModelConfig) -> dict:
    """The unpruned channel plan: stage widths w, 2w, 4w, 8w (times 4 at the output of a bottleneck)."""
    kind, layers = DEPTHS[cfg.depth]
    exp = EXPANSION[kind]
    blocks = []
    in_ch = cfg.width
    for stage, n in enumerate(layers):
        mid = cfg.width * 2**stage
        out = mid * exp
        for i in range(n):
            stride = 2 if (stage > 0 and i == 0) else 1
            blocks.append({
                "mid": [mid] * (1 if kind == "basic" else 2),
                "out": out,
                "se": max(4, out // cfg.se_reduction),
                "proj": stride != 1 or in_ch != out,
            })
            in_ch = out
    return {"stem": cfg.width, "blocks": blocks}


def _strides(depth: int) -> list[int]:
    _, layers = DEPTHS[depth]
    return [2 if (s > 0 and i == 0) else 1 for s, n in enumerate(layers) for i in range(n)]


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al. 2018): global average pool, bottleneck MLP, sigmoid gate."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc1 = nn.Conv1d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv1d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class PreActBlock(nn.Module):
    """Pre-activation residual block (He et al. 2016, "Identity mappings"), basic or bottleneck, SE optional."""

    def __init__(self, kind: str, in_ch: int, mid: list[int], out: int, stride: int, kernel: int,
                 se_hidden: int | None, proj: bool):
        super().__init__()
        pad = kernel // 2
        if kind == "basic":
            chans = [in_ch, mid[0], out]
            specs = [(kernel, stride, pad), (kernel, 1, pad)]
        else:
            chans = [in_ch, mid[0], mid[1], out]
            specs = [(1, 1, 0), (kernel, stride, pad), (1, 1, 0)]
        self.bns = nn.ModuleList(nn.BatchNorm1d(c) for c in chans[:-1])
        self.convs = nn.ModuleList(
            nn.Conv1d(chans[i], chans[i + 1], k, stride=s, padding=p, bias=False) for i, (k, s, p) in enumerate(specs)
        )
        self.relu = nn.ReLU(inplace=False)
        self.se = SqueezeExcite(out, se_hidden) if se_hidden else None
        self.proj = nn.Conv1d(in_ch, out, 1, stride=stride, bias=False) if proj else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bns[0](x))
        shortcut = self.proj(pre) if self.proj is not None else x
        out = self.convs[0](pre)
        for bn, conv in zip(self.bns[1:], self.convs[1:]):
            out = conv(self.relu(bn(out)))
        if self.se is not None:
            out = self.se(out)
        return out + shortcut


class ECGResNet(nn.Module):
    """1-D (SE-)ResNet for rhythm classification of [N, C, L] ECG windows; any L."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.config = cfg
        kind, _ = DEPTHS[cfg.depth]
        plan = cfg.channels or default_plan(cfg)
        stem = plan["stem"]
        self.stem = nn.Sequential(
            nn.Conv1d(cfg.in_channels, stem, STEM_KERNEL, stride=2, padding=STEM_KERNEL // 2, bias=False),
            nn.BatchNorm1d(stem),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(3, stride=2, padding=1),
        )
        blocks = []
        in_ch = stem
        for spec, stride in zip(plan["blocks"], _strides(cfg.depth)):
            se = spec["se"] if cfg.arch == "se_resnet" else None
            blocks.append(PreActBlock(kind, in_ch, spec["mid"], spec["out"], stride, cfg.kernel_size, se, spec["proj"]))
            in_ch = spec["out"]
        self.blocks = nn.Sequential(*blocks)
        self.head_bn = nn.BatchNorm1d(in_ch)
        self.head_act = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        #: the RR head's normalising layer (None without --rr-head); its features join the pooled trunk's
        self.rr_norm = nn.BatchNorm1d(cfg.rr_features) if cfg.rr_features else None
        self.fc = nn.Linear(in_ch + cfg.rr_features, cfg.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last feature map [N, C, L'] before pooling (used for explanations)."""
        return self.head_act(self.head_bn(self.blocks(self.stem(x))))

    def head(self, feats: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        """Logits from the last feature map (and the RR features [N, rr_features] of an RR-head model)."""
        pooled = torch.flatten(self.pool(feats), 1)
        if self.rr_norm is not None:
            if rr is None:
                raise BadInput(f"{self.config.name}: an RR-head model needs its RR features as a second input")
            p = float(self.config.rr_trunk_dropout)
            if self.training and p > 0:
                keep = (torch.rand(pooled.shape[0], 1, device=pooled.device) >= p).to(pooled.dtype)
                pooled = pooled * keep / (1 - p)
            pooled = torch.cat([pooled, self.rr_norm(rr)], dim=1)
        return self.fc(self.dropout(pooled))

    def forward(self, x: torch.Tensor, rr: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x), rr)


def example_inputs(model: nn.Module, length: int = 2000, batch: int = 1,
                   in_channels: int | None = None) -> tuple[torch.Tensor, ...]:
    """Zero inputs of `model`: (signal [batch, C, length],) plus the RR features [batch, F] of an RR-head model."""
    cfg = getattr(model, "config", None)
    c = in_channels or getattr(cfg, "in_channels", 1)
    x = (torch.zeros(batch, c, length),)
    rr = getattr(cfg, "rr_features", 0)
    return (*x, torch.zeros(batch, rr)) if rr else x


def channel_plan(model: ECGResNet) -> dict:
    """Read the channel counts a (possibly pruned) network actually has, for its config.json."""
    blocks = []
    for blk in model.blocks:
        blocks.append({
            "mid": [c.out_channels for c in blk.convs[:-1]],
            "out": blk.convs[-1].out_channels,
            "se": blk.se.fc1.out_channels if blk.se is not None else max(4, blk.convs[-1].out_channels // model.config.se_reduction),
            "proj": blk.proj is not None,
        })
    return {"stem": model.stem[0].out_channels, "blocks": blocks}


# --- registry -------------------------------------------------------------------------------------

_REGISTRY: dict[str, Callable[..., ECGResNet]] = {}


def register_model(name: str) -> Callable:
    """Decorator filing a builder under `name`; a duplicate name is a programming error."""

    def deco(fn: Callable[..., ECGResNet]) -> Callable[..., ECGResNet]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    return list(_REGISTRY)


def get_model(name: str, **config: Any) -> ECGResNet:
    """Build a registered model; options not given keep ModelConfig's defaults."""
    if name not in _REGISTRY:
        raise BadInput(f"unknown model {name!r} (registered: {', '.join(_REGISTRY)})")
    return _REGISTRY[name](**config)


def _make_builder(arch: str, depth: int) -> Callable[..., ECGResNet]:
    def build(**config: Any) -> ECGResNet:
        return ECGResNet(ModelConfig(arch=arch, depth=depth, **config))

    build.__doc__ = f"{arch} at depth {depth}"
    return build


for _arch in ARCHS:
    for _depth in DEPTHS:
        register_model(f"{_arch}{_depth}")(_make_builder(_arch, _depth))


def build_model(config: ModelConfig | dict) -> ECGResNet:
    cfg = config if isinstance(config, ModelConfig) else ModelConfig.from_dict(config)
    return ECGResNet(cfg)


def model_stats(model: nn.Module, length: int = 2000, in_channels: int | None = None) -> dict[str, int]:
    """Parameters and multiply-accumulates (MACs) for one [1, C, length] input, via Torch-Pruning's counter."""
    import torch_pruning as tp

    was_training = model.training
    model.eval()
    with torch.no_grad():
        macs, params = tp.utils.count_ops_and_params(model, example_inputs(model, length, 1, in_channels))
    model.train(was_training)
    return {"params": int(params), "macs": int(macs)}


# --- model folders --------------------------------------------------------------------------------

def save_model(folder: str | os.PathLike, model: ECGResNet, config: ModelConfig | None = None) -> Path:
    """Write weights (safetensors) and config.json into a model folder, each file atomically.

    The same weights give the same bytes (so hashes are reproducible): see `safetensors_bytes`.
    """
    from ecgtool.core.files import write_bytes, write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = config or model.config
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    write_bytes(folder / WEIGHTS, safetensors_bytes(state, {"arch": cfg.arch, "depth": str(cfg.depth)}))
    write_json(folder / CONFIG, cfg.to_dict())
    return folder


def safetensors_bytes(state: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """A safetensors file with its metadata in sorted key order.

    safetensors serialises `__metadata__` from a hash map, so its key order (and the file's hash) varies
    from run to run; the tensors' header is already ordered. The metadata is therefore added here to
    the header safetensors wrote, with sorted keys, padded with spaces to 8 bytes as the format allows.
    """
    import json
    import struct

    from safetensors.torch import save

    raw = save(state)
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header["__metadata__"] = dict(sorted(metadata.items()))
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + raw[8 + n:]


def load_model(folder: str | os.PathLike, map_location: str = "cpu") -> ECGResNet:
    """Rebuild a network from config.json and load its safetensors weights (no unpickling)."""
    from safetensors.torch import load_file

    from ecgtool.core.files import read_json

    folder = Path(folder)
    if not is_model_folder(folder):
        raise BadInput(f"{folder}: not a model folder (needs {CONFIG} and {WEIGHTS})")
    try:
        config = read_json(folder / CONFIG)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"{folder / CONFIG}: not readable JSON ({type(exc).__name__})") from None
    try:
        model = build_model(config)
    except BadInput as exc:
        raise BadInput(f"{folder / CONFIG}: {exc}") from None
    try:
        state = load_file(str(folder / WEIGHTS), device=map_location)
    except Exception as exc:  # safetensors raises its own error types
        raise BadInput(f"{folder / WEIGHTS}: cannot be read ({exc})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BadInput(f"{folder / WEIGHTS}: does not match {CONFIG} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval()
    return model
