"""``--preview``'s PNG (``inference.preview``): averaged over valid pixels, in bounded memory."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import rasterio
from affine import Affine
from infer_helpers import peak_growth_mb
from PIL import Image

from zoomsr.inference.preview import preview_factor, preview_rgb, write_preview


def _write(path, data: np.ndarray, mask: np.ndarray | None = None, **layout) -> str:
    n, h, w = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=n, dtype="uint8",
                       crs="EPSG:3857", transform=Affine(2.5, 0, 0, 0, -2.5, 0),
                       **layout) as ds:
        ds.write(data)
        if mask is not None:
            ds.write_mask(mask)
    return str(path)


def _reference(data: np.ndarray, valid: np.ndarray, factor: int) -> np.ndarray:
    """Each preview pixel the rounded mean of its group's valid pixels, in float64."""
    _, h, w = data.shape
    out = np.zeros((-(-h // factor), -(-w // factor), 3), np.uint8)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            ok = valid[i * factor:(i + 1) * factor, j * factor:(j + 1) * factor]
            if ok.any():
                cell = data[:3, i * factor:(i + 1) * factor, j * factor:(j + 1) * factor]
                out[i, j] = np.floor(cell[:, ok].mean(axis=1) + 0.5)
    return out


@pytest.mark.parametrize(("size", "max_side", "block"), [
    ((300, 500), 64, 64),    # factor 8, groups across block edges (64 = 8 x 8: aligned)
    ((301, 517), 50, 48),    # factor 11: groups straddle blocks; partial last row and column
    ((129, 70), 40, 16),     # taller than wide, factor 4 with a partial last row
    ((257, 1031), 100, 16),  # more than BLOCKS_PER_READ blocks a row: several reads a row
])
def test_the_preview_is_the_mean_of_each_groups_valid_pixels(tmp_path, size, max_side, block):
    h, w = size
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (4, h, w)).astype(np.uint8)  # a 4th band (uncertainty)
    valid = rng.random((h, w)) > 0.3
    valid[: 2 * block, : 3 * block] = False  # whole groups with no valid pixel: black
    data[:, ~valid] = 0
    path = _write(tmp_path / "o.tif", data, np.where(valid, 255, 0).astype(np.uint8),
                  tiled=True, blockxsize=block, blockysize=block, compress="deflate")
    factor = preview_factor(w, h, max_side)
    assert factor > 1
    with rasterio.open(path) as src:
        got = preview_rgb(src, max_side)
    np.testing.assert_array_equal(got, _reference(data, valid, factor))
    assert max(got.shape[:2]) <= max_side
    assert not got[0, 0].any()


def test_masked_pixels_are_left_out_even_where_they_hold_values(tmp_path):
    """Another writer's file: values under the mask. They do not darken or tint the mean."""
    data = np.full((3, 64, 64), 200, np.uint8)
    valid = np.zeros((64, 64), bool)
    valid[:, ::2] = True
    data[:, ~valid] = 7
    path = _write(tmp_path / "o.tif", data, np.where(valid, 255, 0).astype(np.uint8),
                  tiled=True, blockxsize=16, blockysize=16)
    with rasterio.open(path) as src:
        assert (preview_rgb(src, 16) == 200).all()


def test_a_file_with_overviews_and_a_small_one_are_read_by_gdal(tmp_path):
    data = np.random.default_rng(1).integers(0, 256, (3, 256, 256)).astype(np.uint8)
    path = _write(tmp_path / "cog.tif", data, tiled=True, blockxsize=64, blockysize=64)
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([2, 4], rasterio.enums.Resampling.average)
    with rasterio.open(path) as src:
        want = np.moveaxis(src.read([1, 2, 3], out_shape=(3, 64, 64),
                                    resampling=rasterio.enums.Resampling.average), 0, -1)
        np.testing.assert_array_equal(preview_rgb(src, 64), want)
        np.testing.assert_array_equal(preview_rgb(src, 256), np.moveaxis(data, 0, -1))


def test_write_preview_writes_the_png(tmp_path):
    data = np.random.default_rng(2).integers(0, 256, (3, 90, 120)).astype(np.uint8)
    path = _write(tmp_path / "o.tif", data, tiled=True, blockxsize=32, blockysize=32)
    write_preview(tmp_path / "o.tif", tmp_path / "o.png", max_side=40)
    png = np.asarray(Image.open(tmp_path / "o.png"))
    assert png.shape == (30, 40, 3)
    np.testing.assert_array_equal(png, _reference(data, np.ones((90, 120), bool), 3))
    assert [p.name for p in tmp_path.iterdir() if "tmp" in p.name] == []
    assert path


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc peak RSS")
def test_the_preview_holds_a_few_blocks_not_the_file(tmp_path):
    """GDAL's downsampled read of a file without overviews keeps every block it decoded while
    the file is open (up to its cache: 5 % of the RAM). A 48 MB output's preview grows the
    process by what a read of 8 blocks and its sums take (about 15 MB, whatever the size)."""
    data = np.random.default_rng(3).integers(0, 256, (3, 4096, 4096)).astype(np.uint8)
    path = _write(tmp_path / "big.tif", data, tiled=True, blockxsize=256, blockysize=256)
    del data
    grown = peak_growth_mb(path, "from zoomsr.inference.preview import preview_rgb", {
        "gdal": "ds.read([1, 2, 3], out_shape=(3, 256, 256), "
                "resampling=rasterio.enums.Resampling.average)",
        "strips": "preview_rgb(ds, 256)"})
    decoded_mb = 3 * 4096 * 4096 / 2**20
    assert grown["gdal"] > 0.8 * decoded_mb, grown  # what it was without the change
    assert grown["strips"] < 0.45 * decoded_mb, grown


def test_a_one_band_file_is_shown_in_grey(tmp_path):
    data = np.random.default_rng(4).integers(0, 256, (1, 64, 64)).astype(np.uint8)
    path = _write(tmp_path / "g.tif", data, tiled=True, blockxsize=16, blockysize=16)
    with rasterio.open(path) as src:
        got = preview_rgb(src, 16)
    assert got.shape == (16, 16, 3)
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()
    np.testing.assert_array_equal(got[..., 0], _reference(np.repeat(data, 3, 0),
                                                          np.ones((64, 64), bool), 4)[..., 0])
