"""ESRGAN training on the synthetic sample: learning, checkpoints, CLIP loss and options."""

from __future__ import annotations

import math

import pytest
import torch

from zoomsr.models import RRDBNet, from_checkpoint, read_checkpoint
from zoomsr.training.config import load_config
from zoomsr.training.run import build_module, train


@pytest.mark.slow
def test_tiny_esrgan_learns_and_saves_a_loadable_generator(tiny_config, tmp_path, series):
    cfg = tiny_config("tiny", "trainer.max_steps=30", "trainer.val_every_n_steps=10",
                      "trainer.checkpoint_every_n_steps=10")
    out = tmp_path / "run"
    result = train(cfg, out, resume="never")
    assert result.global_step == 30  # one step per iteration, not per optimizer

    val_l1 = series(out, "val/l1")
    # at the step of its checkpoint and sample image (it was logged at 9, 19, 29)
    assert [step for step, _ in val_l1] == [10, 20, 30]
    assert val_l1[-1][1] < 0.7 * val_l1[0][1], val_l1
    assert all(math.isfinite(v) for _, v in series(out, "val/psnr"))

    # The Lightning checkpoint rebuilds the generator (EMA weights) like the exported file.
    from_ckpt = from_checkpoint(result.last_checkpoint)
    exported = from_checkpoint(result.generator_path)
    assert isinstance(from_ckpt, RRDBNet) and from_ckpt.config == cfg.model.config
    for a, b in zip(from_ckpt.state_dict().values(), exported.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    generator = read_checkpoint(result.generator_path)
    assert generator.extra["bands"] == ["tci"] and generator.extra["n_images"] == 4
    ckpt = read_checkpoint(result.last_checkpoint)
    assert ckpt.extra["global_step"] == 30 and ckpt.model_name == "rrdbnet"
    assert load_config(out / "config.yaml") == cfg
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "last.ckpt", "step=0000010.ckpt", "step=0000020.ckpt", "step=0000030.ckpt",
    ]
    assert sorted(p.name for p in (out / "samples").glob("val_step*.png")) == [
        "val_step0000010.png", "val_step0000020.png", "val_step0000030.png"]
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def _lpips_files(tmp_path):
    from zoomsr.metrics.lpips import CHANNELS, backbone_features

    torch.manual_seed(0)
    backbone = tmp_path / "alexnet-random.pth"
    torch.save(backbone_features("alex").state_dict(), backbone)
    linear = tmp_path / "alex-linear.pth"
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1)
                for i, c in enumerate(CHANNELS["alex"])}, linear)
    return backbone, linear


def test_clip_loss_and_gan_options_run(tiny_config, tiny_clip_model, tmp_path, series):
    backbone, linear = _lpips_files(tmp_path)
    cfg = tiny_config(
        "tiny",
        "trainer.max_steps=3", "trainer.val_every_n_steps=3",
        "trainer.checkpoint_every_n_steps=3", "trainer.log_every_n_steps=1",
        "data.max_val_pairs=4",
        "losses.clip.weight=1.0", f"losses.clip.model={tiny_clip_model}",
        "losses.clip.pretrained=null", "losses.clip.allow_random=true",
        "losses.ssim.weight=0.01", "losses.ssim.window=5",
        "losses.gan.type=hinge", "losses.gan.feed_lr=true", "losses.gan.usm=true",
        "losses.pixel.usm=true",
        "val.metrics=[psnr, ssim, clipscore, lpips]", f"val.clip_model={tiny_clip_model}",
        "val.clip_pretrained=null", "val.clip_allow_random=true",
        f"val.lpips_weights={backbone}", f"val.lpips_linear_weights={linear}",
    )
    module = build_module(cfg)
    assert module.discriminator.num_in_ch == 3 + 4 * 3  # the LR stack is fed to D
    assert set(module.content.terms) == {"pixel", "ssim", "perceptual", "clip"}
    out = tmp_path / "run"
    result = train(cfg, out, resume="never")
    assert result.global_step == 3
    for key in ("train/clip", "train/ssim", "train/perceptual", "train/d_fake"):
        assert series(out, key) and all(math.isfinite(v) for _, v in series(out, key))
    for key in ("val/clipscore", "val/lpips", "val/ssim"):
        assert len(series(out, key)) == 1
    # The frozen CLIP and VGG networks are not in the checkpoint.
    keys = read_checkpoint(result.last_checkpoint, key="state_dict").state_dict
    assert not [k for k in keys if k.startswith("content.")]


def test_warm_start_from_a_psnr_trained_generator(tiny_config, tmp_path):
    psnr = tiny_config(
        "tiny_regression", "model.name=rrdbnet",
        "model.config={num_feat: 8, num_block: 1, num_grow_ch: 4}",
        "losses.pixel.type=l1", "trainer.max_steps=2", "trainer.val_every_n_steps=2",
        "trainer.checkpoint_every_n_steps=2", "data.max_val_pairs=2",
    )
    result = train(psnr, tmp_path / "psnr", resume="never")
    pretrained = from_checkpoint(result.generator_path)
    gan = tiny_config("tiny", f"model.init_weights={result.last_checkpoint}")
    module = build_module(gan)
    for name, tensor in pretrained.state_dict().items():
        assert torch.equal(module.generator.state_dict()[name], tensor)
        assert torch.equal(module.generator_ema.module.state_dict()[name], tensor)
