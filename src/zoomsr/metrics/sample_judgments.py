"""A small judgment file to try :mod:`zoomsr.metrics.agreement` offline: real Sentinel-2
pixels, two degraded candidates per target, and SIMULATED annotators.

The targets are 64 px crops of the real 10 m Sentinel-2 sample the ``spyndex`` package ships
(the one ``zoomsr demo`` uses). Each candidate is the target blurred (Gaussian, sigma in px)
and noised (Gaussian, std in 8-bit levels); its made-up "visual loss" is ``sigma + noise /
6``. Each annotator prefers the candidate of smaller loss with a probability that grows with
the difference (logistic, seeded), and calls a tie when the two are close: people who mostly,
not always, agree. These are not human judgments: they show the command and its outputs, not
how well any metric agrees with people.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from zoomsr.errors import InputError
from zoomsr.io.atomic import atomic_write_text, refuse_existing

#: The judgment file, and the folders of images beside it (paths in it are relative to it).
JUDGMENTS = "judgments.csv"
TARGETS, CANDIDATES = "targets", "candidates"
#: Side of a target (px), and the most targets the 300 px sample gives (4 x 4 crops).
CROP = 64
MAX_ITEMS = 16
#: Loss difference at which an annotator is 2:1 for the better candidate; below TIE, a tie
#: is likely.
SCALE, TIE = 0.35, 0.15


def _targets(items: int) -> list[np.ndarray]:
    """``items`` 64 px RGB uint8 crops of the spyndex sample, row by row."""
    from zoomsr.inference.demo import spyndex_sample
    from zoomsr.inference.inputs.radiometry import to_tci

    data = spyndex_sample()  # [4, 300, 300] DN: B02, B03, B04, B08
    rgb = np.asarray(to_tci(data[[2, 1, 0]], "dn", 0.0))  # [3, H, W] in [0, 1]
    step = (rgb.shape[1] - CROP) // 3
    crops = [rgb[:, r * step : r * step + CROP, c * step : c * step + CROP]
             for r in range(4) for c in range(4)]
    return [np.round(np.moveaxis(c, 0, -1) * 255).astype(np.uint8) for c in crops[:items]]


def _degraded(target: np.ndarray, sigma: float, noise: float,
              rng: np.random.Generator) -> np.ndarray:
    """``target`` ``[H, W, 3]`` uint8 blurred by ``sigma`` px and noised by ``noise`` levels."""
    from PIL import Image, ImageFilter

    img = Image.fromarray(target)
    if sigma > 0:
        img = img.filter(ImageFilter.GaussianBlur(sigma))
    out = np.asarray(img, dtype=np.float64) + rng.normal(0.0, noise, target.shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def write_sample_judgments(out: str | Path, items: int = 12, annotators: int = 3,
                           seed: int = 0, overwrite: bool = False) -> Path:
    """Write ``items`` targets, two candidates each and ``annotators`` simulated judgments
    per pair under ``out`` (module docstring); return the judgment file's path.

    Raises :class:`InputError` for ``items`` outside 1..16, ``annotators`` below 1, or
    outputs that exist without ``overwrite``.
    """
    from zoomsr.io.folders import require_writable_folder
    from zoomsr.io.png import write_png

    if isinstance(items, bool) or not isinstance(items, int) or not 1 <= items <= MAX_ITEMS:
        raise InputError(f"--items must be an integer from 1 to {MAX_ITEMS}, got {items!r}")
    if isinstance(annotators, bool) or not isinstance(annotators, int) or annotators < 1:
        raise InputError(f"--annotators must be an integer >= 1, got {annotators!r}")
    root = Path(out)
    csv_path = root / JUDGMENTS
    # (a file given as OUT failed with a NotADirectoryError at the first image)
    require_writable_folder(root, create=False)
    refuse_existing([csv_path], overwrite)
    rng = np.random.default_rng(seed)
    rows = []
    for k, target in enumerate(_targets(items)):
        name = f"s2_{k:02d}.png"
        write_png(root / TARGETS / name, target)
        losses = []
        for side in "ab":
            sigma, noise = float(rng.uniform(0.0, 2.5)), float(rng.uniform(0.0, 12.0))
            write_png(root / CANDIDATES / f"s2_{k:02d}_{side}.png",
                      _degraded(target, sigma, noise, rng))
            losses.append(sigma + noise / 6)
        diff = losses[1] - losses[0]  # > 0: a is better
        for j in range(annotators):
            if abs(diff) < TIE and rng.random() < 0.5:
                choice = "tie"
            else:
                p_a = 1.0 / (1.0 + math.exp(-diff / SCALE * math.log(2)))
                choice = "A" if rng.random() < p_a else "B"
            rows.append({"target": f"{TARGETS}/{name}",
                         "a": f"{CANDIDATES}/s2_{k:02d}_a.png",
                         "b": f"{CANDIDATES}/s2_{k:02d}_b.png",
                         "choice": choice, "annotator": f"sim{j + 1}"})
    text = io.StringIO()
    writer = csv.DictWriter(text, ["target", "a", "b", "choice", "annotator"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(csv_path, text.getvalue())  # last: a complete set once it exists
    return csv_path
