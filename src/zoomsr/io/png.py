"""PNG reading and writing for the S2-NAIP layout (8-bit RGB/grey and 16-bit grey)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from zoomsr.errors import DataError, first_line
from zoomsr.io.atomic import atomic_path

_MODES_16BIT = {"I;16", "I;16B", "I;16L", "I"}


def _png_bit_depth(path: Path) -> int | None:
    """The bit depth a PNG's header (IHDR) gives, or None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return None
    return head[24] if len(head) == 26 and head[12:16] == b"IHDR" else None


@contextlib.contextmanager
def image_errors(p: Path, advice: str = "", what: str = "an image file") -> Iterator[None]:
    """Pillow's errors while reading image ``p`` as one-line :class:`DataError` naming it
    (``advice``, what to do, appended; ``what``: the file expected where a folder is);
    DataErrors raised inside pass as they are."""
    more = f"; {advice}" if advice else ""
    try:
        yield
    except FileNotFoundError:
        raise DataError(f"{p}: file not found{more}") from None
    except IsADirectoryError:
        raise DataError(f"{p}: is a folder, expected {what}") from None
    except UnidentifiedImageError:
        raise DataError(f"{p}: not a readable image (corrupt or wrong format){more}") from None
    except DataError:
        raise  # a readable image of a kind refused (a ValueError too): not corrupt
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{p}: corrupt or truncated image ({first_line(exc)}){more}") from None


def read_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file into ``[H, W]`` or ``[H, W, C]`` (uint8, or uint16 for 16-bit grey).

    Raises :class:`DataError` naming the file when it is missing, truncated or not an image.
    """
    p = Path(path)
    with image_errors(p), Image.open(p) as img:
        if p.suffix.lower() == ".png" and img.format != "PNG":
            # a JPEG renamed .png was read as it is: lossy pixels scored or trained on as
            # the dataset's lossless ones
            raise DataError(f"{p}: a {img.format or 'non-PNG'} file named .png; save it "
                            "as a PNG (S2-NAIP images are lossless PNGs)")
        img.load()
        mode = img.mode
        if mode in _MODES_16BIT:
            arr = np.array(img)
            if arr.dtype != np.uint16:
                if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
                    raise DataError(f"{p}: 32-bit integer image with values outside 0..65535")
                arr = arr.astype(np.uint16)
            return arr
        if img.format == "PNG" and mode in ("RGB", "RGBA") and _png_bit_depth(p) == 16:
            # Pillow hands 16-bit colour as 8-bit, keeping the high byte: values 0..255
            # stored in 16 bits came out near black, scored without a word
            raise DataError(f"{p}: 16-bit colour PNG, which is read as 8-bit (its high "
                            "byte only); save it as 8-bit RGB")
        pixels: Image.Image = img
        if mode == "P":
            pixels = img.convert("RGBA" if "transparency" in img.info else "RGB")
        elif mode not in ("L", "RGB", "RGBA", "LA"):
            raise DataError(f"{p}: unsupported image mode {mode!r} (expected 8-bit grey/RGB or "
                            "16-bit grey)")
        return np.array(pixels)  # writable copy: torch refuses read-only buffers


def write_png(path: str | os.PathLike[str], array: np.ndarray, compress_level: int = 1) -> None:
    """Write ``[H, W]``/``[H, W, 1]`` uint8 or uint16, or ``[H, W, 3]`` uint8, as PNG, atomically.

    ``compress_level`` trades size for speed (1 = fast; the published data decode the same).
    """
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.dtype == np.uint16:
        if arr.ndim != 2:
            raise DataError(f"{path}: 16-bit PNG must be single-channel, got shape {arr.shape}")
        img = Image.fromarray(arr)  # mode I;16
    elif arr.dtype == np.uint8:
        if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
            raise DataError(f"{path}: cannot write shape {arr.shape} as PNG")
        img = Image.fromarray(arr)
    else:
        raise DataError(f"{path}: PNG data must be uint8 or uint16, got {arr.dtype}")
    with atomic_path(path, suffix=".png") as tmp:
        img.save(tmp, format="PNG", compress_level=compress_level)
