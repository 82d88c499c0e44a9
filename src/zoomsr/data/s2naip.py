"""PyTorch dataset over the published S2-NAIP layout (see :mod:`zoomsr.data.layout`)."""

from __future__ import annotations

import multiprocessing
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from zoomsr.data.bands import band_channels, normalize_band, validate_bands
from zoomsr.data.layout import PairRecord, dataset_scale, read_hr, read_series, scan_pairs
from zoomsr.data.sampler import item_index
from zoomsr.data.selection import select_frames, valid_frames
from zoomsr.errors import ConfigError, DataError, ZoomsrWarning
from zoomsr.grid import LR_PIXELS
from zoomsr.layout import Layout, to_layout
from zoomsr.validate import check_int


class DataWarning(ZoomsrWarning):
    """Samples were skipped because their files are unusable."""


class BlackHRError(DataError):
    """The NAIP image has black (all-zero) pixels; such pairs are skipped, not errors."""


class S2NAIPDataset(Dataset):
    """Sentinel-2 time series (LR) paired with NAIP (HR) chunks.

    Each item is a dict:

    - ``lr``: float32 in [0, 1], ``[n_images*C, 32, 32]`` (``layout="stacked"``, ESRGAN) or
      ``[n_images, C, 32, 32]`` (``layout="frames"``, SRCNN/HighRes-net). ``C`` is 3 for tci
      plus 1 per extra band, channels in the order of ``bands``.
    - ``hr``: float32 RGB in [0, 1], ``[3, 32*scale, 32*scale]``.
    - ``tile`` (``"{col}_{row}"``), ``image_id``, ``frames`` (chosen time-step indices,
      ``[n_images]`` int64) and ``n_valid`` (valid time steps in the series).
    - ``old_hr`` (``[old_naip, 3, H, W]``) when ``old_naip > 0``.

    Args:
        root: dataset folder (holds ``naip/`` and ``sentinel2/``).
        bands: ``"tci"`` first, then any of b01, b05..b12 (list or "tci,b08").
        n_images: time steps per sample; valid ones (no black TCI pixel) preferred.
        layout: ``"stacked"`` or ``"frames"``.
        train: random frame choice each time; unusable samples are skipped, counted and
            warned about once. Otherwise frames are chosen with ``seed`` (results repeat)
            and unusable files raise :class:`DataError`.
        seed: evaluation seed for frame choice.
        scale: HR/LR size ratio (NAIP chunks are ``32*scale`` px); by default the one the
            dataset records in ``zoomsr_dataset.json`` (``data build --scale``), else 4. A
            given scale that differs from the recorded one is used, with a warning
            (:func:`~zoomsr.data.layout.dataset_scale`).
        old_naip: number of older NAIP images to return per tile (``old_naip/{tile}/*.png``).
        skip_black_hr: skip pairs whose NAIP image has black pixels (as the published
            training does). In evaluation they are removed when the dataset is built.
        pairs: use these pairs (e.g. a split) instead of scanning ``root``.
        max_consecutive_skips: in training, unusable pairs met in a row for one item (each
            replaced by a random pair) before it raises :class:`DataError`.
    """

    #: The HR's R, G, B channels (NAIP's RGB PNG).
    hr_rgb: tuple[int, int, int] | None = (0, 1, 2)
    #: An LR frame's R, G, B channels (the TCI, first whatever the extra bands).
    lr_rgb: tuple[int, int, int] | None = (0, 1, 2)

    def __init__(
        self,
        root: str | os.PathLike[str],
        bands: Sequence[str] | str = ("tci",),
        n_images: int = 8,
        layout: Layout = "stacked",
        train: bool = False,
        seed: int = 0,
        scale: int | None = None,
        old_naip: int = 0,
        skip_black_hr: bool = True,
        pairs: Sequence[PairRecord] | None = None,
        max_consecutive_skips: int = 64,
    ) -> None:
        check_int("n_images", n_images, minimum=1)
        check_int("old_naip", old_naip, minimum=0)
        check_int("seed", seed, minimum=0)
        check_int("max_consecutive_skips", max_consecutive_skips, minimum=1)
        if layout not in ("stacked", "frames"):
            raise ConfigError(f"layout must be 'stacked' or 'frames', got {layout!r}")
        self.root = Path(root)
        self.bands = validate_bands(bands)
        self.channels = sum(band_channels(b) for b in self.bands)
        self.n_images = n_images
        self.layout: Layout = layout
        self.train = train
        self.seed = seed
        self.scale = dataset_scale(root, scale)
        self.hr_size = LR_PIXELS * self.scale
        self.old_naip = old_naip
        self.skip_black_hr = skip_black_hr
        self.max_consecutive_skips = max_consecutive_skips
        self.pairs: list[PairRecord] = list(pairs) if pairs is not None else scan_pairs(root)
        if not self.pairs:
            raise DataError(f"{self.root}: no pairs to load")
        self.dropped_black_hr: list[PairRecord] = []
        if skip_black_hr and not train:
            # Evaluation needs a fixed set of pairs, so black-NAIP pairs are removed up front.
            kept: list[PairRecord] = []
            for p in self.pairs:
                (self.dropped_black_hr if _has_black(read_hr(p.naip_path, self.hr_size))
                 else kept).append(p)
            self.pairs = kept
            if not self.pairs:
                raise DataError(f"{self.root}: every pair's NAIP image has black pixels")
        # Shared across DataLoader workers: [unusable pairs found, warning issued], and which
        # pairs those are (each counted once, never drawn again as a replacement).
        self._skip_state = multiprocessing.get_context().Array("q", 2)
        self._unusable = multiprocessing.get_context().RawArray("b", len(self.pairs))
        self.skip_examples: list[str] = []

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def skipped(self) -> int:
        """Pairs found unusable so far (all workers; each counted once), because of unusable
        files or black NAIP."""
        return int(self._skip_state[0])

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        """Sample ``index``, or ``(index, sample_seed)``: the seed then picks its frames (and,
        in training, a replacement for an unusable pair), as
        :class:`~zoomsr.data.sampler.ResumableSampler` draws
        them; otherwise training draws from torch's generator (``torch.manual_seed`` and the
        DataLoader's per-worker seeds control it) and evaluation from ``(seed, index)``."""
        index, sample_seed = item_index(index, len(self), "pair")
        if not self.train:
            seed = (self.seed, index) if sample_seed is None else sample_seed
            return self.load(index, np.random.default_rng(seed))
        if sample_seed is None:
            # Seeded from torch so torch.manual_seed and per-worker seeding control it.
            sample_seed = int(torch.randint(0, 2**62, (1,)).item())
        j = index
        for attempt in range(self.max_consecutive_skips):
            # Each attempt has its own generators: what a draw gives must not depend on
            # whether its pair failed part-way through loading or was already known unusable.
            if not self._unusable[j]:
                try:
                    return self.load(j, np.random.default_rng([sample_seed, attempt]))
                except DataError as exc:
                    self._record_skip(j, exc)
            # a random pair instead, not the next one: the next one would be drawn twice as
            # often as the others (and its neighbour after a run of bad tiles, more)
            j = int(np.random.default_rng([sample_seed, attempt, 1]).integers(len(self.pairs)))
        raise DataError(
            f"{self.pairs[index].naip_path}: {self.max_consecutive_skips} consecutive samples "
            f"were unusable; run `zoomsr data check {self.root}`"
        )

    def _record_skip(self, index: int, exc: DataError) -> None:
        if len(self.skip_examples) < 10:
            self.skip_examples.append(str(exc))
        # Black NAIP pairs are expected in the published data: counted, but only real file
        # problems trigger the (single) warning.
        real_problem = not isinstance(exc, BlackHRError)
        with self._skip_state.get_lock():
            if self._unusable[index]:  # another worker found it meanwhile
                return
            self._unusable[index] = 1
            self._skip_state[0] += 1
            count = self._skip_state[0]
            warn = real_problem and self._skip_state[1] == 0
            if warn:
                self._skip_state[1] = 1
        if warn:
            warnings.warn(
                f"skipping unusable S2-NAIP samples ({count} so far; `dataset.skipped` has the "
                f"total); e.g. {exc}",
                DataWarning,
                stacklevel=3,
            )

    def load(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        """Load pair ``index`` choosing frames with ``rng``; raises :class:`DataError`."""
        record = self.pairs[index]
        hr = read_hr(record.naip_path, self.hr_size)
        if self.train and self.skip_black_hr and _has_black(hr):
            raise BlackHRError(f"{record.naip_path}: NAIP image has black pixels")
        series = read_series(record, self.bands)
        valid = valid_frames(series["tci"])
        chosen = select_frames(valid, self.n_images, rng)
        lr = np.concatenate(
            [normalize_band(series[b][chosen], b, record.band_path(b)) for b in self.bands],
            axis=-1,
        )  # [n, 32, 32, C]
        lr_t = to_layout(torch.from_numpy(np.ascontiguousarray(lr.transpose(0, 3, 1, 2))),
                         self.layout)
        sample: dict[str, Any] = {
            "lr": lr_t,
            "hr": _to_chw(hr),
            "tile": record.tile,
            "image_id": record.image_id,
            "frames": torch.from_numpy(chosen.astype(np.int64)),
            "n_valid": int(valid.sum()),
        }
        if self.old_naip:
            sample["old_hr"] = self._load_old_naip(record, rng)
        return sample

    def _load_old_naip(self, record: PairRecord, rng: np.random.Generator) -> torch.Tensor:
        folder = record.old_naip_dir
        files = sorted(folder.glob("*.png")) if folder.is_dir() else []
        if len(files) < self.old_naip:
            raise DataError(
                f"{folder}: {len(files)} old NAIP image(s), {self.old_naip} requested"
            )
        picks = np.sort(rng.choice(len(files), size=self.old_naip, replace=False))
        return torch.stack([_to_chw(read_hr(files[i], self.hr_size)) for i in picks])


def _has_black(hr: np.ndarray) -> bool:
    return bool((~hr.any(axis=-1)).any())


def _to_chw(img: np.ndarray) -> torch.Tensor:
    # numpy, not torch: small-tensor torch ops pay thread-pool overhead per call.
    chw = img.transpose(2, 0, 1).astype(np.float32)
    chw *= np.float32(1.0 / 255.0)
    return torch.from_numpy(chw)


__all__ = ["BlackHRError", "DataWarning", "S2NAIPDataset", "to_layout"]
