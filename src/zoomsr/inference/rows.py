"""The unit of work of scene inference: one row of windows, read, run and blended
(:func:`compute_row`), and rows computed in order on this machine, several at once
(:func:`local_rows`; several column strips' rows as one sequence: :func:`local_strips`).
The Ray path (:mod:`zoomsr.inference.distributed`) ships :class:`ScenePlan` and
:func:`compute_row` to workers."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
import torch
from rasterio.windows import Window

from zoomsr.inference.arrays import Array, to_host, to_tensor
from zoomsr.inference.assemble import Carry, final_rows, to_uint8, upsample_mask
from zoomsr.inference.frames import (
    choose_frames,
    clean_scores,
    fill_gaps,
    unusable,
    window_scores,
)
from zoomsr.inference.grid import TargetGrid
from zoomsr.inference.model import InferenceModel
from zoomsr.inference.reader import SceneReader
from zoomsr.inference.uncertainty import subset_frames
from zoomsr.inference.windows import WindowGrid, blend_weights, group_span
from zoomsr.stopping import WorkerThread, join_despite_interrupts


class RowModel(Protocol):
    """What :func:`compute_row` uses of a model: an :class:`InferenceModel`, or the wrapper
    that serialises one model's calls between row threads (the local path's threads). Rows
    are prepared on ``device`` (the CPU where it is ``None``); ``diffusion``, where a model
    has it, names each window's noise by its place (see :meth:`InferenceModel.forward`)."""

    @property
    def scale(self) -> int: ...

    @property
    def device(self) -> torch.device | None: ...

    def forward(self, lr: np.ndarray | torch.Tensor,
                keys: Sequence[Any] | None = None) -> np.ndarray: ...

    def forward_device(self, lr: np.ndarray | torch.Tensor,
                       keys: Sequence[Any] | None = None) -> torch.Tensor: ...


@dataclass
class ArrayReader:
    """In-memory frames ``[T, C, H, W]`` (TCI / 255, then extra bands) with the reader
    interface of a scene."""

    pixels: np.ndarray
    valid: np.ndarray

    def read_strip(self, window: Window, device: torch.device | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, None]:
        """Frames ``[T, C, h, w]`` (0 where invalid) and validity ``[T, h, w]`` on ``device``."""
        rows = slice(int(window.row_off), int(window.row_off + window.height))
        cols = slice(int(window.col_off), int(window.col_off + window.width))
        device = device or torch.device("cpu")
        valid = to_tensor(self.valid[:, rows, cols], device)
        pixels = to_tensor(self.pixels[:, :, rows, cols], device)
        return torch.where(valid[:, None], pixels, 0.0), valid, None

    def clone(self) -> ArrayReader:
        return self  # read-only arrays: safe to share between threads

    def close(self) -> None:
        pass


@dataclass
class ScenePlan:
    """Everything a worker needs to compute a row of windows (picklable)."""

    reader: SceneReader | ArrayReader
    grid: TargetGrid | None
    windows: WindowGrid
    n_images: int
    batch_size: int
    uncertainty: int
    seed: int
    columns: tuple[int, int] | None = None  # a column group (window columns); None: all


@dataclass
class RowResult:
    """One row of windows, blended: HR sums ``[C, h*s, W*s]`` and weights ``[h*s, W*s]``.

    ``C`` is 3 (RGB), plus 1 with uncertainty. ``valid`` ``[h, W]``: any frame valid (LR);
    ``mosaic`` ``[h, W, 3]`` uint8: mean of the valid frames (the resampled LR mosaic);
    ``few_frames``: windows with fewer clean frames than the model takes. All but ``windows``
    are tensors on the model's device when blended there (what leaves it comes back in one
    transfer: :meth:`~zoomsr.inference.assemble.RowChain.finish`,
    :func:`~zoomsr.inference.assemble.prepare_row`), else NumPy.
    """

    row: int
    sums: np.ndarray | torch.Tensor
    weights: np.ndarray | torch.Tensor
    valid: np.ndarray | torch.Tensor
    mosaic: np.ndarray | torch.Tensor
    few_frames: int | torch.Tensor
    windows: int


def blend_device(model: InferenceModel) -> torch.device | None:
    """Where the local path blends rows: on the model's accelerator (the outputs then never
    travel to the CPU as floats, and the GPU does the arithmetic), else None (NumPy)."""
    dev = getattr(model, "device", None)
    return dev if isinstance(dev, torch.device) and dev.type not in ("cpu", "meta") else None


def compute_row(plan: ScenePlan, model: RowModel, r: int,
                on: torch.device | None = None,
                tick: Callable[[int], None] | None = None) -> RowResult:
    """Read, choose frames, run the model on and blend the windows of window row ``r``.

    ``on``: blend with torch on that device (the sums stay there), else with NumPy. With
    ``plan.columns``, only the LR columns that column group owns are returned (computed from
    every window covering them, as without groups). ``tick(r)`` is called as each window the
    row owns is blended (a progress bar that moves within slow rows).
    """
    grid = plan.windows
    group = plan.columns or (0, len(grid.xs))
    owned_from, owned_to, needed = group_span(grid, group)
    owned = range(*group)
    row = grid.row(r)
    wins = [row[c] for c in needed]
    s = model.scale
    y, h = wins[0].y, wins[0].h
    x0 = wins[0].x
    width = wins[-1].x + wins[-1].w - x0  # the strip these windows cover
    # Everything from the file values on runs on the model's device (the CPU, or the GPU:
    # only the raw values go there, and the finished rows come back, in one transfer).
    dev = on or getattr(model, "device", None)
    if on is None and not (isinstance(dev, torch.device) and dev.type != "meta"):
        dev = torch.device("cpu")
    dev = cast(torch.device, dev)  # (on, or a device: checked just above)
    pixels, valid, cloudy = plan.reader.read_strip(Window(x0, y, width, h), dev)
    filled, any_valid, mean = fill_gaps(pixels, valid)
    mosaic = to_uint8(mean[:3].permute(1, 2, 0))
    spans = [(win.x - x0, win.w) for win in wins]
    bad = unusable(pixels, valid, cloudy)  # [T, h, W], shared by the scores below
    all_scores, clean = window_scores(pixels, valid, cloudy, spans, bad)
    # the uncertainty subsets' pool: frames clean where another frame is usable
    rel_scores = clean_scores(pixels, valid, cloudy, spans, bad) if plan.uncertainty else None
    # LR pixels fewer than n + 1 dates can use: every subset sees the same dates there (the
    # others gap-filled from them), so a spread of 0 would read "certain" where it cannot be
    # told; band 4 is 255 there (a swath edge, a date's smaller footprint)
    thin = (~bad).sum(0) < plan.n_images + 1 if plan.uncertainty else None
    if thin is not None and on is None:
        thin = thin.cpu().numpy()  # (blended with the host's NumPy outputs)
    del pixels, valid, cloudy, bad
    # Frames are chosen on the device too: nothing comes back before the model calls are
    # queued (a transfer from a GPU waits for every call queued before it, other rows' too).
    best = choose_frames(all_scores, plan.n_images)  # [windows, n]
    ours = to_tensor(np.array([win.col in owned for win in wins]), dev)
    few = ((clean < plan.n_images) & ours).sum()
    k = plan.uncertainty
    channels = 3 + (1 if k else 0)
    per_window = 1 + k
    sums: Any
    weights: Any
    if on is None:
        sums = np.zeros((channels, h * s, width * s), dtype=np.float32)
        weights = np.zeros((h * s, width * s), dtype=np.float32)
    else:
        sums = torch.zeros((channels, h * s, width * s), dtype=torch.float32, device=on)
        weights = torch.zeros((h * s, width * s), dtype=torch.float32, device=on)

    # Windows of a row share a few weight arrays (edges differ): each goes to the device once
    # (asynchronously: a blocking copy would wait for every model call queued before it).
    weight_cache: dict[tuple, Any] = {}

    def weights_of(win: Any) -> Any:
        key = (win.h, win.w, win.y == 0, win.y + win.h >= grid.height, win.x == 0,
               win.x + win.w >= grid.width)
        if key not in weight_cache:
            w = blend_weights(win, plan.windows, s)
            weight_cache[key] = w if on is None else to_tensor(w, on)
        return weight_cache[key]

    def blend(j: int, outs: list[Any]) -> None:
        win = wins[j]
        w = weights_of(win)
        cols = slice((win.x - x0) * s, (win.x - x0 + win.w) * s)
        sums[:3, :, cols] += outs[0] * w
        if k:
            spread = (np.stack(outs[1:]).std(0).mean(0) if on is None
                      else torch.stack(outs[1:]).std(0, correction=0).mean(0))
            thin_here = cast(Array, thin)[:, win.x - x0 : win.x - x0 + win.w]  # (k: computed)
            undetermined = upsample_mask(thin_here, s)
            spread = (np.where(undetermined, np.float32(1.0), spread) if on is None
                      else torch.where(undetermined, 1.0, spread))
            sums[3, :, cols] += spread * w
        weights[:, cols] += w
        if tick is not None and win.col in owned:
            tick(r)

    # Inputs go to the model batch_size at a time, and each window is blended as soon as its
    # outputs are in, so a row never holds all its windows' inputs or outputs at once.
    pending: list[tuple[int, torch.Tensor]] = []
    outputs: dict[int, list[np.ndarray]] = {}
    # a diffusion model's noise is named by the window's place (its subsets share it)
    placed = getattr(model, "diffusion", False)

    def run_batch() -> None:
        js = [j for j, _ in pending[: plan.batch_size]]
        stacked = torch.stack([a for _, a in pending[: plan.batch_size]])
        del pending[: plan.batch_size]  # the windows' inputs are then held once, stacked
        extra = {"keys": [(wins[j].y, wins[j].x) for j in js]} if placed else {}
        outs = (model.forward(stacked, **extra) if on is None
                else model.forward_device(stacked, **extra))
        del stacked
        for j, out in zip(js, outs, strict=True):
            outputs.setdefault(j, []).append(out)
            if len(outputs[j]) == per_window:
                blend(j, outputs.pop(j))

    # Uncertainty subsets are drawn on the host (seeded NumPy): their scores come back first.
    host_scores, host_clean = to_host(all_scores, rel_scores) if k else (None, None)
    for j, win in enumerate(wins):
        wp = filled[..., win.x - x0 : win.x - x0 + win.w]
        chosen = [best[j]]
        if host_scores is not None:
            chosen += [to_tensor(f, dev) for f in
                       subset_frames(host_scores[j], plan.n_images, k, (plan.seed, r, win.col),
                                     clean=cast(np.ndarray, host_clean)[j])]
        for frames in chosen:
            pending.append((j, wp[frames]))
        while len(pending) >= plan.batch_size:
            run_batch()
    while pending:
        run_batch()
    a, b = owned_from - x0, owned_to - x0  # keep the owned columns
    valid_lr, mosaic = any_valid[:, a:b], mosaic[:, a:b]
    if on is None:  # NumPy blending: the rest to the host too, in one transfer
        valid_lr, mosaic, few = to_host(valid_lr, mosaic, few)
        few = int(few)
    return RowResult(r, sums[:, :, a * s : b * s], weights[:, a * s : b * s],
                     valid_lr, mosaic, few, len(owned))


class RowBlender(Carry):
    """Accumulates blended rows of windows and releases the output rows that are final, as
    floats (:func:`super_resolve_array`; scenes use :class:`RowChain` or
    :class:`RowAssembler`)."""

    def add(self, res: RowResult) -> tuple[int, np.ndarray, np.ndarray]:
        """Add window row ``res``; return (first HR row, values ``[C, n, W]``, mask ``[n, W]``)."""
        s, win = self.scale, self.windows
        top = win.ys[res.row] * s  # rows above are final: the accumulator starts here
        need = res.weights.shape[0]
        if self.weights.shape[0] < need:
            pad = need - self.weights.shape[0]
            self.sums = np.concatenate(
                [self.sums, np.zeros((self.sums.shape[0], pad, self.sums.shape[2]), np.float32)],
                axis=1)
            self.weights = np.concatenate(
                [self.weights, np.zeros((pad, self.weights.shape[1]), np.float32)])
        self.sums[:, :need] += res.sums
        self.weights[:need] += res.weights
        lr_rows = final_rows(win, res.row)
        n = lr_rows * s
        wsum = self.weights[:n]
        value = self.sums[:, :n] / np.where(wsum > 0, wsum, 1.0)
        valid = upsample_mask(res.valid[:lr_rows], s) & (wsum > 0)
        self.sums = self.sums[:, n:].copy()
        self.weights = self.weights[n:].copy()
        return top, value, valid


class _Abandoned(RuntimeError):
    """A row given up because an earlier one failed (that error reaches the consumer) or the
    consumer left."""


def _keys(keys: Sequence[Any] | None) -> dict[str, Any]:
    return {} if keys is None else {"keys": keys}


class _SerialModel:
    """``model`` with its calls serialised (threads share one model, and its memory). Once
    ``stopped()``, a call raises :class:`_Abandoned` instead: after a Ctrl-C the rows in
    the threads stop at their next model call, not after the whole row (each of --threads
    rows then waited for the others' calls too: 10 s and more on a CPU, for rows thrown away).
    """

    def __init__(self, model: InferenceModel, stopped: Callable[[], bool]) -> None:
        self._model = model
        self._stopped = stopped
        self._lock = threading.Lock()
        self.scale = model.scale
        self.device = getattr(model, "device", None)  # where rows are prepared

    @property
    def diffusion(self) -> bool:
        return getattr(self._model, "diffusion", False)

    def forward(self, lr: np.ndarray | torch.Tensor,
                keys: Sequence[Any] | None = None) -> np.ndarray:
        with self._lock:
            self._check()
            # keys only where given: a model without sampling noise need not take them
            return self._model.forward(lr, **_keys(keys))

    def forward_device(self, lr: np.ndarray | torch.Tensor,
                       keys: Sequence[Any] | None = None) -> torch.Tensor:
        with self._lock:
            self._check()
            return self._model.forward_device(lr, **_keys(keys))

    def _check(self) -> None:
        if self._stopped():
            raise _Abandoned("stopped")


@dataclass
class RowPart:
    """Rows of one column strip (``plan.columns``), as :func:`local_strips` computes them:
    ``ordered(row)`` then ``prepare(row)`` (see :func:`local_rows`); ``tick(r)`` per window
    blended in window row ``r``."""

    plan: ScenePlan
    rows: Sequence[int]
    prepare: Callable[[RowResult], Any] | None = None
    ordered: Callable[[RowResult], None] | None = None
    tick: Callable[[int], None] | None = None


class _RowThreads:
    """``threads`` threads computing the rows of ``parts`` in order, each with its own reader.

    The parts' rows make one sequence: a thread that finishes the last rows of a column strip
    goes on to the next strip's first ones, so the model is not left idle while a strip's
    last rows drain and the next one's first rows are read. A thread takes the next row only
    while fewer than ``threads`` rows are taken and not yet consumed (being computed or
    waiting), so at most ``threads`` consecutive rows are in memory, besides the one the
    consumer holds. ``ordered(row)`` runs in the threads in that order (a thread waits for
    the previous row's turn), then ``prepare``, in any order. Results are yielded in order,
    as ``(part index, result)``; the first error is raised in the consumer. Closing stops
    the threads after the rows they are on (a row takes about a second), and each thread
    closes its own reader.
    """

    def __init__(self, parts: Sequence[RowPart], model: InferenceModel, threads: int,
                 on: torch.device | None = None) -> None:
        self.parts = list(parts)
        if len({part.ordered is None for part in self.parts}) > 1:  # turns across all or none
            raise ValueError("every part has an ordered step, or none has")
        self.tasks = [(k, r) for k, part in enumerate(self.parts) for r in part.rows]
        self.linked = 0  # rows whose ordered step is done
        self.on = on
        self.model = _SerialModel(model, lambda: self.closing)
        self.depth = threads
        self.cond = threading.Condition()
        self.results: dict[int, Any] = {}
        self.handed = self.consumed = 0
        self.stop = False  # take no more rows
        self.closing = False  # the consumer is gone
        self.failed_at: int | None = None  # the first row (in order) that raised
        # All threads queue on the device's default stream: the model's activations are then
        # cached once. (Per-thread streams would keep a waiting thread from also waiting for
        # other threads' model calls, but PyTorch caches freed memory per stream, so every
        # thread would hold its own copy of the activations; not measured on a GPU yet.)
        self.threads = [WorkerThread(self._work, f"zoomsr-row-{i}")
                        for i in range(min(threads, len(self.tasks)))]
        try:
            for t in self.threads:
                t.start()
        except BaseException:  # Ctrl-C while starting them: stop those already running
            self.close()
            raise

    def _work(self) -> None:
        # this thread's own readers (datasets), one per reader of the parts: the strips of a
        # scene share one, and differ in their columns
        readers: dict[int, Any] = {}
        strip: tuple[int, ScenePlan] | None = None  # the part this thread is on, its plan
        try:
            while True:
                with self.cond:
                    while (not self.stop and self.handed < len(self.tasks)
                           and self.handed >= self.consumed + self.depth):
                        self.cond.wait()
                    if self.stop or self.handed >= len(self.tasks):
                        return
                    i = self.handed
                    self.handed += 1
                k, r = self.tasks[i]
                part = self.parts[k]
                try:
                    if strip is None or strip[0] != k:  # (a failed clone fails the row)
                        key = id(part.plan.reader)
                        if key not in readers:
                            readers[key] = part.plan.reader.clone()
                        strip = k, dataclasses.replace(part.plan, reader=readers[key])
                    # (_SerialModel: the calls compute_row makes, serialised)
                    res: Any = compute_row(strip[1], self.model,
                                           r, self.on, part.tick)
                    if part.ordered is not None and not self._in_turn(i, res, part.ordered):
                        # never raised here: a traceback would keep this frame, and the row's
                        # sums, alive through the results (a cycle) after the run
                        res = _Abandoned(f"row {r} abandoned")
                    elif part.prepare is not None:
                        res = part.prepare(res)
                except _Abandoned as exc:  # without its traceback (it holds the row)
                    res = _Abandoned(str(exc))
                except BaseException as exc:  # handed to the consumer, raised there
                    res = exc
                with self.cond:
                    self.results[i] = res
                    if isinstance(res, BaseException):
                        self.stop = True
                        if not isinstance(res, _Abandoned) and (self.failed_at is None
                                                                or i < self.failed_at):
                            self.failed_at = i
                    self.cond.notify_all()
                del res  # the consumer's now: not kept while the next row is computed
        finally:
            for reader in readers.values():
                reader.close()

    def _in_turn(self, i: int, res: RowResult, ordered: Callable[[RowResult], None]) -> bool:
        """Run ``ordered(res)`` once every earlier row's has run; False (not run) when an
        earlier row failed or the consumer left (the row is never consumed). A later row's
        failure does not stop it: the rows before the failure are still consumed and saved."""
        def given_up() -> bool:
            return self.closing or (self.failed_at is not None and self.failed_at < i)

        with self.cond:
            while self.linked < i and not given_up():
                self.cond.wait()
            if self.linked < i:
                return False
        ordered(res)
        with self.cond:
            self.linked = i + 1
            self.cond.notify_all()
        return True

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        try:
            for i in range(len(self.tasks)):
                with self.cond:
                    while i not in self.results:
                        self.cond.wait()
                    res = self.results.pop(i)
                    self.consumed = i + 1
                    self.cond.notify_all()
                if isinstance(res, BaseException):
                    raise res
                yield self.tasks[i][0], res
                del res  # not held while waiting for the next row
        finally:
            self.close()

    def close(self) -> None:
        with self.cond:
            self.stop = self.closing = True
            self.cond.notify_all()
        # a thread whose start a Ctrl-C cut short finds `stop` set and returns
        join_despite_interrupts(self.threads)


def fit_open_files(threads: int, files: int) -> int:
    """Rows computed at once such that every thread can open each input file: raises the
    soft limit on open files towards the hard one if needed, else uses fewer threads."""
    need = threads * files + 128  # + GDAL's own, the outputs, Python's
    try:
        import resource
    except ImportError:  # not POSIX: no such limit to manage here
        return threads
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < need:
        return max(1, (soft - 128) // max(files, 1))
    return threads


def local_rows(
    plan: ScenePlan, model: InferenceModel, rows: Sequence[int], threads: int = 1,
    prepare: Callable[[RowResult], Any] | None = None, on: torch.device | None = None,
    ordered: Callable[[RowResult], None] | None = None,
    tick: Callable[[int], None] | None = None,
) -> Iterator[Any]:
    """Compute ``rows`` in order in this process, ``threads`` rows at once; with ``prepare``,
    yield ``prepare(row)`` (computed in the row's thread) instead of the row. ``ordered(row)``
    runs before ``prepare``, in row order (e.g. :meth:`~zoomsr.inference.assemble.RowChain.link`).
    ``on``: blend on that device; ``tick``: called per window blended (:func:`compute_row`)."""
    strips = local_strips([RowPart(plan, rows, prepare, ordered, tick)], model, threads, on)
    try:
        for _, item in strips:
            yield item
            del item
    finally:
        strips.close()


def local_strips(parts: Sequence[RowPart], model: InferenceModel, threads: int = 1,
                 on: torch.device | None = None) -> Generator[tuple[int, Any], None, None]:
    """:func:`local_rows` over several column strips' rows as one sequence: yields ``(k,
    item)`` for each row of ``parts[k]``, in order, ``threads`` rows at once across the
    strips' boundaries."""
    tasks = sum(len(part.rows) for part in parts)
    graphs = tasks > 0 and getattr(model, "cuda_graphs", False)
    try:
        if graphs:
            # captured before any row uses the GPU (a capture while other threads used it
            # failed), none mid-run; dropped at the end
            prepare_graphs(model, parts)
        if threads <= 1 or tasks <= 1:
            for k, part in enumerate(parts):
                hand_on = part.prepare or (lambda res: res)
                for r in part.rows:
                    # no local holds the row while the next one is computed (a suspended
                    # generator keeps its locals: the row's float sums would be held twice)
                    yield k, hand_on(_linked(compute_row(part.plan, model, r, on, part.tick),
                                             part.ordered))
            return
        yield from _RowThreads(parts, model, threads, on)
    finally:
        if graphs:
            model.release_graphs()


def prepare_graphs(model: InferenceModel, parts: Sequence[RowPart]) -> int:
    """CUDA graphs of the batch shapes ``parts``' rows call ``model`` with (the model's
    earlier graphs dropped; none where it has graphs off); how many were made."""
    grid = parts[0].plan.windows
    return model.prepare_graphs(batch_sizes(parts), grid.win_h, grid.win_w)


def batch_sizes(parts: Sequence[RowPart]) -> list[int]:
    """The sizes of the model calls that ``parts``' rows make (:func:`compute_row`: full
    batches of ``plan.batch_size`` inputs, then what is left of the row), most calls first."""
    calls: dict[int, int] = {}
    for part in parts:
        plan = part.plan
        group = plan.columns or (0, len(plan.windows.xs))
        inputs = len(group_span(plan.windows, group)[2]) * (1 + plan.uncertainty)
        full, rest = divmod(inputs, plan.batch_size)
        for size, n in ((plan.batch_size, full), (rest, 1)):
            if size and n:
                calls[size] = calls.get(size, 0) + n * len(part.rows)
    return sorted(calls, key=lambda size: (-calls[size], -size))


def _linked(res: RowResult, ordered: Callable[[RowResult], None] | None) -> RowResult:
    if ordered is not None:
        ordered(res)
    return res
