"""The fake benchmark datasets' writers (tests/data/*_fixture.py) for tests in other folders.

pytest puts each test's own folder on ``sys.path``, so tests/data's tests import their
fixture writers by name; tests elsewhere load them with :func:`fixture_module`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

DATA_TESTS = Path(__file__).resolve().parent / "data"


def fixture_module(name: str) -> ModuleType:
    """``tests/data/NAME.py`` (``probav_fixture``, ``oli2msi_fixture``,
    ``worldstrat_fixture``), imported once under ``NAME`` (its dataclasses look their module up
    in ``sys.modules``)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, DATA_TESTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]
