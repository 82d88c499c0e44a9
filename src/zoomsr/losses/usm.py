"""Unsharp masking (USM) of ground-truth images, as Real-ESRGAN sharpens its GT per loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoomsr.errors import InputError


def _gaussian_kernel1d(radius: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Real-ESRGAN's (BasicSR ``USMSharp``): ``radius`` is the kernel's size, made odd (50 ->
    51 taps), with OpenCV's sigma for ``getGaussianKernel(size, 0)`` (8.0 for 51); its 2-D
    kernel is this one's outer product."""
    size = radius + 1 if radius % 2 == 0 else radius
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def _blur(img: Tensor, kernel: Tensor) -> Tensor:
    channels, radius = img.shape[1], kernel.numel() // 2
    # Reflect padding needs pad < size: for smaller images (under 26 px at 51 taps, where
    # Real-ESRGAN's USMSharp raises) the kernel is truncated and renormalised, an approximation.
    pad_h, pad_w = min(radius, img.shape[-2] - 1), min(radius, img.shape[-1] - 1)
    kh = kernel[radius - pad_h: radius + pad_h + 1]
    kw = kernel[radius - pad_w: radius + pad_w + 1]
    kh, kw = kh / kh.sum(), kw / kw.sum()
    x = F.pad(img, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
    x = F.conv2d(x, kh.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return F.conv2d(x, kw.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)


def usm_sharp(
    img: Tensor, weight: float = 0.5, radius: int = 50, threshold: float = 10.0
) -> Tensor:
    """Sharpen ``[B, C, H, W]`` in [0, 1]: ``img + weight * (img - blur(img))`` where the
    residual exceeds ``threshold`` (in 0..255 units), blended with a soft mask; clipped to [0, 1].
    As Real-ESRGAN's ``USMSharp``: a Gaussian blur of ``radius`` taps (made odd), reflect
    padding. Computed in float32 at least, also under autocast; returned in ``img``'s dtype.
    """
    if img.ndim != 4:
        raise InputError(f"usm_sharp expects [B, C, H, W], got {list(img.shape)}")
    if radius < 1 or not math.isfinite(weight):
        raise InputError(
            f"usm_sharp: radius must be >= 1 and weight finite, got {radius}, {weight}"
        )
    # in float32 at least, also under autocast (bf16 blurs are off by half an 8-bit level)
    dtype = torch.promote_types(img.dtype, torch.float32)
    with torch.autocast(img.device.type, enabled=False):
        x = img.to(dtype)
        kernel = _gaussian_kernel1d(radius, dtype, img.device)
        residual = x - _blur(x, kernel)
        mask = (residual.abs() * 255 > threshold).to(dtype)
        soft_mask = _blur(mask, kernel)
        sharp = (x + weight * residual).clamp(0, 1)
        return (soft_mask * sharp + (1 - soft_mask) * x).to(img.dtype)


class USMSharp(nn.Module):
    """:func:`usm_sharp` as a module (no parameters)."""

    def __init__(self, weight: float = 0.5, radius: int = 50, threshold: float = 10.0) -> None:
        super().__init__()
        self.weight, self.radius, self.threshold = weight, radius, threshold

    def forward(self, img: Tensor) -> Tensor:
        return usm_sharp(img, self.weight, self.radius, self.threshold)


__all__ = ["USMSharp", "usm_sharp"]
