"""Models with no weights that a benchmark scores beside the learned ones."""

from __future__ import annotations

from collections.abc import Sequence

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

    ``forward(lr)``: ``[B, T, C, h, w]`` -> ``[B, C', scale*h, scale*w]``, not clipped (the
    scoring clips outputs to [0, 1]); ``channels``: the LR channels upsampled, in the HR's
    order (``C' = len(channels)``; None: all, ``C' = C``), so that frames with more bands
    than the HR (S2-NAIP's TCI + B08 against NAIP's RGB) are compared band for band.
    """

    name = "bicubic"
    input_layout = "[B, T, C, H, W]"

    def __init__(self, scale: int, channels: Sequence[int] | None = None) -> None:
        super().__init__()
        check_int("scale", scale, minimum=1)
        self.scale = scale
        self.channels = None if channels is None else [int(c) for c in channels]

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        if lr.ndim != 5:
            raise ValueError(f"BicubicBaseline takes [B, T, C, h, w] frames, got "
                             f"{list(lr.shape)}")
        if self.channels is not None:
            lr = lr[:, :, self.channels]
        return F.interpolate(lr.float().mean(1), scale_factor=self.scale, mode="bicubic",
                             align_corners=False)


#: WorldStrat's HR bands and the Sentinel-2 bands each is seen in (the first present wins).
_HR_BAND_IN_LR = {"R": ("B04",), "G": ("B03",), "B": ("B02",), "NIR": ("B08", "B8A")}


def hr_channels_in_lr(dataset: object) -> list[int] | None:
    """The LR frame channels that hold ``dataset``'s HR bands, in the HR's order (what a
    baseline upsamples to be compared with the HR), or None where every LR channel is an HR
    one in the same order, or no such channels are known: WorldStrat's ``hr_bands`` found
    among its ``lr_bands`` (R in B04, G in B03, B in B02, NIR in B08, else B8A); else, for an RGB HR
    whose frames hold more (S2-NAIP's extra bands), the frames' R, G, B (``lr_rgb``)."""
    channels = getattr(dataset, "channels", None)
    hr_bands = getattr(dataset, "hr_bands", None)
    lr_bands = getattr(dataset, "lr_bands", None)
    if hr_bands is not None and lr_bands is not None:
        lr = [str(b).upper() for b in lr_bands]
        picked = []
        for b in hr_bands:
            seen_in = [s for s in _HR_BAND_IN_LR.get(str(b).upper(), ()) if s in lr]
            if not seen_in:  # (PAN; NIR without B08 or B8A): as it is, refused by shape
                return None
            picked.append(lr.index(seen_in[0]))
        return None if picked == list(range(len(lr))) else picked
    hr_rgb, lr_rgb = getattr(dataset, "hr_rgb", None), getattr(dataset, "lr_rgb", None)
    if hr_rgb is None or lr_rgb is None or channels == 3:
        return None
    order = [0, 0, 0]
    for hr_c, lr_c in zip(hr_rgb, lr_rgb, strict=True):
        order[hr_c] = lr_c
    return order


def baseline_model(name: str, n_images: int | None = None) -> ScoringModel:
    """A :class:`ScoringModel` of baseline ``name`` (:data:`BASELINES`), taking ``n_images``
    frames (default 1). Its module's ``scale`` is set for each dataset
    (:func:`for_dataset`)."""
    if name != "bicubic":
        raise ValueError(f"unknown baseline {name!r} (known: {', '.join(BASELINES)})")
    return ScoringModel(BicubicBaseline(1), "bicubic", "frames", "bicubic",
                        n_images if n_images is not None else 1, None)


def for_dataset(scoring: ScoringModel, dataset: object) -> ScoringModel:
    """``scoring`` with a baseline module made for ``dataset``: upsampling its ``scale``
    times the LR channels that hold its HR bands (:func:`hr_channels_in_lr`); other models
    as given."""
    import dataclasses

    if isinstance(scoring.module, BicubicBaseline):
        scale = int(getattr(dataset, "scale", 1))
        return dataclasses.replace(
            scoring, module=BicubicBaseline(scale, hr_channels_in_lr(dataset)))
    return scoring


__all__ = ["BASELINES", "BicubicBaseline", "baseline_model", "for_dataset", "hr_channels_in_lr"]
