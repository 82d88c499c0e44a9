"""Window tiling: the automatic window size, and bad tiling values."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from infer_helpers import write_frames

from zoomsr.errors import ConfigError
from zoomsr.inference import InferenceOptions, Tiling, run_inference
from zoomsr.inference.in_memory import super_resolve_array
from zoomsr.inference.windows import AUTO_WINDOWS, WindowGrid, windows_per_call


def _area(height: int, width: int, tiling: Tiling) -> int:
    return WindowGrid(height, width, tiling).covered_area


@pytest.mark.parametrize("overlap", [0, 16, 32, 64])
def test_auto_window_computes_the_least_area(overlap):
    sizes = [(h, w) for h in (1, 100, 129, 300, 500, 976, 1000, 2000, 11500)
             for w in (64, 700, 1936)]
    for h, w in sizes:
        chosen = WindowGrid(h, w, Tiling(overlap=overlap)).tiling
        assert chosen.window in AUTO_WINDOWS and chosen.overlap == overlap
        areas = {win: _area(h, w, Tiling(win, overlap)) for win in AUTO_WINDOWS}
        best = min(areas.values())
        assert areas[chosen.window] == best
        assert chosen.window == max(win for win, a in areas.items() if a == best)  # ties: larger
    # what the default saves over fixed 128 px windows on a 2000 px square scene: 27 % less area
    assert _area(2000, 2000, Tiling()) / _area(2000, 2000, Tiling(128)) == pytest.approx(
        0.735, abs=0.01)


def test_explicit_window_is_kept_and_auto_needs_for_scene():
    # 500 px, 128 px windows with 32 px overlap: starts 0, 96, ..., 372 -> 5 x 5 windows
    assert WindowGrid(500, 500, Tiling(128)).covered_area == (5 * 128) ** 2
    assert WindowGrid(2000, 2000, Tiling(128)).tiling.window == 128
    assert Tiling().for_scene(500, 500) == Tiling(192)
    with pytest.raises(ConfigError, match="automatic window"):
        _ = Tiling().stride
    with pytest.raises(ConfigError, match=r"0\.\.127 \(below the smallest automatic window, 128"):
        Tiling(overlap=128)  # must fit the smallest automatic window
    # a step of 1 px: 4096 times the work; 64 px windows
    # overlapping by 42 (the tiled == whole-image test's) stay allowed
    with pytest.raises(ConfigError, match=r"overlap 63 leaves a step of 1 px between windows "
                                          r"of 64 px: .* about 4096 times; use an overlap of "
                                          r"at most 56"):
        Tiling(64, 63, 0)
    assert Tiling(64, 56, 0).stride == 8 and Tiling(64, 42, 20).stride == 22
    with pytest.raises(ConfigError, match="window must be >= 1"):
        Tiling(0)


def test_chosen_window_is_recorded_in_the_output(tmp_path, tiny_model):
    paths = write_frames(tmp_path / "in", n=2, size=(300, 180))
    out = tmp_path / "sr.tif"
    result = run_inference(paths, out, tiny_model(2), InferenceOptions(progress=False))
    with rasterio.open(out) as ds:
        tiling = json.loads(ds.tags()["zoomsr_tiling"])
    # 300 x 180: 192 px windows cover it with 2 x 1 (128 px: 3 x 2, 256 px: 2 x 1 but larger)
    # (height, width) of the windows themselves: 180 px wide, the scene's width
    assert tiling == {"window": 192, "overlap": 32, "margin": 8, "window_used_px": [192, 180]}
    assert result.windows == 2


def test_auto_window_fits_the_models_size_multiple(tiny_model):
    """RRDBNet at scale 2 needs sides divisible by 2: a 151 px side cannot be one window."""
    assert WindowGrid(151, 140, Tiling()).tiling.window == 256  # one 151 x 140 window
    grid = WindowGrid(151, 140, Tiling(), multiple=2)
    assert grid.tiling.window == 128 and grid.win_h % 2 == 0 and grid.win_w % 2 == 0
    model = tiny_model(2, scale=2)
    assert model.size_multiple == 2 and tiny_model(2).size_multiple == 1
    frames = np.random.default_rng(0).random((2, 3, 151, 140), dtype=np.float32)
    out, mask = super_resolve_array(frames, model)
    assert out.shape == (3, 302, 280) and mask.all()


@pytest.mark.parametrize(("shape", "window"), [((101, 131), None), ((5, 7), None),
                                               ((1, 1), None), ((40, 70), 63)])
def test_sides_that_are_no_multiple_are_padded_for_the_model(tiny_model, shape, window):
    """A scale-2 RRDBNet (sides divisible by 2) on a scene whose odd side no window fits, or
    an odd --window: the model's input is padded (edge pixels repeated), its output cut back
    (it failed: "RRDBNet with scale=2 needs H and W divisible by 2, got 101x128")."""
    model = tiny_model(2, scale=2)
    frames = np.random.default_rng(1).random((2, 3, *shape), dtype=np.float32)
    out, mask = super_resolve_array(frames, model, Tiling(window, overlap=8)
                                    if window else Tiling(overlap=min(32, min(shape) // 2)))
    assert out.shape == (3, 2 * shape[0], 2 * shape[1]) and mask.all()
    assert np.isfinite(out).all()
    # the padded call equals the model on the edge-padded input, cut back
    import torch

    h, w = shape
    x = torch.as_tensor(frames[None])
    padded = torch.nn.functional.pad(x.reshape(1, 6, h, w), (0, w % 2, 0, h % 2),
                                     mode="replicate").reshape(1, 2, 3, h + h % 2, w + w % 2)
    whole = model.forward(padded)[..., : 2 * h, : 2 * w]
    np.testing.assert_allclose(model.forward(x), whole, atol=1e-6)


def test_windows_per_call_keep_the_pixels_of_8_small_windows():
    cases = (((2000, 2000), 1, 256, 2), ((500, 500), 1, 192, 3), ((40, 40), 1, 256, 81),
             ((151, 140), 2, 128, 8))
    for (h, w), multiple, window, per_call in cases:
        grid = WindowGrid(h, w, Tiling(), multiple)
        assert grid.tiling.window == window
        assert windows_per_call(8, Tiling(), grid) == per_call
        assert windows_per_call(8, Tiling(window), grid) == 8  # a window the user chose: as given


def test_resume_refusal_names_the_first_differing_entry():
    from zoomsr.inference.writer import _differences

    before = {"files": [["/d/a.tif", 10, 1700000000000000001], ["/d/b.tif", 20, 5]],
              "tiling": [128, 32, 8], "seed": 0}
    now = {"files": [["/d/a.tif", 10, 1700000000000000001], ["/d/b.tif", 20, 6]],
           "tiling": [192, 32, 8], "seed": 0}
    assert _differences(json.dumps(before), json.dumps(now)) == (
        "/d/b.tif changed since; --window/--overlap/--margin: was 128/32/8 px, now 192/32/8 px")
    now = {"files": [["/d/a.tif", 10, 1700000000000000001], ["/d/c.tif", 20, 5]],
           "tiling": [128, 32, 8], "seed": 1, "batch_size": 4, "model": {"config": {"n": 6}},
           "uncertainty": 2}
    before |= {"batch_size": 8, "model": {"config": {"n": 9}}, "uncertainty": 2}
    assert _differences(json.dumps(before), json.dumps(now)) == (
        "--batch-size (windows per model call): was 8, now 4; inputs: /d/b.tif no longer "
        "given; /d/c.tif added; model (config.n): was 9, now 6; --seed: was 0, now 1")
    # named as on the command line: SR3's sampling, and --precision's values (not the flag)
    sr3 = {"model": {"sampling": {"steps": 2, "seed": 0}}, "seed": 0, "autocast": False}
    other = {"model": {"sampling": {"steps": 3, "seed": 0}}, "seed": 0, "autocast": True}
    assert _differences(json.dumps(sr3), json.dumps(other)) == (
        "--precision: was fp32, now bf16; --sample-steps: was 2, now 3")
    other = {"model": {"sampling": {"steps": 2, "seed": 5}}, "seed": 5, "autocast": False}
    assert _differences(json.dumps(sr3), json.dumps(other)) == "--seed: was 0, now 5"  # once
    assert _differences("[1, 2]", "{}") == "its record is unreadable"
    assert _differences("not json", "{}") == "its record is unreadable"
    assert _differences(json.dumps({"a": [1]}), json.dumps({"a": [1, 2]})) == (
        "a: was [1], now [1, 2]")
    # a date added: counted, not the two lists of dates shortened to their first characters
    frame = {"bands": [1, 2, 3], "dn_offset": 0.0, "label": "S2A_29RKH_20200201_TCI.tif"}
    before = {"files": [["/d/a.tif", 1, 1]], "frames": [frame]}
    now = {"files": [["/d/a.tif", 1, 1], ["/d/b.tif", 1, 1]], "frames": [frame, frame]}
    assert _differences(json.dumps(before), json.dumps(now)) == (
        "inputs: /d/b.tif added; inputs: was 1 date(s), now 2")


def test_resume_refusal_names_the_options_that_read_the_frames():
    """A frame read with another --dn-offset, --rgb-bands or --radiometry was named by the
    record's fields ("inputs ([0].dn_offset): was 1000.0, now 0.0")."""
    from zoomsr.inference.writer import _differences

    frame = {"paths": ["/d/T1_20200101_B04.tif"], "bands": [1, 2, 3], "radiometry": "dn",
             "dn_offset": 1000.0}
    files = [["/d/T1_20200101_B04.tif", 1, 1]]

    def differences(**now: object) -> str:
        return _differences(json.dumps({"files": files, "frames": [frame]}),
                            json.dumps({"files": files, "frames": [frame | now]}))

    assert differences(dn_offset=0.0) == "--dn-offset: was 1000, now 0 (T1_20200101_B04.tif)"
    assert differences(bands=[3, 2, 1]) == (
        "--rgb-bands: was 1,2,3, now 3,2,1 (T1_20200101_B04.tif)")
    assert differences(radiometry="reflectance", dn_offset=0.0) == (
        "--radiometry: was dn, now reflectance (T1_20200101_B04.tif)")  # the first option
    b08 = {"path": "/d/T1_20200101_B08.tif", "band": 1, "radiometry": "dn", "dn_offset": 0.0}
    with_b08 = frame | {"extras": {"b08": b08}}
    assert _differences(
        json.dumps({"frames": [with_b08]}),
        json.dumps({"frames": [with_b08 | {"extras": {"b08": b08 | {"dn_offset": 1000.0}}}]}),
    ) == "--dn-offset: was 0, now 1000 (T1_20200101_B08.tif)"
    # another file at that place: the inputs' difference says it, not an option
    moved = {"files": [["/d/x.tif", 1, 1]], "frames": [frame | {"paths": ["/d/x.tif"],
                                                                 "dn_offset": 0.0}]}
    assert "--dn-offset" not in _differences(json.dumps({"files": files, "frames": [frame]}),
                                             json.dumps(moved))
    # inputs gone or added past the two named: counted
    many = {"files": [[f"/d/{k}.tif", 1, 1] for k in range(6)]}
    assert _differences(json.dumps(many), json.dumps({"files": []})) == (
        "inputs: /d/0.tif no longer given; /d/1.tif no longer given (and 4 more)")


def test_settings_that_change_no_pixel_do_not_stop_a_resume():
    """--seed without --uncertainty draws nothing, and a --column-width that makes the same
    strips places the same windows: both were refused when resuming a partial run (and taken
    when the output was finished), so a requeued job passed or failed by when it stopped."""
    from zoomsr.inference.writer import _comparable, _differences

    run = {"tiling": [128, 32, 8], "seed": 0, "uncertainty": 0, "column_width": 4096,
           "layout": {"strips": [[0, 3]]}}
    same = run | {"seed": 3, "column_width": 512}
    assert _comparable(json.dumps(run)) == _comparable(json.dumps(same))
    drawn = run | {"uncertainty": 2}
    assert _comparable(json.dumps(drawn)) != _comparable(json.dumps(drawn | {"seed": 3}))
    assert _differences(json.dumps(drawn), json.dumps(drawn | {"seed": 3})) == (
        "--seed: was 0, now 3")
    split = same | {"layout": {"strips": [[0, 1], [1, 3]]}}
    assert _comparable(json.dumps(run)) != _comparable(json.dumps(split))
    assert _differences(json.dumps(run), json.dumps(split)) == (
        "--column-width: was 4096, now 512")
    # refused for another reason: the harmless ones are not listed with it
    assert _differences(json.dumps(run), json.dumps(same | {"tiling": [192, 32, 8]})) == (
        "--window/--overlap/--margin: was 128/32/8 px, now 192/32/8 px")


def test_on_a_gpu_the_defaults_take_larger_calls_and_windows():
    """Left to the device: 8 windows (of 128 px) a call on a CPU; on a GPU 32, the pixels of
    the calls an H200 ran fastest, and 512 px windows among the automatic ones: with the
    default 32 px overlap a 3856 px scene's 256 px windows cover 1.43x its area, 512 px ones
    1.13x. What the user gives is kept."""
    import torch

    from zoomsr.inference.options import for_device
    from zoomsr.inference.windows import GPU_AUTO_WINDOWS

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert for_device(InferenceOptions(), cpu).batch_size == 8
    on_gpu = for_device(InferenceOptions(), gpu)
    assert on_gpu.batch_size == 32 and on_gpu.tiling.choices == GPU_AUTO_WINDOWS
    assert for_device(InferenceOptions(), torch.device("mps")).batch_size == 32
    assert for_device(InferenceOptions(), cpu).tiling.choices == AUTO_WINDOWS
    given = InferenceOptions(batch_size=3, tiling=Tiling(256))
    assert for_device(given, gpu) == given
    # a --window without --batch-size: on a GPU the pixels of 32 windows of 128 px a call
    # (32 windows of 512 px would be 16x the memory); on a CPU 8 windows, as always
    for window, batch in ((256, 8), (512, 2), (1024, 1), (64, 128)):
        assert for_device(InferenceOptions(tiling=Tiling(window, 16)), gpu).batch_size == batch
    assert for_device(InferenceOptions(tiling=Tiling(512, 16)), cpu).batch_size == 8
    mine = Tiling(choices=(160,))
    assert for_device(InferenceOptions(tiling=mine), gpu).tiling == mine
    cpu_grid = WindowGrid(3856, 3856, Tiling())
    gpu_grid = WindowGrid(3856, 3856, on_gpu.tiling)
    assert (cpu_grid.tiling.window, gpu_grid.tiling.window) == (256, 512)
    ratios = [g.covered_area / 3856**2 for g in (cpu_grid, gpu_grid)]
    assert ratios == [pytest.approx(1.428, abs=0.001), pytest.approx(1.128, abs=0.001)]
    # the same pixels a call: 32 windows of 128 px = 8 of 256 px = 2 of 512 px
    assert windows_per_call(32, on_gpu.tiling, gpu_grid) == 2
    assert windows_per_call(8, Tiling(), cpu_grid) == 2


@pytest.mark.parametrize("choices", [(), (0, 128), (128.0,)])
def test_bad_window_choices_are_refused(choices):
    with pytest.raises(ConfigError, match="automatic window choices must be sizes >= 1 LR px"):
        Tiling(choices=choices)


def test_super_resolve_array_takes_the_device_default_batch(tiny_model):
    """``batch_size=None`` (its default now) is the device's, as for a scene run; it failed
    deep inside with a TypeError when the options' check let None through."""
    rng = np.random.default_rng(0)
    pixels = rng.random((2, 3, 40, 40), dtype=np.float32)
    model = tiny_model(2)
    a, mask = super_resolve_array(pixels, model, Tiling(32, 8))
    b, _ = super_resolve_array(pixels, model, Tiling(32, 8), batch_size=8)
    assert np.array_equal(a, b) and mask.all()
