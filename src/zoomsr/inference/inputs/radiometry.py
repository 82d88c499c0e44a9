"""What Sentinel-2 pixel values mean, and their mapping to the models' input scale.

Every frame is converted to the radiometry the published models were trained on: ESA's
8-bit true-colour image (TCI) divided by 255. Digital numbers (DN, reflectance x 10000) and
float reflectance are mapped with the TCI stretch measured on a real L2A scene
(TCI ~= 255 * reflectance / 0.25, clipped); anything else is refused with a message. Extra
bands (``b08``, the 20 m and 60 m bands) as in training: reflectance x 10000 / 8160,
clipped to [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from zoomsr.data.bands import BAND16_DIVISOR
from zoomsr.errors import ConfigError, DataError
from zoomsr.inference.arrays import Array, float32, is_floating, xp
from zoomsr.validate import check_choice

Radiometry = Literal["tci", "dn", "reflectance"]


RADIOMETRY_CHOICES = ("auto", "tci", "dn", "reflectance")


#: Reflectance that maps to TCI 255 (measured on a real L2A scene: TCI ~= 1020 * reflectance).
TCI_SATURATION = 0.25


#: Sentinel-2 DN per unit reflectance (QUANTIFICATION_VALUE).
DN_SCALE = 10000.0


#: DN offset added from processing baseline 04.00 on (RADIO_ADD_OFFSET / BOA_ADD_OFFSET = -1000).
BASELINE_OFFSET = 1000


#: Largest plausible float reflectance; larger floats mean another scaling (e.g. x 10000).
MAX_FLOAT_REFLECTANCE = 2.0

#: The brightest red, green or blue reflectance of a scene is above this (open water's blue
#: is about 0.03-0.06): a float file whose values all stay below it is scaled down (divided
#: by 10000 twice), and came out black.
MIN_SCENE_REFLECTANCE = 0.01


#: Float reflectance at or below this is a fill value (-9999, -1...), not a surface: nothing
#: reflects -100 %, while atmospheric correction leaves dark pixels a few hundredths below 0
#: (ESA's offset products reach -0.1), far above it.
MIN_FLOAT_REFLECTANCE = -1.0


def to_tci(pixels: Array, radiometry: Radiometry, dn_offset: float = 0.0) -> Array:
    """Map ``[3, H, W]`` raw pixels to the models' input scale: TCI / 255, float32 in [0, 1].

    NumPy array or torch tensor (the result is of the same kind, on the same device).
    """
    x = float32(pixels)
    if radiometry == "tci":
        return x / 255.0
    if radiometry == "dn":
        x = (x - float(dn_offset)) / DN_SCALE
    return xp(x).clip(x / TCI_SATURATION, 0.0, 1.0)


def to_band16(pixels: Array, radiometry: str, dn_offset: float = 0.0) -> Array:
    """Map raw extra-band pixels to the models' scale: reflectance x 10000 / 8160, in [0, 1]."""
    x = float32(pixels)
    # DN: reflectance x 10000 + offset; otherwise float reflectance
    x = x - float(dn_offset) if radiometry == "dn" else x * DN_SCALE
    return xp(x).clip(x / BAND16_DIVISOR, 0.0, 1.0)


def valid_pixels(pixels: Array, nodata: float | None, mask: Array | None) -> Array:
    """``[H, W]`` True where a ``[n, H, W]`` pixel holds data (NumPy array or torch tensor).

    Invalid: the GDAL mask says so, any channel equals ``nodata`` or is not finite, or all
    channels are 0 (black: Sentinel-2's nodata, the S2-NAIP rule).
    """
    valid = (pixels != 0).any(0)
    if is_floating(pixels):
        valid &= xp(pixels).isfinite(pixels).all(0)
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        valid &= ~(pixels == nodata).any(0)
    if mask is not None:
        valid &= mask
    return valid


def unsupported_dtype(path: Path, dtype: str) -> DataError:
    """The error for a raster whose data type no model input comes from."""
    return DataError(f"{path}: unsupported data type {np.dtype(dtype).name} (expected uint8 "
                     "TCI, uint16 digital numbers or float reflectance)")


def radiometry_for(
    path: Path, dtype: str, choice: str, sample: np.ndarray
) -> Radiometry:
    """Decide what the pixel values mean, refusing values the models cannot take."""
    check_choice("radiometry", choice, RADIOMETRY_CHOICES)
    if np.dtype(dtype).kind not in "uif":  # complex: its max() warned, then was refused
        raise unsupported_dtype(path, dtype)
    floating = np.issubdtype(np.dtype(dtype), np.floating)
    finite = sample[np.isfinite(sample)] if floating else sample
    top = float(finite.max()) if finite.size else 0.0
    if choice == "auto":
        if dtype == "uint8":
            return "tci"
        if dtype in ("uint16", "int16"):
            return "dn"
        if floating:
            if MAX_FLOAT_REFLECTANCE < top <= 255 and np.array_equal(finite, np.round(finite)):
                # whole numbers up to 255: a TCI saved as float. Read as DN it would come out
                # about 10x darker, so the way out is uint8, which is read as a TCI.
                raise DataError(
                    f"{path}: float data holding whole numbers up to {top:g}: 8-bit data "
                    "stored as float? (reflectance is at most about 1, and Sentinel-2 digital "
                    "numbers of a scene reach thousands); save it as uint8, which is read as "
                    f"a TCI (gdal_translate -ot Byte {path.name} {path.stem}_u8.tif)"
                )
            if top > MAX_FLOAT_REFLECTANCE:
                raise DataError(
                    f"{path}: float data with values up to {top:g}: not reflectance in [0, 1] "
                    "(looks scaled, e.g. x 10000); rescale it, or pass --radiometry dn if the "
                    "values are Sentinel-2 digital numbers"
                )
            _refuse_dim(path, top)
            return "reflectance"
        raise unsupported_dtype(path, dtype)
    if choice == "tci" and dtype != "uint8":
        raise DataError(f"{path}: --radiometry tci needs 8-bit data, found {dtype}")
    if choice == "reflectance" and not floating:
        raise DataError(f"{path}: --radiometry reflectance needs float data, found {dtype}")
    if choice == "reflectance" and top > MAX_FLOAT_REFLECTANCE:
        raise DataError(f"{path}: values up to {top:g} are not reflectance in [0, 1]")
    if choice == "reflectance":
        _refuse_dim(path, top)
    if choice == "dn" and dtype == "uint8":
        raise DataError(f"{path}: --radiometry dn needs 16-bit or float data, found uint8")
    return choice  # type: ignore[return-value]


def _refuse_dim(path: Path, top: float) -> None:
    """Refuse float reflectance whose brightest valid value (``top``; 0: no data, told
    elsewhere) is below :data:`MIN_SCENE_REFLECTANCE`: no scene is that dark, and it came
    out black with a mask saying valid."""
    if 0 < top < MIN_SCENE_REFLECTANCE:
        raise DataError(
            f"{path}: float reflectance of at most {top:g}: no scene is that dark (its "
            f"brightest red/green/blue is above {MIN_SCENE_REFLECTANCE:g}); scaled down twice "
            "(e.g. divided by 10000 again)? rescale it to reflectance in [0, 1]"
        )


def check_values(path: Path, sample: np.ndarray, radiometry: Radiometry, choice: str,
                  nodata: float | None, band_paths: Sequence[Path] = ()) -> bool:
    """Whether the ``[3, h, w]`` RGB ``sample`` holds valid pixels; refuse values that no
    Sentinel-2 product holds: fill values (DN below -1000, reflectance of -1 or lower,
    whatever ``--radiometry`` says) and, with detected 16-bit DN, 8-bit data (values too
    large for reflectance: :func:`radiometry_for`).

    ``band_paths``: the file of each channel, for band files (a fill value is then named in
    the file that holds it, which is the one ``gdal_edit.py`` must fix).
    """
    valid = valid_pixels(sample, nodata, None)
    if not valid.any():
        return False
    values = sample[:, valid]
    lows = values.min(1)
    low = float(lows.min())
    where = Path(band_paths[int(lows.argmin())]) if band_paths else path
    if radiometry == "reflectance":
        # whatever --radiometry says: no choice makes a fill value a reflectance (read, its
        # pixels would be valid black ones); valid pixels only, so a declared nodata passes
        if low <= MIN_FLOAT_REFLECTANCE:
            raise _fill_value(where, low, f"reflectance is never {MIN_FLOAT_REFLECTANCE:g} or "
                              "lower (atmospheric correction leaves dark pixels a few "
                              "hundredths below 0)")
        return True
    if radiometry != "dn":
        return True
    if low < -BASELINE_OFFSET:  # whatever --radiometry says, as for reflectance above
        raise _fill_value(where, low, "Sentinel-2 digital numbers are never below "
                          f"-{BASELINE_OFFSET}")
    top = float(values.max())
    if choice != "auto" or np.issubdtype(sample.dtype, np.floating):
        return True
    if top <= 255:
        raise DataError(
            f"{path}: 16-bit values no higher than {top:g}: 8-bit data stored as 16 bits? "
            "Sentinel-2 digital numbers (reflectance x 10000) of a scene reach thousands; save "
            "8-bit data as uint8 (read as a TCI), or pass --radiometry dn if these are digital "
            "numbers"
        )
    return True


def holds_fill_values(pixels: Array, valid: Array, radiometry: str) -> Array:
    """A 0-d boolean (no host sync on a GPU): whether a ``valid`` pixel of ``pixels``
    ``[n, H, W]`` read as ``radiometry`` (``reflectance`` or ``dn``: see
    :func:`can_hold_fills`) holds a value no Sentinel-2 product holds (see
    :func:`check_values`). Discovery looks at a decimated preview only: an undeclared fill
    elsewhere was read as valid black."""
    hits = (pixels <= MIN_FLOAT_REFLECTANCE if radiometry == "reflectance"
            else pixels < -BASELINE_OFFSET)
    return (hits & valid).any()


def can_hold_fills(radiometry: str, file_dtype: str) -> bool:
    """Whether a file of ``file_dtype`` read as ``radiometry`` can hold the fill values
    :func:`check_values` refuses (negative ones: signed or float reflectance or DN). The
    file's type, not the values': they may travel in a wider, signed one."""
    return radiometry in ("reflectance", "dn") and np.dtype(file_dtype).name in _SIGNED


#: Types whose values can be negative (NumPy's and torch's names).
_SIGNED = ("int8", "int16", "int32", "int64", "float16", "float32", "float64")


def _fill_value(path: Path, low: float, why: str) -> DataError:
    """The error for an undeclared fill value ``low`` in ``path``, with the command that
    declares it as the file's nodata."""
    return DataError(f"{path}: values down to {low:g}: {why}; if {low:g} marks missing data, "
                     f"declare it as the file's nodata (gdal_edit.py -a_nodata {low:g} "
                     f"{path.name})")


def check_dn_offset(dn_offset: float | None) -> None:
    """``--dn-offset`` is None (from the metadata), 0 or 1000: the offset *subtracted*."""
    if dn_offset is not None and dn_offset not in (0, BASELINE_OFFSET):
        raise ConfigError(
            f"--dn-offset must be 0 or {BASELINE_OFFSET} (the DN offset to subtract: "
            f"{BASELINE_OFFSET} from processing baseline 04.00 on, where ESA's metadata says "
            f"BOA_ADD_OFFSET=-{BASELINE_OFFSET}), got {dn_offset:g}"
        )
