"""SRCNN, WorldStrat variant: frames encoded separately, fused as channels, pixel-shuffle decoder.

Parameter names match the WorldStrat / satlas-super-resolution checkpoints (``encoder.*``,
``mask_encoder.*``, ``doubleconv2d.*``, ``residualblocks.*``, ``fusion.*``, ``sr.*``).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoomsr.errors import ConfigError, InputError, ZoomsrWarning
from zoomsr.models.blocks import (
    DoubleConv2d,
    PixelShuffleBlock,
    ResidualBlock,
    check_float_input,
)
from zoomsr.validate import check_bool, check_int


class SRCNN(nn.Module):
    """Multi-frame SRCNN (WorldStrat): ``[B, T, C, H, W] -> [B, 1, out_channels, H', W']``.

    Each frame goes through a shared ``DoubleConv2d`` encoder; the ``T`` encodings are stacked
    on the channel axis (frame-major), fused by a ``DoubleConv2d`` plus ``residual_layers``
    residual blocks, and decoded by a pixel shuffle to ``H' = H * zoom_factor`` (same for W).
    When ``output_size`` is set (the published configs use 128) and differs, the output is
    resized (bilinear, antialiased) so that its short side is ``output_size``, as the reference
    does; the default ``None`` never resizes, so any input size works (from 2 x 2 px with
    the published 3 x 3 kernels).
    Inputs and outputs are reflectances in [0, 1]; the output is not clamped.

    ``T`` must equal ``revisits`` because the fusion convolution has ``T * hidden_channels``
    inputs. ``mask_encoder`` is not used by ``forward`` (WorldStrat's masks were never wired in
    consistently); it is kept, frozen, so the published checkpoints load strictly.
    """

    name = "srcnn"
    description = "SRCNN (WorldStrat variant): per-frame encoder, channel fusion, pixel shuffle"
    input_layout = "[B, T, C, H, W]"
    output_layout = "[B, 1, C_out, H*zoom, W*zoom] (short side output_size when set)"

    def __init__(
        self,
        in_channels: int = 3,
        mask_channels: int = 0,
        revisits: int = 8,
        hidden_channels: int = 128,
        out_channels: int = 3,
        kernel_size: int = 3,
        residual_layers: int = 1,
        output_size: int | None = None,
        zoom_factor: int = 4,
        sr_kernel_size: int = 1,
        use_reference_frame: bool = False,
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels, minimum=1)
        check_int("mask_channels", mask_channels, minimum=0)
        check_int("revisits", revisits, minimum=1)
        check_int("hidden_channels", hidden_channels, minimum=1)
        check_int("out_channels", out_channels, minimum=1)
        check_int("kernel_size", kernel_size, minimum=1)
        check_int("residual_layers", residual_layers, minimum=0)
        if output_size is not None:
            check_int("output_size", output_size, minimum=1)
        check_int("zoom_factor", zoom_factor, minimum=1)
        check_int("sr_kernel_size", sr_kernel_size, minimum=1)
        check_bool("use_reference_frame", use_reference_frame)
        if hidden_channels % zoom_factor**2:
            raise ConfigError(
                f"hidden_channels ({hidden_channels}) must be divisible by zoom_factor**2 "
                f"({zoom_factor**2}) for the pixel shuffle"
            )
        self.config: dict[str, Any] = {
            "in_channels": in_channels,
            "mask_channels": mask_channels,
            "revisits": revisits,
            "hidden_channels": hidden_channels,
            "out_channels": out_channels,
            "kernel_size": kernel_size,
            "residual_layers": residual_layers,
            "output_size": output_size,
            "zoom_factor": zoom_factor,
            "sr_kernel_size": sr_kernel_size,
            "use_reference_frame": use_reference_frame,
        }
        self.in_channels = in_channels
        self.revisits = revisits
        self.hidden_channels = hidden_channels
        self.output_size = output_size
        self._resize_said: set[tuple[int, int]] = set()  # input sizes warned of
        self.zoom_factor = zoom_factor
        self.use_reference_frame = use_reference_frame
        encoder_in = 2 * in_channels if use_reference_frame else in_channels

        self.encoder = DoubleConv2d(encoder_in, hidden_channels, kernel_size)
        with warnings.catch_warnings():
            # mask_channels=0 (the published configs) gives an empty weight; torch warns on it.
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            self.mask_encoder = nn.Sequential(
                nn.Identity(),  # was a one-hot encoder (no parameters) in WorldStrat
                DoubleConv2d(mask_channels, 1, 3),
                nn.Sigmoid(),
            )
        self.mask_encoder.requires_grad_(False)
        self.doubleconv2d = DoubleConv2d(hidden_channels * revisits, hidden_channels, kernel_size)
        self.residualblocks = nn.Sequential(
            *(ResidualBlock(hidden_channels, kernel_size) for _ in range(residual_layers))
        )
        # The same modules again under ``fusion``: the checkpoints hold both names.
        self.fusion: nn.Module = nn.Sequential(self.doubleconv2d, self.residualblocks)
        self.sr = PixelShuffleBlock(hidden_channels, out_channels, sr_kernel_size, zoom_factor)

    def example_inputs(self, lr_size: int = 32) -> tuple[Tensor, ...]:
        """A zero input for one ``lr_size`` x ``lr_size`` chunk (used to count FLOPs)."""
        return (torch.zeros(1, self.revisits, self.in_channels, lr_size, lr_size),)

    def _frames(self) -> str:
        """The number of frames ``forward`` takes, for error messages."""
        return str(self.revisits)

    def _check_input(self, x: Tensor) -> None:
        check_float_input(type(self).__name__, x)
        if x.ndim != 5 or x.shape[2] != self.in_channels:
            hint = (f" (frames stacked on the channel axis? split them with "
                    f"zoomsr.models.channels_to_frames(x, {self.in_channels}))"
                    if x.ndim == 4 else "")
            raise InputError(
                f"{type(self).__name__} expects [B, {self._frames()}, {self.in_channels}, H, W], "
                f"got {list(x.shape)}{hint}"
            )
        # reflection padding needs more pixels than it pads: torch's error named no size
        smallest = 1 + max((m.kernel_size[0] // 2 for m in self.modules()
                            if isinstance(m, nn.Conv2d) and m.padding_mode == "reflect"),
                           default=0)
        if min(x.shape[-2:]) < smallest:
            raise InputError(f"{type(self).__name__} needs inputs of at least {smallest} x "
                             f"{smallest} px, got {x.shape[-2]} x {x.shape[-1]}")

    def _encode(self, x: Tensor) -> Tensor:
        """``[B, T, C, H, W] -> [B, T, hidden, H, W]``, one shared encoder per frame."""
        if self.use_reference_frame:
            # The per-pixel median frame gives every frame a common reference to compare with.
            reference = x.median(dim=1, keepdim=True).values.expand_as(x)
            x = torch.cat([x, reference], dim=2)
        batch, frames, channels, height, width = x.shape
        encoded = self.encoder(x.reshape(batch * frames, channels, height, width))
        return encoded.reshape(batch, frames, self.hidden_channels, height, width)

    def _resize(self, x: Tensor) -> Tensor:
        if self.output_size is None:
            return x
        height, width = x.shape[-2:]
        # Match the short side to output_size and keep the aspect ratio (kornia's convention).
        if height <= width:
            size = (self.output_size, int(self.output_size * width / height))
        else:
            size = (int(self.output_size * height / width), self.output_size)
        if size == (height, width):
            return x
        if (height, width) not in self._resize_said:  # the scale changes: said once a size
            self._resize_said.add((height, width))
            warnings.warn(
                f"{type(self).__name__}: output resized from {height}x{width} to {size[0]}x"
                f"{size[1]} px (output_size={self.output_size}, as the reference does): not "
                f"x{self.zoom_factor} of this input; build it with output_size=None for that",
                ZoomsrWarning, stacklevel=3)
        if x.dtype in (torch.float16, torch.bfloat16):
            # torch's antialiased resize has no half-precision CPU kernel: resize in float32
            resized = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False,
                                    antialias=True)
            return resized.to(x.dtype)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)

    def forward(self, x: Tensor) -> Tensor:
        """Super-resolve ``[B, T, C, H, W]`` (T == revisits) to ``[B, 1, C_out, H', W']``."""
        self._check_input(x)
        if x.shape[1] != self.revisits:
            raise InputError(
                f"SRCNN was built for revisits={self.revisits} frames, got T={x.shape[1]}"
            )
        encoded = self._encode(x)
        batch, frames, hidden, height, width = encoded.shape
        fused = self.fusion(encoded.reshape(batch, frames * hidden, height, width))
        return self._resize(self.sr(fused))[:, None]
