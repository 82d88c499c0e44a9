"""Optional test requirements: skip where missing locally, fail on CI (where the project's
declared dependencies are installed, so a missing one is a packaging bug)."""

from __future__ import annotations

import importlib.util
import os

import pytest


def require_package(module: str, pip_name: str | None = None) -> None:
    """Skip (or, with CI=true, fail) unless ``module`` is importable."""
    if importlib.util.find_spec(module) is None:
        message = f"{pip_name or module} is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (it is a declared dependency)")
        pytest.skip(message)
