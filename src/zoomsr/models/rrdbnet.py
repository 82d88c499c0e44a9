"""ESRGAN generator (RRDBNet) taking ``T`` stacked Sentinel-2 images.

Parameter names match BasicSR / satlas-super-resolution checkpoints (``conv_first``,
``body.{i}.rdb{1,2,3}.conv{1..5}``, ``conv_body``, ``conv_up{1..4}``, ``conv_hr``,
``conv_last``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoomsr.errors import InputError
from zoomsr.models.blocks import check_float_input
from zoomsr.validate import check_int

# scale -> (pixel-unshuffle factor applied to the input, the nearest upsamples' factors, each
# followed by conv_up{i}). Scales 1 and 2 shrink the input first and keep the x4 trunk, as the
# reference does. Scale 3 (OLI2MSI, PROBA-V) is zoomsr's: one nearest x3 and conv_up1 (the
# reference's RRDBNet, given scale 3, upsampled x4); no published checkpoint has it.
_SCALES = {1: (4, (2, 2)), 2: (2, (2, 2)), 3: (1, (3,)), 4: (1, (2, 2)), 8: (1, (2, 2, 2)),
           16: (1, (2, 2, 2, 2))}


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, 1, 1)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; ``x + 0.2 * conv5(...)``, ``[N, F, H, W]`` in and out."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(num_feat, num_grow_ch)
        self.conv2 = _conv3x3(num_feat + num_grow_ch, num_grow_ch)
        self.conv3 = _conv3x3(num_feat + 2 * num_grow_ch, num_grow_ch)
        self.conv4 = _conv3x3(num_feat + 3 * num_grow_ch, num_grow_ch)
        self.conv5 = _conv3x3(num_feat + 4 * num_grow_ch, num_feat)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        # ESRGAN scales the initial weights down by 10 so the deep residual trunk starts near
        # the identity.
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            nn.init.kaiming_normal_(conv.weight)
            with torch.no_grad():
                conv.weight.mul_(0.1)
            nn.init.zeros_(cast(Tensor, conv.bias))  # (made with a bias)

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x + 0.2 * x5


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks and a 0.2-scaled skip."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: Tensor) -> Tensor:
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """ESRGAN generator: ``[B, T*C, H, W] -> [B, num_out_ch, H*scale, W*scale]``.

    ``num_in_ch`` is ``T * C`` (e.g. 24 for 8 RGB images), frames stacked frame-major on the
    channel axis (see :func:`zoomsr.layout.frames_to_channels`). Values in [0, 1]; the
    output is not clamped. ``scale`` is 1, 2, 3, 4, 8 or 16 (3: one nearest x3 upsample, a
    zoomsr extension); for scales 1 and 2, ``H`` and ``W``
    must be divisible by 4 and 2 (the input is pixel-unshuffled first); any size otherwise.
    """

    name = "rrdbnet"
    description = "ESRGAN generator (RRDBNet) on T stacked images"
    input_layout = "[B, T*C, H, W]"
    output_layout = "[B, C_out, H*scale, W*scale]"

    def __init__(
        self,
        num_in_ch: int = 24,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ) -> None:
        super().__init__()
        check_int("num_in_ch", num_in_ch, minimum=1)
        check_int("num_out_ch", num_out_ch, minimum=1)
        check_int("scale", scale, choices=_SCALES)
        check_int("num_feat", num_feat, minimum=1)
        check_int("num_block", num_block, minimum=0)
        check_int("num_grow_ch", num_grow_ch, minimum=1)
        self.config = {
            "num_in_ch": num_in_ch,
            "num_out_ch": num_out_ch,
            "scale": scale,
            "num_feat": num_feat,
            "num_block": num_block,
            "num_grow_ch": num_grow_ch,
        }
        self.num_in_ch = num_in_ch
        self.scale = scale
        self.unshuffle, self.upsample_factors = _SCALES[scale]

        self.conv_first = _conv3x3(num_in_ch * self.unshuffle**2, num_feat)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = _conv3x3(num_feat, num_feat)
        for index in range(1, len(self.upsample_factors) + 1):
            self.add_module(f"conv_up{index}", _conv3x3(num_feat, num_feat))
        self.conv_hr = _conv3x3(num_feat, num_feat)
        self.conv_last = _conv3x3(num_feat, num_out_ch)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def example_inputs(self, lr_size: int = 32) -> tuple[Tensor, ...]:
        """A zero input for one ``lr_size`` x ``lr_size`` chunk (used to count FLOPs)."""
        return (torch.zeros(1, self.num_in_ch, lr_size, lr_size),)

    def forward(self, x: Tensor) -> Tensor:
        """Super-resolve ``[B, T*C, H, W]`` to ``[B, C_out, H*scale, W*scale]``."""
        check_float_input("RRDBNet", x)
        if x.ndim != 4 or x.shape[1] != self.num_in_ch:
            hint = (" (frames as [B, T, C, H, W]? stack them with "
                    "zoomsr.models.frames_to_channels(x))" if x.ndim == 5 else "")
            raise InputError(
                f"RRDBNet expects [B, {self.num_in_ch}, H, W] (num_in_ch = images x bands), "
                f"got {list(x.shape)}{hint}"
            )
        if self.unshuffle > 1:
            height, width = x.shape[-2:]
            if height % self.unshuffle or width % self.unshuffle:
                raise InputError(
                    f"RRDBNet with scale={self.scale} needs H and W divisible by "
                    f"{self.unshuffle}, got {height}x{width}"
                )
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for index, factor in enumerate(self.upsample_factors, 1):
            conv = getattr(self, f"conv_up{index}")
            feat = self.lrelu(conv(F.interpolate(feat, scale_factor=factor, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


#: conv_up count -> scale (2 convs: 4; scales 2 and 1 have the same tensors: see below)
_SCALE_OF_UPS = {1: 3, 2: 4, 3: 8, 4: 16}
_BLOCK = re.compile(r"^body\.(\d+)\.")
_UP = re.compile(r"^conv_up(\d+)\.weight$")


def config_from_state_dict(state: Mapping[str, Tensor]) -> dict[str, Any] | None:
    """The :class:`RRDBNet` config whose tensors ``state`` holds (keys without a prefix, as
    BasicSR and the published checkpoints name them), or None when they are not an
    RRDBNet's. Two upsampling convs are taken for ``scale`` 4: a scale 2 or 1 model (its
    input pixel-unshuffled) has the same tensors, with ``num_in_ch`` 4 or 16 times smaller,
    and needs ``scale`` given."""
    parts = ("conv_first.weight", "conv_body.weight", "conv_hr.weight", "conv_last.weight")
    if not all(k in state and getattr(state[k], "ndim", 0) == 4 for k in parts):
        return None
    blocks = {int(m.group(1)) for k in state if (m := _BLOCK.match(k))}
    ups = {int(m.group(1)) for k in state if (m := _UP.match(k))}
    if blocks != set(range(len(blocks))) or ups != set(range(1, len(ups) + 1)) \
            or len(ups) not in _SCALE_OF_UPS:
        return None
    first, last = state["conv_first.weight"], state["conv_last.weight"]
    grow = state.get("body.0.rdb1.conv1.weight")
    return {
        "num_in_ch": int(first.shape[1]),
        "num_out_ch": int(last.shape[0]),
        "scale": _SCALE_OF_UPS[len(ups)],
        "num_feat": int(first.shape[0]),
        "num_block": len(blocks),
        # (no block: any width loads; the default's)
        "num_grow_ch": int(grow.shape[0]) if grow is not None else 32,
    }


def rescaled_config(inferred: Mapping[str, Any], scale: int) -> dict[str, Any]:
    """:func:`config_from_state_dict`'s config (read as x4) for a model of ``scale``: a scale
    1 or 2 model's ``conv_first`` takes ``num_in_ch`` times 16 or 4 channels (its input
    pixel-unshuffled), so ``num_in_ch`` is that many times smaller."""
    unshuffle = _SCALES[scale][0] if scale in _SCALES else 1
    channels = int(inferred["num_in_ch"])
    if channels % unshuffle**2 == 0:
        channels //= unshuffle**2
    return {**inferred, "scale": scale, "num_in_ch": channels}
