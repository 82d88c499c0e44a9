"""The few operations the strip preparation needs, for NumPy arrays and torch tensors alike.

Validity, scaling, frame scores and gap filling are written once against these, and run with
NumPy (S2-NAIP chunks, tests) or with torch on the model's device (scene rows: on a GPU the
file values travel there in their own dtype and every float operation runs there).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import torch

Array = Any  # np.ndarray | torch.Tensor

#: dtypes converted on the host before they travel (devices lack them, or torch does).
_ON_HOST = {np.dtype(np.float64): np.float32, np.dtype(np.uint32): np.int64,
            np.dtype(np.uint64): np.float32}


def xp(x: Array) -> ModuleType:
    """The namespace of ``x``: ``torch`` for tensors, else ``numpy``."""
    return torch if isinstance(x, torch.Tensor) else np


def float32(x: Array) -> Array:
    """``x`` as float32 (no copy when it already is)."""
    if isinstance(x, torch.Tensor):
        return x.to(torch.float32)
    return np.asarray(x).astype(np.float32, copy=False)


def is_floating(x: Array) -> bool:
    """Whether ``x`` holds floating-point values."""
    if isinstance(x, torch.Tensor):
        return x.is_floating_point()
    return bool(np.issubdtype(np.asarray(x).dtype, np.floating))


def to_tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """``x`` on ``device`` in its own dtype (uint8 stays 1 byte a value on the way).

    uint16 (limited support in torch) travels as int16 bits and is widened on the device;
    float64 becomes float32 and uint32 int64 on the host (Apple GPUs have no float64; values
    are scaled in float32 anyway). To a GPU the copy goes through pinned memory, so it does
    not wait for the GPU's queue.
    """
    x = np.ascontiguousarray(x)
    if x.dtype in _ON_HOST:
        x = x.astype(_ON_HOST[x.dtype])
    if not x.flags.writeable:  # torch.from_numpy warns on read-only memory (it may be written)
        x = x.copy()
    wide = x.dtype == np.uint16
    t = torch.from_numpy(x.view(np.int16) if wide else x)
    t = t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)
    return t.to(torch.int32) & 0xFFFF if wide else t
