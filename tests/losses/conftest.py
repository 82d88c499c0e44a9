"""Fixtures for the loss tests: a tiny random open_clip ViT registered under a test name."""

from __future__ import annotations

import pytest

TINY_CLIP = "zoomsr-test-tiny-loss-vit"
TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 1, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_clip_model() -> str:
    """Name of a tiny open_clip architecture (random weights only)."""
    from zoomsr.metrics.clipscore import register_model_config

    register_model_config(TINY_CLIP, TINY_CLIP_CONFIG)
    return TINY_CLIP
