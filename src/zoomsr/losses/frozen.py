"""A wrapper that keeps a frozen network (VGG, CLIP) out of the trainer's way."""

from __future__ import annotations

from typing import Any

from torch import nn


class Frozen(nn.Module):
    """Hold ``net`` frozen and in eval mode, moved with its parent but invisible otherwise.

    The wrapped network is not registered as a submodule, so it is absent from
    ``parameters()`` (optimisers, DDP gradient sync) and ``state_dict()`` (a training checkpoint
    would otherwise carry 80 MB of VGG or CLIP weights that are loaded from their own files
    anyway), and ``.train()`` on the parent never switches it out of eval mode.
    ``.to(device)`` / ``.cuda()`` / dtype casts of the parent still reach it.
    """

    net: nn.Module  # (set past nn.Module's __setattr__: not a submodule)

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        net.eval().requires_grad_(False)
        object.__setattr__(self, "net", net)

    def _apply(self, fn: Any, recurse: bool = True) -> Frozen:
        self.net._apply(fn)
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True) -> Frozen:
        self.training = mode
        return self  # the frozen network stays in eval mode

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.net(*args, **kwargs)


__all__ = ["Frozen"]
