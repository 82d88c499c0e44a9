"""Generators of small georeferenced rasters with known geometry, for the builder tests.

Sentinel-2-like scenes are written in UTM zone 15N (EPSG:32615, 10 m pixels, SCL at 20 m), the
high-res image in EPSG:3857 (1.5 m pixels), around a point ``P`` in Iowa. Both hold a bright
Gaussian spot centred exactly on ``P`` on a flat background, so where ``P`` lands in the built
tiles can be measured; elsewhere a smooth texture makes misalignment visible.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.warp import transform as warp_transform

from zoomsr.grid import Tile, tile_for_lonlat

UTM = "EPSG:32615"
HR_DATE = dt.date(2019, 9, 4)


def to_crs(lon: float, lat: float, crs: str) -> tuple[float, float]:
    xs, ys = warp_transform("EPSG:4326", crs, [lon], [lat])
    return xs[0], ys[0]


#: The tile holding the known point, in central Iowa (UTM zone 15N).
TILE_P = tile_for_lonlat(-93.62, 41.59)
#: The known point: off the tile centre by an uneven amount (EPSG:3857 metres), in lon/lat.
_xs, _ys = warp_transform(
    "EPSG:3857", "EPSG:4326",
    [(TILE_P.bounds.left + TILE_P.bounds.right) / 2 + 41.3],
    [(TILE_P.bounds.bottom + TILE_P.bounds.top) / 2 - 63.7])
P_LONLAT = (_xs[0], _ys[0])


def write_raster(path: Path, data: np.ndarray, crs: str, transform: Affine,
                 nodata: float | None = 0, tags: dict | None = None) -> Path:
    """Write ``data`` ``[C, H, W]`` as a tiled GeoTIFF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count, height, width = data.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count,
               "dtype": data.dtype.name, "crs": crs, "transform": transform, "nodata": nodata,
               "compress": "deflate"}
    if width >= 256 and height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if tags:
            dst.update_tags(**tags)
    return path


def spot_and_texture(xx: np.ndarray, yy: np.ndarray, px: float, py: float, sigma: float,
                     amp: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(spot, texture) on coordinate grids: a Gaussian at (px, py) and a smooth pattern that
    fades out within ~150 m of the spot so the spot sits on a flat background."""
    d2 = (xx - px) ** 2 + (yy - py) ** 2
    spot = amp * np.exp(-d2 / (2 * sigma**2))
    fade = np.clip((np.sqrt(d2) - 80.0) / 100.0, 0.0, 1.0)
    texture = fade * np.sin(2 * np.pi * xx / 410.0) * np.cos(2 * np.pi * yy / 530.0)
    return spot, texture


@dataclass
class BuilderScene:
    """Paths and geometry of the generated inputs."""

    root: Path
    tile_p: Tile                 # the tile holding P
    full_tiles: list[Tile]       # tiles fully inside the high-res image (3 x 3)
    hr_path: Path
    s2: dict[str, Path] = field(default_factory=dict)  # name -> scene folder
    cloudy_tile: Tile | None = None


def make_s2_scene(folder: Path, when: dt.datetime, bounds_utm: tuple[float, float, float, float],
                  p_utm: tuple[float, float], *, bands: tuple[str, ...] = ("b08",),
                  baseline: str = "02.13", cloud_box: tuple | None = None,
                  nodata_west_of: float | None = None, stac: bool = True,
                  name_date: bool = False, crs: str = UTM) -> Path:
    """One L2A-like scene: TCI.tif, B??.tif (uint16 DN, +1000 from baseline 04.00), SCL.tif.

    ``cloud_box`` (UTM left, bottom, right, top) is bright in TCI and class 9 in SCL;
    pixels west of ``nodata_west_of`` (UTM x) are nodata (0) everywhere.
    """
    left, bottom, right, top = bounds_utm
    res = 10.0
    width, height = round((right - left) / res), round((top - bottom) / res)
    transform = Affine(res, 0, left, 0, -res, top)
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    xx, yy = transform @ (cols + 0.5, rows + 0.5)
    spot, texture = spot_and_texture(xx, yy, *p_utm, sigma=15.0)
    base = 90 + 40 * texture
    tci = np.stack([base + 120 * spot, base * 0.9 + 120 * spot, base * 0.8 + 120 * spot])
    offset = 1000 if float(baseline) >= 4.0 else 0
    dn = {b: 1500 + 800 * texture + 3000 * spot + 100 * k + offset
          for k, b in enumerate(bands)}
    scl = np.full((height // 2, width // 2), 4, np.uint8)
    if cloud_box is not None:
        cl, cb, cr, ct = cloud_box
        inside = (xx >= cl) & (xx < cr) & (yy >= cb) & (yy < ct)
        tci[:, inside] = 250
        s_cols, s_rows = np.meshgrid(np.arange(width // 2), np.arange(height // 2))
        sx, sy = Affine(20, 0, left, 0, -20, top) @ (s_cols + 0.5, s_rows + 0.5)
        scl[(sx >= cl) & (sx < cr) & (sy >= cb) & (sy < ct)] = 9
    tci = np.clip(np.rint(tci), 1, 255).astype(np.uint8)
    arrays = {b: np.clip(np.rint(v), 1, 65535).astype(np.uint16)[None] for b, v in dn.items()}
    if nodata_west_of is not None:
        west = xx < nodata_west_of
        tci[:, west] = 0
        for a in arrays.values():
            a[:, west] = 0
        sx0 = Affine(20, 0, left, 0, -20, top) @ (np.arange(width // 2) + 0.5, 0)
        scl[:, np.asarray(sx0[0]) < nodata_west_of] = 0
    stamp = when.strftime("%Y%m%dT%H%M%S")
    prefix = f"T15TVG_{stamp}_" if name_date else ""
    write_raster(folder / f"{prefix}TCI.tif", tci, crs, transform)
    for band, a in arrays.items():
        write_raster(folder / f"{prefix}{band.upper()}.tif", a, crs, transform)
    write_raster(folder / f"{prefix}SCL.tif", scl[None], crs, Affine(20, 0, left, 0, -20, top))
    if stac:
        item = {"type": "Feature", "stac_version": "1.0.0", "id": folder.name,
                "collection": "sentinel-2-l2a", "bbox": [0, 0, 0, 0], "geometry": None,
                "links": [], "assets": {},
                "properties": {"datetime": when.isoformat().replace("+00:00", "Z"),
                               "s2:processing_baseline": baseline,
                               "s2:product_type": "S2MSI2A"}}
        (folder / f"{folder.name}.json").write_text(json.dumps(item))
    return folder


def make_hr(path: Path, bounds_3857: tuple[float, float, float, float], p_3857, res: float = 1.5
            ) -> Path:
    """RGBN uint8 GeoTIFF in EPSG:3857 (nodata 0) with the spot at ``p_3857``."""
    left, bottom, right, top = bounds_3857
    width, height = round((right - left) / res), round((top - bottom) / res)
    transform = Affine(res, 0, left, 0, -res, top)
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    xx, yy = transform @ (cols + 0.5, rows + 0.5)
    spot, texture = spot_and_texture(xx, yy, *p_3857, sigma=6.0)
    base = 100 + 50 * texture
    rgb = [base + 140 * spot, base + 100 * spot, base * 0.7 + 60 * spot, base * 1.2]
    data = np.clip(np.rint(np.stack(rgb)), 1, 255).astype(np.uint8)
    return write_raster(path, data, "EPSG:3857", transform)


def utc(y: int, m: int, d: int) -> dt.datetime:
    return dt.datetime(y, m, d, 17, 0, 0, tzinfo=dt.timezone.utc)


def make_safe(root: Path, scene_dir: Path, when: dt.datetime, baseline: str = "04.00",
              level: str = "L2A", cloud_mask: np.ndarray | None = None) -> Path:
    """A minimal SAFE folder (JP2 files, MTD_MSIL2A.xml / MTD_MSIL1C.xml) made from a generated
    scene. L1C: TCI and B08 in ``IMG_DATA`` itself, and ``cloud_mask`` (``[3, H, W]`` uint8:
    opaque, cirrus, snow; on the SCL's grid) as ``QI_DATA/MSK_CLASSI_B00.jp2``."""
    from rasterio.shutil import copy as rio_copy

    stamp = when.strftime("%Y%m%dT%H%M%S")
    nbase = "N" + baseline.replace(".", "")
    code = level[1:]  # 2A, 1C
    safe = root / f"S2A_MSI{level}_{stamp}_{nbase}_R069_T15TVG_{stamp}.SAFE"
    granule = safe / "GRANULE" / f"{level}_T15TVG_A000000_{stamp}"
    img = granule / "IMG_DATA"
    files = (("TCI", 10), ("B08", 10), ("B05", 20), ("SCL", 20)) if level == "L2A" else (
        ("TCI", 10), ("B08", 10))
    for name, res in files:
        folder = img / f"R{res}m" if level == "L2A" else img
        folder.mkdir(parents=True, exist_ok=True)
        suffix = f"_{res}m" if level == "L2A" else ""
        rio_copy(scene_dir / f"{name}.tif", folder / f"T15TVG_{stamp}_{name}{suffix}.jp2",
                 driver="JP2OpenJPEG", REVERSIBLE="YES", QUALITY="100")
    if cloud_mask is not None:
        (granule / "QI_DATA").mkdir()
        with rasterio.open(scene_dir / "SCL.tif") as scl:
            profile = dict(driver="JP2OpenJPEG", width=scl.width, height=scl.height, count=3,
                           dtype="uint8", crs=scl.crs, transform=scl.transform,
                           REVERSIBLE="YES", QUALITY="100")
        with rasterio.open(granule / "QI_DATA" / "MSK_CLASSI_B00.jp2", "w", **profile) as dst:
            dst.write(cloud_mask)
    offset = "-1000" if float(baseline) >= 4 else "0"
    kind = "BOA" if level == "L2A" else "RADIO"
    (safe / f"MTD_MSIL{code}.xml").write_text(
        f"<?xml version='1.0'?><n1:Level-{code}_User_Product xmlns:n1='x'><General_Info>"
        f"<Product_Info><PRODUCT_START_TIME>{when.isoformat()}</PRODUCT_START_TIME>"
        f"<PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE></Product_Info>"
        f"<{kind}_ADD_OFFSET_VALUES_LIST>"
        f"<{kind}_ADD_OFFSET band_id='0'>{offset}</{kind}_ADD_OFFSET>"
        f"</{kind}_ADD_OFFSET_VALUES_LIST></General_Info></n1:Level-{code}_User_Product>\n")
    return safe
