"""Training on a CUDA GPU in bf16 mixed precision (GPU only)."""

from __future__ import annotations

import math

import pytest
import torch

from zoomsr.models import from_checkpoint
from zoomsr.training.run import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_tiny_esrgan_trains_in_bf16_on_gpu(tiny_config, tmp_path, series):
    cfg = tiny_config("tiny", "trainer.accelerator=gpu", "trainer.precision=bf16-mixed",
                      "trainer.max_steps=6", "trainer.val_every_n_steps=3",
                      "trainer.checkpoint_every_n_steps=3")
    result = train(cfg, tmp_path / "run", resume="never")
    assert result.global_step == 6
    assert all(math.isfinite(v) for _, v in series(tmp_path / "run", "val/l1"))
    model = from_checkpoint(result.generator_path)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
