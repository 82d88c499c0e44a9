"""The offline demo: real Sentinel-2 pixels super-resolved with the Real-ESRGAN default.

The real pixels are the 300 x 300 px, 10 m Sentinel-2 sample that the ``spyndex`` package ships
(bands B02, B03, B04, B08 as reflectance x 10000), read straight from its JSON file so neither
spyndex's optional xarray dependency nor the network is needed. The sample carries no
georeference, so the demo writes a PNG: LR (nearest x4) | super-resolved | bicubic x4.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zoomsr.errors import DataError, InputError
from zoomsr.inference.inputs import to_tci
from zoomsr.inference.model import InferenceModel
from zoomsr.inference.pipeline import super_resolve_array
from zoomsr.inference.windows import Tiling

SPYNDEX_FILE = "data/S2_10m.json"
SPYNDEX_BANDS = ("B02", "B03", "B04", "B08")


def spyndex_sample() -> np.ndarray:
    """The spyndex Sentinel-2 sample as ``[4, 300, 300]`` float64 DN (B02, B03, B04, B08)."""
    try:
        spec = importlib.util.find_spec("spyndex")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the demo's real Sentinel-2 sample comes with the spyndex package: pip install spyndex"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SPYNDEX_FILE
    try:
        data = np.asarray(json.loads(path.read_text(encoding="utf-8")), dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the spyndex sample ({exc})") from None
    if data.ndim != 3 or data.shape[0] != len(SPYNDEX_BANDS):
        raise DataError(f"{path}: expected 4 bands of 2-D data, got shape {data.shape}")
    return data


@dataclass
class DemoResult:
    png: Path
    lr_size: int
    seconds: float


def run_demo(out_dir: str | Path, model: InferenceModel, size: int = 64,
             overwrite: bool = False) -> DemoResult:
    """Super-resolve the centre ``size`` x ``size`` px of the spyndex sample; write the PNG."""
    import time

    from zoomsr.io.png import write_png

    if model.n_images != 1:
        raise InputError(f"the demo uses a single-image model; {model.label} takes "
                         f"{model.n_images} images")
    if not 16 <= size <= 300:
        raise InputError(f"--size must be in 16..300 px, got {size}")
    out = Path(out_dir)
    png = out / "sentinel2_realesrgan.png"
    if png.exists() and not overwrite:
        raise InputError(f"{png}: already exists (pass --overwrite to replace it)")
    data = spyndex_sample()
    top = (data.shape[1] - size) // 2
    left = (data.shape[2] - size) // 2
    rgb = data[[2, 1, 0], top : top + size, left : left + size]  # B04, B03, B02
    lr = to_tci(rgb, "dn", 0.0)  # spyndex's sample: reflectance x 10000, no offset
    start = time.perf_counter()
    window = min(size, 128)  # one window up to 128 px: no overlap to recompute
    sr, _ = super_resolve_array(lr[None], model, Tiling(window, min(32, window - 1)))
    seconds = time.perf_counter() - start
    s = model.scale
    lr_t = torch.from_numpy(lr)[None]
    near = F.interpolate(lr_t, scale_factor=s, mode="nearest")[0].numpy()
    bicubic = F.interpolate(lr_t, scale_factor=s, mode="bicubic")[0].numpy()
    panels = [np.clip(p, 0, 1) for p in (near, sr, bicubic)]
    gap = np.ones((3, size * s, 4), dtype=np.float32)
    strip = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=2)
    out.mkdir(parents=True, exist_ok=True)
    write_png(png, np.round(np.moveaxis(strip, 0, -1) * 255).astype(np.uint8))
    return DemoResult(png, size, seconds)
