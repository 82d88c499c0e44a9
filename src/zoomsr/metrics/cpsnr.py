"""cPSNR: PSNR maximised over small translations, after removing the brightness bias.

Two modes:

``challenge`` (default) - the PROBA-V challenge definition. The prediction is cropped by
``border`` pixels on every side; the target is cropped to the same size at every integer offset
``(dy, dx)`` with ``|dy|, |dx| <= border``; per channel, the mean difference (brightness bias) is
removed; the best PSNR over all ``(2 * border + 1) ** 2`` shifts is returned.

``reference`` - a faithful reimplementation of the published satlas-super-resolution
``calculate_cpsnr`` (used for the paper's tables): the images are quantised to 8 bit, cropped by
``border``, then the prediction is cropped at ``(r, c)`` and the target at
``(max_offset - r, max_offset - c)`` for ``r, c`` in ``0..max_offset`` (``max_offset = 8``), both
to ``size - max_offset``. The relative shift is ``max_offset - 2 r``: only *even* shifts in
``-8..8`` are tried, so an odd misalignment is never fully compensated.

With ``valid`` (True where a pixel is valid in both images), the bias and the MSE are taken over
valid pixels only. ``challenge``: over the prediction's pixels whose every target partner within
the shift range is valid (the mask eroded by ``border``, as the crop does at the image's edges):
the same pixels at every shift, so no shift wins by comparing fewer or other pixels.
``reference``: at each offset, over the pairs of pixels valid at both ends (the reference compares
other pixels at each offset anyway). An offset comparing fewer than ``CPSNR_MIN_SIDE ** 2``
pixels is not tried; NaN where none is left. An image whose mask is all True is scored as
without a mask, to the bit.

With ``target_valid`` instead (``challenge`` only): the target's own quality mask, which moves
with the target's crop: at each shift, bias and MSE over the target pixels of that crop it marks
clear. This is the PROBA-V challenge's masked cPSNR exactly (its scorer crops the HR image and
its status map SM together at each shift).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from zoomsr.errors import InputError
from zoomsr.metrics.base import (
    check_border,
    check_border_value,
    check_pair,
    check_valid,
    partial_rows,
)

CPSNR_MODES = ("challenge", "reference")
REFERENCE_MAX_OFFSET = 8
#: An MSE below this (250 dB) is a perfect match left over by rounding (scored ``inf``).
PERFECT_MSE = 1e-25


def _bias_free_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MSE of ``[B, C, h, w]`` tensors after removing the per-image, per-channel mean difference."""
    d = a - b
    d = d - d.mean(dim=(2, 3), keepdim=True)
    return d.square().mean(dim=(1, 2, 3))


def _search(
    p: torch.Tensor,
    t: torch.Tensor,
    offsets: list[tuple[int, int, int, int]],
    size: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best bias-free MSE over crops ``p[py:, px:]`` vs ``t[ty:, tx:]`` of ``size``.

    Returns ``(mse [B], shift [B, 2])``, the shift being ``(ty - py, tx - px)``; of equally
    good shifts, the shortest.
    """
    h, w = size
    best = torch.full((p.shape[0],), float("inf"), dtype=torch.float64, device=p.device)
    shift = torch.zeros((p.shape[0], 2), dtype=torch.long, device=p.device)
    # shortest shifts first, as only a strictly better one replaces the best: a flat image
    # (water, a field) matches at every shift and was reported shifted by (-border, -border)
    for py, px, ty, tx in sorted(offsets, key=lambda o: (o[2] - o[0]) ** 2 + (o[3] - o[1]) ** 2):
        mse = _bias_free_mse(p[..., py: py + h, px: px + w], t[..., ty: ty + h, tx: tx + w])
        better = mse < best
        best = torch.where(better, mse, best)
        shift[better] = torch.tensor([ty - py, tx - px], device=p.device)
    return best, shift


#: Smallest side (px) of the region compared at each shift. With the brightness bias removed,
#: a region of one pixel always matches (MSE 0: "inf" for unrelated images), and the best of
#: many shifts of a few pixels is no measure either. With a mask, a shift compares at least
#: ``CPSNR_MIN_SIDE ** 2`` valid pixels.
CPSNR_MIN_SIDE = 8


def _masked_bias_free_mse(a: torch.Tensor, b: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """:func:`_bias_free_mse` over the pixels where ``m`` (``[B, 1, h, w]`` float64 0/1) is 1;
    ``inf`` (never the best) where fewer than ``CPSNR_MIN_SIDE ** 2`` are."""
    n = m.sum(dim=(2, 3), keepdim=True)
    d = (a - b) * m
    d = (d - d.sum(dim=(2, 3), keepdim=True) / n.clamp(min=1)) * m
    mse = d.square().sum(dim=(1, 2, 3)) / (n.flatten() * a.shape[1]).clamp(min=1)
    return torch.where(n.flatten() >= CPSNR_MIN_SIDE**2, mse, torch.full_like(mse, float("inf")))


def _masked_search(
    p: torch.Tensor,
    t: torch.Tensor,
    offsets: list[tuple[int, int, int, int]],
    size: tuple[int, int],
    mask: Callable[[int, int, int, int], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_search` with the pixels compared at each offset given by ``mask(py, px, ty,
    tx)`` (``[B, 1, h, w]`` float64 0/1); NaN MSE where no offset compares enough pixels."""
    h, w = size
    best = torch.full((p.shape[0],), float("inf"), dtype=torch.float64, device=p.device)
    shift = torch.zeros((p.shape[0], 2), dtype=torch.long, device=p.device)
    for py, px, ty, tx in sorted(offsets, key=lambda o: (o[2] - o[0]) ** 2 + (o[3] - o[1]) ** 2):
        mse = _masked_bias_free_mse(p[..., py: py + h, px: px + w],
                                    t[..., ty: ty + h, tx: tx + w], mask(py, px, ty, tx))
        better = mse < best
        best = torch.where(better, mse, best)
        shift[better] = torch.tensor([ty - py, tx - px], device=p.device)
    return torch.where(torch.isinf(best), torch.full_like(best, float("nan")), best), shift


def cpsnr(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    border: int = 4,
    mode: str = "challenge",
    *,
    max_offset: int = REFERENCE_MAX_OFFSET,
    return_shift: bool = False,
    valid: torch.Tensor | np.ndarray | None = None,
    target_valid: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Clear PSNR in dB, per image.

    Args:
        pred, target: ``[B, 3, H, W]`` RGB in [0, 1] (or uint8).
        border: ``challenge``: crop of the prediction and the largest shift tried (px);
            ``reference``: the reference's ``crop_border`` applied to both images first.
        mode: ``"challenge"`` or ``"reference"`` (see the module docstring).
        max_offset: ``reference`` mode only: the reference's fixed ``max_offset`` (8).
        return_shift: also return the best shift ``[B, 2]`` as ``(dy, dx)``: ``pred[i, j]``
            lines up with ``target[i + dy, j + dx]``.
        valid: ``[B, H, W]`` (or ``[B, 1, H, W]``) bool, True where a pixel is valid in both
            images: bias and MSE over valid pixels only (see the module docstring).
        target_valid: ``challenge`` only, instead of ``valid``: ``[B, H, W]`` bool, the
            target's clear pixels, cropped with the target at each shift (PROBA-V's SM).

    Returns:
        ``[B]`` float64 dB (``inf`` for a perfect match; NaN where a mask leaves no shift
        enough valid pixels), and the shifts if asked.
    """
    if mode not in CPSNR_MODES:
        raise InputError(f"unknown cPSNR mode {mode!r} (expected one of {', '.join(CPSNR_MODES)})")
    p, t = check_pair(pred, target, dtype=torch.float64)
    height, width = p.shape[-2:]
    check_border(border, height, width, minimum=CPSNR_MIN_SIDE, metric="cPSNR")
    if target_valid is not None:
        if valid is not None:
            raise InputError("give cPSNR valid (both images, fixed) or target_valid (the "
                             "target's, moving with its crop), not both")
        if mode != "challenge":
            raise InputError("target_valid is the challenge's masked cPSNR: mode 'challenge'")
    moving = target_valid is not None
    v = check_valid(target_valid if moving else valid, p.shape, device=p.device)
    partial = partial_rows(v)
    if mode == "challenge":
        h, w = height - 2 * border, width - 2 * border
        offsets = [
            (border, border, border + dy, border + dx)
            for dy in range(-border, border + 1)
            for dx in range(-border, border + 1)
        ]
        mse, shift = _search(p, t, offsets, (h, w))
        if partial is not None and moving:
            # the target's clear pixels in its crop at each shift (the challenge's scorer)
            tv = cast(torch.Tensor, v)[partial].to(torch.float64)  # (partial: v given)
            m_mse, m_shift = _masked_search(p[partial], t[partial], offsets, (h, w),
                                            lambda py, px, ty, tx: tv[..., ty: ty + h,
                                                                      tx: tx + w])
            mse[partial.to(mse.device)], shift[partial.to(shift.device)] = m_mse, m_shift
        elif partial is not None:
            # the prediction's pixels whose whole (2 border + 1)^2 neighbourhood is valid: the
            # same pixels at every shift, each compared with valid target pixels only
            sure = F.max_pool2d((~cast(torch.Tensor, v)[partial]).to(torch.float32),
                                2 * border + 1, stride=1) == 0
            sure64 = sure.to(torch.float64)
            m_mse, m_shift = _masked_search(p[partial], t[partial], offsets, (h, w),
                                            lambda *_: sure64)
            mse[partial.to(mse.device)], shift[partial.to(shift.device)] = m_mse, m_shift
    else:
        if isinstance(max_offset, bool) or not isinstance(max_offset, int) or max_offset < 0:
            raise InputError(f"max_offset must be an integer >= 0, got {max_offset!r}")
        # The reference scores 8-bit images (BasicSR's tensor2img rounds to uint8).
        p, t = torch.round(p * 255.0) / 255.0, torch.round(t * 255.0) / 255.0
        if border:
            p = p[..., border:-border, border:-border]
            t = t[..., border:-border, border:-border]
        h, w = p.shape[-2] - max_offset, p.shape[-1] - max_offset
        if h < CPSNR_MIN_SIDE or w < CPSNR_MIN_SIDE:
            raise InputError(
                f"reference cPSNR needs images of at least 2*border + {max_offset} + "
                f"{CPSNR_MIN_SIDE} px, got {height}x{width} with border {border}"
            )
        offsets = [
            (r, c, max_offset - r, max_offset - c)
            for r in range(max_offset + 1)
            for c in range(max_offset + 1)
        ]
        mse, shift = _search(p, t, offsets, (h, w))
        if partial is not None:
            vc = cast(torch.Tensor, v)[partial]
            if border:
                vc = vc[..., border:-border, border:-border]

            def pairs(py: int, px: int, ty: int, tx: int) -> torch.Tensor:
                # pixel pairs valid at both ends at this offset
                return (vc[..., py: py + h, px: px + w]
                        & vc[..., ty: ty + h, tx: tx + w]).to(torch.float64)

            m_mse, m_shift = _masked_search(p[partial], t[partial], offsets, (h, w), pairs)
            mse[partial.to(mse.device)], shift[partial.to(shift.device)] = m_mse, m_shift
    # what the bias removal's float64 rounding leaves of a perfect match (~1e-33: 330 dB):
    # inf, as the docstring says; float32 inputs' smallest real difference is far above it
    mse = torch.where(mse < PERFECT_MSE, torch.zeros_like(mse), mse)
    scores = (10.0 * torch.log10(1.0 / mse)).cpu()
    if return_shift:
        return scores, shift.cpu()
    return scores


class CPSNR:
    """cPSNR in dB (higher is better); see :func:`cpsnr`."""

    name = "cpsnr"
    higher_is_better = True
    bounds = (0.0, math.inf)  # (the bias-free MSE is at most the MSE, at most 1)

    def __init__(self, border: int = 4, mode: str = "challenge",
                 valid_is: str = "both") -> None:
        """``valid_is``: what the ``valid`` mask it is called with is: ``"both"`` (pixels
        valid in both images: :func:`cpsnr`'s ``valid``) or ``"target"`` (the target's
        quality mask, moving with its crop: ``target_valid``, the PROBA-V challenge's masked
        cPSNR, e.g. for :func:`~zoomsr.evaluation.evaluate_model`, which passes the HR's mask)."""
        if mode not in CPSNR_MODES:
            raise InputError(
                f"unknown cPSNR mode {mode!r} (expected one of {', '.join(CPSNR_MODES)})"
            )
        if valid_is not in ("both", "target"):
            raise InputError(f"valid_is must be 'both' or 'target', got {valid_is!r}")
        if valid_is == "target" and mode != "challenge":
            raise InputError("valid_is='target' is the challenge's masked cPSNR: mode "
                             "'challenge'")
        self.border = check_border_value(border)
        self.mode = mode
        self.valid_is = valid_is

    def __call__(self, pred: torch.Tensor, target: torch.Tensor,
                 valid: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, 3, H, W]`` pair (and a ``[B, H, W]`` valid mask) -> ``[B]`` dB."""
        if self.valid_is == "target":
            return cast(torch.Tensor, cpsnr(pred, target, border=self.border, mode=self.mode,
                                            target_valid=valid))
        return cast(torch.Tensor, cpsnr(pred, target, border=self.border, mode=self.mode,
                                        valid=valid))
