"""The ``zoomsr`` console script's entry point (``zoomsr``, ``python -m zoomsr``): light, and
its first lines end the process quietly on Ctrl-C until a command runs
(:mod:`zoomsr.cli.exiting`), so a Ctrl-C during the imports (about 0.2 s, torch's) prints no
traceback. Imported only by the console script.
"""

import _signal  # the C module: ``signal`` imports enum, milliseconds without the handler
import os

_IGNORED = _signal.getsignal(_signal.SIGINT) is _signal.SIG_IGN  # a background job's


def _die(signum: int, frame: object) -> None:
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
    os.kill(os.getpid(), _signal.SIGINT)


if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    _signal.signal(_signal.SIGINT, _die)


def run() -> None:
    """Console-script entry point."""
    from zoomsr.cli import exiting

    exiting.console_script(ignored=_IGNORED)
    from zoomsr.cli.main import run as run_main

    run_main()
