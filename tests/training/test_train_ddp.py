"""DDP: ``zoomsr train --devices 2`` on CPU runs two gloo processes that share the data."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from zoomsr.config_files import CONFIG_DIR
from zoomsr.models import RRDBNet, from_checkpoint
from zoomsr.training.config import load_config
from zoomsr.training.datamodule import split_pairs

CONFIGS = CONFIG_DIR


@pytest.mark.slow
def test_esrgan_ddp_two_cpu_processes(sample_root, tmp_path):
    out = tmp_path / "ddp"
    args = [
        sys.executable, "-m", "zoomsr", "train", str(CONFIGS / "tiny.yaml"),
        "--devices", "2", "--accelerator", "cpu", "--out", str(out), "--no-progress",
        "--set", f"data.root={sample_root}", "--set", "trainer.max_steps=4",
        "--set", "trainer.val_every_n_steps=4", "--set", "trainer.checkpoint_every_n_steps=4",
        "--set", "data.max_val_pairs=4",
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log and "gloo" in log
    assert "trained tiny to step 4" in done.stdout

    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4
    # Each process saw half of the training pairs: epochs are half as long as on one device,
    # so step 4 (whose epoch last.ckpt records, 0-based) is in a later epoch than on one.
    cfg = load_config(CONFIGS / "tiny.yaml", [f"data.root={sample_root}"])
    n_train = len(split_pairs(sample_root, cfg.data)[0])
    per_rank = math.ceil(n_train / 2) // cfg.data.batch_size
    single = n_train // cfg.data.batch_size
    assert (4 - 1) // per_rank != (4 - 1) // single
    assert ckpt["epoch"] == (4 - 1) // per_rank
    assert isinstance(from_checkpoint(out / "generator.pth"), RRDBNet)
