"""The ``zoomsr`` console script's entry point: light, so that a Ctrl-C during the imports of
the command line (about 0.2 s, torch's) ends it quietly (:mod:`zoomsr.cli.exiting`)."""

from __future__ import annotations

from zoomsr.cli import exiting


def run() -> None:
    """Console-script entry point (``zoomsr``, ``python -m zoomsr``)."""
    exiting.console_script()
    from zoomsr.cli.main import run as run_main

    run_main()
