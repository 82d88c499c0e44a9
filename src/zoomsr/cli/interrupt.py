"""What a command says when Ctrl-C stops it: a long command tells how to go on, from what it
has kept on disk by then (``zoomsr.cli.main`` prints it)."""

from __future__ import annotations

from collections.abc import Callable

_hint: Callable[[], str] | None = None


def on_interrupt(hint: Callable[[], str] | None) -> None:
    """Set the message (computed when Ctrl-C comes) for the command now running."""
    global _hint
    _hint = hint


def message() -> str:
    """The line to print after an interruption: the running command's, else ``interrupted``."""
    if _hint is None:
        return "interrupted"
    try:
        return _hint()
    except Exception:  # noqa: BLE001 - a hint must never hide the interruption itself
        return "interrupted"
