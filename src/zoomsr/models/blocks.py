"""Building blocks of the WorldStrat SRCNN and HighRes-net variants.

Module and attribute names follow the published WorldStrat / satlas-super-resolution checkpoints
(``doubleconv2d.0.weight``, ``fuse.1.weight``, ``upsample.4.bias``...), so do not rename them:
a ``state_dict`` key is the path of attribute names and ``nn.Sequential`` indices.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoomsr.errors import InputError


def check_float_input(model: str, x: Tensor) -> None:
    """Raise :class:`InputError` unless ``x`` holds floats (a uint8 TCI stack gave torch's
    "Input type (unsigned char) and bias type (float) should be the same")."""
    if not x.is_floating_point():
        dtype = str(x.dtype).replace("torch.", "")
        raise InputError(f"{model} takes floats in [0, 1], got {dtype} values"
                         + (" (8-bit TCI: x.float() / 255)" if x.dtype == torch.uint8 else ""))


def _conv_same(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    # WorldStrat pads with reflection so that borders are not darkened by zero padding.
    return nn.Conv2d(
        in_channels, out_channels, kernel_size, padding="same", padding_mode="reflect", bias=True
    )


class DoubleConv2d(nn.Module):
    """Two ``conv -> PReLU -> dropout(0.5)`` layers, ``[N, in, H, W] -> [N, out, H, W]``.

    The ``nn.Identity`` slots hold the place of the optional batch norm of WorldStrat (never
    used by the published models); they keep the ``Sequential`` indices of the checkpoints.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.doubleconv2d = nn.Sequential(
            _conv_same(in_channels, out_channels, kernel_size),
            nn.Identity(),
            nn.PReLU(),
            nn.Dropout(p=0.5),
            _conv_same(out_channels, out_channels, kernel_size),
            nn.Identity(),
            nn.PReLU(),
            nn.Dropout(p=0.5),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.doubleconv2d(x)


class ResidualBlock(nn.Module):
    """``x + DoubleConv2d(x)``, ``[N, C, H, W] -> [N, C, H, W]``."""

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.residualblock = DoubleConv2d(channels, channels, kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.residualblock(x)


class FusionBlock(nn.Module):
    """Fuses the first half of the frames with the second half, pairwise.

    ``[B, T, C, H, W] -> [B, T/2, C, H, W]``: frame ``i`` is concatenated on the channel axis with
    frame ``i + T/2`` and reduced back to ``C`` channels.
    """

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.fuse = nn.Sequential(
            ResidualBlock(2 * channels, kernel_size),
            _conv_same(2 * channels, channels, kernel_size),
            nn.Identity(),
            nn.PReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        batch, frames, channels, height, width = x.shape
        half = frames // 2
        pairs = torch.cat([x[:, :half], x[:, half:]], dim=2)
        fused = self.fuse(pairs.reshape(batch * half, 2 * channels, height, width))
        return fused.reshape(batch, half, channels, height, width)


class RecursiveFusion(nn.Module):
    """HighRes-net's recursive fusion: ``[B, T, C, H, W] -> [B, C, H, W]``.

    One ``FusionBlock`` is shared by every level (it appears ``levels`` times in the state dict,
    as in the published checkpoints). ``T`` is zero-padded to the next power of two and halved
    until one frame is left, so any ``T`` works, not only the configured number of revisits.
    """

    def __init__(self, channels: int, kernel_size: int, revisits: int) -> None:
        super().__init__()
        levels = (revisits - 1).bit_length()  # ceil(log2(revisits))
        block = FusionBlock(channels, kernel_size)
        self.fusion = nn.Sequential(*(block for _ in range(levels)))

    @staticmethod
    def pad(x: Tensor) -> Tensor:
        """Append black frames so that ``T`` is a power of two."""
        frames = x.shape[1]
        target = 1 << (frames - 1).bit_length()
        if target == frames:
            return x
        padding = x.new_zeros((x.shape[0], target - frames, *x.shape[2:]))
        return torch.cat([x, padding], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pad(x)
        if x.shape[1] > 1:
            if len(self.fusion) == 0:
                raise InputError(
                    f"this HighRes-net was built for 1 revisit and cannot fuse {x.shape[1]} frames"
                )
            block = self.fusion[0]
            while x.shape[1] > 1:
                x = block(x)
        return x[:, 0]


class PixelShuffleBlock(nn.Module):
    """Pixel-shuffle decoder: ``[N, C, H, W] -> [N, out, H*zoom, W*zoom]``.

    ``C`` must be divisible by ``zoom**2``; the two convolutions work on ``C / zoom**2`` channels.
    """

    def __init__(
        self, in_channels: int, out_channels: int, sr_kernel_size: int, zoom_factor: int
    ) -> None:
        super().__init__()
        shuffled = in_channels // zoom_factor**2
        self.upsample = nn.Sequential(
            nn.PixelShuffle(zoom_factor),
            _conv_same(shuffled, shuffled, sr_kernel_size),
            nn.Identity(),
            nn.PReLU(),
            _conv_same(shuffled, out_channels, sr_kernel_size),
            nn.Identity(),
            nn.PReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.upsample(x)
