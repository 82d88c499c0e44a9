"""Scene inference on a CUDA GPU: fp32 matches the CPU, bf16 autocast stays close (GPU only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from infer_helpers import TINY, read, write_frames

from zoomsr.inference import InferenceOptions, Tiling, build_inference_model, run_inference

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _model(device: str, precision: str, **kw):
    cfg = {**TINY, "num_in_ch": 6}
    return build_inference_model(model="rrdbnet", config=cfg, random_weights=True,
                                 device=device, precision=precision, seed=3, **kw)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_cuda_model_is_channels_last_with_bf16_autocast_by_default():
    m = _model("cuda", "auto")
    assert m.device.type == "cuda" and m.autocast
    weight = next(p for p in m.module.parameters() if p.ndim == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    out = m.forward(np.random.default_rng(0).random((2, 2, 3, 24, 20), dtype=np.float32))
    assert out.shape == (2, 3, 96, 80) and out.dtype == np.float32 and np.isfinite(out).all()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_scene_on_gpu_matches_cpu(tmp_path, precision):
    hole = {0: (slice(0, 20), slice(0, 30))}
    paths = write_frames(tmp_path / "in", n=3, size=(72, 88), holes=hole)
    opts = dict(tiling=Tiling(window=48, overlap=8), progress=False, batch_size=3)
    cpu = run_inference(paths, tmp_path / "cpu.tif", _model("cpu", "fp32"),
                        InferenceOptions(**opts))
    gpu = run_inference(paths, tmp_path / "gpu.tif", _model("cuda", precision),
                        InferenceOptions(**opts))
    a, mask_a, meta_a = read(cpu.output)
    b, mask_b, meta_b = read(gpu.output)
    assert meta_a["transform"] == meta_b["transform"] and meta_a["crs"] == meta_b["crs"]
    assert np.array_equal(mask_a, mask_b)
    if precision == "fp32":
        # TF32 may be on for convolutions: allow one grey level, on a few pixels
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    else:
        assert _psnr(a, b) > 35.0, _psnr(a, b)


def _strips(reader, window):
    try:
        on_gpu = [None if t is None else t.cpu() for t in
                  reader.read_strip(window, torch.device("cuda"))]
        on_cpu = reader.read_strip(window, torch.device("cpu"))
    finally:
        reader.close()
    return on_gpu, on_cpu


def test_strip_prepared_on_the_gpu_matches_the_cpu(tmp_path):
    """uint16 DN (they travel as int16 bits, pinned) with holes, through the warp path: the
    GPU's scaling within float rounding of the CPU's, validity exact."""
    from rasterio.windows import Window

    from zoomsr.inference import discover_frames
    from zoomsr.inference.grid import plan_grid
    from zoomsr.inference.reader import SceneReader

    holes = {0: (slice(0, 10), slice(0, 20))}
    paths = write_frames(tmp_path / "in", n=3, size=(32, 40), crs="EPSG:32631",
                         dtype="uint16", holes=holes)
    frames = discover_frames(paths, dn_offset=1000.0).frames
    grid = plan_grid(frames, 4)
    (px_g, valid_g, _), (px_c, valid_c, _) = _strips(
        SceneReader(frames, grid), Window(0, 0, grid.width, grid.height))
    assert torch.equal(valid_g, valid_c) and (~valid_c).any()
    torch.testing.assert_close(px_g, px_c, rtol=0, atol=1e-6)


def test_real_l2a_strip_with_scl_on_the_gpu(shared_dir, tmp_path):
    from infer_helpers import REAL_S2, crop_real_scene
    from rasterio.windows import Window

    from zoomsr.inference import discover_frames
    from zoomsr.inference.grid import plan_grid
    from zoomsr.inference.reader import SceneReader

    folder = crop_real_scene(shared_dir / REAL_S2, tmp_path / "29RKH", col=492, row=0)
    frame = discover_frames(folder, extra_bands=("b08",)).frames[0]
    grid = plan_grid([frame], 4, native=True)
    (px_g, valid_g, cloudy_g), (px_c, valid_c, cloudy_c) = _strips(
        SceneReader([frame], grid), Window(0, 0, 24, 24))
    assert torch.equal(valid_g, valid_c) and torch.equal(cloudy_g, cloudy_c)
    assert 0.1 < cloudy_c.float().mean() < 0.7
    torch.testing.assert_close(px_g, px_c, rtol=0, atol=1e-6)


def test_three_row_threads_on_the_gpu_match_one_thread(tmp_path):
    """3 row threads preparing and blending rows on the GPU give one thread's output."""
    paths = write_frames(tmp_path / "in", n=3, size=(120, 88), holes={1: (slice(0, 30),
                                                                         slice(0, 40))})
    model = _model("cuda", "fp32")
    outs = []
    for threads in (1, 3):
        opts = InferenceOptions(tiling=Tiling(window=32, overlap=8), progress=False,
                                batch_size=2, threads=threads)
        outs.append(read(run_inference(paths, tmp_path / f"t{threads}.tif", model, opts).output))
    (a, mask_a, _), (b, mask_b, _) = outs
    assert np.array_equal(mask_a, mask_b)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_gpu_row_synchronises_only_in_its_one_transfer(tmp_path, monkeypatch, precision):
    """With CUDA's sync debug mode set to "error", reading, preparing (uint16 through pinned
    memory), choosing frames, the model, blending and finishing a row make no synchronising
    call (blocking copies either way, ``.item()``, ...), except in :func:`to_host`, once."""
    from rasterio.windows import Window  # noqa: F401  (rasterio before the mode is set)

    from zoomsr.inference import assemble, discover_frames, rows
    from zoomsr.inference.arrays import to_host
    from zoomsr.inference.grid import plan_grid
    from zoomsr.inference.reader import SceneReader
    from zoomsr.inference.windows import WindowGrid

    paths = write_frames(tmp_path / "in", n=4, size=(48, 64), crs="EPSG:32631",
                         dtype="uint16", holes={0: (slice(0, 10), slice(0, 20))})
    frames = discover_frames(paths, dn_offset=1000.0).frames
    grid = plan_grid(frames, 4)
    windows = WindowGrid(grid.height, grid.width, Tiling(window=32, overlap=8))
    model = _model("cuda", precision)
    plan = rows.ScenePlan(SceneReader(frames, grid), grid, windows, 2, 2, 0, 0)
    cuda = torch.device("cuda")
    transfers = []

    def allowed(*xs):
        mode = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode(0)
        try:
            return to_host(*xs)
        finally:
            transfers.append(len(xs))
            torch.cuda.set_sync_debug_mode(mode)

    monkeypatch.setattr(rows, "to_host", allowed)
    monkeypatch.setattr(assemble, "to_host", allowed)

    def rows_of(local: bool) -> list:
        # local: linked in order and finished on the GPU (RowChain); else as a Ray worker does
        chain = assemble.RowChain(windows, model.scale, 3, grid.hr_width)
        out = []
        for r in range(windows.n_rows):
            res = rows.compute_row(plan, model, r, cuda)
            if local:
                chain.link(res)
                block, _, few, _, _ = chain.finish(res, with_lr=True)
                out.append((block, few))
            else:
                ready = assemble.prepare_row(res, windows, model.scale, with_lr=True)
                out.append((ready.interior, ready.few_frames))
        return out

    try:
        for local in (True, False):
            warm = rows_of(local)  # first calls may sync (cuDNN, caches)
            transfers.clear()
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                again = rows_of(local)
            finally:
                torch.cuda.set_sync_debug_mode(0)
            assert len(transfers) == windows.n_rows  # one per row
            transfers.clear()
            for (a, fa), (b, fb) in zip(warm, again, strict=True):
                assert np.array_equal(a, b) and fa == fb
    finally:
        plan.reader.close()


def test_sr3_sampling_on_gpu_follows_the_cpu():
    """SR3 (DDIM, the noise seeded per window on the host) on the GPU: fp32 close to the CPU,
    bf16 autocast finite and near it."""
    sr3 = {"in_channels": 6, "scale": 4, "base_channels": 8, "channel_mults": (1, 2),
           "num_res_blocks": 1, "attn_levels": (), "num_timesteps": 20}
    lr = np.random.default_rng(0).random((2, 2, 3, 16, 16), dtype=np.float32)
    outs = {}
    for device, precision in (("cpu", "fp32"), ("cuda", "fp32"), ("cuda", "bf16")):
        m = build_inference_model(model="sr3", config=sr3, random_weights=True, device=device,
                                  precision=precision, seed=3, sample_steps=4)
        outs[device, precision] = m.forward(lr)
    ref = outs["cpu", "fp32"]
    assert np.abs(outs["cuda", "fp32"] - ref).max() < 1e-3
    bf16 = outs["cuda", "bf16"]
    assert np.isfinite(bf16).all() and np.abs(bf16 - ref).mean() < 0.05


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_graphs_replay_what_the_eager_forward_computes(precision):
    """A shape is captured on its second call, replayed after; every output as the same
    model without graphs gives it."""
    graphed = _model("cuda", precision, cuda_graphs=True)
    eager = build_inference_model(model="rrdbnet", config={**TINY, "num_in_ch": 6},
                                  random_weights=True, device="cuda", precision=precision,
                                  seed=3, cuda_graphs=False)
    assert graphed.cuda_graphs and not eager.cuda_graphs
    rng = np.random.default_rng(1)
    xs = [rng.random((3, 2, 3, 24, 20), dtype=np.float32) for _ in range(4)]
    xs.append(rng.random((1, 2, 3, 24, 20), dtype=np.float32))  # another shape, seen once
    for x in xs:
        a, b = graphed.forward(x), eager.forward(x)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 if precision == "fp32" else 2e-2)
    assert graphed._graphs.captured == 1 and graphed._graphs.disabled is None


def test_a_cuda_graph_shared_by_threads_gives_each_call_its_own_values():
    import threading

    model = _model("cuda", "bf16", cuda_graphs=True)
    rng = np.random.default_rng(2)
    xs = [[rng.random((2, 2, 3, 16, 16), dtype=np.float32) for _ in range(6)]
          for _ in range(4)]
    want = [[model.forward(x) for x in row] for row in xs]  # captured on the 2nd call
    got: dict[int, list] = {}

    def work(k: int) -> None:
        got[k] = [model.forward_device(x) for x in xs[k]]  # left on the device, unsynchronised

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        for a, b in zip(got[k], want[k], strict=True):  # (want[k][0] ran eagerly)
            np.testing.assert_allclose(a.cpu().numpy(), b, rtol=0, atol=2e-2)


@pytest.mark.parametrize("uncertainty", [0, 2])
def test_scene_with_cuda_graphs_matches_without(tmp_path, monkeypatch, uncertainty):
    """3 row threads; 4 windows a row in batches of 3 (with 2 uncertainty subsets: 12
    inputs, 4 batches): the full and the last batch's shapes are captured before the rows
    start and replayed, the graphs dropped at the end; the output as without graphs."""
    from zoomsr.inference import graphs as graphs_module

    paths = write_frames(tmp_path / "in", n=4, size=(120, 88), holes={1: (slice(0, 30),
                                                                         slice(0, 40))})
    opts = InferenceOptions(tiling=Tiling(window=32, overlap=8), progress=False, batch_size=3,
                            threads=3, uncertainty=uncertainty)
    replays: list[int] = []
    real_call = graphs_module.GraphedForward.__call__

    def counted(self, x):  # noqa: ANN001, ANN202
        replays.append(int(graphs_module._key(x) in self._graphs))
        assert self.disabled is None
        return real_call(self, x)

    monkeypatch.setattr(graphs_module.GraphedForward, "__call__", counted)
    outs = []
    for use in (True, False):
        m = _model("cuda", "auto", cuda_graphs=use)
        for shape in ((5, 2, 3, 16, 16), (6, 2, 3, 8, 8)) if use else ():
            for _ in range(2):  # two graphs of other shapes, before the scene: dropped by it
                m.forward(np.zeros(shape, np.float32))
        replays.clear()  # the scene's calls only
        outs.append(read(run_inference(paths, tmp_path / f"g{use}.tif", m, opts).output))
        assert m._graphs is None  # released at the scene's end
        if use:
            # every call replayed a graph prepared before the rows
            assert replays and all(replays), replays
            assert m.graphs_report["disabled"] is None
            assert m.graphs_report["replays"] == len(replays)
    assert not replays  # (cleared before the run without graphs, which makes none)
    (a, mask_a, _), (b, mask_b, _) = outs
    assert np.array_equal(mask_a, mask_b)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_a_model_that_waits_for_the_device_runs_without_graphs_after_a_warning():
    """A forward with a host synchronisation cannot be captured: graphs are turned off for
    that model, with a warning, and every call still gives the eager values."""
    from zoomsr.inference import InferenceModel

    class Syncing(torch.nn.Module):
        name = "syncing"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            gain = 1.0 + float(x.mean() > 2)  # .item(): waits for the device
            return torch.nn.functional.interpolate(x[:, :3] * gain, scale_factor=4)

    m = InferenceModel(Syncing(), "syncing", 2, "stacked", 4, "none", "",
                       torch.device("cuda"), cuda_graphs=True)
    x = np.random.default_rng(3).random((2, 2, 3, 8, 8), dtype=np.float32)
    m.forward(x)
    with pytest.warns(RuntimeWarning, match="CUDA graph capture failed"):
        out = m.forward(x)
    assert m._graphs.disabled and m._graphs.captured == 0
    want = np.repeat(np.repeat(x[:, 0], 4, axis=-2), 4, axis=-1)
    np.testing.assert_allclose(out, want, atol=1e-6)
    np.testing.assert_allclose(m.forward(x), want, atol=1e-6)
    torch.cuda.synchronize()  # the device is still usable
