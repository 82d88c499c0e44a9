"""Building metrics by name."""

from __future__ import annotations

import os

import pytest

from zoomsr.errors import ConfigError
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
