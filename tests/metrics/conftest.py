"""Fixtures for the metric tests: smooth test images, a blur, tiny random LPIPS/CLIP backbones."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

TINY_CLIP = "zoomsr-test-tiny-vit"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}


def smooth_images(n: int, size: int = 48, seed: int = 0) -> torch.Tensor:
    """``[n, 3, size, size]`` smooth random RGB in about [0.1, 0.9] (low-res noise upsampled)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 6, size // 6, generator=g)
    up = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    return (0.1 + 0.8 * up).clamp(0.0, 1.0)


def blur(x: torch.Tensor) -> torch.Tensor:
    """Mild 5x5 binomial blur, same size (replicate padding)."""
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    k = torch.outer(k, k)
    k = (k / k.sum()).expand(3, 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), k, groups=3)


@pytest.fixture
def images():
    """The image helpers as a namespace: ``images.smooth(n, size, seed)``, ``images.blur(x)``."""

    class _Images:
        smooth = staticmethod(smooth_images)
        blur = staticmethod(blur)

    return _Images


@pytest.fixture
def tiny_lpips_network():
    """A randomly initialised 3-stage LPIPS network (seeded), positive linear weights."""
    from zoomsr.metrics.lpips import LPIPSNetwork

    torch.manual_seed(0)
    stages = [
        nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()),
        nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()),
        nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()),
    ]
    net = LPIPSNetwork(stages, [8, 16, 16])
    with torch.no_grad():
        for lin in net.lins:
            lin.weight.uniform_(0.1, 1.0)
    return net


@pytest.fixture(scope="session")
def tiny_clip_name() -> str:
    """Name of a tiny open_clip ViT config registered for the tests (random weights only)."""
    from zoomsr.metrics.clipscore import register_model_config

    register_model_config(TINY_CLIP, TINY_CLIP_CONFIG)
    return TINY_CLIP


@pytest.fixture
def tiny_clip(tiny_clip_name):
    """Factory: ``tiny_clip(**kwargs)`` -> CLIPScore on the tiny random ViT (seeded, CPU)."""
    from zoomsr.metrics.clipscore import CLIPScore, clear_model_cache

    def make(**kwargs) -> CLIPScore:
        torch.manual_seed(0)
        kwargs.setdefault("device", "cpu")
        return CLIPScore(tiny_clip_name, None, allow_random=True, **kwargs)

    clear_model_cache()
    yield make
    clear_model_cache()
