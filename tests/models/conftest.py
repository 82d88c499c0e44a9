"""Model tests are seeded; ``shared_dir`` comes from tests/conftest.py."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
