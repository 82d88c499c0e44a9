"""Acquisition dates of the builder's inputs: parsing the forms users and metadata give,
and finding a date in a file or folder name or in a raster's tags.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

from zoomsr.errors import InputError

_DATETIME_IN_NAME = re.compile(r"(?<!\d)(\d{8})(?:T(\d{6}))?(?!\d)")
_DATE_TAGS = ("ACQUISITION_DATE", "ACQUISITIONDATETIME", "DATATAKE_1_DATATAKE_SENSING_START",
              "PRODUCT_START_TIME", "SENSING_TIME", "DATETIME", "TIFFTAG_DATETIME")


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def parse_datetime(text: str, what: object = "") -> dt.datetime:
    """Parse ``YYYY-MM-DD``, ``YYYYMMDD``, ISO 8601 or ``YYYY:MM:DD HH:MM:SS`` into UTC."""
    s = str(text).strip()
    try:
        if re.fullmatch(r"\d{8}", s):
            value = dt.datetime.strptime(s, "%Y%m%d")
        elif re.fullmatch(r"\d{8}T\d{6}", s):
            value = dt.datetime.strptime(s, "%Y%m%dT%H%M%S")
        elif re.fullmatch(r"\d{4}:\d{2}:\d{2} \d{2}:\d{2}:\d{2}", s):
            value = dt.datetime.strptime(s, "%Y:%m:%d %H:%M:%S")
        else:
            value = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{what}: not a date: {text!r} (expected YYYY-MM-DD)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def date_from_name(name: str) -> dt.datetime | None:
    """The first plausible ``YYYYMMDD[THHMMSS]`` in a file or folder name, else None."""
    for match in _DATETIME_IN_NAME.finditer(name):
        day, time = match.groups()
        try:
            value = dt.datetime.strptime(day + (time or "000000"), "%Y%m%d%H%M%S")
        except ValueError:
            continue
        if 1970 <= value.year <= 2100:
            return value.replace(tzinfo=dt.timezone.utc)
    return None


def _date_from_tags(tags: Mapping[str, str]) -> dt.datetime | None:
    upper = {k.upper(): v for k, v in tags.items()}
    for key in _DATE_TAGS:
        if key in upper:
            try:
                return parse_datetime(upper[key], key)
            except InputError:
                continue
    return None


__all__ = ["date_from_name", "parse_datetime"]
