"""The one place where time-series tensors change layout.

``frames``: ``[..., T, C, H, W]`` (SRCNN, HighRes-net); ``stacked``: ``[..., T*C, H, W]``
(RRDBNet/ESRGAN, SR3), frame-major: channels ``t0c0, t0c1, ..., t1c0, ...`` as the reference
stacks its inputs.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from zoomsr.errors import ConfigError, InputError

Layout = Literal["stacked", "frames"]


def frames_to_channels(x: Tensor) -> Tensor:
    """``[B, T, C, H, W] -> [B, T*C, H, W]`` (also ``[T, C, H, W] -> [T*C, H, W]``)."""
    if x.ndim not in (4, 5):
        raise InputError(f"expected [B, T, C, H, W] or [T, C, H, W], got {list(x.shape)}")
    return x.flatten(-4, -3)


def channels_to_frames(x: Tensor, channels: int) -> Tensor:
    """``[B, T*C, H, W] -> [B, T, C, H, W]`` for ``C = channels`` per frame."""
    if x.ndim != 4 or x.shape[1] % channels:
        raise InputError(f"expected [B, T*{channels}, H, W], got {list(x.shape)}")
    batch, stacked, height, width = x.shape
    return x.reshape(batch, stacked // channels, channels, height, width)


def to_layout(lr: Tensor, layout: Layout) -> Tensor:
    """Turn ``[(B,) T, C, H, W]`` into the named model layout."""
    if layout == "frames":
        return lr
    if layout == "stacked":
        return frames_to_channels(lr)
    raise ConfigError(f"layout must be 'stacked' or 'frames', got {layout!r}")
