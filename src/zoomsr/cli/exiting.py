"""How the console script ends when a signal stops it: killed by that signal, quietly.

A program stopped by Ctrl-C should end killed by SIGINT once it has cleaned up, not with
``exit(130)``: a shell running it in a loop stops the loop only then (bash's "wait and
cooperative exit"); with exit code 130 the loop went on to its next item. Python does so for
an uncaught ``KeyboardInterrupt``, after its normal exit (exit callbacks, module teardown);
zoomsr's one-line message takes the traceback's place. Shells show 130 either way.

A Ctrl-C that lands in a ``__del__`` or a garbage-collection callback, where Python can only
print it as "Exception ignored", is sent again. Other Ctrl-Cs end the process at once, killed
by SIGINT, with no traceback: during start-up (imports, before any command runs) and during
Python's exit after any command (about a second of library teardown; a traceback said
"Exception ignored in atexit callback"). While an interrupted command says how it stopped,
another Ctrl-C waits for that line. Where SIGINT was ignored when zoomsr started (a
background job), it stays ignored.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sys
import threading
from typing import Any, NoReturn

_console = False  # the console script runs (tests and other callers of main() do not)
_ignored = False  # SIGINT was ignored when it started


def die_by_sigint(signum: int = signal.SIGINT, frame: object = None) -> None:
    """End the process now, killed by SIGINT (a signal handler, or called). On Windows, where
    a process cannot send itself a signal (``os.kill`` terminates it with that number as its
    exit code), it exits with code 130."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken stream: nothing to keep
            stream.flush()
    if os.name == "nt":
        os._exit(130)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


def console_script(ignored: bool | None = None) -> None:
    """Called first by the console script, before its imports: a Ctrl-C during start-up
    ends it at once. ``ignored``: whether SIGINT was ignored when the process started
    (default: whether it is now)."""
    global _console, _ignored
    if _console:
        return
    _console = True
    _ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN if ignored is None else ignored
    if not _ignored:
        signal.signal(signal.SIGINT, die_by_sigint)
    sys.unraisablehook = _unraisable


def _unraisable(unraisable: Any) -> None:
    # A Ctrl-C landing in a __del__ or a garbage-collection callback (a WeakSet's, as threads
    # end) cannot propagate: Python printed "Exception ignored in: ... KeyboardInterrupt" and
    # went on, so the command ran to its end. It is sent again, to land elsewhere.
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        # from another thread, a moment later: sent from here, it would be raised in here;
        # the signal it came from (SIGTERM's Terminated carries it), to the main thread
        signum = getattr(unraisable.exc_value, "signum", signal.SIGINT)
        resend = threading.Timer(0.01, _thread.interrupt_main, (signum,))
        resend.daemon = True
        with contextlib.suppress(RuntimeError):  # Python is exiting: no thread to start
            resend.start()
        return
    sys.__unraisablehook__(unraisable)


def command_starts() -> None:
    """The command runs: a Ctrl-C raises ``KeyboardInterrupt`` again, which stops it."""
    if signal.getsignal(signal.SIGINT) is die_by_sigint:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def while_reporting() -> None:
    """Called as an interrupted command starts saying how it stopped: in the console script,
    another Ctrl-C waits until that line is out (a traceback before)."""
    if _console and not _ignored:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def leave(code: int) -> NoReturn:
    """End the console script: ``sys.exit(code)``, except for a command stopped by Ctrl-C
    (``code`` 130), which ends killed by SIGINT after Python's exit. A command stopped by
    SIGTERM handled as Ctrl-C (:func:`zoomsr.stopping.sigterm_as_interrupt`) exits 130."""
    from zoomsr.stopping import take_termination  # here: start-up stays light

    if not _ignored:
        signal.signal(signal.SIGINT, die_by_sigint)  # during the exit: end it now
    if (code == 130 and take_termination() is None and not _ignored  # else no Ctrl-C came
            and os.name != "nt"):  # Windows: no re-kill by a signal, exit code 130 stays
        sys.excepthook = _quiet_interrupt
        raise KeyboardInterrupt  # uncaught: Python's exit, then death by SIGINT
    sys.exit(code)


def _quiet_interrupt(kind: type[BaseException], value: BaseException, tb: object) -> None:
    if not issubclass(kind, KeyboardInterrupt):  # the message was printed already
        sys.__excepthook__(kind, value, tb)  # type: ignore[arg-type]
