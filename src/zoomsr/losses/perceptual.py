"""VGG19 perceptual loss (ESRGAN): weighted distances between VGG19 features of SR and HR.

Features are taken *before* the ReLU (``conv{b}_{i}``, as ESRGAN and the reference) or after
it (``relu{b}_{i}``); inputs in [0, 1] are normalised with the ImageNet mean/std. The network is
truncated after the deepest requested layer.

Weights (never downloaded): ``weights=PATH`` (a torchvision VGG19 state dict, or a folder
holding ``vgg19-dcbb9e9d.pth``), else torchvision's cache
``torch.hub.get_dir()/checkpoints/vgg19-dcbb9e9d.pth``; random weights only with
``allow_random=True`` (tests, smoke runs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.vgg import cfgs, make_layers

from zoomsr.errors import CheckpointError, InputError
from zoomsr.losses.frozen import Frozen
from zoomsr.metrics.base import WeightsNotFoundError

VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = f"https://download.pytorch.org/models/{VGG19_FILE}"
#: The reference's ESRGAN layer weights (before ReLU).
ESRGAN_LAYER_WEIGHTS = {
    "conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0,
}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_layer_names() -> list[str]:
    """Names of the 37 modules of torchvision's VGG19 ``features`` (conv1_1, relu1_1, ...)."""
    names, block, index = [], 1, 1
    for item in cfgs["E"]:
        if item == "M":
            names.append(f"pool{block}")
            block, index = block + 1, 1
        else:
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
            index += 1
    return names


def find_vgg19_weights(path: str | os.PathLike[str] | None = None) -> Path:
    """The VGG19 weight file: ``path`` (file or folder) or torchvision's cache; never downloads."""
    if path is not None:
        p = Path(path)
        if p.is_dir():
            p = p / VGG19_FILE
        if not p.is_file():
            raise WeightsNotFoundError(
                f"VGG19 weights not found: {p} (download {VGG19_URL} there, or point "
                "losses.perceptual.weights at the file)"
            )
        return p
    cached = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE
    if not cached.is_file():
        raise WeightsNotFoundError(
            f"VGG19 weights not found: {cached} is missing; download {VGG19_URL} to that path "
            "or set losses.perceptual.weights to a local copy (a smoke run that only checks "
            "that everything runs: losses.perceptual.allow_random=true)"
        )
    return cached


def load_vgg19_features(path: Path) -> dict[str, Tensor]:
    """``features.*`` tensors of a torchvision VGG19 file, without the prefix."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file becomes one clear error
        raise CheckpointError(f"{path}: cannot read VGG19 weights ({type(exc).__name__})") from exc
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: not a VGG19 state dict")
    features = {k[len("features."):]: v for k, v in obj.items() if k.startswith("features.")}
    return features or dict(obj)


class VGG19Features(nn.Module):
    """VGG19 ``features`` up to the deepest of ``layers``: ``[B, 3, H, W]`` in [0, 1] ->
    ``{layer: [B, C_l, H_l, W_l]}``."""

    mean: Tensor  # buffers (register_buffer)
    std: Tensor

    def __init__(
        self,
        layers: list[str],
        weights: str | os.PathLike[str] | None = None,
        allow_random: bool = False,
        use_input_norm: bool = True,
    ) -> None:
        super().__init__()
        names = vgg19_layer_names()
        unknown = [name for name in layers if name not in names]
        if unknown or not layers:
            raise InputError(
                f"unknown VGG19 layer {unknown[0] if unknown else '(none given)'!r}; "
                f"choose from {', '.join(n for n in names if not n.startswith('pool'))}"
            )
        features = make_layers(cfgs["E"], batch_norm=False)
        if weights is not None or not allow_random:
            path = find_vgg19_weights(weights)
            try:
                features.load_state_dict(load_vgg19_features(path), strict=True)
            except RuntimeError as exc:
                first = str(exc).splitlines()[0]
                raise CheckpointError(f"{path}: not VGG19 weights ({first})") from exc
        last = max(names.index(name) for name in layers)
        modules = list(features)[: last + 1]
        # In-place ReLUs would overwrite the pre-activation features we keep.
        modules = [nn.ReLU() if isinstance(m, nn.ReLU) else m for m in modules]
        self.body = nn.ModuleList(modules)
        self.names = names[: last + 1]
        self.layers = set(layers)
        # each max-pool halves the side: the deepest layer needs 2^pools px, or the pool
        # before it raises torch's "Output size is too small"
        self.min_side = 2 ** sum(n.startswith("pool") for n in self.names)
        self.deepest = names[last]
        self.use_input_norm = use_input_norm
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), False)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            # one band broadcast silently against the RGB mean/std; RGB+NIR failed inside
            raise InputError(
                f"the VGG19 perceptual loss expects [B, 3, H, W] RGB, got {list(x.shape)}")
        if min(x.shape[-2:]) < self.min_side:
            raise InputError(
                f"images of {x.shape[-2]} x {x.shape[-1]} px are too small for the VGG19 "
                f"perceptual loss up to {self.deepest} (at least {self.min_side} px a side): "
                "use larger crops, or shallower losses.perceptual.layer_weights")
        if self.use_input_norm:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = {}
        for name, module in zip(self.names, self.body, strict=True):
            x = module(x)
            if name in self.layers:
                out[name] = x
        return out


class PerceptualLoss(nn.Module):
    """``sum_l w_l * criterion(vgg_l(sr), vgg_l(hr))`` for ``[B, 3, H, W]`` in [0, 1] (scalar).

    Args:
        layer_weights: ``{layer: weight}`` (default: ESRGAN's five layers before ReLU).
        criterion: ``"l1"`` or ``"mse"`` between feature maps.
        weights, allow_random, use_input_norm: see :class:`VGG19Features`.
    """

    def __init__(
        self,
        layer_weights: Mapping[str, float] | None = None,
        criterion: str = "l1",
        weights: str | os.PathLike[str] | None = None,
        allow_random: bool = False,
        use_input_norm: bool = True,
    ) -> None:
        super().__init__()
        if criterion not in ("l1", "mse"):
            raise InputError(f"perceptual criterion must be 'l1' or 'mse', got {criterion!r}")
        if layer_weights is not None and not layer_weights:
            raise InputError("perceptual layer_weights is empty; give {layer: weight}, or None "
                             "for ESRGAN's five layers")
        self.layer_weights = dict(ESRGAN_LAYER_WEIGHTS if layer_weights is None
                                  else layer_weights)
        self.criterion = criterion
        self.vgg = Frozen(
            VGG19Features(list(self.layer_weights), weights, allow_random, use_input_norm)
        )

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        distance = F.l1_loss if self.criterion == "l1" else F.mse_loss
        with torch.no_grad():
            target = self.vgg(hr)
        feats = self.vgg(sr)
        total = sr.new_zeros((), dtype=torch.float32)
        for name, weight in self.layer_weights.items():
            total = total + weight * distance(feats[name].float(), target[name].float())
        return total


__all__ = [
    "ESRGAN_LAYER_WEIGHTS",
    "VGG19_FILE",
    "PerceptualLoss",
    "VGG19Features",
    "find_vgg19_weights",
    "vgg19_layer_names",
]
