"""A tiny fake WorldStrat copy in the published layout (see :mod:`zoomsr.data.worldstrat`).

Known pixels, so tests can check normalisation exactly:

- ``<aoi>-<n>-L2A_data.tiff`` (float32 reflectance, 12 bands, georeferenced like the real ones):
  band B04 at (0, 0) is ``n / 100`` (tells which revisit was read), B02 at (0, 1) is 1.5 (to be
  clipped), B8A at (0, 2) is 0.25; every band is 0 at (h-1, 0) (no data). Other pixels are in
  0.01..0.9.
- ``-CLM.tiff``: the first ``clouds[n-1]`` pixels (row-major, from (1, 0)) are 1 (cloud);
  ``-dataMask.tiff`` is 0 at (h-1, w-1).
- ``<aoi>_ps.tiff`` (uint16, no georeference, like the real ones): (0, 0) is R,G,B,NIR = 5000,
  10000, 12000, 2500; every band is 0 at (H-1, W-1). ``_pan.tiff`` (0, 0) is 7500,
  ``_rgb.png`` (0, 0) is 51, 102, 255.
"""

from __future__ import annotations

import csv
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from zoomsr.io.png import write_png

LR_TRANSFORM = rasterio.Affine(9.5e-05, 0.0, 92.38, 0.0, -9.1e-05, 20.83)


@dataclass
class FakeAOI:
    """One AOI to write: ``clouds`` / ``cover`` give each revisit's cloudy pixels in its CLM
    and its metadata cloud_cover (empty: none)."""

    name: str
    split: str
    revisits: int = 4
    lr_shape: tuple[int, int] = (8, 8)
    clouds: tuple[int, ...] = ()
    cover: tuple[float, ...] = ()


def write_tiff(path: Path, data: np.ndarray, georeferenced: bool = True) -> None:
    """Write ``[bands, h, w]`` as a GeoTIFF (EPSG:4326 like the Sentinel-2 files, or without a
    georeference like the SPOT files)."""
    count, height, width = data.shape
    extra = {"crs": "EPSG:4326", "transform": LR_TRANSFORM} if georeferenced else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=count,
                           dtype=data.dtype, **extra) as dst:
            dst.write(data)


def write_worldstrat(
    root: Path,
    aois: list[FakeAOI],
    *,
    hr_size: int = 32,
    twelve_bit_folder: bool = False,
    metadata_aoi_column: str | None = "tile",
    masks: bool = True,
    seed: int = 0,
) -> Path:
    """Write ``aois`` under ``root`` in the WorldStrat layout; returns ``root``.

    ``metadata_aoi_column``: ``"tile"``, ``""`` (an unnamed first column, as a pandas index
    writes it) or None (no ``metadata.csv``).
    """
    rng = np.random.default_rng(seed)
    hr_root = root / "hr_dataset" / ("12bit" if twelve_bit_folder else "")
    split_rows, meta_rows = [], []
    for k, aoi in enumerate(aois):
        lr_dir = root / "lr_dataset" / aoi.name / "L2A"
        lr_dir.mkdir(parents=True)
        h, w = aoi.lr_shape
        for n in range(1, aoi.revisits + 1):
            data = rng.uniform(0.01, 0.9, size=(12, h, w)).astype(np.float32)
            data[3, 0, 0] = n / 100
            data[1, 0, 1] = 1.5
            data[8, 0, 2] = 0.25
            data[:, h - 1, 0] = 0.0
            write_tiff(lr_dir / f"{aoi.name}-{n}-L2A_data.tiff", data)
            if masks:
                clm = np.zeros(h * w, np.float32)  # float32 as the published masks are
                cloudy = aoi.clouds[n - 1] if aoi.clouds else 0
                clm[w:w + cloudy] = 1.0
                write_tiff(lr_dir / f"{aoi.name}-{n}-CLM.tiff", clm.reshape(1, h, w))
                data_mask = np.ones((1, h, w), np.float32)
                data_mask[0, h - 1, w - 1] = 0.0
                write_tiff(lr_dir / f"{aoi.name}-{n}-dataMask.tiff", data_mask)
            (lr_dir / f"{aoi.name}-{n}.metadata").write_text(json.dumps({"cloud_cover": 0.0}))
            meta_rows.append({"aoi": aoi.name, "n": n,
                              "cloud_cover": aoi.cover[n - 1] if aoi.cover else 0.0})
        hr_dir = hr_root / aoi.name
        hr_dir.mkdir(parents=True)
        ps = rng.integers(1, 12000, size=(4, hr_size, hr_size), dtype=np.uint16)
        ps[:, 0, 0] = (5000, 10000, 12000, 2500)
        ps[:, hr_size - 1, hr_size - 1] = 0
        write_tiff(hr_dir / f"{aoi.name}_ps.tiff", ps, georeferenced=False)
        pan = rng.integers(1, 12000, size=(1, hr_size, hr_size), dtype=np.uint16)
        pan[0, 0, 0] = 7500
        write_tiff(hr_dir / f"{aoi.name}_pan.tiff", pan, georeferenced=False)
        rgbn = rng.integers(1, 12000, size=(4, hr_size // 4, hr_size // 4), dtype=np.uint16)
        write_tiff(hr_dir / f"{aoi.name}_rgbn.tiff", rgbn, georeferenced=False)
        rgb = rng.integers(1, 256, size=(hr_size, hr_size, 3), dtype=np.uint8)
        rgb[0, 0] = (51, 102, 255)
        write_png(hr_dir / f"{aoi.name}_rgb.png", rgb)
        split_rows.append([k * 16, aoi.name, "Settlement", 11, "Landcover",
                           "Landcover/Settlement/11", aoi.split])
    # The published split file: a pandas index column, then these columns.
    with open(root / "stratified_train_val_test_split.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["", "tile", "IPCC Class", "SMOD", "source", "joint_class", "split"])
        writer.writerows(split_rows)
    if metadata_aoi_column is not None:
        with open(root / "metadata.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([metadata_aoi_column, "lowres_date", "highres_date", "cloud_cover",
                             "n", "lon", "lat"])
            for row in meta_rows:
                writer.writerow([row["aoi"], "2021-01-01", "2021-01-05", row["cloud_cover"],
                                 row["n"], 10.0, 20.0])
    return root
