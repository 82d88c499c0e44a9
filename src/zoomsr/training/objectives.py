"""The generator's weighted content loss, built from a config's ``losses`` section."""

from __future__ import annotations

from torch import Tensor, nn

from zoomsr.errors import ZoomsrError
from zoomsr.losses import CLIPLoss, PerceptualLoss, PixelLoss, USMSharp, ssim_loss
from zoomsr.training.config import LossSection


class _SSIMTerm(nn.Module):
    def __init__(self, window: int) -> None:
        super().__init__()
        self.window = window

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        return ssim_loss(sr, hr, window=self.window)


class ContentLoss(nn.Module):
    """``sum_k weight_k * term_k(sr, target_k)`` over the enabled (weight > 0) terms of
    ``pixel``, ``ssim``, ``perceptual`` and ``clip``; ``target_k`` is the HR image or, for terms
    with ``usm: true``, its unsharp-masked version.

    ``forward(sr, hr) -> (total, {term: unweighted value})`` for ``[B, 3, H, W]`` in [0, 1].
    """

    def __init__(self, cfg: LossSection) -> None:
        super().__init__()
        self.weights: dict[str, float] = {}
        self.usm_terms: set[str] = set()
        self.terms = nn.ModuleDict()
        if cfg.pixel.weight > 0:
            self._add("pixel", PixelLoss(cfg.pixel.type, cfg.pixel.ssim_window),
                      cfg.pixel.weight, cfg.pixel.usm)
        if cfg.ssim.weight > 0:
            self._add("ssim", _SSIMTerm(cfg.ssim.window), cfg.ssim.weight, cfg.ssim.usm)
        p = cfg.perceptual
        if p.weight > 0:
            loss = PerceptualLoss(p.layer_weights, p.criterion, p.weights, p.allow_random)
            self._add("perceptual", loss, p.weight, p.usm)
        c = cfg.clip
        if c.weight > 0:
            try:
                loss = CLIPLoss(c.model, c.pretrained, c.criterion,
                                allow_download=c.allow_download, allow_random=c.allow_random)
            except ZoomsrError as exc:  # its message suggests the metric's arguments
                from zoomsr.training.base import clip_loss_error  # (base imports Lightning)

                raise clip_loss_error(exc) from None
            self._add("clip", loss, c.weight, c.usm)
        self.usm = USMSharp()

    def _add(self, name: str, module: nn.Module, weight: float, usm: bool) -> None:
        self.terms[name] = module
        self.weights[name] = weight
        if usm:
            self.usm_terms.add(name)

    def forward(
        self, sr: Tensor, hr: Tensor, hr_usm: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and each term; ``hr_usm`` (optional) avoids sharpening twice."""
        if self.usm_terms and hr_usm is None:
            hr_usm = self.usm(hr)
        parts: dict[str, Tensor] = {}
        total = sr.new_zeros(()).float()
        for name, term in self.terms.items():
            target = hr_usm if name in self.usm_terms and hr_usm is not None else hr
            value = term(sr, target)
            parts[name] = value.detach()
            total = total + self.weights[name] * value
        return total, parts


__all__ = ["ContentLoss"]
