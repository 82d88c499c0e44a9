"""The ``zoomsr`` command line: argument parsing and error-to-exit-code mapping only."""

from zoomsr.cli import exiting  # noqa: F401  (first: its exit callback runs last)
