"""Fixtures of the CLI tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture
def tiny_clip(tmp_path) -> tuple[str, Path]:
    """A registered tiny open_clip model's name, and a checkpoint of it (seeded weights)."""
    if os.environ.get("CI") == "true":
        import open_clip
    else:
        open_clip = pytest.importorskip("open_clip")
    from zoomsr.metrics.clipscore import register_model_config

    name = "zoomsr-test-cli-vit"
    register_model_config(name, {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8,
                       "head_width": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 1,
                     "layers": 1},
    })
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pt"
    torch.save(open_clip.create_model(name).state_dict(), ckpt)
    return name, ckpt
