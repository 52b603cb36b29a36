"""Batch-level ECG augmentations for minority classes and device shift (all off unless asked for).

Each augmentation takes a float tensor [N, C, L], the sampling rate (Hz) and a seeded
`torch.Generator`, and changes a random half of the batch with per-record random parameters, so
training with the same seed sees the same augmented batches. Amplitudes are relative to each
record's own peak-to-peak range, because prepared signals are min-max normalised.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from ecgtool.core.errors import BadInput

Augmentation = Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]

#: Probability that one record of a batch gets a given augmentation.
P_APPLY = 0.5


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, generator=gen) * (high - low) + low).to(device)


def _chosen(n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """[N, 1, 1] mask of the records that get the augmentation."""
    return (torch.rand(n, generator=gen) < P_APPLY).to(device).view(n, 1, 1)


def _peak_to_peak(x: torch.Tensor) -> torch.Tensor:
    return (x.amax(dim=(1, 2), keepdim=True) - x.amin(dim=(1, 2), keepdim=True)).clamp_min(1e-6)


def amplitude(x: torch.Tensor, fs: float, gen: torch.Generator) -> torch.Tensor:
    """Scale each record by a factor in 0.7-1.4 (log-uniform), as gain and electrode contact vary."""
    n = x.shape[0]
    scale = torch.exp(_uniform(n, -0.357, 0.336, gen, x.device)).view(n, 1, 1)
    mid = x.mean(dim=(1, 2), keepdim=True)
    return torch.where(_chosen(n, gen, x.device), mid + (x - mid) * scale, x)


def baseline(x: torch.Tensor, fs: float, gen: torch.Generator) -> torch.Tensor:
    """Add baseline wander: a 0.05-0.5 Hz sinusoid of up to 20 % of the record's range (breathing, motion)."""
    n, _, length = x.shape
    t = torch.arange(length, device=x.device, dtype=x.dtype).view(1, 1, length) / fs
    freq = _uniform(n, 0.05, 0.5, gen, x.device).view(n, 1, 1)
    phase = _uniform(n, 0.0, 6.2832, gen, x.device).view(n, 1, 1)
    amp = _uniform(n, 0.0, 0.2, gen, x.device).view(n, 1, 1) * _peak_to_peak(x)
    wander = amp * torch.sin(2 * torch.pi * freq * t + phase)
    return torch.where(_chosen(n, gen, x.device), x + wander, x)


#: Signal-to-noise ratios (dB) that `noise` picks from, one per record: mild to heavy.
NOISE_SNR_DB = (30.0, 20.0, 12.0, 6.0)


def noise(x: torch.Tensor, fs: float, gen: torch.Generator) -> torch.Tensor:
    """Add white Gaussian noise at an SNR drawn per record from NOISE_SNR_DB (dB, against the record's std)."""
    n = x.shape[0]
    snr = torch.tensor(NOISE_SNR_DB)[torch.randint(len(NOISE_SNR_DB), (n,), generator=gen)].to(x.device)
    sigma = x.std(dim=(1, 2), keepdim=True) / (10 ** (snr.view(n, 1, 1) / 20))
    white = torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
    return torch.where(_chosen(n, gen, x.device), x + sigma * white, x)


#: Largest time shift (s) of `shift`.
MAX_SHIFT_S = 1.0


def shift(x: torch.Tensor, fs: float, gen: torch.Generator) -> torch.Tensor:
    """Roll each record circularly by up to +-MAX_SHIFT_S seconds (the window start is arbitrary)."""
    n, c, length = x.shape
    max_shift = max(1, int(round(MAX_SHIFT_S * fs)))
    offsets = torch.randint(-max_shift, max_shift + 1, (n,), generator=gen).to(x.device)
    offsets = torch.where(_chosen(n, gen, x.device).view(n), offsets, torch.zeros_like(offsets))
    idx = (torch.arange(length, device=x.device).view(1, length) - offsets.view(n, 1)) % length
    return torch.gather(x, 2, idx.view(n, 1, length).expand(n, c, length))


def invert(x: torch.Tensor, fs: float, gen: torch.Generator) -> torch.Tensor:
    """Polarity inversion about the record's mid-range, so a min-max normalised record keeps its range
    (reversed electrodes, devices with the opposite lead convention)."""
    n = x.shape[0]
    mid2 = x.amax(dim=(1, 2), keepdim=True) + x.amin(dim=(1, 2), keepdim=True)
    return torch.where(_chosen(n, gen, x.device), mid2 - x, x)


#: Largest relative time stretch of `stretch`; it also changes the heart rate by as much, so it stays small.
MAX_STRETCH = 0.05


def stretch(x: torch.Tensor, fs: float, gen: torch.Generator) -> torch.Tensor:
    """Stretch or compress time by up to +-MAX_STRETCH (linear interpolation), then crop or edge-pad to length."""
    n, _, length = x.shape
    factors = _uniform(n, 1 - MAX_STRETCH, 1 + MAX_STRETCH, gen, torch.device("cpu"))
    chosen = _chosen(n, gen, torch.device("cpu")).view(n)
    out = x.clone()
    for i in torch.nonzero(chosen).view(-1).tolist():
        new_len = max(2, int(round(length * float(factors[i]))))
        y = F.interpolate(x[i : i + 1], size=new_len, mode="linear", align_corners=False)
        if new_len >= length:
            start = (new_len - length) // 2
            out[i] = y[0, :, start : start + length]
        else:
            pad = length - new_len
            out[i] = F.pad(y, (pad // 2, pad - pad // 2), mode="replicate")[0]
    return out


#: `bandlimit`: high-pass corner (Hz) and low-pass corner (Hz) ranges, drawn per record (log-uniform), and the
#: Butterworth order; the low-pass corner is kept below 0.45 x the sampling rate
HIGHPASS_HZ = (0.05, 1.0)
LOWPASS_HZ = (25.0, 100.0)
BAND_ORDER = 2


def bandlimit(x: torch.Tensor, fs: float, gen: torch.Generator) -> torch.Tensor:
    """Another device's front end: a zero-phase Butterworth band-pass (scipy butter + sosfiltfilt) with a high-pass
    corner in HIGHPASS_HZ and a low-pass corner in LOWPASS_HZ (log-uniform per record), then the record's
    original mean and range restored, so only the spectrum changes."""
    import numpy as np
    from scipy.signal import butter, sosfiltfilt

    n = x.shape[0]
    hp = torch.exp(_uniform(n, float(np.log(HIGHPASS_HZ[0])), float(np.log(HIGHPASS_HZ[1])), gen, torch.device("cpu")))
    lp = torch.exp(_uniform(n, float(np.log(LOWPASS_HZ[0])), float(np.log(LOWPASS_HZ[1])), gen, torch.device("cpu")))
    chosen = _chosen(n, gen, torch.device("cpu")).view(n)
    out = x.clone()
    nyq_cap = 0.45 * fs
    for i in torch.nonzero(chosen).view(-1).tolist():
        lo, hi = float(hp[i]), min(float(lp[i]), nyq_cap)
        if hi <= lo * 2:
            continue
        sos = butter(BAND_ORDER, [lo, hi], btype="bandpass", fs=fs, output="sos")
        rec = x[i].detach().cpu().double().numpy()
        if rec.shape[-1] <= 3 * (2 * len(sos) + 1):  # too short for filtfilt's padding
            continue
        y = sosfiltfilt(sos, rec, axis=-1)
        ptp_in, ptp_out = float(np.ptp(rec)), float(np.ptp(y))
        y = (y - y.mean()) * (ptp_in / ptp_out if ptp_out > 1e-9 else 1.0) + rec.mean()
        out[i] = torch.from_numpy(y).to(x.dtype).to(x.device)
    return out


#: `mains`: hum frequencies (Hz) and amplitude range (fraction of the record's peak-to-peak)
MAINS_HZ = (50.0, 60.0)
MAINS_AMPLITUDE = (0.01, 0.15)


def mains(x: torch.Tensor, fs: float, gen: torch.Generator) -> torch.Tensor:
    """Add power-line hum: a 50 or 60 Hz sinusoid (random phase) at MAINS_AMPLITUDE of the record's range
    (skipped where the frequency is at or above Nyquist)."""
    n, _, length = x.shape
    freq = torch.tensor(MAINS_HZ)[torch.randint(len(MAINS_HZ), (n,), generator=gen)].to(x.device, x.dtype).view(n, 1, 1)
    phase = _uniform(n, 0.0, 6.2832, gen, x.device).view(n, 1, 1)
    amp = _uniform(n, *MAINS_AMPLITUDE, gen, x.device).view(n, 1, 1) * _peak_to_peak(x)
    t = torch.arange(length, device=x.device, dtype=x.dtype).view(1, 1, length) / fs
    hum = amp * torch.sin(2 * torch.pi * freq * t + phase) * (freq < fs / 2)
    return torch.where(_chosen(n, gen, x.device), x + hum, x)


#: `steps`: electrode-motion-like baseline jumps per record, their size (fraction of the range, either sign)
#: and their recovery time constant (s; an AC-coupled amplifier pulls the baseline back)
STEPS_PER_RECORD = (1, 3)
STEP_AMPLITUDE = (0.1, 0.5)
STEP_TAU_S = (0.2, 1.5)


def steps(x: torch.Tensor, fs: float, gen: torch.Generator) -> torch.Tensor:
    """Electrode motion: 1-3 baseline jumps at random times, each of STEP_AMPLITUDE of the range (random sign),
    decaying exponentially with a time constant in STEP_TAU_S."""
    n, _, length = x.shape
    t = torch.arange(length, device=x.device, dtype=x.dtype).view(1, length)
    chosen = _chosen(n, gen, x.device)
    count = torch.randint(STEPS_PER_RECORD[0], STEPS_PER_RECORD[1] + 1, (n,), generator=gen)
    drift = torch.zeros(n, length, device=x.device, dtype=x.dtype)
    for k in range(STEPS_PER_RECORD[1]):
        at = (torch.rand(n, generator=gen) * length).to(x.device, x.dtype).view(n, 1)
        amp = _uniform(n, *STEP_AMPLITUDE, gen, x.device).view(n, 1)
        sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).to(x.device, x.dtype).view(n, 1)
        tau = _uniform(n, *STEP_TAU_S, gen, x.device).view(n, 1) * fs
        active = (count > k).to(x.device, x.dtype).view(n, 1)
        dt = t - at
        drift = drift + active * sign * amp * torch.where(dt >= 0, torch.exp(-dt.clamp_min(0) / tau), torch.zeros_like(dt))
    drift = drift.view(n, 1, length) * _peak_to_peak(x)
    return torch.where(chosen, x + drift, x)


AUGMENTATIONS: dict[str, Augmentation] = {
    "amplitude": amplitude,
    "baseline": baseline,
    "noise": noise,
    "shift": shift,
    "invert": invert,
    "stretch": stretch,
    "bandlimit": bandlimit,
    "mains": mains,
    "steps": steps,
}

#: Named sets: `default` keeps the heart rate and polarity; `device` adds polarity and time-warp; `device-shift`
#: is the whole device-shift set (issue 9): `device` plus another front end's band limits, mains hum and
#: electrode-motion steps.
PRESETS: dict[str, tuple[str, ...]] = {
    "default": ("amplitude", "baseline", "noise", "shift"),
    "device": ("amplitude", "baseline", "noise", "shift", "invert", "stretch"),
    "device-shift": ("amplitude", "baseline", "noise", "shift", "invert", "stretch", "bandlimit", "mains", "steps"),
    "none": (),
}


def parse_augment(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """Names from `--augment` ("default", "noise,shift", a list, or None), presets expanded, in a fixed order."""
    if spec is None:
        return ()
    items = spec.split(",") if isinstance(spec, str) else [p for s in spec for p in str(s).split(",")]
    names: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item in PRESETS:
            names.extend(PRESETS[item])
        elif item in AUGMENTATIONS:
            names.append(item)
        else:
            choices = ", ".join([*PRESETS, *AUGMENTATIONS])
            raise BadInput(f"--augment: unknown augmentation {item!r} (choose from {choices})")
    return tuple(n for n in AUGMENTATIONS if n in names)


def build_augment(names: Sequence[str], sampling_rate: float) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None:
    """One function applying the named augmentations in turn, or None when there are none."""
    names = parse_augment(list(names))
    if not names:
        return None
    fns = [AUGMENTATIONS[n] for n in names]

    def apply(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        for fn in fns:
            x = fn(x, sampling_rate, gen)
        return x

    return apply
