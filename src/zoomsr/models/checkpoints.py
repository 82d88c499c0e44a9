"""Reading and writing model checkpoints.

Formats read by :func:`read_checkpoint` / :func:`load_checkpoint`:

- BasicSR-style ``.pth`` (the published ESRGAN weights): a dict with ``params_ema`` and/or
  ``params``; ``params_ema`` is preferred.
- zoomsr checkpoints (:func:`save_checkpoint`) and Lightning ``.ckpt`` files: a dict with a
  ``state_dict`` entry; a top-level ``zoomsr`` entry holds the model name and config.
- a plain state dict (``{name: tensor}``) in ``.pth`` / ``.pt`` / ``.ckpt``.
- ``.safetensors``; the file metadata ``zoomsr`` (JSON) holds the model name and config.

Key prefixes (``module.``, ``generator.``, ``model.``, ``state_dict.``...) are found by matching
the checkpoint keys against the model: the prefix under which most model keys appear is
stripped, and keys outside it (a discriminator, an optimizer...) are ignored. Ties prefer no
prefix, then a prefix naming an EMA copy; otherwise pass ``prefix=`` explicitly.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
import zipfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from zoomsr.errors import CheckpointError, InputError
from zoomsr.io.atomic import atomic_path
from zoomsr.io.sniff import torch_file_kind, what_file

METADATA_KEY = "zoomsr"
FORMAT_VERSION = 1
TORCH_SUFFIXES = (".pth", ".pt", ".ckpt")
# Searched in this order when no ``key`` is given; BasicSR keeps the EMA generator in params_ema.
STATE_DICT_KEYS = ("params_ema", "params", "state_dict")
_LIST_LIMIT = 10
#: Keys shown per kind (missing, unexpected, shape conflict) when a checkpoint does not match.
_KEY_EXAMPLES = 3


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's tensors and, when saved by zoomsr, the model name and config."""

    path: Path
    state_dict: dict[str, Tensor]
    model_name: str | None = None
    model_config: dict[str, Any] | None = None
    source: str = ""  # where the tensors came from: "params_ema", "state_dict", "top level"...
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadResult:
    """What :func:`load_checkpoint` loaded: keys that did not match are listed here."""

    missing: list[str]
    unexpected: list[str]
    shape_mismatch: list[tuple[str, tuple[int, ...], tuple[int, ...]]]
    prefix: str = ""
    source: str = ""

    @property
    def complete(self) -> bool:
        """True when every model tensor was loaded and nothing was left over."""
        return not (self.missing or self.unexpected or self.shape_mismatch)


def checkpoint_metadata(model: nn.Module) -> dict[str, Any]:
    """The ``zoomsr`` entry that lets :func:`~zoomsr.models.from_checkpoint` rebuild ``model``.

    Trainers embed it in their own checkpoints (``checkpoint["zoomsr"] = ...``).
    """
    name = getattr(model, "name", None)
    config = getattr(model, "config", None)
    if not isinstance(name, str) or not isinstance(config, dict):
        raise InputError(
            f"{type(model).__name__} is not a zoomsr model (it needs `name` and `config`)"
        )
    return {
        "model": name,
        "config": json.loads(json.dumps(config)),  # tuples -> lists: one form for both formats
        "format_version": FORMAT_VERSION,
    }


def save_checkpoint(model: nn.Module, path: str | os.PathLike[str], **extra: Any) -> Path:
    """Save ``model``'s weights with its name and config, atomically; return the path. An
    existing file there is replaced (as ``torch.save`` does; the commands that write outputs
    refuse one unless ``--overwrite``).

    ``.pth`` / ``.pt`` / ``.ckpt``: ``{"zoomsr": metadata, "state_dict": ..., **extra}``
    (``extra`` may hold tensors, e.g. an optimizer state). ``.safetensors``: the tensors, with
    the metadata and ``extra`` (JSON-serialisable values only) in the file metadata.
    """
    path = Path(path)
    meta = checkpoint_metadata(model)
    if any(t.is_meta for t in model.state_dict().values()):
        raise InputError(f"cannot save {path}: {type(model).__name__} has weights on the meta "
                         "device (never initialised or loaded); load weights into it first")
    state = {name: t.detach().to("cpu") for name, t in model.state_dict().items()}
    extra = {key: _plain_extra(value, key) for key, value in extra.items()}
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import save

        try:
            extra_json = json.dumps(extra)
        except TypeError as exc:
            raise InputError(f"extra entries for a .safetensors file must be JSON: {exc}") from exc
        # Shared modules (SRCNN's fusion, HighRes-net's fusion levels) appear under several
        # names; safetensors refuses shared storage, so each name gets its own copy, which
        # keeps the file loadable with a plain strict load_state_dict.
        tensors = {name: t.contiguous().clone() for name, t in state.items()}
        metadata = {METADATA_KEY: json.dumps(meta), "format": "pt"}
        if extra:
            metadata["extra"] = extra_json
        data = _sorted_metadata(save(tensors, metadata=metadata))
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    elif suffix in TORCH_SUFFIXES:
        reserved = sorted({METADATA_KEY, *STATE_DICT_KEYS} & extra.keys())
        if reserved:
            raise InputError(f"extra entries may not be named {', '.join(reserved)}")
        payload = {METADATA_KEY: meta, "state_dict": state, **extra}
        # through a file object: given a path, torch.save names the archive's folder after
        # the (temporary, random) file name, so the same checkpoint had different bytes
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(payload, f)
    else:
        raise InputError(
            f"cannot save {path}: use a .safetensors, {', '.join(TORCH_SUFFIXES)} file name"
        )
    return path


def _plain_extra(value: Any, key: str) -> Any:
    """``value`` as what a ``weights_only`` load reads back: NumPy scalars become Python
    numbers and paths strings; other objects are refused (every loader of zoomsr reads with
    ``weights_only=True``, so the file would be refused when read instead)."""
    if value is None or isinstance(value, (bool, int, float, str, bytes, Tensor, torch.dtype,
                                           torch.Size)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):  # a namedtuple too, as a plain one
        items = [_plain_extra(v, key) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, Mapping):
        return {k: _plain_extra(v, key) for k, v in value.items()}
    raise InputError(f"extra entry {key!r} is a {type(value).__name__}: a checkpoint holds "
                     "numbers, strings, tensors and lists or dicts of them")


def _sorted_metadata(data: bytes) -> bytes:
    """A safetensors file with its metadata entries in sorted order. safetensors writes them
    from a hash map, in a different order each time: the same checkpoint had different bytes
    (and checksums). The layout: header length (u64, little-endian), the JSON header padded
    with spaces to a multiple of 8 bytes, then the tensor data, whose offsets are relative to
    its start."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n :]


_AGAIN = "download or save it again"


def _not_a_checkpoint(path: Path, detail: str, todo: str = _AGAIN) -> CheckpointError:
    return CheckpointError(f"{path} is not a readable PyTorch checkpoint ({detail}); {todo}")


def _torch_load(path: Path, weights_only: bool, map_location: str | torch.device) -> Any:
    try:
        with warnings.catch_warnings():  # torch's note on odd pickle protocols (garbage bytes)
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            # weights_only=False hands a TorchScript archive to torch.jit.load, with a note
            warnings.filterwarnings("ignore", message=".*looks like a TorchScript archive")
            warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated")
            return torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, zip errors...
        kind = torch_file_kind(path)
        text = f"{exc} {exc.__context__ or ''}"
        if weights_only and "TorchScript" in text:
            raise CheckpointError(
                f"{path} is a TorchScript archive (torch.jit.save), which a safe load refuses; "
                "if you trust the file: Python: load it with weights_only=False (its state "
                "dict is used); CLI: pass a copy saved from Python with "
                "save_checkpoint(model, 'model.safetensors')"
            ) from exc
        if (
            weights_only
            and kind is not None
            and isinstance(exc, pickle.UnpicklingError)
            and "Unsupported operand" not in text  # garbage bytes inside a torch layout
        ):
            found = sorted(set(re.findall(r"GLOBAL ([\w.]+)", text)))
            what = f" ({', '.join(found)})" if found else ""
            raise CheckpointError(
                f"{path} holds pickled Python objects{what} besides its tensors, which a safe "
                "load refuses; if you trust the file: Python: load it with weights_only=False "
                "(read_checkpoint, load_checkpoint, from_checkpoint); CLI: pass a copy saved "
                "from Python with save_checkpoint(model, 'model.safetensors')"
            ) from exc
        if kind is None:
            raise _not_a_checkpoint(path, *what_file(path)) from exc
        message = str(exc).strip()
        reason = message.split(". ")[0].splitlines()[0][:160] if message else type(exc).__name__
        damaged = (EOFError, IndexError, pickle.UnpicklingError, zipfile.BadZipFile)
        if isinstance(exc, damaged) or "PytorchStreamReader" in message:
            detail = f"a damaged or truncated torch.save file: {reason}"
            raise _not_a_checkpoint(path, detail) from exc
        raise CheckpointError(f"cannot read checkpoint {path}: {reason}") from exc


def _read_safetensors(
    path: Path, map_location: str | torch.device
) -> tuple[dict[str, Tensor], dict[str, str]]:
    from safetensors import safe_open

    device = str(map_location)
    try:
        with safe_open(str(path), framework="pt", device=device) as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own SafetensorError, or OSError
        if torch_file_kind(path) is not None:  # (the other way round is caught for torch)
            raise CheckpointError(f"{path} is a torch.save file, not safetensors: rename it "
                                  "to .pth") from exc
        what = what_file(path)[0]
        if what == "an empty file":
            raise CheckpointError(f"{path} is an empty file; download or save it again") \
                from exc
        raise CheckpointError(
            f"{path} is not a readable safetensors file (corrupt, truncated, or another "
            f"format: {exc}); download or save it again"
        ) from exc
    return tensors, metadata


def _parse_metadata(path: Path, meta: Any) -> tuple[str | None, dict[str, Any] | None]:
    if meta is None:
        return None, None
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: unreadable '{METADATA_KEY}' metadata: {exc}") from exc
    if (
        not isinstance(meta, Mapping)
        or not isinstance(meta.get("model"), str)
        or not isinstance(meta.get("config", {}), Mapping)
    ):
        raise CheckpointError(f"{path}: '{METADATA_KEY}' metadata needs a model name and config")
    version = meta.get("format_version", FORMAT_VERSION)
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        # its layout may mean something this version would read wrong
        raise CheckpointError(
            f"{path}: written in checkpoint format {version} by a newer zoomsr (this one reads "
            f"format {FORMAT_VERSION}); upgrade zoomsr (pip install -U zoomsr)")
    return meta["model"], dict(meta.get("config", {}))


def _select_state_dict(path: Path, obj: Any, key: str | None) -> tuple[Mapping[str, Any], str]:
    if isinstance(obj, nn.Module):  # torch.save(model) or TorchScript, read with weights_only=False
        return obj.state_dict(), "module"
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a dict of tensors")
    if key is not None:
        if key not in obj:
            raise CheckpointError(
                f"{path} has no entry {key!r}; top-level entries: {_names(list(map(str, obj)))}"
            )
        chosen, source = obj[key], key
    else:
        found = [k for k in STATE_DICT_KEYS if isinstance(obj.get(k), Mapping)]
        if found:
            chosen, source = obj[found[0]], found[0]
        elif obj and all(isinstance(v, Tensor) for v in obj.values()):
            chosen, source = obj, "top level"
        else:
            raise CheckpointError(
                f"{path} holds no state dict (looked for {', '.join(STATE_DICT_KEYS)} or a "
                f"plain dict of tensors); top-level entries: {_names(list(map(str, obj)))}"
            )
    if not isinstance(chosen, Mapping):
        raise CheckpointError(f"{path}: entry {source!r} is not a dict of tensors")
    bad = [str(k) for k, v in chosen.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entry {source!r} holds non-tensors: {_names(bad)}")
    return chosen, source


CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")


def require_checkpoint_file(path: str | os.PathLike[str], hint: str = "") -> Path:
    """``path`` as a Path if it is a file; else :class:`CheckpointError` saying it is missing
    or a folder (naming the checkpoint files in it). ``hint`` is added to "not found"."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.iterdir() if p.suffix.lower() in CHECKPOINT_SUFFIXES)
        inside = (f" (it holds {', '.join(found[:3])}{' ...' if len(found) > 3 else ''})"
                  if found else "")
        raise CheckpointError(f"{path}: is a folder; give a checkpoint file{inside}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}{hint}")
    return path


def read_checkpoint(
    path: str | os.PathLike[str],
    *,
    key: str | None = None,
    weights_only: bool = True,
    map_location: str | torch.device = "cpu",
    suffix: str | None = None,
) -> Checkpoint:
    """Read the tensors and metadata of a checkpoint file (formats in the module docstring).

    ``key`` picks a top-level entry of a ``.pth`` dict (default: ``params_ema``, ``params``,
    ``state_dict``, else the dict itself). ``weights_only=False`` allows arbitrary pickled
    objects: only for files you trust. ``suffix`` (default: the path's) picks the format: a
    download's temporary file needs it.
    """
    path = require_checkpoint_file(path)
    if (suffix or path.suffix).lower() == ".safetensors":
        tensors, metadata = _read_safetensors(path, map_location)
        name, config = _parse_metadata(path, metadata.get(METADATA_KEY))
        try:
            extra = json.loads(metadata["extra"]) if "extra" in metadata else {}
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: unreadable 'extra' metadata: {exc}") from exc
        return Checkpoint(path, tensors, name, config, "safetensors", extra)
    obj = _torch_load(path, weights_only, map_location)
    state, source = _select_state_dict(path, obj, key)
    if source == "module":  # no metadata beside a whole module
        return Checkpoint(path, dict(state), None, None, source, {})
    name, config = _parse_metadata(path, obj.get(METADATA_KEY))
    extra = {
        k: v for k, v in obj.items() if k != source and k != METADATA_KEY and source != "top level"
    }
    return Checkpoint(path, dict(state), name, config, source, extra)


def unnamed_model_error(path: str | os.PathLike[str]) -> CheckpointError:
    """The error for a checkpoint without zoomsr metadata where the model must be rebuilt
    from it: its architecture and config must be given, on the command line or in Python."""
    return CheckpointError(
        f"{path} does not name its model (not saved by zoomsr, e.g. a BasicSR .pth): give the "
        "architecture and its config (CLI: --model NAME [-c key=value], names in `zoomsr models "
        "list`; Python: model = create_model(NAME, **config), then load_checkpoint(model, path))"
    )


def _names(keys: list[str], limit: int = _LIST_LIMIT) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _find_prefix(keys: list[str], model_keys: set[str], origin: str = "the checkpoint") -> str:
    """The prefix under which most of ``model_keys`` appear in ``keys`` (see module doc)."""
    counts: Counter[str] = Counter()
    for key in keys:
        parts = key.split(".")
        for i in range(len(parts)):
            prefix = ".".join(parts[:i]) + "." if i else ""
            if key[len(prefix) :] in model_keys:
                counts[prefix] += 1
    if not counts:
        return ""
    best = max(counts.values())
    candidates = sorted(p for p, c in counts.items() if c == best)
    if len(candidates) == 1:
        return candidates[0]
    if "" in candidates:
        return ""
    ema = [p for p in candidates if "ema" in p.lower()]
    if len(ema) == 1:
        return ema[0]
    raise CheckpointError(
        f"{origin} holds the model under several prefixes ({_names(candidates)}); "
        f"Python: pass prefix={candidates[0]!r} (or another) to choose one; the CLI cannot "
        "choose: save the chosen model with save_checkpoint(model, 'model.safetensors')"
    )


def _mismatch_message(model: nn.Module, origin: str, result: LoadResult) -> str:
    """One line: what does not match (a few keys of each kind and the counts) and how to give
    the config that fits the file, for CLI and Python users."""
    n = _KEY_EXAMPLES
    cls = type(model).__name__
    own = {k.split(".", 1)[0] for k in model.state_dict()}
    tops = {k.split(".", 1)[0] for k in result.unexpected}
    if tops and not (result.missing or result.shape_mismatch or tops & own):
        # The whole model is there, at the top level, beside other modules (a discriminator
        # held by the module that is the generator): not a config problem. Those keys are
        # not skipped silently: an extra top-level layer may be another architecture.
        groups = _names([f"{f}.*" for f in sorted(tops)], n)
        return (
            f"{origin} holds the whole {cls} and, beside it at the top level, "
            f"{len(result.unexpected)} key(s) of other modules ({groups}), "
            "which may belong to the model in another architecture; if they do not, save the "
            "model alone (Python: load_checkpoint(model, path, strict=False), then "
            "save_checkpoint(model, 'model.safetensors'))"
        )
    # A config changes how many blocks there are (body.23.* in the file, not the model), not
    # the names' forms: names of forms the model has none of are another model's. Nothing
    # may be missing (a HighRes-net file holds every SRCNN name, its unused layers included)
    forms = {_form(k) for k in model.state_dict()}
    if result.unexpected and not any(_form(k) in forms for k in result.unexpected):
        total = len(model.state_dict())
        lacks = (f"{len(result.missing)} of the model's {total} tensors are not in it, and "
                 if result.missing else "")
        return (
            f"{origin} does not look like a {cls} checkpoint: {lacks}none of its "
            f"{len(result.unexpected)} other tensors is named as any of the model's (e.g. "
            f"{_names(result.unexpected, n)}), which no config changes: a checkpoint of "
            "another model? Load it with the model it was saved from"
        )
    parts = []
    if result.shape_mismatch:  # first: they name the config values that differ
        conflicts = [
            f"{k} (checkpoint {_shape(a)}, model {_shape(b)})" for k, a, b in result.shape_mismatch
        ]
        parts.append(f"{len(conflicts)} shape conflict(s): {_names(conflicts, n)}")
    if result.missing:
        parts.append(f"{len(result.missing)} missing key(s): {_names(result.missing, n)}")
    if result.unexpected:
        parts.append(f"{len(result.unexpected)} unexpected key(s): {_names(result.unexpected, n)}")
    name = getattr(model, "name", None)
    if isinstance(name, str):
        fix = (
            f"give the config the file was saved with (CLI: --model {name} -c key=value, "
            f"keys in `zoomsr models info {name}`; Python: create_model({name!r}, **config))"
        )
    else:
        fix = "build the model with the config the file was saved with"
    return (
        f"{origin} does not match {cls} as configured: {'; '.join(parts)}. Probably a "
        f"different config: {fix}; or, in Python, pass strict=False to load only the "
        "matching tensors"
    )


def _form(key: str) -> str:
    """A parameter name with its numbers blanked (``body.3.rdb1.conv_up3.weight`` ->
    ``body.#.rdb#.conv_up#.weight``): the same form for any number of blocks or upsamples."""
    return re.sub(r"\d+", "#", key)


def _aliases(model: nn.Module, model_state: Mapping[str, Tensor]) -> list[list[str]]:
    """Names under which the same tensor appears in ``model_state`` (a module shared under
    several names): by identity (works on the meta device too) and by storage."""
    groups: dict[Any, list[str]] = {}
    named = [*model.named_parameters(remove_duplicate=False),
             *model.named_buffers(remove_duplicate=False)]
    for name, tensor in named:
        if name in model_state:
            groups.setdefault(("id", id(tensor)), []).append(name)
    for name, tensor in model_state.items():
        if tensor.device.type != "meta" and tensor.numel():
            groups.setdefault(("storage", tensor.data_ptr(), tensor.numel()), []).append(name)
    return [sorted(set(names)) for names in groups.values() if len(set(names)) > 1]


def match_state_dict(
    model: nn.Module,
    state_dict: Mapping[str, Tensor],
    *,
    prefix: str | None = None,
    source: str = "",
    origin: str = "state dict",
) -> tuple[LoadResult, dict[str, Tensor]]:
    """Compare ``state_dict`` with ``model``'s parameter names and shapes; load nothing.

    Returns the :class:`LoadResult` (missing, unexpected and shape-conflicting keys, the
    prefix stripped: given or detected) and the state dict with the prefix stripped and
    shared-module aliases filled in. ``model`` may live on the meta device, so a published
    architecture can be checked against a file without building it for real.
    """
    model_state = model.state_dict()
    keys = list(state_dict)
    if prefix is None:
        prefix = _find_prefix(keys, set(model_state), origin)
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not state:
            raise CheckpointError(f"{origin}: no key starts with the prefix {prefix!r}")
    else:
        state = dict(state_dict)

    # A module shared under several names (SRCNN's fusion.0 is doubleconv2d) may be stored once;
    # fill the other names from it.
    for aliases in _aliases(model, model_state):
        present = [a for a in aliases if a in state]
        for other in present[1:]:
            a, b = state[present[0]], state[other]
            # (meta tensors, a layout of names and shapes alone, hold no values to compare)
            if a.shape != b.shape or (not (a.is_meta or b.is_meta) and not torch.equal(a, b)):
                # one of them would silently win: the file is of a variant without sharing
                raise CheckpointError(
                    f"{origin}: {present[0]} and {other} differ, but {type(model).__name__} "
                    "shares one module under both names (a file of another variant?)")
        if present:
            for alias in aliases:
                state.setdefault(alias, state[present[0]])

    missing = [k for k in model_state if k not in state]
    unexpected = [k for k in state if k not in model_state]
    shape_mismatch = [
        (k, tuple(v.shape), tuple(model_state[k].shape))
        for k, v in state.items()
        if k in model_state and tuple(v.shape) != tuple(model_state[k].shape)
    ]
    return LoadResult(missing, unexpected, shape_mismatch, prefix, source), state


def first_mismatch(result: LoadResult) -> str | None:
    """The first difference in ``result`` as a short phrase (a shape conflict, else a missing
    key, else an unexpected one), e.g. ``conv_first.weight is [8, 24, 3, 3] in the file,
    [64, 12, 3, 3] in the model``; None when everything matches."""
    if result.shape_mismatch:
        key, got, want = result.shape_mismatch[0]
        return f"{key} is {_shape(got)} in the file, {_shape(want)} in the model"
    if result.missing:
        return f"{result.missing[0]} is missing from the file"
    if result.unexpected:
        return f"the file has {result.unexpected[0]}, which the model has not"
    return None


def check_finite(state_dict: Mapping[str, Tensor], origin: str) -> None:
    """Raise :class:`CheckpointError` naming ``origin`` when a floating-point tensor of
    ``state_dict`` holds NaN or infinity: a diverged training run exports such weights, and
    the model then makes black images that look valid (NaN becomes 0 in uint8)."""
    broken = [k for k, v in state_dict.items()
              if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        more = f" and {len(broken) - 1} other tensor(s)" if len(broken) > 1 else ""
        raise CheckpointError(
            f"{origin}: {broken[0]}{more} {'hold' if more else 'holds'} NaN or infinite "
            "values: these weights cannot make an image (a training run that diverged?); use "
            "an earlier checkpoint")


def apply_state_dict(
    model: nn.Module,
    state_dict: Mapping[str, Tensor],
    *,
    strict: bool = True,
    prefix: str | None = None,
    source: str = "",
    origin: str = "state dict",
) -> LoadResult:
    """Load ``state_dict`` into ``model``, stripping a key prefix (given or detected).

    ``strict=True`` raises :class:`CheckpointError` listing the missing and unexpected keys and
    the shape conflicts; ``strict=False`` loads the tensors whose name and shape match and
    reports the rest in the returned :class:`LoadResult`.
    """
    result, state = match_state_dict(
        model, state_dict, prefix=prefix, source=source, origin=origin
    )
    if strict and not result.complete:
        raise CheckpointError(_mismatch_message(model, origin, result))
    model_state = model.state_dict()
    conflicting = {k for k, _, _ in result.shape_mismatch}
    loadable = {k: v for k, v in state.items() if k in model_state and k not in conflicting}
    check_finite(loadable, origin)
    # A model built on the meta device has no storage to copy into: load_state_dict would
    # load nothing and say nothing. Its tensors become the file's (cast to the model's dtype).
    on_meta = any(t.is_meta for t in model_state.values())
    if on_meta:
        loadable = {k: v.to(model_state[k].dtype) if v.is_floating_point()
                    and model_state[k].is_floating_point() else v for k, v in loadable.items()}
    if on_meta:
        # buffers no checkpoint holds (SR3's noise schedule, computed when it is built) would
        # stay on the meta device: the model would fail at its first call
        kept = {name for name, _ in model.named_buffers()} - set(model_state)
        if kept:
            raise CheckpointError(
                f"{origin}: {type(model).__name__} built on the meta device cannot be loaded: "
                f"{sorted(kept)[0]} is computed when it is built, not saved; build it on a "
                "real device (or use from_checkpoint)")
    try:
        model.load_state_dict(loadable, strict=result.complete, assign=on_meta)
    except RuntimeError as exc:
        raise CheckpointError(f"cannot load {origin} into {type(model).__name__}: {exc}") from exc
    return result


def load_checkpoint(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    strict: bool = True,
    key: str | None = None,
    prefix: str | None = None,
    weights_only: bool = True,
) -> LoadResult:
    """Load the weights in ``path`` into ``model`` (formats and prefixes: module docstring).

    Raises :class:`CheckpointError` naming the file when it cannot be read and, with
    ``strict=True``, when its keys or shapes do not match the model. ``strict=False`` loads
    what matches; the returned :class:`LoadResult` lists the rest.
    """
    checkpoint = read_checkpoint(path, key=key, weights_only=weights_only)
    return apply_state_dict(
        model,
        checkpoint.state_dict,
        strict=strict,
        prefix=prefix,
        source=checkpoint.source,
        origin=f"checkpoint {checkpoint.path}",
    )
