"""Writes a tiny fake copy of the PROBA-V challenge data in its real layout (see
:mod:`zoomsr.data.probav`): real image sizes (128/384 px, 16-bit PNGs), a handful of image sets,
few frames, seeded values.

Known pixels, so tests can check what was read:

- ``LRnnn.png`` pixel (0, 0) is ``1000 + nnn`` (which frame); pixel (0, 1) is 16383 (the 14-bit
  maximum) and pixel (0, 2) is 20000 (above it: bright NIR); the rest is random 0..16383.
- ``QMnnn.png`` marks the first ``clear[k]`` pixels (raster order) clear, the rest concealed,
  so frame ``k`` has exactly ``clear[k]`` clear pixels.
- ``HR.png`` pixel (0, 0) is 12345, pixel (0, 1) is 30000; ``SM.png`` conceals its first row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

LR, HR = 128, 384


@dataclass
class FakeSet:
    """One image set to write: ``clear[k]`` clear pixels in frame ``k`` (its length is the
    number of frames); ``mask_mode``: "L" (0/255), "1" (1-bit) or "I;16" (0/1 in 16 bits)."""

    split: str
    band: str
    name: str
    clear: list[int]
    mask_mode: str = "L"
    baseline: float = 47.0
    first_frame: int = 0


#: The default fake dataset: train NIR/RED and test NIR/RED, numbered as the challenge does
#: (train RED before NIR, test after train).
DEFAULT_SETS = (
    FakeSet("train", "RED", "imgset0000", [16384, 9000, 12000, 9000], baseline=52.352172662454414),
    FakeSet("train", "RED", "imgset0001", [10000, 10000, 10000], mask_mode="1", baseline=46.5),
    FakeSet("train", "NIR", "imgset0594", [9830, 16000, 9830, 15000, 12000], mask_mode="I;16",
            baseline=44.0),
    FakeSet("test", "RED", "imgset1160", [11000, 16384, 10000], baseline=48.25),
    FakeSet("test", "NIR", "imgset1161", [12000, 9900, 16000], baseline=39.5),
)


def write_mask(path: Path, clear_mask: np.ndarray, mode: str) -> None:
    if mode == "1":
        img = Image.fromarray(clear_mask.astype(bool))
    elif mode == "L":
        img = Image.fromarray(clear_mask.astype(np.uint8) * 255)
    elif mode == "I;16":
        img = Image.fromarray(clear_mask.astype(np.uint16))
    else:
        raise ValueError(mode)
    img.save(path, format="PNG", compress_level=1)


def write_u16(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint16)).save(path, format="PNG",
                                                                    compress_level=1)


def lr_image(rng: np.random.Generator, frame: int) -> np.ndarray:
    img = rng.integers(0, 16384, size=(LR, LR), dtype=np.uint16)
    img[0, 0], img[0, 1], img[0, 2] = 1000 + frame, 16383, 20000
    return img


def write_imgset(root: Path, spec: FakeSet, rng: np.random.Generator) -> Path:
    folder = root / spec.split / spec.band / spec.name
    folder.mkdir(parents=True)
    for k, clear in enumerate(spec.clear):
        n = spec.first_frame + k
        write_u16(folder / f"LR{n:03d}.png", lr_image(rng, n))
        mask = np.zeros(LR * LR, dtype=bool)
        mask[:clear] = True
        write_mask(folder / f"QM{n:03d}.png", mask.reshape(LR, LR), spec.mask_mode)
    if spec.split == "train":
        hr = rng.integers(0, 16384, size=(HR, HR), dtype=np.uint16)
        hr[0, 0], hr[0, 1] = 12345, 30000
        write_u16(folder / "HR.png", hr)
    sm = np.ones((HR, HR), dtype=bool)
    sm[0] = False
    write_mask(folder / "SM.png", sm, spec.mask_mode)
    return folder


def write_probav(root: Path, sets: tuple[FakeSet, ...] = DEFAULT_SETS, seed: int = 0,
                 norm_csv: bool = True) -> Path:
    """Write ``sets`` under ``root`` (and ``root/norm.csv`` as the challenge does); returns
    ``root``."""
    rng = np.random.default_rng(seed)
    for spec in sets:
        write_imgset(root, spec, rng)
    if norm_csv:
        lines = [f"{s.name} {s.baseline}" for s in sorted(sets, key=lambda s: s.name)]
        (root / "norm.csv").write_text("\n".join(lines), encoding="utf-8")  # no final newline
    return root
