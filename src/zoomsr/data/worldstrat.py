"""PyTorch dataset over the WorldStrat layout (Cornebise et al., NeurIPS 2022 Datasets and
Benchmarks): SPOT 6/7 high-resolution images paired with Sentinel-2 revisits.

The data are not on this machine: download them from Zenodo (https://zenodo.org/records/6810792,
DOI 10.5281/zenodo.6810792: ``hr_dataset.zip``, ``lr_dataset_l2a.zip``, ``metadata.csv``,
``stratified_train_val_test_split.csv``) or Kaggle (https://www.kaggle.com/datasets/jucor1/worldstrat)
and unpack them into one folder, ``root``::

    root/
      stratified_train_val_test_split.csv      columns include tile, split (train/val/test)
      metadata.csv                             optional: one row per (AOI, revisit n), cloud_cover
      hr_dataset/[12bit/]<aoi>/
        <aoi>_ps.tiff     pan-sharpened SPOT, 4 bands R,G,B,NIR, uint16 12-bit, ~1054x1054 (1.5 m)
        <aoi>_pan.tiff    panchromatic, 1 band, uint16, ~1054x1054 (1.5 m)
        <aoi>_rgbn.tiff   native multispectral, 4 bands R,G,B,NIR, uint16, ~263x263 (6 m)
        <aoi>_rgb.png     8-bit RGB (or RGBA) preview, ~1054x1054
      lr_dataset/<aoi>/L2A/
        <aoi>-<n>-L2A_data.tiff   revisit n (1-based; 8 per AOI on Kaggle, up to 16): 12 bands
                                  B01..B12 without B10, float32 reflectance, ~155-164 px (10 m)
        <aoi>-<n>-CLM.tiff        optional cloud mask (0 clear, 1 cloud, 255 no data)
        <aoi>-<n>-dataMask.tiff   optional data mask (1 data, 0 no data)
      lr_dataset/<aoi>/L1C/<aoi>-<n>-L1C_data.tiff   (``level="L1C"``: 13 bands, with B10)

Where these facts come from (read, not copied): the official code (github.com/worldstrat/worldstrat)
``dataset_generation/SentinelDownloader.py`` (band lists, ``<aoi>-<n>-<level>_data.tiff`` and
``-CLM``/``-dataMask`` names, 10 m grid from Sentinel Hub / eo-learn, float reflectance),
``dataset_generation/SPOTDownloader.py`` (SPOT bands written as B2,B1,B0,B3 = R,G,B,NIR in
uint16; 6 m RGBN and 1.5 m PAN sizes of a 2.5 km^2 AOI: 263 and 1054 px), ``src/datasets.py``
(``load_dataset_JIF``/``make_transforms_JIF``: ``hr_dataset/12bit/*``, ``lr_dataset/*/L2A``, HR
read as ``_ps.tiff`` bands 1-3, divided by 10000 and clamped to [0, 1], both resized with
antialiased bilinear interpolation, LR to 160x160 and HR to 1054x1054);
``pretrained_model/stratified_train_val_test_split.csv`` (columns ``,tile,IPCC Class,SMOD,source,
joint_class,split``); torchgeo's ``WorldStrat`` (Zenodo archive names, ``hr_dataset/<aoi>`` without
``12bit``); satlas-super-resolution's ``worldstrat_dataset.py`` (the paper's WorldStrat runs:
LR resized to 160x160, HR to 640x640, i.e. x4).

Scale: Sentinel-2 is 10 m, SPOT 1.5 m, so the native ratio is ~6.67 (1054 px over ~158 px) and not
an integer; the official code resizes HR to 1054 for 160 px inputs (x6.5875). This loader always
returns an integer ratio: LR frames are resized to ``lr_size`` (default 160, as the official code
and the reference do; ``None`` keeps the native grid) and HR to ``scale`` times the LR size
(default 4, the reference's 160 -> 640), both with antialiased bilinear interpolation as the
official transforms do.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import rasterio
import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from torch.utils.data import Dataset

from zoomsr.data.s2naip import to_layout
from zoomsr.data.sampler import item_index
from zoomsr.errors import ConfigError, DataError, ZoomsrWarning, first_line
from zoomsr.io.png import read_png
from zoomsr.layout import Layout
from zoomsr.validate import check_bool, check_choice, check_float, check_int

#: Bands of a ``-L2A_data.tiff`` in file order (Sentinel Hub L2A has no B10).
L2A_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
#: Bands of a ``-L1C_data.tiff`` in file order.
L1C_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
             "B12")
LEVEL_BANDS = {"L2A": L2A_BANDS, "L1C": L1C_BANDS}
#: HR products: file suffix and bands in file order (SPOT written as R, G, B, NIR).
HR_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ps": ("_ps.tiff", ("R", "G", "B", "NIR")),
    "rgbn": ("_rgbn.tiff", ("R", "G", "B", "NIR")),
    "pan": ("_pan.tiff", ("PAN",)),
    "rgb": ("_rgb.png", ("R", "G", "B")),
}
SPLITS = ("train", "val", "test")
SPLIT_FILE = "stratified_train_val_test_split.csv"
METADATA_FILE = "metadata.csv"
#: 12-bit SPOT digital numbers are divided by this (the official SPOT_MAX_EXPECTED_VALUE_12_BIT).
SPOT_DIVISOR = 10000.0
#: Integer Sentinel-2 files (digital numbers) are divided by this; float files are already
#: reflectance (Sentinel Hub's float32 output), as the published ones are.
S2_DIVISOR = 10000.0
DOWNLOAD_HINT = ("download WorldStrat from https://zenodo.org/records/6810792 (or Kaggle "
                 "jucor1/worldstrat) and unpack it there")
_S2_DTYPES = ("float32", "float64", "uint16", "int16")


class WorldStratWarning(ZoomsrWarning):
    """AOIs of the split were left out (``skip_missing=True``) because their files are missing."""


@dataclass(frozen=True)
class WorldStratAOI:
    """One area of interest: its name, Sentinel-2 folder, HR file and revisit numbers."""

    name: str
    lr_dir: Path
    hr_path: Path
    revisits: tuple[int, ...]


class WorldStratDataset(Dataset):
    """WorldStrat Sentinel-2 revisits (LR) paired with SPOT (HR) images, one item per AOI.

    Each item is a dict:

    - ``lr``: float32 reflectance in [0, 1], ``[n_images*C, h, w]`` (``layout="stacked"``) or
      ``[n_images, C, h, w]`` (``layout="frames"``), channels in the order of ``lr_bands``;
      ``h = w = lr_size`` (or the native ~155-164 px grid when ``lr_size=None``). Float files
      are reflectance already; integer ones are divided by 10000; then clipped to [0, 1].
    - ``hr``: float32 in [0, 1], ``[C_hr, h*scale, w*scale]``: SPOT 12-bit values / 10000
      (clipped) for the ``.tiff`` products, / 255 for ``_rgb.png``.
    - ``lr_valid``: bool ``[n_images, h, w]``: not cloud (``-CLM.tiff`` != 0), data
      (``-dataMask.tiff`` != 0), finite and not zero in every chosen band. Masks that are not in
      the folder are not applied. After a resize a pixel is valid only if every native pixel
      that contributes to it is.
    - ``hr_valid``: bool ``[h*scale, w*scale]``: not zero in every band of the HR file (SPOT's
      no-data fill), and not transparent for an RGBA ``_rgb.png``; resized the same way.
    - ``frames``: int64 ``[n_images]``: the revisit numbers ``n`` of the chosen files
      (``<aoi>-<n>-L2A_data.tiff``, 1-based, as in ``metadata.csv``), ascending.
    - ``id``: the AOI name (``tile`` in the split file), e.g. ``"Landcover-773616"``.

    Frame choice ranks revisits by their fraction of invalid pixels, then by
    ``metadata.csv``'s ``cloud_cover`` (unknown last), then at random. Where every revisit of
    the AOI has a mask (the published data: ``-CLM`` and ``-dataMask`` for each), the masks
    alone give that fraction and only the chosen revisits' data files are read; otherwise every
    data file is read and its no-data pixels count too (``lr_valid`` always has both). In
    evaluation the ``n_images`` best are taken, ties broken by ``(seed, index)``, so results
    repeat. In training ``n_images`` are drawn at random (from torch's generator) among the
    revisits with at most ``max_invalid`` invalid pixels, or if fewer than ``n_images`` of
    those, among those no worse than the ``n_images``-th best. AOIs with fewer revisits
    repeat some (each at most once more than any other).

    Args:
        root: the unpacked dataset folder (holds ``hr_dataset/``, ``lr_dataset/`` and the
            split file).
        split: ``"train"``, ``"val"`` or ``"test"``, from the official stratified split file.
        n_images: Sentinel-2 revisits per item (WorldStrat has 8 or 16 per AOI).
        layout: ``"stacked"`` or ``"frames"``.
        lr_bands: Sentinel-2 bands in output order, names as in :data:`L2A_BANDS` (or
            :data:`L1C_BANDS` for ``level="L1C"``), a list or ``"B04,B03,B02,B08"``; ``B4`` is
            read as ``B04``. Default (or None) R, G, B.
        hr_kind: ``"ps"`` (pan-sharpened 1.5 m, default), ``"pan"``, ``"rgbn"`` (native 6 m) or
            ``"rgb"`` (the 8-bit PNG).
        hr_bands: HR bands in output order: from R, G, B, NIR (``ps``, ``rgbn``), R, G, B
            (``rgb``) or PAN (``pan``). Default R, G, B (PAN for ``pan``).
        level: ``"L2A"`` (default, bottom of atmosphere) or ``"L1C"`` (top of atmosphere,
            the level the reference's WorldStrat runs read).
        lr_size: LR frames are resized to ``lr_size`` x ``lr_size`` px; ``None`` keeps the
            native grid (which differs between AOIs: batch them one at a time).
        scale: HR/LR size ratio; the HR image is resized to ``scale`` times the LR size.
        train: random frame choice (torch's generator); otherwise deterministic from ``seed``.
        seed: evaluation seed for breaking ties in frame choice.
        max_invalid: in training, the fraction of invalid pixels a revisit may have and still be
            drawn.
        use_metadata: rank equally clean revisits by ``metadata.csv``'s ``cloud_cover`` when that
            file is in ``root``.
        split_file: the split CSV; default ``root/stratified_train_val_test_split.csv``.
        skip_missing: leave out AOIs of the split whose folders or files are missing, with one
            warning (``self.missing`` lists them), instead of raising :class:`DataError`.

    Unusable files raise :class:`~zoomsr.errors.DataError` naming the file; nothing is skipped
    without ``skip_missing``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        n_images: int = 8,
        layout: Layout = "stacked",
        lr_bands: Sequence[str] | str | None = ("B04", "B03", "B02"),
        hr_kind: str = "ps",
        hr_bands: Sequence[str] | str | None = None,
        level: str = "L2A",
        lr_size: int | None = 160,
        scale: int = 4,
        train: bool = False,
        seed: int = 0,
        max_invalid: float = 0.1,
        use_metadata: bool = True,
        split_file: str | os.PathLike[str] | None = None,
        skip_missing: bool = False,
    ) -> None:
        check_choice("split", split, SPLITS)
        check_int("n_images", n_images, minimum=1)
        check_choice("layout", layout, ("stacked", "frames"))
        check_choice("hr_kind", hr_kind, tuple(HR_KINDS))
        check_choice("level", level, tuple(LEVEL_BANDS))
        if lr_size is not None:
            check_int("lr_size", lr_size, minimum=1)
        check_int("scale", scale, minimum=1, maximum=16)
        check_bool("train", train)
        check_int("seed", seed, minimum=0)
        self.max_invalid = check_float("max_invalid", max_invalid, minimum=0.0, maximum=1.0)
        check_bool("use_metadata", use_metadata)
        check_bool("skip_missing", skip_missing)
        self.root = Path(root)
        self.split = split
        self.n_images = n_images
        self.layout: Layout = layout
        self.level = level
        self.lr_bands = _parse_lr_bands(lr_bands, level)
        self._band_indexes = [LEVEL_BANDS[level].index(b) + 1 for b in self.lr_bands]  # 1-based
        self.hr_kind = hr_kind
        self.hr_bands = _parse_hr_bands(hr_bands, hr_kind)
        self.channels = len(self.lr_bands)
        self.hr_channels = len(self.hr_bands)
        self.hr_rgb = hr_rgb(self.hr_bands)
        self.lr_rgb = lr_rgb(self.lr_bands)
        self.lr_size = lr_size
        self.scale = scale
        self.train = train
        self.seed = seed

        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset folder not found; {DOWNLOAD_HINT}")
        lr_root = self.root / "lr_dataset"
        hr_root = self.root / "hr_dataset"
        for folder in (lr_root, hr_root):
            if not folder.is_dir():
                raise DataError(f"{folder}: folder not found; {DOWNLOAD_HINT}")
        # Kaggle and the official code keep the 12-bit products under hr_dataset/12bit/; the
        # Zenodo archive (and torchgeo) has the AOI folders directly under hr_dataset/.
        if (hr_root / "12bit").is_dir():
            hr_root = hr_root / "12bit"
        self.split_file = Path(split_file) if split_file is not None else self.root / SPLIT_FILE
        names = _read_split(self.split_file, split)
        self.missing: list[str] = []
        self.aois: list[WorldStratAOI] = []
        for name in names:
            aoi, problem = _scan_aoi(name, lr_root, hr_root, level, HR_KINDS[hr_kind][0])
            if aoi is not None:
                self.aois.append(aoi)
            elif skip_missing:
                self.missing.append(problem)
            else:
                raise DataError(f"{problem}; {DOWNLOAD_HINT} (or pass skip_missing=True)")
        if self.missing:
            warnings.warn(
                f"WorldStrat {split}: left out {len(self.missing)} AOI(s) with missing files "
                f"(`dataset.missing` lists them), e.g. {self.missing[0]}",
                WorldStratWarning,
                stacklevel=2,
            )
        if not self.aois:
            raise DataError(f"{self.split_file}: no usable AOI of split {split!r}")
        self.cloud_cover: dict[tuple[str, int], float] = {}
        metadata = self.root / METADATA_FILE
        if use_metadata and metadata.is_file():
            self.cloud_cover = _read_cloud_cover(metadata, {a.name for a in self.aois})

    def __len__(self) -> int:
        return len(self.aois)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        """AOI ``index``, or ``(index, sample_seed)`` (as
        :class:`~zoomsr.data.sampler.ResumableSampler` draws them): the seed then picks its
        frames; otherwise training draws from torch's generator and evaluation from
        ``(seed, index)``."""
        index, sample_seed = item_index(index, len(self), "AOI")
        if sample_seed is None:
            if self.train:
                # Seeded from torch so torch.manual_seed and DataLoader worker seeding control it.
                sample_seed = int(torch.randint(0, 2**62, (1,)).item())
            else:
                return self.load(index, np.random.default_rng((self.seed, index)))
        return self.load(index, np.random.default_rng(sample_seed))

    def load(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        """Load AOI ``index``, breaking frame-choice ties (and drawing, in training) with
        ``rng``; raises :class:`DataError` naming an unusable file."""
        aoi = self.aois[index]
        masks = [self._read_masks(aoi, n) for n in aoi.revisits]
        frames: dict[int, tuple[np.ndarray, np.ndarray, Path]] = {}
        if all(valid is not None for valid, _ in masks):
            # The masks (as published: CLM and dataMask for every revisit) rank the revisits;
            # a data file is 12 bands to decode, so only the chosen revisits' are read.
            invalid = np.array([1.0 - cast(np.ndarray, valid).mean() for valid, _ in masks])
        else:
            for p, n in enumerate(aoi.revisits):
                frames[p] = self._read_revisit(aoi, n, masks[p])
            invalid = np.array([1.0 - frames[p][1].mean() for p in range(len(aoi.revisits))])
        cloud = np.array([self.cloud_cover.get((aoi.name, n), math.nan) for n in aoi.revisits])
        picks = [int(p) for p in choose_frames(invalid, cloud, self.n_images, rng, self.train,
                                               self.max_invalid)]
        for p in picks:
            if p not in frames:
                frames[p] = self._read_revisit(aoi, aoi.revisits[p], masks[p])
        if self.lr_size is not None:
            lr_shape = (self.lr_size, self.lr_size)
        else:
            lr_shape = frames[picks[0]][0].shape[1:]
            for p in picks:
                if frames[p][0].shape[1:] != lr_shape:
                    raise DataError(
                        f"{frames[p][2]}: {_size(frames[p][0].shape[1:])} px, other revisits "
                        f"of {aoi.name} are {_size(lr_shape)}; pass lr_size to resize them"
                    )
        lr = torch.stack([_resize(torch.from_numpy(frames[p][0]), lr_shape) for p in picks])
        lr_valid = torch.stack([_resize_valid(torch.from_numpy(frames[p][1]), lr_shape)
                                for p in picks])
        hr_np, hr_valid_np = self._read_hr(aoi)
        hr_shape = (lr_shape[0] * self.scale, lr_shape[1] * self.scale)
        return {
            "lr": to_layout(lr, self.layout),
            "hr": _resize(torch.from_numpy(hr_np), hr_shape),
            "lr_valid": lr_valid,
            "hr_valid": _resize_valid(torch.from_numpy(hr_valid_np), hr_shape),
            "frames": torch.tensor([aoi.revisits[p] for p in picks], dtype=torch.int64),
            "id": aoi.name,
        }

    def revisit_path(self, index: int, n: int, kind: str = "data") -> Path:
        """The file of revisit ``n`` of AOI ``index``: ``kind`` ``"data"``, ``"CLM"`` or
        ``"dataMask"``."""
        aoi = self.aois[index]
        suffix = f"{self.level}_data" if kind == "data" else kind
        return aoi.lr_dir / f"{aoi.name}-{n}-{suffix}.tiff"

    def georeference(self, index: int) -> dict[str, Any]:
        """Where AOI ``index``'s item lies: ``crs`` and the affine ``lr_transform`` /
        ``hr_transform`` of the returned LR and HR grids (with ``lr_size=None``, the first
        revisit's grid), from its first Sentinel-2 file; all None where that file has no
        georeference. (The published SPOT files carry none; they cover the same box.)"""
        aoi = self.aois[index]
        path = self.revisit_path(index, aoi.revisits[0])
        with _opened(path) as src:
            crs, transform, height, width = src.crs, src.transform, src.height, src.width
        if crs is None and transform.is_identity:
            return {"crs": None, "lr_transform": None, "hr_transform": None}
        out_h, out_w = (self.lr_size, self.lr_size) if self.lr_size else (height, width)
        lr_transform = _scaled(transform, width / out_w, height / out_h)
        hr_transform = _scaled(lr_transform, 1 / self.scale, 1 / self.scale)
        return {"crs": crs, "lr_transform": lr_transform, "hr_transform": hr_transform}

    def _read_masks(
        self, aoi: WorldStratAOI, n: int
    ) -> tuple[np.ndarray | None, Path | None]:
        """Revisit ``n``'s valid pixels by its masks (not cloud in ``-CLM.tiff``, data in
        ``-dataMask.tiff``) and the first mask's path; ``(None, None)`` without masks."""
        found: list[tuple[Path, np.ndarray]] = []
        for mask_name, bad_when_nonzero in (("CLM", True), ("dataMask", False)):
            mask_path = aoi.lr_dir / f"{aoi.name}-{n}-{mask_name}.tiff"
            if not mask_path.is_file():
                continue
            mask = _read_raster(mask_path, 1, None, f"{mask_name} mask")[0]
            found.append((mask_path, (mask == 0) if bad_when_nonzero else (mask != 0)))
        if not found:
            return None, None
        if len(found) == 2 and found[0][1].shape != found[1][1].shape:
            # which one is wrong: the data file's size says (its header only)
            data_path = aoi.lr_dir / f"{aoi.name}-{n}-{self.level}_data.tiff"
            shape = _raster_shape(data_path)
            path, mask = next(((p, m) for p, m in found if m.shape != shape), found[0])
            raise DataError(f"{path}: {_size(mask.shape)} px, its data file {data_path.name} "
                            f"is {_size(shape)}")
        valid = found[0][1]
        for _, other in found[1:]:
            valid &= other
        return valid, found[0][0]

    def _read_revisit(
        self, aoi: WorldStratAOI, n: int, masks: tuple[np.ndarray | None, Path | None]
    ) -> tuple[np.ndarray, np.ndarray, Path]:
        """Revisit ``n``: chosen bands ``[C, h, w]`` float32 in [0, 1], valid ``[h, w]`` (its
        data and ``masks``, from :meth:`_read_masks`), path."""
        path = aoi.lr_dir / f"{aoi.name}-{n}-{self.level}_data.tiff"
        raw = _read_raster(path, len(LEVEL_BANDS[self.level]), _S2_DTYPES,
                           f"Sentinel-2 {self.level}", self._band_indexes)
        data = raw.astype(np.float32)
        if raw.dtype.kind in "iu":
            data *= np.float32(1.0 / S2_DIVISOR)
        finite = np.isfinite(data).all(axis=0)
        # No-data is written as 0 in every band; NaN would poison a model's input.
        valid = finite & (np.nan_to_num(data) != 0).any(axis=0)
        np.nan_to_num(data, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
        np.clip(data, 0.0, 1.0, out=data)
        mask_valid, mask_path = masks
        if mask_valid is not None:
            if mask_valid.shape != valid.shape:
                raise DataError(f"{mask_path}: {_size(mask_valid.shape)} px, its data file "
                                f"{path.name} is {_size(valid.shape)}")
            valid &= mask_valid
        return data, valid, path

    def read_prediction(self, path: str | os.PathLike[str],
                        shape: tuple[int, int] | None = None) -> np.ndarray:
        """Another method's output for an AOI, as ``hr`` is read: ``[C_hr, H, W]`` float32
        in [0, 1] (``hr_bands``). A PNG is 8-bit (/ 255, as the ``rgb`` product); a GeoTIFF is
        uint16 SPOT values (/ 10000, as the ``ps``/``rgbn``/``pan`` products) or float in
        [0, 1]; either holds the ``hr_bands`` in order, or all of the ``hr_kind`` product's
        bands (the ``hr_bands`` are then taken from it); floats up to 1.5 are clipped to 1,
        larger ones refused (digital numbers). ``shape``: the items' HR size, to which it is
        resized as the HR is (a prediction at the SPOT image's own size, as WorldStrat's code
        makes them, is brought to ``lr_size`` x scale like its HR; another aspect ratio is
        refused). Raises :class:`DataError` naming the file."""
        p = Path(path)
        file_bands = HR_KINDS[self.hr_kind][1]
        if p.suffix.lower() == ".png":
            img = read_png(p)
            if img.dtype != np.uint8:
                raise DataError(f"{p}: a {img.dtype} PNG; a WorldStrat prediction PNG is 8-bit "
                                "(or a GeoTIFF of uint16 SPOT values or floats in [0, 1])")
            raw = (img[None] if img.ndim == 2 else img.transpose(2, 0, 1)).astype(np.float32)
            raw *= np.float32(1.0 / 255.0)
        else:
            raw = _read_raster(p, None, None, "prediction", fix="write it again")
            if raw.dtype == np.uint16:
                raw = raw.astype(np.float32) * np.float32(1.0 / SPOT_DIVISOR)
            elif raw.dtype.kind == "f":
                raw = raw.astype(np.float32)
                high = float(np.nanmax(raw)) if raw.size else 0.0
                if high > 1.5:  # (SPOT digital numbers saved as floats: all clipped to 1)
                    raise DataError(f"{p}: float values up to {high:.4g}; a WorldStrat "
                                    "prediction holds floats in [0, 1] (or uint16 SPOT values)")
            else:
                raise DataError(f"{p}: data type {raw.dtype}; a WorldStrat prediction GeoTIFF "
                                "holds uint16 SPOT values or floats in [0, 1]")
        if raw.shape[0] == len(file_bands) and raw.shape[0] != self.hr_channels:
            raw = raw[[file_bands.index(b) for b in self.hr_bands]]
        if raw.shape[0] != self.hr_channels:
            raise DataError(f"{p}: {raw.shape[0]} band(s); the items' HR has "
                            f"{self.hr_channels} ({','.join(self.hr_bands)}) or the "
                            f"{self.hr_kind} product's {len(file_bands)}")
        if not np.isfinite(raw).all():
            raise DataError(f"{p}: NaN or infinite pixels")
        np.clip(raw, 0.0, 1.0, out=raw)
        if shape is None:
            return raw
        h, w = raw.shape[1:]
        if abs(h * shape[1] / w - shape[0]) > 1.0:  # (beyond a pixel's rounding)
            raise DataError(f"{p}: {w}x{h} px is not the shape of the item's HR, "
                            f"{shape[1]}x{shape[0]} (a prediction is resized to it, not "
                            "stretched): another item's file, or a crop?")
        return _resize(torch.from_numpy(raw), shape).numpy()

    def _read_hr(self, aoi: WorldStratAOI) -> tuple[np.ndarray, np.ndarray]:
        """The HR image ``[C_hr, H, W]`` float32 in [0, 1] and its valid pixels ``[H, W]``."""
        path = aoi.hr_path
        file_bands = HR_KINDS[self.hr_kind][1]
        picks = [file_bands.index(b) for b in self.hr_bands]
        if self.hr_kind == "rgb":
            img = read_png(path)
            if img.ndim != 3 or img.shape[2] not in (3, 4) or img.dtype != np.uint8:
                raise DataError(f"{path}: expected an 8-bit RGB or RGBA PNG, got shape "
                                f"{list(img.shape)} {img.dtype}")
            valid = cast(np.ndarray, img[:, :, :3].any(axis=2))
            if img.shape[2] == 4:
                valid &= img[:, :, 3] > 0
            hr = img[:, :, picks].transpose(2, 0, 1).astype(np.float32)
            hr *= np.float32(1.0 / 255.0)
            return hr, valid
        raw = _read_raster(path, len(file_bands), ("uint16",), f"SPOT {self.hr_kind} (12-bit)")
        valid = cast(np.ndarray, raw.any(axis=0))
        hr = raw[picks].astype(np.float32)
        hr *= np.float32(1.0 / SPOT_DIVISOR)
        np.clip(hr, 0.0, 1.0, out=hr)
        return hr, valid


def choose_frames(
    invalid: np.ndarray,
    cloud_cover: np.ndarray,
    n: int,
    rng: np.random.Generator,
    train: bool,
    max_invalid: float,
) -> np.ndarray:
    """Positions (into the revisit list) of ``n`` frames, ascending.

    ``invalid`` is each revisit's fraction of invalid pixels, ``cloud_cover`` the metadata's
    (NaN where unknown). Revisits rank by ``invalid``, then ``cloud_cover``, then ``rng``.
    Evaluation takes the ``n`` best; training draws ``n`` with ``rng`` among those with at most
    ``max(max_invalid, invalid of the n-th best)``. Fewer than ``n`` revisits: all are used
    and some repeated (each at most once more than any other).
    """
    invalid = np.asarray(invalid, dtype=np.float64)
    total = invalid.size
    if total == 0:
        raise ValueError("no revisits to choose from")
    cloud = np.asarray(cloud_cover, dtype=np.float64)
    cloud = np.where(np.isnan(cloud), np.inf, cloud)
    # np.lexsort sorts by the last key first.
    order = np.lexsort((rng.permutation(total), cloud, invalid))
    if total < n:
        picks = np.resize(rng.permutation(total) if train else order, n)
    elif not train:
        picks = order[:n]
    else:
        limit = max(max_invalid, invalid[order[n - 1]])
        picks = rng.choice(np.flatnonzero(invalid <= limit), size=n, replace=False)
    return np.sort(picks)


#: The LR bands an item holds unless told: Sentinel-2's red, green, blue.
DEFAULT_LR_BANDS = ("B04", "B03", "B02")


def _parse_lr_bands(bands: Sequence[str] | str | None, level: str) -> tuple[str, ...]:
    if bands is None:  # (a config's `lr_bands: null`, as hr_bands takes it)
        return DEFAULT_LR_BANDS
    items = [b.strip() for b in bands.split(",")] if isinstance(bands, str) else list(bands)
    allowed = LEVEL_BANDS[level]
    out = []
    for item in items:
        name = str(item).upper()
        if len(name) == 2 and name[0] == "B" and name[1].isdigit():
            name = f"B0{name[1]}"  # B4 -> B04
        if name not in allowed:
            raise ConfigError(f"lr_bands: {item!r} is not a WorldStrat {level} band; choose from "
                              f"{', '.join(allowed)}")
        out.append(name)
    if not out:
        raise ConfigError("lr_bands must name at least one band")
    if len(set(out)) != len(out):
        raise ConfigError(f"lr_bands names a band twice: {', '.join(out)}")
    return tuple(out)


def _parse_hr_bands(bands: Sequence[str] | str | None, kind: str) -> tuple[str, ...]:
    allowed = HR_KINDS[kind][1]
    if bands is None:
        return ("PAN",) if kind == "pan" else ("R", "G", "B")
    items = [b.strip() for b in bands.split(",")] if isinstance(bands, str) else list(bands)
    out = [str(b).upper() for b in items]
    for name, item in zip(out, items, strict=True):
        if name not in allowed:
            raise ConfigError(f"hr_bands: {item!r} is not a band of hr_kind {kind!r}; choose "
                              f"from {', '.join(allowed)}")
    if not out or len(set(out)) != len(out):
        raise ConfigError(f"hr_bands must name distinct bands of {', '.join(allowed)}")
    return tuple(out)


def hr_rgb(bands: Sequence[str]) -> tuple[int, int, int] | None:
    """The positions of R, G and B among HR ``bands`` (in any order, NIR anywhere), or None
    where one of them is missing: what the RGB metrics and losses score."""
    if not {"R", "G", "B"} <= set(bands):
        return None
    return bands.index("R"), bands.index("G"), bands.index("B")


def lr_rgb(bands: Sequence[str]) -> tuple[int, int, int] | None:
    """The positions of B04, B03, B02 (red, green, blue) among LR ``bands``, or None where
    one of them is missing: what a frame is shown by."""
    if not {"B04", "B03", "B02"} <= set(bands):
        return None
    return bands.index("B04"), bands.index("B03"), bands.index("B02")


def _read_split(path: Path, split: str) -> list[str]:
    """The AOI names (``tile`` column) of ``split`` in the split CSV, in file order."""
    if not path.is_file():
        raise DataError(f"{path}: split file not found; {DOWNLOAD_HINT}")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            if "tile" not in fields or "split" not in fields:
                raise DataError(f"{path}: expected columns 'tile' and 'split', got "
                                f"{', '.join(fields) or 'none'}")
            names = [row["tile"] for row in reader if row["split"] == split]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: unreadable split file ({first_line(exc)})") from None
    if not names:
        raise DataError(f"{path}: no AOI of split {split!r}")
    return list(dict.fromkeys(names))  # once each, in file order


def _read_cloud_cover(path: Path, names: set[str]) -> dict[tuple[str, int], float]:
    """``(aoi, n) -> cloud_cover`` from ``metadata.csv`` for the AOIs ``names``. The AOI is the
    ``tile`` column, or the first column where there is none (the published file's index)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            missing = [c for c in ("n", "cloud_cover") if c not in fields]
            if missing:
                raise DataError(f"{path}: no column {', '.join(missing)} (expected one "
                                "row per AOI and revisit n with cloud_cover); pass "
                                "use_metadata=False to ignore the file")
            aoi_column = "tile" if "tile" in fields else fields[0]
            out: dict[tuple[str, int], float] = {}
            for line, row in enumerate(reader, start=2):
                if row[aoi_column] not in names:
                    continue
                try:
                    n = int(float(row["n"]))
                    cover = float(row["cloud_cover"]) if row["cloud_cover"] else math.nan
                except (TypeError, ValueError):
                    raise DataError(f"{path}: line {line}: n {row['n']!r} / cloud_cover "
                                    f"{row['cloud_cover']!r} are not numbers") from None
                out[(row[aoi_column], n)] = cover
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: unreadable metadata file ({first_line(exc)})") from None
    return out


def _scan_aoi(
    name: str, lr_root: Path, hr_root: Path, level: str, hr_suffix: str
) -> tuple[WorldStratAOI | None, str]:
    """The AOI's record, or None and what is missing."""
    lr_dir = lr_root / name / level
    if not lr_dir.is_dir():
        return None, f"{lr_dir}: folder not found (AOI {name!r} of the split)"
    prefix, suffix = f"{name}-", f"-{level}_data.tiff"
    revisits = []
    for entry in os.listdir(lr_dir):
        middle = entry[len(prefix):-len(suffix)]
        if entry.startswith(prefix) and entry.endswith(suffix) and middle.isdigit():
            revisits.append(int(middle))
    if not revisits:
        return None, f"{lr_dir}: no {name}-<n>{suffix} file in the folder"
    hr_path = hr_root / name / f"{name}{hr_suffix}"
    if not hr_path.is_file():
        return None, f"{hr_path}: file not found (AOI {name!r} of the split)"
    return WorldStratAOI(name, lr_dir, hr_path, tuple(sorted(set(revisits)))), ""


@contextlib.contextmanager
def _opened(path: Path, fix: str = "download it again") -> Iterator[Any]:
    """``path`` open with rasterio; :class:`DataError` naming it when missing or unreadable
    (``fix``: what to do about a corrupt file)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; {DOWNLOAD_HINT}")
    try:
        with warnings.catch_warnings():
            # The published SPOT files were written without a transform.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                yield src
    except RasterioError as exc:
        raise DataError(f"{path}: not a readable GeoTIFF ({first_line(exc)}); the file is "
                        f"corrupt or truncated: {fix}") from None


def _read_raster(
    path: Path, bands: int | None, dtypes: tuple[str, ...] | None, what: str,
    indexes: list[int] | None = None, fix: str = "download it again",
) -> np.ndarray:
    """``[bands or len(indexes), h, w]`` of a GeoTIFF that must have ``bands`` bands (any
    number when None) of one of ``dtypes`` (any real number type when None);
    :class:`DataError` naming the file otherwise (``fix``: see :func:`_opened`)."""
    with _opened(path, fix) as src:
        if bands is not None and src.count != bands:
            raise DataError(f"{path}: {src.count} band(s), expected {bands} ({what})")
        dtype = np.dtype(src.dtypes[0])
        if dtypes is not None and dtype.name not in dtypes:
            raise DataError(f"{path}: data type {dtype.name}, expected "
                            f"{' or '.join(dtypes)} ({what})")
        if dtypes is None and dtype.kind not in "biuf":
            raise DataError(f"{path}: data type {dtype.name}, expected a real number "
                            f"type ({what})")
        return src.read(indexes)


def _raster_shape(path: Path) -> tuple[int, int]:
    """``(height, width)`` of a GeoTIFF from its header; :class:`DataError` naming the file."""
    with _opened(path) as src:
        return src.height, src.width


def _resize(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``[C, h, w]`` float to ``[C, *shape]`` with antialiased bilinear interpolation (the
    official WorldStrat transforms' choice); unchanged when already that size."""
    if tuple(x.shape[-2:]) == tuple(shape):
        return x
    out = F.interpolate(x[None], size=tuple(shape), mode="bilinear", align_corners=False,
                        antialias=True)[0]
    return out.clamp_(0.0, 1.0)


def _resize_valid(valid: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """``[h, w]`` bool to ``shape``: valid only where every contributing pixel is."""
    if tuple(valid.shape) == tuple(shape):
        return valid
    weight = F.interpolate(valid[None, None].float(), size=tuple(shape), mode="bilinear",
                           align_corners=False, antialias=True)[0, 0]
    return weight > 1.0 - 1e-4


def _scaled(t: rasterio.Affine, sx: float, sy: float) -> rasterio.Affine:
    """``t`` with its pixel size scaled by ``sx`` across and ``sy`` down (same origin); spelt
    out, as the ``*``/``@`` composition differs between affine versions."""
    return rasterio.Affine(t.a * sx, t.b * sy, t.c, t.d * sx, t.e * sy, t.f)


def _size(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


__all__ = [
    "hr_rgb",
    "lr_rgb",
    "HR_KINDS",
    "L1C_BANDS",
    "L2A_BANDS",
    "WorldStratAOI",
    "WorldStratDataset",
    "WorldStratWarning",
    "choose_frames",
]
