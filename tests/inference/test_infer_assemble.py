"""Finishing rows in parallel (RowChain, RowAssembler) gives exactly the bytes of one
accumulator."""

from __future__ import annotations

import numpy as np
import pytest

from zoomsr.inference.assemble import RowAssembler, RowChain, prepare_row
from zoomsr.inference.rows import ArrayReader, RowBlender, ScenePlan, compute_row
from zoomsr.inference.windows import Tiling, WindowGrid


def _scene(tiny_model, height: int, window: int, overlap: int):
    """A random 22 px wide scene of 3 frames with gaps, its windows, plan and an accumulator."""
    rng = np.random.default_rng(height + window + overlap)
    pixels = rng.random((3, 3, height, 22), dtype=np.float32)
    valid = rng.random((3, height, 22)) > 0.1
    pixels *= valid[:, None]
    model = tiny_model(2)
    windows = WindowGrid(height, 22, Tiling(window, overlap))
    plan = ScenePlan(ArrayReader(pixels, valid), None, windows, 2, 4, 0, 0)
    return model, windows, plan, RowBlender(windows, model.scale, 3, 22 * model.scale)


GEOMETRIES = [(70, 32, 8), (70, 32, 24), (64, 32, 0), (20, 32, 8), (75, 16, 14), (41, 24, 12)]


@pytest.mark.parametrize(("height", "window", "overlap"), GEOMETRIES)
def test_assembler_matches_one_accumulator(tiny_model, height, window, overlap):
    model, windows, plan, blender = _scene(tiny_model, height, window, overlap)
    s = model.scale
    assembler = RowAssembler(windows, s, 3, 22 * s)
    old = np.zeros((height * s, 22 * s, 4), np.uint8)
    new = np.zeros_like(old)
    for r in range(windows.n_rows):
        res = compute_row(plan, model, r)
        top, value, valid_hr = blender.add(res)
        old[top : top + value.shape[1]] = _block(value, valid_hr)
        top2, block = assembler.add(prepare_row(res, windows, s, with_lr=True))
        assert top2 == top and block.shape[0] == value.shape[1]
        new[top2 : top2 + block.shape[0]] = block
        assert np.array_equal(assembler.sums, blender.sums)
        assert np.array_equal(assembler.weights, blender.weights)
    assert np.array_equal(old, new)
    assert assembler.weights.shape[0] == 0  # nothing left over at the end


@pytest.mark.parametrize("on_torch", [False, True])
@pytest.mark.parametrize(("height", "window", "overlap"), GEOMETRIES)
def test_chain_matches_one_accumulator(tiny_model, height, window, overlap, on_torch):
    """Rows linked in order and finished where they were blended (NumPy, or torch as on a
    GPU) give the accumulator's bytes, and each row's carry is the accumulator's."""
    import torch

    model, windows, plan, blender = _scene(tiny_model, height, window, overlap)
    s = model.scale
    chain = RowChain(windows, s, 3, 22 * s)
    old = np.zeros((height * s, 22 * s, 4), np.uint8)
    new = np.zeros_like(old)
    on = torch.device("cpu") if on_torch else None
    for r in range(windows.n_rows):
        res = compute_row(plan, model, r, on)
        top, value, valid_hr = blender.add(compute_row(plan, model, r))
        old[top : top + value.shape[1]] = _block(value, valid_hr)
        chain.link(res)
        block, lr, few, sums, weights = chain.finish(res, with_lr=True)
        assert block.shape[0] == value.shape[1] and lr.shape[-1] == 4
        new[top : top + block.shape[0]] = block
        assert np.array_equal(sums, blender.sums) and np.array_equal(weights, blender.weights)
    assert np.array_equal(old, new)
    assert chain.weights.shape[0] == 0


def test_chain_refuses_a_carry_of_another_height(tiny_model):
    pixels = np.random.default_rng(0).random((3, 3, 70, 22), dtype=np.float32)
    windows = WindowGrid(70, 22, Tiling(32, 8))
    plan = ScenePlan(ArrayReader(pixels, np.ones((3, 70, 22), bool)), None, windows, 2, 4, 0, 0)
    chain = RowChain(windows, 4, 3, 22 * 4)
    with pytest.raises(RuntimeError, match="row 1: carry of 0 HR rows, expected 52"):
        chain.link(compute_row(plan, tiny_model(2), 1))  # row 0 was never linked


def _block(value: np.ndarray, valid_hr: np.ndarray) -> np.ndarray:
    """The output rows the accumulator path wrote before RowAssembler existed."""
    block = np.empty((value.shape[1], value.shape[2], 4), dtype=np.uint8)
    block[:, :, :-1] = np.moveaxis(np.round(np.clip(value, 0, 1) * 255).astype(np.uint8), 0, -1)
    block[:, :, -1] = np.where(valid_hr, 255, 0)
    block[:, :, :-1] *= block[:, :, -1:] > 0
    return block


def test_to_uint8_in_place_equals_a_copy():
    import torch

    from zoomsr.inference.assemble import to_uint8

    x = np.random.default_rng(0).normal(0.5, 0.4, (3, 40, 50)).astype(np.float32)
    x[0, 0, :4] = [0.5 / 255, 1.5 / 255, -0.1, 1.2]  # halves round to even, clipped ends
    expected = to_uint8(x.copy())
    for make in (np.array, torch.from_numpy):
        work = make(x.copy())
        got = to_uint8(work, overwrite=True)
        assert np.array_equal(np.asarray(got), expected) and got.dtype in (np.uint8, torch.uint8)
    kept = x.copy()
    to_uint8(kept)
    assert np.array_equal(kept, x)  # without overwrite the input is untouched


def test_a_finished_rows_carry_comes_back_with_its_output_rows(tiny_model, monkeypatch):
    """From a GPU, a linked row's output rows and carry come back in one transfer (views of
    one buffer): the pipeline must then own the carry, not the buffer (mostly output rows).
    CPU tensors pose as a GPU's here."""
    import torch

    from zoomsr.inference import arrays, pipeline

    monkeypatch.setattr(arrays, "_far", lambda x: isinstance(x, torch.Tensor))
    rng = np.random.default_rng(0)
    pixels = rng.random((3, 3, 70, 40), dtype=np.float32)
    windows = WindowGrid(70, 40, Tiling(32, 8))
    plan = ScenePlan(ArrayReader(pixels, np.ones((3, 70, 40), bool)), None, windows, 2, 4, 0, 0)
    chain = RowChain(windows, 4, 3, 40 * 4)
    res = compute_row(plan, tiny_model(2), 0, torch.device("cpu"))
    assert isinstance(res.sums, torch.Tensor)  # blended "on the device"
    chain.link(res)
    block, _, _, sums, _ = chain.finish(res, with_lr=False)
    owner = block
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    assert np.shares_memory(owner, sums)  # one transfer
    kept = pipeline._owned(sums)
    assert kept.base is None and np.array_equal(kept, sums)
    assert isinstance(chain.sums, torch.Tensor)  # the carry itself stays "on the device"
