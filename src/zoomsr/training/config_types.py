"""Type checking of a config's values against the annotations of its dataclasses.

:func:`_build` makes a dataclass of :mod:`.config` from a plain dict: an unknown key, or a
value :func:`_coerce` cannot read as its field's annotation (``int``, ``float | None``, a
``Literal``, a list, a mapping, a nested section...), raises
:class:`~zoomsr.errors.ConfigError` naming the key (``trainer.max_steps``) and what it expects
(:func:`_bad`); numbers must be finite. Cross-field checks are :mod:`.config_checks`'.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, cast

from zoomsr.errors import ConfigError


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        parts = [_type_name(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(parts) + " or null"
    plural = {int: "integers", float: "numbers", bool: "booleans", str: "strings"}
    if origin is list:
        item = typing.get_args(annotation)[0]
        return f"a list of {plural.get(item, _type_name(item))}"
    if origin is dict:
        item = typing.get_args(annotation)[1]
        if item is Any:
            return "a mapping of names to values"
        return f"a mapping to {plural.get(item, _type_name(item))}"
    if dataclasses.is_dataclass(annotation):
        return "a mapping"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


class _NotFinite(ConfigError):
    """A number that is NaN or infinite (kept, not retried, by ``X | None`` fields)."""


def _check_finite(key: str, value: Any) -> None:
    # NaN slips through every range check (all comparisons are false) and inf is never a
    # meaningful weight, rate or factor: every number of a config must be finite.
    if isinstance(value, float) and not math.isfinite(value):
        raise _NotFinite(f"config key {key!r} must be a finite number, got {value}")


def _bad(key: str, annotation: Any, value: Any) -> ConfigError:
    return ConfigError(f"config key {key!r} must be {_type_name(annotation)}, got {value!r}")


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        for option in options:
            try:
                return _coerce(key, value, option)
            except _NotFinite:
                raise
            except ConfigError:
                pass
        raise _bad(key, annotation, value)
    if origin is Literal:
        if value not in typing.get_args(annotation):
            raise _bad(key, annotation, value)
        return value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise _bad(key, annotation, value)
        return _build(cast(type, annotation), value, key)  # (a dataclass type)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _bad(key, annotation, value)
        (item,) = typing.get_args(annotation)
        return [_coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _bad(key, annotation, value)
        _, item = typing.get_args(annotation)
        return {str(k): _coerce(f"{key}.{k}", v, item) for k, v in value.items()}
    if annotation is bool:
        if not isinstance(value, bool):
            raise _bad(key, annotation, value)
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(key, annotation, value)
        return value
    if annotation is float:
        if isinstance(value, bool):
            raise _bad(key, annotation, value)
        if not isinstance(value, (int, float, str)):
            raise _bad(key, annotation, value)
        # YAML 1.1 reads 1e-4 (no dot) as a string; accept it as the number it means.
        try:
            number = float(value)
        except ValueError:
            raise _bad(key, annotation, value) from None
        _check_finite(key, number)
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise _bad(key, annotation, value)
        return value
    raise TypeError(f"unsupported config annotation {annotation!r} for {key}")  # programming error


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            where = f" under {prefix!r}" if prefix else ""
            raise ConfigError(
                f"unknown config key {(prefix + '.' if prefix else '') + str(key)!r}; valid keys"
                f"{where}: {', '.join(names)}"
            )
    kwargs = {
        name: _coerce(f"{prefix}.{name}" if prefix else name, data[name], hints[name])
        for name in names
        if name in data
    }
    return cls(**kwargs)
