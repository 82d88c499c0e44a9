import math

import pytest
from pyproj import Transformer

from zoomsr.errors import InputError
from zoomsr.grid import (
    HR_RESOLUTION,
    LR_RESOLUTION,
    TILE_SIZE_M,
    Tile,
    tile_for_lonlat,
    tile_for_xy,
    tiles_for_bounds,
    tiles_for_lonlat_bounds,
)

N = 2**17
WORLD = 40075016.68557849  # 2 * pi * 6378137


def lonlat_of_corner(col: int, row: int) -> tuple[float, float]:
    """Slippy-map formula for a tile's north-west corner, written independently of mercantile."""
    lon = col / N * 360.0 - 180.0
    lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / N))))
    return lon, lat


def test_constants_match_published_values():
    assert TILE_SIZE_M == pytest.approx(305.748, abs=1e-3)
    assert LR_RESOLUTION == pytest.approx(9.5546, abs=1e-4)
    assert HR_RESOLUTION == pytest.approx(2.3887, abs=1e-4)


@pytest.mark.parametrize("col,row", [(0, 0), (12345, 67890), (21096, 48880), (N - 1, N - 1)])
def test_bounds_against_independent_formulas(col, row):
    tile = Tile(col, row)
    left, bottom, right, top = tile.bounds
    assert left == pytest.approx(col * WORLD / N - WORLD / 2, abs=1e-6)
    assert top == pytest.approx(WORLD / 2 - row * WORLD / N, abs=1e-6)
    assert right - left == pytest.approx(TILE_SIZE_M, abs=1e-6)
    assert top - bottom == pytest.approx(TILE_SIZE_M, abs=1e-6)
    west, south, east, north = tile.lonlat_bounds
    assert (west, north) == pytest.approx(lonlat_of_corner(col, row), abs=1e-9)
    assert (east, south) == pytest.approx(lonlat_of_corner(col + 1, row + 1), abs=1e-9)
    # The projected corners are the lon/lat corners projected with PROJ.
    to_merc = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    x, y = to_merc.transform(west, north)
    if row not in (0,):  # PROJ clamps the pole-most latitude
        assert (x, y) == pytest.approx((left, top), abs=1e-3)


def test_known_place_lands_in_its_tile():
    # Space Needle, Seattle: slippy-map tile computed by hand with the standard formula.
    lon, lat = -122.3493, 47.6205
    col = math.floor((lon + 180) / 360 * N)
    row = math.floor((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * N)
    tile = tile_for_lonlat(lon, lat)
    assert (tile.col, tile.row) == (col, row) == (20989, 45768)
    west, south, east, north = tile.lonlat_bounds
    assert west <= lon < east and south < lat <= north


def test_parse_and_str_round_trip():
    assert str(Tile.parse("12345_67890")) == "12345_67890"
    assert Tile.parse(" 1_2 ") == Tile(1, 2)
    for bad in ["12345-67890", "a_b", "1_2_3", "", "131072_0"]:
        with pytest.raises(InputError):
            Tile.parse(bad)
    assert Tile.parse("0_0") == Tile(0, 0)
    # leading zeros: accepted as a tile id, such a folder paired with no '12_34'
    for padded in ["0012_0034", "12_034", "00_1"]:
        with pytest.raises(InputError, match=r"no leading zeros: the dataset names that tile "):
            Tile.parse(padded)


def test_transforms_of_chunks():
    tile = Tile(21000, 45775)
    lr, hr = tile.lr_transform, tile.hr_transform
    assert lr.a == pytest.approx(LR_RESOLUTION) and lr.e == pytest.approx(-LR_RESOLUTION)
    assert hr.a == pytest.approx(HR_RESOLUTION)
    left, bottom, right, top = tile.bounds
    assert (lr.c, lr.f) == (left, top)
    # The far corner of pixel (32, 32) is the tile's bottom-right corner.
    assert lr @ (32, 32) == pytest.approx((right, bottom))
    assert hr @ (128, 128) == pytest.approx((right, bottom))


def test_tile_for_xy_matches_bounds():
    tile = Tile(21000, 45775)
    left, bottom, right, top = tile.bounds
    assert tile_for_xy((left + right) / 2, (top + bottom) / 2) == tile
    assert tile_for_xy(left + 1e-3, top - 1e-3) == tile


def test_tiles_covering_boxes():
    tile = Tile(21000, 45775)
    assert tiles_for_bounds(*tile.bounds) == [tile]
    left, bottom, right, top = tile.bounds
    box = (left + 1, bottom - TILE_SIZE_M + 1, right + 1, top - 1)  # 2 cols x 2 rows
    assert tiles_for_bounds(*box) == [
        Tile(21000, 45775), Tile(21001, 45775), Tile(21000, 45776), Tile(21001, 45776)
    ]
    w, s, e, n = tile.lonlat_bounds
    assert tiles_for_lonlat_bounds(w + 1e-7, s + 1e-7, e - 1e-7, n - 1e-7) == [tile]
    with pytest.raises(InputError):
        tiles_for_bounds(10, 10, 0, 20)
