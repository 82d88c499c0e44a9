"""Writes tiny OLI2MSI copies in the published layout (``{split}_lr/``, ``{split}_hr/``,
same-named float32 3-band GeoTIFFs on a shared UTM CRS, the LR origin shifted by a sub-pixel
alignment as the authors' scripts do), for the loader's tests."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

CRS = "EPSG:32646"  # UTM 46N, the zone of one of the authors' test granules (T46SDF)
X0, Y0 = 500000.0, 4000000.0
#: LR origin offset from the HR origin in metres (< one 30 m LR pixel, like the alignment).
SHIFT = (10.0, -20.0)


def pair_name(k: int) -> str:
    """A file stem in the pattern of the published names."""
    return f"L8_138035_20190725_S2A_20190813_T46SDF_N{k + 1:04d}"


def write_tif(path: Path, data: np.ndarray, *, origin: tuple[float, float] | None,
              res: float, crs: str | None = CRS, dtype: str | None = None) -> None:
    """Write ``data`` (``[bands, h, w]``) as a deflate GeoTIFF; ``origin=None``: no
    georeference."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
        "count": data.shape[0], "dtype": dtype or str(data.dtype), "compress": "deflate",
    }
    if origin is not None:
        profile.update(crs=crs, transform=Affine(res, 0.0, origin[0], 0.0, -res, origin[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data.astype(profile["dtype"]))


def make_lr(rng: np.random.Generator, size: int) -> np.ndarray:
    """``[3, size, size]`` float32 reflectance in the dataset's typical 0.02-0.45."""
    return rng.uniform(0.02, 0.45, size=(3, size, size)).astype(np.float32)


def upsample(lr: np.ndarray) -> np.ndarray:
    """The HR of a fake pair: ``lr`` repeated 3x3, so crops can be checked for alignment."""
    return np.repeat(np.repeat(lr, 3, axis=1), 3, axis=2)


def write_pair(root: Path, split: str, name: str, lr: np.ndarray, hr: np.ndarray, *,
               k: int = 0, hr_offset: tuple[float, float] = (0.0, 0.0),
               hr_crs: str = CRS, georef: bool = True, suffix: str = ".TIF") -> None:
    """Write one pair; ``k`` places it on its own patch of the grid, ``hr_offset`` moves the
    HR file's origin (metres) to fake a mixed-up pair."""
    x = X0 + k * hr.shape[2] * 10.0
    hr_origin = (x + hr_offset[0], Y0 + hr_offset[1]) if georef else None
    lr_origin = (x + SHIFT[0], Y0 + SHIFT[1]) if georef else None
    write_tif(root / f"{split}_lr" / f"{name}{suffix}", lr, origin=lr_origin, res=30.0)
    write_tif(root / f"{split}_hr" / f"{name}{suffix}", hr, origin=hr_origin, res=10.0,
              crs=hr_crs)


def write_oli2msi(root: Path, split: str = "train", n: int = 3, lr_size: int = 8,
                  seed: int = 0, start: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``n`` pairs of ``split`` (LR ``lr_size`` px, HR 3 times), named as published; returns
    ``{name: (lr, hr)}`` as written."""
    rng = np.random.default_rng(seed)
    written = {}
    for k in range(start, start + n):
        lr = make_lr(rng, lr_size)
        hr = upsample(lr)
        write_pair(root, split, pair_name(k), lr, hr, k=k)
        written[pair_name(k)] = (lr, hr)
    return written
