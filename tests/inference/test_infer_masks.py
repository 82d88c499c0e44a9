"""Inputs' own masks (alpha bands, internal masks) where a file is warped onto the grid, and in
discovery's decimated looks: the pixels they mask out are nodata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.warp
from affine import Affine
from infer_helpers import read
from rasterio.windows import Window

from zoomsr.errors import DataError, ZoomsrWarning
from zoomsr.inference import InferenceOptions, Tiling, discover_frames, run_inference
from zoomsr.inference.grid import plan_grid
from zoomsr.inference.reader import SceneReader

_UTM = ("EPSG:32631", Affine(10, 0, 500000, 0, -10, 4100000))
N = 64  # px a side
MASKED = 16  # the left columns masked out


def _mask(partial: bool = False) -> np.ndarray:
    """255 (data) but the left :data:`MASKED` columns (0); ``partial``: a few columns of 128
    and 1 after them (an alpha's soft edge: data, as where the file is read directly)."""
    m = np.full((N, N), 255, np.uint8)
    m[:, :MASKED] = 0
    if partial:
        m[:, MASKED : MASKED + 3] = 128
        m[:, MASKED + 3 : MASKED + 5] = 1
    return m


def _values(count: int, dtype: str = "uint8", seed: int = 0) -> np.ndarray:
    """Valid values (60..120, or their DN) with a black patch (nodata: GDAL's warper then
    dropped an internal mask) and bright masked columns (200: a fill or a JPEG's garbage)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(60, 121, (count, N, N)).astype(dtype)
    data[:, :, :MASKED] = 200
    data[:, 30:36, 40:46] = 0
    if dtype == "uint16":
        data = data * 20  # DN: 1200..2400, masked 4000
    return data


def _write(path: Path, data: np.ndarray, how: str | None, mask: np.ndarray | None = None,
           **profile) -> Path:
    """``data`` in a GeoTIFF in UTM; ``how``: its mask ``mask`` as an alpha band ("alpha"),
    an internal mask ("mask"), or none."""
    crs, transform = _UTM
    n = data.shape[0]
    profile = {"driver": "GTiff", "width": N, "height": N, "dtype": data.dtype.name,
               "crs": crs, "transform": transform,
               "photometric": "RGB" if n >= 3 else "MINISBLACK"} | profile
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "alpha":
        with rasterio.open(path, "w", count=n + 1, alpha="YES", **profile) as ds:
            ds.write(np.concatenate([data, mask[None].astype(data.dtype)]))
    else:
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), \
                rasterio.open(path, "w", count=n, **profile) as ds:
            ds.write(data)
            if how == "mask":
                ds.write_mask(mask)
    return path


def _zeroed(data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``data`` with black (nodata) where ``mask`` is 0: what a masked file must read as."""
    out = data.copy()
    out[:, mask == 0] = 0
    return out


def _read_all(items, **kwargs):  # noqa: ANN001, ANN003
    """The frames of ``items`` read on the default (EPSG:3857) grid, whole."""
    frames = discover_frames(items, **kwargs).frames
    grid = plan_grid(frames, 4)
    reader = SceneReader(frames, grid)
    try:
        return reader.read(Window(0, 0, grid.width, grid.height)), grid
    finally:
        reader.close()


def _left_of_mask(grid, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """Where grid pixels (centres) lie inside the file's masked columns, a pixel's margin in
    (the bilinear warp)."""
    xs, ys = grid.transform @ (cols + 0.5, rows + 0.5)
    x, y = rasterio.warp.transform(grid.crs, _UTM[0], xs.ravel(), ys.ravel())
    col, row = ~_UTM[1] @ (np.array(x), np.array(y))
    inside = (col > 1) & (col < MASKED - 1) & (row > 1) & (row < N - 1)
    return inside.reshape(xs.shape)


# --- the warped read (an input not on the grid's lattice: here UTM onto EPSG:3857)


@pytest.mark.parametrize("how", ["alpha", "mask"])
def test_a_warped_inputs_mask_is_nodata_and_not_blended(tmp_path, how):
    """An RGBA file's alpha was dropped by the band subset the warp reads, and GDAL's warper
    drops an internal mask wherever its window also holds a nodata (black) pixel: the masked
    columns' 200s came out as valid data and were blended into their neighbours. Read now as
    the same file holding nodata there, pixel for pixel (an alpha's soft edge, > 0, is data,
    as where the file is read directly)."""
    mask = _mask(partial=how == "alpha")
    data = _values(3)
    src = _write(tmp_path / "m" / "S2_20240101_TCI.tif", data, how, mask)
    ref = _write(tmp_path / "r" / "S2_20240101_TCI.tif", _zeroed(data, mask), None)
    (pixels, valid, _), grid = _read_all(src)
    (want, want_valid, _), _ = _read_all(ref)
    np.testing.assert_array_equal(valid, want_valid)
    np.testing.assert_array_equal(pixels, want)
    rows, cols = np.mgrid[0 : grid.height, 0 : grid.width]
    inside = _left_of_mask(grid, cols, rows)
    assert inside.any() and not valid[0][inside].any()
    # every valid pixel a blend of valid values only (60..120): none of the masked 200s
    assert valid[0].sum() > 0.5 * valid[0].size
    assert pixels[0][:, valid[0]].max() <= 120 / 255 + 1e-6
    # a window of it reads the same pixels (a strip of columns, as a run reads them)
    frames = discover_frames(src).frames
    reader = SceneReader(frames, grid)
    try:
        part, part_valid, _ = reader.read(Window(7, 5, 40, 30))
    finally:
        reader.close()
    np.testing.assert_array_equal(part, pixels[:, :, 5:35, 7:47])
    np.testing.assert_array_equal(part_valid, valid[:, 5:35, 7:47])


def test_band_files_extra_bands_and_scl_with_internal_masks_are_nodata_warped(tmp_path):
    """The same for a date's B04/B03/B02 files (each warped on its own), its B08 and its SCL
    (masked classes: no data, not cloud)."""
    mask = _mask()
    data = _values(3, "uint16")
    b08 = _values(1, "uint16", seed=1)
    scl = np.full((1, N, N), 4, np.uint8)
    scl[:, :, : MASKED + 8] = 9  # cloud, high probability: masked out on its left
    scl[:, 30:36, 40:46] = 0  # no data
    files = {"B04": data[:1], "B03": data[1:2], "B02": data[2:], "B08": b08, "SCL": scl}
    for folder, how in (("m", "mask"), ("r", None)):  # masked; zeroed there, no mask
        for name, values in files.items():
            _write(tmp_path / folder / f"T31_20240101_{name}.tif",
                   values if how else _zeroed(values, mask), how, mask)
    (pixels, valid, cloudy), grid = _read_all(tmp_path / "m", extra_bands="b08", dn_offset=0)
    (want, want_valid, want_cloudy), _ = _read_all(tmp_path / "r", extra_bands="b08",
                                                  dn_offset=0)
    assert pixels.shape[1] == 4 and cloudy is not None
    np.testing.assert_array_equal(valid, want_valid)
    np.testing.assert_array_equal(pixels, want)
    np.testing.assert_array_equal(cloudy, want_cloudy)
    rows, cols = np.mgrid[0 : grid.height, 0 : grid.width]
    inside = _left_of_mask(grid, cols, rows)
    assert inside.any() and not valid[0][inside].any() and not cloudy[0][inside].any()
    assert cloudy[0].any()  # the unmasked clouds


def test_a_four_band_file_whose_fourth_band_is_not_alpha_reads_as_before(tmp_path):
    """RGB + NIR without alpha interpretation (NAIP-like): band 4's zeros mask nothing (it
    is not taken for alpha), and a file with neither mask nor alpha is warped as it was."""
    data = _values(3)
    nir = np.full((1, N, N), 90, np.uint8)
    nir[:, :, :MASKED] = 0  # an alpha's look, but NIR
    four = _write(tmp_path / "n" / "S2_20240101_TCI.tif", np.concatenate([data, nir]), None)
    with rasterio.open(four) as ds:
        assert ds.count == 4 and ds.colorinterp[3] != rasterio.enums.ColorInterp.alpha
    three = _write(tmp_path / "t" / "S2_20240101_TCI.tif", data, None)
    (pixels, valid, _), grid = _read_all(four)
    (want, want_valid, _), _ = _read_all(three)
    np.testing.assert_array_equal(valid, want_valid)
    np.testing.assert_array_equal(pixels, want)
    rows, cols = np.mgrid[0 : grid.height, 0 : grid.width]
    assert valid[0][_left_of_mask(grid, cols, rows)].all()  # the 200s: data here


def test_a_fill_value_under_a_warped_inputs_mask_is_not_refused(tmp_path):
    """Float reflectance holding -9999 under its internal mask (no nodata declared): masked,
    so not a value to refuse, in discovery's look and in the warped read (as read directly)."""
    mask = _mask()
    data = (_values(3).astype(np.float32) / 1000).astype(np.float32)
    data[:, mask == 0] = -9999
    src = _write(tmp_path / "f" / "frame0.tif", data, "mask", mask)
    (pixels, valid, _), _ = _read_all(src)
    assert valid[0].any() and not (pixels[0][:, ~valid[0]]).any()


def test_infer_output_mask_covers_a_warped_inputs_alpha(tmp_path, tiny_model):
    """End to end, on the default training grid: the output's nodata mask covers the input's
    transparent (alpha 0) columns, and the rest is data."""
    mask = _mask()
    src = _write(tmp_path / "S2_20240101_TCI.tif", _values(3), "alpha", mask)
    out = tmp_path / "out.tif"
    run_inference(src, out, tiny_model(1), InferenceOptions(tiling=Tiling(32, 8),
                                                            progress=False))
    _, out_mask, meta = read(out)
    crs, transform = _UTM
    row = out_mask.shape[0] // 4  # clear of the black patch (nodata too)
    xs, ys = zip(*(meta["transform"] @ (c + 0.5, row + 0.5) for c in range(out_mask.shape[1])),
                 strict=True)
    xs = np.array(rasterio.warp.transform(meta["crs"], crs, xs, ys)[0])
    edge = transform.c + MASKED * transform.a
    assert xs.min() < edge - transform.a
    assert not out_mask[row, xs < edge - transform.a].any()
    right = transform.c + N * transform.a
    assert out_mask[row, (xs > edge + transform.a) & (xs < right - transform.a)].all()


# --- discovery's decimated looks


@pytest.mark.parametrize("how", ["alpha", "mask"])
@pytest.mark.parametrize("workers", [1, 2])  # looked at in order; made ahead in threads
def test_a_date_masked_out_whole_is_said_to_add_nothing(tmp_path, monkeypatch, how, workers):
    """A date whose every pixel its alpha or internal mask masks out (its values non-zero)
    was counted as holding data: no warning, and a scene of such dates only ran as one."""
    from zoomsr.inference.inputs import rasters

    monkeypatch.setattr(rasters, "workers_available", lambda: workers)
    none = np.zeros((N, N), np.uint8)
    full = _write(tmp_path / "a" / "S2_20240101_TCI.tif", _values(3), how, _mask())
    empty = _write(tmp_path / "a" / "S2_20240102_TCI.tif", _values(3, seed=1), how, none)
    with pytest.warns(ZoomsrWarning, match=rf"{empty}: no valid pixels seen"):
        found = discover_frames([full, empty])
    assert [f.paths[0] for f in found.empty] == [empty]
    with pytest.raises(DataError, match=rf"^{empty}: no valid pixels"):
        discover_frames([empty])


@pytest.mark.parametrize(("compress", "how"), [
    ("deflate", "alpha"), ("deflate", "mask"),  # read here a block row at a time
    ("jpeg", "mask"),  # decimated by GDAL (a JPEG's alpha: a mask beside it, as here)
])
def test_a_decimated_look_is_black_where_the_mask_masks(tmp_path, compress, how):
    """Read a block row at a time (or by GDAL, decimating itself): the masked pixels are 0 in
    every band, the others GDAL's decimated values; in parts (threads) alike."""
    from zoomsr.inference.inputs.rasters import decimated_read

    h, w = 700, 530
    rng = np.random.default_rng(4)
    data = rng.integers(60, 121, (3, h, w)).astype(np.uint8)
    mask = np.full((h, w), 255, np.uint8)
    mask[100:400, 50:300] = 0
    path = tmp_path / "big.tif"
    crs, transform = _UTM
    profile = {"driver": "GTiff", "width": w, "height": h, "dtype": "uint8", "crs": crs,
               "transform": transform, "photometric": "RGB", "tiled": True,
               "blockxsize": 256, "blockysize": 256, "compress": compress}
    if how == "alpha":
        with rasterio.open(path, "w", count=4, alpha="YES", **profile) as ds:
            ds.write(np.concatenate([data, mask[None]]))
    else:
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), \
                rasterio.open(path, "w", count=3, **profile) as ds:
            ds.write(data)
            ds.write_mask(mask)
    with rasterio.open(path) as ds:
        shape = (h // 3, w // 3)
        want = ds.read([1, 2, 3], out_shape=(3, *shape))
        want[:, ds.read_masks(1, out_shape=shape) == 0] = 0
        assert (want == 0).all(0).sum() > 0.1 * want[0].size
        np.testing.assert_array_equal(decimated_read(ds, [1, 2, 3], shape), want)
        pieces = [decimated_read(ds, [1, 2, 3], shape, (k, 2)) for k in range(2)]
        np.testing.assert_array_equal(np.concatenate(pieces, axis=1), want)


@pytest.mark.parametrize("native", [False, True])
def test_a_pixel_masked_in_one_band_file_is_nodata_warped_as_read_directly(tmp_path, native):
    """B03's internal mask masks the left columns, B04's and B02's nothing: read directly
    (native grid), the pixel is black in every band, so nodata; warped, only B03 was 0 there
    and the pixel stayed valid (black needs every band 0). Both now: nodata."""
    data = _values(3, "uint16")
    data[:, 30:36, 40:46] = 1000  # no black patch: the mask alone says nodata
    full = np.full((N, N), 255, np.uint8)
    for name, values, mask in (("B04", data[:1], full), ("B03", data[1:2], _mask()),
                               ("B02", data[2:], full)):
        _write(tmp_path / f"T31_20240101_{name}.tif", values, "mask", mask)
    frames = discover_frames(tmp_path, dn_offset=0).frames
    grid = plan_grid(frames, 4, native=native)
    reader = SceneReader(frames, grid)
    try:
        pixels, valid, _ = reader.read(Window(0, 0, grid.width, grid.height))
    finally:
        reader.close()
    if native:
        assert not valid[0][:, :MASKED].any() and valid[0][:, MASKED:].all()
    rows, cols = np.mgrid[0 : grid.height, 0 : grid.width]
    inside = _left_of_mask(grid, cols, rows)
    assert inside.any() and not valid[0][inside].any()
    assert not pixels[0][:, ~valid[0]].any()  # black in every band where nodata
    assert valid[0].sum() > 0.5 * valid[0].size
