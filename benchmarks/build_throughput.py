"""Throughput of ``zoomsr data build`` (tiles/s) on a generated 20 km x 20 km scene.

Generates, in UTM zone 15N (central Iowa): ``--dates`` Sentinel-2-like L2A scenes at 10 m
(TCI, B08 and a 20 m SCL with some cloud) and one high-res RGBN image at ``--hr-res`` metres,
all covering ``--km`` x ``--km``; then builds the S2-NAIP pairs with ``--workers`` processes
and prints tiles/s (candidate tiles processed per second of build time, generation excluded).

    python benchmarks/build_throughput.py [--km 20] [--dates 3] [--hr-res 2.0] [--workers 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from zoomsr.data.builder import BuildConfig, Sources, build_dataset
from zoomsr.data.builder.sources import discover_highres, discover_sentinel2

CRS = "EPSG:32615"
ORIGIN = (440000.0, 4610000.0)  # UTM 15N, near Des Moines (upper-left corner)


def pattern(xx: np.ndarray, yy: np.ndarray, seed: int) -> np.ndarray:
    """Smooth fields and 'roads' in [0, 1] on coordinate grids (metres), deterministic."""
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(150, 600, 2)
    field = 0.5 + 0.25 * np.sin(xx / a) * np.cos(yy / b) + 0.15 * np.sin((xx + yy) / 97.0)
    roads = (np.abs((xx % 800) - 400) < 6) | (np.abs((yy % 800) - 400) < 6)
    return np.clip(np.where(roads, 0.9, field), 0, 1)


def write_blocks(path: Path, size_px: int, res: float, count: int, dtype: str, nodata,
                 fill) -> None:
    """Write a tiled GeoTIFF strip by strip: ``fill(xx, yy) -> [count, h, w]``."""
    profile = {"driver": "GTiff", "width": size_px, "height": size_px, "count": count,
               "dtype": dtype, "crs": CRS, "transform": Affine(res, 0, ORIGIN[0], 0, -res,
                                                               ORIGIN[1]),
               "nodata": nodata, "tiled": True, "blockxsize": 512, "blockysize": 512,
               "compress": "deflate", "predictor": 2, "zlevel": 1}
    path.parent.mkdir(parents=True, exist_ok=True)
    strip = 1024
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, size_px, strip):
            h = min(strip, size_px - r0)
            cols, rows = np.meshgrid(np.arange(size_px) + 0.5, np.arange(r0, r0 + h) + 0.5)
            xx, yy = ORIGIN[0] + cols * res, ORIGIN[1] - rows * res
            dst.write(fill(xx, yy), window=Window(0, r0, size_px, h))


def generate(root: Path, km: float, dates: int, hr_res: float) -> None:
    size_m = km * 1000
    n10 = int(size_m / 10)
    for k in range(dates):
        when = dt.date(2019, 8, 1) + dt.timedelta(days=12 * k)
        folder = root / "s2" / f"T15TVG_{when:%Y%m%d}T170000"

        def tci(xx, yy, k=k):
            v = pattern(xx, yy, 0) * 160 + 40 + 10 * k
            return np.clip(np.stack([v, v * 0.9, v * 0.8]), 1, 255).astype(np.uint8)

        def b08(xx, yy):
            return (pattern(xx, yy, 1) * 4000 + 500).astype(np.uint16)[None]

        def scl(xx, yy, k=k):
            cloudy = (np.sin(xx / 900.0 + k) * np.cos(yy / 700.0) > 0.8)
            return np.where(cloudy, 9, 4).astype(np.uint8)[None]

        write_blocks(folder / f"T15TVG_{when:%Y%m%d}T170000_TCI_10m.tif", n10, 10.0, 3,
                     "uint8", 0, tci)
        write_blocks(folder / f"T15TVG_{when:%Y%m%d}T170000_B08_10m.tif", n10, 10.0, 1,
                     "uint16", 0, b08)
        write_blocks(folder / f"T15TVG_{when:%Y%m%d}T170000_SCL_20m.tif", n10 // 2, 20.0, 1,
                     "uint8", 0, scl)

    def rgbn(xx, yy):
        v = pattern(xx, yy, 0) * 200 + 30
        return np.clip(np.stack([v, v * 0.95, v * 0.8, v]), 1, 255).astype(np.uint8)

    write_blocks(root / "naip" / "m_bench_20190904.tif", int(size_m / hr_res), hr_res, 4,
                 "uint8", 0, rgbn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--km", type=float, default=20.0, help="scene side in km")
    parser.add_argument("--dates", type=int, default=3, help="Sentinel-2 scenes")
    parser.add_argument("--hr-res", type=float, default=2.0, help="high-res pixel size (m)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--block-tiles", type=int, default=16)
    parser.add_argument("--keep", help="write inputs and output here instead of a temp folder")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        t0 = time.perf_counter()
        generate(root / "inputs", args.km, args.dates, args.hr_res)
        print(f"generated {args.km:g} km x {args.km:g} km: {args.dates} Sentinel-2 scenes "
              f"(10 m) + high-res at {args.hr_res:g} m in {time.perf_counter() - t0:.1f} s")
        sources = Sources(discover_sentinel2([root / "inputs" / "s2"]),
                          discover_highres([root / "inputs" / "naip"]))
        # the generated B08 holds reflectance x 10000: no offset (its names give no baseline)
        config = BuildConfig(bands=("tci", "b08"), block_tiles=args.block_tiles, dn_offset=0)
        result = build_dataset(root / "out", sources, config, workers=args.workers,
                               overwrite=True)
        c = result.counts
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
              f"python {platform.python_version()}, rasterio {rasterio.__version__} "
              f"(GDAL {rasterio.__gdal_version__}), workers={args.workers}")
        print(f"{c['tiles_candidate']} candidate tiles, {c.get('tiles_written', 0)} written "
              f"({c.get('pairs', 0)} pairs), {result.blocks_run} blocks, "
              f"{result.seconds:.1f} s")
        print(f"tiles/s: {result.tiles_per_second:.1f} "
              f"(written pairs/s: {c.get('pairs_now', 0) / result.seconds:.1f})")


if __name__ == "__main__":
    main()
