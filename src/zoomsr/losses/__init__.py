"""Training losses: pixel (L1, MSE, SSIM, WorldStrat mix), VGG19 perceptual, GAN, CLIP.

Pixel losses take ``[B, C, H, W]`` in [0, 1] and an optional weight mask; network losses
(:class:`PerceptualLoss`, :class:`CLIPLoss`) hold their frozen backbone out of
``parameters()``/``state_dict()`` (:class:`Frozen`). :func:`usm_sharp` sharpens ground truth.
"""

from zoomsr.losses.clip import CLIP_CRITERIA, CLIPLoss
from zoomsr.losses.frozen import Frozen
from zoomsr.losses.gan import GAN_TYPES, GANLoss
from zoomsr.losses.perceptual import (
    ESRGAN_LAYER_WEIGHTS,
    PerceptualLoss,
    VGG19Features,
    find_vgg19_weights,
    vgg19_layer_names,
)
from zoomsr.losses.pixel import (
    PIXEL_LOSSES,
    WORLDSTRAT_WEIGHTS,
    PixelLoss,
    l1_loss,
    mse_loss,
    ssim_loss,
    worldstrat_loss,
)
from zoomsr.losses.ssim import ssim, ssim_map
from zoomsr.losses.usm import USMSharp, usm_sharp

__all__ = [
    "CLIP_CRITERIA",
    "ESRGAN_LAYER_WEIGHTS",
    "GAN_TYPES",
    "PIXEL_LOSSES",
    "WORLDSTRAT_WEIGHTS",
    "CLIPLoss",
    "Frozen",
    "GANLoss",
    "PerceptualLoss",
    "PixelLoss",
    "USMSharp",
    "VGG19Features",
    "find_vgg19_weights",
    "l1_loss",
    "mse_loss",
    "ssim",
    "ssim_loss",
    "ssim_map",
    "usm_sharp",
    "vgg19_layer_names",
    "worldstrat_loss",
]
