"""Per-tile cloud fraction of a Sentinel-2 frame: from the L2A scene classification layer (SCL),
else from the L1C cloud mask (MSK_CLASSI, processing baseline 04.00 on), else from a brightness
test on the true-colour image."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from zoomsr.validate import check_choice

#: ESA's L2A scene classification codes.
SCL_CLASSES: dict[int, str] = {
    0: "no_data", 1: "saturated_or_defective", 2: "dark_area_pixels", 3: "cloud_shadows",
    4: "vegetation", 5: "not_vegetated", 6: "water", 7: "unclassified",
    8: "cloud_medium_probability", 9: "cloud_high_probability", 10: "thin_cirrus",
    11: "snow",
}  # fmt: skip
#: SCL classes counted as cloudy by default: cloud shadows, medium/high-probability cloud, cirrus.
DEFAULT_CLOUD_CLASSES: tuple[int, ...] = (3, 8, 9, 10)
#: Brightness test default: a pixel whose darkest TCI channel reaches this value is cloud
#: (bright and grey/white). 200/255 is ~0.2 L2A reflectance in every visible band.
DEFAULT_BRIGHTNESS_THRESHOLD = 200
CLOUD_METHODS = ("auto", "scl", "msk_classi", "brightness", "none")


def scl_cloud_mask(scl: np.ndarray, classes: Iterable[int] = DEFAULT_CLOUD_CLASSES) -> np.ndarray:
    """Boolean mask (same shape as ``scl``) of pixels whose SCL code is in ``classes``."""
    return np.isin(scl, np.fromiter(classes, dtype=np.int64))


def classi_cloud_mask(mask: np.ndarray) -> np.ndarray:
    """Cloud mask from an L1C MSK_CLASSI ``[>=2, H, W]``: opaque (band 1) or cirrus (band 2)
    flagged. Band 3 (snow and ice) is not cloud."""
    if mask.ndim != 3 or mask.shape[0] < 2:
        raise ValueError(f"expected MSK_CLASSI [>=2, H, W], got {list(mask.shape)}")
    return (mask[:2] != 0).any(axis=0)


def brightness_cloud_mask(
    tci: np.ndarray, threshold: int = DEFAULT_BRIGHTNESS_THRESHOLD
) -> np.ndarray:
    """Cloud mask from a TCI chunk ``[3, H, W]`` (uint8): the darkest channel >= ``threshold``.

    Crude by design (bright snow, sand and roofs count as cloud): for L1C or scenes without SCL.
    """
    if tci.ndim != 3 or tci.shape[0] != 3:
        raise ValueError(f"expected TCI [3, H, W], got {list(tci.shape)}")
    return tci.min(axis=0) >= threshold


def cloud_fraction(cloud: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Share of ``valid`` pixels that are cloudy (0 when none is valid)."""
    if valid is None:
        return float(cloud.mean()) if cloud.size else 0.0
    n = int(valid.sum())
    return float((cloud & valid).sum()) / n if n else 0.0


def resolve_method(method: str, has_scl: bool, has_mask: bool = False) -> str:
    """``auto`` -> ``scl`` when the scene has an SCL file, else ``msk_classi`` when it has an
    L1C cloud mask, else ``brightness``."""
    check_choice("cloud method", method, CLOUD_METHODS)
    if method == "auto":
        return "scl" if has_scl else "msk_classi" if has_mask else "brightness"
    return method


__all__ = [
    "CLOUD_METHODS",
    "DEFAULT_BRIGHTNESS_THRESHOLD",
    "DEFAULT_CLOUD_CLASSES",
    "SCL_CLASSES",
    "brightness_cloud_mask",
    "classi_cloud_mask",
    "cloud_fraction",
    "resolve_method",
    "scl_cloud_mask",
]
