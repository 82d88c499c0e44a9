"""Read an RGB image file (PNG, JPEG, GeoTIFF) as a ``[3, H, W]`` float32 tensor in [0, 1]."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from zoomsr.errors import DataError

#: File extensions the evaluation reads (lower case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_TIFF = (".tif", ".tiff")


def _read_tiff(path: Path) -> np.ndarray:
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as src:
            if src.count < 3:
                raise DataError(f"{path}: {src.count} band(s); expected RGB (3 or more bands)")
            arr = src.read((1, 2, 3))
    except RasterioError as exc:
        raise DataError(f"{path}: not a readable GeoTIFF ({exc})") from None
    return np.moveaxis(arr, 0, -1)


def read_rgb(path: str | os.PathLike[str], as_float: bool = True) -> torch.Tensor:
    """Read an RGB image as ``[3, H, W]`` float32 in [0, 1].

    8-bit files are divided by 255 (with ``as_float=False`` they stay uint8, which the metrics
    accept and convert at their own precision); float GeoTIFFs are taken as already in [0, 1]
    (checked by the metrics). The first three bands of a GeoTIFF are R, G, B (a 4th, e.g. NIR,
    is ignored); an alpha channel of a PNG is dropped.

    Raises:
        DataError: naming the file when it is missing, corrupt, grey, or not 8-bit/float.
    """
    p = Path(path)
    if p.suffix.lower() in _TIFF:
        arr = _read_tiff(p)
    else:
        from zoomsr.io.png import read_png

        arr = read_png(p)
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 2):
            raise DataError(f"{p}: grey image; expected RGB")
        arr = arr[:, :, :3]
    if arr.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
        if as_float:
            t = t.float() / 255.0
    elif arr.dtype.kind == "f":
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1)
    else:
        raise DataError(
            f"{p}: {arr.dtype} pixels; expected 8-bit RGB or float in [0, 1] "
            "(scale 16-bit data to one of those first)"
        )
    return t.contiguous()
