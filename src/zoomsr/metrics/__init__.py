"""Image-quality metrics for super-resolution and their agreement with human judgment.

Every metric takes ``pred`` and ``target`` batches ``[B, 3, H, W]`` RGB in [0, 1] (uint8 accepted)
and returns per-image scores ``[B]`` (float64, CPU); see :mod:`zoomsr.metrics.base` for the checks.
Each also takes ``valid=`` (``[B, H, W]`` bool, True where a pixel is valid in both images) to
leave nodata pixels out.

- :func:`psnr`, :func:`ssim` (:class:`PSNR`, :class:`SSIM`): border crop 4 by default.
- :func:`cpsnr` (:class:`CPSNR`): PROBA-V ``challenge`` definition or the reference's behaviour.
- :class:`LPIPS`: AlexNet/VGG, weights from local files or caches (never downloaded implicitly).
- :class:`CLIPScore`: any open_clip image tower, ``paper``/``standard`` preprocessing.
- :mod:`zoomsr.metrics.agreement`: metric vs human pairwise preferences.
- :func:`lr_consistency`, :func:`scene_consistency` (:mod:`zoomsr.metrics.consistency`): an
  output averaged back to the input's pixels against the input (no ground truth).
- :func:`create_metrics`: build metrics by name (``psnr,ssim,cpsnr,lpips,clipscore``).

Network metrics (LPIPS, CLIPScore) import their heavy parts lazily.
"""

from typing import TYPE_CHECKING

from zoomsr.metrics.base import Metric, WeightsNotFoundError, check_images, check_pair
from zoomsr.metrics.consistency import lr_consistency, scene_consistency
from zoomsr.metrics.cpsnr import CPSNR, cpsnr
from zoomsr.metrics.factory import METRIC_NAMES, MetricOptions, create_metric, create_metrics
from zoomsr.metrics.psnr_ssim import PSNR, SSIM, psnr, ssim

if TYPE_CHECKING:  # imported lazily below; named here for type checkers (they saw `object`)
    from zoomsr.metrics.clipscore import CLIPScore
    from zoomsr.metrics.lpips import LPIPS


def __getattr__(name: str) -> object:
    if name == "LPIPS":
        from zoomsr.metrics.lpips import LPIPS

        return LPIPS
    if name == "CLIPScore":
        from zoomsr.metrics.clipscore import CLIPScore

        return CLIPScore
    raise AttributeError(f"module 'zoomsr.metrics' has no attribute {name!r}")


__all__ = [
    "CPSNR", "METRIC_NAMES", "PSNR", "SSIM", "CLIPScore", "LPIPS", "Metric", "MetricOptions",
    "WeightsNotFoundError", "check_images", "check_pair", "cpsnr", "create_metric",
    "create_metrics", "lr_consistency", "psnr", "scene_consistency", "ssim",
]


def __dir__() -> list[str]:
    """The lazy names too (for ``dir()`` and tab completion)."""
    return sorted({*globals(), *__all__})
