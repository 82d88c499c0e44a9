"""The few operations the strip preparation needs, for NumPy arrays and torch tensors alike.

Validity, scaling, frame scores and gap filling are written once against these, and run with
NumPy (S2-NAIP chunks, tests) or with torch on the model's device (scene rows: on a GPU the
file values travel there in their own dtype and every float operation runs there).
"""

from __future__ import annotations

import math
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
    if x.dtype != travel_dtype(x.dtype):
        x = x.astype(travel_dtype(x.dtype))
    if not x.flags.writeable:  # torch.from_numpy warns on read-only memory (it may be written)
        x = x.copy()
    wide = x.dtype == np.uint16
    t = torch.from_numpy(x.view(np.int16) if wide else x)
    t = t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)
    return _widened(t) if wide else t


def _widened(bits: torch.Tensor) -> torch.Tensor:
    """uint16 values that travelled as int16 bits (torch's uint16 support is limited), as
    int32 on their device."""
    return bits.to(torch.int32) & 0xFFFF


def travel_dtype(dtype: Any) -> np.dtype:
    """The dtype values of ``dtype`` go to a device in: their own, but float64 as float32,
    uint32 as int64 and uint64 as float32 (on the host; see :func:`to_tensor`)."""
    d = np.dtype(dtype)
    return np.dtype(_ON_HOST.get(d, d))


def staging_buffer(nbytes: int, device: torch.device) -> torch.Tensor:
    """A uint8 host buffer of ``nbytes`` to fill and send to ``device`` in one copy: pinned
    (from torch's pool) for a CUDA device, so the copy does not wait for the GPU's queue."""
    return torch.empty(nbytes, dtype=torch.uint8, pin_memory=device.type == "cuda")


def send(buffer: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``buffer`` (a :func:`staging_buffer`) on ``device``: asynchronously to a GPU (the pool
    does not hand the pinned block out again before the copy is done); on the CPU, itself."""
    return buffer.to(device, non_blocking=device.type == "cuda")


def from_bytes(buffer: torch.Tensor, offset: int, dtype: Any, shape: tuple[int, ...]
               ) -> torch.Tensor:
    """The array of NumPy ``dtype`` and ``shape`` at byte ``offset`` (a multiple of 8) of the
    uint8 tensor ``buffer``, as a tensor on its device; uint16 (limited support in torch)
    comes as int32, read through int16 bits as :func:`to_tensor` does."""
    d = np.dtype(dtype)
    wide = d == np.uint16
    t_dtype = torch.from_numpy(np.empty(0, np.int16 if wide else d)).dtype
    n = math.prod(shape) * d.itemsize
    t = buffer[offset : offset + n].view(t_dtype).reshape(shape)
    return _widened(t) if wide else t


def byte_offsets(sizes: list[int]) -> tuple[list[int], int]:
    """Offsets of arrays of ``sizes`` bytes laid out one after another in one buffer, each
    8-byte aligned (so views of any dtype there are aligned), and the buffer's size."""
    offsets, total = [], 0
    for n in sizes:
        offsets.append(total)
        total += -(-n // 8) * 8
    return offsets, total


def pack(tensors: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """``tensors`` (one device; dtypes NumPy has) as one uint8 buffer there, and each one's
    byte offset (8-byte aligned, so the views :func:`unpack` makes are aligned)."""
    offsets, size = byte_offsets([x.numel() * x.element_size() for x in tensors])
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
