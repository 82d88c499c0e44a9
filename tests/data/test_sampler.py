import json

import numpy as np
import pytest
import torch

from zoomsr.data import S2NAIPDataset, load_tile_weights, weighted_sampler
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
