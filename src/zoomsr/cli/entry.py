"""The ``zoomsr`` console script's entry point (``zoomsr``, ``python -m zoomsr``): light, and its
first lines end the process quietly on Ctrl-C until a command runs
(:mod:`zoomsr.cli.exiting`), so a Ctrl-C during the imports (about 0.2 s, torch's) prints no
traceback.

Nothing happens at import: worker processes started with spawn or forkserver (torch's
DataLoader on macOS, and on Linux from Python 3.14) import the console script's module again,
and must keep Python's own Ctrl-C handling.
"""

import _signal  # the C module: ``signal`` imports enum, milliseconds without the handler
import os


def _die(signum: int, frame: object) -> None:
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    os.kill(os.getpid(), _signal.SIGINT)


def run() -> None:
    """Console-script entry point."""
    ignored = _signal.getsignal(_signal.SIGINT) is _signal.SIG_IGN  # a background job's
    if os.name != "nt" and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, _die)
    from zoomsr.cli import exiting

    exiting.console_script(ignored=ignored)
    from zoomsr.cli.main import run as run_main

    run_main()
