"""A .tflite run on numpy windows by either interpreter, with no ecgtool import (copied into deploy bundles).

Two interpreters run the same flatbuffer:
- `tflm`: TensorFlow Lite Micro's C++ MicroInterpreter (the `tflite-micro` wheel; Linux x86_64 only), reference
  kernels in a fixed tensor arena, as on the microcontroller: what ecgtool's F1 of a .tflite is measured on;
- `litert`: LiteRT's Interpreter (the `ai-edge-litert` wheel), the TFLite runtime for computers and Linux
  boards, here with its reference kernels (the ones TFLM's kernels are ported from).
An INT8 model's float input is quantised with the scale / zero point the file records (round, saturate) and
its int8 output dequantised to float logits, one window per invoke (the model's batch axis is 1).

Used by ecgtool.runtime.tflm (`ecgtool predict`, `bench`) and, as ecg_tflite.py, by a bundle's run.py.
"""

from __future__ import annotations

import numpy as np

INTERPRETERS = ("tflm", "litert")


def quantise(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """Float input -> the model's input dtype (int8: round(x / scale) + zero point, saturated)."""
    if np.dtype(dtype) == np.float32:
        return np.ascontiguousarray(x, dtype=np.float32)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantise(y: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """An integer output -> float32 ((q - zero point) * scale); a float output as it is."""
    y = np.asarray(y)
    if y.dtype == np.float32:
        return y
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


def describe(details: dict) -> dict:
    """dtype, shape, scale and zero point of one tensor's details (either interpreter's dict)."""
    q = details.get("quantization_parameters") or {}
    scales, zps = list(q.get("scales", [])), list(q.get("zero_points", []))
    return {"dtype": np.dtype(details["dtype"]).name, "shape": [int(s) for s in details["shape"]],
            "scale": float(scales[0]) if scales else 0.0, "zero_point": int(zps[0]) if zps else 0}


def available(kind: str) -> bool:
    """True when interpreter `kind` (tflm | litert) imports here."""
    try:
        if kind == "tflm":
            from tflite_micro.python.tflite_micro import runtime  # noqa: F401
        else:
            from ai_edge_litert import interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def choose(kind: str = "auto") -> str:
    """`kind`, or for auto the TFLM interpreter where it imports (the firmware's kernels), else LiteRT's;
    ImportError saying what to install when the chosen one does not import."""
    if kind not in ("auto", *INTERPRETERS):
        raise ValueError(f"interpreter {kind!r}: choose auto, tflm or litert")
    if kind == "auto":
        kind = "tflm" if available("tflm") else "litert"
    if not available(kind):
        raise ImportError(f"the {kind} interpreter is not installed: pip install "
                          f"{'tflite-micro (Linux x86_64)' if kind == 'tflm' else 'ai-edge-litert'}")
    return kind


class TfliteModel:
    """One .tflite on one interpreter: `predict(float32 [N, C, L]) -> float32 logits [N, K]`.

    `interp`: an open interpreter of `kind` (`open_tflite` makes one); `io`: its input and output tensors
    (`describe`)."""

    def __init__(self, interp, kind: str):
        self.interp, self.kind = interp, kind
        if kind == "tflm":
            self.io = {"input": describe(interp.get_input_details(0)), "output": describe(interp.get_output_details(0))}
        else:
            i, o = interp.get_input_details()[0], interp.get_output_details()[0]
            self._in, self._out = i["index"], o["index"]
            self.io = {"input": describe(i), "output": describe(o)}

    @property
    def precision(self) -> str:
        return "int8" if self.io["input"]["dtype"] == "int8" else "fp32"

    def _run(self, row: np.ndarray) -> np.ndarray:
        if self.kind == "tflm":
            self.interp.set_input(row, 0)
            self.interp.invoke()
            return np.array(self.interp.get_output(0)[0], copy=True)
        self.interp.set_tensor(self._in, row)
        self.interp.invoke()
        return np.array(self.interp.get_tensor(self._out)[0], copy=True)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        i, o = self.io["input"], self.io["output"]
        xq = quantise(np.asarray(batch, dtype=np.float32), i["scale"], i["zero_point"], np.dtype(i["dtype"]))
        if not len(xq):
            return np.zeros((0, int(o["shape"][-1])), np.float32)
        return dequantise(np.stack([self._run(row[None]) for row in xq]), o["scale"], o["zero_point"])


def open_tflite(buf: bytes, kind: str = "auto", arena: int | None = None, threads: int | None = None) -> TfliteModel:
    """A TfliteModel over the flatbuffer `buf`: TFLM with an `arena`-byte tensor arena (default: ten times
    the model), or LiteRT with `threads` threads."""
    kind = choose(kind)
    if kind == "tflm":
        from tflite_micro.python.tflite_micro import runtime

        return TfliteModel(runtime.Interpreter.from_bytes(buf, arena_size=int(arena or 10 * len(buf))), kind)
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # LiteRT's reference kernels: TFLM's are ports of them, so the logits stay within about one output step of
    # TFLM's (max 0.041 on 200 MIT-BIH windows of a width-8 se_resnet18, against 0.122 with the default XNNPACK
    # kernels, which are ~20x faster; benchmarks/RESULTS.md)
    it = Interpreter(model_content=buf, num_threads=int(threads) if threads else None,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    return TfliteModel(it, kind)
