import json

import numpy as np
import pytest
import torch

from zoomsr.data import ResumableSampler, S2NAIPDataset, load_tile_weights, weighted_sampler
from zoomsr.errors import DataError


def test_sampler_draws_in_proportion_to_tile_weights(tiny_dataset, tmp_path):
    ds = S2NAIPDataset(tiny_dataset, train=True)
    weights = {"1000_2000": 1.0, "1001_2000": 3.0, "1000_2001": 0.0, "1001_2001": 6.0}
    path = tmp_path / "w.json"
    path.write_text(json.dumps(weights))
    sampler = weighted_sampler(ds.pairs, path, num_samples=20000,
                               generator=torch.Generator().manual_seed(0))
    counts = np.bincount(list(sampler), minlength=4) / 20000
    expected = [weights[p.tile] / 10 for p in ds.pairs]
    np.testing.assert_allclose(counts, expected, atol=0.015)
    assert counts[[p.tile for p in ds.pairs].index("1000_2001")] == 0


def test_missing_tiles_need_a_default(tiny_dataset):
    pairs = S2NAIPDataset(tiny_dataset, train=True).pairs
    with pytest.raises(DataError, match=r"3 of 4 tiles have no weight"):
        weighted_sampler(pairs, {"1000_2000": 2.0})
    s = weighted_sampler(pairs, {"1000_2000": 2.0}, default=1.0)
    assert torch.allclose(s.weights, torch.tensor([2.0, 1, 1, 1], dtype=torch.float64))


@pytest.mark.parametrize("text,match", [
    ("[1, 2]", "JSON object"),
    ('{"1_2": "x"}', "not a number"),
    ('{"1_2": -1}', ">= 0"),
    ('{"1_2": NaN}', "finite"),
    ("{nope", "not a valid JSON"),
])
def test_bad_weight_files(tmp_path, text, match):
    p = tmp_path / "w.json"
    p.write_text(text)
    with pytest.raises(DataError, match=match):
        load_tile_weights(p)
    with pytest.raises(DataError, match="not found"):
        load_tile_weights(tmp_path / "missing.json")


def test_resumable_sampler_repeats_each_epoch_and_shards_it():
    a, b = ResumableSampler(10, seed=3), ResumableSampler(10, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    draws = list(a)
    assert draws == list(b) and len(draws) == len(a) == 10
    assert sorted(i for i, _ in draws) == list(range(10))  # a permutation
    assert len({s for _, s in draws}) == 10  # each draw its own sample seed
    b.set_epoch(3)
    assert list(b) != draws
    assert list(ResumableSampler(10, seed=4)) != list(ResumableSampler(10, seed=3))
    # 3 processes: every 3rd draw each, the list wrapped round to 12 (as DistributedSampler)
    shards = [ResumableSampler(10, seed=3, num_replicas=3, rank=r) for r in range(3)]
    for s in shards:
        s.set_epoch(2)
    assert [len(s) for s in shards] == [4, 4, 4]
    padded = draws + draws[:2]
    assert [list(s) for s in shards] == [padded[r::3] for r in range(3)]


def test_resumable_sampler_goes_on_mid_epoch_once():
    s = ResumableSampler(10, seed=0)
    s.set_epoch(1)
    full = list(s)
    r = ResumableSampler(10, seed=0)
    r.resume_at(1, 4)
    assert r.epoch == 1  # before Lightning's set_epoch: its workers fetch at once
    assert list(r) == full[4:]
    assert list(r) == full  # the next iteration of the epoch is a whole one
    r.resume_at(0, 4)
    r.set_epoch(1)  # another epoch than the saved one: nothing to skip
    assert list(r) == full
    r.resume_at(1, 99)
    assert list(r) == []


def test_resumable_sampler_draws_by_weight():
    w = torch.tensor([1.0, 3.0, 0.0, 6.0])
    s = ResumableSampler(4, seed=0, weights=w, num_samples=20000)
    counts = np.bincount([i for i, _ in s], minlength=4) / 20000
    np.testing.assert_allclose(counts, [0.1, 0.3, 0.0, 0.6], atol=0.015)
    huge = ResumableSampler(3, weights=[1e308, 1e308, 0.0], num_samples=100)
    assert {i for i, _ in huge} == {0, 1}  # their sum overflowed
    for bad in ([1.0, 2.0], [0.0, 0.0, 0.0, 0.0], [1.0, float("nan"), 1.0, 1.0],
                [1.0, -1.0, 1.0, 1.0]):
        with pytest.raises(DataError, match="sampler weights must be 4 finite values"):
            ResumableSampler(4, weights=bad)
