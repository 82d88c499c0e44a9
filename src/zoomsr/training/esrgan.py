"""ESRGAN training: RRDBNet generator + U-Net discriminator, manual optimisation.

Each iteration: one generator step on content loss + ``gan.weight`` x adversarial loss (the
discriminator frozen), then one discriminator step on real HR and detached SR. Options:
USM-sharpened ground truth per loss (``losses.*.usm``), the LR stack fed to the discriminator
(``losses.gan.feed_lr``), generator EMA (``optim.ema_decay``), warm start from a PSNR-trained
generator (``model.init_weights``). The content loss leaves out the HR's invalid pixels where
the batch has a mask (``hr_valid``, benchmark datasets), and sharpens its USM ground truth
from the valid pixels alone; the discriminator sees whole images.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from zoomsr.losses import GANLoss
from zoomsr.models import load_checkpoint
from zoomsr.training.base import SRModule, build_discriminator
from zoomsr.training.config import TrainConfig
from zoomsr.training.dataset_config import hr_rgb_channels
from zoomsr.training.objectives import ContentLoss


class ESRGANModule(SRModule):
    """The GAN module; ``trainer.global_step`` counts iterations (generator updates)."""

    def __init__(self, config: TrainConfig | dict[str, Any]) -> None:
        super().__init__(config)
        self.automatic_optimization = False
        cfg = self.cfg
        self.feed_lr = cfg.losses.gan.feed_lr
        self.discriminator = build_discriminator(cfg)
        if cfg.discriminator.init_weights is not None:
            load_checkpoint(self.discriminator, cfg.discriminator.init_weights)
        self.content = ContentLoss(cfg.losses, hr_rgb_channels(cfg.data))
        self.gan_loss = GANLoss(cfg.losses.gan.type)
        self.gan_weight = cfg.losses.gan.weight
        self.gan_usm = cfg.losses.gan.usm

    def configure_optimizers(self) -> Any:
        o = self.cfg.optim
        gen = self._adam([p for p in self.generator.parameters() if p.requires_grad], o.lr)
        disc = self._adam(list(self.discriminator.parameters()), o.disc_lr or o.lr)
        return [gen, disc]

    def _disc_input(self, image: Tensor, lr: Tensor) -> Tensor:
        if not self.feed_lr:
            return image
        up = F.interpolate(lr.to(image.dtype), size=image.shape[-2:], mode="nearest")
        return torch.cat([image, up], dim=1)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()  # type: ignore[attr-defined]  # (Lightning's)
        sched_g, sched_d = self.lr_schedulers()  # type: ignore[misc]
        lr, hr, valid = batch["lr"], batch["hr"], batch.get("hr_valid")
        needs_usm = bool(self.content.usm_terms) or self.gan_usm
        # sharpened from the valid pixels alone where the HR has a mask (benchmark datasets)
        hr_usm = self.content.sharpen(hr, valid) if needs_usm else None
        hr_gan = hr_usm if self.gan_usm and hr_usm is not None else hr
        if valid is not None and bool(valid.all()):
            valid = None

        def seen(image: Tensor) -> Tensor:
            # The discriminator judges the SR with the HR's own pixels where the HR is masked
            # (clouds, no-data fill): the real and fake images are the same there, so it
            # cannot learn "cloud = real" and push the generator to paint them
            return image if valid is None else torch.where(valid[:, None], image, hr_gan)

        # Generator step; the discriminator only passes gradients through.
        self.discriminator.requires_grad_(False)
        sr = self.generator(lr)
        content, parts = self.content(sr, hr, hr_usm, valid=valid)
        fake_logits = self.discriminator(self._disc_input(seen(sr), lr))
        g_gan = self.gan_loss(fake_logits, real=True, for_discriminator=False)
        g_total = content + self.gan_weight * g_gan
        self.finite_or_stop(g_total, "generator loss")
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_total)
        opt_g.step()
        self.update_ema()  # manual optimisation: no optimizer_step hook

        # Discriminator step on real HR and the detached SR.
        self.discriminator.requires_grad_(True)
        real_logits = self.discriminator(self._disc_input(hr_gan, lr))
        fake_logits = self.discriminator(self._disc_input(seen(sr.detach()), lr))
        d_real = self.gan_loss(real_logits, real=True)
        d_fake = self.gan_loss(fake_logits, real=False)
        self.finite_or_stop(d_real + d_fake, "discriminator loss")
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_real + d_fake)
        # Lightning counts every optimizer.step() of manual optimisation as a global step; the
        # discriminator's step goes through the strategy directly (same precision/scaler
        # handling) so that one iteration is one step for max_steps and checkpoint intervals.
        self.trainer.strategy.optimizer_step(opt_d.optimizer, closure=lambda: None)
        sched_g.step()
        sched_d.step()

        size = hr.shape[0]
        self.log("train/g_total", g_total.detach(), prog_bar=True, batch_size=size)
        self.log("train/g_gan", g_gan.detach(), batch_size=size)
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=size)
        self.log("train/d_real", d_real.detach(), batch_size=size)
        self.log("train/d_fake", d_fake.detach(), prog_bar=True, batch_size=size)
        self.log("train/d_real_logit", real_logits.detach().float().mean(), batch_size=size)
        self.log("train/d_fake_logit", fake_logits.detach().float().mean(), batch_size=size)


__all__ = ["ESRGANModule"]
