"""Shared test fixtures: ../shared, headless matplotlib, a CLI runner, tiny S2-NAIP datasets."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from zoomsr.data.writer import S2NAIPWriter  # noqa: E402 - after choosing the backend

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the checkout: skipped when absent, but a failure when CI=true."""
    if not SHARED.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SHARED} is missing (CI must provide ../shared beside the checkout)")
        pytest.skip(f"{SHARED} not available")
    return SHARED


@pytest.fixture
def cli(capsys):
    """Run ``zoomsr ARGS...`` in-process; returns (exit_code, stdout, stderr)."""
    from zoomsr.cli.main import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run

TILES = ["1000_2000", "1001_2000", "1000_2001", "1001_2001"]


def make_series(rng: np.random.Generator, t: int, black: tuple[int, ...] = ()) -> dict:
    """tci [t,32,32,3] uint8 in 1..255 (no black pixel) with frame k's first pixel = k+1,
    b08 [t,32,32,1] uint16; frames in ``black`` get one black pixel in tci."""
    tci = rng.integers(1, 256, size=(t, 32, 32, 3), dtype=np.uint8)
    tci[:, 0, 0, :] = (np.arange(t) + 1)[:, None]
    for k in black:
        tci[k, 5, 7, :] = 0
    b08 = rng.integers(0, 12000, size=(t, 32, 32, 1), dtype=np.uint16)
    b08[:, 0, 0, 0] = np.arange(t) * 1000
    return {"tci": tci, "b08": b08}


def make_hr(rng: np.random.Generator, black: bool = False) -> np.ndarray:
    hr = rng.integers(1, 256, size=(128, 128, 3), dtype=np.uint8)
    if black:
        hr[10:12, 10:12] = 0
    return hr


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """4 tiles, 6 time steps; tile 1 has 3 black frames (1, 3, 4); tile 3's NAIP has black."""
    rng = np.random.default_rng(0)
    root = tmp_path / "ds"
    writer = S2NAIPWriter(root)
    blacks = {1: (1, 3, 4)}
    for k, tile in enumerate(TILES):
        series = make_series(rng, 6, blacks.get(k, ()))
        writer.write_pair(tile, "img-a", make_hr(rng, black=(k == 3)), series)
    return root
