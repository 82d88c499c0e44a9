"""--uncertainty K: spread over frame subsets flags content present in some dates only."""

from __future__ import annotations

import numpy as np
import pytest

from zoomsr.errors import ConfigError
from zoomsr.inference import InferenceOptions, Tiling, run_inference
from zoomsr.inference.in_memory import super_resolve_array
from zoomsr.inference.uncertainty import subset_frames


def test_subsets_are_deterministic_and_distinct():
    scores = np.zeros(6, dtype=int)
    a = subset_frames(scores, 2, 4, (0, 1, 2))
    b = subset_frames(scores, 2, 4, (0, 1, 2))
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    assert len({tuple(x) for x in a}) > 1 and all(len(set(x)) == 2 for x in a)
    assert subset_frames(scores, 2, 0, (0,)) == []
    # frames with nodata in the window are left out while enough clean ones exist
    scores = np.array([0, 5, 0, 0, 9])
    assert all(4 not in x and 1 not in x for x in subset_frames(scores, 2, 5, (1,)))


def test_transient_object_raises_the_spread(tiny_model):
    rng = np.random.default_rng(0)
    base = rng.random((3, 48, 48), dtype=np.float32) * 0.5 + 0.2
    frames = np.repeat(base[None], 5, axis=0)
    frames[0, :, 20:26, 20:26] = 0.9  # a bright "vessel" in one date only (not saturated)
    model = tiny_model(2)
    tiling = Tiling(window=48, overlap=8)
    out, _ = super_resolve_array(frames, model, tiling, uncertainty=4, seed=0)
    spread = out[3]
    assert spread[80:104, 80:104].max() > 1e-3
    assert spread[:20, :20].max() < 1e-6 and spread[150:, 150:].max() < 1e-6  # far from it
    plain, _ = super_resolve_array(frames, model, tiling)
    np.testing.assert_allclose(out[:3], plain, atol=1e-5)  # the image itself does not change


def test_uncertainty_needs_more_frames_than_the_model(frames_3857, tiny_model, tmp_path):
    opts = InferenceOptions(uncertainty=2, progress=False, tiling=Tiling(32, 8))
    with pytest.raises(ConfigError, match="more frames than the model takes"):
        run_inference(frames_3857, tmp_path / "o.tif", tiny_model(3), opts)
    with pytest.raises(ConfigError, match="K >= 2"):
        InferenceOptions(uncertainty=1)
    with pytest.raises(ConfigError, match="seed must be >= 0, got -1"):
        InferenceOptions(uncertainty=2, seed=-1)  # it failed as a runtime ValueError


def test_uncertainty_needs_more_dates_with_data_than_the_model(tmp_path, tiny_model):
    """2 dates, one all nodata, a 1-image model: the empty date was gap-filled from the other,
    every subset was the same, and band 4 was all 0 (which reads as certain)."""
    import warnings

    from infer_helpers import write_frames

    paths = write_frames(tmp_path / "in", n=2, size=(24, 24),
                         holes={1: (slice(0, 24), slice(0, 24))})
    opts = InferenceOptions(uncertainty=3, progress=False, tiling=Tiling(32, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "this date adds nothing"
        with pytest.raises(ConfigError, match=r"more dates with data than the model takes "
                                              r"\(1\); 1 of the 2 dates hold no valid pixel "
                                              rf"\(e.g. {paths[1]}\)"):
            run_inference(paths, tmp_path / "o.tif", tiny_model(1), opts)
    assert not (tmp_path / "o.tif").exists()


def test_the_subsets_of_a_window_are_distinct():
    """Drawn independently, two subsets could be the same dates (2 dates, a 1-image model:
    half the windows), and the band read 0, "certain", there."""
    for key in range(50):
        pair = subset_frames(np.zeros(2), 1, 2, (0, key, 0))
        assert {int(s[0]) for s in pair} == {0, 1}
        nine = subset_frames(np.zeros(9), 8, 9, (0, key, 1))  # every subset of 8 of 9, once
        assert len({tuple(s) for s in nine}) == 9
        many = subset_frames(np.zeros(30), 8, 6, (0, key, 2))  # drawn: no repeat either
        assert len({tuple(s) for s in many}) == 6 and all(len(set(s)) == 8 for s in many)
    # more subsets than there are: each once, then again (the spread is over distinct ones)
    three = subset_frames(np.zeros(3), 2, 5, (1,))
    assert len({tuple(s) for s in three}) == 3
    again = zip(subset_frames(np.zeros(9), 8, 4, (7,)), subset_frames(np.zeros(9), 8, 4, (7,)),
                strict=True)
    assert all(np.array_equal(a, b) for a, b in again)


def test_subsets_at_a_scene_edge_come_from_the_frames_clean_where_others_are_usable():
    """A corner no date covers made every frame unclean (scores 4, 5, 4, 4): the subsets were
    drawn from all frames, the one with its own gap too, unlike inside the scene."""
    from zoomsr.inference.frames import clean_scores

    pixels = np.full((4, 3, 8, 8), 0.3, np.float32)
    valid = np.ones((4, 8, 8), bool)
    valid[:, :2, :2] = False  # no date here
    valid[1, 5, 5] = False  # frame 1's own gap
    rel = clean_scores(pixels, valid, None, [(0, 8)])[0]
    assert rel.tolist() == [0, 1, 0, 0]
    scores = np.array([4, 5, 4, 4])
    for key in range(20):  # 2 of the 3 clean frames
        drawn = subset_frames(scores, 2, 2, (key,), clean=rel)
        assert all(1 not in s for s in drawn)
    # by the plain scores no frame is clean: all four (the 2n best-ranked) were the pool
    assert any(1 in s for key in range(20) for s in subset_frames(scores, 2, 2, (key,)))


def test_more_subsets_than_there_are_among_many_do_not_hang(monkeypatch):
    """Past the enumerated sizes, subsets were drawn until K distinct ones were found: a K
    above C(pool, n) (--uncertainty 7000 with 15 clean dates and a 7-image model) never
    ended. Now each is used once before any is used again, as when enumerated."""
    import threading

    from zoomsr.inference import uncertainty

    monkeypatch.setattr(uncertainty, "_ENUMERATED", 2)  # C(4, 2) = 6 subsets: drawn
    got: list[list[np.ndarray]] = []
    worker = threading.Thread(target=lambda: got.append(subset_frames(np.zeros(4), 2, 8, (3,))),
                              daemon=True)
    worker.start()
    worker.join(10)
    assert got, "subset_frames did not return"
    drawn = [tuple(s.tolist()) for s in got[0]]
    assert len(drawn) == 8 and len(set(drawn[:6])) == 6 and all(len(set(s)) == 2 for s in drawn)
    assert drawn == [tuple(s.tolist()) for s in subset_frames(np.zeros(4), 2, 8, (3,))]


def test_band_4_is_undetermined_where_too_few_dates_are_usable(tmp_path, tiny_model):
    """Where one date alone has data (a swath edge), every subset saw the same date (the
    others gap-filled from it) and band 4 read 0, "certain"; it is 255 there now, and the
    spread where 3 dates cover, as before."""
    import rasterio
    from infer_helpers import write_frames

    paths = write_frames(tmp_path / "in", n=3, size=(48, 48),
                         holes={1: (slice(0, 48), slice(24, 48)),
                                2: (slice(0, 48), slice(24, 48))})
    opts = InferenceOptions(uncertainty=2, progress=False, tiling=Tiling(32, 8))
    run_inference(paths, tmp_path / "o.tif", tiny_model(1), opts)
    with rasterio.open(tmp_path / "o.tif") as ds:
        band4, mask = ds.read(4), ds.dataset_mask()
        assert "255 where fewer than 2 dates are usable" in ds.tags()["zoomsr_uncertainty"]
    assert mask.all()
    assert (band4[:, 30 * 4:] == 255).all()  # date 0 alone
    assert band4[:, : 18 * 4].max() < 255 and band4[:, : 18 * 4].any()  # 3 dates: measured
