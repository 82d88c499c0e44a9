import numpy as np
import pytest

from zoomsr.data.selection import black_pixel_mask, select_frames, valid_frames


def test_black_means_all_channels_zero():
    tci = np.full((3, 4, 4, 3), 9, np.uint8)
    tci[0, 1, 1] = (0, 0, 5)  # dark but not black
    tci[1, 2, 3] = 0
    assert black_pixel_mask(tci).sum() == 1
    np.testing.assert_array_equal(valid_frames(tci), [True, False, True])


def test_select_prefers_valid_and_is_sorted_and_seeded():
    valid = np.array([True, False, True, True, False, True])
    for seed in range(20):
        picks = select_frames(valid, 3, np.random.default_rng(seed))
        assert list(picks) == sorted(picks) and len(set(picks)) == 3
        assert valid[picks].all()
    a = select_frames(valid, 3, np.random.default_rng(1))
    b = select_frames(valid, 3, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    picks = select_frames(valid, 5, np.random.default_rng(0))
    assert set(np.flatnonzero(valid)) <= set(picks) and len(set(picks)) == 5


def test_short_series_and_errors():
    picks = select_frames(np.array([False, True]), 5, np.random.default_rng(0))
    assert len(picks) == 5 and set(picks) == {0, 1}
    assert np.bincount(picks).tolist() in ([2, 3], [3, 2])
    with pytest.raises(ValueError):
        select_frames(np.array([True]), 0, np.random.default_rng(0))
    with pytest.raises(ValueError):
        select_frames(np.array([], bool), 1, np.random.default_rng(0))
