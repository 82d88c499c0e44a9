"""CLIP loss: distance between CLIP image embeddings of SR and HR (the paper's auxiliary loss).

Any open_clip image tower (``ViT-B-16-SigLIP-256`` / ``webli`` in the paper's CLIP-loss run),
frozen and in eval mode. Unlike the CLIPScore metric's ``paper`` mode, the loss uses the
backbone's own preprocessing: bicubic/bilinear resize (differentiable) to its input size, then
its mean/std. Weights are resolved like :class:`zoomsr.metrics.CLIPScore` (local file or cache,
download only when allowed, random weights only with ``allow_random``).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoomsr.errors import InputError
from zoomsr.losses.frozen import Frozen
from zoomsr.metrics.clipscore import build_image_encoder, resolve_clip_weights
from zoomsr.validate import check_choice

CLIP_CRITERIA = ("l1", "cosine")


class CLIPLoss(nn.Module):
    """``criterion(embed(sr), embed(hr))`` for ``[B, 3, H, W]`` RGB in [0, 1] (scalar).

    ``criterion="l1"``: mean absolute difference of the raw embeddings (the paper's loss);
    ``"cosine"``: ``1 - cos(embed(sr), embed(hr))`` averaged over the batch.
    """

    mean: Tensor  # buffers (register_buffer)
    std: Tensor

    def __init__(
        self,
        model_name: str = "ViT-B-16-SigLIP-256",
        pretrained: str | os.PathLike[str] | None = "webli",
        criterion: str = "l1",
        *,
        hub_dir: str | os.PathLike[str] | None = None,
        allow_download: bool = False,
        allow_random: bool = False,
    ) -> None:
        super().__init__()
        check_choice("CLIP loss criterion", criterion, CLIP_CRITERIA)
        self.criterion = criterion
        self.weights = resolve_clip_weights(
            model_name, pretrained, hub_dir=hub_dir, allow_download=allow_download,
            allow_random=allow_random,
        )
        # Built here, not taken from the metric's shared cache: the trainer moves this copy to
        # its own device, which must not move a CLIPScore's encoder along with it.
        self.encoder = Frozen(build_image_encoder(self.weights, torch.device("cpu")))
        self.register_buffer("mean", torch.tensor(self.weights.mean).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(self.weights.std).view(1, 3, 1, 1), False)

    @property
    def image_size(self) -> tuple[int, int]:
        """The backbone's input size ``(H, W)``."""
        return self.encoder.net.image_size  # type: ignore[return-value]  # (open_clip's)

    def preprocess(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> normalised ``[B, 3, S, S]`` (differentiable)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"CLIP loss expects [B, 3, H, W] RGB, got {list(images.shape)}")
        x = images.clamp(0, 1)
        if tuple(x.shape[-2:]) != self.image_size:
            mode = self.weights.interpolation
            mode = mode if mode in ("bilinear", "bicubic") else "bicubic"
            downscale = x.shape[-1] > self.image_size[1] or x.shape[-2] > self.image_size[0]
            x = F.interpolate(x, size=self.image_size, mode=mode, align_corners=False,
                              antialias=downscale)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def embed(self, images: Tensor) -> Tensor:
        """Embeddings ``[B, D]`` (float32) of ``[B, 3, H, W]`` in [0, 1]."""
        return self.encoder(self.preprocess(images)).float()

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        with torch.no_grad():
            target = self.embed(hr)
        pred = self.embed(sr)
        if self.criterion == "l1":
            return F.l1_loss(pred, target)
        return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()


__all__ = ["CLIP_CRITERIA", "CLIPLoss"]
