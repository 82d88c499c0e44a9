"""PSNR and SSIM on RGB images in [0, 1], with a border crop (4 px by default, as the paper).

Both follow BasicSR's ``calculate_psnr``/``calculate_ssim`` on RGB (``test_y_channel=False``):
PSNR over all channels with peak 1 (= peak 255 on 8-bit data); SSIM with an 11x11 Gaussian window
(sigma 1.5), ``valid`` filtering, K1 = 0.01, K2 = 0.03, averaged over the map and the channels.
Computed in float64 (the reference tests hold SSIM to 1e-10); the window is applied as two 1-D
passes (11x1 then 1x11), which equals the 2-D window up to float64 rounding.

With ``valid`` (a mask, True where a pixel is valid in both images, e.g. not nodata), PSNR is
the MSE over the valid pixels of the cropped area, and SSIM the mean of its map over the
positions whose whole 11x11 window is valid (the mask eroded by the window's half-size): the
pixels outside the mask, and the valid ones only windows reaching outside it see, change
nothing. NaN where nothing is left to score. An image whose mask is all True (in the cropped
area; for SSIM, every window) is scored as without a mask, to the bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from zoomsr.metrics.base import (
    check_border,
    check_border_value,
    check_pair,
    check_valid,
    partial_rows,
)

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def _crop(x: torch.Tensor, border: int) -> torch.Tensor:
    return x[..., border: x.shape[-2] - border, border: x.shape[-1] - border] if border else x


def psnr(
    pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, border: int = 4,
    *, valid: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, per image.

    Args:
        pred, target: ``[B, 3, H, W]`` RGB in [0, 1] (or uint8).
        border: pixels cropped from every side before scoring.
        valid: ``[B, H, W]`` (or ``[B, 1, H, W]``) bool, True where a pixel is valid in both
            images: the MSE is taken over those pixels of the cropped area only.

    Returns:
        ``[B]`` float64 (``inf`` where the cropped images are identical; NaN where no valid
        pixel is left after the crop).
    """
    p, t = check_pair(pred, target, dtype=torch.float64)
    check_border(border, p.shape[-2], p.shape[-1], metric="PSNR")
    v = check_valid(valid, p.shape, device=p.device)
    diff = _crop(p, border) - _crop(t, border)
    mse = diff.square().mean(dim=(1, 2, 3)).cpu()
    partial = partial_rows(None if v is None else _crop(v, border))
    if partial is not None:
        # over the valid pixels: a masked pixel's difference counts 0 and is not counted
        m = _crop(cast(torch.Tensor, v), border)[partial].to(diff.device, torch.float64)
        n = m.sum(dim=(1, 2, 3)) * diff.shape[1]
        mse[partial] = ((diff[partial].square() * m).sum(dim=(1, 2, 3)) / n).cpu()
    return 10.0 * torch.log10(1.0 / mse)


def _gaussian_1d(size: int, sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian taps, float64; their outer product is the 2-D SSIM window."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """The 2-D ``size`` x ``size`` Gaussian window (outer product of :func:`_gaussian_1d`)."""
    g = _gaussian_1d(size, sigma)
    return torch.outer(g, g)


def _filter_valid(z: torch.Tensor, taps: list[float]) -> torch.Tensor:
    """Separable Gaussian filter with ``valid`` output over the last two dims of ``z``.

    Equals a 2-D conv with the window ``outer(taps, taps)`` (within float64 rounding, ~1e-16)
    but does 2 x 11 multiply-adds per pixel instead of 121, as sums of shifted views: no
    im2col buffer (the 2-D float64 conv's 121x im2col copies caused most of its time,
    largely as page-fault system time).
    """
    k = len(taps)
    h, w = z.shape[-2] - k + 1, z.shape[-1] - k + 1
    rows = z[..., 0:h, :] * taps[0]
    for i in range(1, k):
        rows.add_(z[..., i: i + h, :], alpha=taps[i])
    out = rows[..., 0:w] * taps[0]
    for j in range(1, k):
        out.add_(rows[..., j: j + w], alpha=taps[j])
    return out


def _moments_separable(z: torch.Tensor) -> torch.Tensor:
    return _filter_valid(z, _gaussian_1d(SSIM_WINDOW, SSIM_SIGMA).tolist())


def _moments_2d(z: torch.Tensor) -> torch.Tensor:
    c = z.shape[1]
    win = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA).expand(c, 1, SSIM_WINDOW, SSIM_WINDOW)
    return torch.nn.functional.conv2d(z, win.contiguous(), groups=c)


def window_valid(valid: torch.Tensor, size: int = SSIM_WINDOW) -> torch.Tensor:
    """Bool ``[B, 1, H - size + 1, W - size + 1]``: where the ``size`` x ``size`` window of a
    ``valid``-filtered map lies wholly on True pixels of ``valid`` (``[B, 1, H, W]``): the
    mask eroded by the window's half-size, on the map's grid."""
    invalid = (~valid).to(torch.float32)
    return F.max_pool2d(invalid, size, stride=1) == 0


def _ssim(pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, border: int,
          moments: Callable[[torch.Tensor], torch.Tensor],
          valid: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    p, t = check_pair(pred, target, dtype=torch.float64)
    check_border(border, p.shape[-2], p.shape[-1], minimum=SSIM_WINDOW, metric="SSIM")
    v = check_valid(valid, p.shape, device=p.device)
    x, y = _crop(p, border), _crop(t, border)
    c1, c2 = 0.01**2, 0.03**2
    # One filter pass over the five maps stacked on the channel dim.
    mu_x, mu_y, exx, eyy, exy = moments(torch.cat([x, y, x * x, y * y, x * y], dim=1)).chunk(
        5, dim=1)
    sxx = exx - mu_x**2
    syy = eyy - mu_y**2
    sxy = exy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    )
    scores = ssim_map.mean(dim=(1, 2, 3)).cpu()
    whole = None if v is None else window_valid(_crop(v, border))
    partial = partial_rows(whole)
    if partial is not None:
        # the map's mean over the positions whose whole window is valid
        m = cast(torch.Tensor, whole)[partial].to(ssim_map.device, torch.float64)
        n = m.sum(dim=(1, 2, 3)) * ssim_map.shape[1]
        scores[partial] = ((ssim_map[partial] * m).sum(dim=(1, 2, 3)) / n).cpu()
    return scores


def ssim(
    pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, border: int = 4,
    *, valid: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004), per image, mean over channels.

    Args:
        pred, target: ``[B, 3, H, W]`` RGB in [0, 1] (or uint8); at least 11x11 after the crop.
        border: pixels cropped from every side before scoring.
        valid: ``[B, H, W]`` (or ``[B, 1, H, W]``) bool, True where a pixel is valid in both
            images: the map is averaged over the positions whose whole window is valid.

    Returns:
        ``[B]`` float64 in [-1, 1] (1 for identical images; NaN where no window is wholly
        valid).
    """
    return _ssim(pred, target, border, _moments_separable, valid)


def ssim_direct(
    pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray, border: int = 4,
    *, valid: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """:func:`ssim` with the 11 x 11 window as one 2-D convolution: the textbook form, kept
    as the reference the separable filter is checked and timed against (5-10x slower)."""
    return _ssim(pred, target, border, _moments_2d, valid)


class PSNR:
    """PSNR in dB (higher is better); see :func:`psnr`."""

    name = "psnr"
    higher_is_better = True
    bounds = (0.0, math.inf)  # (images in [0, 1]: MSE <= 1)

    def __init__(self, border: int = 4) -> None:
        self.border = check_border_value(border)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor,
                 valid: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, 3, H, W]`` pair (and a ``[B, H, W]`` valid mask) -> ``[B]`` dB."""
        return psnr(pred, target, border=self.border, valid=valid)


class SSIM:
    """SSIM (higher is better); see :func:`ssim`."""

    name = "ssim"
    higher_is_better = True
    bounds = (-1.0, 1.0)

    def __init__(self, border: int = 4) -> None:
        self.border = check_border_value(border)

    def __call__(self, pred: torch.Tensor, target: torch.Tensor,
                 valid: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, 3, H, W]`` pair (and a ``[B, H, W]`` valid mask) -> ``[B]``."""
        return ssim(pred, target, border=self.border, valid=valid)
