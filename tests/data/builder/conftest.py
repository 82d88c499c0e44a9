"""Fixtures for the dataset builder tests (the raster generators are in builder_rasters.py)."""

from __future__ import annotations

import numpy as np
import pytest
from builder_rasters import (
    HR_DATE,
    P_LONLAT,
    TILE_P,
    UTM,
    BuilderScene,
    make_hr,
    make_s2_scene,
    to_crs,
    utc,
)
from rasterio.warp import transform as warp_transform

from zoomsr.grid import TILE_SIZE_M, Tile


@pytest.fixture(scope="session")
def builder_scene(tmp_path_factory) -> BuilderScene:
    """High-res image (2019-09-04) covering 3 x 3 full tiles around P's tile plus a partial ring,
    and four Sentinel-2 scenes:

    - ``clear`` 2019-08-01: clean, B08 (and B05) present.
    - ``cloudy`` 2019-09-20: SCL cloud (and bright TCI) over the tile east of P's tile.
    - ``halfnodata`` 2019-07-10: nodata west of P's tile's centre.
    - ``late`` 2020-03-01: clean but 179 days after the high-res capture.
    """
    root = tmp_path_factory.mktemp("builder_inputs")
    tile_p = TILE_P
    p_3857 = to_crs(*P_LONLAT, "EPSG:3857")
    p_utm = to_crs(*P_LONLAT, UTM)
    b = Tile(tile_p.col - 1, tile_p.row - 1).bounds
    hr_bounds = (b.left + TILE_SIZE_M - 100, b.top - 4 * TILE_SIZE_M - 100,
                 b.left + 4 * TILE_SIZE_M + 100, b.top - TILE_SIZE_M + 100)
    hr_path = make_hr(root / "naip" / f"m_4109363_ne_15_1_{HR_DATE:%Y%m%d}.tif", hr_bounds, p_3857)
    full = [Tile(tile_p.col + dc, tile_p.row + dr) for dr in range(3) for dc in range(3)]

    # The Sentinel-2 rasters cover the high-res box plus a margin, on a 10 m UTM grid.
    xs, ys = warp_transform("EPSG:3857", UTM, [hr_bounds[0], hr_bounds[2]] * 2,
                            [hr_bounds[1]] * 2 + [hr_bounds[3]] * 2)
    margin = 400.0
    s2_bounds = (np.floor((min(xs) - margin) / 20) * 20, np.floor((min(ys) - margin) / 20) * 20,
                 np.ceil((max(xs) + margin) / 20) * 20, np.ceil((max(ys) + margin) / 20) * 20)
    scene = BuilderScene(root, tile_p, full, hr_path)
    s2 = root / "s2"
    scene.s2["clear"] = make_s2_scene(s2 / "S2A_15TVG_20190801_0_L2A", utc(2019, 8, 1),
                                      s2_bounds, p_utm, bands=("b05", "b08"))
    cloudy = Tile(tile_p.col + 1, tile_p.row)
    cb = cloudy.bounds
    cx, cy = warp_transform("EPSG:3857", UTM, [cb.left - 10, cb.right + 10],
                            [cb.bottom - 10, cb.top + 10])
    scene.cloudy_tile = cloudy
    scene.s2["cloudy"] = make_s2_scene(s2 / "S2B_15TVG_20190920_0_L2A", utc(2019, 9, 20),
                                       s2_bounds, p_utm, bands=("b05", "b08"),
                                       cloud_box=(cx[0], cy[0], cx[1], cy[1]))
    pb = tile_p.bounds
    mid_x, _ = warp_transform("EPSG:3857", UTM, [(pb.left + pb.right) / 2], [pb.top])
    scene.s2["halfnodata"] = make_s2_scene(s2 / "S2A_15TVG_20190710_0_L2A", utc(2019, 7, 10),
                                           s2_bounds, p_utm, bands=("b05", "b08"),
                                           nodata_west_of=mid_x[0])
    scene.s2["late"] = make_s2_scene(s2 / "S2A_15TVG_20200301_0_L2A", utc(2020, 3, 1),
                                     s2_bounds, p_utm, bands=("b05", "b08"), baseline="04.00")
    return scene
