"""Streaming API: classify samples as they arrive (a wearable, a serial line).

    from ecgtool.deploy.stream import Stream
    s = Stream("models/run/se_resnet18/model.int8.onnx", fs=360)
    for chunk in device:              # any chunk size, down to one sample
        for w in s.push(chunk):       # results of the windows completed so far
            print(w["start_s"], w["rhythm"], w["quality"])
    rest, tail = s.close()            # the last windows and the tail shorter than a window
    s.summary()                       # burden, episodes, heart rate of everything pushed

The work is ecgtool.data.stream.StreamCore, the same class `ecgtool predict` reads long records
through and the bundle's `run.py --stdin` uses, so pushing a record in any chunks gives what predict
gives on it. Memory: one window plus the hop (plus the resampler's history), whatever the duration.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ecgtool.core.errors import BadInput
from ecgtool.data.preprocess import UnusableRecord
from ecgtool.data.stream import StreamCore
from ecgtool.deploy import episodes
from ecgtool.deploy.predict import artifact_config, preprocessing_spec


class Stream:
    """Push samples ([n] or [C, n], mV at `fs` Hz), get classified windows back. `model`: any artifact path
    or an open predictor (ecgtool.runtime.load)."""

    def __init__(self, model: Any, fs: float, *, hop_s: float | None = None, quality: bool = True,
                 lead: str | None = None):
        from ecgtool.runtime import load

        self.predictor = load(model) if isinstance(model, (str, os.PathLike)) else model
        source = getattr(self.predictor, "path", None)
        config = artifact_config(source, self.predictor.config or {}) if source else (self.predictor.config or {})
        self.spec = preprocessing_spec(config, lead, source=source)
        self.classes = list(self.predictor.classes)
        try:
            self.core = StreamCore(self._predict, self.spec, fs, self.classes, hop_s=hop_s, quality=quality)
        except UnusableRecord as exc:
            raise BadInput(f"stream: {exc}") from None
        self.windows: list[dict] = []
        self.tail: dict | None = None

    def _predict(self, x: np.ndarray) -> np.ndarray:
        from ecgtool.runtime.base import predict_in_batches

        return predict_in_batches(self.predictor, x, 64)

    def push(self, samples: Any) -> list[dict]:
        try:
            out = self.core.push(samples)
        except UnusableRecord as exc:
            raise BadInput(f"stream: {exc}") from None
        self.windows += out
        return out

    def close(self) -> tuple[list[dict], dict | None]:
        out, tail = self.core.close()
        self.windows += out
        self.tail = tail or self.tail
        return out, tail

    def summary(self, **rule: float) -> dict:
        """Burden, episodes, heart rate, classifiable fraction of every window so far (episodes.clinical_summary)."""
        return episodes.clinical_summary(self.windows, self.classes, self.core.seconds, self.tail, **rule)
