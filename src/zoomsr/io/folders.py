"""Whether a command can write its outputs in a folder, checked before any work."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from zoomsr.errors import InputError


def require_writable_folder(folder: str | os.PathLike[str], label: str | None = None, *,
                            create: bool = True) -> Path:
    """Fail with a one-line :class:`InputError` unless files can be written in ``folder``.

    ``label`` names what the user gave (an option, the output file) and starts the message
    (default: the folder). ``create``: make the folder (and its parents) now; otherwise
    nothing lasting is written, and a missing folder is checked in its nearest existing
    parent (it must be a folder that can be written). Writing is tried (a temporary file
    that vanishes), not guessed from permission bits: read-only mounts and ACLs count.
    """
    folder = Path(folder)
    label = str(folder) if label is None else label
    named = "" if label.endswith(str(folder)) else f"{folder} "  # the path once per message
    there = folder
    while not os.path.lexists(there) and there.parent != there:
        there = there.parent
    if not there.is_dir():
        if there == folder:
            raise InputError(f"{label}: {named}exists and is not a folder")
        raise InputError(f"{label}: {named}cannot be created: {there} is not a folder")
    if create and there != folder:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{label}: cannot create {folder} "
                             f"({exc.strerror or exc})") from None
        there = folder
    try:
        with tempfile.TemporaryFile(dir=there):
            pass
    except OSError as exc:
        raise InputError(f"{label}: cannot write in {there} ({exc.strerror or exc})") from None
    return folder
