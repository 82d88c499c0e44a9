"""CUDA graphs of the model's forward: when shapes are captured, what a call returns, the
defaults and refusals. The capture itself needs a GPU (tests/inference/test_infer_gpu.py);
here it is replaced by a stand-in whose replay runs the forward on the graph's own buffers,
so the bookkeeping around it (the same code) is what is tested."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch
from infer_helpers import TINY

from zoomsr.errors import ConfigError
from zoomsr.inference import build_inference_model, graphs
from zoomsr.inference.model import graphs_requested, use_cuda_graphs


class _Replay:
    """Stands in for a CUDA graph: replay() recomputes the output buffer from the input's."""

    def __init__(self, run, inputs: torch.Tensor, output: torch.Tensor) -> None:
        self.run, self.inputs, self.output = run, inputs, output
        self.replays = 0

    def replay(self) -> None:
        self.output.copy_(self.run(self.inputs))
        self.replays += 1


class _Fake(graphs.GraphedForward):
    def __init__(self, run, limit: int = graphs.MAX_GRAPHS, fail: bool = False) -> None:
        super().__init__(run, limit)
        self.fail = fail
        self.plain = run
        self.captures: list[tuple] = []
        self.eager = 0

        def counted(x: torch.Tensor) -> torch.Tensor:
            self.eager += 1
            return run(x)

        self._run = counted

    def _capture(self, x):  # noqa: ANN001, ANN202
        self.captures.append(tuple(x.shape))
        if self.fail:
            self.disabled = "RuntimeError: stand-in failure"
            return None
        inputs = x.clone()
        output = self.plain(inputs)
        graph = graphs._Graph(_Replay(self.plain, inputs, output), inputs, output)
        self._graphs[graphs._key(x)] = graph
        return graph


def _double(x: torch.Tensor) -> torch.Tensor:
    return (x * 2).to(torch.bfloat16)


def test_a_shape_is_captured_on_its_second_call_and_replayed_after():
    g = _Fake(_double)
    x = torch.arange(12.0).reshape(3, 4)
    first = g(x)
    assert g.captures == [] and g.eager == 1 and g.captured == 0
    second = g(x + 1)
    assert g.captures == [(3, 4)] and g.captured == 1
    third = g(x + 2)
    assert g.eager == 1 and g.captures == [(3, 4)]  # replayed, not captured again
    for out, offset in ((first, 0), (second, 1), (third, 2)):
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, (x + offset) * 2)


def test_outputs_are_copies_that_the_next_replay_does_not_overwrite():
    g = _Fake(_double)
    x = torch.ones(2, 2)
    g(x)
    a = g(x)        # captured
    b = g(x * 5)    # replayed into the same buffers
    torch.testing.assert_close(a, torch.full((2, 2), 2.0))
    torch.testing.assert_close(b, torch.full((2, 2), 10.0))
    assert a.data_ptr() != b.data_ptr()


def test_other_strides_and_dtypes_are_other_shapes():
    g = _Fake(lambda x: x + 1)
    x = torch.zeros(2, 3, 4, 4)
    g(x)
    g(x.contiguous(memory_format=torch.channels_last))  # same shape, other strides
    assert g.captures == []
    g(x.double())
    assert g.captures == []


def test_at_most_limit_shapes_are_captured_others_run_eagerly():
    g = _Fake(lambda x: x * 3, limit=2)
    for size in (2, 3, 4):
        for _ in range(3):
            out = g(torch.ones(size))
            torch.testing.assert_close(out, torch.full((size,), 3.0))
    assert g.captures == [(2,), (3,)]
    assert g.eager == 2 + 3  # the first call of each captured shape, every call of the third


def test_a_failed_capture_turns_graphs_off_and_calls_go_on_eagerly():
    g = _Fake(lambda x: x - 1, fail=True)
    outs = [g(torch.full((2,), float(i))) for i in range(4)]
    assert g.captures == [(2,)] and g.disabled and g.captured == 0
    assert g.eager == 4  # the failed capture's call too
    for i, out in enumerate(outs):
        torch.testing.assert_close(out, torch.full((2,), i - 1.0))
    g(torch.ones(5))
    g(torch.ones(5))
    assert g.captures == [(2,)]  # no capture tried again


def test_threads_sharing_a_graph_each_get_their_own_values():
    g = _Fake(lambda x: x * x)
    g(torch.zeros(64))
    g(torch.zeros(64))
    errors: list[str] = []

    def work(k: int) -> None:
        for i in range(50):
            x = torch.full((64,), float(k * 100 + i))
            out = g(x)
            if not torch.equal(out, x * x):
                errors.append(f"thread {k} call {i}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and g.captured == 1


def test_graphs_are_off_unless_asked_for_by_argument_or_environment(monkeypatch):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.delenv("ZOOMSR_CUDA_GRAPHS", raising=False)
    assert not use_cuda_graphs(None, cuda, diffusion=False)
    assert use_cuda_graphs(True, cuda, diffusion=False)
    for value in ("1", "on", "True"):
        monkeypatch.setenv("ZOOMSR_CUDA_GRAPHS", value)
        assert use_cuda_graphs(None, cuda, diffusion=False)
        assert not use_cuda_graphs(None, cuda, diffusion=True)  # where they can run only
        assert not use_cuda_graphs(None, cpu, diffusion=False)
        assert not use_cuda_graphs(False, cuda, diffusion=False)  # the argument wins
        assert graphs_requested(None)
    for value in ("0", "off", ""):
        monkeypatch.setenv("ZOOMSR_CUDA_GRAPHS", value)
        assert not use_cuda_graphs(None, cuda, diffusion=False) and not graphs_requested(None)
    monkeypatch.setenv("ZOOMSR_CUDA_GRAPHS", "maybe")
    with pytest.raises(ConfigError, match="ZOOMSR_CUDA_GRAPHS=maybe: expected 1"):
        build_inference_model(model="rrdbnet", config={**TINY, "num_in_ch": 6},
                              random_weights=True, device="cpu")


def test_the_request_is_kept_for_ray_workers_on_other_devices(monkeypatch):
    from zoomsr.inference.distributed import _model_spec

    monkeypatch.setenv("ZOOMSR_CUDA_GRAPHS", "1")
    cfg = {**TINY, "num_in_ch": 6}
    m = build_inference_model(model="rrdbnet", config=cfg, random_weights=True, device="cpu")
    assert not m.cuda_graphs and m.graphs_requested and _model_spec(m)["cuda_graphs"]
    monkeypatch.delenv("ZOOMSR_CUDA_GRAPHS")
    m = build_inference_model(model="rrdbnet", config=cfg, random_weights=True, device="cpu",
                              cuda_graphs=False)
    assert not _model_spec(m)["cuda_graphs"]


@pytest.mark.parametrize(("diffusion", "device", "message"), [
    (False, "cpu", "need a CUDA device"), (True, "cuda", "not to sr3"),
])
def test_graphs_asked_for_where_they_cannot_run_are_refused(diffusion, device, message):
    with pytest.raises(ConfigError, match=message):
        use_cuda_graphs(True, torch.device(device), diffusion)


def test_a_cpu_model_asked_for_graphs_is_refused_and_by_default_has_none():
    cfg = {**TINY, "num_in_ch": 6}
    with pytest.raises(ConfigError, match="CUDA graphs need a CUDA device"):
        build_inference_model(model="rrdbnet", config=cfg, random_weights=True, device="cpu",
                              cuda_graphs=True)
    m = build_inference_model(model="rrdbnet", config=cfg, random_weights=True, device="cpu")
    assert not m.cuda_graphs
    out = m.forward(np.zeros((1, 2, 3, 8, 8), np.float32))
    assert out.shape == (1, 3, 32, 32) and m._graphs is None


def test_prepare_captures_shapes_now_and_no_call_captures_after():
    g = _Fake(lambda x: x + 2)
    assert g.prepare(torch.zeros(2, 3), torch.zeros(1, 3)) == 2  # unseen: warm-up, capture
    assert g.eager == 2 and g.captures == [(2, 3), (1, 3)] and not g.capture_on_call
    torch.testing.assert_close(g(torch.ones(2, 3)), torch.full((2, 3), 3.0))
    torch.testing.assert_close(g(torch.ones(1, 3)), torch.full((1, 3), 3.0))
    assert g.eager == 2  # replayed
    for _ in range(3):
        g(torch.ones(4))  # another shape: eager every time, never captured
    assert g.captures == [(2, 3), (1, 3)] and g.eager == 5


def test_prepare_stops_at_the_limit_and_a_seen_shape_needs_no_warm_up():
    g = _Fake(lambda x: x, limit=1)
    g(torch.zeros(3))
    assert g.prepare(torch.zeros(3), torch.zeros(2)) == 1
    assert g.eager == 1 and g.captures == [(3,)]


def test_a_failed_warm_up_turns_graphs_off_and_calls_go_on():
    def run(x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 4:
            raise RuntimeError("CUDA out of memory")
        return x * 2

    g = _Fake(run)
    with pytest.warns(RuntimeWarning, match="runs without graphs: RuntimeError: CUDA out"):
        assert g.prepare(torch.zeros(8)) == 0
    assert g.disabled and g.captures == []
    torch.testing.assert_close(g(torch.ones(2)), torch.full((2,), 2.0))


def test_a_call_that_fails_does_not_warm_its_shape_up():
    calls = []

    def run(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("bad input")
        return x

    g = _Fake(run)
    with pytest.raises(ValueError, match="bad input"):
        g(torch.zeros(2))
    g(torch.zeros(2))  # its first call that worked: eager, not a capture
    assert g.captures == []
    g(torch.zeros(2))
    assert g.captures == [(2,)]


def test_prepare_of_a_seen_shape_reports_a_failed_capture():
    g = _Fake(lambda x: x, fail=True)
    g(torch.zeros(3))
    assert g.prepare(torch.zeros(3)) == 0
    assert g.eager == 1 and g.captures == [(3,)] and g.disabled


@pytest.mark.parametrize(("width", "batch", "k", "sizes"), [
    (88, 3, 0, [3, 1]),      # 4 windows a row: a batch of 3, then 1
    (88, 3, 2, [3]),         # 4 windows x 3 inputs: 4 batches of 3
    (40, 8, 0, [2]),         # 2 windows a row, fewer than a batch
    (200, 3, 0, [3, 2]),     # 8 windows: 2 batches of 3, then 2
])
def test_batch_sizes_are_those_the_rows_call_the_model_with(width, batch, k, sizes):
    from zoomsr.inference import Tiling
    from zoomsr.inference.rows import RowPart, ScenePlan, batch_sizes
    from zoomsr.inference.windows import WindowGrid

    grid = WindowGrid(64, width, Tiling(window=32, overlap=8))
    plan = ScenePlan(None, None, grid, 2, batch, k, 0)
    assert batch_sizes([RowPart(plan, range(grid.n_rows))]) == sizes


def test_column_strips_add_their_own_last_batches():
    from zoomsr.inference import Tiling
    from zoomsr.inference.rows import RowPart, ScenePlan, batch_sizes
    from zoomsr.inference.windows import WindowGrid, column_groups

    grid = WindowGrid(64, 400, Tiling(window=32, overlap=8))
    plan = ScenePlan(None, None, grid, 2, 4, 0, 0)
    groups = column_groups(grid, 200)
    assert len(groups) > 1
    parts = [RowPart(dataclasses.replace(plan, columns=g), range(grid.n_rows)) for g in groups]
    want: dict[int, int] = {}
    for g in groups:
        from zoomsr.inference.windows import group_span

        n = len(group_span(grid, g)[2])
        for size, count in ((4, n // 4), (n % 4, 1)):
            if size and count:
                want[size] = want.get(size, 0) + count * grid.n_rows
    assert batch_sizes(parts) == sorted(want, key=lambda s: (-want[s], -s))


def test_scene_rows_prepare_their_batch_shapes_first_and_release_them_at_the_end(
        tmp_path, monkeypatch):
    """local_strips asks the model for graphs of the shapes its rows use before the first
    row, and drops them when the rows are done (here on a CPU model told it has graphs: its
    calls then run eagerly)."""
    from infer_helpers import write_frames

    from zoomsr.inference import InferenceModel, InferenceOptions, Tiling, run_inference

    events: list[tuple] = []
    monkeypatch.setattr(InferenceModel, "prepare_graphs",
                        lambda self, b, h, w: events.append(("prepare", list(b), h, w)) or 0)
    monkeypatch.setattr(InferenceModel, "release_graphs",
                        lambda self: events.append(("release",)))
    real = InferenceModel.forward_device
    monkeypatch.setattr(InferenceModel, "forward_device",
                        lambda self, lr, keys=None: events.append(("call",)) or real(
                            self, lr, keys))
    paths = write_frames(tmp_path / "in", n=2, size=(40, 56))
    m = build_inference_model(model="rrdbnet", config={**TINY, "num_in_ch": 6},
                              random_weights=True, device="cpu")
    m.cuda_graphs = True
    run_inference(paths, tmp_path / "o.tif", m,
                  InferenceOptions(tiling=Tiling(window=32, overlap=8), batch_size=3,
                                   progress=False, threads=2))
    # the scene (to the 3857 grid) is 2 windows wide: one batch of 2 a row
    assert events[0] == ("prepare", [2], 32, 32) and events[-1] == ("release",)
    assert {e[0] for e in events[1:-1]} == {"call"}


def test_a_model_and_its_graphs_do_not_hold_each_other():
    """The graphs hold the module, not the model: a model let go is freed at once (with its
    GPU memory), not at the next full garbage collection."""
    import gc
    import weakref

    m = build_inference_model(model="rrdbnet", config={**TINY, "num_in_ch": 6},
                              random_weights=True, device="cpu")
    m._graphed()
    assert m._graphs is not None
    gone = weakref.ref(m)
    was = gc.isenabled()
    gc.disable()
    try:
        del m
        assert gone() is None
    finally:
        if was:
            gc.enable()
    m = build_inference_model(model="rrdbnet", config={**TINY, "num_in_ch": 6},
                              random_weights=True, device="cpu")
    m._graphed()
    m.release_graphs()
    assert m._graphs is None


@pytest.mark.parametrize(("uncertainty", "columns"), [(0, 0), (2, 0), (0, 100), (2, 100)])
def test_the_prepared_batch_sizes_are_those_the_rows_call_the_model_with(
        tmp_path, monkeypatch, uncertainty, columns):
    """A real scene (column strips, --uncertainty): the sizes prepared are exactly the batch
    sizes of the model calls that follow, most used first."""
    from collections import Counter

    from infer_helpers import write_frames

    from zoomsr.inference import InferenceModel, InferenceOptions, Tiling, run_inference

    prepared: list[list[int]] = []
    monkeypatch.setattr(InferenceModel, "prepare_graphs",
                        lambda self, b, h, w: prepared.append(list(b)) or 0)
    calls: Counter[int] = Counter()
    real = InferenceModel.forward_device

    def forward(self, lr, keys=None):  # noqa: ANN001, ANN202
        calls[len(lr)] += 1
        return real(self, lr, keys)

    monkeypatch.setattr(InferenceModel, "forward_device", forward)
    paths = write_frames(tmp_path / "in", n=4, size=(60, 200))
    m = build_inference_model(model="rrdbnet", config={**TINY, "num_in_ch": 6},
                              random_weights=True, device="cpu")
    m.cuda_graphs = True
    extra = {"column_width": columns} if columns else {}
    run_inference(paths, tmp_path / "o.tif", m, InferenceOptions(
        tiling=Tiling(window=32, overlap=8), batch_size=3, progress=False, threads=2,
        uncertainty=uncertainty, **extra))
    assert len(prepared) == 1
    assert prepared[0] == sorted(calls, key=lambda s: (-calls[s], -s)), (prepared, calls)


def test_graphs_are_released_when_the_rows_stop_early_or_fail(tmp_path, monkeypatch):
    from infer_helpers import write_frames

    from zoomsr.inference import InferenceModel, Tiling, discover_frames
    from zoomsr.inference.grid import plan_grid
    from zoomsr.inference.reader import SceneReader
    from zoomsr.inference.rows import RowPart, ScenePlan, local_strips
    from zoomsr.inference.windows import WindowGrid

    released: list[int] = []
    monkeypatch.setattr(InferenceModel, "prepare_graphs", lambda self, b, h, w: 0)
    monkeypatch.setattr(InferenceModel, "release_graphs", lambda self: released.append(1))
    paths = write_frames(tmp_path / "in", n=2, size=(120, 56))
    frames = discover_frames(paths).frames
    grid = plan_grid(frames, 4)
    windows = WindowGrid(grid.height, grid.width, Tiling(window=32, overlap=8))
    m = build_inference_model(model="rrdbnet", config={**TINY, "num_in_ch": 6},
                              random_weights=True, device="cpu")
    m.cuda_graphs = True
    plan = ScenePlan(SceneReader(frames, grid), grid, windows, 2, 2, 0, 0)
    try:
        for threads in (1, 2):  # closed after the first row
            rows = local_strips([RowPart(plan, range(windows.n_rows))], m, threads)
            next(rows)
            rows.close()
            assert len(released) == threads
        released.clear()

        def broken(self, lr, keys=None):  # noqa: ANN001, ANN202
            raise RuntimeError("a row failed")

        monkeypatch.setattr(InferenceModel, "forward_device", broken)
        monkeypatch.setattr(InferenceModel, "forward", broken)
        for threads in (1, 2):
            with pytest.raises(RuntimeError, match="a row failed"):
                list(local_strips([RowPart(plan, range(windows.n_rows))], m, threads))
        assert len(released) == 2
    finally:
        plan.reader.close()


def test_release_reports_what_the_graphs_did_and_a_failure_turns_them_off():
    from zoomsr.inference import InferenceModel

    m = InferenceModel(torch.nn.Identity(), "id", 1, "stacked", 1, "none", "",
                       torch.device("cpu"), cuda_graphs=True)
    m._graphs = _Fake(lambda x: x)
    m._graphs(torch.zeros(2))
    m._graphs(torch.zeros(2))
    m._graphs(torch.zeros(2))
    m.release_graphs()
    assert m.graphs_report == {"captured": 1, "replays": 2, "disabled": None}
    assert m.cuda_graphs and m._graphs is None
    m._graphs = _Fake(lambda x: x, fail=True)
    m._graphs(torch.zeros(2))
    m._graphs(torch.zeros(2))
    m.release_graphs()
    assert m.graphs_report["disabled"] and not m.cuda_graphs


def test_a_scene_after_a_failed_capture_prepares_no_graphs():
    """The release at the start of prepare_graphs turns graphs off after a failed capture,
    before the check: the next scene (or Ray plan) makes no warm-up and no capture."""
    from zoomsr.inference import InferenceModel

    m = InferenceModel(torch.nn.Identity(), "id", 1, "stacked", 1, "none", "",
                       torch.device("cpu"), cuda_graphs=True)
    m._graphs = _Fake(lambda x: x, fail=True)
    m._graphs(torch.zeros(2))
    m._graphs(torch.zeros(2))  # the capture fails: graphs off for this model
    assert m.prepare_graphs([2], 4, 4) == 0
    assert not m.cuda_graphs and m._graphs is None and m.graphs_report["disabled"]
