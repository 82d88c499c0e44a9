"""LPIPS (Zhang et al. 2018, v0.1) with AlexNet or VGG16 features, implemented in-project.

Inputs are RGB in [0, 1]; they are mapped to [-1, 1] internally (the reference fed [0, 1], and in
BGR order, to a network that expects [-1, 1] RGB). Pipeline: scaling layer -> five ReLU stages of
the ImageNet backbone -> unit-normalise each feature across channels -> squared difference -> 1x1
linear layer (non-negative weights, no bias) -> spatial mean -> sum over stages. Lower is better.

Weights (never downloaded implicitly):

- backbone: ``backbone_weights=PATH`` (a torchvision state dict, ``features.*`` keys or the whole
  classifier), else the torchvision cache ``torch.hub.get_dir()/checkpoints/`` (``alexnet-owt-
  7be5be79.pth``, ``vgg16-397923af.pth``);
- linear layers: ``linear_weights=PATH``, else the files shipped in the installed ``lpips`` package
  (``lpips/weights/v0.1/{alex,vgg}.pth``), located without importing it.

With ``valid`` (True where a pixel is valid in both images), both images are set to black outside
it (so nothing there, fill values or the target's own content, changes the score) and each
stage's distance map is averaged over the valid area only (the mask resampled to the stage's
grid by area, as weights), so a partly masked image is not made to look better by the zero
distance of its masked area. The backbone's receptive fields still see the shared black area
near its edge; an image less than ``min_valid`` valid is not scored (NaN).
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoomsr.devices import resolve_device
from zoomsr.errors import CheckpointError, InputError
from zoomsr.io.sniff import load_failure
from zoomsr.metrics.base import (
    PERCEPTUAL_MIN_VALID,
    WeightsNotFoundError,
    black_outside,
    check_batch_size,
    check_min_valid,
    check_pair,
    check_valid,
    partial_rows,
)

LPIPS_NETS = ("alex", "vgg")
#: torchvision's cached file names (and download URLs) of the ImageNet backbones.
TORCHVISION_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
TORCHVISION_URL = "https://download.pytorch.org/models/"
#: Feature channels of the five ReLU stages.
CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
#: ``features`` index ranges of the five stages (as the lpips package slices torchvision).
_STAGES = {
    "alex": ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12)),
    "vgg": ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30)),
}
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10


def _check_net(net: str) -> str:
    if net not in LPIPS_NETS:
        raise InputError(f"unknown LPIPS network {net!r} (expected one of {', '.join(LPIPS_NETS)})")
    return net


def backbone_features(net: str) -> nn.Sequential:
    """An untrained ``features`` stack with torchvision's layout (same module indices)."""
    _check_net(net)
    layers: list[nn.Module] = []
    if net == "alex":
        layers = [
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        ]
    else:
        cin = 3
        for cout in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                     512, 512, 512):
            if cout == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(cout), 3, padding=1), nn.ReLU()]
                cin = int(cout)
    return nn.Sequential(*layers)


class LPIPSNetwork(nn.Module):
    """Scaling layer + feature stages + 1x1 linear heads.

    Args:
        stages: modules applied in sequence; the output of each is one compared feature map.
        channels: channel count of each stage's output.
    """

    shift: torch.Tensor  # buffers (register_buffer)
    scale: torch.Tensor

    def __init__(self, stages: Sequence[nn.Module], channels: Sequence[int]) -> None:
        super().__init__()
        if len(stages) != len(channels) or not stages:
            raise InputError("LPIPSNetwork needs one channel count per stage")
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.stages = nn.ModuleList(stages)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x - self.shift) / self.scale
        out = []
        for stage in self.stages:
            h = stage(h)
            out.append(h / (torch.sqrt(torch.sum(h * h, dim=1, keepdim=True)) + _EPS))
        return out

    def distance_maps(self, x0: torch.Tensor, x1: torch.Tensor) -> list[torch.Tensor]:
        """Each stage's distance map ``[B, 1, h, w]`` between ``[B, 3, H, W]`` batches in
        [-1, 1] (their spatial means summed are the distance)."""
        f0, f1 = self._features(x0), self._features(x1)
        return [lin((a - b) ** 2) for a, b, lin in zip(f0, f1, self.lins, strict=True)]

    def forward(
        self, x0: torch.Tensor, x1: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Distance between ``[B, 3, H, W]`` batches in [-1, 1]; returns ``[B]``.

        ``weights`` (``[B, 1, H, W]``, 0/1: the valid pixels): each stage's map is averaged
        with these weights, resampled to its grid by area, instead of uniformly (an image whose
        weights are all 1 is scored as without them).
        """
        total = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device)
        part = None if weights is None else ~(weights >= 1).flatten(1).all(dim=1)
        for d in self.distance_maps(x0, x1):
            layer = d.mean(dim=(1, 2, 3))
            if part is not None and bool(part.any()):
                w = F.interpolate(cast(torch.Tensor, weights)[part].to(d.dtype), size=d.shape[-2:],
                                  mode="area")
                layer = layer.clone()
                layer[part] = (d[part] * w).sum(dim=(1, 2, 3)) / w.sum(dim=(1, 2, 3))
            total = total + layer
        return total


def _lpips_package_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec("lpips")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_backbone_weights(net: str, path: str | os.PathLike[str] | None = None) -> Path:
    """The backbone weight file: ``path`` if given, else torchvision's cache; never downloads."""
    _check_net(net)
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir():  # a folder: torchvision's file name, else one alexnet*/vgg16* .pth file
            stem = "alexnet" if net == "alex" else "vgg16"
            hits = [p / TORCHVISION_FILES[net]] if (p / TORCHVISION_FILES[net]).is_file() else []
            hits = hits or sorted(p.glob(f"{stem}*.pth"))
            if len(hits) != 1:
                raise WeightsNotFoundError(
                    f"LPIPS {net} backbone weights: expected one {TORCHVISION_FILES[net]} or "
                    f"{stem}*.pth in {p}, found {len(hits)}"
                )
            return hits[0]
        if not p.is_file():
            raise WeightsNotFoundError(f"LPIPS {net} backbone weights not found: {p}")
        return p
    cached = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILES[net]
    if cached.is_file():
        return cached
    raise WeightsNotFoundError(
        f"LPIPS {net} backbone weights not found: {cached} is missing. Download "
        f"{TORCHVISION_URL}{TORCHVISION_FILES[net]} to that path, or pass the file explicitly "
        "(backbone_weights=..., CLI --lpips-weights PATH)"
    )


def find_linear_weights(net: str, path: str | os.PathLike[str] | None = None) -> Path:
    """The linear-layer weight file: ``path`` if given, else the copy in the ``lpips`` package."""
    _check_net(net)
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise WeightsNotFoundError(f"LPIPS {net} linear-layer weights not found: {p}")
        return p
    pkg = _lpips_package_dir()
    where = "lpips/weights/v0.1/" + f"{net}.pth"
    if pkg is not None:
        candidate = pkg / "weights" / "v0.1" / f"{net}.pth"
        if candidate.is_file():
            return candidate
        where = str(candidate)
    raise WeightsNotFoundError(
        f"LPIPS {net} linear-layer weights not found ({where}): `pip install lpips` (it ships "
        "them) or pass the file explicitly (linear_weights=..., CLI --lpips-linear-weights PATH)"
    )


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file becomes one clear error
        raise CheckpointError(f"{path}: cannot read weights ({load_failure(path, exc)})") from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return obj


def _differences(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> str:
    """How the tensors ``got`` differ from a network's ``expected`` ones, in a few words."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    shapes = [k for k in sorted(set(expected) & set(got)) if expected[k].shape != got[k].shape]
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensor(s) missing, e.g. {missing[0]}")
    if extra:
        parts.append(f"{len(extra)} unexpected, e.g. {extra[0]}")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} of another shape, e.g. {k} {tuple(got[k].shape)} instead "
                     f"of {tuple(expected[k].shape)}")
    return "; ".join(parts) or "the tensors do not fit"


def build_lpips_network(
    net: str = "alex",
    backbone_weights: str | os.PathLike[str] | None = None,
    linear_weights: str | os.PathLike[str] | None = None,
) -> LPIPSNetwork:
    """Build the real LPIPS network (eval mode, frozen) from local weight files."""
    _check_net(net)
    bpath = find_backbone_weights(net, backbone_weights)
    lpath = find_linear_weights(net, linear_weights)
    features = backbone_features(net)
    sd = _load_state_dict(bpath)
    if any(k.startswith("features.") for k in sd):
        sd = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
    try:
        features.load_state_dict(sd, strict=True)
    except RuntimeError as exc:  # torch's first line only says where: say what differs
        raise CheckpointError(f"{bpath}: not {net} backbone weights "
                              f"({_differences(features.state_dict(), sd)})") from exc
    stages = [
        nn.Sequential(*[features[i] for i in range(a, b)]) for a, b in _STAGES[net]
    ]
    network = LPIPSNetwork(stages, CHANNELS[net])
    lin_sd = _load_state_dict(lpath)
    mapped = {}
    for k, v in lin_sd.items():
        # lpips package layout: lin{i}.model.1.weight
        if k.startswith("lin") and k.endswith(".weight"):
            idx = k[3:].split(".", 1)[0]
            if idx.isdigit():
                mapped[f"lins.{idx}.weight"] = v
    try:
        network.load_state_dict({**network.state_dict(), **mapped}, strict=True)
        if len(mapped) != len(CHANNELS[net]):
            raise RuntimeError(f"expected {len(CHANNELS[net])} linear layers, found {len(mapped)}")
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{lpath}: not LPIPS {net} linear weights ({first})") from exc
    return network.eval().requires_grad_(False)


def _stage_fits(stage: nn.Module, h: torch.Tensor) -> torch.Tensor | None:
    """``stage(h)`` computed on the meta device (shapes only), or None when ``stage`` refuses
    ``h`` or leaves an empty map."""
    from torch.func import functional_call

    tensors = {name: torch.empty_like(t, device="meta") for name, t in
               [*stage.named_parameters(), *stage.named_buffers()]}
    try:
        out = functional_call(stage, tensors, (h,))
    except (RuntimeError, ValueError, IndexError):  # e.g. "Output size is too small"
        return None
    if not isinstance(out, torch.Tensor) or out.ndim != 4 or 0 in out.shape:
        return None
    return out


def _network_fits(network: LPIPSNetwork, side: int) -> bool:
    h = torch.empty(1, 3, side, side, device="meta")
    for stage in network.stages:
        out = _stage_fits(stage, h)
        if out is None:
            return False
        h = out
    return True


def _structure(net: str) -> LPIPSNetwork:
    """The ``net`` network's layers without weights (on the meta device: nothing allocated)."""
    with torch.device("meta"):
        features = backbone_features(net)
        stages = [nn.Sequential(*[features[i] for i in range(a, b)]) for a, b in _STAGES[net]]
        return LPIPSNetwork(stages, CHANNELS[net])


def min_input_size(network: LPIPSNetwork | str, limit: int = 1 << 14) -> int | None:
    """The smallest image side (px) that every stage of ``network`` (a built network, or a
    backbone name: ``"alex"``, ``"vgg"``) maps to a non-empty feature map, computed on the
    meta device (shapes only, no weights copied, nothing run);
    None when no side up to ``limit`` fits (a stage that is not a stack of convolutions and
    poolings). The real backbones: AlexNet 31 px (its stride-4 first convolution and two
    3x3/2 max-poolings leave a 2x2 map at 30 px that the second pooling cannot take), VGG16
    16 px (four 2x2 max-poolings before the last stage). Height and width are independent:
    an ``H x W`` image fits when ``min(H, W)`` does."""
    if isinstance(network, str):
        network = _structure(network)
    # the output size of convolutions and poolings never shrinks as the input grows: a fit
    # at ``side`` holds above it, so double up to the first fit, then bisect
    hi = 1
    while not _network_fits(network, hi):
        if hi >= limit:
            return None
        hi = min(hi * 2, limit)
    lo = hi // 2  # does not fit (or 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _network_fits(network, mid):
            hi = mid
        else:
            lo = mid
    return hi


_NETWORKS: dict[tuple[str, str, str, str], LPIPSNetwork] = {}


def get_lpips_network(
    net: str = "alex",
    backbone_weights: str | os.PathLike[str] | None = None,
    linear_weights: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> LPIPSNetwork:
    """:func:`build_lpips_network` on ``device``, built once per (net, files, device)."""
    dev = resolve_device(device, mps=False)
    bpath = find_backbone_weights(net, backbone_weights).resolve()
    lpath = find_linear_weights(net, linear_weights).resolve()
    key = (net, str(bpath), str(lpath), str(dev))
    if key not in _NETWORKS:
        _NETWORKS[key] = build_lpips_network(net, bpath, lpath).to(dev)
    return _NETWORKS[key]


class LPIPS:
    """LPIPS distance (lower is better), per image.

    Args:
        net: ``"alex"`` (the paper's) or ``"vgg"``.
        backbone_weights, linear_weights: weight files (see the module docstring for defaults);
            ``backbone_weights`` may be a folder holding ``alexnet*.pth``/``vgg16*.pth``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        batch_size: images per forward pass.
        network: a ready :class:`LPIPSNetwork` (e.g. a small one for tests); the weight
            arguments are then ignored.
        min_valid: with a ``valid`` mask, the smallest valid share of an image that is
            scored (NaN below; see the module docstring).
    """

    higher_is_better = False
    bounds = (0.0, math.inf)

    def __init__(
        self,
        net: str = "alex",
        backbone_weights: str | os.PathLike[str] | None = None,
        linear_weights: str | os.PathLike[str] | None = None,
        device: str | torch.device = "auto",
        batch_size: int = 32,
        network: LPIPSNetwork | None = None,
        min_valid: float = PERCEPTUAL_MIN_VALID,
    ) -> None:
        self.min_valid = check_min_valid(min_valid)
        self.device = resolve_device(device, mps=False)
        self.batch_size = check_batch_size(batch_size)
        if network is None:
            self.net_name = _check_net(net)
            self.network = get_lpips_network(net, backbone_weights, linear_weights, self.device)
        else:
            self.net_name = "custom"
            self.network = network.to(self.device).eval().requires_grad_(False)
        self.name = "lpips" if self.net_name in ("alex", "custom") else f"lpips_{self.net_name}"
        #: the smallest image side the network takes (None: unknown); smaller images are
        #: refused with an :class:`InputError` before the network runs
        self.min_size = min_input_size(self.network)

    def __call__(
        self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray,
        valid: torch.Tensor | np.ndarray | None = None,
    ) -> torch.Tensor:
        """``[B, 3, H, W]`` pair in [0, 1] -> ``[B]`` float64 distances (0 for identical).

        ``valid``: ``[B, H, W]`` bool, True where a pixel is valid in both images (see the
        module docstring); NaN for an image less than ``min_valid`` valid.
        """
        p, t = check_pair(pred, target)
        height, width = p.shape[-2:]
        if self.min_size is not None and min(height, width) < self.min_size:
            backbone = {"alex": "the AlexNet", "vgg": "the VGG16"}.get(self.net_name, "its")
            raise InputError(
                f"LPIPS ({self.net_name}) needs images of at least {self.min_size}x"
                f"{self.min_size} px ({backbone} backbone's strides and poolings leave "
                f"nothing of a smaller side), got {height}x{width}; score larger images or "
                "leave LPIPS out"
            )
        v = check_valid(valid, p.shape, device=p.device)
        partial = partial_rows(v)
        if partial is not None:  # black outside the valid area, in both
            p, t = p.clone(), t.clone()
            p[partial], t[partial] = black_outside(p[partial], t[partial],
                                                   cast(torch.Tensor, v)[partial])
        out = []
        with torch.inference_mode():
            for i in range(0, p.shape[0], self.batch_size):
                # float32, the network's: float64 input met float32 weights (a torch error)
                a = p[i: i + self.batch_size].to(self.device, torch.float32) * 2.0 - 1.0
                b = t[i: i + self.batch_size].to(self.device, torch.float32) * 2.0 - 1.0
                if partial is None or not bool(partial[i: i + self.batch_size].any()):
                    out.append(self.network(a, b).double().cpu())
                else:
                    w = cast(torch.Tensor, v)[i: i + self.batch_size].to(self.device,
                                                                          torch.float32)
                    out.append(self.network(a, b, w).double().cpu())
        scores = torch.cat(out)
        if partial is not None:
            share = cast(torch.Tensor, v).flatten(1).double().mean(dim=1).cpu()
            scores[share < self.min_valid] = float("nan")
        return scores
