"""Build metric objects from names and options (the CLI and the evaluation loop use this)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zoomsr.errors import ConfigError, InputError

if TYPE_CHECKING:  # keep this module torch-free: the CLI imports it for its help text
    from zoomsr.metrics.base import Metric

#: Names accepted by :func:`create_metric` (``lpips_alex``/``lpips_vgg`` pick the network).
METRIC_NAMES = ("psnr", "ssim", "cpsnr", "lpips", "lpips_alex", "lpips_vgg", "clipscore")


@dataclass(frozen=True)
class MetricOptions:
    """Options shared by the metrics; each metric reads the ones it needs.

    Attributes:
        border: pixels cropped from each side (PSNR, SSIM, cPSNR).
        cpsnr_mode: ``"challenge"`` or ``"reference"``.
        lpips_net: network for ``lpips``: ``"alex"`` or ``"vgg"``.
        lpips_weights, lpips_linear_weights: LPIPS backbone / linear-layer files (default: caches).
        clip_model, clip_pretrained, clip_mode: CLIPScore backbone, weights (tag or file), mode.
        clip_cache_dir: ground-truth embedding cache folder.
        allow_download: let open_clip download CLIP weights.
        device, dtype, batch_size: where and how the network metrics run.
        perceptual_min_valid: LPIPS and CLIPScore give NaN (not scored) for an image less
            than this share valid (with a ``valid`` mask; see ``docs/metrics.md``).
    """

    border: int = 4
    cpsnr_mode: str = "challenge"
    lpips_net: str = "alex"
    lpips_weights: str | os.PathLike[str] | None = None
    lpips_linear_weights: str | os.PathLike[str] | None = None
    clip_model: str = "ViT-B-16"
    clip_pretrained: str | os.PathLike[str] | None = "openai"
    clip_mode: str = "paper"
    clip_cache_dir: str | os.PathLike[str] | None = None
    allow_download: bool = False
    device: str = "auto"
    dtype: str | None = None
    batch_size: int = 16
    perceptual_min_valid: float = 0.5  # zoomsr.metrics.base.PERCEPTUAL_MIN_VALID


def parse_metric_names(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"psnr,ssim"`` (or a list) -> ``["psnr", "ssim"]``; unknown or duplicate names raise."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = [s.strip().lower().replace("-", "_") for s in items if s.strip()]
    if not names:
        raise ConfigError(f"no metrics given (choose from {', '.join(METRIC_NAMES)})")
    for n in names:
        if n not in METRIC_NAMES:
            raise ConfigError(f"unknown metric {n!r} (choose from {', '.join(METRIC_NAMES)})")
    if len(set(names)) != len(names):
        raise ConfigError(f"a metric is listed twice: {','.join(names)}")
    return names


def _lpips_net(name: str, options: MetricOptions) -> str:
    return options.lpips_net if name == "lpips" else name.split("_", 1)[1]


def check_metric_weights(
    names: str | list[str] | tuple[str, ...], options: MetricOptions | None = None
) -> None:
    """Find the weight files that the network metrics among ``names`` need, without loading
    them, so that a missing file is reported before any image is read.

    Raises:
        WeightsNotFoundError: an LPIPS backbone or linear-layer file, or CLIP weights (unless
            ``allow_download``: they are fetched when the metric is built), are not on this
            machine.
        InputError: an unknown LPIPS network, CLIP model or CLIP tag.
    """
    o = options or MetricOptions()
    for n in parse_metric_names(names):
        if n.startswith("lpips"):
            from zoomsr.metrics.lpips import find_backbone_weights, find_linear_weights

            net = _lpips_net(n, o)
            find_backbone_weights(net, o.lpips_weights)
            find_linear_weights(net, o.lpips_linear_weights)
        elif n == "clipscore":
            from zoomsr.metrics.clipscore import check_clip_weights

            check_clip_weights(o.clip_model, o.clip_pretrained, allow_download=o.allow_download)


def create_metric(name: str, options: MetricOptions | None = None) -> Metric:
    """Build one metric by name; network metrics load their weights here (once)."""
    o = options or MetricOptions()
    n = parse_metric_names([name])[0]
    if n == "psnr":
        from zoomsr.metrics.psnr_ssim import PSNR

        return PSNR(o.border)
    if n == "ssim":
        from zoomsr.metrics.psnr_ssim import SSIM

        return SSIM(o.border)
    if n == "cpsnr":
        from zoomsr.metrics.cpsnr import CPSNR

        return CPSNR(o.border, o.cpsnr_mode)
    if n.startswith("lpips"):
        from zoomsr.metrics.lpips import LPIPS

        net = _lpips_net(n, o)
        metric = LPIPS(net, o.lpips_weights, o.lpips_linear_weights, o.device, o.batch_size,
                       min_valid=o.perceptual_min_valid)
        # "lpips" is AlexNet's (the default): another backbone's distances are named by it,
        # so two result files never hold different measures under one column name
        metric.name = n if n != "lpips" or net == "alex" else f"lpips_{net}"
        return metric
    from zoomsr.metrics.clipscore import CLIPScore

    return CLIPScore(
        o.clip_model, o.clip_pretrained, o.clip_mode, o.device, o.dtype, o.batch_size,
        o.clip_cache_dir, allow_download=o.allow_download, min_valid=o.perceptual_min_valid,
    )


def check_options(names: Sequence[str], options: MetricOptions,
                  called: Mapping[str, str] | None = None) -> None:
    """The option values the metric ``names`` use (``border``, ``cpsnr_mode``,
    ``lpips_net``, ``clip_mode``), ``perceptual_min_valid`` and ``batch_size`` whatever the
    metrics, then the LPIPS / CLIP weight files they need (:func:`check_metric_weights`),
    before any image is read. One-line errors name each option as ``called`` says (e.g. the
    command's flags; default: its key)."""
    from zoomsr.metrics.base import check_batch_size, check_border_value, check_min_valid
    from zoomsr.validate import check_choice

    called = called or {}

    def name(key: str) -> str:
        return called.get(key, key)

    o = options
    if any(n in ("psnr", "ssim", "cpsnr") for n in names):
        check_border_value(o.border, name("border"))
    if "cpsnr" in names:
        from zoomsr.metrics.cpsnr import CPSNR_MODES

        check_choice(name("cpsnr_mode"), o.cpsnr_mode, CPSNR_MODES)
    if "lpips" in names:
        from zoomsr.metrics.lpips import LPIPS_NETS

        check_choice(name("lpips_net"), o.lpips_net, LPIPS_NETS)
        if f"lpips_{o.lpips_net}" in names:  # the same metric twice, in two columns
            raise InputError(f"{name('metrics')} lists lpips (with {name('lpips_net')} "
                             f"{o.lpips_net}) and lpips_{o.lpips_net}: the same metric twice; "
                             "keep one")
    if "clipscore" in names:
        from zoomsr.metrics.clipscore import CLIP_MODES

        check_choice(name("clip_mode"), o.clip_mode, CLIP_MODES)
    # checked whatever the metrics: a run records it (a NaN or -0.5 passed when no LPIPS or
    # CLIPScore was asked for, and the same command with one was refused)
    check_min_valid(o.perceptual_min_valid, name("perceptual_min_valid"))
    check_batch_size(o.batch_size, name("batch_size"))
    check_metric_weights(list(names), options)


def create_metrics(names: str | list[str], options: MetricOptions | None = None) -> dict[
    str, Metric
]:
    """Build several metrics: ``{metric.name: metric}`` in the given order (``lpips`` with
    another ``lpips_net`` than AlexNet is named ``lpips_<net>``)."""
    metrics: dict[str, Metric] = {}
    for n in parse_metric_names(names):
        metric = create_metric(n, options)
        if metric.name in metrics:  # "lpips" with lpips_net vgg, and "lpips_vgg"
            raise ConfigError(f"a metric is listed twice: {metric.name}")
        metrics[metric.name] = metric
    return metrics
