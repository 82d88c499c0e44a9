"""Pair predicted images with their targets.

Two layouts:

- **S2-NAIP targets**: every target is ``[naip/]{image_uuid}/{tile}/rgb.png`` with ``tile`` like
  ``12345_67890``. A prediction matches by tile id: ``{tile}.png``, or any file under a
  ``{tile}/`` folder (e.g. ``{tile}/sr.png`` or a mirrored ``naip/{uuid}/{tile}/rgb.png``).
  A dataset root (a folder with a ``naip/`` sub-folder in that layout) is read through its
  ``naip/`` folder only: ``sentinel2/``, ``old_naip/`` and plots at the root are not targets.
  With ``split``, only the tiles of that split in the root's ``zoomsr_splits.json`` (or in
  another splits file: a ``zoomsr train`` run's ``splits.json``) are targets; predictions of
  the dataset's other tiles are set aside (``outside_split``). A tile captured twice is keyed
  ``{image_id}/{tile}`` (which tiles are is decided over the whole dataset, not the split).
- **Relative paths** (anything else): ``a/b.png`` matches ``a/b.tif`` (path without extension).

Nothing is dropped silently: targets without a prediction, predictions without a target and keys
claimed by several files are all reported in the :class:`Pairing`. A prediction that is one of
the target files (the folders swapped or nested) is refused.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from zoomsr.errors import DataError
from zoomsr.evaluation.images import IMAGE_SUFFIXES
from zoomsr.validate import check_choice

NAIP_DIR = "naip"  # zoomsr.data.layout.NAIP_DIR (not imported: keep this module light)
SPLITS_FILE = "zoomsr_splits.json"  # zoomsr.data.layout.SPLITS_FILE
SPLIT_NAMES = ("train", "val", "test", "buffer")  # zoomsr.data.builder.splits.SPLIT_NAMES

_TILE = re.compile(r"^\d+_\d+$")
_S2NAIP_TARGET = re.compile(r"^(?:naip/)?[^/]+/(\d+_\d+)/rgb\.png$")


@dataclass(frozen=True)
class ImagePair:
    """One prediction and its target; ``key`` is the shared id (tile or relative path).
    ``tile``: the prediction is the part of the GeoTIFF mosaic ``pred`` on this zoom-17 tile
    (``zoomsr infer``'s output for an S2-NAIP dataset folder)."""

    key: str
    pred: Path
    target: Path
    tile: str | None = None


@dataclass
class Pairing:
    """The result of :func:`pair_images`."""

    pairs: list[ImagePair]
    layout: str  # "s2naip" or "relative"
    missing_pred: list[Path] = field(default_factory=list)  # targets with no prediction
    unmatched_pred: list[Path] = field(default_factory=list)  # predictions with no target
    ambiguous: dict[str, list[Path]] = field(default_factory=dict)  # key -> competing files
    outside_split: list[Path] = field(default_factory=list)  # predictions of other splits' tiles
    split: str | None = None

    @property
    def complete(self) -> bool:
        """True when every file found a partner exactly once."""
        return not (self.missing_pred or self.unmatched_pred or self.ambiguous)

    def problems(self) -> list[str]:
        """One line per unpaired or ambiguous file, for reports; ambiguous ids come first (they
        usually mean a wrong folder layout, and would hide behind long lists of missing files)."""
        lines = [
            f"{k!r} matches several files: {', '.join(str(f) for f in files)}"
            for k, files in self.ambiguous.items()
        ]
        lines += [f"no prediction for target {p}" for p in self.missing_pred]
        lines += [f"no target for prediction {p}" for p in self.unmatched_pred]
        return lines

    def problem_counts(self) -> str:
        """E.g. ``"1 id claimed by several files, 3 targets without a prediction"``."""
        parts = []
        for n, one, many in (
            (len(self.ambiguous), "id claimed by several files", "ids claimed by several files"),
            (len(self.missing_pred), "target without a prediction",
             "targets without a prediction"),
            (len(self.unmatched_pred), "prediction without a target",
             "predictions without a target"),
        ):
            if n:
                parts.append(f"{n} {one if n == 1 else many}")
        return ", ".join(parts)


def _without_side_outputs(files: list[Path]) -> list[Path]:
    """``files`` without the side outputs `zoomsr infer` writes beside an output ``X.tif``
    (``X.lr.tif``, the LR mosaic; ``X.preview.png``): no predictions, they were listed as
    unmatched ones."""
    names = {f.as_posix() for f in files}
    side = {f for f in files for tail in (".lr.tif", ".preview.png")
            if f.name.endswith(tail)
            and f.with_name(f.name[: -len(tail)] + ".tif").as_posix() in names}
    return [f for f in files if f not in side]


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


def _dataset_targets(tdir: Path) -> list[Path] | None:
    """The targets of a dataset root (``naip/`` in the S2-NAIP layout), relative to ``tdir``;
    ``None`` when ``tdir`` is not such a root."""
    naip = tdir / NAIP_DIR
    # only a real dataset root (its Sentinel-2 side or splits file beside naip/): any other
    # folder with a naip/ sub-folder keeps all its images as targets
    if not naip.is_dir() or not ((tdir / "sentinel2").is_dir() or (tdir / SPLITS_FILE).is_file()):
        return None
    try:
        inside = list_images(naip, "target folder")
    except DataError:
        return None
    targets = [Path(NAIP_DIR) / t for t in inside]
    if not all(_S2NAIP_TARGET.match(t.as_posix()) for t in targets):
        return None
    return targets


def _splits_file(tdir: Path) -> Path:
    here = tdir / SPLITS_FILE
    if not here.is_file() and tdir.name == NAIP_DIR and (tdir.parent / SPLITS_FILE).is_file():
        return tdir.parent / SPLITS_FILE
    return here


def check_split(split: str | None) -> None:
    """``split`` is None or one of :data:`SPLIT_NAMES` (:class:`DataError` otherwise)."""
    if split is not None:
        check_choice("--split", split, SPLIT_NAMES, DataError)


def read_split(tdir: str | os.PathLike[str], split: str,
               splits_file: str | os.PathLike[str] | None = None) -> set[str]:
    """Entries (``tile`` or ``image_id/tile``) of ``split`` in the dataset's splits file, or in
    ``splits_file`` (e.g. the ``splits.json`` a ``zoomsr train`` run folder holds).

    Raises:
        DataError: an unknown split name, or a missing, unreadable or malformed splits file.
    """
    check_split(split)
    path = Path(splits_file) if splits_file is not None else _splits_file(Path(tdir))
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if splits_file is not None:
            raise DataError(f"--splits {path}: not found") from None
        raise DataError(
            f"--split {split}: {path} not found (`zoomsr data build` writes it in the dataset "
            "root; pass that root or its naip/ folder as --target; a training run's own "
            "split: --splits RUN/splits.json)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable splits file ({exc})") from None
    entries = doc.get(split) if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise DataError(f"{path}: no list of tiles for the {split!r} split")
    return set(entries)


def _none_in_split(
    pdir: Path, tdir: Path, split: str | None, preds: list[Path], outside: list[Path],
    unmatched: list[Path], splits_file: str | os.PathLike[str] | None = None,
) -> str:
    """The error when predictions exist for the dataset's tiles, but none for ``split``'s:
    how many predictions there are, and in which splits their tiles are."""
    per_split: dict[str, int] = {}
    entries_of: dict[str, set[str]] = {}
    tiles_of: dict[str, set[str]] = {}
    for name in SPLIT_NAMES:
        if name == split:
            continue
        try:
            entries = read_split(tdir, name, splits_file)
        except DataError:  # that split absent or malformed: its tiles count as in no split
            entries = set()
        entries_of[name] = entries
        tiles_of[name] = {e.rsplit("/", 1)[-1] for e in entries}
    for path in outside:
        rel = path.relative_to(pdir)
        tile = _pred_tile(rel)
        image_id = _pred_image_id(rel, tile) if tile is not None else None
        # the split listing this very capture ({image_id}/{tile}) first: the two captures of
        # a tile captured twice may be in different splits
        where = next((name for name, entries in entries_of.items()
                      if image_id is not None and f"{image_id}/{tile}" in entries), None)
        if where is None:
            where = next((name for name, tiles in tiles_of.items() if tile in tiles),
                         "no split")
        per_split[where] = per_split.get(where, 0) + 1
    order = [*SPLIT_NAMES, "no split"]
    counts = ", ".join(
        f"{per_split[name]} in {name}" for name in order if per_split.get(name)
    )
    extra = f"; {len(unmatched)} match no tile of the dataset" if unmatched else ""
    n, m = len(preds), len(outside)
    return (
        f"none of the {n} prediction{'s' if n != 1 else ''} in {pdir} is a tile of the "
        f"{split!r} split of {tdir}: {m} {'are tiles' if m != 1 else 'is a tile'} of other "
        f"splits ({counts}){extra}; predict the {split!r} tiles, or pick the split the "
        "predictions are of (--split)"
    )


def _pred_tile(rel: Path) -> str | None:
    if _TILE.match(rel.stem):
        return rel.stem
    for part in reversed(rel.parts[:-1]):
        if _TILE.match(part):
            return part
    return None


def _pred_image_id(rel: Path, tile: str) -> str | None:
    """The folder just above the tile in a prediction's relative path (``{id}/{tile}.png``,
    ``[naip/]{id}/{tile}/rgb.png``), or None."""
    parts = rel.parts
    at = len(parts) - 1 if rel.stem == tile else max(
        (i for i, part in enumerate(parts[:-1]) if part == tile), default=-1)
    return parts[at - 1] if at >= 1 else None


def _mosaic_pairing(mosaic: Path, tdir: Path, split: str | None,
                    splits_file: str | os.PathLike[str] | None) -> Pairing:
    """Pair each tile of the S2-NAIP targets in ``tdir`` (a dataset root, its ``naip/`` folder
    or any folder of ``[naip/]{id}/{tile}/rgb.png``) with its part of the georeferenced
    ``mosaic`` (EPSG:3857, the tiles' grid: what ``zoomsr infer`` writes for a dataset folder);
    tiles it does not wholly cover are missing predictions. Two captures of one tile are
    keyed ``{image_id}/{tile}``, each scored against the mosaic's part."""
    import warnings

    import rasterio

    from zoomsr.errors import ZoomsrWarning, first_line
    from zoomsr.evaluation.images import tile_window
    from zoomsr.grid import Tile

    targets = _dataset_targets(tdir)
    if targets is None:
        # its naip/ folder, or any folder of [naip/]{uuid}/{tile}/rgb.png, as a folder of
        # predictions is paired with (raises: missing, not a folder, no image)
        targets = list_images(tdir, "target folder")
    other = next((t for t in targets if not _S2NAIP_TARGET.match(t.as_posix())), None)
    if other is not None:
        raise DataError(f"{mosaic}: a single GeoTIFF prediction is scored against an S2-NAIP "
                        f"dataset's tiles ([naip/]{{image_uuid}}/{{tile}}/rgb.png: the dataset "
                        f"root or its naip/ folder); {tdir} is not one (it holds e.g. "
                        f"{other}; give a folder of predictions for other targets)")
    wanted = read_split(tdir, split, splits_file) if split is not None else None
    try:
        with rasterio.open(mosaic) as ds:
            crs, box, transform = ds.crs, ds.bounds, ds.transform
            width, height, count = ds.width, ds.height, ds.count
    except rasterio.errors.RasterioError as exc:
        raise DataError(f"{mosaic}: not a readable GeoTIFF ({first_line(exc)})") from None
    if crs is None or crs.to_epsg() != 3857:
        raise DataError(f"{mosaic}: a mosaic prediction must be on the tiles' grid (EPSG:3857, "
                        f"as `zoomsr infer` writes for a dataset folder), got {crs}")
    if count < 3:
        raise DataError(f"{mosaic}: {count} band(s); expected RGB (3 or more bands)")
    tiles = {t: m.group(1) for t in targets if (m := _S2NAIP_TARGET.match(t.as_posix()))}
    captures = Counter(tiles.values())
    pairs, missing = [], []
    for t in sorted(targets):
        tile = tiles[t]
        if wanted is not None and tile not in wanted and f"{t.parts[-3]}/{tile}" not in wanted:
            continue  # another split's tile
        if tile_window(transform, width, height, tile) is None:
            missing.append(tdir / t)
            continue
        key = tile if captures[tile] == 1 else f"{t.parts[-3]}/{tile}"
        pairs.append(ImagePair(key, mosaic, tdir / t, tile=tile))
    if not pairs:
        where = f" of the {split!r} split" if split is not None else ""
        raise DataError(f"{mosaic}: covers none of the tiles{where} of {tdir} (its bounds "
                        f"{tuple(round(v, 1) for v in box)} in EPSG:3857)")
    b = Tile.parse(pairs[0].tile or "").bounds
    col, row = ~transform @ (b.left, b.top)
    off = max(abs(col - round(col)), abs(row - round(row)))
    if off > 0.01:
        # each tile is then read at the nearest pixel: up to half a pixel away from the truth
        warnings.warn(f"{mosaic}: its pixels are {off:.2g} px off the tiles' grid; each tile "
                      "is read at the nearest pixel, which lowers the scores (write the "
                      "mosaic on the tiles' grid, as `zoomsr infer` does)", ZoomsrWarning,
                      stacklevel=3)
    return Pairing(pairs, "s2naip", missing, [], {}, [], split)


def _file_id(path: Path) -> tuple[int, int] | None:
    """``(st_dev, st_ino)``: the same for two paths of one file (symlinks, ``..``, hard
    links), as :func:`os.path.samefile` compares; None when it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _refuse_targets_as_predictions(pdir: Path, tdir: Path, preds: list[Path],
                                   targets: list[Path]) -> None:
    """Raise :class:`DataError` when a prediction (relative to ``pdir``) is one of the target
    files (relative to ``tdir``): the folders overlap, e.g. ``--pred DATASET/naip/ID
    --target DATASET``; every such pair would score a perfect, meaningless match."""
    ids = {i: tdir / t for t in targets if (i := _file_id(tdir / t)) is not None}
    same = [(pdir / p, ids[i]) for p in preds if (i := _file_id(pdir / p)) in ids]
    if same:
        pred, target = same[0]
        example = str(pred) if pred == target else f"{pred} is {target}"
        raise DataError(
            f"--pred {pdir} and --target {tdir}: {len(same)} of the {len(preds)} predictions "
            f"are target files themselves (e.g. {example}); --pred and --target are probably "
            "swapped or point at the same images"
        )


def _group(items: list[tuple[str, Path]]) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    seen: dict[str, list[Path]] = {}
    for key, path in items:
        seen.setdefault(key, []).append(path)
    unique = {k: v[0] for k, v in seen.items() if len(v) == 1}
    dup = {k: v for k, v in seen.items() if len(v) > 1}
    return unique, dup


_LABELS = {"probav": "PROBA-V", "worldstrat": "WorldStrat", "oli2msi": "OLI2MSI"}


def benchmark_layout(folder: Path) -> str | None:
    """``"probav"``, ``"worldstrat"`` or ``"oli2msi"`` where ``folder`` is laid out as that
    benchmark dataset's copy (its top folders), else None."""
    if any((folder / split / band).is_dir() for split in ("train", "test")
           for band in ("NIR", "RED")):
        return "probav"
    if (folder / "hr_dataset").is_dir() and (folder / "lr_dataset").is_dir():
        return "worldstrat"
    if any((folder / f"{split}_hr").is_dir() for split in ("train", "test")):
        return "oli2msi"
    return None


def pair_images(
    pred_dir: str | os.PathLike[str],
    target_dir: str | os.PathLike[str],
    split: str | None = None,
    splits_file: str | os.PathLike[str] | None = None,
) -> Pairing:
    """Match the images under ``pred_dir`` with those under ``target_dir`` (see module doc).

    Returned paths are absolute-or-as-given (``pred_dir / relative``). ``split`` (``train``,
    ``val``, ``test`` or ``buffer``) keeps the targets of that split of an S2-NAIP dataset.

    Raises:
        DataError: a folder is missing or empty, ``split`` cannot be applied, or no file pairs
            up at all.
    """
    pdir, tdir = Path(pred_dir), Path(target_dir)
    if pdir.is_file() and pdir.suffix.lower() in (".tif", ".tiff"):
        return _mosaic_pairing(pdir, tdir, split, splits_file)
    if pdir.exists() and tdir.exists() and pdir.resolve() in (tdir.resolve(),
                                                             (tdir / "naip").resolve()):
        # every file then pairs with itself: PSNR "0 (+N inf)", a perfect score
        raise DataError(f"{pdir}: the predictions and the targets are the same folder; give "
                        "the model's outputs as --pred and the ground truth as --target")
    preds = _without_side_outputs(list_images(pdir, "prediction folder"))
    if not tdir.is_dir():
        list_images(tdir, "target folder")  # raises: missing or not a folder
    dataset = _dataset_targets(tdir)
    targets = dataset if dataset is not None else list_images(tdir, "target folder")
    wanted = read_split(tdir, split, splits_file) if split is not None else None
    s2naip = all(_S2NAIP_TARGET.match(t.as_posix()) for t in targets)
    unmatched: list[Path] = []
    outside: list[Path] = []
    twice: set[str] = set()  # S2-NAIP tiles captured twice
    if wanted is not None and not s2naip:
        raise DataError(
            f"--split needs S2-NAIP targets ([naip/]{{image_uuid}}/{{tile}}/rgb.png); "
            f"{tdir} holds e.g. {targets[0]}"
        )
    if s2naip:
        tile_of = {t: m.group(1) for t in targets if (m := _S2NAIP_TARGET.match(t.as_posix()))}
        # A tile captured twice (two image ids) is keyed {image_id}/{tile}: a prediction then
        # pairs by the image id folder above its tile (a mirror of naip/{id}/{tile}/rgb.png).
        # Counted over the whole dataset, not the split: a split may list one capture only,
        # and both captures' predictions must still keep apart.
        twice = {k for k, n in Counter(tile_of.values()).items() if n > 1}
        all_keys: set[str] = set()
        t_items = []
        for t, tile in tile_of.items():
            key = f"{t.parts[-3]}/{tile}" if tile in twice else tile
            all_keys.add(key)
            if wanted is None or tile in wanted or f"{t.parts[-3]}/{tile}" in wanted:
                t_items.append((key, t))
        if not t_items:
            raise DataError(f"no target in {tdir} is in the {split!r} split")
        kept = {k for k, _ in t_items}
        all_tiles, kept_tiles = set(tile_of.values()), {tile_of[t] for _, t in t_items}
        other_captures = all_keys - kept
        p_items = []
        for p in preds:
            tile = _pred_tile(p)
            if tile is None:
                unmatched.append(pdir / p)
                continue
            key = tile
            if tile in twice and (image_id := _pred_image_id(p, tile)) is not None:
                key = f"{image_id}/{tile}"
            if tile in all_tiles and tile not in kept_tiles or key in other_captures:
                # another split's tile, or the capture the split leaves out of a tile captured
                # twice
                outside.append(pdir / p)
            else:
                p_items.append((key, p))
    else:
        t_items = [(t.with_suffix("").as_posix(), t) for t in targets]
        p_items = [(p.with_suffix("").as_posix(), p) for p in preds]
    _refuse_targets_as_predictions(pdir, tdir, [p for _, p in p_items], [t for _, t in t_items])
    t_map, t_dup = _group(t_items)
    p_map, p_dup = _group(p_items)
    ambiguous = {
        k: [tdir / t for kt, t in t_items if kt == k] + [pdir / p for kp, p in p_items if kp == k]
        for k in sorted(set(t_dup) | set(p_dup))
    }
    if s2naip:
        # a prediction of a tile captured twice that names no image id: which capture?
        for k, p in p_items:
            if k in twice:
                ambiguous.setdefault(k, [tdir / t for kt, t in t_items
                                         if kt.endswith(f"/{k}")]).append(pdir / p)
        p_map = {k: v for k, v in p_map.items() if k not in twice}
    t_map = {k: v for k, v in t_map.items() if k not in ambiguous}
    p_map = {k: v for k, v in p_map.items() if k not in ambiguous}
    pairs = [
        ImagePair(k, pdir / p_map[k], tdir / t_map[k]) for k in sorted(t_map) if k in p_map
    ]
    missing = [tdir / t_map[k] for k in sorted(t_map) if k not in p_map]
    unmatched += [pdir / p_map[k] for k in sorted(p_map) if k not in t_map]
    if not pairs and ambiguous:
        key, files = next(iter(ambiguous.items()))
        raise DataError(
            f"no prediction in {pdir} pairs with a target in {tdir}: {len(ambiguous)} "
            f"id{'s' if len(ambiguous) > 1 else ''} claimed by several files, e.g. "
            f"{key!r}: {', '.join(str(f) for f in files)}"
        )
    if not pairs and outside:
        raise DataError(_none_in_split(pdir, tdir, split, preds, outside, unmatched,
                                       splits_file))
    if not pairs:
        kind = benchmark_layout(tdir)
        hint = (f"; {tdir} is a {_LABELS[kind]} copy: score other methods' files on it with "
                f"`zoomsr benchmark` (a predictions entry on a dataset: {kind}: one file per "
                "item, named by its id)" if kind else "")
        raise DataError(
            f"no prediction in {pdir} matches a target in {tdir} "
            f"({'S2-NAIP tile ids' if s2naip else 'relative paths without extension'}; "
            f"e.g. target {targets[0]}, prediction {preds[0]}){hint}"
        )
    return Pairing(
        pairs, "s2naip" if s2naip else "relative", sorted(missing), sorted(unmatched), ambiguous,
        sorted(outside), split,
    )
