"""Models with no weights that a benchmark scores beside the learned ones."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoomsr.evaluation.model_eval import ScoringModel
from zoomsr.validate import check_int

#: The baselines a benchmark's models may name (``baseline: bicubic``).
BASELINES = ("bicubic",)


class BicubicBaseline(nn.Module):
    """The mean of the input frames, upsampled ``scale`` times by bicubic interpolation
    (``align_corners=False``): the usual lower bound of a super-resolution table. With one
    frame (the default in a benchmark: the cleanest one, as evaluation picks frames), plain
    bicubic upsampling.

    ``forward(lr)``: ``[B, T, C, h, w]`` -> ``[B, C, scale*h, scale*w]``, not clipped (the
    scoring clips outputs to [0, 1]).
    """

    name = "bicubic"
    input_layout = "[B, T, C, H, W]"

    def __init__(self, scale: int) -> None:
        super().__init__()
        check_int("scale", scale, minimum=1)
        self.scale = scale

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        if lr.ndim != 5:
            raise ValueError(f"BicubicBaseline takes [B, T, C, h, w] frames, got "
                             f"{list(lr.shape)}")
        return F.interpolate(lr.float().mean(1), scale_factor=self.scale, mode="bicubic",
                             align_corners=False)


def baseline_model(name: str, n_images: int | None = None) -> ScoringModel:
    """A :class:`ScoringModel` of baseline ``name`` (:data:`BASELINES`), taking ``n_images``
    frames (default 1). Its module's ``scale`` is set for each dataset
    (:func:`for_scale`)."""
    if name != "bicubic":
        raise ValueError(f"unknown baseline {name!r} (known: {', '.join(BASELINES)})")
    return ScoringModel(BicubicBaseline(1), "bicubic", "frames", "bicubic",
                        n_images if n_images is not None else 1, None)


def for_scale(scoring: ScoringModel, scale: int) -> ScoringModel:
    """``scoring`` with a baseline module upsampling ``scale`` times (other models as given)."""
    import dataclasses

    if isinstance(scoring.module, BicubicBaseline):
        return dataclasses.replace(scoring, module=BicubicBaseline(scale))
    return scoring


__all__ = ["BASELINES", "BicubicBaseline", "baseline_model", "for_scale"]
