"""Helpers for scene-inference tests: small georeferenced Sentinel-2-like frames."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from zoomsr import grid as tiles

TINY = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}
#: The real Sentinel-2 L2A scene in ../shared (TCI, B02-B04, B08 at 100 m, SCL at 200 m).
REAL_S2 = "data/real/sentinel2-l2a-29RKH"


def crop(src: Path, dst: Path, window: Window) -> Path:
    """Copy a window of a real raster, keeping its georeference, tags and nodata."""
    with rasterio.open(src) as ds:
        profile = ds.profile | {"width": int(window.width), "height": int(window.height),
                                "transform": ds.window_transform(window), "tiled": False}
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        data = ds.read(window=window)
        tags = ds.tags()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
        out.update_tags(**tags)
    return dst


def crop_real_scene(src: Path, folder: Path, col: int = 500, row: int = 500,
                    size: int = 24) -> Path:
    """A ``size`` px crop at (``col``, ``row``) of the real L2A scene: TCI, B02-B04, B08, SCL
    (the same area at 200 m) and the STAC item."""
    for name in ("TCI", "B02", "B03", "B04", "B08"):
        crop(src / f"{name}.tif", folder / f"{name}.tif", Window(col, row, size, size))
    crop(src / "SCL.tif", folder / "SCL.tif", Window(col // 2, row // 2, size // 2, size // 2))
    (folder / "S2A_29RKH_20200219_0_L2A.json").write_bytes(
        (src / "S2A_29RKH_20200219_0_L2A.json").read_bytes())
    return folder


def write_frames(
    folder: Path,
    n: int = 3,
    size: tuple[int, int] = (40, 56),
    crs: str = "EPSG:3857",
    transform: Affine | None = None,
    dtype: str = "uint8",
    seed: int = 0,
    nodata: float | None = 0,
    holes: dict[int, tuple[slice, slice]] | None = None,
) -> list[Path]:
    """``n`` 3-band frames of ``size`` (h, w) px; smooth random images, distinct per frame.

    ``holes`` sets a region of a frame to nodata (0). Default transform: a tile-aligned
    EPSG:3857 grid at 9.555 m (or 10 m in any other CRS).
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    if transform is None:
        if crs == "EPSG:3857":
            t = tiles.Tile(20000, 50000)
            transform = Affine(tiles.LR_RESOLUTION, 0, t.bounds.left, 0, -tiles.LR_RESOLUTION,
                               t.bounds.top)
        else:
            transform = Affine(10.0, 0, 500000.0, 0, -10.0, 4100000.0)
    base = rng.random((3, h // 4 + 2, w // 4 + 2))
    base = np.kron(base, np.ones((4, 4)))[:, :h, :w]
    paths = []
    for i in range(n):
        img = np.clip(base * 0.8 + 0.2 * rng.random((3, h, w)), 0.02, 1.0)
        if dtype == "uint8":
            data = np.round(img * 254 + 1).astype(np.uint8)
        elif dtype == "uint16":
            data = np.round(img * 2500 + 100).astype(np.uint16)
        else:
            data = (img * 0.25).astype(dtype)
        if holes and i in holes:
            data[:, holes[i][0], holes[i][1]] = 0
        p = folder / f"S2_2024010{i + 1}_TCI.tif" if dtype == "uint8" else folder / f"frame{i}.tif"
        with rasterio.open(
            p, "w", driver="GTiff", width=w, height=h, count=3, dtype=dtype, crs=crs,
            transform=transform, nodata=nodata, photometric="RGB",
        ) as dst:
            dst.write(data)
        paths.append(p)
    return paths


def write_b08(paths: list[Path], value: int) -> list[Path]:
    """Beside each TCI frame, its date's B08 (same name but the band token): uint16 ``value``
    on the frame's grid, nodata 0."""
    out = []
    for p in paths:
        with rasterio.open(p) as src:
            profile = src.profile | {"count": 1, "dtype": "uint16", "photometric": "MINISBLACK"}
            shape = (1, src.height, src.width)
        b08 = p.with_name(p.name.replace("_TCI", "_B08"))
        with rasterio.open(b08, "w", **profile) as dst:
            dst.write(np.full(shape, value, np.uint16))
        out.append(b08)
    return out


def read(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    with rasterio.open(path) as ds:
        return ds.read(), ds.dataset_mask(), {"crs": ds.crs, "transform": ds.transform,
                                             "bounds": ds.bounds, "tags": ds.tags(),
                                             "profile": ds.profile}


def damage_middle_tile(path: Path) -> None:
    """Overwrite the tile at block (1, 1) of a tiled GeoTIFF with garbage (not a corner: the
    corners are what opening checks read first)."""
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_1_1", "TIFF", bidx=1))
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\x55" * size)


_PEAK = """
import json, sys
import rasterio
from rasterio.env import set_gdal_config
{imports}
set_gdal_config("GDAL_CACHEMAX", 2**31)  # a large machine's default (5 % of its RAM)
with rasterio.open(sys.argv[1]) as ds:
{setup}
    with open("/proc/self/clear_refs", "w") as f:  # the peak so far (the imports') forgotten
        f.write("5")
    def kb(key):
        return next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith(key))
    before = kb("VmRSS:")
    {call}
    grown = kb("VmHWM:") - before
print(json.dumps(grown / 1024))
"""


def peak_growth_mb(path: str | Path, imports: str, calls: dict[str, str],
                   setup: str = "pass") -> dict[str, float]:
    """MB the peak RSS of a fresh process grows by in each of ``calls`` (one statement on the
    open raster ``ds``, after ``setup``, with GDAL's cache as large as a big machine's), each in
    its own process (Linux: /proc's peak RSS)."""
    return {name: json.loads(subprocess.run(
        [sys.executable, "-c", _PEAK.format(imports=imports, setup=f"    {setup}", call=call),
         str(path)], check=True, capture_output=True, text=True).stdout)
        for name, call in calls.items()}
