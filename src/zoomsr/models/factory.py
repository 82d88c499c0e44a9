"""The one place that maps model names to classes: build, describe and rebuild models."""

from __future__ import annotations

import inspect
import os
import types
import typing
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from zoomsr.errors import CheckpointError, ConfigError, InputError, ZoomsrWarning, first_line
from zoomsr.models.checkpoints import (
    Checkpoint,
    _find_prefix,
    apply_state_dict,
    check_finite,
    match_state_dict,
    read_checkpoint,
    unnamed_model_error,
)
from zoomsr.models.discriminator import UNetDiscriminatorSN
from zoomsr.models.highresnet import HighResNet
from zoomsr.models.rrdbnet import RRDBNet
from zoomsr.models.rrdbnet import config_from_state_dict as rrdbnet_config
from zoomsr.models.sr3 import SR3
from zoomsr.models.srcnn import SRCNN
from zoomsr.validate import check_config_values


class ModelClassInfo(Protocol):
    """What each class in :data:`MODELS` declares beside being an ``nn.Module`` subclass."""

    description: str
    input_layout: str
    output_layout: str


MODELS: dict[str, type[nn.Module]] = {
    "srcnn": SRCNN,
    "highresnet": HighResNet,
    "rrdbnet": RRDBNet,
    "unet_discriminator_sn": UNetDiscriminatorSN,
    "sr3": SR3,
}


def model_class(name: str) -> type[nn.Module]:
    """The class registered as ``name``; :class:`InputError` listing the names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise InputError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None


@dataclass(frozen=True)
class ConfigField:
    """One constructor argument of a model: its name, type and default."""

    name: str
    annotation: Any
    default: Any


def config_fields(name: str) -> dict[str, ConfigField]:
    """The config keys of model ``name`` (its constructor arguments), in order."""
    cls = model_class(name)
    hints = typing.get_type_hints(cls.__init__)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # skip self
    return {p.name: ConfigField(p.name, hints.get(p.name, Any), p.default) for p in params}


def default_config(name: str) -> dict[str, Any]:
    """The default config of model ``name``."""
    return {key: f.default for key, f in config_fields(name).items()}


def create_model(name: str, **config: Any) -> nn.Module:
    """Build model ``name`` with ``config`` (keys as in :func:`config_fields`), randomly
    initialised and in training mode, as PyTorch's constructors return modules
    (:func:`~zoomsr.models.from_checkpoint` returns a loaded model in eval mode).

    Raises :class:`InputError` for an unknown name and :class:`ConfigError` naming the key for
    an unknown key or a bad value (wrong type, NaN/inf, out of range: see
    :func:`~zoomsr.validate.check_config_values` and the constructors' checks).
    """
    fields = config_fields(name)
    unknown = [key for key in config if key not in fields]
    if unknown:
        raise ConfigError(
            f"unknown config key {unknown[0]!r} for model {name!r}; valid keys: {', '.join(fields)}"
        )
    # NumPy scalars (a value computed from an array) as Python numbers: the config is
    # recorded as JSON in checkpoints
    config = {key: value.item() if isinstance(value, np.generic) else value
              for key, value in config.items()}
    check_config_values(config)
    return MODELS[name](**config)


#: Models whose config their tensors tell (the others' do not: SRCNN's and HighRes-net's
#: channels are images x bands, split either way; SR3's noise schedule is not in them).
_CONFIG_FROM_TENSORS = {"rrdbnet": rrdbnet_config}
#: The anchor tensor each one's prefix is found by.
_ANCHOR = {"rrdbnet": "conv_first.weight"}


def _unprefixed(state: Mapping[str, Any], anchor: str) -> Mapping[str, Any] | None:
    """``state`` under the prefix ``anchor`` appears with ("generator.", "module."...), chosen
    as the loader chooses (:func:`~zoomsr.models.checkpoints._find_prefix`: the bare one, else
    an EMA copy's); None when it is ambiguous."""
    try:
        prefix = _find_prefix(list(state), {anchor})
    except CheckpointError:  # several copies, none of them an EMA one: not guessed
        return None
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def infer_config(name: str, state: Mapping[str, Any]) -> dict[str, Any] | None:
    """The config of model ``name`` that ``state`` (a checkpoint's tensors, any key prefix)
    was saved from, where its tensors tell it (RRDBNet: ``num_in_ch``, ``num_out_ch``,
    ``num_feat``, ``num_block``, ``num_grow_ch``, ``scale`` 3/4/8/16); None otherwise."""
    infer = _CONFIG_FROM_TENSORS.get(name)
    bare = _unprefixed(state, _ANCHOR[name]) if infer else None
    return infer(bare) if infer and bare is not None else None


def inferred_note(origin: str, name: str, config: Mapping[str, Any]) -> str:
    """The warning that ``origin``'s model was read from its tensors as ``name`` ``config``
    (for RRDBNet x4: that a scale 2 or 1 model has the same tensors)."""
    said = " ".join(f"{k}={v}" for k, v in config.items())
    note = f"{origin} records no model: read from its tensors as {name} {said}"
    if name == "rrdbnet" and config.get("scale") == 4:
        note += (" (a scale 2 or 1 model has the same tensors: if it is one, give --model "
                 "rrdbnet -c scale=2, or scale=1; in Python, build it with that scale)")
    return note


def infer_model(state: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(name, config)`` of the model whose tensors ``state`` holds, where they tell it."""
    for name in _CONFIG_FROM_TENSORS:
        config = infer_config(name, state)
        if config is not None:
            return name, config
    return None


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _parse_value(key: str, text: str, annotation: Any) -> Any:
    text = text.strip()
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if text.lower() in {"none", "null"}:
            return None
        annotation = options[0] if len(options) == 1 else Any
        origin = typing.get_origin(annotation)
    try:
        if annotation is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(text)
        if annotation is int:
            return int(text)
        if annotation is float:
            return float(text)
        if origin is tuple:
            items = text.strip("()[] ").replace(":", ",").split(",")
            return tuple(int(item) for item in items if item.strip())
        if annotation is str:
            return text
    except ValueError:
        kind = getattr(annotation, "__name__", str(annotation))
        if origin is tuple:
            kind = "list of integers (e.g. 1,2,4)"
        raise ConfigError(f"config key {key!r}: {text!r} is not a valid {kind}") from None
    # No precise annotation: the most specific literal that parses.
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if text.lower() in _TRUE | _FALSE:
        return text.lower() in _TRUE
    return text


def parse_config(name: str, items: Iterable[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings (each may hold several, comma-separated) into a typed config.

    Values are converted by the type of the constructor argument (int, float, bool, str,
    lists of ints such as ``channel_mults=1,2,4``). Unknown keys and bad values raise
    :class:`ConfigError` naming the key.
    """
    fields = config_fields(name)
    pairs: list[list[str]] = []
    for item in items:
        for i, piece in enumerate(item.split(",")):
            if "=" in piece:
                key, _, value = piece.partition("=")
                pairs.append([key.strip(), value])
            elif pairs and i and piece.strip():
                # the next element of a list value, in the same item (-c channel_mults=1,2,4);
                # a separate -c item is a key of its own
                pairs[-1][1] += "," + piece
            elif piece.strip():
                raise ConfigError(f"expected key=value, got {piece.strip()!r}")
    config: dict[str, Any] = {}
    for key, value in pairs:
        if key not in fields:
            raise ConfigError(
                f"unknown config key {key!r} for model {name!r}; valid keys: {', '.join(fields)}"
            )
        config[key] = _parse_value(key, value, fields[key].annotation)
    return config


@dataclass(frozen=True)
class ModelInfo:
    """Size and cost of a model configuration."""

    name: str
    description: str
    config: dict[str, Any]
    parameters: int  # all, as in a checkpoint
    parameters_used: int  # those of the modules a forward pass runs
    gflops: float  # 1e9 FLOPs of one forward pass on one LR chunk; a multiply-add is 2 FLOPs
    flops_note: str
    input_layout: str
    output_layout: str
    input_shapes: list[list[int]]
    output_shape: list[int]


def count_flops(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """FLOPs of ``model(*inputs)`` counted by torch's ``FlopCounterMode``.

    A multiply-add counts as 2 FLOPs (so ESRGAN, 8 images, 32x32 input: 36.7 GFLOPs = 18.3
    GMACs); convolutions, matrix products and attention are counted, element-wise ops are not.
    """
    return _count_flops(model, inputs)[0]


def _count_flops(model: nn.Module, inputs: tuple[torch.Tensor, ...]
                 ) -> tuple[int, Any, int]:
    """FLOPs, output and the number of parameters of the modules the forward pass ran."""
    # imported here: it imports triton where installed, and a Ctrl-C during that import
    # became an ImportError torch logs and goes on from, so every command's start-up could
    # swallow a Ctrl-C and run on
    from torch.utils.flop_counter import FlopCounterMode

    ran: set[int] = set()
    used: dict[int, int] = {}

    def record(module: nn.Module, args: Any, out: Any) -> None:
        if id(module) not in ran:
            ran.add(id(module))
            used.update({id(p): p.numel() for p in module.parameters(recurse=False)})

    hooks = [m.register_forward_hook(record) for m in model.modules()]
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            output = model(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return int(counter.get_total_flops()), output, sum(used.values())


def model_info(name: str, lr_size: int = 32, **config: Any) -> ModelInfo:
    """Parameters and GFLOPs per ``lr_size`` x ``lr_size`` LR chunk of model ``name``.

    The model is built on the ``meta`` device, so this is instant even for large configs.
    Parameters shared by several modules are counted once; ``parameters_used`` leaves out the
    modules the forward pass never runs (HighRes-net keeps its parent's for the checkpoint
    layout).
    """
    cls = cast(ModelClassInfo, model_class(name))
    with torch.device("meta"):
        model = create_model(name, **config).eval()
        inputs = model.example_inputs(lr_size)  # type: ignore[operator]  # (nn.Module's getattr)
    try:
        flops, output, used = _count_flops(model, inputs)
    except (RuntimeError, InputError) as exc:  # e.g. a 1 px input for reflection padding
        reason = first_line(exc)
        # a size a model needs divisible (RRDBNet x1/x2, the discriminator) may be too large
        advice = "use a divisible size" if "divisible" in reason else "use a larger size"
        raise ConfigError(f"lr_size {lr_size}: {name} cannot run on a {lr_size}x{lr_size} "
                          f"input ({reason}); {advice}") from None
    return ModelInfo(
        name=name,
        description=cls.description,
        config=dict(model.config),  # type: ignore[arg-type]  # (nn.Module's getattr)
        parameters=sum(p.numel() for p in model.parameters()),
        parameters_used=used,
        gflops=flops / 1e9,
        flops_note=getattr(cls, "flops_note", "per forward pass"),
        input_layout=cls.input_layout,
        output_layout=cls.output_layout,
        input_shapes=[list(t.shape) for t in inputs],
        output_shape=list(output.shape),
    )


def from_checkpoint(
    path: str | os.PathLike[str],
    *,
    strict: bool = True,
    key: str | None = None,
    prefix: str | None = None,
    weights_only: bool = True,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Rebuild the model saved in ``path`` from its stored name and config; return it in eval mode.

    Works for files written by :func:`~zoomsr.models.save_checkpoint` or carrying a ``zoomsr``
    entry, and for an RRDBNet's from elsewhere (BasicSR, Lightning: its config from its
    tensors, :func:`infer_config`; scale 4 for two upsampling convs); for other checkpoints use
    :func:`create_model` and :func:`~zoomsr.models.load_checkpoint`.
    """
    checkpoint = read_checkpoint(
        path, key=key, weights_only=weights_only, map_location=map_location
    )
    return rebuild(checkpoint, strict=strict, prefix=prefix, stacklevel=3).to(map_location)


def rebuild(checkpoint: Checkpoint, model: str | None = None,
            config: Mapping[str, Any] | None = None, *, strict: bool = True,
            prefix: str | None = None, stacklevel: int = 2) -> nn.Module:
    """The model in a checkpoint already read (its file not read again), on the device its
    tensors were read to, in eval mode.

    ``model`` None: the model the file records (a zoomsr checkpoint), else the one its tensors
    tell (:func:`infer_model`; a ``warning`` says what was assumed). ``model`` given: that
    architecture (refused when the file records another), with its config from the file's
    record, else from its tensors (:func:`infer_config`), else the defaults. ``config``: values
    over those; one the file records otherwise is refused (e.g. an SR3's noise schedule: not
    in its tensors, so any value would load and silently change every output). For RRDBNet
    read from its tensors, ``scale`` alone (2 or 1) rescales ``num_in_ch`` as BasicSR's
    pixel-unshuffle input does. ``stacklevel``: of that warning.

    Raises:
        CheckpointError: no model recorded nor told by the tensors; tensors that do not fit.
        ConfigError: ``model``/``config`` against what the file records.
    """
    recorded, given = checkpoint.model_name, dict(config or {})
    where = Path(checkpoint.path).name
    if model is not None and recorded not in (None, model):
        raise ConfigError(f"--model {model}: {where} holds a {recorded} model (zoomsr "
                          "recorded it); leave --model out")
    name: str | None
    if recorded is not None:
        name, cfg = recorded, dict(checkpoint.model_config or {})
        for key, value in given.items():
            if key in cfg and not same_config_value(cfg[key], value):
                raise ConfigError(f"-c {key}={value}: {where} was saved with {key}={cfg[key]}; "
                                  "leave it out (the checkpoint gives its config)")
        if strict and prefix is None and all(k in cfg for k in given):
            fast = _assigned(checkpoint)
            if fast is not None:
                return fast
    else:
        if model is None:
            name, inferred = infer_model(checkpoint.state_dict) or (None, None)
            if name is None:
                raise unnamed_model_error(checkpoint.path)
        else:
            name, inferred = model, infer_config(model, checkpoint.state_dict)
        cfg = dict(inferred or {})
        if inferred and name == "rrdbnet" and "scale" in given and "num_in_ch" not in given:
            from zoomsr.models.rrdbnet import rescaled_config

            cfg = rescaled_config(inferred, given["scale"])
        elif inferred and "scale" not in given:
            warnings.warn(inferred_note(str(checkpoint.path), name, {**inferred, **given}),
                          ZoomsrWarning, stacklevel=stacklevel)
    cfg.update(given)
    try:
        built = create_model(name, **cfg)
    except InputError as exc:
        if given:  # the caller's values: their own error says which
            raise
        raise CheckpointError(f"{checkpoint.path}: cannot rebuild the model: {exc}") from exc
    apply_state_dict(
        built,
        checkpoint.state_dict,
        strict=strict,
        prefix=prefix,
        source=checkpoint.source,
        origin=f"checkpoint {checkpoint.path}",
    )
    return built.eval()


def _assigned(checkpoint: Checkpoint) -> nn.Module | None:
    """A zoomsr checkpoint's model built without its random initialisation (meta device, the
    file's tensors assigned): seconds saved for a 16.7 M-parameter ESRGAN. None (the caller
    takes the slow path, whose errors name the file) unless the keys and shapes match exactly
    and every tensor ends up real. Floating-point tensors saved in another precision (fp16,
    bf16) are cast to the model's: ``assign`` would keep the file's dtype, and an fp32 input
    would then meet fp16 weights."""
    try:
        with torch.device("meta"):
            module = create_model(str(checkpoint.model_name), **(checkpoint.model_config or {}))
    except InputError:
        return None
    if any(parametrize.is_parametrized(m) or m._load_state_dict_pre_hooks
           for m in module.modules()):
        return None  # (spectral norm: its weight is computed from the tensors loaded)
    try:  # the slow path's checks (a shared module's names holding different tensors...)
        result, given = match_state_dict(module, checkpoint.state_dict, prefix="",
                                         origin=f"checkpoint {checkpoint.path}")
    except CheckpointError:
        return None  # (the slow path raises it again, naming the file)
    expected = module.state_dict()
    if not result.complete or set(expected) != set(given):
        return None
    state = {}
    for key, want in expected.items():
        got = given[key]
        if got.shape != want.shape:
            return None
        if got.dtype != want.dtype:
            if not (got.is_floating_point() and want.is_floating_point()):
                return None
            got = got.to(want.dtype)
        state[key] = got
    check_finite(state, f"checkpoint {checkpoint.path}")
    module.load_state_dict(state, strict=True, assign=True)
    if any(t.device.type == "meta" for t in [*module.parameters(), *module.buffers()]):
        return None
    return module.eval()


def same_config_value(a: Any, b: Any) -> bool:
    """Whether two config values are equal as JSON gives them back (tuples as lists)."""
    return _plain(a) == _plain(b)


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
