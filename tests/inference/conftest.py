"""Fixtures for scene-inference tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from infer_helpers import REAL_S2, TINY, crop_real_scene, write_frames


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


@pytest.fixture
def real_scene(shared_dir, tmp_path) -> Path:
    """A 24 x 24 px (2.4 km) crop of the real L2A scene: TCI, B02-B04, B08, SCL, the STAC item."""
    return crop_real_scene(shared_dir / REAL_S2, tmp_path / "29RKH")
