"""Scene inference: inputs -> target grid -> windows -> frame choice -> model -> blended GeoTIFF.

Data flow (rows of windows, so memory does not grow with the scene's height)::

    frames (files) --SceneReader--> file values of a strip, to the model's device
        --there: scale, validity, SCL--> strip [T, C, h, W]; fill gaps; window scores;
          each window's n best frames --> batches [B, n, C, h, w]
        --model--> [B, 3, h*s, w*s] * blend weights --> row accumulators (sum, weight)
        --rows no later window touches--> uint8 RGB + mask (from a GPU: one transfer per
          row, after its model calls) --> raw file (partial run)
    all rows done --> tiled, compressed GeoTIFF / COG, renamed onto the output

:func:`run_inference` is the entry point. A row of windows is the unit of work
(:func:`~zoomsr.inference.rows.compute_row`, which the Ray path,
:mod:`zoomsr.inference.distributed`, ships to workers). Locally, ``threads`` rows are computed
at once (:func:`~zoomsr.inference.rows.local_rows`): while one row is in the model, the next
is read and the previous finished, each row's thread writing its own finished rows (the main
thread saves the resume state in row order), so a fast GPU is not left waiting on the CPU.
Model calls are serialised, so the model's memory is needed once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from zoomsr.errors import ConfigError, InputError
from zoomsr.inference.assemble import (
    DoneRow,
    ReadyRow,
    RowAssembler,
    RowChain,
    prepare_row,
)
from zoomsr.inference.grid import plan_grid
from zoomsr.inference.inputs import (
    Frame,
    discover_frames,
    is_s2naip_input,
    made_by_zoomsr,
)
from zoomsr.inference.inputs.rasters import read_cache
from zoomsr.inference.model import InferenceModel
from zoomsr.inference.options import (
    InferenceOptions,
    InferenceResult,
    RowCallback,
    check_uncertainty,
    for_device,
    rows_device,
)
from zoomsr.inference.progress import progress_bar
from zoomsr.inference.reader import SceneReader, read_cache_bytes
from zoomsr.inference.rows import (
    RowPart,
    RowResult,
    ScenePlan,
    blend_device,
    fit_open_files,
    local_strips,
)
from zoomsr.inference.run_record import run_fingerprint, scene_tags
from zoomsr.inference.side_outputs import side_outputs, write_side_outputs
from zoomsr.inference.windows import (
    WindowGrid,
    column_groups,
    group_read_width,
    group_span,
    windows_per_call,
)
from zoomsr.inference.writer import PartialRun, has_saved_state
from zoomsr.io.atomic import output_lock, refuse_existing, remove_stale_temps
from zoomsr.io.folders import require_writable_folder
from zoomsr.io.geotiff import column_chunks
from zoomsr.io.geotiff_stream import GeoTIFFProcess, GeoTIFFStream
from zoomsr.io.raw_raster import RawRaster
from zoomsr.stopping import interrupts_held

#: Row threads bring their rows' output to the host one at a time (a lock around the
#: transfer and the write). Off: on the CPU's fake of the GPU path (``meta`` device) the turns
#: cut the peak host memory of a 3856 px scene by 8 %, but on an H200 (2026-11-27, 3 runs each,
#: alternating) they cut it by 0.4 % and cost 3.4 % of the speed (a thread's transfer waits
#: for the model calls others queued). ``benchmarks/infer_throughput.py --turns`` turns them on.
ONE_ROW_ON_HOST = False

#: Where the output GeoTIFF is compressed while rows are computed: ``True`` in a child
#: process, ``False`` (default) in a thread of this one. The process shares no interpreter
#: lock with the row threads (beside one thread of pure Python it wrote 1.9x as fast as the
#: thread, 2-core CPU), but on an H200 (2026-11-27, 3856 px scene, alternating, 3 runs each)
#: runs with it made 95.5 km²/s against 109.3 with the thread, and 91.2 against 102.8 at the
#: CLI's defaults.
#: Same bytes either way; ``ZOOMSR_GEOTIFF_WRITER=process`` chooses it for a run.
WRITER_PROCESS = False


def check_output(output: str | os.PathLike[str], overwrite: bool, *, save_lr: bool = False,
                 preview: bool = False, inputs: Iterable[str | os.PathLike[str]] = (),
                 resume: bool = False) -> Path:
    """The output path, checked before any work: a GeoTIFF name, not a folder, none of the
    ``inputs``, in a folder that can be written, and new with its side outputs (unless
    ``overwrite``; or ``resume`` where a run left its saved state beside them: that run
    renames the output into place before it writes the side outputs and removes its folder,
    so a stop in between leaves outputs it wrote, which the resumed run writes again)."""
    out = Path(output)
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"{out}: the output must be a GeoTIFF (.tif or .tiff)")
    paths = [out, *side_outputs(out, save_lr, preview).values()]
    for p in paths:
        if p.is_dir():
            raise InputError(f"{p}: is a folder; give the output a file name")
    taken = {Path(p).resolve() for p in inputs}
    for p in paths:
        if p.resolve() in taken:
            raise InputError(f"{p}: is one of the inputs; write the output elsewhere")
    if resume and has_saved_state(out):
        # only outputs zoomsr wrote (the PNG preview carries no tags) are the run's own
        paths = [p for p in paths
                 if not (p.is_file() and (p.suffix.lower() == ".png" or made_by_zoomsr(p)))]
    refuse_existing(paths, overwrite)
    require_writable_folder(out.parent, str(out))
    return out


@contextlib.contextmanager
def writing(output: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``output`` for one run: its lock (:func:`~zoomsr.io.atomic.output_lock`: a second
    run of it is refused), and the temporary files that earlier runs killed outright (SIGKILL,
    the OOM killer) left beside it and its side outputs removed, none being another live
    run's."""
    out = Path(output)
    sides = side_outputs(out, True, True)
    with contextlib.ExitStack() as stack:
        # the side outputs' names too: another run's output may be named so
        for path in (out, *sides.values()):
            stack.enter_context(output_lock(path))
        # the GeoTIFF writer's temporary files end in .tif, whatever the output's suffix
        for path, suffix in ((out, ".tif"), (sides["lr"], ".tif"), (sides["preview"], ".png")):
            remove_stale_temps(path, suffix=suffix)
        yield


def run_scene(
    frames: Sequence[Frame],
    output: str | os.PathLike[str],
    model: InferenceModel,
    options: InferenceOptions | None = None,
    *,
    row_source: Callable[[ScenePlan, InferenceModel, Sequence[int]], Iterator[RowResult]]
    | None = None,
    on_row: RowCallback | None = None,
    ignored: Sequence[str] = (),
    empty: Sequence[Frame] = (),
) -> InferenceResult:
    """Super-resolve one scene of ``frames`` into ``output`` (see module docstring).

    ``row_source`` computes rows (default :func:`~zoomsr.inference.rows.local_rows` with
    ``options.threads``; the Ray path passes its own).
    ``on_row(done, total)`` is called after each window row is safely saved; an exception from
    it (e.g. ``KeyboardInterrupt``) stops the run, which ``options.resume`` can continue.
    ``empty``: frames seen to hold no valid pixel (``Discovery.empty``).
    """
    with writing(output):
        return _run_scene(frames, output, model, options, row_source=row_source,
                          on_row=on_row, ignored=ignored, empty=empty)


def _run_scene(
    frames: Sequence[Frame],
    output: str | os.PathLike[str],
    model: InferenceModel,
    options: InferenceOptions | None,
    *,
    row_source: Callable[[ScenePlan, InferenceModel, Sequence[int]], Iterator[RowResult]]
    | None,
    on_row: RowCallback | None,
    ignored: Sequence[str],
    empty: Sequence[Frame],
) -> InferenceResult:
    options = options or InferenceOptions()
    out = check_output(output, options.overwrite, save_lr=options.save_lr,
                       preview=options.preview, inputs=[p for f in frames for p in f.files],
                       resume=options.resume)
    # the device the rows are computed on (a Ray pool's workers: asking may start Ray, so
    # after the output's checks), else this model's: its defaults (GPU workers behind a CPU
    # head took the CPU's batch and windows), and whether the GeoTIFF is written meanwhile
    device = (row_source is not None and rows_device(row_source)) or model.device
    options = for_device(options, device)
    check_uncertainty(options.uncertainty, len(frames), len(empty), model.n_images,
                      empty[0].paths[0] if empty else None)
    extra = tuple(model.bands[1:])
    for f in frames:
        if tuple(a.name for a in f.extras) != extra:
            have = ",".join(("tci", *(a.name for a in f.extras)))
            raise InputError(f"{f.paths[0]}: frame of bands {have}, but {model.label} takes "
                             f"{','.join(model.bands)}")
    start = time.perf_counter()
    rows_at = [0.0, 0.0]  # when the first and the last row reached this thread
    grid = plan_grid(frames, model.scale, native=options.native_grid)
    windows = WindowGrid(grid.height, grid.width, options.tiling,
                         getattr(model, "size_multiple", 1))
    plan = ScenePlan(SceneReader(list(frames), grid), grid, windows, model.n_images,
                     windows_per_call(cast(int, options.batch_size), options.tiling, windows),
                     options.uncertainty, options.seed)
    s = model.scale
    k = options.uncertainty
    groups = column_groups(windows, options.column_width)
    fingerprint = run_fingerprint(plan, model, options, groups, device)
    run = PartialRun(out, fingerprint)
    hr = run.raw("sr", grid.hr_width, grid.hr_height, 3 + (1 if k else 0) + 1)
    lr = run.raw("lr", grid.width, grid.height, 4) if options.save_lr else None
    rasters = [hr] + ([lr] if lr is not None else [])

    def prepare(res: RowResult) -> ReadyRow:
        return prepare_row(res, windows, s, with_lr=lr is not None)

    def finish_and_write(p: ScenePlan, chain: RowChain) -> Callable[[RowResult], DoneRow]:
        # A row's output rows are finished where it was blended and written from its thread,
        # so a row waiting for the consumer holds only its carry: on a GPU, up to --threads
        # rows of output were held, and the carried rows came back as floats twice.
        col = group_span(windows, p.columns or (0, len(windows.xs)))[0]

        def run(res: RowResult) -> DoneRow:
            # Finished where it was blended (on a GPU: queued now, behind this row's own model
            # calls, not behind rows queued while it waits), then one row's output on the
            # host at a time: the transfers of the rows in flight were the width-proportional
            # part of a GPU run's host memory (memray, 3856 px: 215 of 444 MB).
            row = chain.finished(res, with_lr=lr is not None)
            with one_on_host:
                block, lr_rows, few, sums, weights = chain.bring_back(row)
                del row
                hr.write_block(windows.ys[res.row] * s, col * s, block)
                if lr is not None:
                    lr.write_block(windows.ys[res.row], col,
                                   cast(np.ndarray, lr_rows))  # (made with_lr)
                del block, lr_rows
                # from a GPU the carry is a view of the row's one transfer: own it, not the
                # buffer
                return DoneRow(res.row, _owned(sums), _owned(weights), few, res.windows)

        return run

    one_on_host: Any = threading.Lock() if ONE_ROW_ON_HOST else contextlib.nullcontext()

    threads = 1  # rows read at once in this process (the Ray path reads in its workers)
    if row_source is None:
        threads = options.threads or (1 if model.device.type == "cpu" else 3)
        threads = fit_open_files(threads, sum(len(f.files) for f in frames))
    widest = max(group_read_width(windows, g) for g in groups)
    # one reader per row thread (its own datasets: GDAL keeps decoded blocks per dataset)
    cache = read_cache_bytes(frames, grid, windows.win_h, widest,
                             threads if row_source is None else 0, hr.row_bytes,
                             stride=windows.tiling.stride)
    state = run.start(rasters, options.resume, options.overwrite)
    first_group, first_row, few = 0, 0, 0
    carry: tuple[np.ndarray, np.ndarray] | None = None
    if state is not None:
        first_group = int(state.get("group", 0))
        first_row, few = int(state["rows_done"]), int(state["few_frames"])
        carry = state["arrays"]["sums"], state["arrays"]["weights"]
        if first_row == windows.n_rows and first_group + 1 < len(groups):
            first_group, first_row, carry = first_group + 1, 0, None  # that group was done
    per_row = len(windows.xs)
    c0, c1 = groups[first_group]  # windows done: whole earlier groups, then rows of this one
    done_before = groups[first_group][0] * windows.n_rows + (c1 - c0) * first_row
    computed = 0
    # GDAL's cache for this run, then as it was; a run stopped before its first row is
    # saved leaves no partial folder (nothing in it to resume)
    with run.removed_unless_saved(), read_cache(cache):
        names = ["red", "green", "blue"] + (["uncertainty"] if k else [])
        # each column strip's output columns are compressed as that strip goes (so no more
        # than a strip's width of output is held), the block it shares with the next after it
        chunks = column_chunks(hr.width, [group_span(windows, g)[1] * s for g in groups])
        # Compress while computing only when the model is elsewhere: on a CPU the writer
        # would take cores from the model (measured ~10 % slower on 2 cores). Same bytes.
        live = device.type != "cpu"
        in_process = _writer_in_process(WRITER_PROCESS)
        # a child needs an interpreter to start and a pipe to hand over (not on Windows)
        in_process = in_process and os.name == "posix" and bool(sys.executable)
        stream = (GeoTIFFProcess if in_process else GeoTIFFStream)(
            hr, out, crs=grid.crs, transform=grid.hr_transform, band_names=names,
            cog=options.cog, chunks=chunks, deflate_level=options.deflate_level)
        items: Iterator[Any] | None = None
        try:  # the writer starts inside: a Ctrl-C from its start on stops it
            stream.start()
            if (first_group or first_row) and live:  # what a resumed run finished before
                final = windows.final_until(first_row - 1) * s if first_row else 0
                stream.rows_done(final, chunk=first_group)
            with progress_bar(len(windows), done_before, options.progress) as bar:
                task = None
                if bar is not None:
                    task = bar.add_task("super-resolving", total=len(windows),
                                        completed=done_before)
                # Local rows move the bar window by window (a row of a slow model, SR3 on
                # a CPU, takes minutes); the rest of a row's count when it is done.
                ticked: dict[tuple[int, int], int] = {}  # (strip, window row): windows
                ticks = threading.Lock()

                def tick(key: tuple[int, int]) -> None:
                    with ticks:
                        ticked[key] = ticked.get(key, 0) + 1
                    bar.advance(task, 1)

                todo = list(range(first_group, len(groups)))  # the strips with rows left

                def strip(g: int) -> tuple[ScenePlan, range, Any]:
                    """Strip ``g``'s plan, rows left and carry (a resumed run's, or none)."""
                    rows = range(first_row if g == first_group else 0, windows.n_rows)
                    g_carry = carry if g == first_group else None
                    return (dataclasses.replace(plan, columns=groups[g]), rows,
                            g_carry or (None, None))

                if row_source is None:
                    parts = []
                    for g in todo:
                        g_plan, rows, g_carry = strip(g)
                        a, b, _ = group_span(windows, groups[g])
                        chain = RowChain(windows, s, hr.bands - 1, (b - a) * s, *g_carry)
                        parts.append(RowPart(
                            g_plan, rows, finish_and_write(g_plan, chain), chain.link,
                            None if bar is None else functools.partial(_keyed, tick, g)))
                    # rows blended on the GPU if there is one, finished in their threads; the
                    # threads go on from a strip's last rows to the next one's first
                    items = local_strips(parts, model, threads, blend_device(model))
                else:
                    items = _strips_assembled(todo, strip, row_source, model, windows, s, hr,
                                              lr, prepare)
                for i, done in items:
                    rows_at[0] = rows_at[0] or time.perf_counter()
                    rows_at[1] = time.perf_counter()
                    g = todo[i]
                    few += done.few_frames
                    computed += done.windows
                    run.save({"group": g, "rows_done": done.row + 1, "few_frames": few},
                             {"sums": done.carry_sums, "weights": done.carry_weights})
                    if live:
                        stream.rows_done(windows.final_until(done.row) * s, chunk=g)
                    if bar is not None:
                        with ticks:
                            rest = done.windows - ticked.pop((g, done.row), 0)
                        bar.update(task, advance=rest)
                    if on_row is not None:
                        on_row(done.row + 1, windows.n_rows)
                    del done  # its carry is not kept while the next row is computed
            # inside the try: Ctrl-C while the last strips are compressed removes the temp file
            tags = scene_tags(plan, model, options, few, options.native_grid, fingerprint["files"])
            finishing = time.perf_counter()
            stream.finish(tags)
            finished = time.perf_counter()
        except BaseException:
            stream.abandon()
            raise
        finally:
            if items is not None and hasattr(items, "close"):
                items.close()  # stops row threads now, not when the generator is collected
            plan.reader.close()
    lr_path, preview = write_side_outputs(out, options, lr, grid, tags,
                                          "resampled LR mosaic (mean of valid frames)")
    with interrupts_held():  # not cut halfway: an empty partial folder made --resume refuse
        run.remove()
    end = time.perf_counter()
    phases = {"first_row": rows_at[0] - start, "last_row": rows_at[1] - start} if rows_at[0] else {}
    phases |= {"output_finish": finished - finishing, "after_output": end - finished}
    return InferenceResult(
        output=out, grid=grid, frames=list(frames), windows=len(windows),
        windows_computed=computed, rows_resumed=done_before // max(per_row, 1),
        few_frame_windows=few,
        seconds=end - start, model=model.describe(), lr_output=lr_path,
        preview=preview, ignored=list(ignored), phases=phases,
    )


#: ``ZOOMSR_GEOTIFF_WRITER=thread`` (or ``process``) overrides where the output GeoTIFF is
#: written while rows are computed (:data:`WRITER_PROCESS`): a way back to the thread where a
#: child process misbehaves (a sandbox that forbids them).
WRITER_ENV = "ZOOMSR_GEOTIFF_WRITER"


def _writer_in_process(default: bool) -> bool:
    """Whether this run's GeoTIFF writer is a child process: ``default``, unless
    :data:`WRITER_ENV` says otherwise (an unknown value is refused, naming it)."""
    choice = os.environ.get(WRITER_ENV, "").strip().lower()
    if choice not in ("", "thread", "process"):
        raise ConfigError(f"{WRITER_ENV}={os.environ[WRITER_ENV]}: expected thread or process")
    return default if not choice else choice == "process"


def _keyed(tick: Callable[[tuple[int, int]], None], g: int, r: int) -> None:
    """``tick((g, r))``: a window of strip ``g``'s window row ``r`` blended."""
    tick((g, r))


def _strips_assembled(todo: list[int], strip: Callable[[int], tuple[ScenePlan, range, Any]],
                      row_source: Callable[..., Iterator[RowResult]], model: InferenceModel,
                      windows: WindowGrid, s: int, hr: RawRaster, lr: RawRaster | None,
                      prepare: Callable[[RowResult], ReadyRow]
                      ) -> Generator[tuple[int, DoneRow], None, None]:
    """The rows of a row source (Ray), strip after strip, assembled and written here: ``(k,
    row)`` for each row of strip ``todo[k]``."""
    for k, g in enumerate(todo):
        g_plan, rows, g_carry = strip(g)
        a, b, _ = group_span(windows, g_plan.columns)  # type: ignore[arg-type]
        assembler = RowAssembler(windows, s, hr.bands - 1, (b - a) * s, *g_carry)
        inner = _assembled(row_source(g_plan, model, rows), assembler, prepare, hr, lr, a, s)
        try:
            for done in inner:
                yield k, done
                del done
        finally:
            close = getattr(inner, "close", None)
            if close is not None:
                close()  # stops the strip's row source now


def _owned(a: np.ndarray) -> np.ndarray:
    return a if a.base is None else a.copy()


def _assembled(items: Iterable[Any], assembler: RowAssembler,
               prepare: Callable[[RowResult], ReadyRow], hr: RawRaster, lr: RawRaster | None,
               col: int, scale: int) -> Iterator[DoneRow]:
    """Rows from a row source that does not have the carry (Ray workers: :class:`ReadyRow`
    or :class:`RowResult`), put together here in order and written."""
    try:
        for item in items:
            ready = item if isinstance(item, ReadyRow) else prepare(item)
            del item
            top, block = assembler.add(ready)
            hr.write_block(top, col * scale, block)
            if lr is not None and ready.lr is not None:
                lr.write_block(assembler.windows.ys[ready.row], col, ready.lr)
            done = DoneRow(ready.row, assembler.sums, assembler.weights, ready.few_frames,
                           ready.windows)
            del ready, block  # not kept while the next row is computed
            yield done
    finally:
        if hasattr(items, "close"):
            items.close()


def run_inference(
    inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    output: str | os.PathLike[str],
    model: InferenceModel,
    options: InferenceOptions | None = None,
    **kwargs: Any,
) -> InferenceResult:
    """Discover the frames in ``inputs`` (files, folders, manifests) and run :func:`run_scene`."""
    options = options or InferenceOptions()
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if is_s2naip_input(items):
        from zoomsr.inference.s2naip import run_s2naip

        if kwargs.pop("row_source", None) is not None:
            raise InputError("S2-NAIP chunk input runs locally (no --ray)")
        return run_s2naip(items[0], output, model, options, **kwargs)
    found = discover_frames(inputs, radiometry=options.radiometry, rgb_bands=options.rgb_bands,
                            dn_offset=options.dn_offset, extra_bands=model.bands[1:])
    return run_scene(found.frames, output, model, options, ignored=found.ignored,
                     empty=found.empty, **kwargs)
