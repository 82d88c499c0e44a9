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
def test_each_dataset_is_told_by_its_own_handle(tmp_path):
    """Two datasets open on one file have the same description: each is found by the handle
    in its own object, not by the name; an object holding no handle gets none."""
    from types import SimpleNamespace

    from zoomsr.io.gdal_lib import _handle

    out = tmp_path / "o.tif"
    with rasterio.open(out, "w", **_profile()) as dst:
        dst.write(np.zeros((3, 512, 512), np.uint8))
    lib = gdal_library()
    with rasterio.open(out) as a, rasterio.open(out) as b:
        ha, hb = _handle(lib, a), _handle(lib, b)
        assert ha and hb and ha != hb
        assert dataset_flusher(a) is not None and dataset_flusher(b) is not None
    assert _handle(lib, SimpleNamespace(name=str(out), closed=False)) is None


_CHURN = r'''
import sys, threading, time
import numpy as np, rasterio
from affine import Affine
from zoomsr.io.gdal_lib import dataset_flusher

src, out, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
profile = dict(driver="GTiff", width=64, height=64, count=1, dtype="uint8", crs="EPSG:3857",
               transform=Affine(2.4, 0, 0, 0, -2.4, 0))
with rasterio.open(src, "w", **profile) as d:
    d.write(np.zeros((1, 64, 64), np.uint8))
stop = threading.Event()


def churn():  # as row threads reading inputs
    while not stop.is_set():
        for ds in [rasterio.open(src) for _ in range(20)]:
            ds.close()


threads = [threading.Thread(target=churn) for _ in range(2)]
for t in threads:
    t.start()
found = calls = 0
start = time.time()
with rasterio.open(out, "w", **profile) as dst:
    while time.time() - start < seconds:
        calls += 1
        found += dataset_flusher(dst) is not None
stop.set()
for t in threads:
    t.join()
print(calls, found)
'''


@linux
def test_the_handle_is_found_beside_threads_opening_and_closing_datasets(tmp_path):
    """Reading every open dataset's description (to find this one's) crashed the process
    (SIGSEGV) when another thread closed its dataset meanwhile; only this dataset's own
    handle is dereferenced now, and it is found every time."""
    import subprocess

    done = subprocess.run([sys.executable, "-X", "faulthandler", "-c", _CHURN,
                           str(tmp_path / "in.tif"), str(tmp_path / "out.tif"), "3"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    calls, found = map(int, done.stdout.split())
    assert calls > 100 and found == calls
