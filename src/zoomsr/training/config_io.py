"""A training config from a dict or a YAML file (with ``key.path=value`` overrides), and back.

:func:`config_from_dict` builds a :class:`~zoomsr.training.config.TrainConfig` (keys and types
checked by :mod:`.config_types`, then :func:`~zoomsr.training.config_checks.validate_config`);
:func:`load_config` reads a YAML file (refusing a key given twice), applies ``--set``
overrides (:func:`parse_override`, :func:`apply_overrides`) and names the file or the override
in its errors; :func:`dump_config` writes the YAML text back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable
from typing import Any

import yaml

from zoomsr.errors import ConfigError, first_line
from zoomsr.training.config import TrainConfig
from zoomsr.training.config_checks import validate_config
from zoomsr.training.config_types import _build


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a plain dict (keys checked, types checked,
    then :func:`validate_config`)."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
    cfg = _build(TrainConfig, data)
    validate_config(cfg)
    return cfg


# ---------------------------------------------------------------------------------------------
# Overrides and loading


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"trainer.max_steps=20"`` -> (["trainer", "max_steps"], 20); the value is read as YAML."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"an override (--set) expects key.path=value, got {item!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text  # not YAML: keep the text, the type check decides
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set ``key.path=value`` items into a copy of the nested dict ``data``."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        path, value = parse_override(item)
        node = out
        for depth, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"--set {item}: {'.'.join(path[: depth + 1])!r} is not a section"
                )
            node = child
        node[path[-1]] = value
    return out


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(key, line)
        self.key, self.line = key, line


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # PyYAML's own check names it
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_config(path: str | os.PathLike[str],
                overrides: list[str] | str | None = None) -> TrainConfig:
    """Read a YAML config, apply ``overrides`` (``["trainer.max_steps=5", ...]``, or one such
    string) and validate; errors name the file and the key."""
    if isinstance(overrides, str):  # one override: not a list of its characters
        overrides = [overrides]
    from zoomsr.config_files import known_configs_hint, resolve_config

    p = resolve_config(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder; give a YAML config file"
                          + known_configs_hint())
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found" + known_configs_hint())
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506
    except _DuplicateKey as exc:
        raise ConfigError(f"{p}: line {exc.line}: key {exc.key!r} given twice (YAML would "
                          "keep the last silently); remove one") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: not a readable YAML file ({first_line(exc)})") from None
    if data is None or data == {}:
        # Without this, the defaults' first cross-field error would be reported instead.
        raise ConfigError(
            f"{p}: the config file is empty (expected a YAML mapping of sections, as "
            "`zoomsr configs show tiny` prints)"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config must be a YAML mapping of sections")
    data = apply_overrides(data, list(overrides or []))
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        # a value given with --set is named as given (blamed on the file, it was looked for
        # there in vain)
        named = re.findall(r"'([\w.]+)'", str(exc))  # the keys the message names
        for item in overrides or []:
            key = ".".join(parse_override(item)[0])
            if any(k == key or k.startswith(key + ".") for k in named):
                raise ConfigError(f"--set {item}: {exc}") from None
        raise ConfigError(f"{p}: {exc}") from None


def dump_config(cfg: TrainConfig) -> str:
    """The config as YAML text (loadable with :func:`load_config`)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
