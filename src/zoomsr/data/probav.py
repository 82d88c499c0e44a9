"""PyTorch dataset over the PROBA-V Super Resolution challenge data (ESA Kelvins, 2018-2019).

The challenge data (``probav_data.zip`` from https://kelvins.esa.int/proba-v-super-resolution/data/;
it is not on this machine and nothing here downloads it) unpacks to::

    ROOT/norm.csv                          baseline cPSNR (dB) per image set, both splits
    ROOT/train/{NIR,RED}/imgsetNNNN/
        LR000.png, LR001.png, ...          128x128 16-bit grey PNG (300 m), 14-bit values
        QM000.png, QM001.png, ...          quality map of LR000, ...: nonzero = clear pixel
        HR.png                             384x384 16-bit grey PNG (100 m)
        SM.png                             status map of HR.png: nonzero = clear pixel
    ROOT/test/{NIR,RED}/imgsetNNNN/        the same without HR.png

Facts this module relies on, and where they come from:

- Sizes, bit depth, bands, counts: the challenge's data page. Top-of-atmosphere reflectance of
  the RED and NIR bands, 14-bit values stored in 16-bit PNGs; 1,450 scenes, 1,160 train and 290
  test; at least 9 LR images per scene (19 on average); an LR image is in the data when at least
  60 % of its pixels are clear (75 % for HR images); the test scenes have no HR image. The LR
  images of a scene are not registered to each other (sub-pixel shifts).
- RED and NIR image sets are separate scenes with their own ``imgsetNNNN`` numbers, unique over
  both bands and splits (``norm.csv`` is keyed by the bare name): an item is one band (C = 1),
  not a RED+NIR pair.
- ``QMnnn.png`` belongs to ``LRnnn.png``; a mask's nonzero pixels are the clear ones. HighRes-net
  (ServiceNow/HighRes-net ``src/DataLoader.py``, ``src/save_clearance.py``) ranks frames by the
  sum of their QM ("clearance") and reads ``SM.png`` in both splits, ``HR.png`` only where it
  exists; torchrs (isaaccorley/torchrs ``datasets/probav.py``) does the same. The sample
  submission script ``generate_sample_submission.py`` (apparently the organizers'; a copy is in
  toluwajosh/proba-b-super-rez) ranks frames by their number of clear QM pixels.
- Intensities: the challenge scores images "represented as real numbers in [0, 1]", made from
  the 16-bit PNGs with scikit-image's ``img_as_float`` (value / 65535) by that sample script,
  HighRes-net's loader and ``Evaluator.cPSNR``, and embiggen (lfsimoes/probav
  ``embiggen/io.py``, ``score.py``), which divide ``norm.csv``'s baselines by cPSNRs on that
  scale. PSNR depends on it (dividing by 16383 instead adds 20 log10(65535/16383) = 12.04 dB),
  so ``normalization="challenge"`` (the default) keeps scores comparable with the baselines.
- ``norm.csv``: one ``imgsetNNNN <dB>`` line per image set, space-separated, no header
  (embiggen's copy; HighRes-net's ``readBaselineCPSNR`` reads ``ROOT/norm.csv``). The challenge
  scores an image set by ``baseline / cPSNR`` (lower is better; < 1 beats the baseline).
- The satlas reference (allenai/satlas-super-resolution ``ssr/data/probav_dataset.py``) used NIR
  only, the first ``n_lr_images`` = 9 files (``LR000`` ...) without looking at the quality maps,
  read through OpenCV as 8-bit 3-channel images (value / 256: 0-63), and random 120x120 HR
  crops (40x40 LR) with its own validation folder; none of that is reproduced here.

Scoring with :func:`zoomsr.metrics.cpsnr.cpsnr`: it takes ``[B, 3, H, W]`` images, so repeat the
single band (``x.expand(-1, 3, -1, -1)``, which leaves the score unchanged), and pass
``border=3`` (the challenge crops 3 px and tries shifts of -3..3; the metric's default is 4).
Pass ``hr_valid`` as its ``target_valid`` (or use ``CPSNR(border=3, valid_is="target")``): the
clear pixels of each shifted HR crop, the challenge's masked cPSNR exactly. (As ``valid``, a
mask of both images, it is used over the pixels clear throughout the shift range, the same
pixels at every shift: scores agree where ``SM.png`` is all clear and differ slightly elsewhere.)
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from zoomsr.data.sampler import item_index
from zoomsr.errors import ConfigError, DataError
from zoomsr.io.png import image_errors
from zoomsr.layout import Layout, to_layout
from zoomsr.validate import check_bool, check_choice, check_int

SPLITS = ("train", "test")
BANDS = ("NIR", "RED")
#: HR/LR size ratio: 100 m over 300 m pixels (384 = 3 * 128).
SCALE = 3
LR_SIZE = 128
HR_SIZE = LR_SIZE * SCALE
#: Divisors of the 16-bit values: ``"challenge"`` as the challenge's scoring and baselines
#: (scikit-image ``img_as_float``: / 65535, values about 0-0.27); ``"14bit"`` spreads the
#: 14-bit range over [0, 1] (/ 16383), clipping the few larger values some images hold.
NORMALIZATIONS = {"challenge": 65535.0, "14bit": 16383.0}
DOWNLOAD = ("download probav_data.zip from https://kelvins.esa.int/proba-v-super-resolution/data/ "
            "and unpack it")

_LR_NAME = re.compile(r"LR(\d+)\.png")
_QM_NAME = re.compile(r"QM(\d+)\.png")
_MASK_MODES = {"1", "L", "I;16", "I;16B", "I;16L", "I"}
_IMAGE_MODES = {"I;16", "I;16B", "I;16L", "I"}  # Pillow's modes of 16-bit grey PNGs
#: What to do about a missing, damaged or foreign file.
_AGAIN = f"{DOWNLOAD} again"


@dataclass(frozen=True)
class PROBAVImageset:
    """One image set (scene): its folder, band and LR frames.

    ``frames`` are the numbers ``nnn`` of its ``LRnnn.png`` files, ascending; ``lr_files[i]``
    and ``qm_files[i]`` are the files of ``frames[i]``.
    """

    path: Path
    band: str
    frames: tuple[int, ...]
    lr_files: tuple[Path, ...]
    qm_files: tuple[Path, ...]

    @property
    def name(self) -> str:
        """``imgsetNNNN``: the set's name in the challenge (``norm.csv`` key, submission name)."""
        return self.path.name

    @property
    def hr_file(self) -> Path:
        return self.path / "HR.png"

    @property
    def sm_file(self) -> Path:
        return self.path / "SM.png"


def validate_probav_bands(bands: Sequence[str] | str) -> tuple[str, ...]:
    """``"NIR"``, ``"RED"``, ``"NIR,RED"`` or a list of them (any case) -> upper-case tuple."""
    items = bands.split(",") if isinstance(bands, str) else list(bands)
    out: list[str] = []
    for b in items:
        name = str(b).strip().upper()
        if name not in BANDS:
            raise ConfigError(f"PROBA-V band must be one of {', '.join(BANDS)}, got {b!r}")
        if name in out:
            raise ConfigError(f"PROBA-V band {name} given twice")
        out.append(name)
    if not out:
        raise ConfigError(f"give at least one PROBA-V band ({', '.join(BANDS)})")
    return tuple(out)


def scan_probav(
    root: str | os.PathLike[str], split: str, bands: Sequence[str] | str = BANDS,
    only: Collection[str] | None = None,
) -> list[PROBAVImageset]:
    """List the image sets of ``split`` in ``bands`` (folders ``imgset*``, sorted by band then
    name), checking file names only: every ``LRnnn.png`` has its ``QMnnn.png`` and the reverse,
    ``SM.png`` is there, and ``HR.png`` in the train split. ``only``: the image sets of these
    names alone (the others are not looked into: a damaged one does not stop a run that does
    not use it). Raises :class:`DataError`."""
    check_choice("split", split, SPLITS)
    root_p = Path(root)
    if not root_p.is_dir():
        raise DataError(f"{root_p}: PROBA-V folder not found; {DOWNLOAD} (the folder holding "
                        "train/ and test/)")
    split_dir = root_p / split
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: PROBA-V split folder not found; {DOWNLOAD} here")
    out: list[PROBAVImageset] = []
    for band in validate_probav_bands(bands):
        band_dir = split_dir / band
        if not band_dir.is_dir():
            raise DataError(f"{band_dir}: PROBA-V band folder not found; {DOWNLOAD} here, or "
                            f"choose other bands")
        sets = imageset_folders(band_dir)
        if not sets:
            raise DataError(f"{band_dir}: no imgset* folders (empty or incomplete unpacking); "
                            f"{DOWNLOAD} again")
        out.extend(scan_imageset(p, band, needs_hr=split == "train") for p in sets
                   if only is None or p.name in only)
    return out


def imageset_folders(band_dir: Path) -> list[Path]:
    """The ``imgset*`` folders of a band folder, sorted."""
    return sorted(p for p in band_dir.iterdir() if p.is_dir() and p.name.startswith("imgset"))


def scan_imageset(folder: Path, band: str, needs_hr: bool) -> PROBAVImageset:
    """One image set's files, by name only (see :func:`scan_probav`); :class:`DataError` for
    a missing or stray file."""
    try:
        names = {p.name for p in folder.iterdir()}
    except OSError as exc:
        raise DataError(f"{folder}: cannot list the image set ({exc})") from None
    lr = {int(m.group(1)): n for n in names if (m := _LR_NAME.fullmatch(n))}
    qm = {int(m.group(1)): n for n in names if (m := _QM_NAME.fullmatch(n))}
    if not lr:
        raise DataError(f"{folder}: no LR*.png frames in the image set; {DOWNLOAD} again")
    for k in sorted(lr):
        if k not in qm:
            # the name as the challenge writes it (LR007 -> QM007), whatever the digit count
            raise DataError(f"{folder / ('QM' + lr[k][2:])}: quality map of {lr[k]} missing; "
                            f"{DOWNLOAD} again")
    for k in sorted(qm):
        if k not in lr:
            raise DataError(f"{folder / qm[k]}: quality map without its LR image "
                            f"{'LR' + qm[k][2:]}; {DOWNLOAD} again")
    for required in (("HR.png", "SM.png") if needs_hr else ("SM.png",)):
        if required not in names:
            raise DataError(f"{folder / required}: missing from the image set; {DOWNLOAD} again")
    frames = tuple(sorted(lr))
    return PROBAVImageset(
        path=folder, band=band, frames=frames,
        lr_files=tuple(folder / lr[k] for k in frames),
        qm_files=tuple(folder / qm[k] for k in frames),
    )


def _read_png(p: Path, what: str, modes: set[str], fix: str = _AGAIN
              ) -> tuple[np.ndarray, str]:
    """The pixels and Pillow mode of PNG ``p`` (a PROBA-V ``what``); :class:`DataError` naming
    the file, and what to do (``fix``), when it is missing, not a PNG, of another mode or
    corrupt."""
    with image_errors(p, fix, f"a PROBA-V {what} PNG"), Image.open(p) as img:
        mode = img.mode
        if img.format != "PNG":
            raise DataError(f"{p}: a {img.format or 'non-PNG'} file; PROBA-V {what}s are "
                            f"PNGs ({fix})")
        if mode not in modes:
            return np.empty((0,)), mode  # the caller says what is wrong with the mode
        img.load()
        return np.asarray(img), mode


def read_probav_image(path: str | os.PathLike[str], size: int, *,
                      fix: str = _AGAIN) -> np.ndarray:
    """A PROBA-V LR/HR image: ``[size, size]`` uint16 (16-bit grey PNG). Raises
    :class:`DataError` naming the file on a wrong band count, bit depth or size, or a missing or
    corrupt file; ``fix``: what its messages say to do (default: download the data again)."""
    p = Path(path)
    arr, mode = _read_png(p, "image", _IMAGE_MODES, fix)
    if mode not in _IMAGE_MODES:
        bands = {"1": 1, "L": 1, "P": 1, "LA": 2, "RGB": 3, "RGBA": 4}.get(mode)
        original = f"use the challenge's original files: {fix}" if fix == _AGAIN else fix
        if bands is not None and bands > 1:
            raise DataError(f"{p}: {bands} bands; PROBA-V images are single-band 16-bit grey "
                            f"PNGs ({original})")
        depth = "8-bit" if mode in ("L", "P") else "1-bit" if mode == "1" else f"{mode!r}"
        raise DataError(f"{p}: {depth} PNG; PROBA-V images are 16-bit grey PNGs with 14-bit "
                        f"values ({original})")
    if arr.dtype != np.uint16:  # Pillow's "I" (32-bit) mode for some 16-bit PNGs
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise DataError(f"{p}: values outside 0..65535; PROBA-V images are 16-bit grey "
                            f"PNGs ({fix})")
        arr = arr.astype(np.uint16)
    if arr.shape != (size, size):
        raise DataError(f"{p}: {arr.shape[1]}x{arr.shape[0]} px, expected {size}x{size} for "
                        "this PROBA-V image")
    return arr


def read_probav_mask(path: str | os.PathLike[str], size: int) -> np.ndarray:
    """A quality/status map (``QMnnn.png``, ``SM.png``): ``[size, size]`` bool, True where clear
    (nonzero). 1-bit, 8-bit and 16-bit grey PNGs are read. Raises :class:`DataError`."""
    p = Path(path)
    arr, mode = _read_png(p, "mask", _MASK_MODES)
    if mode not in _MASK_MODES:
        raise DataError(f"{p}: {mode!r} image; a PROBA-V mask is one grey band (nonzero = "
                        f"clear; {_AGAIN})")
    if arr.shape != (size, size):
        raise DataError(f"{p}: {arr.shape[1]}x{arr.shape[0]} px, expected {size}x{size} for "
                        "this PROBA-V mask")
    return arr != 0


def read_norm_csv(path: str | os.PathLike[str]) -> dict[str, float]:
    """``norm.csv`` -> ``{"imgsetNNNN": baseline cPSNR in dB}``. Fields are separated by spaces
    (as published), tabs or a comma. Raises :class:`DataError` naming the file and line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{p}: baseline file not found (norm.csv comes with the challenge "
                        "data)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: cannot read the baseline file ({exc})") from None
    out: dict[str, float] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.replace(",", " ").split()
        if not fields:
            continue
        try:
            if len(fields) != 2:
                raise ValueError
            value = float(fields[1])
        except ValueError:
            raise DataError(f"{p}: line {number} is not 'imgsetNNNN <cPSNR dB>': "
                            f"{line.strip()[:60]!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise DataError(f"{p}: line {number}: baseline cPSNR must be a positive number, "
                            f"got {fields[1]}")
        if fields[0] in out:
            raise DataError(f"{p}: line {number}: {fields[0]} given twice")
        out[fields[0]] = value
    if not out:
        raise DataError(f"{p}: no baseline values in the file")
    return out


def clearest_frames(clear: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` clearest frames, clearest first; equally clear frames in ascending
    position. ``clear`` is ``[T]`` clear-pixel counts. With fewer than ``n`` frames the
    clearest-first order is repeated (each frame at most once more than any other)."""
    counts = np.asarray(clear)
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if counts.size == 0:
        raise ValueError("no frames")
    order = np.lexsort((np.arange(counts.size), -counts.astype(np.int64)))
    return np.resize(order, n)


class PROBAVDataset(Dataset):
    """PROBA-V image sets: ``n_images`` LR frames (RED or NIR, 300 m) and the HR image (100 m).

    Each item is a dict:

    - ``lr``: float32 ``[n_images*1, 128, 128]`` (``layout="stacked"``) or
      ``[n_images, 1, 128, 128]`` (``layout="frames"``): the 16-bit values divided by 65535
      (``normalization="challenge"``, about 0-0.27) or by 16383 and clipped to 1 (``"14bit"``).
      Frames are ordered clearest first.
    - ``lr_valid``: bool ``[n_images, 128, 128]``, True where the frame's ``QMnnn.png`` says
      clear.
    - ``hr``: float32 ``[1, 384, 384]``, normalised as ``lr`` (train split only: the test split
      has no HR image, so its items have no ``hr`` key; see :attr:`has_hr`).
    - ``hr_valid``: bool ``[384, 384]``, True where ``SM.png`` says clear (both splits).
    - ``id`` (``"imgsetNNNN"``), ``band`` (``"NIR"``/``"RED"``), ``frames`` (int64
      ``[n_images]``: the ``nnn`` of the ``LRnnn.png`` files used), ``n_frames`` (LR frames in
      the set).
    - ``baseline_cpsnr`` (float, dB) when a ``norm.csv`` is used: the challenge's per-set
      baseline; ``baseline / cPSNR`` is the set's challenge score (:meth:`challenge_score`).

    Frame choice: in evaluation, the ``n_images`` frames with the most clear QM pixels, equal
    counts broken by the lower frame number (so ``seed`` does not change it: the choice is
    already unique); in training (``train=True``), ``n_images`` distinct frames at random from
    torch's generator (``torch.manual_seed`` and DataLoader worker seeding control it), as every
    frame is at least 60 % clear by the challenge's selection. A set with fewer frames than
    ``n_images`` repeats frames, each at most once more than any other.

    Args:
        root: the unpacked challenge folder (holds ``train/``, ``test/``, ``norm.csv``).
        split: ``"train"`` or ``"test"``.
        bands: ``"NIR"``, ``"RED"``, both (default; items of either band), as a list or
            ``"NIR,RED"``.
        n_images: LR frames per item (the satlas reference used 9, the challenge's minimum).
        layout: ``"stacked"`` or ``"frames"``.
        train: random frame choice (needs the train split).
        seed: evaluation seed, accepted for the interface all loaders share; the evaluation
            choice here does not depend on it.
        normalization: ``"challenge"`` (/ 65535, the challenge's scale, needed for cPSNRs
            comparable with ``norm.csv``) or ``"14bit"`` (/ 16383, clipped to 1).
        imgsets: use only these image sets (names ``imgsetNNNN``), e.g. a validation part of the
            train split; all given names must exist in ``split`` and ``bands``.
        norm_csv: the baseline file; default ``root/norm.csv`` when it exists (no
            ``baseline_cpsnr`` otherwise). A given file must exist.

    Raises:
        ConfigError: a bad argument.
        DataError: a missing or incomplete folder, or (when read) a missing, corrupt or wrong
            file, named in the message.
    """

    scale = SCALE
    channels = 1
    #: One band: the RGB metrics score it repeated to 3 channels.
    hr_rgb: tuple[int, int, int] | None = None
    lr_rgb: tuple[int, int, int] | None = None

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        bands: Sequence[str] | str = BANDS,
        n_images: int = 9,
        layout: Layout = "stacked",
        train: bool = False,
        seed: int = 0,
        normalization: str = "challenge",
        imgsets: Sequence[str] | None = None,
        norm_csv: str | os.PathLike[str] | None = None,
    ) -> None:
        check_choice("split", split, SPLITS)
        check_int("n_images", n_images, minimum=1)
        check_choice("layout", layout, ("stacked", "frames"))
        check_bool("train", train)
        check_int("seed", seed, minimum=0)
        check_choice("normalization", normalization, NORMALIZATIONS)
        if train and split != "train":
            raise ConfigError(f"train=True needs HR images; the PROBA-V {split} split has none "
                              "(use split='train')")
        self.root = Path(root)
        self.split = split
        self.bands = validate_probav_bands(bands)
        self.n_images = n_images
        self.layout: Layout = layout
        self.train = train
        self.seed = seed
        self.normalization = normalization
        self._divisor = np.float32(NORMALIZATIONS[normalization])
        # only the sets asked for are scanned: a damaged one elsewhere does not stop this one
        self.imgsets = scan_probav(self.root, split, self.bands,
                                   None if imgsets is None or isinstance(imgsets, str)
                                   else {str(n) for n in imgsets})
        if imgsets is not None:
            self.imgsets = self._select(imgsets)
        self.baselines: dict[str, float] | None = None
        csv_path = Path(norm_csv) if norm_csv is not None else self.root / "norm.csv"
        if norm_csv is not None or csv_path.is_file():
            self.baselines = read_norm_csv(csv_path)
            missing = [s.name for s in self.imgsets if s.name not in self.baselines]
            if missing:
                raise DataError(f"{csv_path}: no baseline for {len(missing)} image set(s), e.g. "
                                f"{missing[0]}; use the challenge's norm.csv")

    def _select(self, names: Sequence[str]) -> list[PROBAVImageset]:
        if isinstance(names, str):
            raise ConfigError("imgsets must be a list of image-set names, not one string")
        by_name = {s.name: s for s in self.imgsets}
        wanted = list(dict.fromkeys(str(n) for n in names))
        unknown = [n for n in wanted if n not in by_name]
        if unknown:
            raise DataError(f"{self.root / self.split}: {len(unknown)} requested image set(s) "
                            f"not found in bands {','.join(self.bands)}, e.g. {unknown[0]}")
        if not wanted:
            raise ConfigError("imgsets is empty")
        return [by_name[n] for n in wanted]

    @property
    def has_hr(self) -> bool:
        """Whether items carry ``hr`` (the train split; the challenge withholds test HR)."""
        return self.split == "train"

    def __len__(self) -> int:
        return len(self.imgsets)

    def baseline_cpsnr(self, name: str) -> float:
        """The challenge's baseline cPSNR (dB) of image set ``name`` from ``norm.csv``."""
        if self.baselines is None:
            raise DataError(f"{self.root / 'norm.csv'}: no baseline file; pass norm_csv= (it "
                            "comes with the challenge data)")
        if name not in self.baselines:
            raise DataError(f"norm.csv: no baseline for {name!r}")
        return self.baselines[name]

    def challenge_score(self, name: str, cpsnr_db: float) -> float:
        """The challenge's score of image set ``name``: baseline cPSNR / ``cpsnr_db`` (lower
        is better; below 1 beats the baseline). ``cpsnr_db`` (a number, or one element of
        :func:`~zoomsr.metrics.cpsnr.cpsnr`'s tensor) must be on the challenge's scale
        (``normalization="challenge"``) to be comparable."""
        value = cpsnr_db
        if isinstance(value, torch.Tensor) and value.numel() == 1 or (
                isinstance(value, np.ndarray) and value.size == 1):
            value = value.item()  # an element of cpsnr()'s [B] tensor
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
            raise ValueError(f"cpsnr_db must be a positive number (dB), got {cpsnr_db!r}")
        return self.baseline_cpsnr(name) / float(value)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        """Image set ``index``, or ``(index, sample_seed)`` (as
        :class:`~zoomsr.data.sampler.ResumableSampler` yields): in training the seed then draws
        the frames instead of torch's global generator; evaluation ignores it."""
        index, sample_seed = item_index(index, len(self), "image set")
        generator = (None if sample_seed is None
                     else torch.Generator().manual_seed(sample_seed))
        return self.load(index, generator)

    def load(self, index: int, generator: torch.Generator | None = None) -> dict[str, Any]:
        """Read image set ``index``; ``generator`` draws training frames (default: torch's
        global one). Raises :class:`DataError` naming a bad file."""
        rec = self.imgsets[index]
        total = len(rec.frames)
        masks: dict[int, np.ndarray] = {}
        if self.train:
            draw = torch.randperm(total, generator=generator).numpy()
            picked = np.resize(draw, self.n_images)
            for i in np.unique(picked):
                masks[int(i)] = read_probav_mask(rec.qm_files[i], LR_SIZE)
            clear = np.array([masks[int(i)].sum() for i in picked])
            # clearest first, as in evaluation, so frame 0 means the same in both modes
            chosen = picked[np.lexsort((picked, -clear))]
        else:
            for i in range(total):
                masks[i] = read_probav_mask(rec.qm_files[i], LR_SIZE)
            clear = np.array([masks[i].sum() for i in range(total)])
            chosen = clearest_frames(clear, self.n_images)
        images = {int(i): read_probav_image(rec.lr_files[i], LR_SIZE) for i in np.unique(chosen)}
        lr = np.stack([self._normalize(images[int(i)]) for i in chosen])[:, None]  # [n,1,h,w]
        sample: dict[str, Any] = {
            "lr": to_layout(torch.from_numpy(lr), self.layout),
            "lr_valid": torch.from_numpy(np.stack([masks[int(i)] for i in chosen])),
            "hr_valid": torch.from_numpy(read_probav_mask(rec.sm_file, HR_SIZE)),
            "id": rec.name,
            "band": rec.band,
            "frames": torch.tensor([rec.frames[i] for i in chosen], dtype=torch.int64),
            "n_frames": total,
        }
        if self.has_hr:
            hr = self._normalize(read_probav_image(rec.hr_file, HR_SIZE))
            sample["hr"] = torch.from_numpy(hr[None])
        if self.baselines is not None:
            sample["baseline_cpsnr"] = self.baselines[rec.name]
        return sample

    def read_prediction(self, path: str | os.PathLike[str],
                        shape: tuple[int, int] | None = None) -> np.ndarray:
        """Another method's output for an image set, saved as the challenge's submissions are
        (a 384 x 384 16-bit grey PNG, the HR's scale), as ``hr`` is read: ``[1, 384, 384]``
        float32 normalised alike (``shape``: the items' HR size, always 384 x 384 here).
        Raises :class:`DataError` naming the file."""
        fix = "write it as the challenge's submissions are: 384x384 16-bit grey, HR scale"
        return self._normalize(read_probav_image(path, HR_SIZE, fix=fix))[None]

    def _normalize(self, arr: np.ndarray) -> np.ndarray:
        out = arr.astype(np.float32) / self._divisor
        if self.normalization == "14bit":
            # 14-bit data can still hold larger values (bright NIR); [0, 1] is the contract
            np.minimum(out, np.float32(1.0), out=out)
        return out


__all__ = [
    "BANDS",
    "NORMALIZATIONS",
    "SCALE",
    "SPLITS",
    "PROBAVDataset",
    "PROBAVImageset",
    "clearest_frames",
    "read_norm_csv",
    "read_probav_image",
    "read_probav_mask",
    "scan_probav",
    "validate_probav_bands",
]
