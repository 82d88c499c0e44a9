"""Rows computed by several threads: same bytes as one thread, errors and Ctrl-C handled."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest
from infer_helpers import write_frames

from zoomsr.errors import DataError
from zoomsr.inference import InferenceOptions, Tiling, run_inference
from zoomsr.inference.in_memory import super_resolve_array
from zoomsr.inference.writer import partial_dir

FAST = Tiling(window=32, overlap=8)


def _opts(**kw) -> InferenceOptions:
    return InferenceOptions(tiling=FAST, progress=False, **kw)


@pytest.fixture
def scene(tmp_path):
    holes = {0: (slice(10, 40), slice(0, 20)), 2: (slice(50, 70), slice(20, 40))}
    return write_frames(tmp_path / "in", n=4, size=(96, 48), holes=holes)


def test_threads_write_the_same_bytes(scene, tiny_model, tmp_path):
    model = tiny_model(2)
    outs = []
    for threads in (1, 3):
        out = tmp_path / f"t{threads}.tif"
        run_inference(scene, out, model, _opts(threads=threads, uncertainty=2, save_lr=True))
        outs.append(out)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert (outs[0].with_name("t1.lr.tif").read_bytes()
            == outs[1].with_name("t3.lr.tif").read_bytes())


def test_in_memory_threads_match(tiny_model):
    rng = np.random.default_rng(1)
    pixels = rng.random((3, 3, 70, 50), dtype=np.float32)
    a, mask_a = super_resolve_array(pixels, tiny_model(2), FAST, threads=1)
    b, mask_b = super_resolve_array(pixels, tiny_model(2), FAST, threads=4)
    assert np.array_equal(a, b) and np.array_equal(mask_a, mask_b)


def test_interrupted_threaded_run_resumes_byte_identical(scene, tiny_model, tmp_path):
    model = tiny_model(2)
    clean = tmp_path / "clean.tif"
    run_inference(scene, clean, model, _opts(threads=1))
    out = tmp_path / "run.tif"
    before = threading.active_count()

    def stop(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_inference(scene, out, model, _opts(threads=3), on_row=stop)
    assert threading.active_count() == before  # no row thread left running
    assert not out.exists() and partial_dir(out).is_dir()
    result = run_inference(scene, out, model, _opts(threads=2, resume=True))
    assert result.rows_resumed == 3
    assert out.read_bytes() == clean.read_bytes()


def test_read_error_in_a_row_thread_names_the_file(scene, tiny_model, tmp_path, monkeypatch):
    from zoomsr.inference import reader as reader_mod

    real = reader_mod.SceneReader._read_into

    def failing(src, window, out):
        if int(window.row_off) > 40:  # a later row fails, in whichever thread computes it
            raise DataError(f"{src.path}: read failed (simulated)")
        real(src, window, out)

    monkeypatch.setattr(reader_mod.SceneReader, "_read_into", staticmethod(failing))
    before = threading.active_count()
    with pytest.raises(DataError, match=r"S2_2024010\d_TCI.tif: read failed"):
        run_inference(scene, tmp_path / "sr.tif", tiny_model(2), _opts(threads=3))
    assert threading.active_count() == before
    assert not (tmp_path / "sr.tif").exists()


def test_threads_must_be_positive():
    from zoomsr.errors import ConfigError

    with pytest.raises(ConfigError, match="threads"):
        InferenceOptions(threads=0)


class _AsIfOnGPU:
    """A CPU model that reports another device, so the run takes the GPU code path: rows in 3
    threads and the GeoTIFF compressed while rows are computed."""

    def __init__(self, model) -> None:
        import torch

        self._model = model
        self.device = torch.device("meta")

    def __getattr__(self, name):
        return getattr(self._model, name)


@pytest.mark.parametrize("stop_after", [2, 4])  # 4: every row done, the GeoTIFF not yet
def test_gpu_path_streams_the_same_bytes_and_resumes(scene, tiny_model, tmp_path, stop_after):
    model = tiny_model(2)
    clean = tmp_path / "clean.tif"
    run_inference(scene, clean, model, _opts(threads=1, cog=True))
    out = tmp_path / "run.tif"
    before = threading.active_count()

    def stop(done: int, total: int) -> None:
        assert total == 4
        if done == stop_after:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_inference(scene, out, _AsIfOnGPU(model), _opts(cog=True), on_row=stop)
    assert threading.active_count() == before  # row threads and the GeoTIFF writer stopped
    assert not out.exists() and not list(tmp_path.glob(".run.tif.*.tmp"))
    result = run_inference(scene, out, _AsIfOnGPU(model), _opts(resume=True, cog=True))
    assert result.rows_resumed == stop_after
    assert out.read_bytes() == clean.read_bytes()
    again = tmp_path / "again.tif"
    run_inference(scene, again, _AsIfOnGPU(model), _opts(cog=True))
    assert again.read_bytes() == clean.read_bytes()


@pytest.mark.parametrize("uncertainty", [0, 2])
def test_rows_blended_with_torch_match_numpy(scene, tiny_model, tmp_path, monkeypatch,
                                             uncertainty):
    """The GPU path blends and finishes rows with torch; run here on CPU tensors, it gives the
    NumPy path's bytes (the uncertainty band: within one grey level, std differs in the last
    bits)."""
    import torch

    from zoomsr.inference import pipeline

    model = tiny_model(2)
    numpy_out = tmp_path / "numpy.tif"
    run_inference(scene, numpy_out, model, _opts(uncertainty=uncertainty, threads=2))
    monkeypatch.setattr(pipeline, "blend_device", lambda m: torch.device("cpu"))
    torch_out = tmp_path / "torch.tif"
    run_inference(scene, torch_out, model, _opts(uncertainty=uncertainty, threads=2))
    if not uncertainty:
        assert torch_out.read_bytes() == numpy_out.read_bytes()
    else:
        import rasterio

        with rasterio.open(numpy_out) as a, rasterio.open(torch_out) as b:
            x, y = a.read().astype(int), b.read().astype(int)
        assert np.array_equal(x[:3], y[:3]) and np.abs(x[3] - y[3]).max() <= 1


@pytest.mark.parametrize("in_process", [False, True])
def test_ctrl_c_while_the_geotiff_is_finished(scene, tiny_model, tmp_path, monkeypatch,
                                              in_process):
    """An interrupt during the last compression leaves no output, no temp file, no thread and
    no writer process: with the writer in a thread and in a process of its own."""
    from zoomsr.inference import pipeline
    from zoomsr.io.geotiff_stream import GeoTIFFProcess, GeoTIFFStream

    monkeypatch.setattr(pipeline, "WRITER_PROCESS", in_process)
    model = tiny_model(2)
    kind = GeoTIFFProcess if in_process else GeoTIFFStream
    original = kind.finish
    children = []

    def interrupted(self, tags):
        if in_process:  # every row final: the child writes them, then waits for the tags
            self._send(("rows", self._last, self.raw.height))
            children.append(self._proc)
        else:
            with self._cond:  # the tags are in and the writer is busy: now Ctrl-C arrives
                self._ready = (self._last, self.raw.height)  # every row final
                self._tags = tags
                self._cond.notify_all()
        raise KeyboardInterrupt

    monkeypatch.setattr(kind, "finish", interrupted)
    before = threading.active_count()
    out = tmp_path / "sr.tif"
    for gpu_path in (False, True):
        with pytest.raises(KeyboardInterrupt):
            # the second run starts over the first's finished rows: --overwrite
            run_inference(scene, out, _AsIfOnGPU(model) if gpu_path else model,
                          _opts(overwrite=gpu_path))
        assert threading.active_count() == before
        assert all(child.poll() is not None for child in children)
        assert not out.exists() and not list(tmp_path.glob(".sr.tif.*.tmp"))
    assert len(children) == (2 if in_process else 0)
    monkeypatch.setattr(kind, "finish", original)
    result = run_inference(scene, out, _AsIfOnGPU(model), _opts(resume=True))  # as last run
    assert result.rows_resumed == 4 and out.exists()


def test_threads_fit_the_open_file_limit(monkeypatch):
    import resource

    from zoomsr.inference.rows import fit_open_files

    limits = {"soft": 1024, "hard": 1024}
    monkeypatch.setattr(resource, "getrlimit", lambda _: (limits["soft"], limits["hard"]))

    def setrlimit(_, values):
        limits["soft"] = values[0]

    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    assert fit_open_files(3, 100) == 3  # 428 files: within the limit
    assert fit_open_files(3, 400) == 2  # 1328 > 1024 = hard: (1024 - 128) // 400 threads
    limits.update(soft=1024, hard=4096)
    assert fit_open_files(3, 400) == 3 and limits["soft"] == 1328  # soft limit raised


@pytest.mark.parametrize("threads", [1, 3])
def test_row_threads_write_their_own_rows(scene, tiny_model, tmp_path, monkeypatch, threads):
    """A row's output rows are finished and written by that row's thread, so finished rows
    waiting for the consumer hold only their carry (same bytes); the consumer puts nothing
    together (RowAssembler is for rows from Ray workers)."""
    from zoomsr.inference import pipeline

    model = tiny_model(2)
    clean = tmp_path / "clean.tif"
    run_inference(scene, clean, model, _opts(threads=1, cog=True))

    def refuse(self, ready):
        raise AssertionError("the local path assembled a row in the consumer")

    monkeypatch.setattr(pipeline.RowAssembler, "add", refuse)
    out = tmp_path / "run.tif"
    run_inference(scene, out, _AsIfOnGPU(model), _opts(threads=threads, cog=True))
    assert out.read_bytes() == clean.read_bytes()


@pytest.mark.parametrize("turns", [True, False])
def test_one_rows_output_on_the_host_at_a_time(scene, tiny_model, tmp_path, monkeypatch,
                                               turns):
    """Row threads bring their finished rows back and write them one at a time (each row's
    transfer is most of the host memory that grows with the width), with the same bytes.
    Without the turns (``ONE_ROW_ON_HOST``, what the speed benchmark compares), they overlap,
    with the same bytes too."""
    import time

    from zoomsr.inference import assemble, pipeline

    monkeypatch.setattr(pipeline, "ONE_ROW_ON_HOST", turns)

    model = tiny_model(2)
    clean = tmp_path / "clean.tif"
    run_inference(scene, clean, model, _opts(threads=1))
    inside, most, lock = [0], [0], threading.Lock()
    bring_back = assemble.RowChain.bring_back

    def counted(row):  # noqa: ANN001
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.05)  # long enough for the other threads' rows to arrive meanwhile
        try:
            return bring_back(row)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(assemble.RowChain, "bring_back", staticmethod(counted))
    out = tmp_path / "run.tif"
    run_inference(scene, out, _AsIfOnGPU(model), _opts(threads=3))
    assert (most[0] == 1) if turns else (most[0] > 1)
    assert out.read_bytes() == clean.read_bytes()


def test_threaded_rows_read_with_the_scene_cache_and_leave_gdals_cache_as_found(
        scene, tiny_model, tmp_path, monkeypatch):
    """Each row thread's reader used to enter its own ``rasterio.Env(GDAL_CACHEMAX=64)``:
    rasterio hands an integer to GDAL as bytes (a 64-byte cache: every read decoded its blocks
    again), and threads leaving their environments restored each other's values, so the
    64 bytes outlived the run (the next run in the process took 9x as long)."""
    from rasterio.env import get_gdal_config

    from zoomsr.inference import reader as reader_mod

    seen: list[int] = []
    read_strip = reader_mod.SceneReader.read_strip

    def spy(self, *args, **kwargs):
        seen.append(int(get_gdal_config("GDAL_CACHEMAX")))
        return read_strip(self, *args, **kwargs)

    monkeypatch.setattr(reader_mod.SceneReader, "read_strip", spy)
    before = int(get_gdal_config("GDAL_CACHEMAX"))
    for i in range(2):
        run_inference(scene, tmp_path / f"run{i}.tif", tiny_model(2), _opts(threads=3))
        assert int(get_gdal_config("GDAL_CACHEMAX")) == before
    assert len(seen) > 6 and set(seen) == {reader_mod.MIN_CACHE_BYTES}  # tiny scene: the floor


@pytest.mark.parametrize("threads", [1, 3])
def test_rows_blended_on_a_device_hand_on_their_own_carry_and_resume(
        scene, tiny_model, tmp_path, monkeypatch, threads):
    """Rows blended "on a GPU" (CPU tensors posing as one: one transfer back per row) are
    handed on holding only a copy of their carry, never their transfer buffer; an interrupted
    run resumes from the saved carry (uploaded again) to the NumPy path's bytes."""
    import torch

    from zoomsr.inference import arrays, pipeline

    model = tiny_model(2)
    clean = tmp_path / "clean.tif"
    run_inference(scene, clean, model, _opts(threads=1))
    monkeypatch.setattr(pipeline, "blend_device", lambda m: torch.device("cpu"))
    monkeypatch.setattr(arrays, "_far", lambda x: isinstance(x, torch.Tensor))
    handed = []
    done_row = pipeline.DoneRow

    def spy(row, sums, weights, *args):
        handed.append((sums.base, weights.base, sums.shape[1]))
        return done_row(row, sums, weights, *args)

    monkeypatch.setattr(pipeline, "DoneRow", spy)

    def stop(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    out = tmp_path / "run.tif"
    with pytest.raises(KeyboardInterrupt):
        run_inference(scene, out, model, _opts(threads=threads), on_row=stop)
    result = run_inference(scene, out, model, _opts(threads=threads, resume=True))
    assert result.rows_resumed == 2 and out.read_bytes() == clean.read_bytes()
    assert len(handed) >= 4 and all(s is None and w is None for s, w, _ in handed)
    assert any(m > 0 for _, _, m in handed)  # rows that carry sums to the next


def _fake_rows(monkeypatch, delays, fail_at=None):
    """compute_row replaced by one that sleeps ``delays[r]`` s (rows finish out of order) and
    raises at ``fail_at``; the rows come back as their numbers."""
    import time
    from types import SimpleNamespace

    from zoomsr.inference import rows as row_work

    def compute(plan, model, r, on=None, tick=None):
        time.sleep(delays[r])
        if r == fail_at:
            raise KeyboardInterrupt
        return SimpleNamespace(row=r)

    monkeypatch.setattr(row_work, "compute_row", compute)
    reader = SimpleNamespace(clone=lambda: reader, close=lambda: None)
    plan = row_work.ScenePlan(reader, None, None, 1, 1, 0, 0)
    return row_work, plan, SimpleNamespace(scale=4, device=None)


def test_ordered_steps_run_in_row_order_whatever_order_rows_finish(monkeypatch):
    row_work, plan, model = _fake_rows(monkeypatch, [0.3, 0.0, 0.1, 0.0, 0.2, 0.0])
    linked: list[int] = []
    got = list(row_work.local_rows(plan, model, range(6), threads=3,
                                   prepare=lambda res: res.row,
                                   ordered=lambda res: linked.append(res.row)))
    assert linked == list(range(6)) and got == list(range(6))


def test_row_threads_go_on_into_the_next_strip_before_the_last_rows_end(monkeypatch):
    """Column strips' rows make one sequence: a free thread starts the next strip's first row
    while the strip's last row is still computed (each strip used to start with idle threads,
    the GPU waiting for its first reads). Strip 0's last row waits here until strip 1's first
    row has started: with strips one after the other it would wait in vain. Ordered steps and
    results still come strip by strip, row by row; a thread clones the reader once."""
    from types import SimpleNamespace

    from zoomsr.inference import rows as row_work

    started = threading.Event()
    clones = []

    def compute(plan, model, r, on=None, tick=None):
        if plan.columns == (0, 1) and r == 0:
            started.set()
        if plan.columns == (0, 0) and r == 1:  # the first strip's last row
            assert started.wait(timeout=10), "the next strip did not start meanwhile"
        if tick is not None:
            tick(r)
        return SimpleNamespace(row=r, columns=plan.columns)

    def clone():
        clones.append(1)
        return reader

    monkeypatch.setattr(row_work, "compute_row", compute)
    reader = SimpleNamespace(clone=clone, close=lambda: None)
    plan = row_work.ScenePlan(reader, None, None, 1, 1, 0, 0)
    linked: list[tuple] = []
    ticks: list[tuple] = []
    parts = [row_work.RowPart(dataclasses.replace(plan, columns=(0, k)), range(2),
                              prepare=lambda res: (res.columns[1], res.row),
                              ordered=lambda res: linked.append((res.columns[1], res.row)),
                              tick=lambda r, k=k: ticks.append((k, r)))
             for k in range(2)]
    got = list(row_work.local_strips(parts, SimpleNamespace(scale=4, device=None), threads=3))
    order = [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert got == [(k, (k, r)) for k, r in order] and linked == order
    # one reader for each thread that took a row (two at least: two rows ran at once)
    assert sorted(ticks) == order and 2 <= len(clones) <= 3


def test_a_reader_that_cannot_be_cloned_fails_the_run_rather_than_hanging_it(monkeypatch):
    """A thread's reader is cloned when it takes its first row: a clone that fails is that
    row's error, raised in the consumer (the thread died with the row taken, and the consumer
    waited for it forever)."""
    from types import SimpleNamespace

    from zoomsr.inference import rows as row_work

    second = threading.Event()

    def compute(plan, model, r, on=None, tick=None):
        if r == 0:  # held until a second thread has tried its clone
            second.wait(timeout=10)
        return SimpleNamespace(row=r)

    monkeypatch.setattr(row_work, "compute_row", compute)
    clones = []

    def clone():
        clones.append(1)
        if len(clones) == 2:
            second.set()
            raise OSError("cannot clone")
        return reader

    reader = SimpleNamespace(clone=clone, close=lambda: None)
    plan = row_work.ScenePlan(reader, None, None, 1, 1, 0, 0)
    outcome: list = []

    def consume() -> None:
        try:
            outcome.append(list(row_work.local_strips(
                [row_work.RowPart(plan, range(6))], SimpleNamespace(scale=4, device=None),
                threads=3)))
        except OSError as exc:
            outcome.append(exc)

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    consumer.join(timeout=20)
    assert not consumer.is_alive(), "the run hung"
    assert isinstance(outcome[0], OSError) and str(outcome[0]) == "cannot clone"


def test_a_later_rows_failure_leaves_the_earlier_rows_to_the_consumer(monkeypatch):
    """Row 2 fails while row 1 waits for row 0's turn (row 0 is still computed): rows 0 and 1
    are still linked and handed on (and saved), then the consumer gets row 2's error, not a
    follow-on one."""
    row_work, plan, model = _fake_rows(monkeypatch, [0.5, 0.05, 0.2, 0.0, 0.0], fail_at=2)
    linked: list[int] = []
    got: list[int] = []
    before = threading.active_count()
    with pytest.raises(KeyboardInterrupt):
        for r in row_work.local_rows(plan, model, range(5), threads=3,
                                     prepare=lambda res: res.row,
                                     ordered=lambda res: linked.append(res.row)):
            got.append(r)
    assert got == [0, 1] and linked == [0, 1]
    assert threading.active_count() == before


def test_rows_given_up_after_a_failure_are_freed_at_once(tmp_path, tiny_model, monkeypatch):
    """Rows computed while an earlier row fails are given up; their float sums must go with
    the error (reference counting alone, no cycle through a traceback): a scenes job goes on
    to its next scene after a failed one."""
    import gc
    import time
    import weakref

    from zoomsr.inference import rows as row_work

    paths = write_frames(tmp_path / "in", n=2, size=(120, 48))
    real = row_work.compute_row
    refs = {}

    def compute(plan, model, r, on=None, tick=None):
        if r == 1:
            time.sleep(0.5)  # rows 2 and 3 are computed meanwhile and wait for their turn
            raise DataError("row 1: read failed (simulated)")
        res = real(plan, model, r, on)
        refs[r] = weakref.ref(res.sums.base if res.sums.base is not None else res.sums)
        return res

    monkeypatch.setattr(row_work, "compute_row", compute)
    gc.collect()
    gc.disable()
    try:
        with pytest.raises(DataError, match="simulated"):
            run_inference(paths, tmp_path / "o.tif", tiny_model(2), _opts(threads=3))
        assert {2, 3} <= set(refs)
        assert [r for r, ref in refs.items() if ref() is not None] == []
    finally:
        gc.enable()


def _ctrl_c_after(*delays: float) -> threading.Thread:
    """Real SIGINTs to the main thread after each of ``delays`` (s, from now): a real signal
    interrupts its blocking waits (``join``), as a terminal's Ctrl-C does. (Sent to the
    process, the kernel may hand it to another thread: the main thread would then only see
    it once its wait ends.)"""
    import signal
    import time

    main = threading.main_thread().ident

    def send() -> None:
        start = time.monotonic()
        for d in delays:
            time.sleep(max(0.0, start + d - time.monotonic()))
            signal.pthread_kill(main, signal.SIGINT)

    t = threading.Thread(target=send, daemon=True)
    t.start()
    return t


def test_a_second_ctrl_c_still_waits_for_the_threads():
    """Users press Ctrl-C again while the threads finish their rows: cutting the join short
    left daemon threads inside torch or GDAL as Python exited (the process then aborted,
    "terminate called without an active exception")."""
    import time

    from zoomsr.stopping import WorkerThread, join_despite_interrupts

    worker = WorkerThread(time.sleep, "sleeper", args=(0.6,))
    worker.start()
    sender = _ctrl_c_after(0.1, 0.3)
    with pytest.raises(KeyboardInterrupt):
        join_despite_interrupts([worker])
    assert not worker.is_alive()
    sender.join()


def test_interrupts_held_raise_the_ctrl_c_after_the_block():
    import os
    import signal

    from zoomsr.stopping import interrupts_held

    done = []
    with pytest.raises(KeyboardInterrupt), interrupts_held():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # pressed twice: still one interrupt
        done.append("block")
    assert done == ["block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with interrupts_held():  # no Ctrl-C: nothing raised
        done.append("quiet")
    assert done == ["block", "quiet"]


def test_interrupts_held_keep_an_ignored_ctrl_c_ignored():
    """A background job started with SIGINT ignored ignores it throughout: holding it must
    not turn it into an interrupt (it did, during ``ray.init``)."""
    import os
    import signal

    from zoomsr.stopping import interrupts_held

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def _rows_with_ctrl_c(row_work, plan, model, *delays: float) -> None:
    """Consume 6 rows from 3 row threads with Ctrl-Cs after ``delays``: the interrupt comes
    out, and only once every row thread has ended."""
    before = threading.active_count()
    sender = _ctrl_c_after(*delays)
    with pytest.raises(KeyboardInterrupt):
        for _ in row_work.local_rows(plan, model, range(6), threads=3,
                                     prepare=lambda res: res.row, ordered=lambda res: None):
            pass
    sender.join()
    assert threading.active_count() == before


def test_ctrl_c_twice_leaves_no_row_thread_running(monkeypatch):
    """The first Ctrl-C stops the row threads after their rows, the second comes while the
    consumer waits for them: every thread has ended when the interrupt reaches the caller."""
    row_work, plan, model = _fake_rows(monkeypatch, [0.8] * 6)
    _rows_with_ctrl_c(row_work, plan, model, 0.2, 0.5)


def test_after_a_ctrl_c_row_threads_stop_at_their_next_model_call(monkeypatch):
    """With --threads N on a CPU, a Ctrl-C waited for every row in the threads to be computed
    to its end (each waiting for the others' model calls too: 10 s and more) and then threw
    them away. The rows now stop at their next model call."""
    import time
    from types import SimpleNamespace

    from zoomsr.inference import rows as row_work

    calls = []

    def slow_forward(lr):
        calls.append(lr)
        time.sleep(0.2)

    def compute(plan, model, r, on=None, tick=None):
        for _ in range(10):  # a row of 10 model calls: 2 s alone, 6 s beside two others
            model.forward(r)
        return SimpleNamespace(row=r)

    monkeypatch.setattr(row_work, "compute_row", compute)
    reader = SimpleNamespace(clone=lambda: reader, close=lambda: None)
    plan = row_work.ScenePlan(reader, None, None, 1, 1, 0, 0)
    model = SimpleNamespace(scale=4, device=None, forward=slow_forward)
    _rows_with_ctrl_c(row_work, plan, model, 0.5)
    assert len(calls) < 10  # about 3 before the Ctrl-C, then the one in progress


@pytest.mark.parametrize("kind", ["GeoTIFFStream", "GeoTIFFProcess"])
def test_ctrl_c_just_after_the_writer_started_stops_it(scene, tiny_model, tmp_path,
                                                       monkeypatch, kind):
    """A Ctrl-C landing right after the GeoTIFF writer started (before the loop over rows)
    left the writer waiting for rows at exit, and its temporary file behind. The writer
    process is told to stop and waited for (it may still be starting)."""
    from zoomsr.inference import pipeline

    started = []

    class Interrupted(getattr(pipeline, kind)):
        def start(self):
            super().start()
            started.append(self)
            raise KeyboardInterrupt  # where a real SIGINT may land

    monkeypatch.setattr(pipeline, "WRITER_PROCESS", kind == "GeoTIFFProcess")
    monkeypatch.setattr(pipeline, kind, Interrupted)
    before = threading.active_count()
    out = tmp_path / "sr.tif"
    with pytest.raises(KeyboardInterrupt):
        run_inference(scene, out, _AsIfOnGPU(tiny_model(2)), _opts())
    assert threading.active_count() == before and len(started) == 1
    if kind == "GeoTIFFProcess":
        assert started[0]._proc.poll() == 0  # ended by itself, told to
    assert not list(tmp_path.glob(".sr.tif*")) and not out.exists()


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("column_width", [None, 20])  # 20: 2 column strips
def test_the_bar_moves_window_by_window(scene, tiny_model, tmp_path, monkeypatch, threads,
                                        column_width):
    """The bar moved once per row of windows: a slow model's row (SR3 on a CPU: minutes)
    showed no progress and no ETA. Strips' rows share window row numbers: each counted once."""
    import contextlib

    from zoomsr.inference import pipeline

    steps: list[int] = []

    class Bar:
        def add_task(self, *args, **kwargs) -> int:
            return 0

        def advance(self, task: int, n: int) -> None:
            steps.append(n)

        def update(self, task: int, advance: int = 0) -> None:
            steps.append(advance)

    monkeypatch.setattr(pipeline, "progress_bar",
                        lambda total, done, enabled: contextlib.nullcontext(Bar()))
    strips = []
    local_strips = pipeline.local_strips

    def counted(parts, *args, **kwargs):
        strips.append(len(parts))
        return local_strips(parts, *args, **kwargs)

    monkeypatch.setattr(pipeline, "local_strips", counted)
    opts = _opts(threads=threads) if column_width is None else _opts(
        threads=threads, column_width=column_width)
    result = run_inference(scene, tmp_path / "o.tif", tiny_model(2),
                           dataclasses.replace(opts, progress=True))
    assert strips == [1 if column_width is None else 2]
    assert sum(steps) == result.windows  # every window once
    assert steps.count(1) >= result.windows - 1  # one at a time, as they are blended


_GPU_PATH_RUN = r"""
import sys, time
from pathlib import Path
import torch
from zoomsr.inference import InferenceOptions, Tiling, build_inference_model, run_inference
from zoomsr.io import geotiff_stream

started = geotiff_stream.GeoTIFFProcess.start

def start(self):
    started(self)
    print("writer", self._proc.pid, flush=True)

geotiff_stream.GeoTIFFProcess.start = start
import zoomsr.inference.pipeline as pipeline
pipeline.GeoTIFFProcess.start = start
pipeline.WRITER_PROCESS = True

class OnGPU:  # a CPU model on the GPU code path, the writer in its own process
    def __init__(self, model):
        self._model, self.device = model, torch.device("meta")
    def __getattr__(self, name):
        return getattr(self._model, name)

model = build_inference_model(model="rrdbnet", random_weights=True, device="cpu",
                              config={"num_in_ch": 6, "num_feat": 8, "num_block": 1,
                                      "num_grow_ch": 4})
forward = model.forward
def slow(*args, **kwargs):
    time.sleep(0.05)
    return forward(*args, **kwargs)
model.forward = slow
rows = []
def on_row(done, total):
    if not rows:
        print("running", flush=True)
    rows.append(done)
try:
    run_inference(sys.argv[1:-1], sys.argv[-1], OnGPU(model),
                  InferenceOptions(tiling=Tiling(32, 8), progress=False, batch_size=1),
                  on_row=on_row)
    print("finished", file=sys.stderr)
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
"""


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="reads /proc")
def test_a_real_ctrl_c_stops_the_writer_process_too(tmp_path):
    """A terminal's Ctrl-C (SIGINT to the process group) during a GPU-path run, real
    signals end to end: the run stops its writer process and waits for it, so no process is
    left and no temporary file, and the rows saved are kept for --resume."""
    import os
    import signal
    import sys
    import time

    from process_groups import own_group

    paths = write_frames(tmp_path / "in", n=2, size=(120, 120))
    out = tmp_path / "o.tif"
    with own_group([sys.executable, "-c", _GPU_PATH_RUN, *map(str, paths), str(out)]) as proc:
        writer = int(proc.stdout.readline().split()[1])
        assert proc.stdout.readline().strip() == "running"
        time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert err.strip().splitlines()[-1] == "interrupted", err
    stat = Path(f"/proc/{writer}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    assert not out.exists() and not list(tmp_path.glob(".o.tif.*.tmp*"))
    assert partial_dir(out).is_dir()  # the rows finished so far, for --resume



def test_the_writer_can_be_chosen_by_the_environment(scene, tiny_model, tmp_path, monkeypatch):
    """``ZOOMSR_GEOTIFF_WRITER=thread`` keeps the GPU path's writer in this process (where a
    child process misbehaves), ``process`` puts the CPU path's in one; the same bytes; another
    value is refused, naming the variable."""
    from zoomsr.errors import ConfigError
    from zoomsr.inference import pipeline

    made = []
    for kind in ("GeoTIFFStream", "GeoTIFFProcess"):
        original = getattr(pipeline, kind)

        def counted(*args, _original=original, _kind=kind, **kwargs):
            made.append(_kind)
            return _original(*args, **kwargs)

        monkeypatch.setattr(pipeline, kind, counted)
    model = tiny_model(2)
    run_inference(scene, tmp_path / "default.tif", model, _opts())
    monkeypatch.setenv("ZOOMSR_GEOTIFF_WRITER", "thread")
    run_inference(scene, tmp_path / "gpu.tif", _AsIfOnGPU(model), _opts())
    monkeypatch.setenv("ZOOMSR_GEOTIFF_WRITER", "Process")
    run_inference(scene, tmp_path / "cpu.tif", model, _opts())
    assert made == ["GeoTIFFStream", "GeoTIFFStream", "GeoTIFFProcess"]
    default = (tmp_path / "default.tif").read_bytes()
    assert (tmp_path / "gpu.tif").read_bytes() == default
    assert (tmp_path / "cpu.tif").read_bytes() == default
    monkeypatch.setenv("ZOOMSR_GEOTIFF_WRITER", "fast")
    with pytest.raises(ConfigError, match="^ZOOMSR_GEOTIFF_WRITER=fast: expected thread or "
                                          "process$"):
        run_inference(scene, tmp_path / "bad.tif", model, _opts())
    assert not (tmp_path / "bad.tif").exists() and not partial_dir(tmp_path / "bad.tif").exists()


def test_a_gpu_run_left_to_defaults_takes_the_gpu_ones(scene, tiny_model, tmp_path, monkeypatch):
    """The run resolves what was left to the device before it plans (the GPU code path, its
    device taken for a GPU): 512 px windows among the automatic ones, 32 in a call."""
    import json

    import rasterio

    from zoomsr.inference import options, pipeline

    monkeypatch.setattr(options, "on_accelerator", lambda device: True)
    plans = []
    fingerprint = pipeline.run_fingerprint

    def seen(plan, *args):
        plans.append(plan)
        return fingerprint(plan, *args)

    monkeypatch.setattr(pipeline, "run_fingerprint", seen)
    out = tmp_path / "o.tif"
    run_inference(scene, out, _AsIfOnGPU(tiny_model(2)), InferenceOptions(progress=False))
    with rasterio.open(out) as ds:
        tiling = json.loads(ds.tags()["zoomsr_tiling"])
    # a 96 x 48 px scene: one window cut to it, whatever the size; ties go to the larger
    grid = plans[0].windows
    assert tiling["window"] == 512 and (grid.win_h, grid.win_w) == (96, 48)
    assert plans[0].batch_size == 32 * 128**2 // (96 * 48)  # 32 windows of 128 px a call


class _Stop(Exception):
    pass


@pytest.mark.parametrize(("device", "window", "batch"), [
    ("cuda", 512, 32 * 128**2 // (96 * 48)),  # a GPU's: 512 px among the automatic windows
    ("cpu", 256, 8 * 128**2 // (96 * 48))])
def test_a_row_source_s_device_gives_the_run_its_defaults(scene, tiny_model, tmp_path,
                                                            device, window, batch):
    """Rows computed elsewhere (Ray workers) take the defaults of the device they are
    computed on, not of this process's model: GPU workers behind a CPU head took the CPU's
    batch and windows, CPU workers on a GPU machine the GPU's."""
    import torch

    from zoomsr.inference.options import rows_device

    plans = []

    class Elsewhere:
        def __init__(self) -> None:
            self.device = torch.device(device)

        def __call__(self, plan, model, rows):  # noqa: ANN001, ANN204
            plans.append(plan)
            raise _Stop

    here = tiny_model(2) if device == "cuda" else _AsIfOnGPU(tiny_model(2))
    with pytest.raises(_Stop):
        run_inference(scene, tmp_path / "o.tif", here, InferenceOptions(progress=False),
                      row_source=Elsewhere())
    assert plans[0].batch_size == batch and plans[0].windows.tiling.window == window
    assert rows_device(Elsewhere()) == torch.device(device)
    assert rows_device(lambda plan, model, rows: iter(())) is None


def test_ray_pools_say_their_workers_device():
    import torch

    from zoomsr.inference.distributed import RayPool, ray_row_source
    from zoomsr.inference.options import rows_device

    assert rows_device(RayPool("local", 2, gpus_per_worker=1).rows) == torch.device("cuda")
    assert rows_device(RayPool("local", 2, gpus_per_worker=0).rows) == torch.device("cpu")
    assert rows_device(ray_row_source("local", 2, gpus_per_worker=0.5)) == torch.device("cuda")
    # a local instance's workers get GPUs when this machine has one each (none here)
    local = "cuda" if torch.cuda.device_count() >= 2 else "cpu"
    assert rows_device(ray_row_source("local", 2)) == torch.device(local)
    assert rows_device(ray_row_source("auto", 2)) is None  # a cluster's: known once joined


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_rows_computed_on_a_gpu_elsewhere_are_compressed_as_they_come(
        scene, tiny_model, tmp_path, monkeypatch, device):
    """The GeoTIFF is written while rows come when they are computed on a GPU, wherever this
    process's model is (a CPU head with GPU workers wrote it all after the last row); with CPU
    workers, after the last row, as on a CPU here. The same bytes either way; the run's record
    names the workers' device."""
    import torch

    from zoomsr.inference.assemble import prepare_row
    from zoomsr.inference.rows import blend_device, compute_row
    from zoomsr.io import geotiff_stream

    marks = []
    rows_done = geotiff_stream.GeoTIFFStream.rows_done

    def mark(self, rows, chunk=0):
        marks.append(rows)
        rows_done(self, rows, chunk)

    monkeypatch.setattr(geotiff_stream.GeoTIFFStream, "rows_done", mark)
    from zoomsr.inference import pipeline

    records = []
    fingerprint = pipeline.run_fingerprint

    def recorded(*args):  # noqa: ANN002, ANN202
        records.append(fingerprint(*args))
        return records[-1]

    monkeypatch.setattr(pipeline, "run_fingerprint", recorded)

    class Workers:  # what Ray workers do with each row, here, on the device they say
        def __init__(self) -> None:
            self.device = torch.device(device)

        def __call__(self, plan, model, todo):  # noqa: ANN001, ANN204
            for r in todo:
                yield prepare_row(compute_row(plan, model, r, blend_device(model)),
                                  plan.windows, model.scale, with_lr=False)

    opts = InferenceOptions(tiling=Tiling(32, 8), batch_size=4, progress=False)
    model = tiny_model(2)
    run_inference(scene, tmp_path / "far.tif", model, opts, row_source=Workers())
    run_inference(scene, tmp_path / "here.tif", model, opts)
    assert bool(marks) == (device == "cuda")
    assert (tmp_path / "far.tif").read_bytes() == (tmp_path / "here.tif").read_bytes()
    # a run saved midway records the workers' device (--resume compares it), not this one's
    assert [r["device"] for r in records] == [device, "cpu"]


def test_interrupts_held_let_a_later_ctrl_c_stop_a_block_that_hangs(monkeypatch):
    """ray.init retrying an address where nothing answers held Ctrl-C and SIGTERM for over
    10 minutes: only kill -9 stopped it. Asked again a while after the first, it stops."""
    import os
    import signal
    import time

    from zoomsr import stopping

    monkeypatch.setattr(stopping, "ESCAPE_AFTER", 0.05)
    done = []
    with pytest.raises(KeyboardInterrupt), stopping.interrupts_held():
        os.kill(os.getpid(), signal.SIGINT)
        done.append("held")
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # (the handler runs at the next bytecode)
        done.append("not reached")
    assert done == ["held"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_escaped_sigterm_stays_a_termination(monkeypatch):
    """The escape raised a plain KeyboardInterrupt: a SIGTERM then lost its exit code (the
    process ended killed by SIGINT, not with 130 as a handled SIGTERM does)."""
    import os
    import signal
    import time

    from zoomsr import stopping

    monkeypatch.setattr(stopping, "ESCAPE_AFTER", 0.05)
    stopping.take_termination()
    with stopping.sigterm_as_interrupt():
        handler = signal.getsignal(signal.SIGTERM)
        with pytest.raises(stopping.Terminated), stopping.interrupts_held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            pytest.fail("not stopped")
        assert stopping.take_termination() == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is handler  # put back, not left holding
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
