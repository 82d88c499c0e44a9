"""Checks for model constructor arguments: each bad value raises ``ConfigError`` naming the key."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from zoomsr.errors import ConfigError


def check_int(
    name: str, value: Any, *, minimum: int | None = None, choices: Iterable[int] | None = None
) -> int:
    """Return ``value`` if it is an int (not a bool) within ``minimum``/``choices``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    if choices is not None:
        allowed = tuple(choices)
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value}")
    return value


def check_float(
    name: str, value: Any, *, minimum: float | None = None, maximum: float | None = None
) -> float:
    """Return ``value`` as float if it is a real number within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of the strings ``choices``."""
    allowed = tuple(choices)
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def check_int_tuple(name: str, value: Any, *, minimum: int = 0) -> tuple[int, ...]:
    """Return ``value`` (a list or tuple of ints >= ``minimum``) as a tuple."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError(f"{name} must be a list of integers, got {value!r}")
    items = tuple(value)
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or item < minimum:
            raise ConfigError(f"{name} must be a list of integers >= {minimum}, got {value!r}")
    return items
