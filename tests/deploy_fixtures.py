"""A small trained model for the predict / explain / package tests, built once per test session.

A width-8 se_resnet18 trained for 3 epochs on 140 synthetic 10-s records at 200 Hz (about 10 s on
one core), and test records made from synthetic windows resampled to 360 Hz (.npy, .csv and WFDB).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_CACHE: dict = {}


def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(model folder, dataset folder)."""
    from ecgtool.data.synth import write_synthetic_dataset
    from ecgtool.train.run import train_models

    if "model" not in _CACHE:
        root = tmp_path_factory.mktemp("deploy")
        data = write_synthetic_dataset(root / "data", per_class=20, seed=0)
        train_models(data, ["se_resnet"], [18], root / "run", width=8, epochs=3, batch_size=32, lr=3e-3,
                     device="cpu")
        _CACHE["model"], _CACHE["data"] = root / "run" / "se_resnet18", data
    return _CACHE["model"], _CACHE["data"]


def bandpassed_dataset(out: Path, per_class: int = 6, seed: int = 1) -> Path:
    """Synthetic 10-s windows band-passed 0.5-40 Hz as an importer with --bandpass does, with its meta.json."""
    from ecgtool.data.dataset import load_dataset, write_dataset
    from ecgtool.data.preprocess import bandpass, describe, minmax
    from ecgtool.data.splits import random_split
    from ecgtool.data.synth import write_synthetic_dataset

    raw = load_dataset(write_synthetic_dataset(out.with_name(out.name + "-raw"), per_class=per_class, seed=seed))
    signals = np.stack([minmax(bandpass(np.asarray(s, dtype=np.float64))) for s in raw.signals])
    records = [{"record_id": f"b{i}", "patient_id": f"b{i}", "label": raw.classes[k]} for i, k in enumerate(raw.labels)]
    return write_dataset(out, signals, raw.labels, raw.classes, records, random_split(raw.labels, seed),
                         {"sampling_rate": 200, "seconds": 10, "lead": "II", "source": "synthetic, band-passed",
                          "split": "random", "preprocessing": describe(True)})


def record_360(folder: Path, data: Path, idx: tuple[int, ...] = (0, 40, 100)) -> dict[str, Path]:
    """A 30-s record (three synthetic windows joined) at 360 Hz in mV, as .npy, .csv and WFDB; paths by kind."""
    import wfdb
    from scipy.signal import resample_poly

    from ecgtool.data.dataset import load_dataset

    ds = load_dataset(data)
    x = np.concatenate([np.asarray(ds.signals[i, 0], dtype=np.float64) for i in idx]) * 2.0 - 1.0
    y = resample_poly(x, 9, 5)  # 200 -> 360 Hz
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "rec.npy", y.astype(np.float32))
    np.savetxt(folder / "rec.csv", y[:, None], header="MLII", comments="", fmt="%.6f")
    wfdb.wrsamp("recw", fs=360, units=["mV"], sig_name=["MLII"], p_signal=y[:, None], fmt=["16"], adc_gain=[2000.0],
                baseline=[0], write_dir=str(folder))
    return {"npy": folder / "rec.npy", "csv": folder / "rec.csv", "wfdb": folder / "recw.hea"}
