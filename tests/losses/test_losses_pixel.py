"""Pixel losses, the differentiable SSIM, the WorldStrat mix and USM sharpening."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoomsr.errors import InputError
from zoomsr.losses import (
    PixelLoss,
    l1_loss,
    mse_loss,
    ssim,
    ssim_loss,
    ssim_map,
    usm_sharp,
    worldstrat_loss,
)
from zoomsr.metrics import ssim as ssim_metric


def smooth(n: int, size: int = 48, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 6, size // 6, generator=g)
    return (0.1 + 0.8 * F.interpolate(low, size=(size, size), mode="bicubic")).clamp(0, 1)


def test_l1_and_mse_match_torch_and_honour_the_mask():
    pred, target = smooth(2, seed=1), smooth(2, seed=2)
    assert torch.allclose(l1_loss(pred, target), F.l1_loss(pred, target))
    assert torch.allclose(mse_loss(pred, target), F.mse_loss(pred, target))
    # Pixels outside the mask neither count nor dilute: corrupt them, the loss is unchanged.
    mask = torch.zeros(2, 1, 48, 48)
    mask[..., :24, :] = 1
    corrupted = pred.clone()
    corrupted[..., 24:, :] = 5.0
    expected = F.l1_loss(pred[..., :24, :], target[..., :24, :])
    assert torch.allclose(l1_loss(corrupted, target, mask), expected, atol=1e-6)
    with pytest.raises(InputError, match="does not broadcast"):
        l1_loss(pred, target, torch.ones(3, 1, 48, 48))
    with pytest.raises(InputError, match="shapes differ"):
        mse_loss(pred, target[..., :40])


def test_differentiable_ssim_equals_the_metric():
    pred, target = smooth(3, seed=3), smooth(3, seed=4)
    ours = ssim(pred.double(), target.double())
    metric = ssim_metric(pred.double(), target.double(), border=0)
    assert torch.allclose(ours, metric, atol=1e-10)
    assert torch.allclose(ssim(pred, pred), torch.ones(3), atol=1e-5)


def test_ssim_loss_is_zero_for_identical_images_and_has_gradients():
    target = smooth(2, seed=5)
    assert ssim_loss(target, target).abs().item() < 1e-5
    pred = smooth(2, seed=6).requires_grad_()
    loss = ssim_loss(pred, target, window=5)
    loss.backward()
    assert loss.item() > 0.05
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    with pytest.raises(InputError, match="odd"):
        ssim_loss(pred, target, window=4)


def test_worldstrat_mix_and_pixel_loss_module():
    pred, target = smooth(2, seed=7), smooth(2, seed=8)
    expected = (
        0.3 * F.mse_loss(pred, target)
        + 0.4 * F.l1_loss(pred, target)
        + 0.3 * ssim_loss(pred, target)
    )
    assert torch.allclose(worldstrat_loss(pred, target), expected)
    assert torch.allclose(PixelLoss("worldstrat")(pred, target), expected)
    assert torch.allclose(PixelLoss("mse")(pred, target), F.mse_loss(pred, target))
    with pytest.raises(InputError, match="unknown pixel loss 'l3'"):
        PixelLoss("l3")


def test_usm_sharp_raises_edge_contrast_and_keeps_flat_areas():
    img = torch.full((1, 3, 16, 160), 0.3)
    img[..., :, 80:] = 0.7  # a vertical edge; the blur's sigma is 8 px (51 taps)
    sharp = usm_sharp(img)
    assert sharp.shape == img.shape
    assert 0.0 <= sharp.min() and sharp.max() <= 1.0
    # Overshoot on both sides of the edge, untouched far from it.
    assert sharp[0, 0, 8, 78] < 0.3 - 0.01 and sharp[0, 0, 8, 81] > 0.7 + 0.01
    assert torch.allclose(sharp[..., :, :4], img[..., :, :4], atol=1e-3)
    flat = torch.full((1, 3, 16, 16), 0.5)
    assert torch.allclose(usm_sharp(flat), flat)


def _basicsr_usm(img: torch.Tensor, weight: float = 0.5, threshold: float = 10.0):
    """Real-ESRGAN's USMSharp (BasicSR), rewritten here: a 51 x 51 Gaussian (OpenCV's
    getGaussianKernel(51, 0): sigma 8) as a 2-D kernel, reflect padding of 25."""
    size, sigma = 51, 8.0
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).to(img.dtype)

    def filter2d(z):
        c = z.shape[1]
        z = F.pad(z, (25, 25, 25, 25), mode="reflect")
        return F.conv2d(z, kernel.expand(c, 1, size, size), groups=c)

    residual = img - filter2d(img)
    soft = filter2d((residual.abs() * 255 > threshold).to(img.dtype))
    sharp = (img + weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * img


def test_usm_sharp_is_real_esrgans():
    """The kernel had 2 * radius + 1 = 101 taps (sigma 15.5), not Real-ESRGAN's 51 (sigma 8):
    the sharpened targets differed by up to 14/255."""
    img = smooth(2, size=96, seed=3).double()
    img[..., 40:, :] = (img[..., 40:, :] + 0.3).clamp(0, 1)  # an edge
    assert torch.allclose(usm_sharp(img), _basicsr_usm(img), atol=1e-9)


def test_ssim_and_usm_are_computed_in_float32_under_autocast():
    """Under bf16 autocast the filtering ran in bf16: 1 - SSIM of near-equal images went
    negative, and the sharpened targets were off by half an 8-bit level."""
    hr = F.avg_pool2d(torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0)),
                      3, 1, 1)
    sr = (hr + 0.005 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(1))
          ).clamp(0, 1)
    exact = ssim_loss(sr.double(), hr.double(), window=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = ssim_loss(sr, hr, window=5)
        sharp = usm_sharp(hr)
    assert mixed >= 0 and abs(float(mixed) - float(exact)) < 1e-5
    assert sharp.dtype == hr.dtype and torch.allclose(sharp, usm_sharp(hr), atol=1e-6)


def test_weight_broadcasting_beyond_the_batch_is_refused_clearly():
    """A [2, 1, H, W] mask against a batch of 1 passed the check (it broadcasts, to a larger
    shape) and failed later in expand_as with torch's message."""
    pred, target = smooth(1, size=16, seed=9), smooth(1, size=16, seed=10)
    with pytest.raises(InputError, match=r"weight \[2, 1, 16, 16\] does not broadcast"):
        l1_loss(pred, target, torch.ones(2, 1, 16, 16))
    assert torch.allclose(l1_loss(pred, target, torch.ones(16, 16)), l1_loss(pred, target))


def test_masked_ssim_loss_ignores_pixels_outside_the_mask():
    """SSIM at a pixel mixes its whole window: corrupting masked-out pixels changed the masked
    SSIM (and WorldStrat) loss of their masked-in neighbours."""
    pred, target = smooth(2, seed=11), smooth(2, seed=12)
    mask = torch.zeros(2, 1, 48, 48)
    mask[..., :30, :] = 1
    corrupted = pred.clone()
    corrupted[..., 30:, :] = 1.0 - corrupted[..., 30:, :]
    for loss in (ssim_loss, worldstrat_loss):
        clean = loss(pred, target, mask, window=5)
        assert torch.allclose(loss(corrupted, target, mask, window=5), clean, atol=1e-6)
    # Reference: 1 - SSIM averaged over the rows whose 5-px window lies inside the mask.
    full = 1 - ssim_map(pred, target, window=5, padding="same")
    assert torch.allclose(ssim_loss(pred, target, mask, window=5), full[..., :28, :].mean(),
                          atol=1e-6)
    # An all-ones mask changes nothing.
    assert torch.allclose(ssim_loss(pred, target, torch.ones(2, 1, 48, 48)),
                          ssim_loss(pred, target), atol=1e-7)
