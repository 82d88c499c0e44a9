"""Pair predicted images with their targets.

Two layouts:

- **S2-NAIP targets**: every target is ``[naip/]{image_uuid}/{tile}/rgb.png`` with ``tile`` like
  ``12345_67890``. A prediction matches by tile id: ``{tile}.png``, or any file under a
  ``{tile}/`` folder (e.g. ``{tile}/sr.png`` or a mirrored ``naip/{uuid}/{tile}/rgb.png``).
- **Relative paths** (anything else): ``a/b.png`` matches ``a/b.tif`` (path without extension).

Nothing is dropped silently: targets without a prediction, predictions without a target and keys
claimed by several files are all reported in the :class:`Pairing`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from zoomsr.errors import DataError
from zoomsr.evaluation.images import IMAGE_SUFFIXES

_TILE = re.compile(r"^\d+_\d+$")
_S2NAIP_TARGET = re.compile(r"^(?:naip/)?[^/]+/(\d+_\d+)/rgb\.png$")


@dataclass(frozen=True)
class ImagePair:
    """One prediction and its target; ``key`` is the shared id (tile or relative path)."""

    key: str
    pred: Path
    target: Path


@dataclass
class Pairing:
    """The result of :func:`pair_images`."""

    pairs: list[ImagePair]
    layout: str  # "s2naip" or "relative"
    missing_pred: list[Path] = field(default_factory=list)  # targets with no prediction
    unmatched_pred: list[Path] = field(default_factory=list)  # predictions with no target
    ambiguous: dict[str, list[Path]] = field(default_factory=dict)  # key -> competing files

    @property
    def complete(self) -> bool:
        """True when every file found a partner exactly once."""
        return not (self.missing_pred or self.unmatched_pred or self.ambiguous)

    def problems(self) -> list[str]:
        """One line per unpaired or ambiguous file, for reports."""
        lines = [f"no prediction for target {p}" for p in self.missing_pred]
        lines += [f"no target for prediction {p}" for p in self.unmatched_pred]
        lines += [
            f"{k!r} matches several files: {', '.join(str(f) for f in files)}"
            for k, files in self.ambiguous.items()
        ]
        return lines


def list_images(root: str | os.PathLike[str], what: str = "folder") -> list[Path]:
    """Image files (PNG, JPEG, GeoTIFF) under ``root``, recursively, relative and sorted.

    Raises:
        DataError: ``root`` is missing, not a folder, or holds no images.
    """
    r = Path(root)
    if not r.exists():
        raise DataError(f"{what} not found: {r}")
    if not r.is_dir():
        raise DataError(f"{what} is not a folder: {r}")
    files = sorted(
        p.relative_to(r)
        for p in r.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(r).parts)
    )
    if not files:
        raise DataError(f"{what} {r} holds no PNG, JPEG or GeoTIFF images")
    return files


def _pred_tile(rel: Path) -> str | None:
    if _TILE.match(rel.stem):
        return rel.stem
    for part in reversed(rel.parts[:-1]):
        if _TILE.match(part):
            return part
    return None


def _group(items: list[tuple[str, Path]]) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    seen: dict[str, list[Path]] = {}
    for key, path in items:
        seen.setdefault(key, []).append(path)
    unique = {k: v[0] for k, v in seen.items() if len(v) == 1}
    dup = {k: v for k, v in seen.items() if len(v) > 1}
    return unique, dup


def pair_images(pred_dir: str | os.PathLike[str], target_dir: str | os.PathLike[str]) -> Pairing:
    """Match the images under ``pred_dir`` with those under ``target_dir`` (see module doc).

    Returned paths are absolute-or-as-given (``pred_dir / relative``).

    Raises:
        DataError: a folder is missing or empty, or no file pairs up at all.
    """
    pdir, tdir = Path(pred_dir), Path(target_dir)
    preds = list_images(pdir, "prediction folder")
    targets = list_images(tdir, "target folder")
    s2naip = all(_S2NAIP_TARGET.match(t.as_posix()) for t in targets)
    unmatched: list[Path] = []
    if s2naip:
        t_items = []
        for t in targets:
            m = _S2NAIP_TARGET.match(t.as_posix())
            if m is not None:
                t_items.append((m.group(1), t))
        p_items = []
        for p in preds:
            tile = _pred_tile(p)
            if tile is None:
                unmatched.append(pdir / p)
            else:
                p_items.append((tile, p))
    else:
        t_items = [(t.with_suffix("").as_posix(), t) for t in targets]
        p_items = [(p.with_suffix("").as_posix(), p) for p in preds]
    t_map, t_dup = _group(t_items)
    p_map, p_dup = _group(p_items)
    ambiguous = {
        k: [tdir / t for kt, t in t_items if kt == k] + [pdir / p for kp, p in p_items if kp == k]
        for k in sorted(set(t_dup) | set(p_dup))
    }
    t_map = {k: v for k, v in t_map.items() if k not in ambiguous}
    p_map = {k: v for k, v in p_map.items() if k not in ambiguous}
    pairs = [
        ImagePair(k, pdir / p_map[k], tdir / t_map[k]) for k in sorted(t_map) if k in p_map
    ]
    missing = [tdir / t_map[k] for k in sorted(t_map) if k not in p_map]
    unmatched += [pdir / p_map[k] for k in sorted(p_map) if k not in t_map]
    if not pairs:
        raise DataError(
            f"no prediction in {pdir} matches a target in {tdir} "
            f"({'S2-NAIP tile ids' if s2naip else 'relative paths without extension'}; "
            f"e.g. target {targets[0]}, prediction {preds[0]})"
        )
    return Pairing(
        pairs, "s2naip" if s2naip else "relative", sorted(missing), sorted(unmatched), ambiguous
    )
