"""Writing pairs in the published S2-NAIP layout (used by the sample generator and builder)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from zoomsr.data.bands import BANDS, band_channels, validate_bands
from zoomsr.data.layout import (
    HR_FILE,
    METADATA_FILE,
    NAIP_DIR,
    S2_DIR,
    PairRecord,
    read_metadata,
    recorded_scale,
)
from zoomsr.errors import DataError
from zoomsr.grid import LR_PIXELS, Tile
from zoomsr.io.atomic import atomic_write_text
from zoomsr.io.png import read_png, write_png
from zoomsr.validate import check_int


class S2NAIPWriter:
    """Write (NAIP, Sentinel-2 series) pairs under ``root``.

    Sentinel-2 files are written before the NAIP ``rgb.png``, and every file atomically, so a
    pair whose ``rgb.png`` exists is complete: readers and resumed writers can rely on it.

    Args:
        root: output folder (created).
        scale: NAIP chunk size is ``32*scale`` px. It is recorded in ``zoomsr_dataset.json``
            (added to the file there, or a new one), so that readers take the chunks at their
            size; a dataset recording another scale is refused.
        overwrite: replace existing files instead of refusing; a new series replaces the
            tile's whole series (band files it lacks are deleted).
    """

    def __init__(self, root: str | os.PathLike[str], scale: int = 4, overwrite: bool = False):
        self.root = Path(root)
        self.scale = check_int("scale", scale, minimum=1)
        self.hr_size = LR_PIXELS * scale
        self.overwrite = overwrite
        (self.root / NAIP_DIR).mkdir(parents=True, exist_ok=True)
        (self.root / S2_DIR).mkdir(parents=True, exist_ok=True)
        recorded = recorded_scale(self.root)
        if recorded is not None and recorded != scale:
            raise DataError(f"{self.root / METADATA_FILE}: the dataset records scale "
                            f"{recorded} (NAIP images of {LR_PIXELS * recorded} px); cannot "
                            f"add pairs of scale {scale}")
        if recorded is None:
            self._refuse_other_scale_beside(scale)
            # without it, the reader took the chunks for the default scale's size
            atomic_write_text(self.root / METADATA_FILE, json.dumps(
                {**read_metadata(self.root), "scale": scale}, indent=2, sort_keys=True) + "\n")

    def _refuse_other_scale_beside(self, scale: int) -> None:
        """Raise :class:`DataError` when the folder, recording no scale, holds a pair whose
        NAIP image is not ``32*scale`` px: recording ``scale`` would make every reader take
        it (and the others) for the wrong size."""
        first = next(self.root.glob(f"{NAIP_DIR}/*/*/{HR_FILE}"), None)
        if first is None:
            return
        try:
            size = read_png(first).shape[1]
        except DataError:
            return  # `data check` names it; its size says nothing
        if size != self.hr_size:
            raise DataError(f"{first}: NAIP image of {size} px, and {METADATA_FILE} records "
                            f"no scale; cannot add pairs of scale {scale} "
                            f"({self.hr_size} px) beside it")

    def has_pair(self, tile: str | Tile, image_id: str) -> bool:
        """True when the pair was completely written (its NAIP file exists)."""
        return PairRecord(self.root, image_id, str(tile)).naip_path.exists()

    def write_pair(
        self,
        tile: str | Tile,
        image_id: str,
        hr: np.ndarray,
        frames: Mapping[str, np.ndarray] | None,
        old_hr: Sequence[np.ndarray] = (),
    ) -> PairRecord:
        """Write one pair.

        Args:
            tile: zoom-17 tile (``Tile`` or ``"{col}_{row}"``).
            image_id: NAIP image identifier (folder name).
            hr: ``[32*scale, 32*scale, 3]`` uint8 RGB, no alpha.
            frames: ``band -> [T, 32, 32, C]`` in any key order, ``tci`` among them; ``tci``
                uint8 with C=3, other bands uint16 with C=1 (or ``[T, 32, 32]``). ``None``
                keeps the tile's existing series (a second NAIP image of the same tile).
            old_hr: older NAIP images of the tile, each like ``hr``.
        """
        tile_id = str(Tile.parse(str(tile)))
        if not image_id or "/" in image_id or image_id.startswith("."):
            raise DataError(f"invalid image id {image_id!r}")
        record = PairRecord(self.root, image_id, tile_id)
        # Everything checked before the first file is written: a refused pair leaves nothing
        # behind that would make its corrected retry fail with "already exists".
        self._check_hr(hr, f"NAIP image of {tile_id}")
        old_hr = list(old_hr)
        for k, old in enumerate(old_hr):
            self._check_hr(old, f"old NAIP image {k} of {tile_id}")
        targets = [record.naip_path, *(record.old_naip_dir / f"{image_id}_{k}.png"
                                       for k in range(len(old_hr)))]
        if frames is None:
            if not record.band_path("tci").exists():
                raise DataError(f"{record.s2_dir}: no existing Sentinel-2 series to reuse")
            stacks: dict[str, np.ndarray] = {}
        else:
            stacks = self._series_stacks(record, frames)
            # every band file of the tile: one left from an earlier series would be read
            # with this one's time steps
            targets += [record.band_path(b) for b in BANDS]
        if not self.overwrite:
            for path in targets:
                if path.exists():
                    raise DataError(f"{path}: already exists (use overwrite=True / --overwrite)")
        if frames is not None:
            for band in BANDS:
                if band not in stacks:
                    record.band_path(band).unlink(missing_ok=True)
            for band, stack in stacks.items():
                self._write(record.band_path(band), stack)
        for k, old in enumerate(old_hr):
            self._write(record.old_naip_dir / f"{image_id}_{k}.png", old)
        self._write(record.naip_path, hr)
        return record

    def write_metadata(self, **info: object) -> Path:
        """Write ``zoomsr_dataset.json`` (e.g. ``synthetic=True``, provenance, parameters);
        it records the writer's ``scale`` unless ``info`` gives one."""
        path = self.root / METADATA_FILE
        info = {"scale": self.scale, **info}
        atomic_write_text(path, json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
        return path

    def _check_hr(self, hr: np.ndarray, what: str) -> None:
        shape = (self.hr_size, self.hr_size, 3)
        if hr.dtype != np.uint8 or hr.shape != shape:
            raise DataError(f"{what}: expected uint8 {shape}, got {hr.dtype} {hr.shape}")

    def _series_stacks(self, record: PairRecord,
                       frames: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check ``frames`` and stack each band as its file holds it, ``[T*32, 32, C]``."""
        named = {str(b).lower(): a for b, a in frames.items()}
        if "tci" not in named:
            raise DataError(f"{record.tile}: frames need a 'tci' series (it decides which time "
                            f"steps are valid), got {list(frames)}")
        # any key order: the file names, not the order, say which band is which
        bands = validate_bands(["tci", *(b for b in frames if str(b).lower() != "tci")])
        lengths = set()
        stacks = {}
        for band in bands:
            arr = np.asarray(named[band])
            if arr.ndim == 3:
                arr = arr[..., None]
            channels = band_channels(band)
            want_dtype = np.uint8 if band == "tci" else np.uint16
            if arr.ndim != 4 or arr.shape[1:] != (LR_PIXELS, LR_PIXELS, channels):
                raise DataError(
                    f"{record.tile}/{band}: expected [T, {LR_PIXELS}, {LR_PIXELS}, {channels}], "
                    f"got {list(arr.shape)}"
                )
            if arr.dtype != want_dtype:
                raise DataError(
                    f"{record.tile}/{band}: expected {np.dtype(want_dtype)}, got {arr.dtype}"
                )
            if arr.shape[0] == 0:
                raise DataError(f"{record.tile}/{band}: empty time series")
            lengths.add(arr.shape[0])
            stacks[band] = arr.reshape(-1, LR_PIXELS, channels)  # [T*32, 32, C], stacked down
        if len(lengths) > 1:
            raise DataError(f"{record.tile}: bands have different time-series lengths {lengths}")
        return stacks

    def _write(self, path: Path, array: np.ndarray) -> None:
        if path.exists() and not self.overwrite:
            raise DataError(f"{path}: already exists (use overwrite=True / --overwrite)")
        write_png(path, array)


__all__ = ["S2NAIPWriter"]
