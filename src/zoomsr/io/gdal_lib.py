"""The GDAL library rasterio runs on, reached through ``ctypes`` for what rasterio does not
expose: flushing a dataset that stays open (rasterio has no flush, rasterio#1281).

Why it matters: GDAL keeps a DEFLATE level only for the life of the dataset that created the
file (libtiff's ``ZIPQUALITY`` is a session setting, not stored in the file), so a GeoTIFF
reopened for update compresses at libtiff's default (6) whatever it was created with. A
writer that must push each strip's tiles out before the next (so that the file's bytes do
not depend on GDAL's block cache) therefore keeps the created dataset open and flushes it
(:func:`dataset_flusher`) instead of reopening it per strip.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rasterio.errors import RasterioIOError


def mapped_libraries() -> set[str] | None:
    """Paths of the shared libraries mapped into this process (Linux ``/proc/self/maps``);
    None where that cannot be told (macOS, Windows)."""
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return None
    return {line.split(maxsplit=5)[-1] for line in maps if line.count(" ") >= 5}


def _gdal_candidates() -> list[str]:
    import rasterio

    mapped = mapped_libraries()
    if mapped is not None:
        return sorted(p for p in mapped if os.path.basename(p).startswith("libgdal"))
    # no /proc: the library a wheel ships beside rasterio (loading it again by its path gives
    # the module already loaded)
    here = Path(rasterio.__file__).parent
    found: list[str] = []
    for folder in (here.parent / "rasterio.libs", here / ".dylibs", here):
        for pattern in ("libgdal*.so*", "libgdal*.dylib", "gdal*.dll"):
            found += glob.glob(str(folder / pattern))
    return sorted(found)


@functools.cache  # found once
def gdal_library() -> ctypes.CDLL | None:
    """The GDAL library rasterio has loaded, with the few functions used here typed; None when
    it cannot be told which (none or several found, or a function missing)."""
    import rasterio._io  # noqa: F401  (loads GDAL, if nothing has yet)

    paths = _gdal_candidates()
    if len(paths) != 1:
        return None
    try:
        lib = ctypes.CDLL(paths[0])
        lib.GDALGetOpenDatasets.argtypes = [
            ctypes.POINTER(ctypes.POINTER(ctypes.c_void_p)), ctypes.POINTER(ctypes.c_int)]
        lib.GDALGetOpenDatasets.restype = None
        lib.GDALGetDescription.argtypes = [ctypes.c_void_p]
        lib.GDALGetDescription.restype = ctypes.c_char_p
        lib.GDALFlushCache.argtypes = [ctypes.c_void_p]
        lib.GDALGetRasterBand.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.GDALGetRasterBand.restype = ctypes.c_void_p
        lib.GDALGetMaskBand.argtypes = [ctypes.c_void_p]
        lib.GDALGetMaskBand.restype = ctypes.c_void_p
        lib.GDALFlushRasterCache.argtypes = [ctypes.c_void_p]
        lib.GDALFlushRasterCache.restype = ctypes.c_int
        lib.GDALGetBandDataset.argtypes = [ctypes.c_void_p]
        lib.GDALGetBandDataset.restype = ctypes.c_void_p
        lib.GDALVersionInfo.argtypes = [ctypes.c_char_p]
        lib.GDALVersionInfo.restype = ctypes.c_char_p
        version = int(lib.GDALVersionInfo(b"VERSION_NUM") or 0)
        # GDALFlushCache returns its CPLErr since GDAL 3.7 (void before: nothing to read)
        lib.GDALFlushCache.restype = ctypes.c_int if version >= 3070000 else None
    except (OSError, AttributeError, ValueError):
        return None
    import rasterio

    if not rasterio.__gdal_version__.startswith(_release(version)):
        return None  # another GDAL than rasterio's (a system one mapped beside it)
    return lib


def _release(version_num: int) -> str:
    """``3100300`` -> ``"3.10.3"`` (GDAL's VERSION_NUM: major*1000000 + minor*10000 + rev*100)."""
    return f"{version_num // 1000000}.{version_num // 10000 % 100}.{version_num // 100 % 100}"


_open_datasets_lock = threading.Lock()  # GDALGetOpenDatasets' list is rebuilt by each call


def _words(obj: object) -> set[int]:
    """The pointer-sized words of ``obj``'s own C struct (CPython: ``id`` is its address)."""
    size = type(obj).__basicsize__
    width = ctypes.sizeof(ctypes.c_void_p)
    raw = ctypes.string_at(id(obj), size - size % width)
    return set(struct.unpack(f"{len(raw) // width}P", raw))


def _handle(lib: ctypes.CDLL, dataset: Any) -> int | None:
    """The GDAL handle of the open rasterio ``dataset``, else None.

    rasterio keeps it in its object's C struct, out of Python's reach. Of the open datasets'
    handles (``GDALGetOpenDatasets``, a snapshot of raw pointers), the one that is also a word
    of that struct is it; only that one is then read (its description must be the dataset's
    name). No other handle is dereferenced: another thread may close its dataset meanwhile
    (reading the descriptions of all of them crashed beside threads opening and closing
    inputs)."""
    listing = ctypes.POINTER(ctypes.c_void_p)()
    count = ctypes.c_int()
    own = _words(dataset)
    with _open_datasets_lock:
        lib.GDALGetOpenDatasets(ctypes.byref(listing), ctypes.byref(count))
        found = {listing[i] for i in range(count.value)} & own
    found.discard(None)
    if len(found) != 1:
        return None
    handle = found.pop()
    if dataset.closed or lib.GDALGetDescription(handle) != str(dataset.name).encode():
        return None
    return handle


def dataset_flusher(dataset: Any) -> Callable[[], None] | None:
    """For an open rasterio dataset, a function that writes its dirty blocks (GDAL's
    ``GDALFlushCache``: a GeoTIFF's tiles compressed and written, its directory updated) and
    raises :class:`rasterio.errors.RasterioIOError` when GDAL says that failed (its own message
    went to GDAL's error handler: rasterio logs it); None when the dataset's GDAL handle cannot
    be found (then close and reopen it instead). Call it only while the dataset is open, from
    the thread that writes it."""
    lib = gdal_library()
    if lib is None:
        return None
    handle = _handle(lib, dataset)
    if handle is None:
        return None

    def flush() -> None:
        if dataset.closed:
            raise ValueError(f"{dataset.name}: flushed after it was closed")
        # the dataset's flush leaves an internal mask's blocks (the mask is a dataset of its
        # own) in GDAL's cache, and that dataset holds its last block in a buffer of its own
        mask = lib.GDALGetMaskBand(lib.GDALGetRasterBand(handle, 1))
        failed = bool(mask) and lib.GDALFlushRasterCache(mask) >= 3
        owner = lib.GDALGetBandDataset(mask) if mask else None
        if owner and owner != handle:
            failed = failed or (lib.GDALFlushCache(owner) or 0) >= 3  # void before GDAL 3.7
        if failed or (lib.GDALFlushCache(handle) or 0) >= 3:
            raise RasterioIOError("flushing the blocks failed")  # the caller names the file

    return flush
