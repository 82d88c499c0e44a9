"""SR3 diffusion training: noise-prediction loss; validation samples with DDIM."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from torch import Tensor

from zoomsr.training.base import SRModule

if TYPE_CHECKING:
    from zoomsr.models.sr3 import SR3


class SR3Module(SRModule):
    """Trains :class:`zoomsr.models.SR3` on ``loss(hr, lr)`` (L1 or L2 on the noise, set by
    ``model.config.loss_type``); validation draws one DDIM sample per LR stack with
    ``val.sample_steps`` steps, seeded by ``val.sample_seed`` and the batch index."""

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss = cast("SR3", self.generator).loss(batch["hr"], batch["lr"])
        self.finite_or_stop(loss)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["hr"].shape[0])
        return loss

    def super_resolve(self, lr: Tensor, batch_idx: int = 0) -> Tensor:
        v = self.cfg.val
        net = cast("SR3", self.inference_generator)  # (this module's generator is an SR3)
        steps = min(v.sample_steps, net.num_timesteps)
        return net.sample(lr, steps=steps, method="ddim", seed=v.sample_seed + batch_idx)


__all__ = ["SR3Module"]
