"""Adversarial losses on discriminator logits (any shape, e.g. U-Net per-pixel ``[B, 1, H, W]``).

- ``vanilla``: binary cross-entropy with logits (the reference's ESRGAN).
- ``hinge``: discriminator ``relu(1 - real) + relu(1 + fake)``, generator ``-fake``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoomsr.errors import InputError

GAN_TYPES = ("vanilla", "hinge")


class GANLoss(nn.Module):
    """``loss(logits, real, for_discriminator) -> scalar``.

    ``real``: whether ``logits`` should be judged real. For the generator step pass
    ``real=True, for_discriminator=False`` on the logits of its output.
    """

    def __init__(self, gan_type: str = "vanilla") -> None:
        super().__init__()
        if gan_type not in GAN_TYPES:
            raise InputError(f"unknown GAN loss {gan_type!r}; choose one of {', '.join(GAN_TYPES)}")
        self.gan_type = gan_type

    def forward(self, logits: Tensor, real: bool, for_discriminator: bool = True) -> Tensor:
        logits = logits.float()  # BCE and hinge margins are unstable in half precision
        if self.gan_type == "vanilla":
            target = torch.ones_like(logits) if real else torch.zeros_like(logits)
            return F.binary_cross_entropy_with_logits(logits, target)
        if not for_discriminator:
            if not real:
                raise InputError("hinge GAN loss: the generator term needs real=True")
            return -logits.mean()
        return F.relu(1.0 - logits).mean() if real else F.relu(1.0 + logits).mean()


__all__ = ["GAN_TYPES", "GANLoss"]
