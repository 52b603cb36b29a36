"""ECG augmentations: shapes, seeding, and that each does what its name says on the records it picks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecgtool.train.augment import AUGMENTATIONS, MAX_SHIFT_S, MAX_STRETCH, NOISE_SNR_DB, build_augment, parse_augment
from ecgtool.core.errors import BadInput

FS = 100.0


def _batch(n: int = 64, length: int = 300) -> torch.Tensor:
    t = torch.arange(length) / FS
    phase = torch.linspace(0, 3, n).view(n, 1, 1)
    x = torch.sin(2 * torch.pi * 1.3 * t.view(1, 1, -1) + phase) + 0.2 * torch.sin(2 * torch.pi * 7 * t + 2 * phase)
    return (x - x.amin(dim=2, keepdim=True)) / (x.amax(dim=2, keepdim=True) - x.amin(dim=2, keepdim=True))


def _changed(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ~torch.isclose(x, y, atol=1e-6).all(dim=2).view(-1)


@pytest.mark.parametrize("name", [n for n in AUGMENTATIONS if n != "mains"])  # 50/60 Hz hum needs fs > 120 Hz
def test_each_augmentation_is_seeded_and_changes_about_half(name):
    x = _batch()
    a = AUGMENTATIONS[name](x, FS, torch.Generator().manual_seed(7))
    b = AUGMENTATIONS[name](x, FS, torch.Generator().manual_seed(7))
    c = AUGMENTATIONS[name](x, FS, torch.Generator().manual_seed(8))
    assert a.shape == x.shape and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 10 < int(_changed(x, a).sum()) < 54


def test_amplitude_scales_within_range():
    x = _batch()
    y = AUGMENTATIONS["amplitude"](x, FS, torch.Generator().manual_seed(0))
    ratio = (y.std(dim=2) / x.std(dim=2)).view(-1)
    assert (ratio > 0.69).all() and (ratio < 1.41).all() and (ratio - 1).abs().max() > 0.05


def test_invert_flips_polarity_and_keeps_range():
    x = _batch()
    y = AUGMENTATIONS["invert"](x, FS, torch.Generator().manual_seed(0))
    hit = _changed(x, y)
    assert torch.allclose(y[hit], 1 - x[hit], atol=1e-6)
    assert torch.allclose(y.amin(dim=2), x.amin(dim=2)) and torch.allclose(y.amax(dim=2), x.amax(dim=2))


def test_noise_levels_are_the_listed_snrs():
    x = _batch(n=200, length=4000)
    y = AUGMENTATIONS["noise"](x, FS, torch.Generator().manual_seed(0))
    hit = _changed(x, y)
    snr = 20 * torch.log10(x[hit].std(dim=(1, 2)) / (y[hit] - x[hit]).std(dim=(1, 2)))
    nearest = torch.stack([(snr - s).abs() for s in NOISE_SNR_DB]).amin(dim=0)
    assert (nearest < 0.5).all()
    assert len({min(NOISE_SNR_DB, key=lambda s: abs(s - v)) for v in snr.tolist()}) == len(NOISE_SNR_DB)


def test_shift_is_a_roll_within_the_limit():
    x = _batch()
    y = AUGMENTATIONS["shift"](x, FS, torch.Generator().manual_seed(0))
    limit = int(MAX_SHIFT_S * FS)
    for i in range(len(x)):
        assert any(torch.equal(y[i], torch.roll(x[i], s, dims=-1)) for s in range(-limit, limit + 1)), i


def test_stretch_changes_the_period_a_little():
    x = _batch(n=64, length=1000)
    y = AUGMENTATIONS["stretch"](x, FS, torch.Generator().manual_seed(0))
    hit = _changed(x, y)
    assert torch.equal(y[~hit], x[~hit])

    def period(sig: torch.Tensor) -> float:
        spec = torch.fft.rfft(sig - sig.mean()).abs()
        return float(torch.argmax(spec[1:]) + 1)

    ratios = [period(y[i, 0]) / period(x[i, 0]) for i in torch.nonzero(hit).view(-1).tolist()]
    assert all(abs(r - 1) <= MAX_STRETCH + 0.03 for r in ratios)


def test_baseline_adds_slow_wander_only():
    x = _batch(length=1000)
    y = AUGMENTATIONS["baseline"](x, FS, torch.Generator().manual_seed(0))
    hit = _changed(x, y)
    diff = (y - x)[hit]
    power = torch.fft.rfft(diff * torch.hann_window(1000), dim=-1).abs() ** 2
    freq = torch.fft.rfftfreq(1000, 1 / FS)
    assert (power[..., freq > 1.0].sum(-1) < 0.01 * power.sum(-1)).all()


def test_parse_and_build():
    assert parse_augment("default") == ("amplitude", "baseline", "noise", "shift")
    assert parse_augment("stretch, noise") == ("noise", "stretch")
    assert parse_augment(["device"]) == ("amplitude", "baseline", "noise", "shift", "invert", "stretch")
    assert parse_augment("device-shift") == tuple(AUGMENTATIONS)
    assert parse_augment(None) == () and build_augment([], FS) is None
    with pytest.raises(BadInput, match="unknown augmentation 'jitter'"):
        parse_augment("noise,jitter")
    apply = build_augment(["invert", "amplitude"], FS)
    x = _batch()
    assert torch.equal(apply(x, torch.Generator().manual_seed(1)), apply(x, torch.Generator().manual_seed(1)))


# --- device shift (issue 9): band limits, mains hum, electrode-motion steps -----------------------------

FS_DEV = 500.0


def _noisy(n: int = 64, length: int = 2500) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    t = torch.arange(length) / FS_DEV
    x = torch.sin(2 * torch.pi * 1.2 * t).view(1, 1, -1) + 0.3 * torch.randn(n, 1, length, generator=g)
    return (x - x.amin(dim=2, keepdim=True)) / (x.amax(dim=2, keepdim=True) - x.amin(dim=2, keepdim=True))


def test_device_shift_preset_adds_the_three():
    names = parse_augment("device-shift")
    assert set(parse_augment("device")) < set(names) and {"bandlimit", "mains", "steps"} <= set(names)


def test_bandlimit_removes_high_frequencies_and_keeps_the_range():
    from ecgtool.train.augment import LOWPASS_HZ

    x = _noisy()
    y = AUGMENTATIONS["bandlimit"](x, FS_DEV, torch.Generator().manual_seed(0))
    changed = _changed(x, y)
    assert 10 < int(changed.sum()) < 54
    f = torch.fft.rfftfreq(x.shape[-1], 1 / FS_DEV)
    hi = f > LOWPASS_HZ[1] * 1.5  # above the highest low-pass corner: every filtered record loses power there
    px, py = torch.fft.rfft(x[changed, 0]).abs() ** 2, torch.fft.rfft(y[changed, 0]).abs() ** 2
    assert (py[:, hi].sum(1) < 0.5 * px[:, hi].sum(1)).all()
    np.testing.assert_allclose((y.amax(2) - y.amin(2)).numpy(), (x.amax(2) - x.amin(2)).numpy(), rtol=1e-4)


def test_mains_adds_50_or_60_hz_and_nothing_at_a_low_rate():
    from ecgtool.train.augment import MAINS_AMPLITUDE

    x = _noisy()
    y = AUGMENTATIONS["mains"](x, FS_DEV, torch.Generator().manual_seed(0))
    changed = _changed(x, y)
    assert 10 < int(changed.sum()) < 54
    d = (y - x)[changed, 0]
    f = torch.fft.rfftfreq(x.shape[-1], 1 / FS_DEV)
    peaks = f[torch.fft.rfft(d).abs().argmax(1)]
    assert set(peaks.round().tolist()) <= {50.0, 60.0} and len(set(peaks.round().tolist())) == 2
    amp = d.abs().amax(1)
    assert (amp <= MAINS_AMPLITUDE[1] * 1.01).all() and (amp >= MAINS_AMPLITUDE[0] * 0.9).all()
    low = torch.rand(4, 1, 300)
    assert torch.equal(AUGMENTATIONS["mains"](low, 100.0, torch.Generator().manual_seed(0)), low)


def test_steps_are_jumps_that_decay():
    from ecgtool.train.augment import STEP_AMPLITUDE

    x = _noisy()
    y = AUGMENTATIONS["steps"](x, FS_DEV, torch.Generator().manual_seed(0))
    changed = _changed(x, y)
    assert 10 < int(changed.sum()) < 54
    d = (y - x)[changed, 0]
    jump = d.diff(dim=1).abs().amax(1)  # the onset: one sample carries the step
    assert (jump >= STEP_AMPLITUDE[0] * 0.99).all()
    assert (d[:, -1].abs() < d.abs().amax(1)).all()  # it recovers (decays) towards the end
