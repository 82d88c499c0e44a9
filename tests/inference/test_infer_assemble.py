"""Finishing rows in parallel (RowAssembler) gives exactly the bytes of one accumulator."""

from __future__ import annotations

import numpy as np
import pytest

from zoomsr.inference.assemble import RowAssembler, prepare_row
from zoomsr.inference.rows import ArrayReader, RowBlender, ScenePlan, compute_row
from zoomsr.inference.windows import Tiling, WindowGrid


@pytest.mark.parametrize(
    ("height", "window", "overlap"),
    [(70, 32, 8), (70, 32, 24), (64, 32, 0), (20, 32, 8), (75, 16, 15), (41, 24, 12)],
)
def test_assembler_matches_one_accumulator(tiny_model, height, window, overlap):
    rng = np.random.default_rng(height + window + overlap)
    pixels = rng.random((3, 3, height, 22), dtype=np.float32)
    valid = rng.random((3, height, 22)) > 0.1
    pixels *= valid[:, None]
    model = tiny_model(2)
    windows = WindowGrid(height, 22, Tiling(window, overlap))
    plan = ScenePlan(ArrayReader(pixels, valid), None, windows, 2, 4, 0, 0)
    s = model.scale
    blender = RowBlender(windows, s, 3, 22 * s)
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


def test_a_row_without_its_interior_keeps_none_of_its_transfer_buffer(tiny_model, monkeypatch):
    """From a GPU, a row's arrays come back as views of one buffer (``to_host``); once its
    interior is written, what the row still hands on must not keep that buffer (mostly the
    interior) alive while it waits for the consumer. CPU tensors pose as a GPU's here."""
    import gc
    import weakref

    import torch

    from zoomsr.inference import arrays

    monkeypatch.setattr(arrays, "_far", lambda x: isinstance(x, torch.Tensor))
    rng = np.random.default_rng(0)
    pixels = rng.random((3, 3, 70, 40), dtype=np.float32)
    valid = np.ones((3, 70, 40), bool)
    windows = WindowGrid(70, 40, Tiling(32, 8))
    plan = ScenePlan(ArrayReader(pixels, valid), None, windows, 2, 4, 0, 0)
    res = compute_row(plan, tiny_model(2), 1, torch.device("cpu"))
    assert isinstance(res.sums, torch.Tensor)  # blended "on the device"
    ready = prepare_row(res, windows, 4, with_lr=True)
    owner = ready.interior
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    assert ready.interior.size and np.shares_memory(owner, ready.edge_sums)  # one buffer
    buffer = weakref.ref(owner)
    slim = ready.without_interior()
    del owner, ready
    gc.collect()
    assert buffer() is None
    assert slim.interior.shape[0] == 0 and slim.edge_sums.base is None
    again = prepare_row(res, windows, 4, with_lr=True)
    for name in ("edge_sums", "edge_weights", "tail_sums", "tail_weights", "valid", "lr"):
        assert np.array_equal(getattr(slim, name), getattr(again, name))
