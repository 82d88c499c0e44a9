"""Tables written as CSV text (floats with repr, so values round-trip exactly)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any


def csv_text(rows: Sequence[dict[str, Any]], fields: Sequence[str] | None = None) -> str:
    """CSV text of ``rows`` with columns ``fields`` (default: the first row's keys)."""
    buf = io.StringIO()
    if fields is None and not rows:
        return ""
    writer = csv.DictWriter(buf, fieldnames=list(fields or rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()
