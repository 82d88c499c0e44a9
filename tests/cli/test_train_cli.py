"""``zoomsr train``: exit codes and one-line errors, and a short run end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoomsr.models import HighResNet, from_checkpoint

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = str(CONFIGS / "tiny.yaml")


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    from zoomsr.data.sample import write_sample

    return write_sample(tmp_path_factory.mktemp("cli-train") / "ds", pairs=16, n_frames=4,
                        workers=1)


def test_unknown_key_exits_2_naming_it(cli):
    code, _, err = cli("train", TINY, "--set", "trainer.max_step=20")
    assert code == 2
    assert "unknown config key 'trainer.max_step'" in err and len(err.strip().splitlines()) == 1


def test_bad_type_exits_2_naming_key_and_type(cli):
    code, _, err = cli("train", TINY, "--set", "trainer.max_steps=many")
    assert code == 2
    assert "'trainer.max_steps' must be an integer, got 'many'" in err


def test_missing_dataset_exits_2_naming_the_path(cli, tmp_path):
    missing = tmp_path / "no-such-dataset"
    code, _, err = cli("train", TINY, "--set", f"data.root={missing}", "--out", tmp_path / "o")
    assert code == 2
    assert f"{missing}: dataset folder not found" in err
    assert not (tmp_path / "o").exists()


def test_other_bad_input_exits_2(cli, tmp_path, sample):
    code, _, err = cli("train", tmp_path / "none.yaml")
    assert code == 2 and "config file not found" in err
    code, _, err = cli("train", TINY, "--accelerator", "tpu")
    assert code == 2 and "--accelerator must be cpu, gpu or auto" in err
    code, _, err = cli("train", TINY, "--set", f"data.root={sample}", "--resume",
                       tmp_path / "missing.ckpt", "--out", tmp_path / "o")
    assert code == 2 and "missing.ckpt" in err


def test_short_run_then_resume_auto(cli, tmp_path, sample):
    out = tmp_path / "run"
    args = ["train", str(CONFIGS / "tiny_regression.yaml"), "--set", f"data.root={sample}",
            "--set", "trainer.max_steps=2", "--set", "trainer.val_every_n_steps=2",
            "--set", "trainer.checkpoint_every_n_steps=2", "--out", str(out), "--no-progress"]
    code, stdout, err = cli(*args)
    assert code == 0, err
    assert "trained tiny_regression to step 2" in stdout
    assert "val/psnr=" in stdout
    assert isinstance(from_checkpoint(out / "generator.pth"), HighResNet)
    # The same command with a longer budget continues from the last checkpoint.
    code, stdout, err = cli(*args, "--set", "trainer.max_steps=3")
    assert code == 0, err
    assert "to step 3, resumed from" in stdout and "last.ckpt" in stdout
