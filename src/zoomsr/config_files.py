"""The YAML configs zoomsr ships (training recipes, the sample benchmark), installed with the
package so that a wheel's users have them too.

A config argument (``zoomsr train``, ``zoomsr benchmark``) that names no file here is looked
up among them: by name (``tiny``, ``esrgan_8img``, ``benchmarks/sample``) or as the
repository path the docs use (``configs/tiny.yaml``). A file of that path in the working
folder always wins. ``zoomsr configs list`` lists them, ``zoomsr configs show NAME`` prints one
(to copy and edit).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

#: Where the shipped configs are installed.
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def builtin_configs() -> list[str]:
    """Names of the shipped configs (``"tiny"``, ``"benchmarks/sample"``...), sorted."""
    return sorted(p.relative_to(CONFIG_DIR).with_suffix("").as_posix()
                  for p in CONFIG_DIR.rglob("*.yaml"))


def builtin_config(name: str | os.PathLike[str], under: str = "") -> Path | None:
    """The shipped config ``name`` names (``tiny``, ``tiny.yaml``, ``configs/tiny.yaml``,
    ``benchmarks/sample``; with ``under``, also ``under/NAME``: ``sample``), or None."""
    return _builtin(name) or (_builtin(f"{under}/{name}") if under else None)


def _builtin(name: str | os.PathLike[str]) -> Path | None:
    text = str(name).replace(os.sep, "/")
    if not text or Path(text).is_absolute() or ".." in PurePosixPath(text).parts:
        return None
    rel = PurePosixPath(text)
    if rel.parts and rel.parts[0] == "configs":
        rel = PurePosixPath(*rel.parts[1:])
    if not rel.parts:
        return None
    if rel.suffix == "":
        rel = rel.with_suffix(".yaml")
    if rel.suffix not in (".yaml", ".yml"):
        return None
    path = CONFIG_DIR / rel.with_suffix(".yaml")
    return path if path.is_file() else None


def resolve_config(path: str | os.PathLike[str], under: str = "") -> Path:
    """``path`` if it is a file (``~`` expanded), else the shipped config it names (also as
    ``under/NAME``: ``sample`` for ``benchmarks/sample``), else ``path`` (for the caller's
    "not found", which :func:`known_configs_hint` completes)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    # (a folder of that name, e.g. an earlier run's --out tiny, does not hide the shipped one)
    return builtin_config(path, under) or p


def known_configs_hint(prefix: str = "") -> str:
    """`` (zoomsr's own: tiny, ...: `zoomsr configs list`)`` for a not-found message; only
    the shipped configs under ``prefix`` (``"benchmarks/"``) or not under a folder."""
    names = [n for n in builtin_configs()
             if (n.startswith(prefix) if prefix else "/" not in n)]
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    return f" (zoomsr's own: {shown}; `zoomsr configs list`)" if names else ""
