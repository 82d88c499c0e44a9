"""Example images of a scoring run (``zoomsr.evaluation.examples``): the same items for every
model, whatever the order they come in; the montage of a benchmark."""

from __future__ import annotations

import numpy as np
import torch

from zoomsr.evaluation.examples import ExampleKeeper, example_rank, plot_examples


def _offer_all(keeper: ExampleKeeper, keys: list[str]) -> None:
    for key in keys:
        lr = torch.full((2, 3, 4, 4), int(key[-2:]) / 20)  # [T, C, h, w]: frame 0 shown
        lr[1] = 1.0
        sr = torch.full((4, 8, 8), 0.5)
        sr[3] = 0.9  # R last: hr_rgb (3, 2, 1)
        keeper.offer(key, lr, sr, sr.clone())


def test_the_kept_items_are_the_smallest_ranks_whatever_the_order():
    keys = [f"item{i:02d}" for i in range(20)]
    want = sorted(keys, key=lambda k: example_rank(k, 7))[:3]
    for order in (keys, keys[::-1], keys[5:] + keys[:5]):
        keeper = ExampleKeeper(3, seed=7, channels=3, rgb=(3, 2, 1))
        _offer_all(keeper, order)
        assert list(keeper.kept) == want
    images = keeper.kept[want[0]]
    assert images["lr"].shape == (8, 8, 3) and images["lr"].dtype == np.float16
    assert float(images["sr"][0, 0, 0]) == np.float16(0.9)  # R first, from channel 3
    # frame 0 (its value says which item), upsampled
    assert np.allclose(images["lr"].astype(np.float32), int(want[0][-2:]) / 20, atol=1e-3)
    assert ExampleKeeper(0).kept == {}


def test_one_band_items_are_kept_as_one_band_and_shown_in_grey():
    keeper = ExampleKeeper(1, channels=1, rgb=None)
    keeper.offer("a", torch.rand(4, 6, 6), torch.rand(1, 18, 18), torch.rand(1, 18, 18))
    images = keeper.kept["a"]
    assert {k: v.shape for k, v in images.items()} == {
        "lr": (18, 18, 1), "sr": (18, 18, 1), "hr": (18, 18, 1)}
    fig = plot_examples([("a", images["lr"], [images["sr"], "failed"], images["hr"])],
                        ["m", "n"])
    assert len(fig.axes) == 4
    assert [t.get_text() for t in fig.axes[2].texts] == ["failed"]
