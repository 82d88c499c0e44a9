"""Building metrics by name."""

from __future__ import annotations

import os

import pytest

from zoomsr.errors import ConfigError, InputError
from zoomsr.metrics import CPSNR, PSNR, SSIM, MetricOptions, create_metric, create_metrics
from zoomsr.metrics.factory import parse_metric_names


def test_names_are_parsed_and_checked():
    assert parse_metric_names(" psnr, SSIM ,lpips-vgg") == ["psnr", "ssim", "lpips_vgg"]
    with pytest.raises(ConfigError, match="unknown metric 'niqe'"):
        parse_metric_names("psnr,niqe")
    with pytest.raises(ConfigError, match="twice"):
        parse_metric_names("psnr,psnr")
    with pytest.raises(ConfigError, match="no metrics"):
        parse_metric_names(" , ")


def test_options_reach_the_metrics():
    built = create_metrics("psnr,ssim,cpsnr", MetricOptions(border=2, cpsnr_mode="reference"))
    assert list(built) == ["psnr", "ssim", "cpsnr"]
    assert isinstance(built["psnr"], PSNR) and built["psnr"].border == 2
    assert isinstance(built["ssim"], SSIM) and built["ssim"].border == 2
    assert isinstance(built["cpsnr"], CPSNR) and built["cpsnr"].mode == "reference"
    with pytest.raises(ValueError, match="cPSNR mode"):
        create_metric("cpsnr", MetricOptions(cpsnr_mode="best"))


def test_lpips_variant_names(shared_dir):
    opts = MetricOptions(lpips_weights=shared_dir / "weights" / "lpips", device="cpu")
    try:
        built = create_metrics("lpips,lpips_vgg", opts)
    except OSError as exc:  # the lpips package (linear weights) is missing
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(exc))
    assert built["lpips"].net_name == "alex" and built["lpips"].name == "lpips"
    assert built["lpips_vgg"].net_name == "vgg" and built["lpips_vgg"].name == "lpips_vgg"
    assert built["lpips"].higher_is_better is False


@pytest.mark.parametrize("name", ["psnr", "ssim", "cpsnr"])
def test_bad_border_refused_when_the_metric_is_built(name):
    with pytest.raises(InputError, match="border must be an integer >= 0, got -1"):
        create_metric(name, MetricOptions(border=-1))


def test_missing_weights_found_without_building_the_metrics(tmp_path, monkeypatch):
    import torch

    from zoomsr.metrics.base import WeightsNotFoundError
    from zoomsr.metrics.factory import check_metric_weights

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    check_metric_weights("psnr,ssim,cpsnr")  # nothing to find
    with pytest.raises(WeightsNotFoundError, match="alexnet-owt-7be5be79.pth"):
        check_metric_weights("psnr,lpips")
    with pytest.raises(WeightsNotFoundError, match="vgg16-397923af.pth"):
        check_metric_weights(["lpips_vgg"], MetricOptions(lpips_net="alex"))
    with pytest.raises(WeightsNotFoundError, match="none.pth"):
        check_metric_weights("lpips", MetricOptions(lpips_weights=tmp_path / "none.pth"))


def test_a_missing_clip_file_is_refused_even_when_downloads_are_allowed(tmp_path):
    """A download fetches a tag's weights when the metric is built, never a missing file's:
    a mistyped path fails the early check either way."""
    from zoomsr.metrics.base import WeightsNotFoundError
    from zoomsr.metrics.clipscore import is_pretrained_tag
    from zoomsr.metrics.factory import check_metric_weights

    missing = str(tmp_path / "clip.pt")
    assert is_pretrained_tag("ViT-B-32", "openai") and not is_pretrained_tag("ViT-B-32", missing)
    for allow in (False, True):
        with pytest.raises(WeightsNotFoundError, match="clip.pt"):
            check_metric_weights("clipscore", MetricOptions(
                clip_model="ViT-B-32", clip_pretrained=missing, allow_download=allow))
