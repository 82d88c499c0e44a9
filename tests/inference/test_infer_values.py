"""Input pixels that no Sentinel-2 product holds: refused (or warned about) before any work."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine
from infer_helpers import damage_middle_tile, write_frames

from zoomsr.errors import DataError, ZoomsrWarning
from zoomsr.inference import discover_frames, plan_grid
from zoomsr.inference.grid import TargetGrid


def _write(path, data, nodata=None, crs="EPSG:32633", res=10.0, **extra):
    count, h, w = data.shape
    if count == 3:
        extra.setdefault("photometric", "RGB")  # labelled red, green, blue
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=count,
                       dtype=data.dtype, crs=crs, nodata=nodata,
                       transform=Affine(res, 0, 500000.0, 0, -res, 4100000.0), **extra) as ds:
        ds.write(data)
    return path


def test_damage_inside_a_file_is_named_before_any_work(tmp_path):
    """A tile in the middle (not a corner, which is read first) holds garbage."""
    rng = np.random.default_rng(0)
    path = _write(tmp_path / "S2_20240101_TCI.tif", rng.integers(1, 255, (3, 64, 64), np.uint8),
                  tiled=True, blockxsize=16, blockysize=16, compress="deflate")
    damage_middle_tile(path)
    with pytest.raises(DataError, match=r"^.*S2_20240101_TCI.tif: corrupt raster data \("):
        discover_frames(path)


def test_no_valid_pixel_anywhere_is_refused_and_an_empty_date_warned(tmp_path):
    nan = np.full((3, 32, 32), np.nan, np.float32)
    empty = _write(tmp_path / "nan.tif", nan)
    with pytest.raises(DataError, match=r"nan.tif: no valid pixels \(all nodata, black or NaN\)"):
        discover_frames(empty)
    # a valid strip too narrow for the decimated look: confirmed at full resolution, not refused
    edge = np.zeros((3, 2048, 2048), np.uint8)
    edge[:, :, :3] = 120  # the look takes every 8th column, from the 5th
    edge_file = _write(tmp_path / "edge_TCI.tif", edge, nodata=0)
    with pytest.warns(ZoomsrWarning, match=r"edge_TCI.tif: no valid pixels seen"):
        assert discover_frames(edge_file).frames
    good = _write(tmp_path / "good.tif", np.full((3, 32, 32), 0.1, np.float32))
    with pytest.warns(ZoomsrWarning, match=r"nan.tif: no valid pixels seen"):
        found = discover_frames([good, empty])
    assert len(found.frames) == 2


def test_16_bit_values_that_are_not_digital_numbers(tmp_path):
    eight_bit = _write(tmp_path / "b.tif", np.full((3, 32, 32), 200, np.uint16))
    with pytest.raises(DataError, match=r"b.tif: 16-bit values no higher than 200: 8-bit data"):
        discover_frames(eight_bit, dn_offset=0)
    # the user says they are digital numbers: taken as such
    assert discover_frames(eight_bit, dn_offset=0, radiometry="dn").frames[0].radiometry == "dn"

    data = np.full((3, 32, 32), 1500, np.int16)
    data[:, :8] = -9999  # an undeclared fill value
    fill = _write(tmp_path / "fill.tif", data, nodata=0)
    with pytest.raises(DataError, match=r"fill.tif: values down to -9999: .*never below -1000; "
                                        r".*gdal_edit.py -a_nodata -9999 fill.tif"):
        discover_frames(fill, dn_offset=1000)
    declared = _write(tmp_path / "declared.tif", data, nodata=-9999)
    assert discover_frames(declared, dn_offset=1000).frames[0].nodata == -9999
    # an offset product's dark pixels may go a little below 0 reflectance: fine
    dark = data.copy()
    dark[:, :8] = -300
    assert discover_frames(_write(tmp_path / "dark.tif", dark), dn_offset=1000).frames


@pytest.mark.parametrize("dtype", ["int8", "complex64", "uint32"])
def test_an_unsupported_data_type_is_said_first(tmp_path, dtype):
    """Three unlabelled bands of int8 or complex were told to pass --rgb-bands, which then
    only led to "unsupported data type" (complex with a two-line ComplexWarning)."""
    data = np.ones((3, 16, 16), dtype)
    path = _write(tmp_path / f"{dtype}.tif", data, photometric="MINISBLACK")
    for rgb in (None, (1, 2, 3)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(DataError, match=rf"^{path}: unsupported data type {dtype} "):
                discover_frames(path, rgb_bands=rgb)


def test_four_bands_without_labels_are_read_as_rgb_with_a_warning(tmp_path):
    """RGB + near-infrared (NAIP's layout): bands 1-3, said; RGBA and --rgb-bands silently."""
    data = np.random.default_rng(0).integers(1, 255, (4, 32, 32), np.uint8)
    rgbn = _write(tmp_path / "rgbn.tif", data, photometric="MINISBLACK")
    with pytest.warns(ZoomsrWarning, match=r"rgbn.tif: 4 bands .* band 4 is not alpha .*bands "
                                           r"1, 2, 3 read as red, green, blue"):
        assert discover_frames(rgbn).frames[0].bands == (1, 2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ZoomsrWarning)
        assert discover_frames(rgbn, rgb_bands=(3, 2, 1)).frames[0].bands == (3, 2, 1)
        rgba = _write(tmp_path / "rgba.tif", data, photometric="RGB", alpha="YES")
        assert discover_frames(rgba).frames[0].bands == (1, 2, 3)


def test_pixels_finer_than_sentinel2_are_warned_about(tmp_path):
    rng = np.random.default_rng(0)
    fine = _write(tmp_path / "aerial_TCI.tif", rng.integers(1, 255, (3, 64, 64), np.uint8),
                  res=1.0, photometric="RGB")
    frames = discover_frames(fine).frames
    with pytest.warns(ZoomsrWarning, match=r"aerial_TCI.tif: pixels of 0.998 m on the ground, "
                                           r"finer than Sentinel-2.s 10 m"):
        plan_grid(frames, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ZoomsrWarning)
        plan_grid(frames, 4, native=True)  # the user keeps its pixels: said nothing
        # 10 m UTM, and the training grid's own 9.555 Mercator metres (7.4 m on the ground
        # at this latitude): Sentinel-2, no warning
        plan_grid(discover_frames(write_frames(tmp_path / "s2", n=1, crs="EPSG:32633"))
                  .frames, 4)
        plan_grid(discover_frames(write_frames(tmp_path / "3857", n=1)).frames, 4)


def test_pixels_coarser_than_sentinel2s_rgb_are_warned_about_once(tmp_path):
    """20 m frames were blown up onto the 10 m grid without a word (4x the pixels, no more
    detail)."""
    rng = np.random.default_rng(0)
    coarse = [_write(tmp_path / f"T1_2024010{k}_TCI.tif",
                     rng.integers(1, 255, (3, 32, 32), np.uint8), res=20.0,
                     photometric="RGB") for k in (1, 2)]
    frames = discover_frames(tmp_path).frames
    with pytest.warns(ZoomsrWarning) as seen:
        plan_grid(frames, 4)
    said = [str(w.message) for w in seen if "coarser" in str(w.message)]
    assert len(said) == 1 and said[0].startswith(
        f"{coarse[0]} (and 1 other date(s)): pixels of ")
    assert "coarser than Sentinel-2's 10 m RGB (a 20 m product?)" in said[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ZoomsrWarning)
        plan_grid(frames, 4, native=True)  # the user keeps its pixels: said nothing


def test_a_folder_named_like_a_raster_is_said_to_be_one(tmp_path):
    """In an input folder, it was "file not found"."""
    rng = np.random.default_rng(0)
    _write(tmp_path / "T1_20240101_TCI.tif", rng.integers(1, 255, (3, 16, 16), np.uint8))
    (tmp_path / "T1_20240102_TCI.tif").mkdir()
    with pytest.raises(DataError, match=r"T1_20240102_TCI.tif: is a folder, not a raster file"):
        discover_frames(tmp_path)


def test_a_geographic_native_grid_warns_of_its_ground_aspect(tmp_path):
    rng = np.random.default_rng(0)
    north = _write(tmp_path / "n_TCI.tif", rng.integers(1, 255, (3, 16, 16), np.uint8),
                   crs="EPSG:4326", res=1e-4, photometric="RGB")
    frames = discover_frames(north).frames
    frames = [dataclasses.replace(frames[0], transform=Affine(1e-4, 0, 10.0, 0, -1e-4, 53.0))]
    with pytest.warns(ZoomsrWarning, match=r"n_TCI.tif: its square 0.0001 deg pixels are 6.69 x "
                                           r"11.1 m on the ground here \(1.7:1\)"):
        plan_grid(frames, 4, native=True)
    equator = [dataclasses.replace(frames[0], transform=Affine(1e-4, 0, 10.0, 0, -1e-4, 1.0))]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ZoomsrWarning)
        plan_grid(equator, 4, native=True)


def test_a_geographic_grid_is_in_degrees(tmp_path):
    grid = TargetGrid(rasterio.crs.CRS.from_epsg(4326), Affine(1e-4, 0, 10, 0, -1e-4, 50), 8,
                      8, 4)
    assert grid.unit == "deg"
    assert TargetGrid(rasterio.crs.CRS.from_epsg(32633), Affine.identity(), 8, 8, 4).unit == "m"


def test_damage_inside_an_scl_is_named_before_any_work(tmp_path):
    """The SCL was only read at its corners: a damaged tile inside stopped the run mid-way."""
    rng = np.random.default_rng(0)
    _write(tmp_path / "S2_20240101_TCI.tif", rng.integers(1, 255, (3, 128, 128), np.uint8))
    scl = _write(tmp_path / "S2_20240101_SCL.tif", rng.integers(0, 11, (1, 64, 64), np.uint8),
                 res=20.0, tiled=True, blockxsize=16, blockysize=16, compress="deflate")
    assert discover_frames(tmp_path).frames[0].clouds is not None
    damage_middle_tile(scl)
    with pytest.raises(DataError, match=r"^/.*S2_20240101_SCL.tif: corrupt raster data \("):
        discover_frames(tmp_path)


def test_grid_errors_name_the_file_by_its_path(tmp_path):
    """Two dates' files of one name in their own folders: the error says which one."""
    rng = np.random.default_rng(0)
    for d in ("d1", "d2"):
        (tmp_path / d).mkdir()
    _write(tmp_path / "d1" / "TCI.tif", rng.integers(1, 255, (3, 32, 32), np.uint8))
    with (pytest.warns(rasterio.errors.NotGeoreferencedWarning),  # writing it: expected
          rasterio.open(tmp_path / "d2" / "TCI.tif", "w", driver="GTiff", width=32, height=32,
                        count=3, dtype="uint8", photometric="RGB") as ds):
        ds.write(rng.integers(1, 255, (3, 32, 32), np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rasterio's NotGeoreferencedWarning is not let out
        frames = discover_frames(tmp_path).frames
    with pytest.raises(DataError, match=rf"^{tmp_path / 'd2' / 'TCI.tif'}: has no CRS"):
        plan_grid(frames, 4)


def test_a_file_s_look_is_charged_once_whichever_threads_read_it(tmp_path, monkeypatch):
    """With more threads than files each file's look is read in parts; the budget is charged
    for the whole look once, so a file too large for it takes nothing from the others (its
    parts each charged a share: a dropped file's shares were lost to the smaller files)."""
    import rasterio

    from zoomsr.inference.inputs import rasters

    rng = np.random.default_rng(0)
    big = _write(tmp_path / "S2_20240101_TCI.tif", rng.integers(1, 255, (3, 256, 256), np.uint8))
    small = _write(tmp_path / "S2_20240102_TCI.tif", rng.integers(1, 255, (3, 64, 64), np.uint8))
    sizes = []
    for path in (big, small):
        with rasterio.open(path) as ds:
            sizes.append(3 * int(np.prod(rasters.sample_shape(ds))))
    monkeypatch.setattr(rasters, "LOOK_AHEAD_BYTES", (sizes[0] + sizes[1]) // 2)
    for _ in range(3):
        assert sorted(rasters.look_ahead([big, small], workers=4)) == [str(small)]


def test_looks_ahead_stop_at_their_memory_budget(tmp_path, monkeypatch):
    """Looks made ahead are held until discovery ends: at most LOOK_AHEAD_BYTES of them; the
    other files are looked at in order, with the same frames."""
    from zoomsr.inference.inputs import rasters

    rng = np.random.default_rng(0)
    paths = [_write(tmp_path / f"S2_2024010{i}_TCI.tif",
                    rng.integers(1, 255, (3, 64, 64), np.uint8)) for i in range(1, 6)]
    assert len(rasters.look_ahead(paths, workers=2)) == 5
    monkeypatch.setattr(rasters, "LOOK_AHEAD_BYTES", 2 * 3 * 64 * 64)
    assert len(rasters.look_ahead(paths, workers=2)) == 2
    monkeypatch.setattr(rasters, "workers_available", lambda: 2)
    limited = discover_frames(paths).frames
    monkeypatch.setattr(rasters, "look_ahead", lambda files, workers=None: {})
    assert discover_frames(paths).frames == limited


@pytest.mark.parametrize("count", [3, 4])
def test_black_without_a_declared_nodata_is_nodata_when_warped(tmp_path, cli, count):
    """SAFE JP2s declare no nodata: warped onto the default grid, a date's black swath edge
    was blended with its neighbours and its 0s nudged to 1, so it counted as valid data (the
    LR mosaic there was the mean of 1/255 and the other date's 150). With a 4th band (NIR,
    not black there), which GDAL takes for alpha in 8-bit data, the edge came out 1..8."""
    from rasterio.transform import from_origin

    folder = tmp_path / "in"
    folder.mkdir()
    profile = {"driver": "GTiff", "width": 120, "height": 120, "count": count,
               "dtype": "uint8", "crs": "EPSG:32630",
               "transform": from_origin(500000, 4000000, 10, 10)}
    edge = np.full((count, 120, 120), 150, np.uint8)
    edge[:3, np.tri(120, 120, dtype=bool)[::-1]] = 0  # a swath edge, no nodata declared
    for name, pixels in (("S2A_20200101_TCI.tif", edge),
                         ("S2A_20200111_TCI.tif", np.full((count, 120, 120), 150, np.uint8))):
        with rasterio.open(folder / name, "w", **profile) as dst:
            dst.write(pixels)
    out = tmp_path / "x.tif"
    code, _, err = cli("infer", folder, "-o", out, "--save-lr", "--model", "rrdbnet", "-c",
                       "num_in_ch=6,num_feat=8,num_block=1,num_grow_ch=4", "--random-weights",
                       "--no-progress", "--device", "cpu", "--rgb-bands", "1,2,3")
    assert code == 0, err
    with rasterio.open(tmp_path / "x.lr.tif") as ds:
        lr, valid = ds.read(), ds.read_masks(1) > 0
    assert valid.mean() > 0.5 and set(np.unique(lr[:, valid])) == {150}
