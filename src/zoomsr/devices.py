"""Which torch device a command or API call runs on (one check for every command)."""

from __future__ import annotations

import torch

from zoomsr.errors import InputError


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def resolve_device(device: str | torch.device | None = "auto", *,
                   mps: bool = True, option: str = "device") -> torch.device:
    """``"auto"``/``None`` -> CUDA, else MPS (when ``mps``), else CPU; otherwise the named
    device, which must be one zoomsr runs on (``cpu``, ``cuda``, ``cuda:N``, and ``mps`` when
    ``mps``: the metrics' float64 scores have no MPS kernels) and be there (a GPU index within
    the count, MPS available): one-line :class:`InputError` naming it if not. ``option`` is
    what the message calls the setting (the CLI passes ``"--device"``)."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps and _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    names = "auto, cpu, cuda, cuda:N or mps" if mps else "auto, cpu, cuda or cuda:N"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is not None and dev.type == "mps" and not mps:
        raise InputError(f"{option} {device}: these scores are float64, which MPS lacks; use "
                         "cpu or cuda")
    if dev is None or dev.type not in ("cpu", "cuda", "mps") or (
            dev.type == "cpu" and dev.index is not None) or (dev.type == "mps" and dev.index):
        raise InputError(f"{option} must be {names}, got {str(device)!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"{option} {device}: no CUDA GPU is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"{option} {device}: only {torch.cuda.device_count()} CUDA GPU(s)")
    if dev.type == "mps" and not _mps_available():
        raise InputError(f"{option} {device}: no MPS device is available")
    return dev
