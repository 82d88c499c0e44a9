"""Atomic file writes: write to a hidden temporary file beside the target, then rename.

A crash or Ctrl-C never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from zoomsr.errors import InputError

# mkstemp creates files readable by the owner only; finished outputs get the usual permissions.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; rename it onto ``path`` on success.

    The parent folder is created. On an exception the temporary file is removed and the
    target is left untouched. ``suffix`` defaults to the target's suffix so that libraries
    that pick a format from the extension still work.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=(target.suffix if suffix is None else suffix) + ".tmp",
        dir=target.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_temps(path: str | os.PathLike[str], suffix: str | None = None) -> list[Path]:
    """Remove the temporary files :func:`atomic_path` left beside ``path`` when its process was
    killed outright (SIGKILL, the OOM killer, a power cut: nothing could clean up), and return
    them. Call it once ``path`` is complete: any such file is an earlier, dead run's (an
    output's temporary file can be as large as the output)."""
    target = Path(path)
    ext = target.suffix if suffix is None else suffix
    # mkstemp's names: the prefix, 8 random characters, the suffix
    pattern = f".{glob.escape(target.name)}.{'?' * 8}{glob.escape(ext)}.tmp"
    removed = []
    for stale in target.parent.glob(pattern):
        with contextlib.suppress(OSError):
            stale.unlink()
            removed.append(stale)
    return removed


def refuse_existing(paths: Iterable[str | os.PathLike[str]], overwrite: bool) -> None:
    """Raise :class:`InputError` naming the outputs in ``paths`` that exist, unless
    ``overwrite``: commands never replace finished work silently."""
    if overwrite:
        return
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing:
        raise InputError(f"{', '.join(existing)}: already exists (pass --overwrite to replace it)")


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
