"""Pixel losses with an optional weight mask (nodata, clouds), and the WorldStrat mix.

Every loss takes ``pred`` and ``target`` ``[B, C, H, W]`` (reflectance in [0, 1]) and an
optional ``weight`` broadcastable to them (``[B, 1, H, W]`` masks a pixel in every channel):
the weighted mean is ``sum(w * err) / sum(w)`` over the broadcast weight, so masked pixels
neither count nor dilute the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoomsr.errors import InputError
from zoomsr.losses.ssim import ssim_map

#: WorldStrat's loss for SRCNN / HighRes-net: 0.3 MSE + 0.4 L1 + 0.3 (1 - SSIM).
WORLDSTRAT_WEIGHTS = {"mse": 0.3, "l1": 0.4, "ssim": 0.3}


def _check(pred: Tensor, target: Tensor, weight: Tensor | None) -> None:
    if pred.shape != target.shape:
        raise InputError(
            f"loss: pred and target shapes differ: {list(pred.shape)} vs {list(target.shape)}"
        )
    if weight is not None:
        try:
            # to pred's shape, not beyond it: [2, 1, H, W] against a batch of 1 broadcasts
            # to [2, C, H, W] and failed later in expand_as
            ok = torch.broadcast_shapes(weight.shape, pred.shape) == pred.shape
        except RuntimeError:
            ok = False
        if not ok:
            raise InputError(
                f"loss: weight {list(weight.shape)} does not broadcast to {list(pred.shape)}"
            )


def reduce_loss(err: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean of the per-element ``err``, weighted by ``weight`` when given."""
    if weight is None:
        return err.mean()
    w = weight.to(err.dtype).expand_as(err)
    return (err * w).sum() / w.sum().clamp(min=1e-12)


def l1_loss(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean absolute error (scalar)."""
    _check(pred, target, weight)
    return reduce_loss((pred - target).abs(), weight)


def mse_loss(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean squared error (scalar)."""
    _check(pred, target, weight)
    return reduce_loss((pred - target).square(), weight)


def ssim_loss(
    pred: Tensor, target: Tensor, weight: Tensor | None = None, window: int = 11
) -> Tensor:
    """``1 - SSIM`` (scalar); the SSIM map uses ``same`` padding so a mask lines up with it.

    A ``weight`` is eroded (min-filtered) over the window: SSIM at a pixel mixes its whole
    window, so only pixels whose window lies inside the mask count.
    """
    _check(pred, target, weight)
    if weight is not None:
        # otherwise nodata next to a masked-in pixel leaks into its loss
        w = -weight.to(torch.float32).expand(pred.shape)
        weight = -F.max_pool2d(w, window, stride=1, padding=window // 2)
    return reduce_loss(1.0 - ssim_map(pred, target, window=window, padding="same"), weight)


def worldstrat_loss(
    pred: Tensor, target: Tensor, weight: Tensor | None = None, window: int = 11
) -> Tensor:
    """WorldStrat mix ``0.3 MSE + 0.4 L1 + 0.3 (1 - SSIM)`` (scalar)."""
    w = WORLDSTRAT_WEIGHTS
    return (
        w["mse"] * mse_loss(pred, target, weight)
        + w["l1"] * l1_loss(pred, target, weight)
        + w["ssim"] * ssim_loss(pred, target, weight, window)
    )


PIXEL_LOSSES = ("l1", "mse", "ssim", "worldstrat")


class PixelLoss(nn.Module):
    """One of :data:`PIXEL_LOSSES` as a module: ``loss(pred, target, weight=None) -> scalar``."""

    def __init__(self, kind: str = "l1", ssim_window: int = 11) -> None:
        super().__init__()
        if kind not in PIXEL_LOSSES:
            raise InputError(
                f"unknown pixel loss {kind!r}; choose one of {', '.join(PIXEL_LOSSES)}"
            )
        self.kind = kind
        self.ssim_window = ssim_window

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        if self.kind == "l1":
            return l1_loss(pred, target, weight)
        if self.kind == "mse":
            return mse_loss(pred, target, weight)
        if self.kind == "ssim":
            return ssim_loss(pred, target, weight, self.ssim_window)
        return worldstrat_loss(pred, target, weight, self.ssim_window)


__all__ = [
    "PIXEL_LOSSES",
    "WORLDSTRAT_WEIGHTS",
    "PixelLoss",
    "l1_loss",
    "mse_loss",
    "reduce_loss",
    "ssim_loss",
    "worldstrat_loss",
]
