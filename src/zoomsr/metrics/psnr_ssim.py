"""PSNR and SSIM on RGB images in [0, 1], with a border crop (4 px by default, as the paper).

Both follow BasicSR's ``calculate_psnr``/``calculate_ssim`` on RGB (``test_y_channel=False``):
PSNR over all channels with peak 1 (= peak 255 on 8-bit data); SSIM with an 11x11 Gaussian window
(sigma 1.5), ``valid`` filtering, K1 = 0.01, K2 = 0.03, averaged over the map and the channels.
Computed in float64.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from zoomsr.metrics.base import check_border, check_pair

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def _crop(x: torch.Tensor, border: int) -> torch.Tensor:
    return x[..., border: x.shape[-2] - border, border: x.shape[-1] - border] if border else x


def psnr(
    pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, border: int = 4
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, per image.

    Args:
        pred, target: ``[B, 3, H, W]`` RGB in [0, 1] (or uint8).
        border: pixels cropped from every side before scoring.

    Returns:
        ``[B]`` float64 (``inf`` where the cropped images are identical).
    """
    p, t = check_pair(pred, target, dtype=torch.float64)
    check_border(border, p.shape[-2], p.shape[-1])
    diff = _crop(p, border) - _crop(t, border)
    mse = diff.square().mean(dim=(1, 2, 3)).cpu()
    return 10.0 * torch.log10(1.0 / mse)


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(
    pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, border: int = 4
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004), per image, mean over channels.

    Args:
        pred, target: ``[B, 3, H, W]`` RGB in [0, 1] (or uint8); at least 11x11 after the crop.
        border: pixels cropped from every side before scoring.

    Returns:
        ``[B]`` float64 in [-1, 1] (1 for identical images).
    """
    p, t = check_pair(pred, target, dtype=torch.float64)
    check_border(border, p.shape[-2], p.shape[-1], minimum=SSIM_WINDOW)
    x, y = _crop(p, border), _crop(t, border)
    c1, c2 = 0.01**2, 0.03**2
    win = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA).to(x.device)
    win = win.expand(3, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()

    def filt(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, win, groups=3)

    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x**2
    syy = filt(y * y) - mu_y**2
    sxy = filt(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    )
    return ssim_map.mean(dim=(1, 2, 3)).cpu()


class PSNR:
    """PSNR in dB (higher is better); see :func:`psnr`."""

    name = "psnr"
    higher_is_better = True

    def __init__(self, border: int = 4) -> None:
        self.border = border

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` pair -> ``[B]`` dB."""
        return psnr(pred, target, border=self.border)


class SSIM:
    """SSIM (higher is better); see :func:`ssim`."""

    name = "ssim"
    higher_is_better = True

    def __init__(self, border: int = 4) -> None:
        self.border = border

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` pair -> ``[B]``."""
        return ssim(pred, target, border=self.border)
