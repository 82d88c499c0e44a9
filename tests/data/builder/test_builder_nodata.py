"""Where a high-res (or Sentinel-2) file has no data: any nodata value, GDAL's own mask, an
alpha band, and everything outside the image. Such pixels must never reach a pair."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from builder_rasters import make_s2_scene, utc
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from zoomsr.data.builder import load_index
from zoomsr.data.builder.reproject import GridWindow, resampling, warp
from zoomsr.data.layout import scan_pairs
from zoomsr.grid import Tile, tiles_for_bounds
from zoomsr.io.png import read_png

#: A small source in EPSG:3857, 1.5 m pixels (not aligned with the tile grid), 4 x 3 tiles.
TILE0 = Tile(30000, 48000)
RES = 1.5
MARGIN = 3.0  # metres: tiles this close to an edge may hold a resampled edge pixel


def source_box() -> tuple[float, float, float, float, int, int]:
    """(left, top, mid x, res, width, height) of the source: the west half (x < mid) is the
    part marked invalid."""
    b0 = TILE0.bounds
    left, top = b0.left + 40.0, b0.top - 40.0
    width, height = round(4 * 305.75 / RES), round(3 * 305.75 / RES)
    return left, top, left + (width // 2) * RES, RES, width, height


def write_source(path, nodata: float | None, *, photometric: str | None, mask: bool = False,
                 count: int = 4, dtype: str = "uint8", fill: int | None = None,
                 compress: str = "deflate") -> None:
    """A source whose west half is ``fill`` (default: ``nodata``), with an internal mask over
    it when ``mask``. ``photometric=None`` is GDAL's default: a 4-band 8-bit file gets its
    4th band tagged alpha (as rasterio writes NAIP-like RGBN unless told otherwise)."""
    left, top, _, res, width, height = source_box()
    # smooth, so that JPEG keeps every valid value (and the 4th band, if alpha) far from 0
    yy, xx = np.mgrid[0:height, 0:width]
    wave = (np.sin(xx / 37.0) * np.cos(yy / 53.0) + 1) / 2
    scale = 1 if dtype == "uint8" else 50
    data = np.stack([(60 + 100 * wave + 20 * k) * scale for k in range(count)]).astype(dtype)
    data[:, :, : width // 2] = nodata if fill is None else fill
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count,
               "dtype": dtype, "crs": "EPSG:3857", "transform": Affine(res, 0, left, 0, -res, top),
               "nodata": nodata, "tiled": True, "blockxsize": 256, "blockysize": 256,
               "compress": compress}
    if photometric:
        profile["photometric"] = photometric
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if mask:
            m = np.full((height, width), 255, np.uint8)
            m[:, : width // 2] = 0
            dst.write_mask(m)


def expected_tiles(pixels: int) -> tuple[GridWindow, list[Tile], list[Tile]]:
    """The grid over the source plus a ring of tiles wholly outside it; the tiles wholly in
    its valid (east) half and those wholly in its invalid half or outside the image."""
    left, top, mid, res, width, height = source_box()
    right, bottom = left + width * res, top - height * res
    tiles = tiles_for_bounds(left, bottom, right, top)
    cols, rows = [t.col for t in tiles], [t.row for t in tiles]
    grid = GridWindow(min(cols) - 1, min(rows) - 1, max(cols) - min(cols) + 3,
                      max(rows) - min(rows) + 3, pixels)
    good, bad = [], []
    for r in range(grid.row0, grid.row0 + grid.rows):
        for c in range(grid.col0, grid.col0 + grid.cols):
            b = Tile(c, r).bounds
            inside = (b.left >= left + MARGIN and b.right <= right - MARGIN
                      and b.bottom >= bottom + MARGIN and b.top <= top - MARGIN)
            if inside and b.left >= mid + MARGIN:
                good.append(Tile(c, r))
            elif (b.right <= mid - MARGIN or b.left >= right or b.right <= left
                  or b.top <= bottom or b.bottom >= top):
                bad.append(Tile(c, r))
    return grid, good, bad


def assert_validity(path, pixels: int, bands: list[int], src_nodata: float | None = None
                    ) -> None:
    grid, good, bad = expected_tiles(pixels)
    assert good and bad
    for method in ("nearest", "bilinear"):
        data, valid = warp(str(path), grid, resampling(method), bands, src_nodata=src_nodata)
        for tile in good:
            assert grid.chunk(valid, tile).all(), (method, tile)
        for tile in bad:
            assert not grid.chunk(valid, tile).any(), (method, tile)
            assert not grid.chunk(data, tile).any(), (method, tile)


@pytest.mark.parametrize("nodata", [255, 254, 7, 1])
@pytest.mark.parametrize("photometric", [None, "minisblack"])
def test_a_nonzero_nodata_value_is_nodata_inside_and_around_the_image(tmp_path, nodata,
                                                                      photometric):
    """Any nodata value, with the 4th band tagged alpha (GDAL's default) or not (NAIP's
    files). With the alpha tag, the warped image's initial value was the nodata value, alpha
    included: 255 (or 254, 7, 1) there made the nodata half and every tile off the image
    valid."""
    path = tmp_path / "hr.tif"
    write_source(path, nodata, photometric=photometric)
    assert_validity(path, 128, [1, 2, 3])


@pytest.mark.parametrize("case", [
    dict(photometric="minisblack"),                  # mask alone, RGBN
    dict(photometric=None),                          # mask and a 4th band tagged alpha
    dict(photometric="minisblack", nodata=0),        # mask and a nodata value
    dict(photometric="ycbcr", count=3, compress="jpeg"),  # an aerial JPEG COG's way
    dict(photometric=None, compress="jpeg"),         # 4-band JPEG
])
def test_the_files_own_mask_is_nodata(tmp_path, case):
    """GDAL's internal mask over near-black, nonzero collar values (3): masked pixels are
    nodata whatever the file also has (a nodata value, an alpha band)."""
    path = tmp_path / "hr.tif"
    case = dict(case)
    write_source(path, case.pop("nodata", None), mask=True, fill=3, **case)
    with rasterio.open(path) as src:
        assert "per_dataset" in {f.name for f in src.mask_flag_enums[0]}
    assert_validity(path, 128, [1, 2, 3])


def test_a_mask_and_a_nodata_value_both_count(tmp_path):
    """With a mask, GDAL's warper took pixels both masked and nodata for valid (the file's
    west edge here), and a mask does not make nodata pixels outside it valid either."""
    path = tmp_path / "hr.tif"
    write_source(path, 0, photometric="minisblack", mask=True, fill=3)
    grid, good, bad = expected_tiles(128)
    left, top, _, res, _, _ = source_box()
    holed = good[0]  # nodata pixels (0) in one tile of the unmasked half
    b = holed.bounds
    c0, r0 = round((b.left + 100 - left) / res), round((top - b.top + 100) / res)
    with rasterio.open(path, "r+") as dst:
        data = dst.read()
        data[:, :, :20] = 0  # masked and nodata
        data[:, r0:r0 + 10, c0:c0 + 10] = 0
        dst.write(data)
    for method in ("nearest", "bilinear"):
        _, valid = warp(str(path), grid, resampling(method), [1, 2, 3])
        assert 0 < grid.chunk(valid, holed).mean() < 1
        assert all(grid.chunk(valid, t).all() for t in good[1:])
        assert not any(grid.chunk(valid, t).any() for t in bad), method


def test_sixteen_bit_bands_with_nodata_65535(tmp_path):
    """The Sentinel-2 side reads its bands through the same warp (with nodata 0 when the file
    declares none): 65535 and a mask mark nodata there too."""
    plain, masked = tmp_path / "B08.tif", tmp_path / "B04.tif"
    write_source(plain, 65535, photometric=None, count=1, dtype="uint16")
    write_source(masked, None, photometric=None, count=1, dtype="uint16", mask=True, fill=7)
    assert_validity(plain, 32, [1], src_nodata=0)
    assert_validity(masked, 32, [1], src_nodata=0)


# ------------------------------------------------------------------------------ builds


def _hr_copy(builder_scene, path, *, nodata: float | None, fill: int, mask: bool = False,
             compress: str = "deflate"):
    """The fixture's high-res image (4-band, 4th band tagged alpha as rasterio writes it)
    with the part west of P's tile's centre set to ``fill``: marked by ``nodata`` or a mask.
    Returns the x (EPSG:3857) where the valid part starts."""
    with rasterio.open(builder_scene.hr_path) as src:
        profile, data = src.profile, src.read()
    pb = builder_scene.tile_p.bounds
    mid = (pb.left + pb.right) / 2
    split = int(round((mid - profile["transform"].c) / profile["transform"].a))
    data[:, :, :split] = fill
    data[:, :, split:] = np.maximum(data[:, :, split:], 10)  # valid pixels are not near black
    profile.update(nodata=nodata, compress=compress)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if mask:
            m = np.full(data.shape[1:], 255, np.uint8)
            m[:, :split] = 0
            dst.write_mask(m)
    return mid


@pytest.mark.parametrize("kind", ["nodata255", "mask"])
def test_a_build_skips_the_nodata_part_of_a_high_res_image(cli, builder_scene, tmp_path, kind):
    """The auditor's case on generated rasters: a high-res image with nodata 255 over its west
    part (or a JPEG COG's mask over a near-black collar) gave pairs of pure white (or dark)
    chunks and of tiles off the image, "skipped tiles: none", and passed `data check`."""
    hr = tmp_path / "naip" / builder_scene.hr_path.name
    if kind == "nodata255":
        mid = _hr_copy(builder_scene, hr, nodata=255, fill=255)
    else:
        mid = _hr_copy(builder_scene, hr, nodata=None, fill=3, mask=True, compress="jpeg")
    out = tmp_path / "out"
    code, stdout, err = cli("data", "build", out, "--s2", builder_scene.s2["clear"], "--hr", hr,
                            "--no-progress", "-j", "1")
    assert code == 0, err
    tiles = {rec["tile"]: rec for rec in load_index(out)["tiles"]}
    written = {Tile.parse(t) for t, rec in tiles.items() if rec["status"] == "written"}
    # exactly the fixture's full tiles east of the cut: two columns of three
    tp = builder_scene.tile_p
    assert written == {t for t in builder_scene.full_tiles if t.col > tp.col}
    assert all(t.bounds.left > mid for t in written)
    skipped = [rec for rec in tiles.values() if rec["status"] == "skipped"]
    assert skipped and {rec["reason"] for rec in skipped} == {
        "highres_partly_outside_or_nodata"}
    assert f"highres_partly_outside_or_nodata {len(skipped)}" in stdout
    for pair in scan_pairs(out):  # no white (nodata) or near-black (collar) pixel
        rgb = read_png(pair.naip_path)
        assert not (rgb == 255).all(axis=2).any() and not (rgb <= 3).all(axis=2).any()
    code, stdout, _ = cli("data", "check", out, "--no-progress")
    assert code == 0 and "0 error(s)" in stdout


def test_real_naip_with_nodata_255(cli, shared_dir, tmp_path):
    """The auditor's repro, cropped: the real NAIP image with its west half set to 255 and
    nodata=255 (written with the source's profile, so its 4th band is tagged alpha), paired
    with a generated Sentinel-2 scene over it (UTM 14N, 10 m). Every tile touching the white
    half or the image's edge is skipped; before, they all became pairs."""
    naip = shared_dir / "data" / "real" / "naip" / "m_4709963_se_14_1_20190904.tif"
    with rasterio.open(naip) as src:
        window = Window(200, 200, 400, 300)
        data = src.read(window=window)
        profile = src.profile | {"width": 400, "height": 300,
                                 "transform": src.transform @ Affine.translation(200, 200)}
    crs, transform = profile["crs"], profile["transform"]
    data = np.maximum(data, 1)
    data[:, :, :200] = 255
    profile.pop("photometric", None)
    hr = tmp_path / "hr" / naip.name
    hr.parent.mkdir()
    with rasterio.open(hr, "w", **(profile | {"nodata": 255})) as dst:
        dst.write(data)
    with rasterio.open(hr) as src:
        assert src.colorinterp[3].name == "alpha"
    left, top = transform.c, transform.f
    mid_x, right, bottom = left + 200 * 5.0, left + 400 * 5.0, top - 300 * 5.0
    xs, ys = warp_transform(crs, "EPSG:32614", [left, right], [top, bottom])
    bounds_utm = (min(xs) - 300, min(ys) - 300, max(xs) + 300, max(ys) + 300)
    s2 = make_s2_scene(tmp_path / "s2" / "S2A_14TNT_20190901_0_L2A", utc(2019, 9, 1),
                       tuple(float(np.floor(v / 20) * 20) for v in bounds_utm), (0.0, 0.0),
                       crs="EPSG:32614")
    out = tmp_path / "out"
    code, stdout, err = cli("data", "build", out, "--s2", s2, "--hr", hr, "--no-progress",
                            "-j", "1", "--cloud", "none")
    assert code == 0, err
    index = load_index(out)
    written = [Tile.parse(r["tile"]) for r in index["tiles"] if r["status"] == "written"]
    skipped = [r for r in index["tiles"] if r["status"] == "skipped"]
    assert written and skipped
    assert {r["reason"] for r in skipped} == {"highres_partly_outside_or_nodata"}
    # every written tile lies in the valid (east) half, inside the image (to a pixel: GDAL
    # resamples an edge pixel from the valid pixels it has)
    for tile in written:
        assert _within(tile, crs, (mid_x - 5, bottom - 5, right + 5, top + 5)), tile
    # and every tile well inside it is written
    inner = tiles_for_bounds(*transform_bounds(crs, "EPSG:3857", mid_x + 10, bottom + 10,
                                               right - 10, top - 10))
    full = [t for t in inner if _within(t, crs, (mid_x + 10, bottom + 10, right - 10, top - 10))]
    assert full and set(full) <= set(written)
    assert not any((read_png(p.naip_path) == 255).all(axis=2).any() for p in scan_pairs(out))


def _within(tile: Tile, crs, box) -> bool:
    b = transform_bounds("EPSG:3857", crs, *tile.bounds, densify_pts=21)
    return b[0] >= box[0] and b[1] >= box[1] and b[2] <= box[2] and b[3] <= box[3]
