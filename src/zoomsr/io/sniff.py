"""What a would-be checkpoint file is, from its first bytes (no torch, nothing unpickled).

Shared by the checkpoint loader (:mod:`zoomsr.models.checkpoints`) and the weights cache
(:mod:`zoomsr.weights.checks`), so both tell a user the same thing about the same file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from zoomsr.errors import first_line

#: First bytes of a legacy (non-zip) ``torch.save`` file: pickle protocol 2, then the magic
#: number 0x1950a86a20f9469cfc6c as a 10-byte LONG1.
LEGACY_TORCH_HEADER = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_AGAIN = "download or save it again"
#: Suffixes of the text files a training run writes beside its checkpoints.
_TEXT_SUFFIXES = {".yaml", ".yml", ".json", ".txt", ".csv", ".log", ".md"}


def torch_file_kind(path: Path) -> str | None:
    """``"zip"`` or ``"legacy"`` for a file laid out as ``torch.save`` writes it (whether or
    not its contents load), else None. Read without unpickling anything."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(LEGACY_TORCH_HEADER))
        if head.startswith(LEGACY_TORCH_HEADER):
            return "legacy"
        if head.startswith(b"PK") and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if any(n.endswith("data.pkl") for n in archive.namelist()):
                    return "zip"
    except (OSError, zipfile.BadZipFile):
        pass
    return None


def what_file(path: Path) -> tuple[str, str]:
    """Why a file that is not a readable checkpoint is not one, from its first bytes, and what
    to do about it: (``"an HTML/XML page, e.g. a download error page"``, ``"download or save
    it again"``)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}", "check the file's permissions"
    if not head:
        return "an empty file", _AGAIN
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file it points to", "fetch the file itself"
    if head.lstrip().lower().startswith((b"<!doctype", b"<html", b"<?xml")):
        return "an HTML/XML page, e.g. a download error page", _AGAIN
    if head.startswith(b"PK"):
        return "a damaged or truncated zip archive", _AGAIN
    if head[8:10] == b'{"':
        return "a safetensors file under another suffix", "rename it to .safetensors"
    if Path(path).suffix.lower() in _TEXT_SUFFIXES:  # a run's config.yaml, splits.json...
        return ("a text file (a config, splits or log file?), not weights",
                "give the checkpoint itself (a training run's generator.pth or last.ckpt, a "
                ".safetensors or .pth file)")
    return "corrupt, truncated, or another format", _AGAIN


def unreadable_safetensors(path: Path, exc: BaseException) -> str:
    """Why ``path``, meant to be a safetensors file, could not be read (``exc``): what it is
    (:func:`what_file`), or, when it starts as one, that the rest is damaged or truncated
    (not "a safetensors file under another suffix")."""
    what = what_file(path)[0]
    if what.startswith("a safetensors file"):
        return f"a damaged or truncated safetensors file: {first_line(exc)}"
    return what


def load_failure(path: Path, exc: BaseException) -> str:
    """One line on why ``torch.load`` (or a safetensors read) of ``path`` raised ``exc``: what
    the file is when it is not laid out as ``torch.save`` writes, else torch's first sentence
    (its weights-only refusal spans lines and advises an unsafe load: not repeated)."""
    if torch_file_kind(path) is None:
        if Path(path).suffix == ".safetensors":
            return unreadable_safetensors(path, exc)
        return what_file(path)[0]
    text = str(exc).strip()
    if "Weights only load failed" in text:
        return "it holds pickled Python objects besides its tensors, which a safe load refuses"
    first = text.split(". ")[0].splitlines()[0][:160] if text else type(exc).__name__
    return f"a damaged or unreadable torch.save file: {first}"
