"""What a command says when Ctrl-C stops it: a long command tells how to go on, from what it
has kept on disk by then (``zoomsr.cli.main`` prints it)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])

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


def sigterm_stops(command: _F) -> _F:
    """``command`` with SIGTERM (``timeout``, a scheduler's time limit, ``kill``) handled as
    Ctrl-C (:func:`zoomsr.stopping.sigterm_as_interrupt`): the same one line, exit 130, the
    command's workers stopped and its finished work kept. Without it, a SIGTERM ended the
    process at once, silently (exit 143). (Not for ``train``: Lightning installs its own
    SIGTERM handler only where none is set.)"""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        from zoomsr.stopping import sigterm_as_interrupt

        with sigterm_as_interrupt():
            return command(*args, **kwargs)

    run.handles_sigterm = True  # type: ignore[attr-defined]
    return run  # type: ignore[return-value]
