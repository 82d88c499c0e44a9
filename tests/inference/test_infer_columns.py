"""Wide scenes in column strips: the same bytes as one pass, resumable, bounded width."""

from __future__ import annotations

import pytest
from infer_helpers import write_frames
from test_infer_threads import _AsIfOnGPU

from zoomsr.inference import InferenceOptions, Tiling, run_inference
from zoomsr.inference.windows import WindowGrid, column_groups, group_span


def _opts(**kw) -> InferenceOptions:
    return InferenceOptions(tiling=kw.pop("tiling", Tiling(32, 8)), progress=False, **kw)


def test_groups_cover_each_column_once():
    grid = WindowGrid(50, 130, Tiling(32, 8))
    groups = column_groups(grid, 48)
    assert groups == [(0, 2), (2, 4), (4, 6)]  # xs = 0, 24, 48, 72, 96, 98
    spans = [group_span(grid, g) for g in groups]
    assert [(a, b) for a, b, _ in spans] == [(0, 48), (48, 96), (96, 130)]
    assert spans[1][2] == [1, 2, 3]  # window 1 (24..56) covers columns 48..55
    assert column_groups(grid, 0) == [(0, 6)]


@pytest.mark.parametrize(
    ("size", "tiling", "width", "extra"),
    [
        ((48, 130), Tiling(32, 8), 48, {}),
        ((40, 101), Tiling(32, 24), 10, {"uncertainty": 2, "save_lr": True}),  # heavy overlap
        ((60, 90), Tiling(16, 4), 24, {"threads": 3, "cog": True}),
        ((30, 70), Tiling(32, 8), 1, {"save_lr": True}),  # one window per group
    ],
)
def test_column_strips_write_the_same_bytes(tmp_path, tiny_model, size, tiling, width, extra):
    # nodata in 3 of 4 frames: some windows have fewer clean frames than the model takes,
    # and each group must count only the windows it owns
    holes = {0: (slice(5, 30), slice(20, 60)), 1: (slice(0, 20), slice(10, 50)),
             2: (slice(10, 40), slice(30, 70))}
    paths = write_frames(tmp_path / "in", n=4, size=size, holes=holes)
    model = tiny_model(2)
    whole = run_inference(paths, tmp_path / "whole.tif", model,
                          _opts(tiling=tiling, column_width=0, **extra))
    strips = run_inference(paths, tmp_path / "strips.tif", model,
                           _opts(tiling=tiling, column_width=width, **extra))
    assert (tmp_path / "whole.tif").read_bytes() == (tmp_path / "strips.tif").read_bytes()
    if extra.get("save_lr"):
        assert ((tmp_path / "whole.lr.tif").read_bytes()
                == (tmp_path / "strips.lr.tif").read_bytes())
    assert strips.windows_computed == whole.windows_computed == whole.windows
    assert strips.few_frame_windows == whole.few_frame_windows
    assert whole.few_frame_windows > 0


@pytest.mark.parametrize("stop_at", [1, 2, 3])  # in the first strip, at its end, in the next
def test_interrupted_strips_resume_byte_identical(tmp_path, tiny_model, stop_at):
    paths = write_frames(tmp_path / "in", n=3, size=(56, 100))
    model = tiny_model(2)
    clean = tmp_path / "clean.tif"
    run_inference(paths, clean, model, _opts(column_width=0))
    calls = []

    def stop(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == stop_at:
            raise KeyboardInterrupt

    out = tmp_path / "run.tif"
    with pytest.raises(KeyboardInterrupt):
        run_inference(paths, out, _AsIfOnGPU(model), _opts(column_width=48), on_row=stop)
    run_inference(paths, out, _AsIfOnGPU(model), _opts(column_width=48, resume=True))
    assert out.read_bytes() == clean.read_bytes()


def test_accumulators_stay_within_a_strip(tmp_path, tiny_model, monkeypatch):
    from zoomsr.inference import pipeline

    widths = []
    original = pipeline.RowChain.__init__

    def spy(self, windows, scale, channels, hr_width, *args):
        widths.append(hr_width)
        original(self, windows, scale, channels, hr_width, *args)

    monkeypatch.setattr(pipeline.RowChain, "__init__", spy)
    paths = write_frames(tmp_path / "in", n=2, size=(40, 200))
    run_inference(paths, tmp_path / "o.tif", tiny_model(2), _opts(column_width=48))
    assert len(widths) == 4 and max(widths) <= 56 * 4  # about 48 LR px, not 200
