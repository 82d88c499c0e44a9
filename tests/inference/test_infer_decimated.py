"""The decimated looks discovery takes at every input (``inputs.rasters.decimated_read``)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import rasterio
from affine import Affine
from infer_helpers import peak_growth_mb

from zoomsr.inference.inputs.rasters import decimated_read, sample_shape


def _write(path, data: np.ndarray, **layout) -> str:
    n, h, w = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=n,
                       dtype=data.dtype.name, crs="EPSG:3857",
                       transform=Affine(10, 0, 0, 0, -10, 0), **layout) as ds:
        ds.write(data)
    return str(path)


@pytest.mark.parametrize("layout", [{"tiled": True, "blockxsize": 256, "blockysize": 256},
                                    {"tiled": True, "blockxsize": 512, "blockysize": 512},
                                    {}])  # strips of a few rows
@pytest.mark.parametrize("size", [(1000, 777), (513, 2049), (300, 300)])
def test_the_read_takes_the_pixels_gdal_takes(tmp_path, layout, size):
    """Equal to GDAL's own nearest decimation, whose sample centres land on pixel edges at
    1000 -> 333 rows (166.5 x 1000/333 = 500: GDAL takes pixel 500, floating point 499.99)."""
    h, w = size
    rng = np.random.default_rng(0)
    for count, dtype in ((3, "uint8"), (1, "uint16")):
        data = rng.integers(0, 60000 if dtype == "uint16" else 255, (count, h, w)).astype(dtype)
        path = _write(tmp_path / f"{count}.tif", data, **layout)
        with rasterio.open(path) as ds:
            bands = list(range(1, count + 1))
            for shape in (sample_shape(ds), (h // 3, w // 3), (h // 7, w - 1), (1, 1)):
                want = ds.read(bands, out_shape=(count, *shape))
                np.testing.assert_array_equal(decimated_read(ds, bands, shape), want)
                for parts in (2, 3):  # threads that read one file together: the same pixels
                    pieces = [decimated_read(ds, bands, shape, (k, parts))
                              for k in range(parts)]
                    np.testing.assert_array_equal(np.concatenate(pieces, axis=1), want)


@pytest.mark.parametrize("parts", [1, 2, 3, 7, 40])
@pytest.mark.parametrize(("size", "samples", "block"), [(3856, 482, 256), (1000, 333, 512),
                                                        (513, 1, 16), (300, 300, 1)])
def test_split_on_blocks_shares_no_block_row(size, samples, block, parts):
    from zoomsr.inference.inputs.rasters import _nearest, split_on_blocks

    rows = _nearest(size, samples)
    runs = split_on_blocks(rows, block, parts)
    assert len(runs) == parts
    np.testing.assert_array_equal(np.concatenate(runs), rows)
    blocks = [set((run // block).tolist()) for run in runs]
    assert all(not (a & b) for i, a in enumerate(blocks) for b in blocks[i + 1:])
    counts = [len(b) for b in blocks]
    assert max(counts) - min(counts) <= 1 or sum(counts) < parts  # about as many each


def test_a_file_with_overviews_is_read_from_them(tmp_path):
    data = np.random.default_rng(1).integers(0, 255, (3, 1024, 1024)).astype("uint8")
    path = _write(tmp_path / "ov.tif", data, tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "r+") as ds:
        ds.build_overviews([4], rasterio.enums.Resampling.average)
    with rasterio.open(path) as ds:
        want = ds.read([1, 2, 3], out_shape=(3, 256, 256))  # GDAL takes the overview
        np.testing.assert_array_equal(decimated_read(ds, [1, 2, 3], (256, 256)), want)
        assert not np.array_equal(want, data[:, 1::4, 1::4])  # averaged, not sampled


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc peak RSS")
def test_the_read_holds_a_block_row_not_the_file(tmp_path):
    """GDAL decimates band after band and keeps what it decoded while the file is open: with
    a large cache the whole file (8 dates of 8192 px looked at at once held 1.6 GB). Here: a
    48 MB file's look grows the process by about a quarter of it."""
    data = np.random.default_rng(2).integers(0, 255, (3, 4096, 4096)).astype("uint8")
    path = _write(tmp_path / "big.tif", data, tiled=True, blockxsize=256, blockysize=256)
    del data
    grown = peak_growth_mb(
        path, "from zoomsr.inference.inputs.rasters import decimated_read, sample_shape",
        {"gdal": "ds.read([1, 2, 3], out_shape=(3, *shape))",
         "rows": "decimated_read(ds, [1, 2, 3], shape)"}, setup="shape = sample_shape(ds)")
    decoded_mb = 3 * 4096 * 4096 / 2**20
    assert grown["gdal"] > 0.8 * decoded_mb, grown  # what it was without the change
    assert grown["rows"] < 0.35 * decoded_mb, grown


def test_files_gdal_does_not_decimate_from_full_blocks_are_read_by_gdal(tmp_path):
    """A JPEG-compressed GeoTIFF (GDAL decodes its blocks at a reduced size for a decimated
    read) and a VRT mosaic (each source resampled on its own grid) give GDAL's own pixels."""
    from zoomsr.inference.inputs.rasters import _decimates_full_blocks

    data = np.random.default_rng(3).integers(0, 255, (3, 700, 900)).astype("uint8")
    jpeg = _write(tmp_path / "j.tif", data, tiled=True, compress="jpeg", photometric="ycbcr")
    plain = _write(tmp_path / "p.tif", data, tiled=True, compress="deflate")
    half = [_write(tmp_path / f"h{i}.tif", data[:1, :, i * 450:(i + 1) * 450]) for i in (0, 1)]
    sources = "".join(
        f'<SimpleSource><SourceFilename>{p}</SourceFilename><SourceBand>1</SourceBand>'
        f'<SrcRect xOff="0" yOff="0" xSize="450" ySize="700"/>'
        f'<DstRect xOff="{i * 450}" yOff="0" xSize="450" ySize="700"/></SimpleSource>'
        for i, p in enumerate(half))
    vrt = tmp_path / "m.vrt"
    vrt.write_text(f'<VRTDataset rasterXSize="900" rasterYSize="700"><GeoTransform>0, 10, 0, '
                   f'0, 0, -10</GeoTransform><VRTRasterBand dataType="Byte" band="1">'
                   f'{sources}</VRTRasterBand></VRTDataset>')
    with rasterio.Env():  # where rasterio's JPEG reads differed from full-size decoding
        with rasterio.open(jpeg) as ds:
            assert not _decimates_full_blocks(ds, 1)
            for shape in (sample_shape(ds), (350, 450), (233, 300)):
                np.testing.assert_array_equal(decimated_read(ds, [1, 2, 3], shape),
                                              ds.read([1, 2, 3], out_shape=(3, *shape)))
        with rasterio.open(vrt) as ds:
            assert not _decimates_full_blocks(ds, 1)
        with rasterio.open(plain) as ds:
            assert _decimates_full_blocks(ds, 1)
