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


def pack(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """``tensors`` (one device; dtypes NumPy has) as one uint8 buffer there, and each one's
    byte offset (8-byte aligned, so the views :func:`unpack` makes are aligned)."""
    offsets, size = [], 0
    for x in tensors:
        offsets.append(size)
        size += -(-x.numel() * x.element_size() // 8) * 8
    device = tensors[0].device if tensors else torch.device("cpu")
    buffer = torch.empty(size, dtype=torch.uint8, device=device)
    for x, off in zip(tensors, offsets, strict=True):
        n = x.numel() * x.element_size()
        buffer[off : off + n] = x.detach().contiguous().reshape(-1).view(torch.uint8)
    return buffer, offsets


def unpack(host: np.ndarray, offsets: list[int], tensors: list[torch.Tensor]
           ) -> list[np.ndarray]:
    """The arrays in ``host`` (a :func:`pack` buffer on the host), shaped as ``tensors``."""
    out = []
    for x, off in zip(tensors, offsets, strict=True):
        dtype = torch.empty(0, dtype=x.dtype).numpy().dtype
        out.append(host[off : off + x.numel() * dtype.itemsize].view(dtype)
                   .reshape(tuple(x.shape)))
    return out


def _far(x: Array) -> bool:
    """Whether ``x`` is a tensor off the CPU (packed by :func:`to_host`)."""
    return isinstance(x, torch.Tensor) and x.device.type != "cpu"


def to_host(*xs: Array) -> list[np.ndarray]:
    """NumPy copies of ``xs`` (tensors on any device, NumPy arrays, Python numbers).

    Tensors on an accelerator come back in **one** transfer, packed as bytes into one buffer
    there: each transfer from a GPU waits for everything queued on its stream, other threads'
    model calls included, so a row that made several would wait several times.
    """
    out: list[Any] = []
    far: list[int] = []
    for i, x in enumerate(xs):
        if _far(x):
            far.append(i)
            out.append(None)
        else:
            out.append(x.numpy().copy() if isinstance(x, torch.Tensor) else np.array(x))
    if far:
        tensors = [xs[i] for i in far]
        if len({x.device for x in tensors}) > 1:
            raise ValueError(f"to_host: tensors on {sorted({str(x.device) for x in tensors})}")
        buffer, offsets = pack(tensors)
        for i, a in zip(far, unpack(buffer.cpu().numpy(), offsets, tensors), strict=True):
            out[i] = a
    return out
