"""The generator's weighted content loss, built from a config's ``losses`` section."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from zoomsr.errors import ZoomsrError
from zoomsr.losses import CLIPLoss, PerceptualLoss, PixelLoss, USMSharp, ssim_loss
from zoomsr.training.config import LossSection


class _SSIMTerm(nn.Module):
    def __init__(self, window: int) -> None:
        super().__init__()
        self.window = window

    def forward(self, sr: Tensor, hr: Tensor, weight: Tensor | None = None) -> Tensor:
        return ssim_loss(sr, hr, weight, window=self.window)


def usm_within(usm: USMSharp, img: Tensor, valid: Tensor) -> Tensor:
    """``usm(img)`` (:func:`zoomsr.losses.usm_sharp`) from the pixels ``valid`` (``[B, H, W]``
    bool) marks alone: the blur is the weighted mean of each pixel's valid neighbours
    (normalised convolution), so a concealed pixel (a cloud, no data: black) does not bleed
    into the sharpened values of its valid neighbours, up to the kernel's 25 px away; pixels
    that are not valid are returned as they are."""
    from zoomsr.losses.usm import _blur, _gaussian_kernel1d

    dtype = torch.promote_types(img.dtype, torch.float32)
    with torch.autocast(img.device.type, enabled=False):
        x = img.to(dtype)
        keep = valid[:, None].to(img.device)
        v = keep.to(dtype)
        kernel = _gaussian_kernel1d(usm.radius, dtype, img.device)
        # a valid pixel's own weight in its blur is > 0: the share never vanishes there
        share = _blur(v, kernel).clamp(min=1e-12)
        residual = (x - _blur(x * v, kernel) / share) * v
        mask = (residual.abs() * 255 > usm.threshold).to(dtype)
        soft_mask = (_blur(mask, kernel) / share).clamp(0, 1)
        sharp = (x + usm.weight * residual).clamp(0, 1)
        out = soft_mask * sharp + (1 - soft_mask) * x
        return torch.where(keep, out, x).to(img.dtype)


#: Terms that take a per-pixel weight (the HR's valid mask); the network ones (VGG19, CLIP)
#: see whole images instead.
_MASKED_TERMS = ("pixel", "ssim")
#: Terms on RGB images: HR of more channels (RGB + NIR) gives them its R, G, B.
_RGB_TERMS = ("perceptual", "clip")


class ContentLoss(nn.Module):
    """``sum_k weight_k * term_k(sr, target_k)`` over the enabled (weight > 0) terms of
    ``pixel``, ``ssim``, ``perceptual`` and ``clip``; ``target_k`` is the HR image or, for terms
    with ``usm: true``, its unsharp-masked version.

    ``forward(sr, hr) -> (total, {term: unweighted value})`` for ``[B, C, H, W]`` in [0, 1]
    (C = 3 for S2-NAIP; the benchmark datasets' HR channels otherwise: the VGG19 and CLIP
    terms take channels ``rgb``, the positions of R, G, B, e.g. WorldStrat's ``hr_bands``
    NIR, B, G, R -> (3, 2, 1); the config refuses them for fewer than 3).

    ``valid`` (``[B, H, W]`` bool, the HR's quality mask, e.g. PROBA-V's ``SM.png``): pixels
    where it is False do not count in the pixel and SSIM terms (weighted means over the valid
    pixels, :func:`zoomsr.losses.pixel.reduce_loss`; SSIM over the windows wholly inside the
    mask), as HighRes-net's official training masks its loss by the status map; for the
    VGG19 and CLIP terms the SR image takes the HR's values there, so concealed pixels give
    those no gradient either. The USM-sharpened ground truth of ``usm: true`` terms is
    sharpened from the valid pixels alone (:func:`usm_within`). A mask that is all True is
    the same as none (to the bit).
    """

    def __init__(self, cfg: LossSection, rgb: Sequence[int] | None = (0, 1, 2)) -> None:
        super().__init__()
        self.rgb = (0, 1, 2) if rgb is None else tuple(int(c) for c in rgb)  # None: one band
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
            loss: nn.Module = PerceptualLoss(p.layer_weights, p.criterion, p.weights,
                                             p.allow_random)
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

    def sharpen(self, hr: Tensor, valid: Tensor | None = None) -> Tensor:
        """The USM-sharpened ground truth of the ``usm: true`` terms: of the valid pixels
        alone where ``valid`` masks some (:func:`usm_within`), else of the whole image."""
        if valid is None or bool(valid.all()):
            return self.usm(hr)
        return usm_within(self.usm, hr, valid)

    def forward(
        self, sr: Tensor, hr: Tensor, hr_usm: Tensor | None = None, valid: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and each term; ``hr_usm`` (optional: :meth:`sharpen` of ``hr`` and
        ``valid``) avoids sharpening twice; ``valid`` (optional ``[B, H, W]`` bool) masks the
        HR's concealed pixels (class docstring)."""
        if valid is not None and bool(valid.all()):
            valid = None
        if self.usm_terms and hr_usm is None:
            hr_usm = self.sharpen(hr, valid)
        weight = None if valid is None else valid[:, None].to(sr.dtype)
        parts: dict[str, Tensor] = {}
        total = sr.new_zeros(()).float()
        for name, term in self.terms.items():
            target = hr_usm if name in self.usm_terms and hr_usm is not None else hr
            if name in _MASKED_TERMS:
                value = term(sr, target, weight)
            else:
                pred = sr if valid is None else torch.where(valid[:, None], sr, target)
                if name in _RGB_TERMS and (pred.shape[1] != 3 or self.rgb != (0, 1, 2)):
                    pred, target = pred[:, list(self.rgb)], target[:, list(self.rgb)]
                value = term(pred, target)
            parts[name] = value.detach()
            total = total + self.weights[name] * value
        return total, parts


__all__ = ["ContentLoss", "usm_within"]
