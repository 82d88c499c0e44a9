"""The published S2-NAIP folder layout: paths, scanning and validated chunk readers.

::

    ROOT/naip/{image_id}/{tile}/rgb.png        128x128 RGB uint8 (NAIP, 2.389 m)
    ROOT/sentinel2/{tile}/{band}.png           [T*32, 32, C] time series stacked vertically
    ROOT/old_naip/{tile}/*.png                 optional older NAIP images of the tile, 128x128 RGB
    ROOT/zoomsr_dataset.json                   optional metadata written by zoomsr (e.g. synthetic)
"""

from __future__ import annotations

import json
import numbers
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoomsr.data.bands import band_channels
from zoomsr.errors import ConfigError, DataError, ZoomsrWarning
from zoomsr.grid import LR_PIXELS, Tile
from zoomsr.io.png import read_png

NAIP_DIR = "naip"
S2_DIR = "sentinel2"
OLD_NAIP_DIR = "old_naip"
METADATA_FILE = "zoomsr_dataset.json"
#: Written by ``zoomsr data build``: the tile index, the split lists, the resume state.
INDEX_FILE = "zoomsr_index.json"
SPLITS_FILE = "zoomsr_splits.json"
BUILD_STATE_DIR = ".zoomsr_build"
HR_FILE = "rgb.png"
#: What a dataset folder consists of (a build's or a sample's): what --overwrite replaces;
#: anything else in the folder is left alone.
DATASET_ENTRIES = (NAIP_DIR, S2_DIR, OLD_NAIP_DIR, METADATA_FILE, INDEX_FILE, SPLITS_FILE,
                   BUILD_STATE_DIR)


@dataclass(frozen=True)
class PairRecord:
    """One (NAIP image, Sentinel-2 series) pair of a dataset rooted at ``root``."""

    root: Path
    image_id: str
    tile: str

    @property
    def naip_path(self) -> Path:
        return self.root / NAIP_DIR / self.image_id / self.tile / HR_FILE

    @property
    def s2_dir(self) -> Path:
        return self.root / S2_DIR / self.tile

    def band_path(self, band: str) -> Path:
        return self.s2_dir / f"{band}.png"

    @property
    def old_naip_dir(self) -> Path:
        return self.root / OLD_NAIP_DIR / self.tile


def _is_tile_name(name: str) -> bool:
    try:
        Tile.parse(name)
    except ValueError:
        return False
    return True


def require_dataset_root(root: str | os.PathLike[str]) -> Path:
    """Check that ``root`` looks like an S2-NAIP dataset; return it as a Path."""
    r = Path(root)
    if not r.exists():
        raise DataError(f"{r}: dataset folder not found")
    if not r.is_dir():
        raise DataError(f"{r}: not a folder (expected an S2-NAIP dataset root)")
    missing = [d for d in (NAIP_DIR, S2_DIR) if not (r / d).is_dir()]
    if missing:
        raise DataError(
            f"{r}: not an S2-NAIP dataset (missing {' and '.join(d + '/' for d in missing)}; "
            "expected naip/{image_id}/{tile}/rgb.png and sentinel2/{tile}/{band}.png)"
        )
    return r


def unfinished_build(root: str | os.PathLike[str]) -> str | None:
    """Why ``root`` is not a whole dataset yet: a ``zoomsr data build`` there was interrupted
    or failed (its state folder, no index: it writes the index last); None otherwise."""
    r = Path(root)
    if (r / BUILD_STATE_DIR).is_dir() and not (r / INDEX_FILE).is_file():
        return (f"unfinished `zoomsr data build` ({BUILD_STATE_DIR}/ but no {INDEX_FILE}): "
                "run the same build command again to finish it")
    return None


def scan_pairs(root: str | os.PathLike[str], unfinished_ok: bool = False) -> list[PairRecord]:
    """List every pair whose ``naip/{image_id}/{tile}/rgb.png`` exists, sorted by (tile, image).

    Folders whose names are not tile ids are ignored here (``zoomsr data check`` reports them).
    Raises :class:`DataError` if the root is not a dataset or holds no pair, or (unless
    ``unfinished_ok``) holds an :func:`unfinished_build`: its pairs are a part of the build's,
    and a split made from them would not be the build's.
    """
    r = require_dataset_root(root)
    why = None if unfinished_ok else unfinished_build(r)
    if why:
        raise DataError(f"{r}: {why}")
    pairs = []
    with os.scandir(r / NAIP_DIR) as images:
        for image in images:
            if not image.is_dir():
                continue
            with os.scandir(image.path) as tiles:
                for tile in tiles:
                    if (
                        tile.is_dir()
                        and _is_tile_name(tile.name)
                        and os.path.isfile(os.path.join(tile.path, HR_FILE))
                    ):
                        pairs.append(PairRecord(r, image.name, tile.name))
    if not pairs:
        if unfinished := unfinished_build(r):  # stopped before its first pair
            raise DataError(f"{r}: no pairs yet, {unfinished}")
        raise DataError(f"{r}: no pairs found (no naip/{{image_id}}/{{tile}}/{HR_FILE} files)")
    pairs.sort(key=lambda p: (p.tile, p.image_id))
    return pairs


def read_metadata(root: str | os.PathLike[str]) -> dict:
    """The dataset's ``zoomsr_dataset.json`` (empty dict when absent)."""
    path = Path(root) / METADATA_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable metadata ({exc})") from None


#: NAIP pixels per Sentinel-2 pixel when a dataset records none (the published data's).
DEFAULT_SCALE = 4


def recorded_scale(root: str | os.PathLike[str]) -> int | None:
    """The scale ``zoomsr_dataset.json`` records (``data build --scale``, ``data sample``), or
    None when the file or the value is absent."""
    meta = read_metadata(root)
    value = meta.get("scale")
    if value is None and isinstance(meta.get("degradation"), dict):
        value = meta["degradation"].get("scale")  # samples written before "scale" was recorded
    if value is None and unfinished_build(root):
        value = _build_scale(Path(root))  # the metadata is written last: the build's settings
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{Path(root) / METADATA_FILE}: scale must be an integer >= 1, "
                        f"found {value!r}")
    return value


def _build_scale(root: Path) -> int | None:
    """The ``--scale`` an unfinished ``zoomsr data build`` in ``root`` runs with (its state's
    settings), or None when they cannot be read."""
    try:
        state = json.loads((root / BUILD_STATE_DIR / "build.json").read_text(encoding="utf-8"))
        value = state["config"]["scale"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def dataset_scale(root: str | os.PathLike[str], scale: int | None = None) -> int:
    """The scale to read a dataset with (NAIP chunks are ``32*scale`` px).

    ``scale`` when given (it must be >= 1, else :class:`ConfigError`; when it differs from
    the scale the dataset records, it is used and a :class:`ZoomsrWarning` says so), else the
    recorded one (:func:`recorded_scale`), else :data:`DEFAULT_SCALE`.
    """
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, numbers.Integral)
                              or scale < 1):
        raise ConfigError(f"scale must be an integer >= 1, got {scale!r}")
    if scale is not None:
        scale = int(scale)  # a NumPy integer too
    recorded = recorded_scale(root)
    if scale is None:
        return recorded if recorded is not None else DEFAULT_SCALE
    if recorded is not None and recorded != scale:
        warnings.warn(
            f"scale {scale} given, but {Path(root) / METADATA_FILE} records scale {recorded}; "
            f"reading with {scale} (NAIP images of {LR_PIXELS * scale} px); leave the scale "
            "out to use the recorded one", ZoomsrWarning, stacklevel=2)
    return scale


def read_hr(path: Path, size: int) -> np.ndarray:
    """Read a NAIP chunk as ``[size, size, 3]`` uint8, refusing any other shape or dtype."""
    arr = read_png(path)
    if arr.dtype != np.uint8:
        raise DataError(f"{path}: NAIP image must be 8-bit RGB, found {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        shape = "x".join(map(str, arr.shape))
        raise DataError(f"{path}: NAIP image must be RGB, found shape {shape}")
    if arr.shape[2] == 4:
        raise DataError(f"{path}: NAIP image has an alpha channel; expected 3-channel RGB")
    if arr.shape[:2] != (size, size):
        raise DataError(
            f"{path}: NAIP image is {arr.shape[1]}x{arr.shape[0]} px, expected {size}x{size}"
        )
    return arr


#: PNG colour types (IHDR byte 25) with more than one channel.
_PNG_COLOURS = {2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}


def _refuse_16bit_colour(path: Path, band: str) -> None:
    """Raise :class:`DataError` when ``path`` is a 16-bit PNG with several channels, saying
    what ``band`` needs (the PNG reader's advice, 8-bit RGB, fits TCI only)."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return
    if len(head) < 26 or head[12:16] != b"IHDR" or head[24] != 16 or head[25] not in _PNG_COLOURS:
        return
    expected = ("8-bit RGB (3 channels)" if band_channels(band) == 3
                else "16-bit grey (1 channel of digital numbers)")
    raise DataError(f"{path}: band {band} is a 16-bit {_PNG_COLOURS[head[25]]} PNG; expected "
                    f"{expected}")


def read_band_series(path: Path, band: str, chunk: int = LR_PIXELS) -> np.ndarray:
    """Read a stacked band file as ``[T, chunk, chunk, C]`` in its raw dtype.

    The file is ``[T*chunk, chunk(, C)]``. Wrong width, a height that is not a multiple of
    ``chunk``, or the wrong channel count raise :class:`DataError` naming the file.
    """
    try:
        arr = read_png(path)
    except DataError:
        _refuse_16bit_colour(path, band)  # a band file's own reason, when that is the cause
        raise
    channels = band_channels(band)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[2] != channels:
        raise DataError(
            f"{path}: band {band} must have {channels} channel(s) per pixel, found {arr.shape[2]}"
        )
    height, width = arr.shape[:2]
    if width != chunk:
        raise DataError(f"{path}: width is {width} px, expected {chunk} (one chunk wide)")
    if height == 0 or height % chunk:
        raise DataError(
            f"{path}: height {height} px is not a positive multiple of {chunk} "
            "(the time series must be whole chunks stacked vertically)"
        )
    return arr.reshape(height // chunk, chunk, chunk, channels)


def not_a_file(path: Path) -> str:
    """Why ``path``, which should be a file, is not one: a broken link, a folder, missing."""
    if path.is_symlink() and not path.exists():
        return f"broken symbolic link (its target {os.readlink(path)} does not exist)"
    return "is a folder, expected a PNG file" if path.is_dir() else "missing"


def read_series(record: PairRecord, bands: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Read every requested band of a pair: ``band -> [T, 32, 32, C]``; T must agree."""
    out: dict[str, np.ndarray] = {}
    for band in bands:
        path = record.band_path(band)
        if not path.exists():
            if not record.s2_dir.is_dir():
                raise DataError(
                    f"{record.s2_dir}: Sentinel-2 folder missing for tile {record.tile}"
                )
            why = not_a_file(path)
            if why != "missing":
                raise DataError(f"{path}: {why}")
            asked = ",".join(bands)
            raise DataError(f"{path}: band {band} missing (bands {asked} asked for: a dataset "
                            f"built with zoomsr data build --bands {asked} has them; else ask "
                            "for the bands it has)")
        out[band] = read_band_series(path, band)
    lengths = {b: a.shape[0] for b, a in out.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{b}={t}" for b, t in lengths.items())
        raise DataError(f"{record.s2_dir}: bands have different numbers of time steps ({detail})")
    return out
