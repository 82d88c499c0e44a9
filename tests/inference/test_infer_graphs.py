"""CUDA graphs of the model's forward: when shapes are captured, what a call returns, the
defaults and refusals. The capture itself needs a GPU (tests/inference/test_infer_gpu.py);
here it is replaced by a stand-in whose replay runs the forward on the graph's own buffers,
so the bookkeeping around it (the same code) is what is tested."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from infer_helpers import TINY

from zoomsr.errors import ConfigError
from zoomsr.inference import build_inference_model, graphs
from zoomsr.inference.model import use_cuda_graphs


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
        return graphs._Graph(_Replay(self.plain, inputs, output), inputs, output)


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


def test_graphs_default_on_cuda_only_for_models_run_once(monkeypatch):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.delenv("ZOOMSR_CUDA_GRAPHS", raising=False)
    assert use_cuda_graphs(None, cuda, diffusion=False)
    assert not use_cuda_graphs(None, cuda, diffusion=True)
    assert not use_cuda_graphs(None, cpu, diffusion=False)
    assert not use_cuda_graphs(False, cuda, diffusion=False)
    monkeypatch.setenv("ZOOMSR_CUDA_GRAPHS", "0")
    assert not use_cuda_graphs(None, cuda, diffusion=False)
    assert use_cuda_graphs(True, cuda, diffusion=False)  # asked for: the environment yields


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


def test_prepare_captures_a_shape_now_and_no_call_captures_after():
    g = _Fake(lambda x: x + 2)
    assert g.prepare(torch.zeros(2, 3))  # unseen: one eager warm-up call, then the capture
    assert g.eager == 1 and g.captures == [(2, 3)] and not g.capture_on_call
    torch.testing.assert_close(g(torch.ones(2, 3)), torch.full((2, 3), 3.0))
    assert g.eager == 1  # replayed
    for _ in range(3):
        g(torch.ones(4))  # another shape: eager every time, never captured
    assert g.captures == [(2, 3)] and g.eager == 4


def test_prepare_of_a_seen_shape_needs_no_warm_up_and_reports_a_failure():
    g = _Fake(lambda x: x, fail=True)
    g(torch.zeros(3))
    assert not g.prepare(torch.zeros(3))
    assert g.eager == 1 and g.captures == [(3,)] and g.disabled


def test_scene_rows_prepare_the_window_shape_before_computing(tmp_path, monkeypatch):
    """local_strips asks the model for its window shape's graph before the first row."""
    from infer_helpers import write_frames

    from zoomsr.inference import InferenceModel, InferenceOptions, Tiling, run_inference

    calls: list[tuple] = []
    forwards: list[int] = []

    def prepare(self, batch, height, width):  # noqa: ANN001, ANN202
        calls.append((batch, height, width, len(forwards)))
        return False

    real_forward = InferenceModel.forward_device

    def forward(self, lr, keys=None):  # noqa: ANN001, ANN202
        forwards.append(1)
        return real_forward(self, lr, keys)

    monkeypatch.setattr(InferenceModel, "prepare_graphs", prepare)
    monkeypatch.setattr(InferenceModel, "forward_device", forward)
    paths = write_frames(tmp_path / "in", n=2, size=(40, 56))
    m = build_inference_model(model="rrdbnet", config={**TINY, "num_in_ch": 6},
                              random_weights=True, device="cpu")
    monkeypatch.setattr(type(m), "forward", lambda self, lr, keys=None: forward(self, lr, keys)
                        .cpu().numpy())
    run_inference(paths, tmp_path / "o.tif", m,
                  InferenceOptions(tiling=Tiling(window=32, overlap=8), batch_size=3,
                                   progress=False, threads=2))
    assert calls == [(3, 32, 32, 0)] and forwards
