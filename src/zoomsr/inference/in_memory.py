"""In-memory frames super-resolved with the scene pipeline's tiling, frame choice and blending
(:func:`super_resolve_array`): no files, no georeference."""

from __future__ import annotations

from typing import cast

import numpy as np

from zoomsr.errors import InputError
from zoomsr.inference.model import InferenceModel
from zoomsr.inference.options import (
    InferenceOptions,
    check_inference_model,
    check_uncertainty,
    for_device,
)
from zoomsr.inference.rows import ArrayReader, RowBlender, ScenePlan, local_rows
from zoomsr.inference.windows import Tiling, WindowGrid, windows_per_call


def super_resolve_array(
    pixels: np.ndarray,
    model: InferenceModel,
    tiling: Tiling | None = None,
    valid: np.ndarray | None = None,
    batch_size: int | None = None,
    uncertainty: int = 0,
    seed: int = 0,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Super-resolve in-memory frames with the scene pipeline's tiling, frame choice and blending.

    ``pixels`` ``[T, C, H, W]`` float in [0, 1]: TCI / 255, then the model's extra bands
    (reflectance x 10000 / 8160) if any; ``valid`` ``[T, H, W]`` (default: RGB not black).
    ``batch_size``: windows per model call (in 128 px windows when ``tiling`` has an
    automatic window, the default; None: the device's default, :func:`for_device`).
    Returns float32 ``[K, H*s, W*s]`` (K = 3, + 1 with uncertainty; not clamped; 0 where the
    mask is False) and the ``[H*s, W*s]`` data mask. Integer frames (an 8-bit TCI as read),
    values outside [0, 1], an empty stack and frames none of which has a valid pixel are
    refused (:class:`InputError`); NaN pixels are nodata.
    """
    check_inference_model(model)
    # the settings checked as a scene run's are (threads, batch, uncertainty, seed, tiling)
    options = for_device(
        InferenceOptions(tiling=tiling or Tiling(), batch_size=batch_size,
                         uncertainty=uncertainty, seed=seed, threads=threads, progress=False),
        model.device)
    tiling, batch_size = options.tiling, cast(int, options.batch_size)  # (set by for_device)
    given = np.asarray(pixels)
    if not np.issubdtype(given.dtype, np.floating):
        raise InputError(f"expected float frames in [0, 1], got {given.dtype}: divide an 8-bit "
                         "TCI by 255 (zoomsr.inference.inputs.to_tci maps 16-bit DN and "
                         "reflectance)")
    pixels = given.astype(np.float32)
    channels = getattr(model, "channels", 3)
    if pixels.ndim != 4 or pixels.shape[1] != channels:
        raise InputError(f"expected frames [T, {channels}, H, W] for {model.label} (bands "
                         f"{','.join(model.bands)}), got {list(pixels.shape)}")
    if 0 in pixels.shape:  # (it failed with a ZeroDivisionError)
        raise InputError(f"expected at least one frame of at least 1 x 1 px, got frames "
                         f"{list(pixels.shape)}")
    nan = np.isnan(pixels)
    if not nan.all():
        low, high = np.nanmin(pixels), np.nanmax(pixels)  # +-inf included: refused
        if not (0 <= low and high <= 1):
            raise InputError(f"frame values from {low:g} to {high:g}: expected [0, 1] (TCI / "
                             "255; extra bands reflectance x 10000 / 8160, clipped)")
    pixels[nan] = 0
    nodata = nan.any(1)  # [T, H, W]: a pixel with a NaN channel is nodata
    if valid is None:
        valid = np.any(pixels[:, :3] > 0, axis=1)
    valid = np.asarray(valid)
    if valid.shape != nodata.shape:
        raise InputError(f"valid must be [T, H, W] = {list(nodata.shape)} like the frames, got "
                         f"{list(valid.shape)}")
    valid = valid.astype(bool) & ~nodata
    if not valid.any():  # as a scene run refuses it: nothing to super-resolve
        raise InputError("no valid pixel in any frame (all NaN, black or not valid)")
    check_uncertainty(uncertainty, len(pixels), int((~valid.any(axis=(1, 2))).sum()),
                      model.n_images)
    height, width = pixels.shape[-2:]
    windows = WindowGrid(height, width, tiling, getattr(model, "size_multiple", 1))
    plan = ScenePlan(ArrayReader(pixels, valid), None, windows,
                     model.n_images, windows_per_call(batch_size, tiling, windows), uncertainty,
                     seed)
    s = model.scale
    channels = 3 + (1 if uncertainty else 0)
    blender = RowBlender(windows, s, channels, width * s)
    out = np.zeros((channels, height * s, width * s), np.float32)
    mask = np.zeros((height * s, width * s), bool)
    for res in local_rows(plan, model, range(windows.n_rows), threads):
        top, value, valid_hr = blender.add(res)
        out[:, top : top + value.shape[1]] = value
        mask[top : top + value.shape[1]] = valid_hr
    out[:, ~mask] = 0  # where no frame had data: 0, as a scene run writes (not model output)
    return out, mask
