"""Example images of a scoring run: a few items' LR, SR and HR kept to be looked at, and the
montage that sets several models' outputs side by side (a benchmark's ``examples_D.png``).

The items are chosen by a hash of their key and a seed (the ``n`` smallest), so every model
scored on a dataset keeps the same ones, whatever the order or batching; only ``n`` are held at
a time. Images are kept as float16 ``[H, W, C]`` in [0, 1] (``C``: 1 or 3), unstretched: the
montage stretches each row alike (PROBA-V's values fill a fifth of [0, 1]).
"""

from __future__ import annotations

import hashlib
import heapq
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def example_rank(key: str, seed: int = 0) -> int:
    """Where item ``key`` ranks among the examples (smaller first)."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{key}".encode()).digest()[:8], "little")


def _display(x: torch.Tensor, rgb: Sequence[int] | None) -> np.ndarray:
    """``[C, H, W]`` as float16 ``[H, W, 1 or 3]``: one band, or channels ``rgb``."""
    x = x[:1] if x.shape[0] == 1 or rgb is None else x[list(rgb)]
    return x.float().clamp(0, 1).permute(1, 2, 0).cpu().numpy().astype(np.float16)


class ExampleKeeper:
    """The ``n`` items of smallest :func:`example_rank` offered to it, as display images.

    ``channels``: the LR's channels per frame (its first frame is shown, nearest-upsampled to
    the HR's size, by its channels ``lr_rgb``: a dataset's, e.g. WorldStrat's B04, B03, B02
    wherever ``lr_bands`` puts them; None: its first channel, grey); ``rgb``: the HR's R, G,
    B positions (a dataset's ``hr_rgb``; None: its first band).
    """

    def __init__(self, n: int, seed: int = 0, channels: int = 3,
                 rgb: Sequence[int] | None = (0, 1, 2),
                 lr_rgb: Sequence[int] | None = (0, 1, 2)) -> None:
        self.n, self.seed, self.channels, self.rgb = n, seed, channels, rgb
        self.lr_rgb = lr_rgb
        self._heap: list[tuple[int, str]] = []  # (-rank, key): the largest rank on top
        self._images: dict[str, dict[str, np.ndarray]] = {}

    def offer(self, key: str, lr: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor) -> None:
        """Keep item ``key`` (``lr`` ``[T*C, h, w]`` or ``[T, C, h, w]``; ``sr`` and ``hr``
        ``[C, H, W]``) if it ranks among the ``n`` first so far."""
        if self.n <= 0:
            return
        if key in self._images:  # offered twice (a dataset repeating an id): kept once
            return
        rank = example_rank(key, self.seed)
        if len(self._heap) >= self.n:
            if rank >= -self._heap[0][0]:
                return
            _, dropped = heapq.heappop(self._heap)
            del self._images[dropped]
        heapq.heappush(self._heap, (-rank, key))
        first = lr[0] if lr.ndim == 4 else lr[: self.channels]
        rgb = self.lr_rgb if self.lr_rgb is not None and first.shape[0] >= 3 else None
        first = first[list(rgb)] if rgb is not None else first[:1]
        up = F.interpolate(first[None].float(), size=tuple(hr.shape[-2:]), mode="nearest")[0]
        self._images[key] = {"lr": _display(up, (0, 1, 2) if up.shape[0] == 3 else None),
                             "sr": _display(sr, self.rgb), "hr": _display(hr, self.rgb)}

    @property
    def kept(self) -> dict[str, dict[str, np.ndarray]]:
        """``{key: {"lr", "sr", "hr"}}`` in rank order."""
        order = sorted(self._images, key=lambda k: example_rank(k, self.seed))
        return {k: self._images[k] for k in order}


def file_stem(key: str) -> str:
    """An item key as a file name (``image_id/tile`` -> ``image_id__tile``)."""
    return key.replace("/", "__").replace(os.sep, "__")


def npy_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, image, allow_pickle=False)
    return buf.getvalue()


def read_image(path: Path) -> np.ndarray | None:
    """An example image written by :func:`npy_bytes` (None: not there or unreadable)."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None


def _stretch(images: list[np.ndarray | str | None], reference: np.ndarray) -> list[Any]:
    """Each image mapped by the 2nd-98th percentiles of ``reference`` (the HR) to [0, 1]."""
    lo, hi = np.percentile(reference.astype(np.float32), [2, 98])
    if hi - lo < 1e-6:
        lo, hi = 0.0, 1.0
    out: list[Any] = []
    for img in images:
        if img is None or isinstance(img, str):
            out.append(img)
            continue
        x = np.clip((img.astype(np.float32) - lo) / (hi - lo), 0, 1)
        out.append(np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x)
    return out


def plot_examples(rows: Sequence[tuple[str, np.ndarray | None,
                                       Sequence[np.ndarray | str | None], np.ndarray]],
                  models: Sequence[str], title: str = "") -> Any:
    """A matplotlib ``Figure``: a row per item (its key), columns LR (first frame), each
    model's SR, HR; each row stretched by its HR's 2nd-98th percentiles. A model without the
    item is a blank tile with its note (a string: ``failed``, ``not run``) or ``-`` (a cell
    kept from a run that kept other examples)."""
    from matplotlib.figure import Figure

    cols = 2 + len(models)
    size = 2.2
    fig = Figure(figsize=(cols * size, len(rows) * size + 0.4), layout="constrained")
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for i, (key, lr, srs, hr) in enumerate(rows):
        tiles = _stretch([lr, *srs, hr], hr)
        for j, (ax, tile) in enumerate(zip(axes[i], tiles, strict=True)):
            ax.set_xticks([])
            ax.set_yticks([])
            if tile is None or isinstance(tile, str):
                ax.text(0.5, 0.5, tile or "-", ha="center", va="center",
                        transform=ax.transAxes, fontsize=8)
            else:
                ax.imshow(tile, interpolation="nearest")
            if i == 0:
                ax.set_title((["LR (1st frame)", *models, "HR"])[j], fontsize=8)
        axes[i][0].set_ylabel(key if len(key) <= 24 else "…" + key[-23:], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def write_examples_png(examples: dict[str, dict[str, np.ndarray]], label: str,
                       path: Path) -> Path:
    """One model's kept examples (``EvaluationResult.examples``) as a PNG: LR | SR | HR rows
    (:func:`plot_examples`), written atomically."""
    import warnings

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from zoomsr.io.atomic import atomic_write_all

    rows = [(key, images["lr"], [images["sr"]], images["hr"])
            for key, images in examples.items()]
    figure = plot_examples(rows, [label], f"{label}: {len(rows)} items (each row stretched "
                                          "by its HR)")
    FigureCanvasAgg(figure)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        figure.savefig(buf, format="png", dpi=110)
    atomic_write_all({path: buf.getvalue()})
    return path


__all__ = ["ExampleKeeper", "example_rank", "file_stem", "npy_bytes", "plot_examples",
           "read_image", "write_examples_png"]
