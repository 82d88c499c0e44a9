"""What makes a build resumable: its fingerprint (inputs, settings, input file sizes and
times) saved as ``build.json``, the checks of an output folder before a build starts or
resumes (:func:`_prepare_root`), and the records of the blocks already finished.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import cast, overload

from zoomsr.data.builder.config import BuildConfig
from zoomsr.data.builder.rasters import is_remote
from zoomsr.data.builder.scenes import Sources
from zoomsr.data.layout import (
    BUILD_STATE_DIR,
    DATASET_ENTRIES,
    NAIP_DIR,
    OLD_NAIP_DIR,
    S2_DIR,
)
from zoomsr.errors import InputError
from zoomsr.io.atomic import atomic_write_text
from zoomsr.records import first_difference, shortened

STATE_DIR = BUILD_STATE_DIR


def _fingerprint(sources: Sources, config: BuildConfig) -> dict:
    # Round-tripped through JSON so that it compares equal to the copy saved on disk.
    return json.loads(json.dumps({"config": config.to_json(),
            "sentinel2": [s.to_json() for s in sorted(sources.sentinel2, key=lambda s: s.id)],
            "highres": [h.to_json() for h in sorted(sources.highres, key=lambda h: h.id)],
            "file_stats": _file_stats(sources)}))


def _local_inputs(sources: Sources) -> list[str]:
    """The input files a build reads that are on this machine (not URLs or GDAL virtual
    paths)."""
    paths = [*(f for scene in sources.sentinel2 for f in scene.files.values()),
             *(h.path for h in sources.highres)]
    return [p for p in paths if not is_remote(p)]


def _file_stats(sources: Sources) -> dict[str, list[int]]:
    """``path -> [size, mtime_ns]`` of the local input files: a resumed build must not mix
    pairs of a file's old content with pairs of its new one."""
    stats = {}
    for path in _local_inputs(sources):
        try:
            st = os.stat(path)
        except OSError:
            continue  # reported where it is read
        stats[str(path)] = [st.st_size, st.st_mtime_ns]
    return dict(sorted(stats.items()))


def _changed_files(previous: dict, now: dict) -> list[str]:
    """The input files whose size or time differ between two fingerprints' ``file_stats``."""
    was, is_ = previous.get("file_stats") or {}, now.get("file_stats") or {}
    return [p for p in sorted(was) if p in is_ and was[p] != is_[p]]


def _files_in_finished_blocks(root: Path) -> set[str]:
    """Every input file the finished blocks' records name (high-res sources, Sentinel-2 band
    files): their pairs may hold its content."""
    used: set[str] = set()
    for path in (root / STATE_DIR / "blocks").glob("*.json"):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue  # a damaged record: that block is redone
        for tile in record.get("tiles", []):
            used.update(str(img.get("source")) for img in tile.get("images", []))
            for frame in tile.get("frames", []):
                used.update(str(f) for f in (frame.get("files") or {}).values())
    return used


@overload
def _comparable(fingerprint: dict) -> dict: ...


@overload
def _comparable(fingerprint: object) -> object: ...


def _comparable(fingerprint: object) -> object:
    """``fingerprint`` as compared on resume: a build started before ``dn_offset`` could be
    unknown recorded no ``config.dn_offset`` and 0 for a scene whose offset it did not read
    (TCI only), so these forms are taken as equal."""
    if not isinstance(fingerprint, dict):
        return fingerprint
    out = json.loads(json.dumps(fingerprint))
    if isinstance(out.get("config"), dict) and out["config"].get("dn_offset") is None:
        out["config"].pop("dn_offset", None)
    for scene in out.get("sentinel2") or []:
        if isinstance(scene, dict) and scene.get("dn_offset") is None:
            scene["dn_offset"] = 0
    return out


def _input_in_output(root: Path, sources: Sources) -> tuple[str, Path] | None:
    """An input file lying in one of the entries a build writes (and ``--overwrite`` deletes)
    under ``root``, with that entry; URLs and GDAL virtual paths are never there."""
    entries = [(root / name).resolve() for name in DATASET_ENTRIES]
    for path in _local_inputs(sources):
        resolved = Path(path).resolve()
        for entry in entries:
            if resolved == entry or entry in resolved.parents:
                return path, entry
    return None


#: build.json's list of the input files changed since the build started (kept until it ends).
CHANGED_KEY = "changed_since_start"


def _prepare_root(root: Path, fingerprint: dict, overwrite: bool,
                  sources: Sources) -> list[str]:
    """Make ``root`` ready for the build (module docstring: resume, refusals, overwrite);
    return the input files changed since a resumed build started (none of them used by a
    finished block)."""
    state = root / STATE_DIR / "build.json"
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: exists and is not a folder")
    inside = _input_in_output(root, sources)
    if inside is not None:
        # The build writes there, and --overwrite would delete the inputs themselves.
        path, entry = inside
        raise InputError(f"{path}: an input of this build lies in {entry}, where the build "
                         "writes its pairs (and which --overwrite deletes); build into another "
                         "folder")
    if root.exists() and any(root.iterdir()):
        previous = None
        if state.exists():
            try:
                previous = json.loads(state.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                previous = None
        now, was = _comparable(fingerprint), _comparable(previous)
        changed: list[str] = []
        if isinstance(previous, dict) and "file_stats" not in previous:
            now.pop("file_stats", None)  # started by a zoomsr that did not record them
        elif isinstance(was, dict) and not overwrite:
            previous = cast(dict, previous)  # a dict, as was is
            changed = _changed_files(previous, fingerprint)
            in_blocks = _files_in_finished_blocks(root) if changed else set()
            used = [c for c in changed if c in in_blocks]
            if used:
                raise InputError(
                    f"{root}: {used[0]} changed since this build started (size or time); "
                    "pairs made so far hold its old content: use --overwrite to rebuild "
                    "from scratch, or another folder")
            # no finished pair holds them (a damaged file replaced by a good copy): go on
            was["file_stats"] = now.get("file_stats")
            # changed at an earlier resume: the blocks unfinished then may still hold pairs of
            # the old content (another interruption came before they were made again)
            changed = sorted({*changed, *(previous.get(CHANGED_KEY) or [])})
            was.pop(CHANGED_KEY, None)
        if was == now and not overwrite:
            _remove_stray_temp_files(root)
            if changed:  # the new files' record, and which changed, for the next resume
                atomic_write_text(state, json.dumps({**fingerprint, CHANGED_KEY: changed},
                                                    indent=1) + "\n")
            return changed  # resume
        if not overwrite:
            reason = "is not empty"
            if previous is not None:
                reason = "was built with other inputs or settings"
                diff = first_difference(was, now)
                if diff is not None:  # the first, as the user can find it in build.json
                    where, old, new = diff
                    reason += f" ({where}: was {shortened(old)}, now {shortened(new)})"
            raise InputError(f"{root}: output folder {reason}; use --overwrite to rebuild it "
                             "from scratch, or another folder")
        for name in DATASET_ENTRIES:
            if (root / name).is_dir() and not (root / name).is_symlink():
                shutil.rmtree(root / name, ignore_errors=True)
            else:
                (root / name).unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(state, json.dumps(fingerprint, indent=1) + "\n")
    return []


def _remove_stray_temp_files(root: Path) -> int:
    """Delete hidden ``.*.tmp`` files left by a killed writer (see zoomsr.io.atomic)."""
    n = 0
    for folder in (NAIP_DIR, S2_DIR, OLD_NAIP_DIR, STATE_DIR):
        for path in (root / folder).rglob(".*.tmp"):
            path.unlink(missing_ok=True)
            n += 1
    return n


def _load_done(root: Path, key: str) -> dict | None:
    path = root / STATE_DIR / "blocks" / f"{key}.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # a damaged record: redo the block (finished pairs are still kept)


__all__ = ["CHANGED_KEY", "STATE_DIR"]
