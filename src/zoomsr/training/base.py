"""Shared Lightning module: generator, EMA copy, optimiser, validation metrics, image grid,
and the ``zoomsr`` checkpoint entry that lets :func:`zoomsr.models.from_checkpoint` rebuild
the generator from a Lightning ``.ckpt``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from zoomsr.errors import ConfigError, InputError, WeightsNotFoundError, ZoomsrError, first_line
from zoomsr.io.png import write_png
from zoomsr.models import checkpoint_metadata, create_model, load_checkpoint
from zoomsr.training.config import (
    LossSection,
    TrainConfig,
    ValSection,
    config_from_dict,
)
from zoomsr.training.dataset_config import hr_rgb_channels

#: Key of the run's full config inside a Lightning checkpoint.
CONFIG_KEY = "zoomsr_config"

#: What the metrics' messages suggest (their arguments and ``zoomsr metrics`` options), as the
#: config keys of a training run.
_METRIC_HINTS = {
    "(backbone_weights=..., CLI --lpips-weights PATH)": "(val.lpips_weights: PATH)",
    "(linear_weights=..., CLI --lpips-linear-weights PATH)": "(val.lpips_linear_weights: PATH)",
    "(allow_download=True, CLI --allow-download)": "(val.allow_download: true)",
    "allow_random=True": "val.clip_allow_random: true",
}


#: The same for the CLIP loss (:class:`zoomsr.losses.CLIPLoss`), whose messages are the
#: CLIPScore metric's.
_CLIP_LOSS_HINTS = {
    "(allow_download=True, CLI --allow-download)": "(losses.clip.allow_download: true)",
    "allow_random=True": "losses.clip.allow_random: true",
}


def _val_config_error(key: str, exc: BaseException) -> ConfigError:
    return config_key_error(key, exc, _METRIC_HINTS, "val.clip_pretrained")


def config_key_error(key: str, exc: BaseException, hints: dict[str, str],
                     clip_pretrained: str) -> ConfigError:
    """``exc`` as one line naming the config ``key``, with what it suggests (arguments and
    CLI options of the library's functions) given as ``hints`` (text -> the config's words)
    and ``--clip-pretrained ...`` as the config key ``clip_pretrained``."""
    text = first_line(exc)
    for hint, instead in hints.items():
        text = text.replace(hint, instead)
    # "(--clip-pretrained PATH)", "(--clip-pretrained openai=PATH)", "(e.g. --clip-pretrained
    # openai=/path/file.pt)"
    text = re.sub(r"--clip-pretrained (\S)", rf"{clip_pretrained}: \1", text)
    return ConfigError(f"config key {key!r}: {text}")


def check_loss_weights(losses: LossSection) -> None:
    """Find the weight files of the enabled network losses (VGG19, CLIP) without loading
    them, so that a missing one stops the run before any work, as
    :func:`check_val_weights` does for the metrics.

    Raises:
        ConfigError: naming the key to set (``losses.perceptual.weights``,
            ``losses.clip.pretrained``...) and where the file was looked for.
    """
    p = losses.perceptual
    if p.weight > 0 and not p.allow_random:
        from zoomsr.losses.perceptual import find_vgg19_weights

        try:
            find_vgg19_weights(p.weights)
        except ZoomsrError as exc:
            raise ConfigError(f"config key 'losses.perceptual.weights': {first_line(exc)}"
                              ) from None
    c = losses.clip
    if c.weight > 0:
        from zoomsr.metrics.clipscore import is_pretrained_tag, resolve_clip_weights

        try:
            resolve_clip_weights(c.model, c.pretrained, allow_random=c.allow_random)
        except WeightsNotFoundError as exc:
            # with downloads allowed, a tag's file is fetched when the loss is built
            if not (c.allow_download and is_pretrained_tag(c.model, c.pretrained)):
                raise clip_loss_error(exc) from None
        except ZoomsrError as exc:  # an unknown model or tag, or no weights given
            raise clip_loss_error(exc) from None


def clip_loss_error(exc: BaseException) -> ConfigError:
    """An error of building the CLIP loss as one line naming its config key
    (``losses.clip.model`` for an unknown model, else ``losses.clip.pretrained``)."""
    key = "losses.clip.model" if "open_clip model" in str(exc) else "losses.clip.pretrained"
    return config_key_error(key, exc, _CLIP_LOSS_HINTS, "losses.clip.pretrained")


def check_val_weights(v: ValSection) -> None:
    """Find the weight files of the network metrics in ``v.metrics`` (LPIPS, CLIPScore) without
    loading them, so that a missing one stops the run before any training.

    Raises:
        ConfigError: naming the key to set (``val.lpips_weights``, ``val.lpips_linear_weights``,
            ``val.clip_pretrained``...) and where the file was looked for.
    """
    if "lpips" in v.metrics:
        from zoomsr.metrics.lpips import find_backbone_weights, find_linear_weights

        for key, find, path in (("val.lpips_weights", find_backbone_weights, v.lpips_weights),
                                ("val.lpips_linear_weights", find_linear_weights,
                                 v.lpips_linear_weights)):
            try:
                find(v.lpips_net, path)
            except ZoomsrError as exc:
                raise _val_config_error(key, exc) from None
    if "clipscore" in v.metrics:
        from zoomsr.metrics.clipscore import check_clip_weights

        try:
            check_clip_weights(v.clip_model, v.clip_pretrained, allow_download=v.allow_download,
                               allow_random=v.clip_allow_random)
        except WeightsNotFoundError as exc:
            raise _val_config_error("val.clip_pretrained", exc) from None
        except ZoomsrError as exc:  # an unknown model or tag, or no weights given
            key = "val.clip_model" if "open_clip model" in str(exc) else "val.clip_pretrained"
            raise _val_config_error(key, exc) from None


def build_generator(cfg: TrainConfig) -> nn.Module:
    """The generator of ``cfg`` (``model.name`` with ``model.config``); a value its constructor
    refuses is a :class:`ConfigError` naming the key."""
    try:
        return create_model(cfg.model.name, **cfg.model.config)
    except InputError as exc:
        raise _constructor_error("model.config", cfg.model.config, exc) from None


def discriminator_config(cfg: TrainConfig) -> dict[str, Any]:
    """ESRGAN's U-Net discriminator arguments: the HR image's channels (3, RGB, for S2-NAIP;
    the benchmark dataset's otherwise), plus the LR stack's ``n_images * channels`` with
    ``losses.gan.feed_lr``."""
    d = cfg.discriminator
    lr_channels = cfg.data.n_images * cfg.channels
    return {"num_in_ch": cfg.hr_channels + (lr_channels if cfg.losses.gan.feed_lr else 0),
            "num_feat": d.num_feat, "skip_connection": d.skip_connection}


def build_discriminator(cfg: TrainConfig) -> nn.Module:
    """ESRGAN's discriminator (:func:`discriminator_config`); a value its constructor refuses
    is a :class:`ConfigError` naming the key."""
    try:
        return create_model("unet_discriminator_sn", **discriminator_config(cfg))
    except InputError as exc:
        fields = {"num_feat": cfg.discriminator.num_feat,
                  "skip_connection": cfg.discriminator.skip_connection}
        raise _constructor_error("discriminator", fields, exc) from None


def _constructor_error(section: str, fields: dict[str, Any], exc: BaseException) -> ConfigError:
    """A model constructor's error (``num_feat must be >= 1, got 0``) naming the config key:
    ``SECTION.FIELD`` when it is about one field, else ``SECTION``."""
    text = first_line(exc)
    said = re.match(r"config key '(\w+)' (.*)", text)  # the factory's value checks
    if said and said.group(1) in fields:
        return ConfigError(f"config key '{section}.{said.group(1)}' {said.group(2)}")
    field = text.split(" ", 1)[0]
    key = f"{section}.{field}" if field in fields and text.startswith(f"{field} must") else section
    return ConfigError(f"config key {key!r}: {text}")


def _warm_start(generator: nn.Module, path: str) -> None:
    """Load ``model.init_weights`` into ``generator``, strictly, but for one case: an x3
    RRDBNet (OLI2MSI, PROBA-V) from an x4 checkpoint of the same input channels (the published
    ESRGAN's), whose second upsampling conv (``conv_up2``) the x3 model has not: every other
    tensor loads, ``conv_up2`` is left out (no published checkpoint is x3)."""
    if getattr(generator, "name", None) == "rrdbnet" and getattr(generator, "scale", None) == 3:
        result = load_checkpoint(generator, path, strict=False)
        extra = [k for k in result.unexpected if not k.startswith("conv_up2.")]
        if not (result.missing or extra or result.shape_mismatch):
            return
    load_checkpoint(generator, path)  # strict: says what does not match


class SRModule(L.LightningModule):
    """Base of the training modules: builds the generator (``self.generator``) and, with
    ``optim.ema_decay``, its EMA copy (``self.generator_ema``), used for validation and export.

    Args:
        config: a :class:`TrainConfig` or its dict (as stored in the checkpoint's
            hyper-parameters, so ``load_from_checkpoint`` works).
    """

    def __init__(self, config: TrainConfig | dict[str, Any]) -> None:
        super().__init__()
        cfg = config if isinstance(config, TrainConfig) else config_from_dict(config)
        self.cfg = cfg
        self.save_hyperparameters({"config": cfg.to_dict()})
        self.generator = build_generator(cfg)
        if cfg.model.init_weights is not None:
            _warm_start(self.generator, cfg.model.init_weights)
        self.generator_ema: AveragedModel | None = None
        if cfg.optim.ema_decay is not None:
            self.generator_ema = AveragedModel(
                self.generator, multi_avg_fn=get_ema_multi_avg_fn(cfg.optim.ema_decay),
                use_buffers=True,
            ).requires_grad_(False)
        self._metrics: dict[str, Any] | None = None
        self._grid: tuple[Tensor, Tensor, Tensor] | None = None

    # -- generator -----------------------------------------------------------------------------

    @property
    def inference_generator(self) -> nn.Module:
        """The network to validate and export: the EMA copy when there is one."""
        return self.generator_ema.module if self.generator_ema is not None else self.generator

    def finite_or_stop(self, loss: Tensor, name: str = "loss") -> None:
        """Stop the run, before this step's update, when ``loss`` is NaN or infinite: a
        diverged run trained on, exited 0 and saved NaN weights (its checkpoints now keep the
        last finite state). One device sync a step."""
        if not bool(torch.isfinite(loss.detach()).all()):
            raise ZoomsrError(
                f"step {self.global_step}: the training {name} is "
                f"{float(loss.detach().float().mean())} (the run diverged: lower optim.lr, or "
                "check the data); stopped before this step's update, the checkpoints keep the "
                "last finite state")

    @staticmethod
    def _as_image(out: Tensor) -> Tensor:
        # SRCNN / HighRes-net return [B, 1, C, H, W]; the others [B, C, H, W].
        return out[:, 0] if out.ndim == 5 else out

    def super_resolve(self, lr: Tensor, batch_idx: int = 0) -> Tensor:
        """SR image ``[B, C, H, W]`` (not clamped; C: the HR's channels, 3 for S2-NAIP) of
        ``lr`` by :attr:`inference_generator`."""
        return self._as_image(self.inference_generator(lr))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # The step's own random numbers (SR3's noise and timesteps, dropout) follow from the
        # run's seed, the step and the process, not from what ran before, so a resumed run
        # draws what an uninterrupted one would (Lightning's checkpoints hold no RNG state).
        state = np.random.SeedSequence([self.cfg.seed, self.global_step, self.global_rank])
        torch.manual_seed(int(state.generate_state(1, np.uint64)[0]))

    def update_ema(self) -> None:
        """Fold the generator's new weights into the EMA copy; called right after each
        generator update, so a checkpoint written at that step holds both (an update in
        ``on_train_batch_end`` came after the callbacks' hook, where checkpoints are saved, and
        a resumed run's EMA missed the step)."""
        if self.generator_ema is not None:
            self.generator_ema.update_parameters(self.generator)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.update_ema()

    # -- optimisation --------------------------------------------------------------------------

    def _adam(self, params: list[nn.Parameter], lr: float) -> dict[str, Any]:
        o = self.cfg.optim
        optimizer = torch.optim.Adam(
            params, lr=lr, betas=(o.betas[0], o.betas[1]), weight_decay=o.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, o.milestones, o.gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler,
                                                         "interval": "step"}}

    def configure_optimizers(self) -> Any:
        params = [p for p in self.generator.parameters() if p.requires_grad]
        return self._adam(params, self.cfg.optim.lr)

    # -- validation ----------------------------------------------------------------------------

    def _val_metrics(self) -> dict[str, Any]:
        """Metric objects, built once (network metrics load their weights here)."""
        if self._metrics is None:
            v = self.cfg.val
            device = str(self.device)
            metrics: dict[str, Any] = {}
            for name in v.metrics:
                if name == "psnr":
                    from zoomsr.metrics import PSNR

                    metrics[name] = PSNR(v.border)
                elif name == "ssim":
                    from zoomsr.metrics import SSIM

                    metrics[name] = SSIM(v.border)
                elif name == "lpips":
                    from zoomsr.metrics.lpips import LPIPS

                    metrics[name] = LPIPS(v.lpips_net, v.lpips_weights, v.lpips_linear_weights,
                                          device=device)
                else:
                    from zoomsr.metrics.clipscore import CLIPScore

                    metrics[name] = CLIPScore(
                        v.clip_model, v.clip_pretrained, v.clip_mode, device=device,
                        allow_download=v.allow_download, allow_random=v.clip_allow_random,
                    )
            self._metrics = metrics
        return self._metrics

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Log ``val/l1`` and ``val/METRIC`` of the batch.

        S2-NAIP batches (RGB, no mask) are scored as they are. Benchmark batches carry the HR's
        quality mask (``hr_valid``): L1 and the metrics are over its valid pixels (the
        metrics' ``valid``, as :func:`zoomsr.evaluation.evaluate_model` scores), and images of
        one band are scored repeated to RGB, of four (RGB + NIR) on their RGB
        (:func:`zoomsr.evaluation.model_eval.as_rgb`). An image the metric cannot score (NaN:
        no valid pixel, or too few for LPIPS / CLIPScore) is left out of the mean.
        """
        lr, hr = batch["lr"], batch["hr"]
        sr = self.super_resolve(lr, batch_idx).float().clamp(0, 1)
        size = hr.shape[0]
        valid = batch.get("hr_valid")
        if valid is None and hr.shape[1] == 3:  # S2-NAIP
            self.log("val/l1", F.l1_loss(sr, hr), sync_dist=True, batch_size=size,
                     prog_bar=True)
            for name, metric in self._val_metrics().items():
                score = metric(sr, hr).float().mean().to(self.device)
                self.log(f"val/{name}", score, sync_dist=True, batch_size=size)
        else:
            self._log_masked(sr, hr.float(), valid)
        n = self.cfg.val.grid_images
        if batch_idx == 0 and n and self.trainer.is_global_zero:
            self._grid = (lr[:n].detach().cpu(), sr[:n].detach().cpu(), hr[:n].detach().cpu())

    def _log_masked(self, sr: Tensor, hr: Tensor, valid: Tensor | None) -> None:
        """The metrics of a benchmark batch (:meth:`validation_step`). Each mean weighs the
        images it scores; a batch with none (no valid pixel) weighs 0, logged all the same:
        every process must log the same keys for their epoch means to be reduced together."""
        from zoomsr.evaluation.model_eval import as_rgb
        from zoomsr.losses.pixel import l1_loss

        if valid is not None and bool(valid.all()):
            valid = None  # scored as without a mask (the same values, to the bit)
        size = hr.shape[0]
        if valid is None:
            l1, images = F.l1_loss(sr, hr), size
        else:
            images = int(valid.flatten(1).any(1).sum())
            l1 = l1_loss(sr, hr, valid[:, None]) if images else sr.new_zeros(())
        self.log("val/l1", l1, sync_dist=True, batch_size=images, prog_bar=True)
        rgb = hr_rgb_channels(self.cfg.data)
        pred, target = as_rgb(sr, rgb), as_rgb(hr, rgb)
        for name, metric in self._val_metrics().items():
            scores = (metric(pred, target) if valid is None
                      else metric(pred, target, valid=valid)).float().to(self.device)
            scored = ~torch.isnan(scores)
            count = int(scored.sum())
            mean = scores[scored].mean() if count else scores.new_zeros(())
            self.log(f"val/{name}", mean, sync_dist=True, batch_size=count)

    def on_validation_epoch_end(self) -> None:
        grid, self._grid = self._grid, None
        if grid is None or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        image = lr_sr_hr_grid(*grid, channels=self.cfg.channels,
                              lr_rgb=lr_display_channels(self.cfg),
                              hr_rgb=hr_rgb_channels(self.cfg.data))
        step = self.global_step
        path = Path(self.trainer.default_root_dir) / "samples" / f"val_step{step:07d}.png"
        write_png(path, image)
        for logger in self.loggers:
            experiment: Any = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):
                experiment.add_image("val/lr_sr_hr", image, step, dataformats="HWC")

    # -- checkpoints ---------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # from_checkpoint(path) reads this entry to rebuild the generator (EMA weights preferred).
        checkpoint["zoomsr"] = checkpoint_metadata(self.generator)
        checkpoint[CONFIG_KEY] = self.cfg.to_dict()


def lr_sr_hr_grid(lr: Tensor, sr: Tensor, hr: Tensor, channels: int = 3,
                  lr_rgb: Sequence[int] | None = None,
                  hr_rgb: Sequence[int] | None = None) -> np.ndarray:
    """One row per sample: first LR time step (nearest-upsampled), SR, HR; ``[H, W, 3]`` uint8.

    ``lr`` is ``[B, T*C, h, w]`` (``channels`` = C) or ``[B, T, C, h, w]``, shown by its
    channels ``lr_rgb`` (the frame's R, G, B: :func:`lr_display_channels`) or, without, its
    first three (the TCI's RGB); SR and HR by their channels ``hr_rgb``
    (:func:`~zoomsr.training.dataset_config.hr_rgb_channels`) or, without, their first three. Images
    of fewer than 3 channels show their first in grey.
    """
    from torchvision.utils import make_grid

    first = lr[:, 0] if lr.ndim == 5 else lr[:, :channels]
    first = first[:, list(lr_rgb)] if lr_rgb is not None else first[:, :3]
    up = F.interpolate(first.float(), size=hr.shape[-2:], mode="nearest")
    tiles = torch.stack([_rgb_view(up), _rgb_view(sr.float(), hr_rgb),
                         _rgb_view(hr.float(), hr_rgb)],
                        dim=1).flatten(0, 1).clamp(0, 1)
    grid = make_grid(tiles, nrow=3, padding=2, pad_value=1.0)
    return (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def lr_display_channels(cfg: TrainConfig) -> tuple[int, ...] | None:
    """The channels of an LR frame to show as R, G, B where they are not its first three:
    WorldStrat's bands B04, B03, B02 wherever ``data.options.lr_bands`` puts them (the
    reference's order, B02, B03, B04, is blue first); None otherwise."""
    if cfg.data.dataset != "worldstrat":
        return None
    from zoomsr.data import worldstrat as ws

    o = cfg.data.options
    return ws.lr_rgb(ws._parse_lr_bands(o.get("lr_bands", ("B04", "B03", "B02")),
                                        o.get("level", "L2A")))


def _rgb_view(x: Tensor, rgb: Sequence[int] | None = None) -> Tensor:
    """``[B, C, H, W]`` as 3 channels to show: ``rgb`` (where given), the first 3, or the
    first repeated."""
    if x.shape[1] < 3:
        return x[:, :1].expand(-1, 3, -1, -1)
    return x[:, list(rgb)] if rgb is not None else x[:, :3]


__all__ = ["CONFIG_KEY", "SRModule", "build_discriminator", "build_generator",
           "check_loss_weights", "check_val_weights", "clip_loss_error", "config_key_error",
           "discriminator_config", "lr_display_channels", "lr_sr_hr_grid"]
