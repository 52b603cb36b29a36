"""OpenVINO CPU inference of an IR (.xml + .bin), compiled with the precision hint its folder names."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgtool.core.errors import BadInput
from ecgtool.core.names import OPENVINO_SIDECAR
from ecgtool.runtime.base import PredictorBase, check_shape, one_line, config_and_classes


@dataclass
class OpenVinoPredictor(PredictorBase):
    """OpenVINO CPU inference of an IR (.xml + .bin), compiled with the precision hint its folder names."""

    kind: str = "openvino"
    #: a batch that OpenVINO's CPU plugin splits over threads gets logits that change from run to run (2 threads on
    #: an AVX2 CPU: up to 0.21, 0-3 of 420 argmax; benchmarks/bench_openvino_batch.py); one window per call is the
    #: same every run, so a window is scored alone, as a device sees it; latency and throughput still batch
    score_batch: int | None = 1

    def __post_init__(self) -> None:
        import openvino as ov

        sidecar = self.path.parent / OPENVINO_SIDECAR
        compile_hints: dict = {}
        if sidecar.exists():
            meta = json.loads(sidecar.read_text())
            self.precision = meta.get("precision", "fp32")
            compile_hints = dict(meta.get("compile", {}))
        props = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", **compile_hints}
        if self.threads:
            props["INFERENCE_NUM_THREADS"] = int(self.threads)
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
            self.compiled = core.compile_model(model, self.device.upper(), props)
        except Exception as exc:  # openvino raises RuntimeError with multi-line text
            raise BadInput(f"{self.path}: OpenVINO cannot load it ({one_line(exc)})") from None
        self.request = self.compiled.create_infer_request()
        self.input_shape = [d.get_length() if d.is_static else None for d in self.compiled.input(0).get_partial_shape()]
        self.config, self.classes = config_and_classes(self.path)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        check_shape(self.path, self.input_shape, x.shape)
        self.request.infer({0: x})
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32)


def matches(p: Path) -> bool:
    return p.is_file() and p.suffix == ".xml" and p.with_suffix(".bin").exists()


def open_predictor(p: Path, **kw) -> OpenVinoPredictor:
    return OpenVinoPredictor(p, **kw)
