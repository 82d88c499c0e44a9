"""The console script after an interrupt: another Ctrl-C ends it with code 130, quietly.

Users often press Ctrl-C twice. After the first, the command says how it stopped, then
Python's exit takes about a second (the exit callbacks of torch and other libraries, then
module teardown). Another Ctrl-C there printed a traceback ("Exception ignored in atexit
callback", or one from the line in between) or killed the process by SIGINT (-2).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys

_console = False
_stopped = False


def console_script() -> None:
    """Called first by the console script: this process exits when the command ends (tests
    and other callers of ``main()`` keep their own signal handlers)."""
    global _console
    _console = True


def while_reporting() -> None:
    """Called as an interrupted command starts saying how it stopped: in the console script,
    another Ctrl-C is ignored until that line is out (a traceback before)."""
    if _console:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def after_interrupt() -> None:
    """Called by the console script once an interrupted command has returned 130: during the
    exit callbacks a Ctrl-C ends the exit at once, with code 130."""
    global _stopped
    _stopped = True
    signal.signal(signal.SIGINT, _exit_now)


def _exit_now(signum: int, frame: object) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def _ignore_interrupts() -> None:
    # After the exit callbacks, Python's finalisation puts a Python-level handler back to the
    # default (death by SIGINT) before tearing modules down; an ignored signal stays ignored.
    if _stopped:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


# Registered when zoomsr.cli is imported, before the libraries a command imports register
# theirs: exit callbacks run the latest registered first, so this one runs after them.
atexit.register(_ignore_interrupts)
