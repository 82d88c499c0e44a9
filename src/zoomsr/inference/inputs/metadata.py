"""What a product's names, GDAL tags and STAC item say: level, processing baseline,
and so the DN offset."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoomsr.data.builder.s2_names import stac_item_for
from zoomsr.errors import DataError
from zoomsr.inference.inputs.radiometry import BASELINE_OFFSET

_BASELINE_RE = re.compile(r"_N(\d{2})(\d{2})(?:_|$)")


def _stac_properties(path: Path) -> dict:
    """Properties of the STAC item JSON beside ``path`` that describes it, if any (the
    builder's choice of item: :func:`~zoomsr.data.builder.s2_names.stac_item_for`)."""
    item = stac_item_for([path])
    return item["properties"] if item is not None else {}


@dataclass(frozen=True)
class _Meta:
    level: str | None  # "L1C" / "L2A"
    baseline: float | None  # processing baseline, e.g. 4.0
    offset_removed: bool | None  # a provider already subtracted the offset
    tag_offset: float | None  # offset given by a BOA/RADIO_ADD_OFFSET tag (as a DN to remove)


def product_metadata(path: Path, tags: dict) -> _Meta:
    """What the file name, its folders' names (a SAFE product's), GDAL tags and a STAC item
    beside the file say about the product."""
    names = [path.stem, *(p.name for p in list(path.parents)[:5])]
    text = " ".join([*names, *(f"{k}={v}" for k, v in tags.items())]).upper()
    level = next((name for name in ("L2A", "L1C") if name in text), None)
    baseline: float | None = None
    m = next(filter(None, (_BASELINE_RE.search(n) for n in names)), None)
    if m:
        baseline = float(f"{m.group(1)}.{m.group(2)}")
    for key in ("PROCESSING_BASELINE", "s2:processing_baseline"):
        if key in tags:
            with contextlib.suppress(ValueError):
                baseline = float(tags[key])
    tag_offset: float | None = None
    for key in ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET"):
        if key in tags:
            with contextlib.suppress(ValueError):
                # ESA stores -1000: reflectance = (DN - 1000) / Q (+ 0.0: a tag of 0 is 0,
                # not the -0.0 the inputs tag recorded)
                tag_offset = -float(tags[key]) + 0.0
    removed: bool | None = None
    props = _stac_properties(path)
    if props:
        product = str(props.get("s2:product_type", ""))
        if level is None and "2A" in product:
            level = "L2A"
        elif level is None and "1C" in product:
            level = "L1C"
        if "s2:processing_baseline" in props:
            with contextlib.suppress(TypeError, ValueError):
                baseline = float(props["s2:processing_baseline"])
        if "earthsearch:boa_offset_applied" in props:
            removed = bool(props["earthsearch:boa_offset_applied"])
    return _Meta(level, baseline, removed, tag_offset)


class NoOffsetError(DataError):
    """No metadata gives a file's DN offset, and ``--dn-offset`` was not given."""


def dn_offset_of(path: Path, tags: dict, offset_option: float | None, dtype: str,
                 radiometry: str = "auto") -> tuple[float, str | None]:
    """The DN offset to subtract (0 or 1000) and the product level: from the file's metadata,
    else ``offset_option`` (``--dn-offset``), else refused (a wrong guess shifts every pixel
    by 0.1 reflectance).

    ``dtype`` (the values' data type) and ``radiometry`` (the user's choice) only word the
    refusal: float data, say, is read as digital numbers only because ``--radiometry dn`` said
    so, and the message must not call it 16-bit.
    """
    meta = product_metadata(path, tags)
    if meta.tag_offset is not None:
        return meta.tag_offset, meta.level
    if meta.offset_removed:  # e.g. Earth Search's harmonised COGs
        return 0.0, meta.level
    if meta.baseline is not None:
        return (float(BASELINE_OFFSET) if meta.baseline >= 4.0 else 0.0), meta.level
    if offset_option is not None:
        return offset_option, meta.level
    kind = np.dtype(dtype)
    # Sentinel-2's own type said as before ("16-bit"); any other named as it is (float64...)
    what = "16-bit integers" if kind.kind in "iu" and kind.itemsize == 2 else f"{dtype} values"
    chosen = " (--radiometry dn)" if radiometry == "dn" else ""
    raise NoOffsetError(
        f"{path}: {what} read as Sentinel-2 digital numbers{chosen}, but no metadata "
        "gives the processing baseline (from baseline 04.00 the values carry a +1000 offset); "
        "pass --dn-offset 0 or --dn-offset 1000 (in Python dn_offset=0 or 1000)"
    )
