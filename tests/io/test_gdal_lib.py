"""GDAL reached through ctypes: a dataset rasterio keeps open, flushed."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from zoomsr.io.gdal_lib import _release, dataset_flusher, gdal_library

linux = pytest.mark.skipif(not sys.platform.startswith("linux"),
                           reason="GDAL's library is found through /proc/self/maps (Linux)")


def test_version_numbers_read_as_releases():
    assert _release(3100300) == "3.10.3" and _release(3070100) == "3.7.1"


@linux
def test_the_library_is_rasterios():
    lib = gdal_library()
    assert lib is not None
    assert lib.GDALVersionInfo(b"RELEASE_NAME").decode().startswith(rasterio.__gdal_version__)


def _profile() -> dict:
    return {"driver": "GTiff", "width": 512, "height": 512, "count": 3, "dtype": "uint8",
            "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
            "crs": "EPSG:3857", "transform": Affine(2.4, 0, 0, 0, -2.4, 0)}


@linux
def test_a_flush_puts_the_tiles_in_the_file_while_it_stays_open(tmp_path):
    """Half a row of tiles stays in GDAL's cache (a whole tile would be written at once) until
    the flush writes it, the dataset still open."""
    out = tmp_path / "o.tif"
    pixels = np.random.default_rng(0).integers(0, 255, (3, 128, 512), dtype=np.uint8)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), \
            rasterio.open(out, "w", SPARSE_OK=True, **_profile()) as dst:
        flush = dataset_flusher(dst)
        assert flush is not None
        dst.write(pixels, window=Window(0, 0, 512, 128))
        dst.write_mask(np.full((128, 512), 255, np.uint8), window=Window(0, 0, 512, 128))
        before = out.stat().st_size
        flush()
        assert out.stat().st_size > before + pixels.size // 2  # the tiles are on disk
        assert dst.block_size(1, 0, 0) > 0 and dst.block_size(1, 0, 1) > 0
    with rasterio.open(out) as ds:
        assert np.array_equal(ds.read(window=Window(0, 0, 512, 128)), pixels)
        assert ds.dataset_mask()[:128].all() and not ds.dataset_mask()[128:].any()
    with pytest.raises(ValueError, match="after it was closed"):
        flush()


@linux
def test_no_flusher_when_the_handle_is_not_one(tmp_path):
    """Two datasets open on one file: which handle is rasterio's cannot be told."""
    out = tmp_path / "o.tif"
    with rasterio.open(out, "w", **_profile()) as dst:
        dst.write(np.zeros((3, 512, 512), np.uint8))
    with rasterio.open(out) as a, rasterio.open(out) as b:
        assert dataset_flusher(a) is None and dataset_flusher(b) is None
    with rasterio.open(out) as a:
        assert dataset_flusher(a) is not None
