"""wrap_model: a model in memory run by the scene pipeline as one loaded from a file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from infer_helpers import TINY, read, write_frames

from zoomsr.errors import ConfigError
from zoomsr.inference import (
    InferenceOptions,
    Tiling,
    build_inference_model,
    run_inference,
    wrap_model,
)
from zoomsr.inference.model import sha256_state
from zoomsr.models import create_model, save_checkpoint

OPTS = {"tiling": Tiling(window=16, overlap=4), "progress": False}


class MeanBicubic(torch.nn.Module):
    """Not a zoomsr model: the frames' mean, bicubic x4 (``[B, T, C, h, w]`` in)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x.mean(1), scale_factor=4, mode="bicubic", align_corners=False)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return write_frames(tmp_path_factory.mktemp("wrap") / "in", n=2, size=(20, 24))


def test_a_zoomsr_model_in_memory_gives_what_its_saved_file_gives(frames, tmp_path):
    torch.manual_seed(0)
    net = create_model("rrdbnet", **{**TINY, "num_in_ch": 6})
    digest = sha256_state(net)
    saved = save_checkpoint(net, tmp_path / "net.pth")
    wrapped = wrap_model(net, device="cpu", label="notebook")
    assert wrapped.module is net and not net.training
    assert (wrapped.n_images, wrapped.layout, wrapped.scale) == (2, "stacked", 4)
    run_inference(frames, tmp_path / "mem.tif", wrapped, InferenceOptions(**OPTS))
    run_inference(frames, tmp_path / "file.tif",
                  build_inference_model(weights=saved, device="cpu"), InferenceOptions(**OPTS))
    mem, mem_mask, meta = read(tmp_path / "mem.tif")
    disk, disk_mask, _ = read(tmp_path / "file.tif")
    assert np.array_equal(mem, disk) and np.array_equal(mem_mask, disk_mask)
    tags = meta["tags"]
    assert tags["zoomsr_model"] == "notebook" and tags["zoomsr_weights"] == "in-memory"
    assert tags["zoomsr_weights_sha256"] == digest
    # what its config says is checked, not overridden
    with pytest.raises(ConfigError, match=r"^n_images=3: this rrdbnet takes n_images=2"):
        wrap_model(net, device="cpu", n_images=3)


def test_another_module_runs_with_how_it_is_fed(frames, tmp_path):
    wrapped = wrap_model(MeanBicubic(), device="cpu", n_images=2, layout="frames", scale=4)
    run_inference(frames, tmp_path / "sr.tif", wrapped, InferenceOptions(**OPTS))
    data, mask, meta = read(tmp_path / "sr.tif")
    assert data.shape == (3, 80, 96) and mask.all()
    assert meta["tags"]["zoomsr_model"] == "MeanBicubic"
    # its output is what the module computes from the whole frames (tiled with enough
    # overlap for bicubic's 2 px reach: the same up to the rounding of blended windows)
    import rasterio

    lr = []
    for path in frames:
        with rasterio.open(path) as src:
            lr.append(src.read().astype(np.float32) / 255)
    whole = MeanBicubic()(torch.from_numpy(np.stack(lr))[None]).clamp(0, 1)[0]
    expect = (whole.numpy() * 255).round()
    diff = np.abs(data.astype(float) - expect)
    assert diff.max() <= 2 and (diff > 0).mean() < 0.05


def test_another_module_without_how_it_is_fed_is_refused():
    with pytest.raises(ConfigError, match=r"^MeanBicubic is not a zoomsr model: give n_images, "
                                          r"layout, scale"):
        wrap_model(MeanBicubic(), device="cpu")
    with pytest.raises(ConfigError, match=r"^n_images must be an integer >= 1, got 0"):
        wrap_model(MeanBicubic(), device="cpu", n_images=0, layout="frames", scale=4)
    with pytest.raises(ConfigError, match=r"layout"):
        wrap_model(MeanBicubic(), device="cpu", n_images=2, layout="planar", scale=4)
    with pytest.raises(ConfigError, match=r"takes a torch nn.Module, not str"):
        wrap_model("rrdbnet")  # type: ignore[arg-type]
