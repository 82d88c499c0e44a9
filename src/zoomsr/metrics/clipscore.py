"""CLIPScore: cosine similarity of the image embeddings of the prediction and the ground truth.

Any open_clip image tower works (``model_name``), including the paper's three: OpenAI
``ViT-B-16`` (224 px), ``ViT-bigG-14-CLIPA-336`` / ``datacomp1b`` (336 px) and
``ViT-SO400M-14-SigLIP-384`` / ``webli`` (384 px); the reference's names (``clip-ViT-B/16``,
``clipa-ViT-bigG-14``, ``siglip-ViT-SO400M-14``) are accepted as aliases.

Preprocessing modes:

- ``paper``: as the reference metric: [0, 1] input, nearest-neighbour resize to the backbone's
  size (``F.interpolate`` default), no mean/std normalisation. (The reference also fed BGR; we
  feed RGB.)
- ``standard``: the weights' own preprocessing: antialiased resize with their interpolation and
  resize mode, then their mean/std.

Weights are resolved without surprises: a local file, or an open_clip tag found in the Hugging
Face / CLIP cache; a download only with ``allow_download=True``. Missing weights raise
:class:`WeightsNotFoundError` naming the files looked for; random weights only with
``allow_random=True`` (tests, benchmarks). Models are built once per (name, weights, device,
dtype), kept in ``eval()`` mode with gradients off, and only the image tower is kept.

Ground-truth embeddings can be cached across runs (``cache_dir``): one safetensors file per model
(name, weights, mode, dtype), keyed by the sha256 of each target image's pixels, written atomically.

With ``valid`` (True where a pixel is valid in both images), both images are set to black outside
it before they are embedded: the masked area is the same in both (no difference), and nothing
there changes the score. An embedding is of the whole image, though, so the shared black area
pulls the two together (a higher score, the more so the larger it is): an image less than
``min_valid`` valid (default 0.5) is not scored (NaN).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zoomsr.devices import resolve_device
from zoomsr.errors import CheckpointError, InputError, ZoomsrWarning, first_line
from zoomsr.io.atomic import atomic_path
from zoomsr.io.sniff import load_failure
from zoomsr.metrics.base import (
    PERCEPTUAL_MIN_VALID,
    WeightsNotFoundError,
    black_outside,
    check_batch_size,
    check_images,
    check_min_valid,
    check_pair,
    check_valid,
    partial_rows,
    resolve_dtype,
)

CLIP_MODES = ("paper", "standard")
#: The reference's backbone names -> (open_clip model, pretrained tag).
REFERENCE_ALIASES = {
    "clip-ViT-B/16": ("ViT-B-16", "openai"),
    "clipa-ViT-bigG-14": ("ViT-bigG-14-CLIPA-336", "datacomp1b"),
    "siglip-ViT-SO400M-14": ("ViT-SO400M-14-SigLIP-384", "webli"),
}
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _open_clip() -> Any:
    try:
        import open_clip
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InputError(
            "CLIPScore needs open_clip: pip install open_clip_torch"
        ) from exc
    return open_clip


_CONFIG_DIR: Path | None = None


def register_model_config(name: str, config: dict[str, Any]) -> None:
    """Make an open_clip architecture config (``embed_dim``, ``vision_cfg``, ``text_cfg``)
    available under ``name``, e.g. a tiny one for tests and benchmarks."""
    global _CONFIG_DIR
    if not all(k in config for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise InputError("an open_clip config needs embed_dim, vision_cfg and text_cfg")
    oc = _open_clip()
    if _CONFIG_DIR is None:
        _CONFIG_DIR = Path(tempfile.mkdtemp(prefix="zoomsr-open-clip-configs-"))
        atexit.register(shutil.rmtree, _CONFIG_DIR, True)
    path = _CONFIG_DIR / f"{name}.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    oc.add_model_config(path)


@dataclass(frozen=True)
class ClipWeights:
    """Where a CLIP model's weights come from and the preprocessing that goes with them."""

    model_name: str
    checkpoint: str | None  # local file; None = random initialisation
    identity: str  # stable description for cache keys
    mean: tuple[float, ...] = _OPENAI_MEAN
    std: tuple[float, ...] = _OPENAI_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    quick_gelu: bool = False


def _hub_cache_dir(hub_dir: str | os.PathLike[str] | None) -> Path:
    if hub_dir is not None:
        return Path(hub_dir)
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover
        return Path.home() / ".cache" / "huggingface" / "hub"


def _find_cached(cfg: dict[str, Any], hub_dir: str | os.PathLike[str] | None) -> tuple[
    str | None, list[str]
]:
    """Look for a tag's weights in the HF hub cache and the CLIP URL cache; no network."""
    looked: list[str] = []
    hf = cfg.get("hf_hub", "")
    if hf:
        repo, filename = os.path.split(hf)
        names = (filename,) if filename else _HF_FILES
        if filename.endswith((".bin", ".pth")):
            names = (filename[:-4] + ".safetensors", filename)
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover
            try_to_load_from_cache = None  # type: ignore[assignment]
        for name in names:
            looked.append(f"{repo}/{name} in the Hugging Face cache {_hub_cache_dir(hub_dir)} "
                          f"(https://huggingface.co/{repo}/resolve/main/{name})")
            if try_to_load_from_cache is not None:
                hit = try_to_load_from_cache(
                    repo, name, cache_dir=None if hub_dir is None else str(hub_dir)
                )
                if isinstance(hit, str) and os.path.isfile(hit):
                    return hit, looked
    url = cfg.get("url", "")
    if url:
        # open_clip's own download folder too when hub_dir is given: a file fetched there
        # earlier is still this tag's
        folders = dict.fromkeys([*([hub_dir] if hub_dir is not None else []),
                                 Path.home() / ".cache" / "clip"])
        for folder in folders:
            path = Path(folder) / os.path.basename(url)
            looked.append(f"{path} ({url})")
            if path.is_file():
                return str(path), looked
    return None, looked


def is_pretrained_tag(model_name: str, pretrained: str | os.PathLike[str] | None) -> bool:
    """Whether ``pretrained`` is one of open_clip's tags for ``model_name`` (weights a download
    can fetch), not a file path."""
    text = "" if pretrained is None else str(pretrained)
    return bool(text) and bool(_open_clip().get_pretrained_cfg(model_name, text))


def resolve_clip_weights(
    model_name: str,
    pretrained: str | os.PathLike[str] | None,
    *,
    hub_dir: str | os.PathLike[str] | None = None,
    allow_download: bool = False,
    allow_random: bool = False,
) -> ClipWeights:
    """Resolve ``pretrained`` (tag, file or ``None``) for ``model_name`` to a local file.

    Raises:
        InputError: unknown model or tag, or ``None`` without ``allow_random``.
        WeightsNotFoundError: the weights are not on this machine (and downloads are off).
    """
    oc = _open_clip()
    if hub_dir is not None:  # ("~/models" from a config file or a quoted option)
        hub_dir = Path(hub_dir).expanduser()
    if model_name not in oc.list_models():
        raise InputError(
            f"unknown open_clip model {model_name!r}; see open_clip.list_models() "
            f"(e.g. ViT-B-16, ViT-bigG-14-CLIPA-336, ViT-SO400M-14-SigLIP-384)"
        )
    tags = oc.list_pretrained_tags_by_model(model_name)
    if pretrained is None or str(pretrained) == "":
        if not allow_random:
            known = ", ".join(tags) or "none"
            raise InputError(
                f"no pretrained weights given for {model_name}: pass a tag ({known}) or a file; "
                "random weights need allow_random=True"
            )
        return ClipWeights(model_name, None, f"{model_name}:random")
    text = str(pretrained)
    tag, said, named = text.partition("=")
    # "~/weights/clip.pt" from a config file or a quoted option: the shell did not expand it
    text, named = os.path.expanduser(text), os.path.expanduser(named)
    if said and tag not in tags and os.path.isfile(named) and not os.path.isfile(text):
        raise InputError(f"unknown pretrained tag {tag!r} for {model_name} in {text!r} "
                         f"(known: {', '.join(tags) or 'none'})")
    if said and tag in tags and not os.path.isfile(text):  # TAG=PATH: a file of that tag
        if not os.path.isfile(named):
            raise WeightsNotFoundError(f"CLIP weights file not found: {named}")
        return _weights_from_cfg(model_name, named, _file_identity(model_name, named, tag),
                                 oc.get_pretrained_cfg(model_name, tag))
    if os.path.isfile(text):
        cfg = _cfg_of_file(oc, model_name, tags, text)
        return _weights_from_cfg(model_name, text, _file_identity(model_name, text), cfg)
    cfg = oc.get_pretrained_cfg(model_name, text)
    if not cfg:
        if os.path.isdir(text):
            raise InputError(f"CLIP weights {text}: a folder; pass the weights file in it "
                             "(.safetensors, .pt or .bin)")
        looks_like_path = os.sep in text or text.endswith((".pt", ".pth", ".bin", ".safetensors"))
        if looks_like_path:
            raise WeightsNotFoundError(f"CLIP weights file not found: {text}")
        raise InputError(
            f"unknown pretrained tag {text!r} for {model_name} (known: {', '.join(tags) or 'none'})"
        )
    path, looked = _find_cached(cfg, hub_dir)
    if path is None and allow_download:
        try:
            path = oc.download_pretrained(cfg, cache_dir=None if hub_dir is None else str(hub_dir))
        except Exception as exc:  # noqa: BLE001 - network/hub errors become one clear error
            raise WeightsNotFoundError(
                f"could not download CLIP weights {model_name}/{text}: {type(exc).__name__}: {exc}"
            ) from exc
    if not path:
        raise WeightsNotFoundError(
            f"CLIP weights {model_name}/{text} are not on this machine (looked for "
            f"{'; '.join(looked)}). Download the file and pass it (--clip-pretrained "
            f"{text + '=' if len(tags) > 1 else ''}PATH), "
            "fill the cache as huggingface_hub does (`hf download REPO FILE`; older "
            "huggingface_hub: `huggingface-cli download`), or "
            "allow downloads (allow_download=True, CLI --allow-download)"
        )
    return _weights_from_cfg(model_name, path, f"{model_name}:{text}", cfg)


def check_clip_weights(
    model_name: str,
    pretrained: str | os.PathLike[str] | None,
    *,
    allow_download: bool = False,
    allow_random: bool = False,
) -> None:
    """Find the weights :class:`CLIPScore` ``(model_name, pretrained)`` would load, without
    loading them or downloading, so that missing ones are reported before any image is read.

    With ``allow_download``, a tag's weights that are not here pass: the metric fetches them
    when it is built (a file's cannot be fetched).

    Raises:
        InputError: unknown model or tag, or ``None`` without ``allow_random``.
        WeightsNotFoundError: the weights are not on this machine, and not a download's.
    """
    model_name, pretrained = unalias(model_name, pretrained)  # as CLIPScore does
    try:
        resolve_clip_weights(model_name, pretrained, allow_random=allow_random)
    except WeightsNotFoundError:
        if not (allow_download and is_pretrained_tag(model_name, pretrained)):
            raise


def unalias(
    model_name: str, pretrained: str | os.PathLike[str] | None
) -> tuple[str, str | os.PathLike[str] | None]:
    """``(model_name, pretrained)`` with a reference alias (:data:`REFERENCE_ALIASES`) replaced
    by its open_clip model and, for the default ``"openai"``, its tag."""
    if model_name in REFERENCE_ALIASES:
        model_name, tag = REFERENCE_ALIASES[model_name]
        pretrained = tag if pretrained == "openai" else pretrained
    return model_name, pretrained


def _file_identity(model_name: str, path: str, tag: str = "") -> str:
    """What names a weights file's embeddings in the cache: the file (path, size, time) and
    the tag it was given as, whose config builds the network."""
    st = os.stat(path)
    said = f":{tag}" if tag else ""
    return f"{model_name}:file{said}:{os.path.abspath(path)}:{st.st_size}:{int(st.st_mtime)}"


def _cfg_of_file(oc: Any, model_name: str, tags: list[str], path: str) -> dict[str, Any]:
    """The pretrained config (preprocessing, QuickGELU) of a weights file: the model's only
    tag; else the tag whose file has this name (``ViT-B-16.pt`` is OpenAI's); else the tag
    whose Hugging Face repository holds it (``models--timm--vit_base_patch16_clip_224.openai``
    or a folder of the repository's name on its path: the hub names every file alike,
    ``open_clip_model.safetensors``); else OpenAI's when the file is a TorchScript archive, the
    form OpenAI released CLIP in; else the config every tag shares. OpenAI's weights need
    QuickGELU: built with GELU, as such a file was when the model had several tags, their
    embeddings are wrong, silently. A file that none of these tells, of a model whose tags
    differ, is refused (:class:`InputError`): pass it as ``TAG=PATH``."""
    if len(tags) <= 1:  # (no tag: a config registered here, its defaults)
        return oc.get_pretrained_cfg(model_name, tags[0]) if tags else {}
    name = os.path.basename(path)
    cfgs = {tag: oc.get_pretrained_cfg(model_name, tag) for tag in tags}
    for cfg in cfgs.values():
        files = {os.path.basename(cfg.get("url", "") or ""),
                 os.path.basename(cfg.get("hf_hub", "") or "")} - {"", *_HF_FILES}
        if name in files:
            return cfg
    parts = Path(os.path.abspath(path)).parts
    in_repo = []
    for tag, cfg in cfgs.items():
        repo = (cfg.get("hf_hub", "") or "").strip("/")
        if repo.count("/") > 1 or repo.endswith((".bin", ".pth", ".safetensors")):
            repo = os.path.dirname(repo)  # "org/name/file"
        if repo and ("models--" + repo.replace("/", "--") in parts
                     or repo.split("/")[-1] in parts):
            in_repo.append(tag)
    if len({_cfg_key(cfgs[t]) for t in in_repo}) == 1:
        return cfgs[in_repo[0]]
    if "openai" in tags and _is_torchscript(path):
        return cfgs["openai"]
    if len({_cfg_key(cfg) for cfg in cfgs.values()}) == 1:
        return next(iter(cfgs.values()))
    raise InputError(
        f"{path}: which of {model_name}'s weights is it? Its name does not say, and its tags' "
        f"networks differ (QuickGELU, normalisation): pass it as TAG=PATH (e.g. "
        f"--clip-pretrained {'openai' if 'openai' in tags else tags[0]}={path}), TAG one of "
        f"{', '.join(tags)}")


def _cfg_key(cfg: dict[str, Any]) -> str:
    """The parts of a pretrained config that change the embeddings besides the weights
    (preprocessing, QuickGELU), as one comparable string, defaults filled in as
    :func:`_weights_from_cfg` fills them."""
    w = _weights_from_cfg("", "", "", cfg)
    return repr((w.mean, w.std, w.interpolation, w.resize_mode, w.quick_gelu))


def _is_torchscript(path: str) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``: code and constants)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("constants.pkl") for n in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _weights_from_cfg(
    model_name: str, path: str, identity: str, cfg: dict[str, Any]
) -> ClipWeights:
    return ClipWeights(
        model_name,
        path,
        identity,
        mean=tuple(cfg.get("mean", _OPENAI_MEAN)),
        std=tuple(cfg.get("std", _OPENAI_STD)),
        interpolation=cfg.get("interpolation", "bicubic"),
        resize_mode=cfg.get("resize_mode", "shortest"),
        quick_gelu=bool(cfg.get("quick_gelu", False)),
    )


class ImageEncoder(nn.Module):
    """The image tower of an open_clip model: ``[B, 3, S, S]`` -> ``[B, D]`` embeddings."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        oc = _open_clip()
        plain = (type(model).encode_image  # type: ignore[attr-defined]  # (open_clip's)
                 in (oc.CLIP.encode_image, oc.CustomTextCLIP.encode_image))
        # CLIP/CustomTextCLIP embed images with the visual tower alone: drop the text tower.
        self.tower = cast(nn.Module, model.visual) if plain else model
        self.plain = plain
        size = getattr(model.visual, "image_size", 224)
        self.image_size: tuple[int, int] = (
            (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed preprocessed ``[B, 3, S, S]`` images."""
        return self.tower(x) if self.plain else self.tower.encode_image(x)  # type: ignore[operator]


def build_image_encoder(
    weights: ClipWeights, device: torch.device, dtype: torch.dtype = torch.float32
) -> ImageEncoder:
    """Build the open_clip model for ``weights`` and return its image tower (eval, frozen)."""
    oc = _open_clip()
    precision = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    try:
        model = oc.create_model(
            weights.model_name,
            pretrained=weights.checkpoint,
            precision=precision,
            device=device,
            force_quick_gelu=weights.quick_gelu,
            pretrained_image=False,
            pretrained_text=False,
            require_pretrained=weights.checkpoint is not None,
        )
    except Exception as exc:  # noqa: BLE001 - unpickling, zip, safetensors errors too
        first = state_dict_mismatch(exc) or first_line(exc)
        if weights.checkpoint is not None and not isinstance(exc, (RuntimeError, KeyError)):
            first = load_failure(Path(weights.checkpoint), exc)  # not a weights file at all
        if weights.checkpoint is not None:
            raise CheckpointError(
                f"{weights.checkpoint}: cannot load as {weights.model_name} weights ({first})"
            ) from exc
        raise InputError(f"cannot build open_clip model {weights.model_name}: {first}") from exc
    encoder = ImageEncoder(model).to(device)
    return encoder.eval().requires_grad_(False)


def state_dict_mismatch(exc: BaseException) -> str | None:
    """What torch's ``load_state_dict`` error says in its later lines (its first,
    "Error(s) in loading state_dict for CLIP:", says nothing), in one line: the first size
    mismatch, and how many keys are missing or unexpected, with the first of each. None for
    another error."""
    text = str(exc)
    if not isinstance(exc, RuntimeError) or "Error(s) in loading state_dict" not in text:
        return None
    said = []
    size = re.search(r"size mismatch for (\S+): copying a param with shape torch\.Size\("
                     r"(\[[^]]*\])\) from checkpoint, the shape in current model is "
                     r"torch\.Size\((\[[^]]*\])\)", text)
    if size:
        n = text.count("size mismatch for ")
        said.append(f"{n} shape(s) differ, e.g. {size[1]}: {size[2]} in the file, {size[3]} in "
                    "the model")
    for kind, label in (("Missing", "missing from the file"), ("Unexpected", "not in the model")):
        keys = re.search(rf"{kind} key\(s\) in state_dict: (.*)", text)
        if keys:
            names = re.findall(r'"([^"]+)"', keys[1])
            said.append(f"{len(names)} key(s) {label}, e.g. {names[0] if names else '?'}")
    return "; ".join(said) or None


_ENCODERS: dict[tuple[str, str, str, str], ImageEncoder] = {}


def get_image_encoder(
    weights: ClipWeights, device: torch.device, dtype: torch.dtype = torch.float32
) -> ImageEncoder:
    """:func:`build_image_encoder`, built once per (model, weights, device, dtype)."""
    key = (weights.model_name, weights.identity, str(device), str(dtype))
    if key not in _ENCODERS:
        _ENCODERS[key] = build_image_encoder(weights, device, dtype)
    return _ENCODERS[key]


def clear_model_cache() -> None:
    """Forget every cached CLIP image encoder (frees their memory)."""
    _ENCODERS.clear()


def image_digest(image: torch.Tensor) -> str:
    """sha256 of one checked ``[3, H, W]`` float32 image's shape and pixels."""
    x = image.detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha256(str(tuple(x.shape)).encode())
    h.update(x.numpy().tobytes())
    return h.hexdigest()


class EmbeddingCache:
    """Ground-truth embeddings of one model on disk: ``{image sha256: [D] float32}``."""

    def __init__(self, directory: str | os.PathLike[str], model_id: str) -> None:
        self.model_id = model_id
        key = hashlib.sha256(model_id.encode()).hexdigest()[:24]
        self.path = Path(directory).expanduser() / f"clipscore-{key}.safetensors"
        self._data: dict[str, torch.Tensor] | None = None
        self._dirty = False
        self._written = 0  # entries in the file as last read or written

    def _load(self) -> dict[str, torch.Tensor]:
        if self._data is None:
            self._data = {}
            if self.path.is_file():
                from safetensors import safe_open

                try:
                    with safe_open(str(self.path), framework="pt") as f:
                        if (f.metadata() or {}).get("model_id") == self.model_id:
                            self._data = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
                except Exception:  # noqa: BLE001 - a corrupt cache is rebuilt, not fatal
                    self._data = {}
            self._written = len(self._data)
        return self._data

    def get(self, digest: str) -> torch.Tensor | None:
        """The cached embedding for an image digest, or ``None``."""
        return self._load().get(digest)

    def put(self, digest: str, embedding: torch.Tensor) -> None:
        """Remember one embedding (written by :meth:`flush`)."""
        self._load()[digest] = embedding.detach().to("cpu", torch.float32).contiguous()
        self._dirty = True

    def __len__(self) -> int:
        return len(self._load())

    #: :meth:`flush_some` writes once at least this many entries are new (and as many as
    #: the file held).
    MIN_NEW = 256

    def flush(self) -> None:
        """Write the cache file atomically if anything was added."""
        if not self._dirty or self._data is None:
            return
        from safetensors.torch import save_file

        with atomic_path(self.path) as tmp:
            save_file(self._data, str(tmp), metadata={"model_id": self.model_id})
        self._dirty = False
        self._written = len(self._data)

    def flush_some(self) -> None:
        """:meth:`flush` once the new entries are as many as the file held (and
        :data:`MIN_NEW`): the file is rewritten whole, so writing it after every batch took
        time growing with the square of the targets (4000: 19 s of writes); so each write at
        least doubles it, and all writes together cost about twice the last. What is not
        written yet is written by :meth:`flush` (CLIPScore's end, or the process's exit)."""
        if self._data is not None and len(self._data) - self._written >= max(self.MIN_NEW,
                                                                              self._written):
            self.flush()


def _flush_quietly(cache: EmbeddingCache, some: bool = False, after: str = "") -> bool:
    """:meth:`EmbeddingCache.flush` (``some``: :meth:`~EmbeddingCache.flush_some`); False when
    it failed (a full disk, a removed folder): a one-line warning (``after`` appended), not a
    traceback, and not tried again. The cache only saves time: a failure at the end of
    scoring lost every pair scored, and one at exit came after the run's own output."""
    try:
        cache.flush_some() if some else cache.flush()
        return True
    except Exception as exc:  # noqa: BLE001 - nothing to raise into
        cache._dirty = False  # nothing for a later flush (the finalizer's) to try again
        warnings.warn(f"{cache.path}: CLIP target embeddings not cached ({first_line(exc)})"
                      f"{after}", ZoomsrWarning, stacklevel=3)
        return False


class CLIPScore:
    """CLIPScore (higher is better), per image: cosine similarity of image embeddings.

    Args:
        model_name: open_clip architecture (or a reference alias, see the module docstring).
        pretrained: tag (``"openai"``, ``"datacomp1b"``, ``"webli"``...), a local weight file,
            or ``None`` (random weights: only with ``allow_random=True``).
        mode: ``"paper"`` or ``"standard"`` preprocessing.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        dtype: ``float32`` (default), or ``bfloat16``/``float16`` on a GPU.
        batch_size: images per forward pass.
        cache_dir: folder for the ground-truth embedding cache (``None``: no cache).
        hub_dir: Hugging Face hub / CLIP cache folder to look in (default: the usual ones).
        allow_download: let open_clip download missing weights.
        allow_random: allow ``pretrained=None`` (random weights, for tests and benchmarks).
        min_valid: with a ``valid`` mask, the smallest valid share of an image that is
            scored (NaN below; see the module docstring).
    """

    name = "clipscore"
    higher_is_better = True
    bounds = (-1.0, 1.0)  # (a cosine similarity)

    def __init__(
        self,
        model_name: str = "ViT-B-16",
        pretrained: str | os.PathLike[str] | None = "openai",
        mode: str = "paper",
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = None,
        batch_size: int = 32,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        hub_dir: str | os.PathLike[str] | None = None,
        allow_download: bool = False,
        allow_random: bool = False,
        min_valid: float = PERCEPTUAL_MIN_VALID,
    ) -> None:
        self.min_valid = check_min_valid(min_valid)
        if mode not in CLIP_MODES:
            raise InputError(f"unknown CLIPScore mode {mode!r} (expected paper or standard)")
        model_name, pretrained = unalias(model_name, pretrained)
        self.mode = mode
        self.device = resolve_device(device, mps=False)
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = check_batch_size(batch_size)
        self.weights = resolve_clip_weights(
            model_name, pretrained, hub_dir=hub_dir, allow_download=allow_download,
            allow_random=allow_random,
        )
        self.encoder = get_image_encoder(self.weights, self.device, self.dtype)
        self._cache: EmbeddingCache | None = None
        if cache_dir is not None:
            identity = self.weights.identity
            if self.weights.checkpoint is None:  # random weights: key by their values
                h = hashlib.sha256()
                for t in self.encoder.state_dict().values():
                    h.update(t.detach().cpu().float().contiguous().numpy().tobytes())
                identity += ":" + h.hexdigest()[:16]
            self._cache = EmbeddingCache(cache_dir, f"{identity}|{mode}|{self.dtype}")
            # what flush_some left unwritten: written when this metric is let go, or at exit
            weakref.finalize(self, _flush_quietly, self._cache)

    @property
    def image_size(self) -> tuple[int, int]:
        """The backbone's input size ``(H, W)`` in pixels."""
        return self.encoder.image_size

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Checked ``[B, 3, H, W]`` in [0, 1] -> the backbone's input ``[B, 3, S, S]``."""
        size = self.image_size
        if self.mode == "paper":
            return F.interpolate(images, size=size)  # nearest, no normalisation
        w = self.weights
        mode = w.interpolation if w.interpolation in ("bilinear", "bicubic") else "bicubic"
        h0, w0 = images.shape[-2:]
        if w.resize_mode == "shortest" and (h0, w0) != size:
            scale = max(size[0] / h0, size[1] / w0)
            new = (max(size[0], round(h0 * scale)), max(size[1], round(w0 * scale)))
            x = F.interpolate(images, size=new, mode=mode, antialias=True, align_corners=False)
            top, left = (new[0] - size[0]) // 2, (new[1] - size[1]) // 2
            x = x[..., top: top + size[0], left: left + size[1]]
        elif w.resize_mode == "longest" and (h0, w0) != size:
            scale = min(size[0] / h0, size[1] / w0)
            new = (max(1, round(h0 * scale)), max(1, round(w0 * scale)))
            x = F.interpolate(images, size=new, mode=mode, antialias=True, align_corners=False)
            pad_h, pad_w = size[0] - new[0], size[1] - new[1]
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        elif (h0, w0) != size:
            x = F.interpolate(images, size=size, mode=mode, antialias=True, align_corners=False)
        else:
            x = images
        x = x.clamp(0.0, 1.0)
        mean = torch.tensor(w.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(w.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std

    def _embed_checked(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        with torch.inference_mode():
            for i in range(0, images.shape[0], self.batch_size):
                x = self.preprocess(images[i: i + self.batch_size].to(self.device))
                feats = self.encoder(x.to(self.dtype)).float()
                out.append(F.normalize(feats, dim=-1).cpu())
        return torch.cat(out)

    def embed(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Unit-norm embeddings ``[B, D]`` (float32, CPU) of ``[B, 3, H, W]`` RGB in [0, 1]."""
        return self._embed_checked(check_images(images, "images"))

    def _embed_targets(self, targets: torch.Tensor) -> torch.Tensor:
        if self._cache is None:
            return self._embed_checked(targets)
        digests = [image_digest(t) for t in targets]
        found = [self._cache.get(d) for d in digests]
        missing = [i for i, e in enumerate(found) if e is None]
        if missing:
            new = self._embed_checked(targets[missing])
            for j, i in enumerate(missing):
                found[i] = new[j]
                self._cache.put(digests[i], new[j])
            self._save(some=True)
        return torch.stack([e for e in found if e is not None])

    @property
    def cache(self) -> EmbeddingCache | None:
        """The ground-truth embedding cache (``None`` without ``cache_dir``)."""
        return self._cache

    def save_cache(self) -> None:
        """Write the target embeddings not yet in the cache file (done at the end of
        ``zoomsr evaluate``'s scoring; else when the metric is let go, or at exit). A write
        that fails is a warning, and the metric goes on without its cache."""
        self._save()

    def _save(self, some: bool = False) -> None:
        if self._cache is not None and not _flush_quietly(
                self._cache, some, "; scoring goes on without the cache"):
            self._cache = None

    def __call__(
        self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray,
        valid: torch.Tensor | np.ndarray | None = None,
    ) -> torch.Tensor:
        """``[B, 3, H, W]`` pair in [0, 1] -> ``[B]`` float64 cosine similarities.

        ``valid``: ``[B, H, W]`` bool, True where a pixel is valid in both images (see the
        module docstring); NaN for an image less than ``min_valid`` valid.
        """
        p, t = check_pair(pred, target)
        v = check_valid(valid, p.shape, device=p.device)
        partial = partial_rows(v)
        if partial is not None:  # black outside the valid area, in both
            p, t = p.clone(), t.clone()
            p[partial], t[partial] = black_outside(p[partial], t[partial],
                                                   cast(torch.Tensor, v)[partial])
        ep = self._embed_checked(p)
        et = self._embed_targets(t)
        scores = (ep * et).sum(dim=-1).double()
        if partial is not None:
            share = cast(torch.Tensor, v).flatten(1).double().mean(dim=1).cpu()
            scores[share < self.min_valid] = float("nan")
        return scores
