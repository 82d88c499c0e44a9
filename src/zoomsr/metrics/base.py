"""Shared input checks and the common metric interface.

Every metric takes a batch of predictions and a batch of targets, ``[B, 3, H, W]`` RGB in
``[0, 1]`` (float; ``uint8`` in 0..255 is accepted and divided by 255), and returns one score per
image as a ``float64`` CPU tensor of shape ``[B]``. Inputs are checked before any work: wrong
rank or channel count, channels-last layout, unclipped (values up to 2), 0-255 or 16-bit data
passed as float, negative values (e.g. ``[-1, 1]`` data), NaN/inf and a declared BGR order all
raise :class:`InputError` with a message that says what to change.

zoomsr's metrics also take ``valid=``: a ``[B, H, W]`` bool mask, True where a pixel is valid
(not nodata) in both images (:func:`check_valid`). PSNR, SSIM and cPSNR then score the valid
pixels only; LPIPS and CLIPScore see both images black outside the mask and give NaN for an
image less than :data:`PERCEPTUAL_MIN_VALID` valid (see ``docs/metrics.md``). An image whose mask
is all True scores as without one, to the bit. A metric without ``valid`` still fits
:class:`Metric`.

Why there is no automatic RGB-vs-BGR detector: colour statistics of aerial imagery (water, shadow,
bare soil, vegetation) overlap so much between the two orders that any heuristic flags real RGB
tiles as BGR. Callers state the order instead (``channel_order``); only ``"rgb"`` is accepted.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch

from zoomsr.errors import InputError
from zoomsr.errors import WeightsNotFoundError as WeightsNotFoundError  # its home before

#: Values this far outside ``[0, 1]`` are tolerated (and clipped): float round-off of SR outputs.
RANGE_TOLERANCE = 1e-3
#: Float data up to this maximum is taken as [0, 1] data that was not clipped (reflectance of
#: bright surfaces, SR overshoot), not as 0-255 data: an 8-bit image whose brightest pixel is 2
#: would be all but black.
UNCLIPPED_MAX = 2.0




@runtime_checkable
class Metric(Protocol):
    """A full-reference image metric: ``metric(pred, target) -> scores [B]``."""

    name: str
    higher_is_better: bool
    # Optional, not part of the protocol (a metric without it is still one): ``bounds``, the
    # values a score can take ``(low, high)``, to which a summary's interval is clipped
    # (:func:`metric_bounds`).

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Score ``pred`` against ``target`` (both ``[B, 3, H, W]`` in [0, 1]); return ``[B]``.
        (zoomsr's metrics take an optional ``valid`` mask too; see the module docstring.)"""
        ...


def metric_bounds(metric: object) -> tuple[float, float] | None:
    """``metric.bounds`` (the values its scores can take), or None where it has none."""
    bounds = getattr(metric, "bounds", None)
    if (isinstance(bounds, tuple) and len(bounds) == 2
            and all(isinstance(b, (int, float)) for b in bounds) and bounds[0] < bounds[1]):
        return float(bounds[0]), float(bounds[1])
    return None


def _describe(x: torch.Tensor) -> str:
    return f"shape {tuple(x.shape)}, dtype {str(x.dtype).replace('torch.', '')}"


def check_images(
    x: torch.Tensor | np.ndarray,
    name: str = "images",
    *,
    channel_order: str = "rgb",
    allow_uint8: bool = True,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Validate a batch of RGB images and return it as float ``[B, 3, H, W]`` in [0, 1].

    Args:
        x: ``[B, 3, H, W]`` tensor or array; float in [0, 1], or uint8 in 0..255.
        name: what to call the input in error messages (``"pred"``, ``"target"``).
        channel_order: the caller's channel order; only ``"rgb"`` is supported.
        allow_uint8: accept uint8 input (converted with ``/ 255``).
        dtype: output dtype; default float32, or float64 for float64 input.

    Raises:
        InputError: on a wrong shape, dtype, channel order, value range or non-finite values.
    """
    order = str(channel_order).lower()
    if order == "bgr":
        raise InputError(
            f"{name}: BGR channel order is not supported; convert to RGB first (x.flip(1) on "
            "[B, 3, H, W]; OpenCV/BasicSR images are BGR)"
        )
    if order != "rgb":
        raise InputError(f"{name}: unknown channel_order {channel_order!r} (expected 'rgb')")
    if isinstance(x, np.ndarray):
        if x.dtype == np.uint16 or x.dtype.kind not in "fub":
            raise InputError(f"{name}: unsupported array dtype {x.dtype}; "
                             "expected float in [0, 1] or uint8")
        # native byte order (torch refuses big-endian data, e.g. from FITS or ">f4" files) and
        # writable (torch warns on read-only arrays: np.broadcast_to, memory maps); copies
        # only where needed
        x = torch.from_numpy(np.require(x, x.dtype.newbyteorder("="), ["C", "W"]))
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor or numpy array, got {type(x).__name__}")
    x = x.detach()  # metrics evaluate; they are not losses
    if x.ndim != 4:
        hint = ""
        if x.ndim == 3 and x.shape[0] == 3:
            hint = " (a single image: add the batch dimension with x[None])"
        elif x.ndim == 3 and x.shape[-1] == 3:
            hint = " (looks like one HWC image: use x.permute(2, 0, 1)[None])"
        raise InputError(f"{name}: expected [B, 3, H, W], got {_describe(x)}{hint}")
    if x.shape[1] != 3:
        hint = ""
        if x.shape[-1] == 3:
            hint = " (looks like channels-last [B, H, W, 3]: use x.permute(0, 3, 1, 2))"
        elif x.shape[1] == 1:  # PSNR, SSIM and cPSNR of 3 equal bands are the band's own
            hint = (" (one band, e.g. NIR: x.expand(-1, 3, -1, -1) scores it with PSNR, SSIM "
                    "and cPSNR exactly; LPIPS and CLIPScore are RGB networks)")
        elif x.shape[1] == 4:
            hint = (" (RGB + NIR: x[:, :3] for the RGB; x[:, 3:].expand(-1, 3, -1, -1) scores "
                    "the NIR band with PSNR, SSIM and cPSNR)")
        raise InputError(f"{name}: expected 3 RGB channels in dim 1, got {_describe(x)}{hint}")
    if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise InputError(f"{name}: empty batch or image, {_describe(x)}")
    if x.dtype == torch.uint8:
        if not allow_uint8:
            raise InputError(f"{name}: uint8 input not accepted here; pass float in [0, 1]")
        return x.to(dtype or torch.float32) / 255.0
    if x.dtype == torch.bool or not x.is_floating_point():
        raise InputError(
            f"{name}: unsupported dtype {str(x.dtype).replace('torch.', '')}; expected float in "
            "[0, 1] or uint8 (16-bit data: divide by its full scale, e.g. 65535, first)"
        )
    x = x.to(dtype or (torch.float64 if x.dtype == torch.float64 else torch.float32))
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        n_bad = int((~finite).sum())
        raise InputError(f"{name}: {n_bad} NaN/inf value(s); mask or fill nodata before scoring")
    lo, hi = float(x.min()), float(x.max())
    if hi > 1.0 + RANGE_TOLERANCE:
        if hi <= UNCLIPPED_MAX + RANGE_TOLERANCE:
            raise InputError(
                f"{name}: values up to {hi:g}: looks like unclipped [0, 1] data (e.g. bright "
                "reflectance or SR overshoot); clip or rescale to [0, 1] first (metrics take RGB "
                "in [0, 1])"
            )
        if hi <= 255.0 + RANGE_TOLERANCE:
            raise InputError(
                f"{name}: values up to {hi:g}: looks like 0-255 data, divide by 255 "
                "(metrics take RGB in [0, 1])"
            )
        raise InputError(
            f"{name}: values up to {hi:g}: looks like 16-bit or reflectance data; scale to [0, 1] "
            "first (e.g. /10000 for Sentinel-2 reflectance)"
        )
    if lo < -RANGE_TOLERANCE:
        raise InputError(
            f"{name}: negative values (min {lo:g}); metrics take [0, 1] "
            "(for [-1, 1] data use (x + 1) / 2)"
        )
    return x.clamp(0.0, 1.0)  # out of place: never modify the caller's tensor


def _torch_dtype(x: object) -> torch.dtype | None:
    """The torch dtype of a tensor or of a uint8 / float array (None for anything else)."""
    if isinstance(x, torch.Tensor):
        return x.dtype
    if isinstance(x, np.ndarray) and x.dtype in (np.uint8, np.float16, np.float32):
        return torch.from_numpy(np.empty(0, x.dtype)).dtype
    return None


def check_pair(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    *,
    channel_order: str = "rgb",
    allow_uint8: bool = True,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check ``pred`` and ``target`` with :func:`check_images` and that their shapes match.

    Of an 8-bit image scored against a float32 (or half-precision) one, ``x / 255`` is taken
    in that precision, as the float one was made: a float32 copy of an 8-bit target scored
    ~160 dB (the rounding of its values to float32), not a perfect match.
    """
    low = (torch.float32, torch.float16, torch.bfloat16)
    p_type, t_type = _torch_dtype(pred), _torch_dtype(target)
    if allow_uint8 and p_type == torch.uint8 and t_type in low:
        pred = torch.as_tensor(pred).to(t_type) / 255.0
    elif allow_uint8 and t_type == torch.uint8 and p_type in low:
        target = torch.as_tensor(target).to(p_type) / 255.0
    p = check_images(pred, "pred", channel_order=channel_order, allow_uint8=allow_uint8,
                     dtype=dtype)
    t = check_images(target, "target", channel_order=channel_order, allow_uint8=allow_uint8,
                     dtype=dtype)
    if p.shape != t.shape:
        raise InputError(
            f"pred and target shapes differ: {tuple(p.shape)} vs {tuple(t.shape)} "
            "(resize or crop the prediction to the target size)"
        )
    return p, t


#: Default smallest share of an image valid in both images (``valid``) for the perceptual
#: metrics (LPIPS, CLIPScore) to score it: they see the whole image, the black masked area
#: included, which pulls the two images' features together (a better score); below it they
#: give NaN (not scored).
PERCEPTUAL_MIN_VALID = 0.5


def check_valid(
    valid: torch.Tensor | np.ndarray | None, shape: torch.Size | tuple[int, ...],
    name: str = "valid", device: torch.device | None = None,
) -> torch.Tensor | None:
    """``valid`` (True where a pixel is valid in both images) as bool ``[B, 1, H, W]`` for
    images of ``shape`` ``[B, C, H, W]``; ``None`` stays ``None``.

    Accepts ``[B, H, W]``, ``[B, 1, H, W]`` or ``[H, W]`` (one mask for every image), bool
    or integer (nonzero: valid), tensor or array; moved to ``device`` if given.

    Raises:
        InputError: a float or other dtype, or a shape that does not match the images.
    """
    if valid is None:
        return None
    if isinstance(valid, np.ndarray):
        if valid.dtype.kind not in "biu":
            raise InputError(f"{name}: unsupported array dtype {valid.dtype}; expected a bool "
                             "mask (True where valid)")
        valid = torch.from_numpy(np.ascontiguousarray(valid))
    if not isinstance(valid, torch.Tensor):
        raise InputError(f"{name}: expected a bool torch.Tensor or numpy array, got "
                         f"{type(valid).__name__}")
    if valid.dtype != torch.bool:
        if valid.is_floating_point() or valid.is_complex():
            raise InputError(f"{name}: {str(valid.dtype).replace('torch.', '')} mask; expected "
                             "bool (True where valid)")
        valid = valid != 0
    b, _, h, w = shape
    given = tuple(valid.shape)
    if valid.ndim == 2 and given == (h, w):
        valid = valid.expand(b, 1, h, w)
    elif valid.ndim == 3:
        valid = valid[:, None]
    if valid.ndim != 4 or tuple(valid.shape) != (b, 1, h, w):
        raise InputError(f"{name}: mask of shape {given} for images of shape {tuple(shape)}; "
                         f"expected [B, H, W] ({b}, {h}, {w}), [B, 1, H, W] or [H, W]")
    return valid.detach() if device is None else valid.detach().to(device)


def partial_rows(valid: torch.Tensor | None) -> torch.Tensor | None:
    """Bool ``[B]``: which images of a ``[B, 1, H, W]`` mask have an invalid pixel (``None``
    when none has: the metric's unmasked computation, unchanged, applies to every image)."""
    if valid is None:
        return None
    partial = (~valid.flatten(1).all(dim=1)).cpu()
    return partial if bool(partial.any()) else None


def black_outside(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``pred`` and ``target`` set to 0 (black) where ``valid`` (``[B, 1, H, W]``) is False:
    the two are equal there, so that area adds no difference, and what it held (fill values,
    the target's content where only the prediction has none) does not change a score."""
    zero = torch.zeros((), dtype=pred.dtype, device=pred.device)
    v = valid.to(pred.device)
    return torch.where(v, pred, zero), torch.where(v, target, zero)


def check_min_valid(value: float, name: str = "min_valid") -> float:
    """Return ``value`` if it is a number in [0, 1], else raise :class:`InputError`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise InputError(f"{name} must be a fraction in [0, 1], got {value!r}")
    return float(value)


def check_border_value(border: int, name: str = "border") -> int:
    """Return ``border`` if it is an int >= 0, else raise :class:`InputError` naming it as
    ``name`` (checked when a metric is built, before any image is read)."""
    if isinstance(border, bool) or not isinstance(border, int) or border < 0:
        raise InputError(f"{name} must be an integer >= 0, got {border!r}")
    return border


def check_border(border: int, height: int, width: int, minimum: int = 1,
                 metric: str = "the metric") -> None:
    """Raise :class:`InputError` unless cropping ``border`` pixels leaves ``minimum`` pixels
    (a side), naming ``metric`` (the API has no CLI prefix saying which metric failed)."""
    check_border_value(border)
    if height - 2 * border < minimum or width - 2 * border < minimum:
        raise InputError(
            f"border {border} leaves less than the {minimum} px {metric} needs of a "
            f"{height}x{width} image"
        )


_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """Map ``None``/``"float32"``/``"bf16"``/``"fp16"`` to a dtype; half precision needs a GPU."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        out = dtype
    else:
        key = str(dtype).lower().replace("torch.", "")
        if key not in _DTYPES:
            raise InputError(f"unknown dtype {dtype!r} (use float32, bfloat16 or float16)")
        out = _DTYPES[key]
    if out not in (torch.float32, torch.bfloat16, torch.float16):
        raise InputError(f"unsupported dtype {out} (use float32, bfloat16 or float16)")
    if out != torch.float32 and device.type != "cuda":
        raise InputError(f"{str(out).replace('torch.', '')} is only supported on a GPU; "
                         "use float32 on CPU")
    return out


def check_batch_size(batch_size: int, name: str = "batch_size") -> int:
    """Return ``batch_size`` if it is an int >= 1, else raise :class:`InputError` naming it
    as ``name``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"{name} must be an integer >= 1, got {batch_size!r}")
    return batch_size
