"""The build index ``zoomsr_index.json`` (step 3 of :mod:`zoomsr.data.builder.build`): its
writer, one tile record per line, and :func:`load_index`, its reader.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from zoomsr import __version__
from zoomsr.data.layout import INDEX_FILE
from zoomsr.io.atomic import atomic_path


def _write_index(path: Path, blocks: list[dict], fingerprint: dict, counts: dict) -> None:
    """Write the index one tile per line, so memory does not grow with its size."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write('{"format": "zoomsr-build-index", "version": 1,\n')
        fh.write(f' "generator": "zoomsr {__version__} data build",\n')
        for key in ("config", "sentinel2", "highres"):
            fh.write(f' "{key}": {json.dumps(fingerprint[key])},\n')
        fh.write(f' "counts": {json.dumps(counts)},\n "tiles": [\n')
        first = True
        for block in blocks:
            for rec in block["tiles"]:
                fh.write(("" if first else ",\n") + json.dumps(rec, separators=(",", ":")))
                first = False
        fh.write("\n]}\n")


def load_index(root: str | os.PathLike[str]) -> dict:
    """The build index of a dataset made by ``zoomsr data build``."""
    from zoomsr.errors import DataError

    path = Path(root) / INDEX_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: not found (made by `zoomsr data build`)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable index ({exc})") from None


__all__ = ["load_index"]
