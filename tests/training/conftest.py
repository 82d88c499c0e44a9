"""Fixtures for the training tests: one synthetic sample per session, tiny configs, a runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoomsr.config_files import CONFIG_DIR

REPO = Path(__file__).resolve().parents[2]
CONFIGS = CONFIG_DIR
TINY_CLIP = "zoomsr-test-tiny-train-vit"
TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 1, "layers": 1},
}


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    """32 synthetic S2-NAIP pairs with 4 time steps (``zoomsr data sample``), written once."""
    from zoomsr.data.sample import write_sample

    return write_sample(tmp_path_factory.mktemp("train-sample") / "ds", pairs=32, n_frames=4,
                        workers=1)


@pytest.fixture
def tiny_config(sample_root):
    """``tiny_config(name="tiny", *overrides)`` -> a validated config on the session sample."""
    from zoomsr.training.config import load_config

    def make(name: str = "tiny", *overrides: str):
        base = [f"data.root={sample_root}", "trainer.progress_bar=false"]
        return load_config(CONFIGS / f"{name}.yaml", base + list(overrides))

    return make


@pytest.fixture(scope="session")
def tiny_clip_model() -> str:
    """A tiny open_clip ViT registered for these tests (random weights only)."""
    from zoomsr.metrics.clipscore import register_model_config

    register_model_config(TINY_CLIP, TINY_CLIP_CONFIG)
    return TINY_CLIP


@pytest.fixture
def series():
    """``series(out, key)`` -> [(step, value), ...] of one metric logged by the run in ``out``."""
    return _series


def read_metrics(out: Path) -> list[dict[str, str]]:
    """Rows of a run's ``csv/version_*/metrics.csv``, oldest (re)start first."""
    import csv

    rows: list[dict[str, str]] = []
    versions = sorted((out / "csv").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    for version in versions:
        with open(version / "metrics.csv", newline="") as f:
            rows += list(csv.DictReader(f))
    return rows


def _series(out: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) of one logged metric, in order."""
    return [(int(r["step"]), float(r[key])) for r in read_metrics(out) if r.get(key)]
