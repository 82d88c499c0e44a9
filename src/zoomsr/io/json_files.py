"""Reading the small JSON files users hand over (splits, tile weights): one-line errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from zoomsr.errors import DataError


def read_json(path: str | os.PathLike[str], not_found: str, unreadable: str) -> Any:
    """The parsed JSON of ``path``; :class:`DataError` ``"{path}: {not_found}"`` where it is
    missing, ``"{path}: {unreadable} ({why})"`` where it cannot be read or parsed."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{p}: {not_found}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{p}: {unreadable} ({exc})") from None


__all__ = ["read_json"]
