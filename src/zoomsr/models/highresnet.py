"""HighRes-net, WorldStrat variant: per-frame encoder, recursive pairwise fusion, pixel shuffle."""

from __future__ import annotations

from torch import Tensor

from zoomsr.models.blocks import RecursiveFusion
from zoomsr.models.srcnn import SRCNN


class HighResNet(SRCNN):
    """Multi-frame HighRes-net (WorldStrat): ``[B, T, C, H, W] -> [B, 1, C_out, H*z, W*z]``.

    Each frame is encoded by a shared ``DoubleConv2d``; a single ``FusionBlock`` is applied
    recursively, halving the number of frames each time (zero frames pad ``T`` to a power of
    two), and a pixel shuffle decodes the fused encoding. Any ``T >= 1`` works.

    Same constructor as :class:`SRCNN`. Like the reference, HighRes-net never resizes, so
    ``output_size`` is only recorded. ``doubleconv2d``, ``residualblocks`` and ``mask_encoder``
    are inherited from the reference's SRCNN base but unused; they stay, frozen, so published
    checkpoints load strictly.
    """

    name = "highresnet"
    description = "HighRes-net (WorldStrat variant): recursive pairwise fusion, pixel shuffle"
    input_layout = "[B, T, C, H, W]"
    output_layout = "[B, 1, C_out, H*zoom, W*zoom]"

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
        super().__init__(
            in_channels=in_channels,
            mask_channels=mask_channels,
            revisits=revisits,
            hidden_channels=hidden_channels,
            out_channels=out_channels,
            kernel_size=kernel_size,
            residual_layers=residual_layers,
            output_size=output_size,
            zoom_factor=zoom_factor,
            sr_kernel_size=sr_kernel_size,
            use_reference_frame=use_reference_frame,
        )
        self.doubleconv2d.requires_grad_(False)
        self.residualblocks.requires_grad_(False)
        # Replaces SRCNN's fusion in place, which keeps the checkpoint's key order.
        self.fusion = RecursiveFusion(
            self.hidden_channels, self.config["kernel_size"], self.revisits
        )

    def _frames(self) -> str:
        return "T"  # any number

    def forward(self, x: Tensor) -> Tensor:
        """Super-resolve ``[B, T, C, H, W]`` (any T) to ``[B, 1, C_out, H*z, W*z]``."""
        self._check_input(x)
        return self.sr(self.fusion(self._encode(x)))[:, None]
