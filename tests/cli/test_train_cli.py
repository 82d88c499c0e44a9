"""``zoomsr train``: exit codes and one-line errors, and a short run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zoomsr.data import scan_pairs
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
    # Starting afresh there is refused (one line, exit 2), unless --overwrite.
    code, _, err = cli(*args, "--resume", "never")
    assert code == 2 and "holds checkpoints of an earlier run" in err and "--overwrite" in err
    code, _, err = cli(*args, "--overwrite")  # would drop what --resume auto continues
    assert code == 2 and "pass --resume never with --overwrite" in err
    code, stdout, err = cli(*args, "--resume", "never", "--overwrite")
    assert code == 0, err
    assert "trained tiny_regression to step 2" in stdout and "resumed" not in stdout


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("losses.pixel.weight=.nan", "losses.pixel.weight"),
        ("optim.lr=nan", "optim.lr"),
        ("optim.weight_decay=.nan", "optim.weight_decay"),
        ("optim.gamma=.inf", "optim.gamma"),
    ],
)
def test_non_finite_values_exit_2_naming_the_key(cli, tmp_path, sample, override, key):
    code, _, err = cli("train", TINY, "--set", f"data.root={sample}", "--set", override,
                       "--set", "trainer.max_steps=1", "--out", tmp_path / "o", "--no-progress")
    assert code == 2, err
    assert f"config key {key!r} must be a finite number" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_empty_config_file_exits_2_naming_it(cli, tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    code, _, err = cli("train", empty)
    assert code == 2
    assert f"{empty}: the config file is empty" in err and "gan" not in err
    assert len(err.strip().splitlines()) == 1


def test_data_problems_exit_2_before_the_model_is_built(cli, tmp_path, sample):
    base = ["train", TINY, "--set", f"data.root={sample}", "--out", tmp_path / "o",
            "--no-progress"]
    code, out, err = cli(*base, "--set", "data.bands=[tci,b05]")
    assert code == 2
    assert "config key 'data.bands': band b05 is not in the dataset" in err
    assert len(err.strip().splitlines()) == 1 and "Params" not in out + err  # no model summary
    code, out, err = cli(*base, "--set", f"data.tile_weights={tmp_path / 'w.json'}")
    assert code == 2
    assert "config key 'data.tile_weights'" in err and "w.json: tile-weights file not found" in err
    assert len(err.strip().splitlines()) == 1 and "Params" not in out + err
    splits = tmp_path / "splits.json"
    tiles = sorted({r.tile for r in scan_pairs(sample)})
    splits.write_text(json.dumps({"train": tiles, "val": []}))
    code, out, err = cli(*base, "--set", f"data.splits={splits}")
    assert code == 2
    assert "no pair of the dataset is in the 'val' split" in err and "Params" not in out + err
    assert not (tmp_path / "o").exists()


def test_ctrl_c_exits_130_saying_how_to_go_on(cli, tmp_path, sample, monkeypatch):
    import zoomsr.training.run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # what train() raises for Lightning's Ctrl-C exit

    monkeypatch.setattr(zoomsr.training.run, "train", interrupted)
    code, _, err = cli("train", TINY, "--set", f"data.root={sample}", "--out", tmp_path / "o")
    assert code == 130
    assert err.strip() == ("interrupted: the same command continues from the last checkpoint "
                           "(checkpoints/last.ckpt; --resume auto, the default)")


def test_a_missing_gpu_exits_2_naming_the_setting(cli, tmp_path, sample):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = cli("train", TINY, "--set", f"data.root={sample}", "--set",
                       "trainer.accelerator=gpu", "--out", tmp_path / "o", "--no-progress")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: trainer settings (accelerator=gpu")
