"""Comparing a job's record (its settings and inputs, as parsed JSON) with what a resumed run
would record: which entry differs first, to name it in the refusal."""

from __future__ import annotations

import json
from typing import Any


def first_difference(a: Any, b: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The path (``config.bands``, ``sentinel2[0].files``) and values where ``a`` and ``b``
    (parsed JSON) first differ, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(a.keys() | b.keys()):
            found = first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if a == b else (path, a, b)


def shortened(value: Any, width: int = 60) -> str:
    """``value`` as JSON text of at most ``width`` characters (as the record holds it)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."
