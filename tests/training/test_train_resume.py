"""A run killed mid-way resumes from its last checkpoint at the right step and finishes."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from zoomsr.errors import CheckpointError, ConfigError
from zoomsr.training.run import train


class _Crash(Callback):
    """Raise after training step ``at`` completes (before that step's checkpoint hook)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.at:
            raise RuntimeError("simulated crash")


class _RecordStart(Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        self.step = trainer.global_step
        self.generator = {k: v.clone() for k, v in pl_module.generator.state_dict().items()}


def test_resume_continues_from_the_last_checkpoint(tiny_config, tmp_path, series):
    cfg = tiny_config("tiny", "trainer.max_steps=6", "trainer.checkpoint_every_n_steps=2",
                      "trainer.val_every_n_steps=3", "trainer.log_every_n_steps=1",
                      "data.max_val_pairs=2")
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, out, resume="auto", callbacks=[_Crash(at=3)])
    saved = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 2  # step 3 was lost with the crash, nothing before it

    start = _RecordStart()
    result = train(cfg, out, resume="auto", callbacks=[start])
    assert result.resumed_from == out / "checkpoints" / "last.ckpt"
    assert start.step == 2 and result.global_step == 6
    # The generator restarted from the saved weights, not from a fresh initialisation.
    for name, tensor in start.generator.items():
        assert torch.equal(tensor, saved["state_dict"][f"generator.{name}"])
    # Logged steps run on without a gap or a repeat: 0-1 before the crash, 2-5 after it.
    assert [s for s, _ in series(out, "train/g_total")] == list(range(6))
    assert [s for s, _ in series(out, "val/l1")] == [2, 5]
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6

    # Running it again: nothing left to do, still at step 6.
    assert train(cfg, out, resume="auto").global_step == 6


def test_resume_refuses_another_model_and_missing_checkpoints(tiny_config, tmp_path):
    cfg = tiny_config("tiny", "trainer.max_steps=1", "trainer.val_every_n_steps=1",
                      "trainer.checkpoint_every_n_steps=1", "data.max_val_pairs=2")
    out = tmp_path / "run"
    train(cfg, out, resume="never")
    wider = tiny_config("tiny", "model.config.num_feat=16")
    with pytest.raises(ConfigError, match="use another --out or --resume never"):
        train(wider, out, resume="auto")
    with pytest.raises(CheckpointError, match="nowhere.ckpt"):
        train(cfg, out, resume=tmp_path / "nowhere.ckpt")
