"""Atomic file writes: write to a hidden temporary file beside the target, then rename.

A crash or Ctrl-C never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
import time
import warnings
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


def remove_stale_temps(path: str | os.PathLike[str], suffix: str | None = None,
                       idle_s: float = 0.0) -> list[Path]:
    """Remove the temporary files :func:`atomic_path` left beside ``path`` when its process was
    killed outright (SIGKILL, the OOM killer, a power cut: nothing could clean up), and return
    them. Call it where no other live process writes ``path`` (it holds
    :func:`output_lock`, or ``path`` is complete): any such file is then a dead run's (an
    output's temporary file can be as large as the output). ``idle_s``: only files not
    modified for that long (where another process may be writing one now: a download)."""
    target = Path(path)
    ext = target.suffix if suffix is None else suffix
    # mkstemp's names: the prefix, 8 random characters, the suffix; and what a writer made
    # from one (a COG's intermediate GeoTIFF: ``....tif.tmp.gtiff.tif``)
    pattern = f".{glob.escape(target.name)}.{'?' * 8}{glob.escape(ext)}.tmp*"
    removed = []
    now = time.time()
    for stale in target.parent.glob(pattern):
        with contextlib.suppress(OSError):
            if idle_s and now - stale.stat().st_mtime < idle_s:
                continue
            stale.unlink()
            removed.append(stale)
    return removed


@contextlib.contextmanager
def output_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on the output ``path`` while a run writes it (a lock file,
    ``.NAME.zoomsr-lock``, beside it; removed at the end). A second run of the same output,
    in this or another process (on another machine too, where the filesystem supports
    ``flock`` across machines), is refused at once with :class:`InputError`: it would
    otherwise delete or overwrite the first run's work, and the first would publish a file of
    mixed rows. Where no lock can be taken (no ``fcntl``: Windows; a filesystem without
    ``flock``: Lustre without ``-o flock``, NFS without a lock daemon) the run goes on
    without one, with a warning for the filesystem."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux/macOS
        yield
        return
    target = Path(path)
    lock = target.parent / f".{target.name}.zoomsr-lock"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # no folder can be made there: the run's checks say so
        yield
        return
    for _ in range(10):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # a folder that cannot be written: the run's checks say so
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(
                f"{target}: another zoomsr run is writing it (it holds {lock.name}); wait for "
                "that run to end or stop it, or write to another file") from None
        except OSError as exc:  # ENOLCK, ENOSYS, EOPNOTSUPP: the filesystem has no flock
            os.close(fd)
            lock.unlink(missing_ok=True)
            from zoomsr.errors import ZoomsrWarning

            warnings.warn(f"{target}: no lock taken ({exc.strerror or exc}: the filesystem "
                          "does not support flock); do not run two zoomsr runs of this output "
                          "at once", ZoomsrWarning, stacklevel=3)
            yield
            return
        try:
            now = os.stat(lock)
        except FileNotFoundError:
            now = None
        held = os.fstat(fd)
        if now is None or (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            # locked a file that the previous holder removed meanwhile: a later run would
            # lock a new one beside it; take the one at the path instead
            os.close(fd)
            continue
        try:
            yield
        finally:
            # removed while still held, and only if it is still this run's file
            with contextlib.suppress(OSError):
                now = os.stat(lock)
                if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                    lock.unlink()
            os.close(fd)
        return
    raise InputError(f"{target}: its lock file {lock.name} keeps being replaced; is another "
                     "zoomsr run of it starting and ending in a loop?")


def refuse_existing(paths: Iterable[str | os.PathLike[str]], overwrite: bool) -> None:
    """Raise :class:`InputError` naming the outputs in ``paths`` that exist, unless
    ``overwrite``: commands never replace finished work silently."""
    if overwrite:
        return
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing:
        raise InputError(f"{', '.join(existing)}: already exists (pass --overwrite to replace it)")


def atomic_write_all(files: dict[Path, bytes | str]) -> None:
    """Write several files (``path -> bytes``, or text as UTF-8) all or none: each to a
    temporary file beside it first, then all renamed into place, with Ctrl-C held for the
    renames. A write that fails (a full disk) removes the temporary files and raises
    :class:`~zoomsr.errors.WriteError` naming the file: no result is half there, so the re-run
    is not refused by what a failed one left."""
    from zoomsr.errors import WriteError
    from zoomsr.stopping import interrupts_held

    temps: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix + ".tmp",
                                        dir=path.parent)
            temps.append((Path(name), path))
            try:
                with os.fdopen(fd, "wb") as f:  # its close flushes: inside the try
                    f.write(data.encode("utf-8") if isinstance(data, str) else data)
            except OSError as exc:
                raise WriteError(f"{path}: cannot write ({exc.strerror or exc})") from None
            os.chmod(name, _FILE_MODE)
        with interrupts_held():
            for tmp, path in temps:
                os.replace(tmp, path)
    except BaseException:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
