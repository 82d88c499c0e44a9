"""U-Net discriminator with spectral normalisation (Real-ESRGAN), as used by the reference.

Parameter names match the published checkpoints: ``conv0``, ``conv9`` plain; ``conv1``..``conv8``
spectral-normalised with ``torch.nn.utils.spectral_norm`` (``weight_orig``, ``weight_u``,
``weight_v``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import spectral_norm

from zoomsr.errors import InputError
from zoomsr.validate import check_bool, check_int


def _lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, negative_slope=0.2)


def _up2(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class UNetDiscriminatorSN(nn.Module):
    """Per-pixel real/fake logits: ``[B, num_in_ch, H, W] -> [B, 1, H, W]``, H, W divisible by 8.

    Three strided 4x4 convs go down to 1/8, three bilinear x2 upsamples with 3x3 convs come
    back, with additive skips when ``skip_connection``; two more 3x3 convs and a 1-channel head.
    ``num_in_ch`` is 3 for an RGB image, ``3 + T*3`` when the LR stack is fed as well.
    In training mode each forward runs one power iteration of the spectral norm (updating
    ``weight_u``/``weight_v``); ``eval()`` uses the stored vectors, as the golden outputs do.
    """

    name = "unet_discriminator_sn"
    description = "U-Net discriminator with spectral norm (Real-ESRGAN), per-pixel logits"
    input_layout = "[B, C, H, W]"
    output_layout = "[B, 1, H, W]"

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True):
        super().__init__()
        check_int("num_in_ch", num_in_ch, minimum=1)
        check_int("num_feat", num_feat, minimum=1)
        check_bool("skip_connection", skip_connection)
        self.config = {
            "num_in_ch": num_in_ch,
            "num_feat": num_feat,
            "skip_connection": skip_connection,
        }
        self.num_in_ch = num_in_ch
        self.skip_connection = skip_connection
        f = num_feat

        def sn_conv(cin: int, cout: int, kernel: int, stride: int) -> nn.Module:
            return spectral_norm(nn.Conv2d(cin, cout, kernel, stride, 1, bias=False))

        self.conv0 = nn.Conv2d(num_in_ch, f, 3, 1, 1)
        self.conv1 = sn_conv(f, 2 * f, 4, 2)
        self.conv2 = sn_conv(2 * f, 4 * f, 4, 2)
        self.conv3 = sn_conv(4 * f, 8 * f, 4, 2)
        self.conv4 = sn_conv(8 * f, 4 * f, 3, 1)
        self.conv5 = sn_conv(4 * f, 2 * f, 3, 1)
        self.conv6 = sn_conv(2 * f, f, 3, 1)
        self.conv7 = sn_conv(f, f, 3, 1)
        self.conv8 = sn_conv(f, f, 3, 1)
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    def example_inputs(self, lr_size: int = 32) -> tuple[Tensor, ...]:
        """The x4 HR image of one ``lr_size`` chunk (used to count FLOPs)."""
        return (torch.zeros(1, self.num_in_ch, 4 * lr_size, 4 * lr_size),)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, 1, H, W]`` for images ``[B, num_in_ch, H, W]``."""
        if x.ndim != 4 or x.shape[1] != self.num_in_ch:
            raise InputError(
                f"UNetDiscriminatorSN expects [B, {self.num_in_ch}, H, W], got {list(x.shape)}"
            )
        if x.shape[-2] % 8 or x.shape[-1] % 8:
            raise InputError(
                f"UNetDiscriminatorSN needs H and W divisible by 8, got {list(x.shape[-2:])}"
            )
        x0 = _lrelu(self.conv0(x))
        x1 = _lrelu(self.conv1(x0))
        x2 = _lrelu(self.conv2(x1))
        x3 = _lrelu(self.conv3(x2))

        x4 = _lrelu(self.conv4(_up2(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = _lrelu(self.conv5(_up2(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = _lrelu(self.conv6(_up2(x5)))
        if self.skip_connection:
            x6 = x6 + x0

        out = _lrelu(self.conv7(x6))
        out = _lrelu(self.conv8(out))
        return self.conv9(out)
