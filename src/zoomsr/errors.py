"""Exceptions raised by zoomsr.

Library code raises these; only the CLI turns them into one-line messages and exit codes.
Subclasses also inherit a builtin so ``except ValueError`` / ``except OSError`` keep working.
"""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The one-line reason of ``exc`` for a message: its first line, or its type's name. For
    rasterio's "Read failed. See previous exception for details.", the chained GDAL error."""
    text = str(exc)
    cause = exc.__cause__ or exc.__context__
    if "previous exception" in text and cause is not None and str(cause):
        text = str(cause)
    return text.splitlines()[0] if text else type(exc).__name__


class ZoomsrError(Exception):
    """Root of every zoomsr error. ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1


class InputError(ZoomsrError, ValueError):
    """Bad user input: a wrong argument, option or config value (CLI exit 2)."""

    exit_code = 2


class ConfigError(InputError):
    """A configuration key or value is unknown or ill-typed."""


class DataError(InputError):
    """A data file or folder is missing, unreadable or has the wrong shape/dtype/content."""


class WriteError(ZoomsrError, OSError):
    """An output cannot be written (a full disk, a file-size limit, a filesystem error): not
    the user's input (CLI exit 1). The message names the file."""


class CheckpointError(ZoomsrError, OSError):
    """A checkpoint cannot be read or does not match the model."""

    exit_code = 2


class WeightsNotFoundError(CheckpointError):
    """Weights that are needed (a metric's LPIPS or CLIP files, a registry checkpoint) are not
    on this machine."""


class WeightsNotAvailableError(WeightsNotFoundError):
    """Registry weights are neither cached nor obtainable now (offline, missing package)."""

    exit_code = 1


class ZoomsrWarning(UserWarning):
    """Something in the user's input looks wrong but need not be (the run goes on); the CLI
    prints it as one ``warning:`` line."""
