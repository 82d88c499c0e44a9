"""PSNR and SSIM against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoomsr.errors import InputError
from zoomsr.metrics import PSNR, SSIM, cpsnr, psnr, ssim
from zoomsr.metrics.psnr_ssim import ssim_direct


def test_psnr_constant_error_is_20db():
    target = torch.zeros(1, 3, 16, 16)
    pred = torch.full((1, 3, 16, 16), 0.1, dtype=torch.float64)  # MSE 0.01 -> 20 dB
    assert float(psnr(pred, target)) == pytest.approx(20.0, abs=1e-9)


def test_psnr_border_is_ignored_and_counted_without_crop():
    target = torch.zeros(1, 3, 16, 16)
    pred = torch.full((1, 3, 16, 16), 0.1, dtype=torch.float64)
    pred[..., :4, :] = 1.0  # errors only in the top 4 rows
    assert float(psnr(pred, target, border=4)) == pytest.approx(20.0, abs=1e-9)
    # no crop: 4*16 pixels with error 1 and 12*16 with error 0.1, per channel
    mse = (64 * 1.0 + 192 * 0.01) / 256
    assert float(psnr(pred, target, border=0)) == pytest.approx(-10 * math.log10(mse), abs=1e-9)


def test_psnr_uint8_uses_peak_255_and_is_per_image():
    target = torch.zeros(2, 3, 12, 12, dtype=torch.uint8)
    pred = target.clone()
    pred[0] = 10
    pred[1] = 51
    out = psnr(pred, target, border=2)
    expected = [20 * math.log10(255 / 10), 20 * math.log10(255 / 51)]
    assert out.tolist() == pytest.approx(expected, abs=1e-9)


def test_psnr_identical_is_inf():
    x = torch.rand(2, 3, 16, 16)
    assert torch.isinf(PSNR()(x, x)).all()


def test_ssim_identical_is_one_and_symmetric():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 24, 24, generator=g), torch.rand(2, 3, 24, 24, generator=g)
    assert ssim(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-12)
    torch.testing.assert_close(SSIM()(x, y), SSIM()(y, x))


def test_ssim_constant_images_hand_computed():
    # zero variance: SSIM = (2ab + C1) / (a^2 + b^2 + C1) * (C2 / C2)
    a, b = 0.2, 0.6
    c1 = 0.01**2
    out = ssim(torch.full((1, 3, 20, 20), a, dtype=torch.float64),
               torch.full((1, 3, 20, 20), b, dtype=torch.float64), border=0)
    assert float(out) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-12)


def _ssim_by_definition(x: np.ndarray, y: np.ndarray) -> float:
    """Gaussian-weighted SSIM over every 11x11 window, mean over windows and channels."""
    r = np.arange(11) - 5.0
    g = np.exp(-(r**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for c in range(x.shape[0]):
        for i in range(x.shape[1] - 10):
            for j in range(x.shape[2] - 10):
                px, py = x[c, i: i + 11, j: j + 11], y[c, i: i + 11, j: j + 11]
                mx, my = (w * px).sum(), (w * py).sum()
                vx = (w * px * px).sum() - mx * mx
                vy = (w * py * py).sum() - my * my
                cxy = (w * px * py).sum() - mx * my
                values.append(((2 * mx * my + c1) * (2 * cxy + c2))
                              / ((mx * mx + my * my + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_matches_the_definition_window_by_window():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 3, 22, 22, generator=g)
    y = (x + 0.2 * torch.rand(1, 3, 22, 22, generator=g)).clamp(0, 1)
    expected = _ssim_by_definition(x[0, :, 4:-4, 4:-4].double().numpy(),
                                   y[0, :, 4:-4, 4:-4].double().numpy())
    assert float(ssim(x, y, border=4)) == pytest.approx(expected, abs=1e-10)
    assert expected < 0.99  # the test images really differ


def test_border_must_leave_room():
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError, match="border"):
        ssim(x, x, border=4)  # 8 px left < 11 px window
    with pytest.raises(InputError, match="border"):
        psnr(x, x, border=8)
    with pytest.raises(InputError, match="border"):
        psnr(x, x, border=-1)


@pytest.mark.parametrize(
    ("shape", "border", "noise"),
    [((4, 3, 40, 40), 4, 0.1), ((2, 3, 27, 53), 0, 0.5), ((3, 3, 19, 33), 4, 0.02)],
)
def test_separable_ssim_equals_the_2d_window(shape, border, noise):
    g = torch.Generator().manual_seed(sum(shape) + border)
    x = torch.rand(*shape, generator=g)
    y = (x + noise * torch.randn(*shape, generator=g)).clamp(0, 1)
    expected = ssim_direct(x, y, border)
    out = ssim(x, y, border=border)
    assert out.dtype == torch.float64 and out.shape == (shape[0],)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    assert float(expected.max()) < 0.999  # the images really differ


def test_separable_ssim_equals_the_2d_window_on_uint8():
    g = torch.Generator().manual_seed(7)
    x = torch.randint(0, 256, (2, 3, 24, 24), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 256, (2, 3, 24, 24), generator=g, dtype=torch.uint8)
    expected = ssim_direct(x.double() / 255, y.double() / 255, 0)
    torch.testing.assert_close(ssim(x, y, border=0), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_a_float_copy_of_an_8_bit_target_is_a_perfect_match(dtype):
    """x / 255 was taken in float64 for the 8-bit side only: a float32 copy scored ~158 dB."""
    t = np.random.default_rng(0).integers(0, 256, (2, 3, 24, 24), dtype=np.uint8)
    copy = (t.astype(np.float32) / 255).astype(dtype)
    for pred, target in ((copy, t), (t, copy), (torch.from_numpy(copy), torch.from_numpy(t))):
        assert torch.isinf(psnr(pred, target)).all() and (ssim(pred, target) == 1).all()
        assert torch.isinf(cpsnr(pred, target)).all()
    darker = copy * np.asarray(0.9, dtype)
    assert float(psnr(darker, t)[0]) == pytest.approx(float(psnr(darker.astype(np.float64),
                                                                 t)[0]), abs=0.01)


def test_an_image_too_small_for_the_border_names_the_metric():
    small = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError, match=r"less than the 11 px SSIM needs of a 16x16 image"):
        ssim(small, small, border=4)
    with pytest.raises(InputError, match=r"less than the 1 px PSNR needs of a 8x8 image"):
        psnr(small[..., :8, :8], small[..., :8, :8], border=4)
