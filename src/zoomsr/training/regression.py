"""Regression training (SRCNN, HighRes-net, RRDBNet-PSNR): minimise the content loss."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from zoomsr.training.base import SRModule
from zoomsr.training.config import TrainConfig
from zoomsr.training.dataset_config import hr_rgb_channels
from zoomsr.training.objectives import ContentLoss


class RegressionModule(SRModule):
    """``loss = ContentLoss(generator(lr), hr)`` (e.g. the WorldStrat mix, or L1 for a
    PSNR-oriented RRDBNet that later warm-starts ESRGAN), over the HR's valid pixels where the
    batch has a mask (``hr_valid``: PROBA-V's status maps, the other benchmark datasets'
    nodata)."""

    def __init__(self, config: TrainConfig | dict[str, Any]) -> None:
        super().__init__(config)
        self.content = ContentLoss(self.cfg.losses, hr_rgb_channels(self.cfg.data))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        lr, hr = batch["lr"], batch["hr"]
        sr = self._as_image(self.generator(lr))
        # the HR's quality mask (benchmark datasets): concealed pixels do not count
        loss, parts = self.content(sr, hr, valid=batch.get("hr_valid"))
        self.finite_or_stop(loss)
        size = hr.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=size)
        return loss


__all__ = ["RegressionModule"]
