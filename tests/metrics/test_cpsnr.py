"""cPSNR: known shifts and brightness biases; the reference mode's even-shift behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoomsr.errors import InputError
from zoomsr.metrics import CPSNR, cpsnr, psnr


def _target(seed: int = 0, size: int = 48) -> torch.Tensor:
    """8-bit-valued smooth-ish target in [0.2, 0.75] (room for a bias)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, size, size, generator=g)
    x = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1).double()
    return torch.round((0.2 + 0.55 * x) * 255) / 255


def _shifted(target: torch.Tensor, dy: int, dx: int, bias=(0.0, 0.0, 0.0)) -> torch.Tensor:
    """pred[i, j] = target[i + dy, j + dx] + bias[c] (wrap-around only outside the crop)."""
    pred = torch.roll(target, shifts=(-dy, -dx), dims=(2, 3))
    return pred + torch.tensor(bias, dtype=torch.float64).view(1, 3, 1, 1)


@pytest.mark.parametrize(("dy", "dx"), [(0, 0), (2, -3), (-4, 1), (1, 1), (3, 4)])
def test_challenge_mode_finds_the_shift_and_the_bias(dy, dx):
    target = _target()
    pred = _shifted(target, dy, dx, bias=(10 / 255, -20 / 255, 5 / 255))
    score, shift = cpsnr(pred, target, border=4, return_shift=True)
    assert shift.tolist() == [[dy, dx]]
    assert math.isinf(float(score))  # a perfect match once the bias is removed (was ~330 dB)
    if (dy, dx) != (0, 0):
        assert float(psnr(pred, target)) < 30


def test_challenge_mode_with_noise_is_finite_and_high():
    target = _target(1)
    g = torch.Generator().manual_seed(2)
    pred = _shifted(target, -2, 3, bias=(0.05, 0.0, -0.05))
    pred = pred + 0.005 * torch.randn(pred.shape, generator=g)
    score, shift = cpsnr(pred, target, border=4, return_shift=True)
    assert shift.tolist() == [[-2, 3]]
    # residual is the noise alone: ~ -10 log10(0.005^2) = 46 dB
    assert 44 < float(score) < 48


def test_border_zero_is_psnr_after_bias_removal():
    g = torch.Generator().manual_seed(4)
    t = torch.rand(2, 3, 16, 16, generator=g) * 0.5
    p = (t + 0.2 * torch.rand(2, 3, 16, 16, generator=g)).clamp(0, 1)
    d = (p - t).double()
    d = d - d.mean(dim=(2, 3), keepdim=True)
    expected = -10 * torch.log10(d.square().mean(dim=(1, 2, 3)))
    torch.testing.assert_close(cpsnr(p, t, border=0), expected)


def _published_cpsnr(sr: np.ndarray, gt: np.ndarray, crop_border: int) -> float:
    """The published cPSNR's behaviour, spelled out on 8-bit HWC arrays: crop both images by
    ``crop_border``; for r, c in 0..8 compare sr[r:, c:] with gt[8 - r:, 8 - c:] (both cut to
    size - 8), shift gt by the mean per-channel difference, keep the lowest MSE; peak 255."""
    a = sr.astype(np.float64)[crop_border:-crop_border, crop_border:-crop_border]
    b = gt.astype(np.float64)[crop_border:-crop_border, crop_border:-crop_border]
    h, w = a.shape[0] - 8, a.shape[1] - 8
    best = math.inf
    for r in range(9):
        for c in range(9):
            x = a[r: r + h, c: c + w]
            y = b[8 - r: 8 - r + h, 8 - c: 8 - c + w].copy()
            y += (x - y).mean(axis=(0, 1))
            best = min(best, float(np.mean((x - y) ** 2)))
    return math.inf if best == 0 else 10 * math.log10(255.0**2 / best)


def _u8(x: torch.Tensor) -> np.ndarray:
    return torch.round(x[0] * 255).byte().permute(1, 2, 0).numpy()


@pytest.mark.parametrize(("dy", "dx", "seed"), [(1, 1, 0), (1, 0, 1), (3, -1, 2), (2, 0, 3),
                                                (0, 0, 4), (-2, 4, 5)])
def test_reference_mode_reproduces_the_published_behaviour(dy, dx, seed):
    target = _target(seed)
    g = torch.Generator().manual_seed(seed)
    pred = _shifted(target, dy, dx, bias=(0.02, 0.0, -0.03))
    pred = (pred + 0.01 * torch.randn(pred.shape, generator=g)).clamp(0, 1)
    ours = float(cpsnr(pred, target, border=4, mode="reference"))
    assert ours == pytest.approx(_published_cpsnr(_u8(pred), _u8(target), 4), abs=1e-9)


@pytest.mark.parametrize(("dy", "dx"), [(1, 1), (1, 0), (-3, 2)])
def test_odd_shift_found_by_challenge_but_not_by_reference(dy, dx):
    target = _target(7)
    pred = _shifted(target, dy, dx, bias=(4 / 255, 0.0, -4 / 255))
    challenge = float(cpsnr(pred, target, border=4))
    reference, ref_shift = cpsnr(pred, target, border=4, mode="reference", return_shift=True)
    assert challenge > 100
    assert float(reference) < 40  # only even relative shifts are tried
    assert (ref_shift % 2 == 0).all()


def test_even_shift_found_by_both_modes():
    target = _target(8)
    pred = _shifted(target, 2, -4, bias=(3 / 255, 3 / 255, 3 / 255))
    score, shift = cpsnr(pred, target, border=4, mode="reference", return_shift=True)
    assert shift.tolist() == [[2, -4]]
    assert float(score) > 100
    assert float(cpsnr(pred, target, border=4)) > 100


def test_reference_mode_reaches_beyond_the_border():
    # the published version always searches +-8 px, even with a 4 px border
    target = _target(9)
    pred = _shifted(target, 6, 0)
    score, shift = cpsnr(pred, target, border=4, mode="reference", return_shift=True)
    assert shift.tolist() == [[6, 0]]
    assert float(score) > 100
    assert float(cpsnr(pred, target, border=4)) < 40


def test_bad_arguments():
    x = torch.rand(1, 3, 20, 20)
    with pytest.raises(InputError, match="mode"):
        cpsnr(x, x, mode="proba")
    with pytest.raises(InputError, match="mode"):
        CPSNR(mode="proba")
    with pytest.raises(InputError, match="reference cPSNR"):
        cpsnr(x, x, border=6, mode="reference")
    assert CPSNR().higher_is_better


def test_a_region_too_small_to_measure_is_refused():
    """A 1 px region always matches once the bias is removed: unrelated 9 x 9 images were inf."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(1, 3, 9, 9, generator=g), torch.rand(1, 3, 9, 9, generator=g)
    with pytest.raises(InputError,
                       match=r"border 4 leaves less than the 8 px cPSNR needs of a 9x9 image"):
        cpsnr(a, b)
    with pytest.raises(InputError, match=r"at least 2\*border \+ 8 \+ 8 px, got 17x17"):
        cpsnr(torch.rand(1, 3, 17, 17), torch.rand(1, 3, 17, 17), mode="reference")
    a, b = torch.rand(1, 3, 16, 16, generator=g), torch.rand(1, 3, 16, 16, generator=g)
    assert float(cpsnr(a, b)) < 20  # the smallest size taken: unrelated images score low
    assert float(cpsnr(a, b, border=0)) < 20


@pytest.mark.parametrize("mode", ["challenge", "reference"])
def test_equally_good_shifts_report_the_shortest(mode):
    """A flat image (water, a field) matches at every shift: it was reported shifted by
    (-border, -border) (challenge) or (8, 8) (reference), as if misregistered."""
    flat = torch.full((1, 3, 40, 40), 0.375, dtype=torch.float64)  # exact in binary
    score, shift = cpsnr(flat, flat + 0.125, mode=mode, return_shift=True)
    assert math.isinf(float(score[0])) and shift.tolist() == [[0, 0]]
    # constant down the columns: any vertical shift fits, the horizontal one is found
    cols = _target(3, 40)[:, :, :1, :].expand(1, 3, 40, 40)
    _, shift = cpsnr(_shifted(cols, 0, 2), cols, return_shift=True)
    assert shift.tolist() == [[0, 2]]


def test_a_tiny_real_difference_is_not_a_perfect_match():
    # the smallest difference float32 data can hold is far above the round-off taken for 0
    target = _target(3).float()
    pred = target.clone()
    pred[0, 1, 20, 20] = torch.nextafter(pred[0, 1, 20, 20], torch.tensor(1.0))
    score = float(cpsnr(pred, target, border=4))
    assert math.isfinite(score) and score > 150
