"""PyTorch dataset over OLI2MSI: Landsat-8 OLI (LR, 30 m) paired with Sentinel-2 MSI (HR, 10 m).

OLI2MSI (Wang et al., "Multisensor remote sensing imagery super-resolution with conditional
GAN", Journal of Remote Sensing 2021) is distributed as one folder of GeoTIFFs (download it
from the Google Drive or Baidu links in https://github.com/wjwjww/OLI2MSI; it is not on this
machine and nothing here downloads it)::

    ROOT/train_lr/{name}.TIF    5,225 LR files, 160x160, 3 bands (OLI B4, B3, B2: red, green, blue)
    ROOT/train_hr/{name}.TIF    5,225 HR files, 480x480, 3 bands (MSI B04, B03, B02)
    ROOT/test_lr/{name}.TIF     100 LR files
    ROOT/test_hr/{name}.TIF     100 HR files

Facts this module relies on, and where they come from:

- Folders, counts and sizes: the README of wjwjww/OLI2MSI. There is no validation split.
- An LR file and its HR file have the same name in ``{split}_lr/`` and ``{split}_hr/``
  (``L8_{path}{row}_{date}_{S2A|S2B}_{date}_{tile}_N{index:04d}.TIF`` as written by the
  authors' ``extract_subimgs_from_granules.py``; the authors' ``random_devide_dataset.py``
  fails when a counterpart is missing, and the README gives equal counts, so the published
  data has no unpaired file: one here is an error, not a warning). The satlas reference
  (allenai/satlas-super-resolution ``ssr/data/oli2msi_dataset.py``) and a TFDS builder pair
  them the same way.
- Pixels are float32 top-of-atmosphere (TOA) reflectance, bands in red, green, blue order:
  Landsat-8 DN converted with the MTL ``REFLECTANCE_MULT/ADD`` factors and the sun elevation,
  Sentinel-2 L1C DN / ``QUANTIFICATION_VALUE`` (10000), both clipped to [0, 1], then both
  reprojected onto the Sentinel-2 UTM grid with *cubic* resampling (the authors' ``utils.py``),
  so a published value can overshoot [0, 1] slightly. Most values lie within about 0.02-0.43
  (the min-max constants of a third-party OLI2MSI loader on GitHub; not verified here).
- The LR grid origin is shifted by the sub-pixel alignment the authors estimated (kept only
  when it is at most 3 HR pixels = 30 m, one LR pixel), so the LR and HR bounds agree within
  one LR pixel.
- Patches with a pixel equal to 0 in any band (the nodata value of the source scenes) were
  dropped when the dataset was made; there are no quality masks.
- The satlas reference feeds the stored reflectance to its models as is (no scaling) and ran
  SRCNN/HighRes-net and ESRGAN with one input image (``n_s2_images: 1``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from torch.utils.data import Dataset

from zoomsr.data.sampler import item_index
from zoomsr.errors import ConfigError, DataError, ZoomsrWarning, first_line
from zoomsr.layout import Layout, to_layout
from zoomsr.validate import check_bool, check_choice, check_float, check_int

SPLITS = ("train", "test")
#: HR/LR size ratio: 10 m Sentinel-2 pixels over 30 m Landsat-8 pixels.
SCALE = 3
#: Red, green, blue (OLI B4, B3, B2; MSI B04, B03, B02), in that order in every file.
CHANNELS = 3
#: LR side of the published patches (HR: 480).
LR_SIZE = 160
DOWNLOAD = ("download OLI2MSI from the Google Drive/Baidu links in "
            "https://github.com/wjwjww/OLI2MSI and unpack it")
#: The published files end in ".TIF"; other cases are accepted.
TIFF_SUFFIXES = (".tif", ".tiff")
#: Stored values outside this range are not TOA reflectance (e.g. 0-10000 digital numbers):
#: refused. Inside it, cubic-resampling overshoot is clipped to [0, 1].
PLAUSIBLE_REFLECTANCE = (-0.2, 1.2)


class OLI2MSIWarning(ZoomsrWarning):
    """Something about OLI2MSI files could not be checked (e.g. they carry no georeference)."""


@dataclass(frozen=True)
class OLI2MSIPair:
    """One LR/HR pair: ``id`` is the shared file name without its suffix."""

    id: str
    lr_path: Path
    hr_path: Path


class OLI2MSIDataset(Dataset):
    """Landsat-8 OLI (LR) / Sentinel-2 MSI (HR) RGB pairs of OLI2MSI, scale 3.

    Each item is a dict:

    - ``lr``: float32 in [0, 1], ``[n_images*3, h, w]`` (``layout="stacked"``, ESRGAN) or
      ``[n_images, 3, h, w]`` (``layout="frames"``, SRCNN/HighRes-net); ``h = w = 160`` (or
      ``crop``). OLI2MSI has one LR image per HR image: with ``n_images > 1`` that image is
      repeated, so that models built for several input images can run on it (it adds no
      information; the reference experiments used one image).
    - ``hr``: float32 RGB in [0, 1], ``[3, 3*h, 3*w]``.
    - ``id``: the pair's file name without suffix.
    - ``lr_valid`` (bool ``[n_images, h, w]``) and ``hr_valid`` (bool ``[3*h, 3*w]``): False
      where a pixel is 0 in any band, the nodata rule of the scripts that made OLI2MSI (the
      published patches were filtered on it, so these are all True there).
    - ``frames``: int64 ``[n_images]``, the LR image used for each input: all 0.

    Normalisation: ``clip(reflectance / max_reflectance, 0, 1)`` for LR and HR alike. With the
    default ``max_reflectance=1`` the stored TOA reflectance is kept (what the satlas reference
    feeds its models); only the slight overshoot of the cubic resampling is clipped. The
    authors' PNG conversion (``convert2png.py``) uses 0.3 (brighter images: most stored
    reflectance lies below about 0.45). Files whose values lie outside
    ``PLAUSIBLE_REFLECTANCE`` are refused: they are not reflectance.

    Every unusable file raises :class:`~zoomsr.errors.DataError` naming it, in training as in
    evaluation (the published data has none, so nothing is skipped).

    Args:
        root: the unpacked dataset folder (holds ``train_lr/``, ``train_hr/``, ``test_lr/``,
            ``test_hr/``).
        split: ``"train"`` or ``"test"`` (the dataset's own splits).
        n_images: LR inputs per sample (the one LR image repeated).
        layout: ``"stacked"`` or ``"frames"``.
        train: crop positions drawn from torch's generator (``torch.manual_seed`` and the
            DataLoader's per-worker seeds control them); otherwise from ``seed``.
        seed: evaluation seed for crop positions.
        crop: LR side of a random square crop (HR side ``3*crop``, aligned to it), or None for
            whole images. The satlas reference trains on 40 (HR 120).
        lr_size: LR side every file must have (published: 160; HR ``3*lr_size``); None
            accepts any size whose HR is 3 times the LR (samples of unequal size do not
            batch).
        max_reflectance: reflectance mapped to 1 (see Normalisation), in (0, 1].
        check_georeference: refuse a pair whose LR and HR files lie on different CRSs or whose
            bounds differ by more than one LR pixel (mixed-up files); files without a
            georeference are read with one warning.
        pairs: use these pairs (e.g. a subset of ``train`` held out for validation) instead of
            scanning ``root``.
    """

    scale: int = SCALE
    channels: int = CHANNELS
    #: The HR's R, G, B channels (MSI B04, B03, B02).
    hr_rgb: tuple[int, int, int] | None = (0, 1, 2)
    #: The LR's R, G, B channels (OLI B4, B3, B2).
    lr_rgb: tuple[int, int, int] | None = (0, 1, 2)

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        n_images: int = 1,
        layout: Layout = "stacked",
        train: bool = False,
        seed: int = 0,
        crop: int | None = None,
        lr_size: int | None = LR_SIZE,
        max_reflectance: float = 1.0,
        check_georeference: bool = True,
        pairs: Sequence[OLI2MSIPair] | None = None,
    ) -> None:
        self.split = check_choice("split", split, SPLITS)
        self.n_images = check_int("n_images", n_images, minimum=1)
        if layout not in ("stacked", "frames"):
            raise ConfigError(f"layout must be 'stacked' or 'frames', got {layout!r}")
        self.layout: Layout = layout
        self.train = check_bool("train", train)
        self.seed = check_int("seed", seed, minimum=0)
        self.crop = None if crop is None else check_int("crop", crop, minimum=1)
        self.lr_size = None if lr_size is None else check_int("lr_size", lr_size, minimum=1)
        if self.crop is not None and self.lr_size is not None and self.crop > self.lr_size:
            raise ConfigError(f"crop must be <= lr_size ({self.lr_size}), got {self.crop}")
        self.max_reflectance = check_float("max_reflectance", max_reflectance, maximum=1.0)
        if self.max_reflectance <= 0:
            raise ConfigError(f"max_reflectance must be > 0, got {max_reflectance}")
        self.check_georeference = check_bool("check_georeference", check_georeference)
        self.root = Path(root)
        self.pairs: list[OLI2MSIPair] = (list(pairs) if pairs is not None
                                         else scan_oli2msi(self.root, self.split))
        if not self.pairs:
            raise DataError(f"{self.root}: no OLI2MSI pairs to load")
        self._warned_georef = False

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        """Sample ``index``, or ``(index, sample_seed)`` (as
        :class:`~zoomsr.data.sampler.ResumableSampler` yields): the seed then picks the crop;
        otherwise training draws from torch's generator and evaluation from
        ``(seed, index)``."""
        index, sample_seed = item_index(index, len(self), "pair")
        if sample_seed is None:
            # Training: from torch, so torch.manual_seed and per-worker seeding control it.
            sample_seed = (int(torch.randint(0, 2**62, (1,)).item()) if self.train
                           else None)
        rng = np.random.default_rng((self.seed, index) if sample_seed is None else sample_seed)
        return self.load(index, rng)

    def load(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        """Load pair ``index``, its crop position drawn from ``rng``; raises
        :class:`DataError` naming the file for any unusable file."""
        pair = self.pairs[index]
        lr, lr_geo = _read_reflectance(pair.lr_path, "LR")
        h, w = lr.shape[1:]
        if self.lr_size is not None and (h, w) != (self.lr_size, self.lr_size):
            raise DataError(f"{pair.lr_path}: {h}x{w} pixels; OLI2MSI LR files are "
                            f"{self.lr_size}x{self.lr_size} (pass lr_size=None for other sizes)")
        hr, hr_geo = _read_reflectance(pair.hr_path, "HR")
        if hr.shape[1:] != (SCALE * h, SCALE * w):
            raise DataError(f"{pair.hr_path}: {hr.shape[1]}x{hr.shape[2]} pixels; expected "
                            f"{SCALE * h}x{SCALE * w} ({SCALE} times its LR file {pair.lr_path})")
        if self.check_georeference:
            self._check_georeference(pair, lr_geo, hr_geo)
        if self.crop is not None:
            if self.crop > min(h, w):
                raise ConfigError(f"crop ({self.crop}) is larger than {pair.lr_path} "
                                  f"({h}x{w} pixels)")
            r = int(rng.integers(h - self.crop + 1))
            c = int(rng.integers(w - self.crop + 1))
            lr = lr[:, r:r + self.crop, c:c + self.crop]
            s = SCALE
            hr = hr[:, s * r:s * (r + self.crop), s * c:s * (c + self.crop)]
        lr_valid = (lr != 0).all(axis=0)
        hr_valid = (hr != 0).all(axis=0)
        # np.repeat copies: every frame (and batch) owns writable memory
        lr_n = np.repeat(self._normalise(lr)[None], self.n_images, axis=0)  # [n, 3, h, w]
        return {
            "lr": to_layout(torch.from_numpy(lr_n), self.layout),
            "hr": torch.from_numpy(self._normalise(hr)),
            "id": pair.id,
            "lr_valid": torch.from_numpy(np.repeat(lr_valid[None], self.n_images, axis=0)),
            "hr_valid": torch.from_numpy(hr_valid),
            "frames": torch.zeros(self.n_images, dtype=torch.int64),
        }

    def read_prediction(self, path: str | os.PathLike[str],
                        shape: tuple[int, int] | None = None) -> np.ndarray:
        """Another method's output for a pair, saved as the HR files are (a 3-band float32
        GeoTIFF of TOA reflectance), as ``hr`` is read: ``[3, H, W]`` float32 normalised
        alike; ``shape``: the items' HR size, which the file must have. Raises
        :class:`DataError` naming the file (and for ``crop``: the items are crops drawn
        inside the pair, a prediction is the whole pair's image)."""
        p = Path(path)
        if self.crop is not None:
            raise DataError(f"{p}: the items are crops (crop={self.crop}) and a prediction is "
                            "a whole pair's image: score predictions without the crop option")
        pred = self._normalise(_read_reflectance(p, "prediction")[0])
        if shape is not None and pred.shape[1:] != tuple(shape):
            raise DataError(f"{p}: {pred.shape[2]}x{pred.shape[1]} px; the item's HR is "
                            f"{shape[1]}x{shape[0]}")
        return pred

    def _normalise(self, reflectance: np.ndarray) -> np.ndarray:
        """``clip(reflectance / max_reflectance, 0, 1)`` as a new float32 array."""
        out = reflectance * np.float32(1.0 / self.max_reflectance)  # a copy, even for 1.0
        return np.clip(out, 0.0, 1.0, out=out)

    def _check_georeference(self, pair: OLI2MSIPair, lr_geo: Any, hr_geo: Any) -> None:
        if lr_geo is None or hr_geo is None:
            if not self._warned_georef:
                self._warned_georef = True
                missing = pair.lr_path if lr_geo is None else pair.hr_path
                warnings.warn(
                    f"{missing}: no georeference, so whether LR and HR files show the same "
                    "place is not checked (the published OLI2MSI GeoTIFFs have one); further "
                    "such files are not reported",
                    OLI2MSIWarning,
                    stacklevel=4,
                )
            return
        (lr_crs, lr_bounds, lr_res), (hr_crs, hr_bounds, _) = lr_geo, hr_geo
        if lr_crs != hr_crs:
            raise DataError(f"{pair.hr_path}: CRS {hr_crs} differs from its LR file "
                            f"{pair.lr_path} ({lr_crs}); OLI2MSI pairs share the Sentinel-2 "
                            "UTM CRS (mixed-up files?)")
        # The authors shift the LR origin by up to 3 HR pixels (one LR pixel) to align it, so
        # that much is expected; the tiny relative slack absorbs float rounding of the origin.
        tolerance = lr_res + 1e-9 * max(abs(v) for v in (*lr_bounds, *hr_bounds))
        offset = max(abs(a - b) for a, b in zip(lr_bounds, hr_bounds, strict=True))
        if offset > tolerance:
            raise DataError(
                f"{pair.hr_path}: bounds {_fmt(hr_bounds)} differ from its LR file "
                f"{pair.lr_path} ({_fmt(lr_bounds)}) by {offset:.1f} CRS units, more than one "
                f"LR pixel ({lr_res:g}); they do not show the same place (mixed-up files?)"
            )


def tiff_files(folder: Path) -> dict[str, Path]:
    """The GeoTIFFs (``.TIF`` as published, any case) of an OLI2MSI folder, by file name."""
    return {p.name: p for p in folder.iterdir()
            if p.suffix.lower() in TIFF_SUFFIXES and p.is_file()}


def scan_oli2msi(root: str | os.PathLike[str], split: str) -> list[OLI2MSIPair]:
    """The pairs of ``split`` under ``root``, sorted by name; raises :class:`DataError` for a
    missing root or folder, an empty folder, or a file without its counterpart."""
    check_choice("split", split, SPLITS)
    root = Path(root)
    if not root.is_dir():
        what = "not a folder" if root.exists() else "not found"
        raise DataError(f"{root}: OLI2MSI folder {what}; {DOWNLOAD} (it holds train_lr/, "
                        "train_hr/, test_lr/, test_hr/)")
    files = {}
    for side in ("lr", "hr"):
        folder = root / f"{split}_{side}"
        if not folder.is_dir():
            raise DataError(f"{folder}: OLI2MSI {split} {side.upper()} folder not found; the "
                            f"dataset root holds train_lr/, train_hr/, test_lr/, test_hr/ "
                            f"({DOWNLOAD})")
        names = tiff_files(folder)
        if not names:
            raise DataError(f"{folder}: no GeoTIFF (.TIF) files; {DOWNLOAD}")
        files[side] = names
    lr, hr = files["lr"], files["hr"]
    only_lr = sorted(set(lr) - set(hr))
    only_hr = sorted(set(hr) - set(lr))
    if only_lr or only_hr:
        more = len(only_lr) + len(only_hr) - 1
        rest = f" ({more} more unpaired file{'s' * (more != 1)})" if more else ""
        if only_lr:
            name = only_lr[0]
            msg = f"{lr[name]}: no HR file of the same name in {root / f'{split}_hr'}"
        else:
            name = only_hr[0]
            msg = f"{hr[name]}: no LR file of the same name in {root / f'{split}_lr'}"
        raise DataError(f"{msg}{rest}; OLI2MSI pairs LR and HR files by name (re-download or "
                        "remove the stray files)")
    return [OLI2MSIPair(Path(name).stem, lr[name], hr[name]) for name in sorted(lr)]


def _read_reflectance(path: Path, role: str) -> tuple[np.ndarray, Any]:
    """``[3, h, w]`` float32 TOA reflectance of ``path`` and its georeference ``(crs, bounds,
    LR pixel size)`` (None when it has none); validated (see the module docstring)."""
    try:
        with warnings.catch_warnings():
            # a plain TIFF is handled (one warning of our own), not rasterio's two-line one
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                if src.count != CHANNELS:
                    raise DataError(f"{path}: {src.count} band(s); OLI2MSI {role} files have 3 "
                                    "(red, green, blue)")
                dtype = np.dtype(src.dtypes[0])
                if dtype.kind != "f":
                    raise DataError(
                        f"{path}: {dtype} pixels; OLI2MSI files hold float32 TOA reflectance "
                        f"(a PNG or digital-number copy is not the published data: {DOWNLOAD})"
                    )
                arr = src.read(out_dtype=np.float32)
                geo = None
                if src.crs is not None and not src.transform.is_identity:
                    geo = (src.crs, tuple(src.bounds), max(abs(src.res[0]), abs(src.res[1])))
    except RasterioError as exc:
        # GDAL's own reason: rasterio's says "See previous exception", which is not shown
        raise DataError(f"{path}: not a readable GeoTIFF ({first_line(exc)}); re-download it "
                        "from the links in https://github.com/wjwjww/OLI2MSI") from None
    if not np.isfinite(arr).all():
        raise DataError(f"{path}: NaN or infinite pixels; OLI2MSI files hold finite TOA "
                        "reflectance (a damaged or foreign file?)")
    low, high = float(arr.min()), float(arr.max())
    if low < PLAUSIBLE_REFLECTANCE[0] or high > PLAUSIBLE_REFLECTANCE[1]:
        raise DataError(
            f"{path}: values {low:.4g}..{high:.4g} are not TOA reflectance (OLI2MSI files hold "
            "reflectance in [0, 1]; divide 0-10000 digital numbers by 10000 first)"
        )
    return arr, geo


def _fmt(bounds: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in bounds) + ")"


__all__ = ["CHANNELS", "LR_SIZE", "SCALE", "SPLITS", "OLI2MSIDataset", "OLI2MSIPair",
           "OLI2MSIWarning", "scan_oli2msi", "to_layout"]
