"""Float pixel values that are no reflectance: an undeclared fill value, 8-bit data stored as
float. Refused before any work, with the way out; real reflectance still read."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from zoomsr.errors import DataError
from zoomsr.inference import discover_frames
from zoomsr.inference.inputs import to_tci


def _write(path: Path, data: np.ndarray, nodata: float | None = None) -> Path:
    """``data`` ``[3, h, w]`` as an RGB GeoTIFF (10 m UTM)."""
    _, h, w = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=3,
                       dtype=data.dtype.name, crs="EPSG:32633", nodata=nodata, photometric="RGB",
                       transform=Affine(10, 0, 500000.0, 0, -10, 4100000.0)) as ds:
        ds.write(data)
    return path


def _reflectance(dtype: str = "float32") -> np.ndarray:
    return (np.random.default_rng(0).random((3, 32, 32)) * 0.2 + 0.03).astype(dtype)


@pytest.mark.parametrize("fill", [-9999.0, -1.5, -1.0])
def test_a_float_fill_value_is_refused_with_the_nodata_fix(tmp_path, fill):
    """Not read as valid black pixels: named, with the command that declares it."""
    data = _reflectance()
    data[:, :8] = fill
    path = _write(tmp_path / "fill.tif", data)
    with pytest.raises(DataError) as err:
        discover_frames(path)
    message = str(err.value)
    assert message.startswith(f"{path}: values down to {fill:g}: ") and "\n" not in message
    assert message.endswith(f"(gdal_edit.py -a_nodata {fill:g} fill.tif)")
    # declared as the file's nodata: those pixels are missing data, the rest read
    declared = _write(tmp_path / "declared.tif", data, nodata=fill)
    frame = discover_frames(declared).frames[0]
    assert frame.radiometry == "reflectance" and frame.nodata == fill


def test_small_negative_reflectance_is_read(tmp_path):
    """Atmospheric correction leaves dark pixels a little below 0 (ESA's offset: to -0.1)."""
    data = _reflectance("float64")
    data[:, :8] = -0.05
    data[:, 8:10] = -0.5
    data[0, 0, 0] = np.nan  # not a value: invalid, not a fill
    frame = discover_frames(_write(tmp_path / "dark.tif", data)).frames[0]
    assert frame.radiometry == "reflectance"


def test_8_bit_values_stored_as_float_are_named_with_a_fix_that_works(tmp_path):
    rng = np.random.default_rng(0)
    tci = rng.integers(1, 255, (3, 32, 32)).astype(np.uint8)
    path = _write(tmp_path / "f255.tif", tci.astype(np.float32), nodata=0)
    with pytest.raises(DataError) as err:
        discover_frames(path)
    message = str(err.value)
    assert message.startswith(f"{path}: float data holding whole numbers up to 254: 8-bit data")
    assert "gdal_translate -ot Byte f255.tif" in message and "--radiometry dn" not in message
    # the advice: the same values as uint8, read as a TCI (not 10x darker as DN would be)
    fixed = _write(tmp_path / "f255_u8.tif", tci, nodata=0)
    frame = discover_frames(fixed).frames[0]
    assert frame.radiometry == "tci"
    np.testing.assert_allclose(to_tci(tci, frame.radiometry), tci / 255.0, atol=1e-6)
    # scaled reflectance that is not whole numbers (percent): still "looks scaled"
    percent = _write(tmp_path / "pct.tif", _reflectance() * 100)
    with pytest.raises(DataError, match=r"pct.tif: float data with values up to [\d.]+: not "
                                        r"reflectance in \[0, 1\] \(looks scaled"):
        discover_frames(percent)
    # the user says they are digital numbers: taken as such
    assert discover_frames(path, radiometry="dn", dn_offset=0).frames[0].radiometry == "dn"


def test_reflectance_scaled_down_twice_is_refused(tmp_path):
    """Reflectance divided by 10000 once too often (values up to 0.0002) was read without a
    word: the output came out black, with its mask saying valid."""
    tiny = _write(tmp_path / "tiny.tif", _reflectance() * 1e-3)
    for radiometry in ("auto", "reflectance"):
        with pytest.raises(DataError, match=(
                rf"^{re.escape(str(tiny))}: float reflectance of at most 0\.0002\d*: no scene "
                r"is that dark .*scaled down twice")):
            discover_frames(tiny, radiometry=radiometry)
    # a dark scene (open water, its brightest pixel 0.03) is read
    dark = _write(tmp_path / "water.tif", _reflectance() * 0.13)
    assert discover_frames(dark).frames[0].radiometry == "reflectance"


@pytest.mark.parametrize(("dtype", "fill"), [("float32", -9999), ("int16", -9999)])
def test_a_fill_value_in_band_files_names_the_file_that_holds_it(tmp_path, dtype, fill):
    """The gdal_edit.py command must fix the green file, not the red one."""
    scale = 1.0 if dtype == "float32" else 10000.0
    paths = []
    for name in ("B04", "B03", "B02"):
        data = (_reflectance()[:1] * scale).astype(dtype)
        if name == "B03":
            data[:, :8] = fill
        path = tmp_path / f"T33_20240101_{name}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=1, dtype=dtype,
                           crs="EPSG:32633", transform=Affine(10, 0, 5e5, 0, -10, 4.1e6)) as ds:
            ds.write(data)
        paths.append(path)
    fix = rf"\(gdal_edit.py -a_nodata {fill} T33_20240101_B03.tif\)$"
    with pytest.raises(DataError, match=rf"^{paths[1]}: values down to {fill}: .*{fix}"):
        discover_frames(paths, dn_offset=0)


@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_a_dn_fill_value_is_refused_whatever_radiometry_says(tmp_path, dtype):
    """--radiometry dn overrides the 8-bit heuristic, not a fill value (read, -9999 DN were
    valid black pixels)."""
    data = (_reflectance() * 10000 + 1000).astype(dtype)
    data[:, :8] = -9999
    path = _write(tmp_path / "dn.tif", data)
    with pytest.raises(DataError, match=r"dn.tif: values down to -9999: Sentinel-2 digital "
                                        r"numbers are never below -1000.*-a_nodata -9999 dn.tif"):
        discover_frames(path, radiometry="dn", dn_offset=1000)


@pytest.mark.parametrize("grid", [["--native-grid"], []])
@pytest.mark.parametrize("dtype,fill", [("float32", -9999.0), ("float32", -1.0),
                                        ("int16", -9999), ("int16", -2000)])
def test_a_fill_value_the_discovery_preview_missed_is_refused_when_read(tmp_path, cli, dtype,
                                                                        fill, grid):
    """Discovery looks at a decimated preview: a fill column it did not sample was read as
    valid black pixels, the run exited 0. Warped onto the default grid, the fill was blended
    with its neighbours (-9999 came out -7136, -1.0 above the floor, then read as valid
    black): the files' own pixels under each window are looked at."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        if dtype == "float32":
            pixels = (0.05 + 0.1 * rng.random((3, 60, 520))).astype(np.float32)
        else:
            pixels = rng.integers(1500, 2500, (3, 60, 520)).astype(np.int16)
        if k == 0:
            pixels[:, :, 200] = fill  # between the preview's samples
        with rasterio.open(folder / f"S2A_2020010{k + 1}_B.tif", "w", driver="GTiff",
                           width=520, height=60, count=3, dtype=dtype, crs="EPSG:32630",
                           transform=Affine(10, 0, 500000, 0, -10, 4000000)) as dst:
            dst.write(pixels)
    if dtype == "float32":  # the preview alone does not see it
        discover_frames([folder], rgb_bands=(1, 2, 3))
    offset = [] if dtype == "float32" else ["--dn-offset", "0"]
    code, _, err = cli("infer", folder, "-o", tmp_path / "x.tif", *grid, *offset,
                       "--rgb-bands", "1,2,3", "--model", "rrdbnet", "-c",
                       "num_in_ch=6,num_feat=8,num_block=1,num_grow_ch=4", "--random-weights",
                       "--no-progress", "--device", "cpu")
    assert code == 2 and f"S2A_20200101_B.tif: values down to {fill:g}" in err, err
    assert "gdal_edit.py -a_nodata" in err and not (tmp_path / "x.tif").exists()
