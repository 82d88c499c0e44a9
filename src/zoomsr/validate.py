"""Checks for argument and config values: each bad value raises ``ConfigError`` (or the error
given) naming the key or option, as one line."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from zoomsr.errors import ConfigError, InputError


def check_int(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None,
    choices: Iterable[int] | None = None,
) -> int:
    """Return ``value`` if it is an int (not a bool) within ``minimum``/``maximum`` (both
    inclusive) and ``choices``."""
    if isinstance(value, bool) or not isinstance(value, int):
        numpy = type(value).__module__ == "numpy" and isinstance(value, numbers.Integral)
        kind = " (a NumPy integer: pass int(value))" if numpy else ""
        raise ConfigError(f"{name} must be an integer, got {value!r}{kind}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value}")
    if choices is not None:
        allowed = tuple(choices)
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value}")
    return value


def check_float(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    below: float | None = None,
) -> float:
    """Return ``value`` as float if it is a finite real number within the bounds.

    ``minimum`` and ``maximum`` are inclusive, ``below`` is an exclusive upper bound; NaN and
    infinities are always rejected (they pass every comparison or break the model later).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value}")
    if below is not None and value >= below:
        raise ConfigError(f"{name} must be < {below}, got {value}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[str],
                 error: type[InputError] = ConfigError) -> str:
    """Return ``value`` if it is one of the strings ``choices``; else raise ``error``
    ("NAME must be one of A, B, got 'x'")."""
    allowed = tuple(choices)
    if value not in allowed:
        raise error(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
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


# Half-open ranges [low, high) that a config key must fall in, whatever the model.
CONFIG_RANGES: dict[str, tuple[float, float]] = {
    "dropout": (0.0, 1.0),
}


def check_config_values(config: Mapping[str, Any], prefix: str = "") -> None:
    """Reject non-finite numbers (also inside lists) and values outside :data:`CONFIG_RANGES`.

    Runs before a model is built, so a bad value gives a :class:`ConfigError` naming the key
    (``prefix`` + key, e.g. a training config's ``model.config.``) instead of an error from
    deep inside torch. Types and model-specific ranges are left to the constructors' checks.
    """
    for key, value in config.items():
        name = f"{prefix}{key}"
        items = value if isinstance(value, (list, tuple)) else (value,)
        for item in items:
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"config key {name!r} must be a finite number, got {value!r}")
        if key in CONFIG_RANGES and isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = CONFIG_RANGES[key]
            if not low <= value < high:
                raise ConfigError(
                    f"config key {name!r} must be in [{low:g}, {high:g}), got {value!r}"
                )
