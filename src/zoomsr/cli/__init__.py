"""The ``zoomsr`` command line: argument parsing and error-to-exit-code mapping only."""
