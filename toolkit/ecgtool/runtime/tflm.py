"""TensorFlow Lite Micro inference of .tflite files (full-integer INT8 or FP32) in the real micro interpreter.

The `tflite-micro` wheel wraps TFLM's C++ MicroInterpreter (reference kernels) with a tensor arena of a
fixed size, as on a microcontroller. Batches are run one window at a time (TFLM has no batch axis to
resize); an INT8 model's input is quantised with the scale / zero point the file records and its output
dequantised to float logits (ecgtool.runtime.tflite_io, the code a bundle's run.py uses too), so F1 is
measured on what runs on the device. The arena is the smallest
that runs (found by `min_arena`, recorded in the sidecar beside the file, core.names.litert_sidecar).
Needs the `[mcu]` extra (pip install -e '.[mcu]').
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ecgtool.core.errors import BadInput
from ecgtool.core.files import read_json
from ecgtool.core.names import litert_sidecar
from ecgtool.runtime import tflite_io
from ecgtool.runtime.base import PredictorBase, check_shape, config_and_classes, one_line

#: the documented size of TFLM's core runtime: "the core runtime just fits in 16 KB on an Arm Cortex M3"
#: (tensorflow.org/lite/microcontrollers). The kernels of the ops used are NOT in it and are unmeasured here
#: (no Arm toolchain); build the firmware and read its map file for the real figure.
RUNTIME_FLASH_BYTES = 16 * 1024
FLASH_NOTE = ("model bytes + 16 KB TFLM core runtime (tensorflow.org/lite/microcontrollers, Cortex-M3); "
              "kernels of the ops used not included (unmeasured)")
ARENA_STEP = 16


def int8_flash_estimate_kb(weights: str | os.PathLike) -> float:
    """Flash (KB) a full-integer .tflite of a model would need, estimated before converting it: one byte per
    stored parameter in `weights` (a safetensors file) plus RUNTIME_FLASH_BYTES. The graph, the per-channel
    scales and the int32 biases are not counted (BatchNorm is, which the export folds away), so the measured
    figure (the sidecar's, after export) is larger: the demo's se_resnet18 w16 559 KB estimated vs 636 KB
    measured, its pruned child 155 vs 204 KB. A model whose estimate exceeds a flash budget does not fit it."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="numpy") as f:
        n = sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
    return params_flash_kb(n)


def params_flash_kb(n_params: int) -> float:
    """The flash estimate of `int8_flash_estimate_kb` from a parameter count (one byte each + the runtime)."""
    return (int(n_params) + RUNTIME_FLASH_BYTES) / 1024


def require_tflm(path: Path | str = "model"):
    """The tflite_micro runtime module, or BadInput (naming `path`) saying how to install it."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise BadInput(f"{path}: TensorFlow Lite Micro is not installed: pip install -e '.[mcu]' (tflite-micro)") from None
    return runtime


@contextlib.contextmanager
def captured_fd2() -> Iterator[dict]:
    """TFLM prints (allocation reports, errors) from C++ straight to fd 2: capture them into box['text']."""
    sys.stderr.flush()
    saved = os.dup(2)
    box: dict = {"text": ""}
    with tempfile.TemporaryFile(mode="w+b") as f:
        os.dup2(f.fileno(), 2)
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            box["text"] = f.read().decode(errors="replace")


def interpreter(buf: bytes, arena: int, path: Path | str = "model"):
    """A TFLM interpreter over `buf` with an `arena`-byte tensor arena; BadInput with TFLM's reason if it fails."""
    runtime = require_tflm(path)
    with captured_fd2() as cap:
        try:
            return runtime.Interpreter.from_bytes(buf, arena_size=int(arena))
        except RuntimeError as exc:
            err = exc
    reason = " ".join(ln.strip() for ln in cap["text"].splitlines() if ln.strip())[-240:] or one_line(err)
    raise BadInput(f"{path}: TFLM cannot run it with a {arena}-byte arena ({reason})")


#: run in a child process: TFLM's Python wrapper can crash (SIGSEGV) instead of raising when the arena is a
#: little too small (its tail allocation fails, then the constructor goes on), so each probe gets its own process
_PROBE = """
import sys, numpy as np
from tflite_micro.python.tflite_micro import runtime
buf = open(sys.argv[1], "rb").read()
x = np.load(sys.argv[2])
try:
    it = runtime.Interpreter.from_bytes(buf, arena_size=int(sys.argv[3]))
    it.set_input(x, 0)
    it.invoke()
except RuntimeError:
    sys.exit(3)
"""


def _probe(model_file: str, x_file: str, arena: int) -> bool:
    import subprocess

    r = subprocess.run([sys.executable, "-c", _PROBE, model_file, x_file, str(int(arena))],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return r.returncode == 0


def runs(buf: bytes, arena: int, x: np.ndarray) -> bool:
    """True when the model allocates and invokes in an `arena`-byte arena on input `x` (already quantised);
    probed in a child process (see _PROBE)."""
    with tempfile.TemporaryDirectory() as d:
        m, xf = os.path.join(d, "m.tflite"), os.path.join(d, "x.npy")
        Path(m).write_bytes(buf)
        np.save(xf, x)
        return _probe(m, xf, arena)


def min_arena(buf: bytes, x: np.ndarray, step: int = ARENA_STEP, path: Path | str = "model") -> int:
    """The smallest tensor arena (bytes, a multiple of `step`) in which TFLM allocates and invokes the model.

    Measured, not estimated: TFLM allocates in the interpreter's constructor and refuses a too-small arena,
    so this doubles up from 16 KB, then bisects, each probe in its own process. (The allocation report is
    not enough: AllocateTensors also needs temporary planner memory.)
    """
    require_tflm(path)
    with tempfile.TemporaryDirectory() as d:
        m, xf = os.path.join(d, "m.tflite"), os.path.join(d, "x.npy")
        Path(m).write_bytes(buf)
        np.save(xf, x)
        hi = 16 * 1024
        while not _probe(m, xf, hi):
            hi *= 2
            if hi > 64 << 20:
                interpreter(buf, hi, path)  # raises BadInput with TFLM's reason
                raise BadInput(f"{path}: TFLM cannot invoke it even with a 64 MiB arena")
        lo = 0
        while hi - lo > step:
            mid = (lo + hi) // 2 // step * step
            if _probe(m, xf, mid):
                hi = mid
            else:
                lo = mid
    return hi


quantise = tflite_io.quantise  # float input -> the model's input dtype (one implementation, in tflite_io)


def io_params(it) -> dict:
    """dtype, shape, scale and zero point of input 0 and output 0 of a TFLM interpreter."""
    return tflite_io.TfliteModel(it, "tflm").io


@dataclass
class TflmPredictor(PredictorBase):
    """A .tflite run in the TFLM interpreter; float32 [N, C, L] in, dequantised float32 [N, K] logits out."""

    kind: str = "tflm"
    arena: int | None = None

    def __post_init__(self) -> None:
        self.buf = Path(self.path).read_bytes()
        side = litert_sidecar(self.path)
        self.sidecar = read_json(side) if side.is_file() else {}
        arena = self.arena or self.sidecar.get("arena_bytes") or 10 * len(self.buf)
        self.model = tflite_io.TfliteModel(interpreter(self.buf, arena, self.path), "tflm")
        self.arena = int(arena)
        self.io = self.model.io
        self.precision = self.model.precision
        self.config, self.classes = config_and_classes(self.path)
        if not self.config:  # a lone .tflite with its sidecar
            self.config = self.sidecar.get("config", {})
            self.classes = list(self.sidecar.get("classes") or self.config.get("classes") or [])

    def predict(self, batch: np.ndarray) -> np.ndarray:
        x = np.asarray(batch, dtype=np.float32)
        check_shape(self.path, self.io["input"]["shape"], x.shape)
        with captured_fd2() as cap:
            try:
                y = self.model.predict(x)
            except RuntimeError as exc:
                err = exc
            else:
                err = None
        if err is not None:
            raise BadInput(f"{self.path}: TFLM invoke failed ({cap['text'].strip()[-200:] or one_line(err)})")
        return y


def footprint(path: str | os.PathLike) -> dict:
    """{flash_kb, ram_kb} of a .tflite from its sidecar (flash: FLASH_NOTE; RAM: the measured arena); {} without."""
    side = litert_sidecar(path)
    if not side.is_file():
        return {}
    s = read_json(side)
    return {"flash_kb": round(s["flash_bytes"] / 1024, 1) if s.get("flash_bytes") else None,
            "ram_kb": round(s["arena_bytes"] / 1024, 1) if s.get("arena_bytes") else None}


def parse_mcu_budget(text: str | None) -> tuple[float, float] | None:
    """'1024,256' -> (1024.0, 256.0) (flash KB, RAM KB); None for None; BadInput otherwise."""
    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",")]
    try:
        flash, ram = (float(p) for p in parts)
    except ValueError:
        raise BadInput(f"--mcu-budget {text}: expected FLASH_KB,RAM_KB (e.g. 1024,256)") from None
    if flash <= 0 or ram <= 0:
        raise BadInput(f"--mcu-budget {text}: both budgets must be positive")
    return flash, ram


def matches(p: Path) -> bool:
    return p.is_file() and p.suffix == ".tflite"


def open_predictor(p: Path, **kw) -> TflmPredictor:
    kw.pop("device", None)  # a micro interpreter: one core, no device choice
    return TflmPredictor(p, **kw)
