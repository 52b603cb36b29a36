"""ECG augmentations: shapes, seeding, and that each does what its name says on the records it picks."""

from __future__ import annotations

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


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
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
    assert parse_augment(["device"]) == tuple(AUGMENTATIONS)
    assert parse_augment(None) == () and build_augment([], FS) is None
    with pytest.raises(BadInput, match="unknown augmentation 'jitter'"):
        parse_augment("noise,jitter")
    apply = build_augment(["invert", "amplitude"], FS)
    x = _batch()
    assert torch.equal(apply(x, torch.Generator().manual_seed(1)), apply(x, torch.Generator().manual_seed(1)))
