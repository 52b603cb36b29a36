"""Which INT8 QDQ form to build for the CPU (or accelerator) that will run it, and which one this machine is.

Without AVX-512 VNNI / AVX-VNNI, ONNX Runtime's x86 int8 kernels multiply u8 x s8 pairs with
vpmaddubsw, whose 16-bit pair sum saturates (2 * 255 * 127 > 32767): INT8 then loses F1 on AVX2
machines that it does not lose on VNNI ones. ONNX Runtime's answer (its `quantize_static`
documentation, "Choosing parameters for CPU inference") is `reduce_range=True` (7-bit weights) on
such CPUs. The table below follows that guidance and our measurements (benchmarks/RESULTS.md):

| target   | activations        | weights        | reduce_range | per-channel | bias  |
|----------|--------------------|----------------|--------------|-------------|-------|
| x86-avx2 | u8 (zero points)   | s8 symmetric   | yes          | yes         | int32 |
| x86-vnni | u8 (zero points)   | s8 symmetric   | no           | yes         | int32 |
| arm64    | s8 symmetric       | s8 symmetric   | no           | yes         | int32 |
| tensorrt | s8 symmetric (zp 0)| s8 symmetric   | no           | yes         | float |

OpenVINO (openvino-int8 from a QDQ graph) gets the tensorrt row's symmetric form for every CPU target, with
reduce_range on x86-avx2 (OPENVINO_FORMS): its CPU plugin saturates like ONNX Runtime's kernels there.

`detect_target()` (core.machine, imported here) reads CPUID as this process sees it (numpy's runtime dispatcher, which reads
cpuid/xgetbv like ONNX Runtime's MLAS), not /proc/cpuinfo alone: under emulation or a masking
hypervisor /proc/cpuinfo describes the host, not the CPU the kernels run on. An x86 CPU without
VNNI (AVX2, AVX-512BW without VNNI, or SSE only) gets the x86-avx2 form: reduce_range costs
nothing measurable where it is not needed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Sequence

from ecgtool.core.errors import BadInput
from ecgtool.core.machine import cpuid_features, detect_target, proc_flags  # noqa: F401  (CPUID lives in core.machine)

AUTO = "auto"


@dataclass(frozen=True)
class Int8Form:
    """One INT8 QDQ form: activation type (u8 with zero points or s8 symmetric), 7-bit weights, per-channel, bias."""

    activation: str  # "u8" | "s8"
    symmetric: bool  # activations symmetric with zero points 0
    reduce_range: bool  # 7-bit weights: no 16-bit saturation in vpmaddubsw (x86 without VNNI)
    per_channel: bool
    quantize_bias: bool = True  # TensorRT takes float biases only
    #: node groups kept FP32 from the start (`--keep-fp32` names, compress.gate.KEEP_FP32_GROUPS; the gate works on top)
    keep_fp32: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """Short name of the form, e.g. `u8s8-asym-pc-rr` (`+fp32:stem,classifier` with groups kept FP32),
        recorded in metadata and bench rows."""
        keep = ",".join(self.keep_fp32)
        return (f"{self.activation}s8-{'sym' if self.symmetric else 'asym'}-{'pc' if self.per_channel else 'pt'}"
                + ("-rr" if self.reduce_range else "") + ("" if self.quantize_bias else "-fbias")
                + (f"+fp32:{keep}" if keep else ""))

    def as_dict(self) -> dict:
        return {**asdict(self), "keep_fp32": list(self.keep_fp32), "label": self.label}


#: target -> the form to ship for it
FORMS: dict[str, Int8Form] = {
    "x86-avx2": Int8Form("u8", False, True, True),
    "x86-vnni": Int8Form("u8", False, False, True),
    "arm64": Int8Form("s8", True, False, True),
    "tensorrt": Int8Form("s8", True, False, True, quantize_bias=False),
}
TARGET_CHOICES = (AUTO, *FORMS)

#: CPU target -> the QDQ form OpenVINO's CPU plugin is given (openvino-int8 without NNCF). OpenVINO reads the
#: symmetric form (it lost F1 on ONNX Runtime's u8 form, benchmarks/RESULTS.md); on x86 without VNNI its int8
#: kernels multiply u8 x s8 with the same saturating 16-bit pair sums as ONNX Runtime's, so that target gets
#: 7-bit weights too (measured on a real AVX2 CPU: the 8-bit form agreed with FP32 on 96 % of the demo's windows).
OPENVINO_FORMS: dict[str, Int8Form] = {t: replace(FORMS["tensorrt"], reduce_range=FORMS[t].reduce_range)
                                       for t in FORMS if t != "tensorrt"}
#: CPU target -> NNCF's OverflowFix for `nncf.quantize` (the same saturation; NNCF's default is first_layer_only)
NNCF_OVERFLOW_FIX = {"x86-avx2": "enable", "x86-vnni": "disable", "arm64": "disable"}
RUNTIMES = ("onnxruntime", "openvino")


def resolve_target(target: str | None) -> str:
    """A concrete target name: `auto` (or None) detects this machine; an unknown name is BadInput."""
    if target in (None, AUTO):
        return detect_target()
    if target not in FORMS:
        raise BadInput(f"--target {target}: unknown INT8 target (choose from {', '.join(TARGET_CHOICES)})")
    return target


def form_for(target: str | None, per_channel: bool | None = None,
             keep_fp32: Sequence[str] | None = None, runtime: str = "onnxruntime") -> tuple[str, Int8Form]:
    """(target, form) for a target name (auto: this machine), per-channel and the groups kept FP32 overridden when
    given (`keep_fp32`: --keep-fp32 names, `suspects` = every group; [] or ["none"]: none, the target's default dropped).
    runtime "openvino": the QDQ form OpenVINO is given for that CPU target (OPENVINO_FORMS)."""
    from ecgtool.compress.gate import keep_fp32_names

    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r}: not one of {RUNTIMES}")
    name = resolve_target(target)
    form = OPENVINO_FORMS.get(name, FORMS[name]) if runtime == "openvino" else FORMS[name]
    if per_channel is not None and per_channel != form.per_channel:
        form = replace(form, per_channel=per_channel)
    if keep_fp32 is not None:
        form = replace(form, keep_fp32=keep_fp32_names(keep_fp32))
    return name, form
