"""SR3 trains and samples; the regression module trains frame-layout models."""

from __future__ import annotations

import math

import torch

from zoomsr.models import SR3, HighResNet, from_checkpoint
from zoomsr.training.run import train


def test_sr3_trains_and_samples_with_ddim(tiny_config, tmp_path, series):
    cfg = tiny_config("tiny_sr3", "trainer.max_steps=4", "trainer.val_every_n_steps=4",
                      "trainer.checkpoint_every_n_steps=4", "trainer.log_every_n_steps=1",
                      "val.sample_steps=3")
    out = tmp_path / "sr3"
    result = train(cfg, out, resume="never")
    assert result.global_step == 4
    losses = [v for _, v in series(out, "train/loss")]
    assert len(losses) == 4 and all(math.isfinite(v) and v > 0 for v in losses)
    (psnr,) = [v for _, v in series(out, "val/psnr")]
    assert math.isfinite(psnr) and psnr > 0
    assert (out / "samples" / "val_step0000004.png").is_file()

    model = from_checkpoint(result.last_checkpoint)
    assert isinstance(model, SR3) and model.num_timesteps == 100
    lr = torch.rand(1, 6, 32, 32)
    sample = model.sample(lr, steps=3, seed=0)
    assert sample.shape == (1, 3, 128, 128) and 0 <= sample.min() and sample.max() <= 1
    assert torch.equal(sample, model.sample(lr, steps=3, seed=0))


def test_regression_trains_a_frames_model(tiny_config, tmp_path, series):
    cfg = tiny_config("tiny_regression", "trainer.max_steps=3", "trainer.val_every_n_steps=3",
                      "trainer.checkpoint_every_n_steps=3", "trainer.log_every_n_steps=1",
                      "data.max_val_pairs=4")
    out = tmp_path / "hrn"
    result = train(cfg, out, resume="never")
    assert result.global_step == 3
    assert len(series(out, "train/pixel")) == 3
    assert len(series(out, "val/ssim")) == 1
    model = from_checkpoint(result.generator_path)
    assert isinstance(model, HighResNet) and model.config["revisits"] == 4
    assert model(torch.rand(1, 4, 3, 32, 32)).shape == (1, 1, 3, 128, 128)


def test_a_diverged_run_stops_before_saving_nan_weights(tiny_config, tmp_path):
    """optim.lr=1e8: the loss is NaN from step 1. The run trained on, exited 0 and saved NaN
    weights; now it stops, naming the step, before that step's update."""
    import pytest

    from zoomsr.errors import ZoomsrError

    cfg = tiny_config("tiny_regression", "trainer.max_steps=6", "optim.lr=1e8",
                      "trainer.val_every_n_steps=1000", "trainer.checkpoint_every_n_steps=1")
    with pytest.raises(ZoomsrError, match=r"^step \d: the training loss is (nan|inf|-inf) \(the "
                                          r"run diverged: lower optim.lr"):
        train(cfg, tmp_path / "run", resume="never")
    for ckpt in (tmp_path / "run" / "checkpoints").glob("*.ckpt"):
        state = torch.load(ckpt, weights_only=False)["state_dict"]
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())
    assert not (tmp_path / "run" / "generator.pth").exists()


def test_step_checkpoints_on_an_epochs_last_batch_are_written(tiny_config, tmp_path):
    """Lightning put a save due on an epoch's last batch off until a validation that, with
    validation every N steps, may never come: step 3 (an epoch's end here) was written as
    step 4 at the next validation, or not at all."""
    cfg = tiny_config("tiny_regression", "trainer.max_steps=6", "trainer.val_every_n_steps=1000",
                      "trainer.checkpoint_every_n_steps=3", "trainer.keep_checkpoints=-1")
    train(cfg, tmp_path / "run", resume="never")
    ckpts = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("step=*.ckpt")) == ["step=0000003.ckpt",
                                                                 "step=0000006.ckpt"]
    assert torch.load(ckpts / "step=0000003.ckpt", weights_only=False)["global_step"] == 3
