"""Fixtures for scene-inference tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from infer_helpers import TINY, write_frames


@pytest.fixture
def frames_3857(tmp_path: Path) -> list[Path]:
    return write_frames(tmp_path / "in3857")


@pytest.fixture
def tiny_model():
    from zoomsr.inference import build_inference_model

    def make(n_images: int = 2, **extra) -> object:
        cfg = {**TINY, "num_in_ch": 3 * n_images, **extra}
        return build_inference_model(model="rrdbnet", config=cfg, random_weights=True,
                                     device="cpu")

    return make
