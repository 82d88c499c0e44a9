"""SR3: image super-resolution by iterative refinement (Saharia et al., 2021, arXiv 2104.07636).

A denoising U-Net conditioned on the bicubically upsampled LR stack (concatenated to the noisy
image) and on the continuous noise level ``sqrt(alpha_bar)``, as in the paper; training draws the
noise level uniformly between two adjacent steps of the schedule, so sampling can use any number
of steps. Sampling offers DDPM (ancestral) and DDIM on an evenly spaced subset of the steps.
Written from the paper; no published checkpoint exists to match.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoomsr.errors import ConfigError, InputError
from zoomsr.models.blocks import check_float_input
from zoomsr.validate import check_choice, check_float, check_int, check_int_tuple


def _groups(channels: int) -> int:
    # 32 groups as in DDPM when the width allows it; small test models use fewer.
    return math.gcd(32, channels)


def noise_level_embedding(level: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding ``[B] -> [B, dim]`` of noise levels in [0, 1]."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, device=level.device, dtype=torch.float32) / half
    )
    # x1000 spreads [0, 1] over as many periods as the integer timesteps of DDPM would.
    args = 1000.0 * level.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResBlock(nn.Module):
    """BigGAN-style residual block with a noise-level shift, skip sum scaled by 1/sqrt(2)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (h + self.skip(x)) / math.sqrt(2.0)


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels, with a residual connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        batch, channels, height, width = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(batch, 3, 1, channels, height * width).unbind(1)
        out = F.scaled_dot_product_attention(
            q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        )
        out = out.transpose(-1, -2).reshape(batch, channels, height, width)
        return x + self.proj(out)


class SR3UNet(nn.Module):
    """Noise predictor: ``x_noisy [B, out, H, W]``, ``cond [B, in, H, W]``, ``level [B]`` ->
    predicted noise ``[B, out, H, W]``.

    ``H`` and ``W`` are padded (replicate) to a multiple of ``2**(len(channel_mults) - 1)`` and
    the output cropped back, so any size works.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base_channels: int,
        channel_mults: tuple[int, ...],
        num_res_blocks: int,
        attn_levels: tuple[int, ...],
        dropout: float,
    ) -> None:
        super().__init__()
        emb_dim = 4 * base_channels
        self.base_channels = base_channels
        self.levels = len(channel_mults)
        self.emb_mlp = nn.Sequential(
            nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.conv_in = nn.Conv2d(out_channels + in_channels, base_channels, 3, padding=1)

        self.down = nn.ModuleList()
        skips = [base_channels]
        ch = base_channels
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                blocks: list[nn.Module] = [ResBlock(ch, base_channels * mult, emb_dim, dropout)]
                ch = base_channels * mult
                if level in attn_levels:
                    blocks.append(AttnBlock(ch))
                self.down.append(nn.ModuleList(blocks))
                skips.append(ch)
            if level < self.levels - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)

        self.mid = nn.ModuleList(
            [ResBlock(ch, ch, emb_dim, dropout), AttnBlock(ch), ResBlock(ch, ch, emb_dim, dropout)]
        )

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                blocks = [ResBlock(ch + skips.pop(), base_channels * mult, emb_dim, dropout)]
                ch = base_channels * mult
                if level in attn_levels:
                    blocks.append(AttnBlock(ch))
                self.up.append(nn.ModuleList(blocks))
            if level > 0:
                self.up.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, padding=1)]))

        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)

    @staticmethod
    def _run_blocks(blocks: nn.ModuleList, h: Tensor, emb: Tensor) -> Tensor:
        for block in blocks:
            h = block(h, emb) if isinstance(block, (ResBlock, AttnBlock)) else block(h)
        return h

    def forward(self, x_noisy: Tensor, cond: Tensor, level: Tensor) -> Tensor:
        height, width = x_noisy.shape[-2:]
        multiple = 2 ** (self.levels - 1)
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        h = torch.cat([x_noisy, cond], dim=1)
        if pad_h or pad_w:
            h = F.pad(h, (0, pad_w, 0, pad_h), mode="replicate")
        # the embedding is computed in fp32; a model cast to bf16/fp16 needs its own dtype
        emb = self.emb_mlp(noise_level_embedding(level, self.base_channels).to(
            cast(nn.Linear, self.emb_mlp[0]).weight.dtype))

        h = self.conv_in(h)
        skips = [h]
        for blocks in cast("Iterable[nn.ModuleList]", self.down):
            h = self._run_blocks(blocks, h, emb)
            skips.append(h)
        h = self._run_blocks(self.mid, h, emb)
        for blocks in cast("Iterable[nn.ModuleList]", self.up):
            if isinstance(blocks[0], ResBlock):
                h = self._run_blocks(blocks, torch.cat([h, skips.pop()], dim=1), emb)
            else:  # upsample: nearest x2 then conv
                h = blocks[0](F.interpolate(h, scale_factor=2, mode="nearest"))
        out = self.conv_out(F.silu(self.norm_out(h)))
        return out[..., :height, :width]


def make_betas(schedule: str, num_timesteps: int, beta_start: float, beta_end: float) -> Tensor:
    """Betas ``[num_timesteps]`` (float64): ``linear``, or ``cosine`` (Nichol & Dhariwal)."""
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    alpha_bar = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)


class SR3(nn.Module):
    """SR3 diffusion super-resolution of an LR stack ``[B, T*C, h, w] -> [B, C_out, h*s, w*s]``.

    ``in_channels`` is ``T * C`` of the LR stack; images in [0, 1] (mapped to [-1, 1] inside).

    - ``forward(x_noisy, lr, noise_level)``: the denoiser, predicted noise ``[B, C_out, H, W]``
      for ``x_noisy`` in [-1, 1] at ``noise_level = sqrt(alpha_bar)`` (``[B]``).
    - ``loss(hr, lr)``: the training loss (``loss_type`` ``l1`` or ``l2`` on the noise).
    - ``sample(lr, steps, method="ddim"|"ddpm", seed=...)``: the super-resolved image in [0, 1].
    """

    name = "sr3"
    description = "SR3 diffusion model: noise-level-conditioned U-Net, DDPM/DDIM sampling"
    input_layout = "[B, T*C, H, W]"
    output_layout = "[B, C_out, H*scale, W*scale]"
    flops_note = "per denoising step (inputs: noisy HR image, LR stack, noise level)"

    alpha_bar: Tensor  # buffers (register_buffer)
    alpha_bar_prev: Tensor

    def __init__(
        self,
        in_channels: int = 24,
        out_channels: int = 3,
        scale: int = 4,
        base_channels: int = 64,
        channel_mults: tuple[int, ...] = (1, 2, 4, 8),
        num_res_blocks: int = 2,
        attn_levels: tuple[int, ...] = (3,),
        dropout: float = 0.0,
        num_timesteps: int = 2000,
        schedule: str = "linear",
        beta_start: float = 1e-6,
        beta_end: float = 1e-2,
        loss_type: str = "l1",
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels, minimum=1)
        check_int("out_channels", out_channels, minimum=1)
        check_int("scale", scale, minimum=1)
        check_int("base_channels", base_channels, minimum=2)
        channel_mults = check_int_tuple("channel_mults", channel_mults, minimum=1)
        if not channel_mults:
            raise ConfigError("channel_mults must not be empty")
        check_int("num_res_blocks", num_res_blocks, minimum=1)
        attn_levels = check_int_tuple("attn_levels", attn_levels, minimum=0)
        if any(level >= len(channel_mults) for level in attn_levels):
            raise ConfigError(
                f"attn_levels must index channel_mults (0..{len(channel_mults) - 1}), "
                f"got {attn_levels}"
            )
        dropout = check_float("dropout", dropout, minimum=0.0, maximum=1.0)
        check_int("num_timesteps", num_timesteps, minimum=1)
        check_choice("schedule", schedule, ("linear", "cosine"))
        beta_start = check_float("beta_start", beta_start, minimum=0.0, maximum=1.0)
        beta_end = check_float("beta_end", beta_end, minimum=0.0, maximum=1.0)
        if schedule == "linear" and not 0.0 < beta_start <= beta_end < 1.0:
            raise ConfigError(
                f"beta_start and beta_end need 0 < beta_start <= beta_end < 1, "
                f"got {beta_start}, {beta_end}"
            )
        check_choice("loss_type", loss_type, ("l1", "l2"))
        self.config = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "scale": scale,
            "base_channels": base_channels,
            "channel_mults": channel_mults,
            "num_res_blocks": num_res_blocks,
            "attn_levels": attn_levels,
            "dropout": dropout,
            "num_timesteps": num_timesteps,
            "schedule": schedule,
            "beta_start": beta_start,
            "beta_end": beta_end,
            "loss_type": loss_type,
        }
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.scale = scale
        self.num_timesteps = num_timesteps
        self.loss_type = loss_type
        self.unet = SR3UNet(
            in_channels,
            out_channels,
            base_channels,
            channel_mults,
            num_res_blocks,
            attn_levels,
            dropout,
        )
        alpha_bar = torch.cumprod(1 - make_betas(schedule, num_timesteps, beta_start, beta_end), 0)
        # Derived from the config, so kept out of the state dict.
        self.register_buffer("alpha_bar", alpha_bar.float(), persistent=False)
        alpha_bar_prev = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
        self.register_buffer("alpha_bar_prev", alpha_bar_prev.float(), persistent=False)

    def example_inputs(self, lr_size: int = 32) -> tuple[Tensor, ...]:
        """Denoiser inputs for one ``lr_size`` chunk (used to count FLOPs per step)."""
        hr = lr_size * self.scale
        return (
            torch.zeros(1, self.out_channels, hr, hr),
            torch.zeros(1, self.in_channels, lr_size, lr_size),
            torch.ones(1),
        )

    def condition(self, lr: Tensor) -> Tensor:
        """Bicubic upsampling of the LR stack ``[B, T*C, h, w]`` in [0, 1] to [-1, 1] at HR size."""
        if lr.ndim != 4 or lr.shape[1] != self.in_channels:
            raise InputError(
                f"SR3 expects an LR stack [B, {self.in_channels}, h, w], got {list(lr.shape)}"
            )
        up = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return up * 2 - 1

    def forward(self, x_noisy: Tensor, lr: Tensor, noise_level: Tensor) -> Tensor:
        """Predicted noise ``[B, C_out, H, W]`` for ``x_noisy`` at ``noise_level`` ``[B]``."""
        check_float_input("SR3", lr)
        return self.unet(x_noisy, self.condition(lr), noise_level)

    def q_sample(self, x0: Tensor, noise_level: Tensor, noise: Tensor) -> Tensor:
        """Noisy ``level * x0 + sqrt(1 - level**2) * noise`` (``x0`` in [-1, 1], level ``[B]``)."""
        level = noise_level.to(x0.dtype)[:, None, None, None]
        return level * x0 + (1 - level**2).clamp(min=0).sqrt() * noise

    def loss(self, hr: Tensor, lr: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Training loss for HR ``[B, C_out, H, W]`` and LR ``[B, T*C, H/s, W/s]`` in [0, 1].

        The noise level is drawn uniformly between ``sqrt(alpha_bar)`` of two adjacent steps
        (SR3's continuous conditioning); ``generator`` makes the draw reproducible.
        """
        cond = self.condition(lr)
        if hr.shape[0] != lr.shape[0] or hr.shape[1:] != (self.out_channels, *cond.shape[-2:]):
            raise InputError(
                f"SR3 loss needs hr [B, {self.out_channels}, {cond.shape[-2]}, "
                f"{cond.shape[-1]}] for this lr, got {list(hr.shape)}"
            )
        batch, device = hr.shape[0], hr.device
        t = torch.randint(0, self.num_timesteps, (batch,), device=device, generator=generator)
        low, high = self.alpha_bar[t].sqrt(), self.alpha_bar_prev[t].sqrt()
        u = torch.rand(batch, device=device, generator=generator)
        level = low + (high - low) * u
        noise = torch.randn(hr.shape, device=device, dtype=hr.dtype, generator=generator)
        pred = self.unet(self.q_sample(hr * 2 - 1, level, noise), cond, level)
        if self.loss_type == "l1":
            return F.l1_loss(pred, noise)
        return F.mse_loss(pred, noise)

    def timesteps(self, steps: int) -> Tensor:
        """``steps`` evenly spaced step indices in ``[0, num_timesteps)``, increasing.

        The last (noisiest) step is always included, so sampling starts from pure noise.
        """
        return torch.linspace(self.num_timesteps - 1, 0, steps).round().long().flip(0)

    def default_steps(self, method: str = "ddim") -> int:
        """Steps :meth:`sample` takes when none are given: every timestep for DDPM, 50 (at
        most ``num_timesteps``) for DDIM."""
        check_choice("method", method, ("ddim", "ddpm"))
        return self.num_timesteps if method == "ddpm" else min(50, self.num_timesteps)

    @torch.no_grad()
    def sample(
        self,
        lr: Tensor,
        steps: int | None = None,
        method: str = "ddim",
        *,
        eta: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        progress: Callable[[int, int], None] | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """Super-resolve ``lr`` ``[B, T*C, h, w]`` to ``[B, C_out, h*s, w*s]`` in [0, 1].

        ``method="ddpm"``: ancestral sampling (default: all ``num_timesteps`` steps);
        ``method="ddim"``: DDIM (default 50 steps, ``eta=0``, deterministic given the initial
        noise). Both use ``steps`` evenly spaced steps of the schedule; ``eta`` (0 = DDIM,
        1 = DDPM) can be set for either. ``seed`` (or a ``generator``) fixes every random draw.
        ``progress(done, total)`` is called after each step. ``noise`` ``[B, C_out, h*s, w*s]``
        is the starting noise (default: drawn); with DDIM it fixes the result.
        """
        check_choice("method", method, ("ddim", "ddpm"))
        if steps is None:
            steps = self.default_steps(method)
        check_int("steps", steps, minimum=1)
        if steps > self.num_timesteps:
            raise InputError(f"steps ({steps}) exceeds num_timesteps ({self.num_timesteps})")
        eta = check_float(
            "eta", (0.0 if method == "ddim" else 1.0) if eta is None else eta, minimum=0.0
        )
        if generator is not None and seed is not None:
            raise InputError("pass either seed or generator, not both")
        if seed is not None:
            generator = torch.Generator(device=lr.device).manual_seed(seed)

        check_float_input("SR3", lr)
        cond = self.condition(lr)
        shape = (lr.shape[0], self.out_channels, *cond.shape[-2:])
        if noise is None:
            x = torch.randn(shape, device=lr.device, dtype=lr.dtype, generator=generator)
        elif tuple(noise.shape) != shape:
            raise InputError(f"noise must be {list(shape)}, got {list(noise.shape)}")
        else:
            x = noise.to(device=lr.device, dtype=lr.dtype)
        schedule = self.timesteps(steps).tolist()
        for i in reversed(range(len(schedule))):
            a_t = self.alpha_bar[schedule[i]]
            a_prev = self.alpha_bar[schedule[i - 1]] if i > 0 else a_t.new_ones(())
            level = a_t.sqrt().expand(shape[0])
            eps = self.unet(x, cond, level)
            x0 = ((x - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1, 1)
            # Re-derive the noise from the clipped x0 so both stay consistent with x.
            # 1 - a_t is 0 where alpha_bar rounds to 1 (a tiny beta_start): eps is then unused
            # (its factor below is 0), but 0/0 made every pixel NaN
            noise_var = (1 - a_t).clamp(min=torch.finfo(a_t.dtype).tiny)
            eps = (x - a_t.sqrt() * x0) / noise_var.sqrt()
            sigma = eta * ((1 - a_prev) / noise_var * (1 - a_t / a_prev)).clamp(min=0).sqrt()
            x = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
            if i > 0 and eta > 0:
                x = x + sigma * torch.randn(
                    shape, device=lr.device, dtype=lr.dtype, generator=generator
                )
            if progress is not None:
                progress(len(schedule) - i, len(schedule))
        return ((x + 1) / 2).clamp(0, 1)


def keyed_noise(shape: Sequence[int], seed: int, names: Sequence[bytes]) -> Tensor:
    """``[len(names), *shape]`` standard normal starting noise, each from ``seed`` and its
    name (what names a window or an item) on a CPU generator: the same whatever batch, batch
    size or device it is used in."""
    return torch.stack([torch.randn(tuple(shape), generator=torch.Generator().manual_seed(
        noise_seed(seed, name))) for name in names])


def noise_seed(seed: int, name: bytes) -> int:
    """A 63-bit seed from ``seed`` and what names a window or an item."""
    h = hashlib.blake2b(int(seed).to_bytes(8, "little", signed=True), digest_size=8)
    h.update(name)
    return int.from_bytes(h.digest(), "little") & (2**63 - 1)
