"""Differentiable SSIM (Wang et al. 2004) for losses.

``zoomsr.metrics.ssim`` scores detached float64 images with a border crop; this version keeps
the autograd graph, runs in the input dtype and offers ``same`` padding so a weight mask lines
up with the SSIM map. With ``window=11``, ``padding="valid"`` it equals the metric at
``border=0`` (tested). kornia has an SSIM loss too, but adding it for 30 lines is not worth a
dependency.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from zoomsr.errors import InputError

C1 = 0.01**2
C2 = 0.03**2


def gaussian_window(size: int, sigma: float = 1.5, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> Tensor:
    """Normalised 2-D Gaussian ``[size, size]``."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).to(dtype=dtype, device=device)


def ssim_map(
    pred: Tensor,
    target: Tensor,
    window: int = 11,
    sigma: float = 1.5,
    padding: str = "valid",
) -> Tensor:
    """Per-pixel SSIM ``[B, C, H', W']`` of ``[B, C, H, W]`` images in [0, 1].

    ``padding="valid"``: ``H' = H - window + 1``; ``"same"``: reflect padding, ``H' = H``.
    """
    if pred.shape != target.shape or pred.ndim != 4:
        raise InputError(
            f"ssim: expected two [B, C, H, W] tensors of one shape, got {list(pred.shape)} "
            f"and {list(target.shape)}"
        )
    if window < 1 or window % 2 == 0:
        raise InputError(f"ssim: window must be a positive odd integer, got {window}")
    if padding not in ("valid", "same"):
        raise InputError(f"ssim: padding must be 'valid' or 'same', got {padding!r}")
    channels = pred.shape[1]
    if min(pred.shape[-2:]) < (window if padding == "valid" else window // 2 + 1):
        raise InputError(f"ssim: images {list(pred.shape[-2:])} are smaller than the window")
    # Statistics in float32 at least: bf16 variances of near-equal images are mostly noise
    # (1 - SSIM went negative). Autocast would run the filtering in bf16 all the same.
    dtype = torch.promote_types(pred.dtype, torch.float32)
    with torch.autocast(pred.device.type, enabled=False):
        x, y = pred.to(dtype), target.to(dtype)
        kernel = gaussian_window(window, sigma, dtype, x.device).expand(channels, 1, window,
                                                                        window)
        if padding == "same":
            pad = window // 2
            x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
            y = F.pad(y, (pad, pad, pad, pad), mode="reflect")

        def filt(z: Tensor) -> Tensor:
            return F.conv2d(z, kernel, groups=channels)

        mu_x, mu_y = filt(x), filt(y)
        sxx = filt(x * x) - mu_x**2
        syy = filt(y * y) - mu_y**2
        sxy = filt(x * y) - mu_x * mu_y
        return (((2 * mu_x * mu_y + C1) * (2 * sxy + C2))
                / ((mu_x**2 + mu_y**2 + C1) * (sxx + syy + C2)))


def ssim(pred: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM per image, ``[B]``, differentiable (``valid`` filtering)."""
    return ssim_map(pred, target, window, sigma).mean(dim=(1, 2, 3))


__all__ = ["gaussian_window", "ssim", "ssim_map"]
