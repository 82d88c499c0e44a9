"""The builder on the real files in ../shared/data/real: a Sentinel-2 L2A scene (Morocco, UTM 29N,
decimated to 100 m, SCL 200 m) and two NAIP images (North Dakota, NAD83 UTM 14N, 5 m).

The two places differ, so each real source is paired with a generated raster of the other kind
placed over it; the real source's pixels are checked against rasterio's own reading of them.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from builder_rasters import make_s2_scene, utc, write_raster
from rasterio.warp import transform as warp_transform

from zoomsr.data import S2NAIPDataset
from zoomsr.data.builder import (
    BuildConfig,
    Sources,
    build_dataset,
    discover_highres,
    discover_sentinel2,
    load_index,
)
from zoomsr.data.builder.build import TCI_SATURATION
from zoomsr.data.builder.cloud import DEFAULT_CLOUD_CLASSES
from zoomsr.data.builder.reproject import GridWindow, resampling, warp
from zoomsr.data.check import check_dataset
from zoomsr.data.layout import read_band_series, scan_pairs
from zoomsr.errors import ZoomsrWarning
from zoomsr.grid import LR_PIXELS, TILE_SIZE_M, Tile, tile_for_lonlat

#: A partly cloudy spot of the real scene (SCL classes 3/8/9/10 cover ~25-50 % around it).
CLOUDY_LONLAT = (-10.9963, 25.2761)


@pytest.fixture(scope="module")
def real(shared_dir):
    return shared_dir / "data" / "real"


def sample_at(src, band: int, xs: np.ndarray, ys: np.ndarray, crs: str = "EPSG:3857",
              bilinear: bool = False) -> np.ndarray:
    """Values of ``src`` at points given in ``crs``, by rasterio's own reading of the file:
    the pixel holding the point (nearest) or a bilinear blend of the 4 nearest pixel centres."""
    ux, uy = warp_transform(crs, src.crs, xs.ravel().tolist(), ys.ravel().tolist())
    cols, rows = ~src.transform @ (np.asarray(ux), np.asarray(uy))
    data = src.read(band).astype(np.float64)
    if not bilinear:
        return data[np.floor(rows).astype(int), np.floor(cols).astype(int)].reshape(xs.shape)
    c, r = cols - 0.5, rows - 0.5
    c0, r0 = np.floor(c).astype(int), np.floor(r).astype(int)
    fc, fr = c - c0, r - r0
    out = (data[r0, c0] * (1 - fc) * (1 - fr) + data[r0, c0 + 1] * fc * (1 - fr)
           + data[r0 + 1, c0] * (1 - fc) * fr + data[r0 + 1, c0 + 1] * fc * fr)
    return out.reshape(xs.shape)


def centres(grid: GridWindow) -> tuple[np.ndarray, np.ndarray]:
    cols, rows = np.meshgrid(np.arange(grid.width) + 0.5, np.arange(grid.height) + 0.5)
    return grid.transform @ (cols, rows)


def test_real_scene_discovery(real):
    (scene,) = discover_sentinel2([real / "sentinel2-l2a-29RKH"])
    assert scene.id == "S2A_29RKH_20200219_0_L2A"
    assert scene.datetime == dt.datetime(2020, 2, 19, 11, 34, 25, 405000, tzinfo=dt.timezone.utc)
    assert (scene.level, scene.processing_baseline, scene.dn_offset) == ("L2A", "02.14", 0)
    assert set(scene.files) == {"tci", "b02", "b03", "b04", "b08", "scl"}
    assert scene.footprint.crs == "EPSG:32629"
    images = discover_highres([real / "naip"])
    assert [(i.id, i.date) for i in images] == [
        ("m_4709963_se_14_1_20190904", dt.date(2019, 9, 4)),
        ("m_4709963_se_14_1_20200831", dt.date(2020, 8, 31))]
    assert images[0].footprint.crs == "EPSG:26914"


def test_real_tci_reprojection_matches_rasterio_sampling(real):
    """Nearest: every output pixel is the source pixel under its centre; bilinear: the
    bilinear blend of the source pixel centres around it; a bright pixel lands in its tile."""
    path = str(real / "sentinel2-l2a-29RKH" / "TCI.tif")
    centre = tile_for_lonlat(-11.42, 24.80)
    grid = GridWindow(centre.col - 2, centre.row - 2, 4, 4, LR_PIXELS)
    xs, ys = centres(grid)
    with rasterio.open(path) as src:
        near, valid = warp(path, grid, resampling("nearest"), [1])
        assert valid.all()
        expected = sample_at(src, 1, xs, ys)
        assert (near[0] == expected).mean() > 0.995
        lin, _ = warp(path, grid, resampling("bilinear"), [1])
        diff = np.abs(lin[0].astype(float) - sample_at(src, 1, xs, ys, bilinear=True))
        assert np.percentile(diff, 99) <= 1.0 and diff.max() <= 2
        # A recognisable point: the brightest source pixel in the window's middle.
        data = src.read(1)
        x0, y0 = xs[40:90, 40:90], ys[40:90, 40:90]
        vals = sample_at(src, 1, x0, y0)
        k = np.unravel_index(vals.argmax(), vals.shape)
        ux, uy = warp_transform("EPSG:3857", src.crs, [x0[k]], [y0[k]])
        col, row = ~src.transform @ (ux[0], uy[0])
        # The source pixel's centre, projected to EPSG:3857, falls in the tile/pixel whose
        # value is that pixel's.
        cx, cy = src.transform @ (np.floor(col) + 0.5, np.floor(row) + 0.5)
        mx, my = warp_transform(src.crs, "EPSG:3857", [cx], [cy])
        gc, gr = ~grid.transform @ (mx[0], my[0])
        assert near[0, int(gr), int(gc)] == data[int(row), int(col)]


@pytest.fixture(scope="module")
def real_s2_build(real, tmp_path_factory):
    """The real Sentinel-2 scene paired with a generated 2020-03-01 image (EPSG:3857) over
    6 x 6 tiles around a partly cloudy spot; every frame kept to audit cloud fractions."""
    tmp = tmp_path_factory.mktemp("real_s2")
    centre = tile_for_lonlat(*CLOUDY_LONLAT)
    corner = Tile(centre.col - 3, centre.row - 3).bounds
    size = 6 * TILE_SIZE_M
    rng = np.random.default_rng(0)
    data = rng.integers(40, 220, (3, 200, 200), dtype=np.uint8)
    res = (size + 20) / 200
    hr = write_raster(tmp / "aerial_20200301.tif", data, "EPSG:3857",
                      Affine(res, 0, corner.left - 10, 0, -res, corner.top + 10))
    sources = Sources(discover_sentinel2([real / "sentinel2-l2a-29RKH"]), discover_highres([hr]))
    config = BuildConfig(bands=("tci", "b08"), max_cloud=1.0, cloud_method="scl")
    return build_dataset(tmp / "out", sources, config), centre


def test_real_scene_through_the_builder(real, real_s2_build):
    result, centre = real_s2_build
    assert result.counts["tiles_written"] == 36
    assert check_dataset(result.root, bands=("tci", "b08")).errors == []
    ds = S2NAIPDataset(result.root, bands=("tci", "b08"), n_images=1)
    assert len(ds) == 36 and ds[0]["lr"].shape == (4, 32, 32)
    grid = GridWindow(centre.col - 3, centre.row - 3, 6, 6, LR_PIXELS)
    xs, ys = centres(grid)
    folder = real / "sentinel2-l2a-29RKH"
    with rasterio.open(folder / "TCI.tif") as tci, rasterio.open(folder / "B08.tif") as b08:
        want_tci = sample_at(tci, 1, xs, ys, bilinear=True)
        want_b08 = sample_at(b08, 1, xs, ys, bilinear=True)
    for pair in scan_pairs(result.root):
        tile = Tile.parse(pair.tile)
        rows, cols = grid.slices(tile)
        got = read_band_series(pair.band_path("tci"), "tci")[0, :, :, 0].astype(float)
        assert np.percentile(np.abs(got - want_tci[rows, cols]), 99) <= 1.0
        # Baseline 02.14: no offset, 16-bit files hold the scene's digital numbers.
        got = read_band_series(pair.band_path("b08"), "b08")[0, :, :, 0].astype(float)
        assert np.percentile(np.abs(got - want_b08[rows, cols]), 99) <= 2.0


def test_real_scl_cloud_fractions_match_direct_counts(real, real_s2_build):
    result, centre = real_s2_build
    grid = GridWindow(centre.col - 3, centre.row - 3, 6, 6, LR_PIXELS)
    xs, ys = centres(grid)
    with rasterio.open(real / "sentinel2-l2a-29RKH" / "SCL.tif") as scl:
        classes = sample_at(scl, 1, xs, ys)
    cloud = np.isin(classes, DEFAULT_CLOUD_CLASSES)
    fractions = []
    for rec in load_index(result.root)["tiles"]:
        if rec["status"] != "written":
            assert rec["reason"] == "highres_partly_outside_or_nodata"  # the ring around
            continue
        rows, cols = grid.slices(Tile.parse(rec["tile"]))
        (frame,) = rec["frames"]
        direct = float(cloud[rows, cols].mean())
        assert frame["cloud_method"] == "scl"
        assert abs(frame["cloud_fraction"] - direct) <= 0.02, rec["tile"]
        fractions.append(direct)
    assert max(fractions) > 0.3 and min(fractions) < 0.1  # the window really is mixed
    # With the default 10 % limit the cloudy tiles lose their only frame and are skipped.
    index = load_index(result.root)
    assert index["sentinel2"][0]["files"]["scl"].endswith("SCL.tif")


def test_real_tci_from_bands_matches_esa_tci(real):
    """ESA's L2A TCI is DN * 255 / 2500 (clipped 1..255): the builder's fallback reproduces it."""
    folder = real / "sentinel2-l2a-29RKH"
    with rasterio.open(folder / "TCI.tif") as src:
        tci = src.read().astype(int)
    bands = np.stack([rasterio.open(folder / f"B0{k}.tif").read(1) for k in (4, 3, 2)])
    valid = bands.min(axis=0) > 0
    made = np.clip(np.rint(bands * (255 / TCI_SATURATION["L2A"])), 1, 255)
    diff = np.abs(made - tci)[:, valid]
    assert diff.mean() < 0.5 and (diff <= 1).mean() > 0.95


def test_real_naip_reprojection_and_date_window(real, tmp_path):
    """Real NAIP (2019-09-04 and 2020-08-31) with generated Sentinel-2 scenes over it: the date
    window decides which capture gets the series; NAIP pixels match rasterio's sampling."""
    images = discover_highres([real / "naip"])
    with rasterio.open(images[0].path) as src:
        left, bottom, right, top = src.bounds
        cx, cy = (left + right) / 2, (bottom + top) / 2
        lon, lat = warp_transform(src.crs, "EPSG:4326", [cx], [cy])
    utm = "EPSG:32614"
    ux, uy = warp_transform("EPSG:4326", utm, lon, lat)
    box = (round(ux[0] / 10) * 10 - 700, round(uy[0] / 10) * 10 - 700,
           round(ux[0] / 10) * 10 + 700, round(uy[0] / 10) * 10 + 700)
    s2 = tmp_path / "s2"
    for when in (utc(2019, 8, 15), utc(2020, 7, 1)):
        make_s2_scene(s2 / f"S2A_14TNT_{when:%Y%m%d}_0_L2A", when, box, (ux[0], uy[0]),
                      crs=utm)
    scenes = discover_sentinel2([s2])
    centre = tile_for_lonlat(lon[0], lat[0])
    bbox = (Tile(centre.col - 1, centre.row - 1).lonlat_bounds.left,
            Tile(centre.col + 1, centre.row + 1).lonlat_bounds.bottom,
            Tile(centre.col + 1, centre.row + 1).lonlat_bounds.right,
            Tile(centre.col - 1, centre.row - 1).lonlat_bounds.top)
    shrink = 1e-7  # keep the box strictly inside the 3 x 3 tiles
    bbox = (bbox[0] + shrink, bbox[1] + shrink, bbox[2] - shrink, bbox[3] - shrink)

    # 90 days: the newer capture (2020-08-31) has the 2020-07-01 frame (61 days) and gets the
    # series; the 2019 capture is 320 days from it, so it is not paired.
    wide = build_dataset(tmp_path / "wide", Sources(scenes, images), BuildConfig(bbox=bbox))
    assert wide.counts["tiles_written"] == 9
    assert {p.image_id for p in scan_pairs(wide.root)} == {"m_4709963_se_14_1_20200831"}
    rec = load_index(wide.root)["tiles"][0]
    assert [i["status"] for i in rec["images"]] == ["primary", "series_outside_window"]
    # 30 days: 2020-07-01 is 61 days from the 2020 capture: the 2019 capture gets the
    # 2019-08-15 frame (20 days) instead.
    # 2020-07-01 is within 30 days of no capture: said (it was in no record, not even read)
    with pytest.warns(ZoomsrWarning, match=(
            r"^1 Sentinel-2 scene\(s\) used by no pair: 1 outside 30 days of every high-res "
            r"capture it covers \(e\.g\. S2A_14TNT_20200701_0_L2A: 61 days from the nearest")):
        narrow = build_dataset(tmp_path / "narrow", Sources(scenes, images),
                               BuildConfig(bbox=bbox, window_days=30))
    assert {p.image_id for p in scan_pairs(narrow.root)} == {"m_4709963_se_14_1_20190904"}
    frames = load_index(narrow.root)["tiles"][0]["frames"]
    # (2020-07-01 is within 30 days of no capture: it is not even read.)
    assert [(f["datetime"][:10], f["status"], f["days_from_highres"]) for f in frames] == [
        ("2019-08-15", "kept", -20)]
    assert check_dataset(narrow.root).errors == []
    # The NAIP chunks are the real image, resampled bilinearly onto the 2.389 m grid.
    grid = GridWindow(centre.col - 1, centre.row - 1, 3, 3, 128)
    xs, ys = centres(grid)
    with rasterio.open(images[0].path) as src:
        want = sample_at(src, 2, xs, ys, bilinear=True)
    from zoomsr.io.png import read_png

    for pair in scan_pairs(narrow.root):
        rows, cols = grid.slices(Tile.parse(pair.tile))
        got = read_png(pair.naip_path)[:, :, 1].astype(float)
        assert np.percentile(np.abs(got - want[rows, cols]), 99) <= 1.5
    meta = json.loads((narrow.root / "zoomsr_dataset.json").read_text())
    assert meta["config"]["window_days"] == 30
