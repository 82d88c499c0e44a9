"""Sentinel-2 band names of the S2-NAIP layout and their normalisation to [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zoomsr.errors import ConfigError, DataError

#: Bands the published layout can hold, in canonical order. ``tci`` is ESA's 8-bit RGB.
BANDS: tuple[str, ...] = ("tci", "b01", "b05", "b06", "b07", "b08", "b09", "b10", "b11", "b12")
#: Divisor of the 16-bit bands (value / 8160, clipped to [0, 1]), as the published models expect.
BAND16_DIVISOR = 8160.0


def band_channels(band: str) -> int:
    """Channels of one time step of ``band``: 3 for ``tci``, 1 otherwise."""
    return 3 if band == "tci" else 1


def validate_bands(bands: Sequence[str] | str) -> tuple[str, ...]:
    """Check a band selection: ``tci`` first, then distinct known bands. Accepts "tci,b08"."""
    if isinstance(bands, str):
        bands = [b.strip() for b in bands.split(",") if b.strip()]
    out = tuple(b.lower() for b in bands)
    if not out:
        raise ConfigError("bands: empty selection (expected 'tci' optionally followed by b01..b12)")
    unknown = [b for b in out if b not in BANDS]
    if unknown:
        raise ConfigError(f"bands: unknown band(s) {', '.join(unknown)}; known: {', '.join(BANDS)}")
    if out[0] != "tci":
        raise ConfigError(
            f"bands: 'tci' must come first (it decides which time steps are valid), got {list(out)}"
        )
    if len(set(out)) != len(out):
        raise ConfigError(f"bands: duplicates in {list(out)}")
    return out


def normalize_band(array: np.ndarray, band: str, path: object = "") -> np.ndarray:
    """Convert raw band pixels to float32 reflectance-like values in [0, 1].

    ``tci`` must be uint8 and is divided by 255; other bands must be 16-bit and are divided by
    8160 and clipped. The wrong dtype is refused: it means the file holds another radiometry.
    """
    if band == "tci":
        if array.dtype != np.uint8:
            raise DataError(f"{path}: tci must be 8-bit, found {array.dtype}")
        return array.astype(np.float32) / np.float32(255.0)
    if array.dtype != np.uint16:
        raise DataError(
            f"{path}: band {band} must be a 16-bit PNG (raw digital numbers), found {array.dtype}"
        )
    return np.minimum(array.astype(np.float32) / np.float32(BAND16_DIVISOR), np.float32(1.0))
