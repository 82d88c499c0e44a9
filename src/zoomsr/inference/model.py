"""A super-resolution model ready for scene inference: device, precision, layout and scale.

:class:`InferenceModel` wraps a zoomsr model (RRDBNet/ESRGAN, SRCNN, HighRes-net, SR3) with what
the pipeline needs to know: how many frames it takes, in which layout, its scale, and where its
weights came from (name, path and SHA-256, written into the output's tags).

SR3 is sampled with DDIM (``eta`` = 0), so its output is fixed by its starting noise; each
window's noise is drawn from a seed made of ``sample_seed`` and the window's place in the scene
(or, for arrays of chunks, its input values). A window thus gives the same pixels whatever the
batch it is run in, on a resumed run, in a column strip or on a Ray worker, and the frame
subsets of ``--uncertainty`` share its noise.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from zoomsr.data.bands import band_channels, validate_bands
from zoomsr.devices import resolve_device
from zoomsr.errors import CheckpointError, ConfigError, InputError
from zoomsr.inference.graphs import GraphedForward
from zoomsr.io.hashing import sha256_file
from zoomsr.layout import to_layout
from zoomsr.models import create_model, read_checkpoint
from zoomsr.models.checkpoints import Checkpoint, require_checkpoint_file
from zoomsr.models.factory import rebuild
from zoomsr.models.sr3 import keyed_noise
from zoomsr.validate import check_choice


def sha256_state(module: nn.Module) -> str:
    """Hex SHA-256 of a model's tensors (names, shapes and bytes), for weights not in a file."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        # (as bytes: NumPy has no bfloat16)
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _check_float(x: np.ndarray | torch.Tensor) -> None:
    """Refuse model input that is not float (an 8-bit TCI as read)."""
    floating = x.is_floating_point() if isinstance(x, torch.Tensor) else (
        np.issubdtype(x.dtype, np.floating))
    if not floating:
        raise InputError(f"expected float input in [0, 1], got {x.dtype}: divide an 8-bit TCI "
                         "by 255")


def _check_unit_range(lr: np.ndarray | torch.Tensor) -> None:
    """Refuse model input that is not float in [0, 1] (up to float rounding). The values of a
    tensor on a GPU are not looked at (that would wait for the device): its type is."""
    x = lr if isinstance(lr, torch.Tensor) else np.asarray(lr)
    _check_float(x)
    if isinstance(x, torch.Tensor) and x.device.type != "cpu":
        return
    if x.numel() if isinstance(x, torch.Tensor) else x.size:
        low, high = float(x.min()), float(x.max())
        if low < -1e-3 or high > 1 + 1e-3:
            raise InputError(f"input values from {low:g} to {high:g}: expected [0, 1] (TCI / "
                             "255; extra bands reflectance x 10000 / 8160)")


@dataclass
class InferenceModel:
    """A model plus what the pipeline needs to feed it.

    ``forward`` takes ``[B, T, C, h, w]`` float32 in [0, 1] and returns
    ``[B, 3, h * scale, w * scale]`` float32 (not clamped). Per frame, the ``C`` channels are
    the ``bands``: TCI / 255 (3 channels), then each extra band (reflectance x 10000 / 8160),
    as the model was trained.
    """

    module: nn.Module
    label: str
    n_images: int
    layout: str  # "stacked" ([B, T*C, H, W]) or "frames" ([B, T, C, H, W])
    scale: int
    weights: str
    weights_sha256: str
    device: torch.device
    autocast: bool = False
    config: dict[str, Any] | None = None
    bands: tuple[str, ...] = ("tci",)
    sample_steps: int | None = None  # SR3: DDIM steps (None: the model's default, 50)
    sample_seed: int = 0  # SR3: seed of every window's starting noise
    #: replay the forward from CUDA graphs on a CUDA device (see zoomsr.inference.graphs)
    cuda_graphs: bool = False
    #: what was asked for (the argument, else ZOOMSR_CUDA_GRAPHS): Ray workers decide from
    #: it on their own devices
    graphs_requested: bool = False
    #: the last scene's graphs, as :meth:`release_graphs` found them: shapes captured, calls
    #: replayed, why they were turned off (None: they were not)
    graphs_report: dict[str, Any] | None = field(default=None, init=False, repr=False,
                                                 compare=False)
    _graphs: GraphedForward | None = field(default=None, init=False, repr=False,
                                           compare=False)

    @property
    def diffusion(self) -> bool:
        """Whether the model is sampled (SR3) rather than run once."""
        return getattr(self.module, "name", None) == "sr3"

    @property
    def size_multiple(self) -> int:
        """The module's input heights and widths must be multiples of this (RRDBNet at scale
        1 or 2 pixel-unshuffles its input by 4 or 2); :meth:`forward` pads other sizes."""
        return int(getattr(self.module, "unshuffle", 1))

    @property
    def precision(self) -> str:
        """What the model computes in: ``bf16`` (autocast) or ``fp32``."""
        return "bf16" if self.autocast else "fp32"

    @property
    def channels(self) -> int:
        """Input channels per frame: 3 (TCI) + one per extra band."""
        return sum(band_channels(b) for b in self.bands)

    def forward(self, lr: np.ndarray | torch.Tensor,
                keys: Sequence[Any] | None = None) -> np.ndarray:
        """``[B, T, C, h, w]`` float in [0, 1] -> ``[B, 3, h*s, w*s]`` float32 NumPy (on the
        CPU). ``keys`` (SR3 only): what names each item's sampling noise (see
        :meth:`_sample`). Integer input or values outside [0, 1] (0-255 data) are refused with
        :class:`InputError`: the model made garbage of them."""
        _check_unit_range(lr)
        return self.forward_device(lr, keys).cpu().numpy()

    __call__ = forward

    def forward_device(self, lr: np.ndarray | torch.Tensor,
                       keys: Sequence[Any] | None = None) -> torch.Tensor:
        """As :meth:`forward`, the float32 output left on the model's device (the input's
        type is checked, its values only by :meth:`forward`: looking at them here would wait
        for the device on every batch of a scene)."""
        if isinstance(lr, torch.Tensor):
            _check_float(lr)
        x = torch.as_tensor(lr, dtype=torch.float32)
        c = self.channels
        if x.ndim != 5 or x.shape[1] != self.n_images or x.shape[2] != c:
            raise InputError(
                f"{self.label} expects [B, {self.n_images}, {c}, h, w], got {list(x.shape)}"
            )
        h, w = x.shape[-2:]
        x, ph, pw = self._module_input(x)
        with torch.inference_mode():
            if self.diffusion:
                with self._autocast(cache=True):  # the weights' casts serve every step
                    y = self._sample(x, keys)
            elif self.cuda_graphs and x.device.type == "cuda":
                y = self._graphed()(x)
            else:
                y = self._eager(x)
        if y.ndim == 5:  # SRCNN / HighRes-net: [B, 1, C, H, W]
            y = y[:, 0]
        expected = (x.shape[0], 3, (h + ph) * self.scale, (w + pw) * self.scale)
        if tuple(y.shape) != expected:
            raise CheckpointError(
                f"{self.label}: output shape {list(y.shape)}, expected {list(expected)} "
                "(an RGB x scale model is needed)"
            )
        if ph or pw:
            y = y[..., : h * self.scale, : w * self.scale]
        return y.float()

    def _module_input(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """``[B, T, C, h, w]`` float32 as the module takes it (padded to
        :attr:`size_multiple`, in its layout, on its device), and the rows and columns added."""
        b, t, c, h, w = x.shape
        m = self.size_multiple
        ph, pw = -h % m, -w % m
        if ph or pw:
            # a window cut to a scene side that is no multiple (an odd side, a scene smaller
            # than a window): edge pixels repeated up to one, the output cut back
            x = torch.nn.functional.pad(x.reshape(b, t * c, h, w), (0, pw, 0, ph),
                                        mode="replicate").reshape(b, t, c, h + ph, w + pw)
        x = to_layout(x, self.layout).to(self.device)  # type: ignore[arg-type]
        if self.device.type == "cuda" and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, ph, pw

    def prepare_graphs(self, batches: Sequence[int], height: int, width: int) -> int:
        """With :attr:`cuda_graphs`, capture the forward of ``[b, T, C, height, width]``
        inputs now, for each ``b`` in ``batches`` (most used first: at most
        :data:`~zoomsr.inference.graphs.MAX_GRAPHS`), and no other shape until
        :meth:`release_graphs` (a scene's row threads must not capture while the others use
        the GPU: see :mod:`zoomsr.inference.graphs`). Returns how many have a graph."""
        # graphs of earlier calls' shapes would take the places (and a failed capture among
        # them turns graphs off for good: its release says so, before the check)
        self.release_graphs()
        if not self.cuda_graphs or not cuda_graphs_possible(self.device, self.diffusion):
            return 0
        inputs = [self._module_input(torch.zeros((b, self.n_images, self.channels, height,
                                                  width)))[0] for b in batches]
        with torch.inference_mode():
            return self._graphed().prepare(*inputs)

    def release_graphs(self) -> None:
        """Drop the captured graphs (their memory goes back to torch's cache once they are
        collected), noting in :attr:`graphs_report` what they did; the next calls capture
        again as at the start. After a failed capture graphs stay off for this model
        (:attr:`cuda_graphs` False): each try costs a warm-up and a warning."""
        graphs = self._graphs
        if graphs is None:
            return
        self.graphs_report = {"captured": graphs.captured, "replays": graphs.replays,
                              "disabled": graphs.disabled}
        if graphs.disabled is not None:
            self.cuda_graphs = False
        self._graphs = None

    def _graphed(self) -> GraphedForward:
        if self._graphs is None:
            # a function of the module, not a method of this model: the model and its graphs
            # would hold each other, and the GPU memory wait for a full garbage collection
            self._graphs = GraphedForward(functools.partial(
                _eager_forward, self.module, self.device.type, self.autocast))
        return self._graphs

    def _autocast(self, cache: bool = False) -> contextlib.AbstractContextManager:
        return _autocast(self.device.type, self.autocast, cache)

    def _eager(self, x: torch.Tensor) -> torch.Tensor:
        return _eager_forward(self.module, self.device.type, self.autocast, x)

    def _sample(self, x: torch.Tensor, keys: Sequence[Any] | None = None) -> torch.Tensor:
        """SR3's DDIM samples of ``x`` ``[B, T*C, h, w]``, each from the noise that its key
        names (scenes: the window's place, so the frame subsets of ``--uncertainty`` share
        it and their spread is that of the dates), else its values (see module docstring)."""
        s, c = self.scale, int(self.module.out_channels)  # type: ignore[arg-type]
        shape = (c, x.shape[-2] * s, x.shape[-1] * s)
        if keys is None:
            values = x.detach().float().cpu().contiguous().numpy()
            names = [values[i].tobytes() + str(values[i].shape).encode()
                     for i in range(x.shape[0])]
        else:
            if len(keys) != x.shape[0]:
                raise InputError(f"{len(keys)} noise keys for {x.shape[0]} inputs")
            names = [repr(("key", key, tuple(x.shape[1:]))).encode() for key in keys]
        noise = keyed_noise(shape, self.sample_seed, names)
        return self.module.sample(  # type: ignore[operator]  # (SR3's method)
            x, steps=self.sample_steps, method="ddim", eta=0.0, noise=noise)

    def describe(self) -> dict:
        sampling = ({"sampling": {"method": "ddim", "eta": 0.0, "seed": self.sample_seed,
                                  "steps": self.sample_steps
                                  or self.module.default_steps()}}  # type: ignore[operator]
                    if self.diffusion else {})
        return {
            "model": self.label,
            "architecture": getattr(self.module, "name", type(self.module).__name__),
            "config": self.config,
            "n_images": self.n_images,
            "scale": self.scale,
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
            **({"bands": list(self.bands)} if self.bands != ("tci",) else {}),
            **sampling,
        }


def _autocast(device_type: str, on: bool, cache: bool = False
              ) -> contextlib.AbstractContextManager:
    # A forward uses each weight once, so its casts need no cache (and a CUDA graph's capture
    # must not use one); a diffusion sampler's steps share them.
    return (torch.autocast(device_type, dtype=torch.bfloat16, cache_enabled=cache) if on
            else contextlib.nullcontext())


def _eager_forward(module: nn.Module, device_type: str, autocast: bool,
                   x: torch.Tensor) -> torch.Tensor:
    """``module``'s forward of ``x`` (on its device, in its layout), in its precision."""
    with _autocast(device_type, autocast):
        return module(x)


#: num_in_ch of the published band variants -> (registry tag, bands): a checkpoint of that
#: shape loaded without --bands would otherwise be taken for 24 or 32 TCI images.
_BAND_VARIANT_CHANNELS = {
    32: ("10m", "tci,b08"),
    72: ("20m", "tci,b08,b05,b06,b07,b11,b12"),
    96: ("60m", "tci,b01,b08,b09,b10,b05,b06,b07,b11,b12"),
}


def _spec(module: nn.Module, bands: tuple[str, ...],
          bands_defaulted: bool = False) -> tuple[int, str, int]:
    """(n_images, layout, scale) of a zoomsr model fed ``bands``, refusing what infer cannot
    feed."""
    name = getattr(module, "name", type(module).__name__)
    cfg = getattr(module, "config", {}) or {}
    channels = sum(band_channels(b) for b in bands)
    if name == "rrdbnet":
        if cfg.get("num_out_ch", 3) != 3:
            raise ConfigError(f"rrdbnet with num_out_ch={cfg.get('num_out_ch')}: infer needs RGB")
        in_ch = int(cfg.get("num_in_ch", 24))
        if bands_defaulted and in_ch in _BAND_VARIANT_CHANNELS:
            tag, names = _BAND_VARIANT_CHANNELS[in_ch]
            raise ConfigError(
                f"rrdbnet with num_in_ch={in_ch} is the shape of esrgan-{tag} (8 images of "
                f"{names}); pass --bands {names}, or --bands tci if it really takes "
                f"{in_ch // 3} TCI images"
            )
        if in_ch % channels:
            hint = ("; a band-variant model needs its bands, e.g. --bands tci,b08 (esrgan-10m)"
                    if bands == ("tci",) else "")
            raise ConfigError(
                f"rrdbnet with num_in_ch={in_ch} cannot take frames of bands "
                f"{','.join(bands)} ({channels} channels each){hint}"
            )
        return in_ch // channels, "stacked", int(cfg.get("scale", 4))
    if name == "sr3":
        in_ch = int(cfg.get("in_channels", 24))
        if cfg.get("out_channels", 3) != 3:
            raise ConfigError(f"sr3 with out_channels={cfg.get('out_channels')}: infer needs RGB")
        if in_ch % channels:
            raise ConfigError(f"sr3 with in_channels={in_ch} cannot take frames of bands "
                              f"{','.join(bands)} ({channels} channels each)")
        return in_ch // channels, "stacked", int(cfg.get("scale", 4))
    if name in ("srcnn", "highresnet"):
        if cfg.get("in_channels", 3) != channels or cfg.get("out_channels", 3) != 3:
            raise ConfigError(f"{name}: infer needs in_channels={channels} (bands "
                              f"{','.join(bands)}) and out_channels=3")
        if getattr(module, "output_size", None) is not None:
            # A fixed output size would resize every window; inference keeps the x zoom output.
            module.output_size = None  # type: ignore[assignment]  # (an int attribute)
        return int(cfg.get("revisits", 8)), "frames", int(cfg.get("zoom_factor", 4))
    raise ConfigError(
        f"model {name!r} cannot be used by infer (supported: rrdbnet, srcnn, highresnet, sr3)"
    )


def check_recorded_bands(path: str | os.PathLike[str], bands: Sequence[str] | str,
                         recorded: Sequence[str] | None, *,
                         recorded_by: str = "recorded in the file",
                         fix: str = "give those, or leave the bands out to take them") -> None:
    """Refuse ``bands`` (``--bands``, a dataset's ``bands`` option) other than, or in another
    order than, those the model of ``path`` (a file, or a model's label) records it was
    trained on: fed other bands (B05 where it learnt B08), a model runs and makes garbage
    with no error. ``recorded_by`` and ``fix`` word the message for the caller."""
    if recorded is None:
        return
    given, trained = validate_bands(bands), validate_bands(recorded)
    if given != trained:
        raise ConfigError(f"bands {','.join(given)}: {path} was trained on bands "
                          f"{','.join(trained)} ({recorded_by}), in that order; {fix}")


def checkpoint_bands(checkpoint: Checkpoint) -> list[str] | None:
    """The bands a checkpoint's model was trained on: its ``bands`` entry (``generator.pth``,
    registry files), or the run config's ``data.bands`` in a training run's Lightning
    ``.ckpt``; None when it says neither."""
    if checkpoint.extra.get("bands"):  # (a list, or "tci,b08" as a string)
        return list(validate_bands(checkpoint.extra["bands"]))
    config = checkpoint.extra.get("zoomsr_config")
    data = config.get("data") if isinstance(config, dict) else None
    if isinstance(data, dict) and data.get("bands"):
        return list(validate_bands(data["bands"]))
    return None


#: ``precision`` values (``--precision``): ``auto`` is bf16 autocast on CUDA, else fp32.
PRECISIONS = ("auto", "fp32", "bf16")


def build_inference_model(
    *,
    weights: str | os.PathLike[str] | None = None,
    model: str | None = None,
    config: dict[str, Any] | None = None,
    random_weights: bool = False,
    device: str = "auto",
    precision: str = "auto",
    label: str | None = None,
    seed: int = 0,
    bands: Sequence[str] | str | None = None,
    sample_steps: int | None = None,
    cuda_graphs: bool | None = None,
) -> InferenceModel:
    """Build the model for inference.

    - ``weights`` = a registry name (``zoomsr weights list``: ``"zoomsr-multi8"``,
      ``"esrgan-8"``...): its cached file, with the entry's architecture, config and bands.
    - ``weights`` = a checkpoint path: a zoomsr checkpoint rebuilds itself
      (:func:`~zoomsr.models.from_checkpoint`); other formats (BasicSR ``.pth``...) need
      ``model`` (+ ``config``) and are loaded with :func:`~zoomsr.models.load_checkpoint`.
    - ``random_weights=True``: ``model`` + ``config`` with seeded random weights (tests,
      benchmarks); never implied.

    ``precision``: ``auto`` (bf16 autocast on CUDA, fp32 elsewhere), ``fp32`` or ``bf16``.
    ``bands``: what each frame holds (``"tci"``, or ``"tci,b08"`` for esrgan-10m...); default:
    the bands a zoomsr checkpoint was trained on, else TCI only. SR3 is sampled with DDIM in
    ``sample_steps`` steps (default 50, at most the model's ``num_timesteps``), its noise
    seeded by ``seed`` (which also seeds random weights). ``cuda_graphs=True``: replay the
    forward from CUDA graphs (:mod:`zoomsr.inference.graphs`; a CUDA device and a model run
    once a call, not SR3); default: as ``ZOOMSR_CUDA_GRAPHS`` says (``1``/``on``, where it
    can run), else off.
    """
    dev = resolve_device(device)
    check_choice("precision", precision, PRECISIONS)
    autocast = precision == "bf16" or (precision == "auto" and dev.type == "cuda")
    if weights is not None and random_weights:
        raise ConfigError("give either weights or random_weights, not both")
    if weights is None and not random_weights:
        raise ConfigError("no weights: pass a checkpoint or a registry name (--weights; in "
                          "Python weights=...), or random_weights=True with model=NAME")
    if weights is not None and not Path(weights).is_file():
        from zoomsr.weights import fetch, registry

        if str(weights) in registry.REGISTRY:
            entry = registry.get_entry(str(weights))
            registry.check_given(entry, model, config)  # (-c merged then failed to load)
            if bands is not None and validate_bands(bands) != entry.bands:
                raise ConfigError(f"--bands {','.join(validate_bands(bands))}: {entry.name} "
                                  f"takes bands {','.join(entry.bands)}")
            return build_inference_model(
                weights=fetch.resolve(entry.name), model=entry.model,
                config={**entry.config, **(config or {})}, device=device, precision=precision,
                label=label or entry.name, seed=seed, bands=entry.bands,
                sample_steps=sample_steps, cuda_graphs=cuda_graphs)
    if weights is not None:
        path = require_checkpoint_file(weights, " (give a checkpoint file, or a name that "
                                       "`zoomsr weights list` shows)")
        checkpoint = read_checkpoint(path)
        trained_on = checkpoint.extra.get("dataset")
        run_config = checkpoint.extra.get("zoomsr_config")  # a training run's .ckpt
        run_data = run_config.get("data") if isinstance(run_config, dict) else None
        if trained_on is None and isinstance(run_data, dict):
            trained_on = run_data.get("dataset")
        if trained_on not in (None, "s2naip"):
            # e.g. OLI2MSI's Landsat-8 reflectance, PROBA-V's one band: not what infer feeds
            raise ConfigError(
                f"{path}: trained on the {trained_on} dataset, not on Sentinel-2 TCI/bands as "
                "`zoomsr infer` feeds them; score it on its dataset with `zoomsr "
                "evaluate-model` (or zoomsr.evaluation.evaluate_model)")
        recorded = checkpoint_bands(checkpoint)
        if bands is None:
            bands = recorded
        else:
            check_recorded_bands(path, bands, recorded)
        module = rebuild(checkpoint, model, config, stacklevel=3)  # (the file read once)
        source, digest = str(Path(path).resolve()), sha256_file(path)  # tags: from anywhere
    else:
        if model is None:
            raise ConfigError("random weights need a model name (--model)")
        torch.manual_seed(seed)
        module = create_model(model, **(config or {}))
        source, digest = f"random(seed={seed})", sha256_state(module)
    return _inference_model(module, source, digest, dev, autocast, bands, label,
                            sample_steps, seed, cuda_graphs)


def wrap_model(
    module: nn.Module,
    *,
    bands: Sequence[str] | str | None = None,
    device: str = "auto",
    precision: str = "auto",
    label: str | None = None,
    sample_steps: int | None = None,
    seed: int = 0,
    cuda_graphs: bool | None = None,
    n_images: int | None = None,
    layout: str | None = None,
    scale: int | None = None,
) -> InferenceModel:
    """A model already in memory (trained in a notebook, loaded by your own code) made ready
    for :func:`~zoomsr.inference.run_inference`, as :func:`build_inference_model` makes one
    from a file: moved to ``device`` in eval mode (the module itself, not a copy; an SRCNN's
    or HighRes-net's fixed ``output_size`` is cleared, as infer runs them at their zoom), its
    ``weights`` tag ``in-memory``, its ``weights_sha256`` that of its tensors.

    A zoomsr model (from :func:`~zoomsr.models.create_model`) says how it is fed; give
    ``n_images``, ``layout`` (``"stacked"``: ``[B, T*C, h, w]``; ``"frames"``: ``[B, T, C, h,
    w]``) and ``scale`` only for another ``nn.Module``, which must return ``[B, 3, h*scale,
    w*scale]`` in [0, 1]. The other arguments are :func:`build_inference_model`'s. The Ray
    path (``ray_address``) takes zoomsr models only: its workers rebuild them by name.

    Raises:
        ConfigError: a module zoomsr does not know without ``n_images``/``layout``/``scale``,
            or values of those that a zoomsr model's config contradicts.
    """
    if not isinstance(module, nn.Module):
        raise ConfigError(f"wrap_model takes a torch nn.Module, not {type(module).__name__}")
    dev = resolve_device(device)
    check_choice("precision", precision, PRECISIONS)
    autocast = precision == "bf16" or (precision == "auto" and dev.type == "cuda")
    given = {"n_images": n_images, "layout": layout, "scale": scale}
    if layout is not None:
        check_choice("layout", layout, ("stacked", "frames"))
    for key in ("n_images", "scale"):
        value = given[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ConfigError(f"{key} must be an integer >= 1, got {value!r}")
    if getattr(module, "name", None) not in _INFER_MODELS \
            and any(v is None for v in given.values()):
        missing = ", ".join(k for k, v in given.items() if v is None)
        raise ConfigError(f"{type(module).__name__} is not a zoomsr model: give {missing} "
                          "(how many frames it takes, its input layout, its scale)")
    return _inference_model(module, "in-memory", sha256_state(module), dev, autocast, bands,
                            label, sample_steps, seed, cuda_graphs, given)


#: The architectures infer feeds (:func:`_spec` knows their inputs).
_INFER_MODELS = ("rrdbnet", "srcnn", "highresnet", "sr3")


def _inference_model(module: nn.Module, source: str, digest: str, dev: torch.device,
                     autocast: bool, bands: Sequence[str] | str | None, label: str | None,
                     sample_steps: int | None, seed: int, cuda_graphs: bool | None,
                     given: dict[str, Any] | None = None) -> InferenceModel:
    """The :class:`InferenceModel` of ``module``; ``given``: its n_images, layout and scale
    as the caller says them (a zoomsr model's checked against its config; another module's
    taken as they are), None for a zoomsr model's own."""
    band_list = validate_bands(bands if bands is not None else ("tci",))
    if given is not None and getattr(module, "name", None) not in _INFER_MODELS:
        n_images, layout, scale = given["n_images"], given["layout"], given["scale"]
    else:
        n_images, layout, scale = _spec(module, band_list, bands_defaulted=bands is None)
        said = {"n_images": n_images, "layout": layout, "scale": scale}
        for key, value in (given or {}).items():
            if value is not None and value != said[key]:
                raise ConfigError(f"{key}={value}: this {module.name} takes {key}="
                                  f"{said[key]} (its config says so); leave {key} out")
    _check_sample_steps(module, sample_steps)
    requested = graphs_requested(cuda_graphs)
    graphs = use_cuda_graphs(cuda_graphs, dev, getattr(module, "name", None) == "sr3")
    module = module.to(dev).eval()
    if dev.type == "cuda":
        module = module.to(memory_format=torch.channels_last)
    return InferenceModel(
        module=module,
        label=cast(str, label or getattr(module, "name", type(module).__name__)),
        n_images=n_images,
        layout=layout,
        scale=scale,
        weights=source,
        weights_sha256=digest,
        device=dev,
        autocast=autocast,
        config=dict(getattr(module, "config", {}) or {}),
        bands=band_list,
        sample_steps=sample_steps,
        sample_seed=seed,
        cuda_graphs=graphs,
        graphs_requested=requested,
    )


#: ``1``/``on`` (or ``0``/``off``): CUDA graphs for every model :func:`build_inference_model`
#: builds without ``cuda_graphs`` (any other value fails those builds, on any device).
GRAPHS_ENV = "ZOOMSR_CUDA_GRAPHS"


def graphs_requested(asked: bool | None) -> bool:
    """Whether CUDA graphs are asked for: ``asked``, else :data:`GRAPHS_ENV` (an unknown value
    is refused, naming it), else not."""
    if asked is not None:
        return bool(asked)
    value = os.environ.get(GRAPHS_ENV, "").strip().lower()
    if value in ("", "0", "off", "false", "no"):
        return False
    if value in ("1", "on", "true", "yes"):
        return True
    raise ConfigError(f"{GRAPHS_ENV}={os.environ[GRAPHS_ENV]}: expected 1 (on) or 0 (off)")


def cuda_graphs_possible(device: torch.device, diffusion: bool) -> bool:
    """Whether CUDA graphs can replay a model's forward: on a CUDA device, for a model run
    once a call (not a diffusion sampler)."""
    return device.type == "cuda" and not diffusion


def use_cuda_graphs(asked: bool | None, device: torch.device, diffusion: bool) -> bool:
    """Whether a model on ``device`` replays its forward from CUDA graphs. ``asked``: the
    caller's choice (True where they cannot run is refused), None for :data:`GRAPHS_ENV`'s
    (applied where they can run)."""
    if asked is None:
        return cuda_graphs_possible(device, diffusion) and graphs_requested(None)
    if asked and device.type != "cuda":
        raise ConfigError(f"CUDA graphs need a CUDA device; the model is on {device}")
    if asked and diffusion:
        raise ConfigError("CUDA graphs apply to models run once a call, not to sr3's sampler")
    return bool(asked)


def _check_sample_steps(module: nn.Module, steps: int | None) -> None:
    name = getattr(module, "name", type(module).__name__)
    if steps is None:
        return
    if name != "sr3":
        raise ConfigError(f"--sample-steps applies to diffusion models (sr3), not {name}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"--sample-steps must be an integer >= 1, got {steps!r}")
    limit = int(module.num_timesteps)  # type: ignore[arg-type]  # (SR3's int)
    if steps > limit:
        raise ConfigError(f"--sample-steps {steps}: this sr3 model has {limit} timesteps")
