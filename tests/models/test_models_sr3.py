"""SR3: sampling determinism, training-loss decrease, schedule and input checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoomsr.errors import InputError
from zoomsr.models import SR3, create_model

TINY = {
    "in_channels": 6,
    "out_channels": 3,
    "scale": 2,
    "base_channels": 8,
    "channel_mults": (1, 2),
    "num_res_blocks": 1,
    "attn_levels": (1,),
    "num_timesteps": 40,
}


def _model(**overrides: object) -> SR3:
    return create_model("sr3", **{**TINY, **overrides}).eval()


def test_ddim_sampling_is_deterministic_for_a_seed() -> None:
    model = _model()
    lr = torch.rand(2, 6, 6, 6)
    first = model.sample(lr, steps=4, method="ddim", seed=7)
    second = model.sample(lr, steps=4, method="ddim", seed=7)
    other = model.sample(lr, steps=4, method="ddim", seed=8)
    assert first.shape == (2, 3, 12, 12)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    assert first.min() >= 0 and first.max() <= 1


def test_ddpm_sampling_is_seeded_and_uses_every_step_by_default() -> None:
    model = _model(num_timesteps=6)
    lr = torch.rand(1, 6, 4, 4)
    calls: list[tuple[int, int]] = []
    a = model.sample(
        lr, method="ddpm", seed=1, progress=lambda done, total: calls.append((done, total))
    )
    b = model.sample(lr, method="ddpm", generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert calls[-1] == (6, 6) and len(calls) == 6


def test_any_output_size_is_padded_and_cropped() -> None:
    model = _model(channel_mults=(1, 2, 2), attn_levels=(2,))
    assert model.sample(torch.rand(1, 6, 5, 7), steps=2, seed=0).shape == (1, 3, 10, 14)


def test_timesteps_start_from_the_noisiest_step() -> None:
    model = _model()
    assert model.timesteps(1).tolist() == [39]
    steps = model.timesteps(5).tolist()
    assert steps[-1] == 39 and steps[0] == 0 and steps == sorted(set(steps))
    assert model.timesteps(40).tolist() == list(range(40))


def test_training_loss_decreases_on_a_tiny_batch() -> None:
    model = _model().train()
    lr = torch.rand(2, 6, 8, 8)
    hr = F.interpolate(lr[:, :3], scale_factor=2, mode="bilinear", align_corners=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        # The same noise draw every step makes the objective deterministic, so the decrease
        # is the optimiser's doing and not luck.
        loss = model.loss(hr, lr, generator=torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_q_sample_endpoints() -> None:
    model = _model()
    x0, noise = torch.rand(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(model.q_sample(x0, torch.ones(2), noise), x0)
    torch.testing.assert_close(model.q_sample(x0, torch.zeros(2), noise), noise)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedule_is_decreasing(schedule: str) -> None:
    alpha_bar = _model(schedule=schedule).alpha_bar
    assert alpha_bar[0] > 0.99 and alpha_bar[-1] < alpha_bar[0]
    assert (alpha_bar[1:] < alpha_bar[:-1]).all()


def test_schedule_is_not_in_the_state_dict() -> None:
    assert not any(k.startswith("alpha_bar") for k in _model().state_dict())


def test_bad_sampling_arguments() -> None:
    model = _model()
    lr = torch.rand(1, 6, 4, 4)
    with pytest.raises(InputError, match="steps"):
        model.sample(lr, steps=41)
    with pytest.raises(InputError, match="method"):
        model.sample(lr, method="euler")
    with pytest.raises(InputError, match="seed or generator"):
        model.sample(lr, seed=0, generator=torch.Generator())
    with pytest.raises(InputError, match=r"\[B, 6, h, w\]"):
        model.sample(torch.rand(1, 3, 4, 4))
    with pytest.raises(InputError, match="hr"):
        model.loss(torch.rand(1, 3, 6, 6), lr)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_a_model_cast_to_another_dtype_runs(dtype: torch.dtype) -> None:
    """The noise-level embedding stayed fp32 and met the cast layers: a dtype error."""
    model = _model().to(dtype)
    lr = torch.rand(1, 6, 6, 6, dtype=dtype)
    out = model.sample(lr, steps=3, seed=0)
    assert out.dtype == dtype and bool(torch.isfinite(out).all())
    assert model.loss(torch.rand(1, 3, 12, 12, dtype=dtype), lr).dtype == dtype


def test_a_tiny_beta_start_samples_finite_images() -> None:
    """alpha_bar[0] rounds to 1 in fp32: the last DDIM step divided 0 by 0 (all NaN)."""
    model = _model(beta_start=1e-8)
    for eta in (0.0, 1.0):
        out = model.sample(torch.rand(1, 6, 6, 6), steps=5, seed=0, eta=eta)
        assert bool(torch.isfinite(out).all()) and out.min() >= 0 and out.max() <= 1
