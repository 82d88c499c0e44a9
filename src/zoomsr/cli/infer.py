"""``zoomsr infer``: super-resolve a Sentinel-2 time series into one georeferenced GeoTIFF."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer

from zoomsr.cli.interrupt import on_interrupt
from zoomsr.errors import ConfigError
from zoomsr.io.deflate import DEFLATE_LEVEL, DEFLATE_LEVELS

if TYPE_CHECKING:
    from rasterio.crs import CRS

    from zoomsr.inference.distributed import RowSource
    from zoomsr.inference.model import InferenceModel
    from zoomsr.inference.options import InferenceOptions, InferenceResult
    from zoomsr.inference.scenes import Scene


#: The value of ``--ray`` given alone (``--ray`` with no address, or ``--ray=``); resolved by
#: :func:`default_ray_address` when the command runs.
RAY_DEFAULT = ""
#: Narrowest --column-width: two of the largest automatic windows (256 LR px).
MIN_COLUMN_WIDTH = 512

_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):[0-9]{1,5}")


def is_ray_address(token: str) -> bool:
    """Whether ``token``, written after ``--ray``, is read as its address: ``local``, ``auto``,
    ``host:port`` (or ``[ipv6]:port``) or a ``ray://`` URL. Anything else (an input path, an
    object-store URL, another option) is not, so ``--ray`` before it stands alone."""
    return (token in ("local", "auto") or token.startswith("ray://")
            or _HOST_PORT.fullmatch(token) is not None)


def normalise_ray_flag(args: Sequence[str]) -> list[str]:
    """Let ``--ray`` go without a value in the ``infer`` arguments ``args`` (click options
    cannot take an optional value): ``--ray`` followed by an address (:func:`is_ray_address`)
    is kept as it is; ``--ray`` at the end or before anything else becomes ``--ray=`` (the
    default, :data:`RAY_DEFAULT`) and the next token is parsed as usual. The rule reads the
    token only, never the file system, so ``zoomsr infer --ray scene/ -o out.tif`` always
    means the default with input ``scene/``; an input literally named ``local``, ``auto`` or
    like ``host:port`` goes before ``--ray`` or as ``./local``, and any other address is
    given as ``--ray=VALUE``. Tokens after ``--`` are left alone."""
    out: list[str] = []
    for i, token in enumerate(args):
        if token == "--":
            out.extend(args[i:])
            break
        if token == "--ray" and (i + 1 == len(args) or not is_ray_address(args[i + 1])):
            out.append(f"--ray={RAY_DEFAULT}")
        else:
            out.append(token)
    return out


def default_ray_address() -> str:
    """What ``--ray`` alone joins or starts, chosen as ``ray.init()`` with no address chooses:
    the cluster named by ``RAY_ADDRESS``, else the last cluster started with ``ray start`` on
    this machine (both as ``"auto"``), else a new local instance (``"local"``, with
    ``--ray-workers`` CPUs). Unlike ``"auto"`` alone, a Ray instance that another program
    started with ``ray.init()`` is not joined."""
    if os.environ.get("RAY_ADDRESS"):
        return "auto"
    try:
        from ray._private.services import find_bootstrap_address
    except ImportError:  # no Ray (the pool says so) or a Ray without this helper: start one
        return "local"
    address = find_bootstrap_address(None)
    if address is None:
        return "local"
    from zoomsr.inference.distributed import RayUnavailableError, check_reachable

    try:  # a cluster stopped without `ray stop` (a reboot...) leaves its file: ray.init
        check_reachable(str(address))  # then retried it for many minutes
    except RayUnavailableError as exc:
        raise RayUnavailableError(
            f"--ray: the Ray cluster last started on this machine with `ray start` "
            f"({address}, from Ray's ray_current_cluster file) does not answer: `ray stop` "
            f"forgets it, `--ray local` starts a new instance ({exc})") from None
    return "auto"


def _rgb(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--rgb-bands: expected R,G,B band numbers, got {text!r}") from None
    if len(values) != 3:
        raise ConfigError(f"--rgb-bands: expected three band numbers, got {text!r}")
    return values


#: ``InferenceOptions``' and ``Tiling``'s parameters, which their checks name, -> the flags.
FLAGS = {"window": "--window", "overlap": "--overlap", "margin": "--margin",
         "batch_size": "--batch-size", "threads": "--threads", "column_width": "--column-width",
         "deflate_level": "--deflate-level", "uncertainty": "--uncertainty", "seed": "--seed",
         "radiometry": "--radiometry", "precision": "--precision"}


@contextmanager
def flags_named() -> Iterator[None]:
    """A ConfigError of the library's option checks, which name a parameter first ("window
    must be >= 1 LR pixel"), re-raised naming the flag ("--window must be ...")."""
    try:
        yield
    except ConfigError as exc:
        text = str(exc)
        name = text.split(" ", 1)[0]
        if name not in FLAGS:
            raise
        raise ConfigError(FLAGS[name] + text[len(name):]) from None


def load_model(weights: str | None, model: str | None, config: list[str], random_weights: bool,
               device: str, precision: str, bands: str | None = None,
               sample_steps: int | None = None, seed: int = 0):
    """Resolve ``--weights`` (path or registry name, default Real-ESRGAN) into a model."""
    from zoomsr.devices import resolve_device
    from zoomsr.inference import build_inference_model
    from zoomsr.models import parse_config
    from zoomsr.weights import registry

    resolve_device(device, option="--device")  # the library's own check would say "device"
    cfg = parse_config(model, config) if model is not None else {}
    if config and model is None:
        raise ConfigError("--config needs --model")
    if random_weights and weights is not None:
        raise ConfigError("--random-weights and --weights exclude each other: give one")
    if model is not None and weights is None and not random_weights:
        # it was ignored: the default Real-ESRGAN ran whatever --model said
        raise ConfigError(f"--model {model} needs --weights (a checkpoint of it) or "
                          "--random-weights")
    if random_weights:
        return build_inference_model(model=model, config=cfg, random_weights=True,
                                     device=device, precision=precision, bands=bands,
                                     seed=seed, sample_steps=sample_steps)
    name = weights or registry.DEFAULT_WEIGHTS  # a file, or a registry name
    return build_inference_model(weights=name, model=model, config=cfg, device=device,
                                 precision=precision, label=Path(name).name, bands=bands,
                                 seed=seed, sample_steps=sample_steps)


def infer(
    # strings, not Paths: Typer makes "" (an unset variable) Path("."), the current folder
    inputs: list[str] | None = typer.Argument(
        None, help="Sentinel-2 rasters (GeoTIFF/JP2/VRT), folders of them, a manifest (.txt/"
        ".json), or an S2-NAIP dataset folder."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Output GeoTIFF (.tif)."),
    scenes: Path | None = typer.Option(
        None, "--scenes", help='Many scenes: a JSON manifest {"scenes": [{"inputs": [...], '
        '"output": "x.tif"}, ...]} (instead of INPUTS and --output).'),
    weights: str | None = typer.Option(
        None, "--weights", "-w",
        help="Checkpoint path or registry name (`zoomsr weights list`); default "
        "realesrgan-x4plus (single image, offline)."),
    model: str | None = typer.Option(
        None, "--model", help="Architecture, for checkpoints that do not name it or with "
        "--random-weights."),
    config: list[str] = typer.Option([], "--config", "-c", help="Model config key=value."),
    random_weights: bool = typer.Option(
        False, "--random-weights", help="Seeded random weights (tests, benchmarks only)."),
    bands: str | None = typer.Option(
        None, "--bands", help="Bands per frame the model takes, e.g. tci,b08 (default: from "
        "the registry or the zoomsr checkpoint, else tci). Extra bands are read from files of "
        "the same date (…_B08.tif) or JSON manifest keys."),
    native_grid: bool = typer.Option(
        False, "--native-grid", help="Keep the input CRS (output pixel = input / scale) "
        "instead of EPSG:3857 at 9.555 m."),
    window: int | None = typer.Option(
        None, "--window", help="Window side, LR pixels (default: of 128, 192 and 256, the "
        "size whose windows cover the least area of the scene, i.e. the fastest)."),
    overlap: int = typer.Option(32, "--overlap", help="Window overlap, LR pixels."),
    margin: int | None = typer.Option(
        None, "--margin", help="Ignored border at inner window edges, LR px (default overlap/4)."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Windows per model call; without --window, counted "
        "in 128 px windows (a 256 px window counts 4, a 512 px one 16), so memory does not "
        "depend on the size chosen (default: 8 on a CPU; on a GPU 32, and with --window as "
        "many as make 32 windows of 128 px: 8 of 256 px)."),
    column_width: int = typer.Option(
        4096, "--column-width", min=0, help="Process wider scenes in column strips of about "
        "this many LR px, so memory does not grow with the width (0: never; at least "
        "512, since each strip also computes the windows on its borders: 1.5x the work at "
        "512 with 256 px windows, 1.06x at the default). Same pixels."),
    threads: int | None = typer.Option(
        None, "--threads", min=1, help="Rows of windows computed at once, so reads and "
        "blending overlap the model (default: 3 on a GPU, 1 on a CPU)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, mps."),
    precision: str = typer.Option("auto", "--precision",
                                  help="auto (bf16 on CUDA; with --ray, when the workers get "
                                  "GPUs), fp32 or bf16."),
    uncertainty: int = typer.Option(
        0, "--uncertainty", help="K >= 2: add band 4, the per-pixel standard deviation (x 255, "
        "mean over RGB) of the outputs of K frame subsets; needs more dates than the model "
        "takes (9+ for an 8-image model)."),
    cog: bool = typer.Option(False, "--cog", help="Write a Cloud-Optimized GeoTIFF."),
    deflate_level: int = typer.Option(
        DEFLATE_LEVEL, "--deflate-level", min=DEFLATE_LEVELS[0], max=DEFLATE_LEVELS[-1],
        help="DEFLATE level of the GeoTIFFs: 1 fastest .. 12 smallest (on a GPU the writer's "
        "compression is what a run waits for at its end; 6, GDAL's default, took 3.3x as "
        "long as 4 for a file 7 % smaller). Same pixels."),
    save_lr: bool = typer.Option(False, "--save-lr", help="Also write the LR mosaic "
                                 "(OUT.lr.tif)."),
    preview: bool = typer.Option(False, "--preview", help="Also write OUT.preview.png."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    radiometry: str = typer.Option("auto", "--radiometry",
                                   help="auto, tci, dn (16-bit) or reflectance (float)."),
    rgb_bands: str | None = typer.Option(None, "--rgb-bands",
                                         help="R,G,B band numbers (1-based) in multi-band "
                                         "files."),
    dn_offset: float | None = typer.Option(
        None, "--dn-offset", help="DN offset to subtract, 0 or 1000 (1000 from processing "
        "baseline 04.00), for 16-bit files whose metadata does not give it; default: from the "
        "metadata."),
    ray: str | None = typer.Option(
        None, "--ray", metavar="[ADDRESS]",
        help="Run on Ray. Alone: join the cluster in RAY_ADDRESS or one started with `ray "
        "start` here, else start a local instance (as ray.init() does). Or 'local' (start "
        "one), 'auto' (join a running one), host:port or ray://host:port. The token after "
        "--ray is read as the address only in those forms (else it stays an input); write "
        "other addresses as --ray=ADDRESS."),
    ray_workers: int = typer.Option(2, "--ray-workers", help="Model workers on Ray."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
    seed: int = typer.Option(0, "--seed", help="Seed for uncertainty subsets, random weights "
                             "and SR3's sampling noise."),
    sample_steps: int | None = typer.Option(
        None, "--sample-steps", help="SR3 (diffusion) only: DDIM steps per window (default 50; "
        "fewer is faster, more follows the model's training closer)."),
) -> None:
    """Super-resolve a time series of co-registered Sentinel-2 images into one GeoTIFF."""
    from zoomsr.inference import InferenceOptions, Tiling
    from zoomsr.inference.inputs import is_s2naip_input
    from zoomsr.inference.pipeline import run_inference
    from zoomsr.inference.run_record import finished_before, finished_same_run
    from zoomsr.inference.side_outputs import side_outputs
    from zoomsr.stopping import sigterm_as_interrupt

    if scenes is not None and (inputs or output is not None):
        raise ConfigError("--scenes replaces INPUTS and --output: give either a scenes "
                          "manifest or inputs with --output, not both")
    if scenes is None and not inputs:
        raise ConfigError("no input given: pass INPUTS with --output, or --scenes MANIFEST.json")
    if scenes is None and output is None:
        raise ConfigError("--output is required (or use --scenes MANIFEST.json)")
    if ray_workers < 1:  # (checked with or without --ray: a wrong value is not ignored)
        raise ConfigError(f"--ray-workers must be >= 1, got {ray_workers}")
    if 0 < column_width < MIN_COLUMN_WIDTH:
        raise ConfigError(
            f"--column-width {column_width}: strips narrower than {MIN_COLUMN_WIDTH} LR px "
            "recompute the windows on their borders so often that the work grows by up to "
            f"about 2x (each strip computes every window that covers it); use "
            f"{MIN_COLUMN_WIDTH} or more (memory grows with the width only up to it), or 0 "
            "for one strip")
    manifest = None
    if scenes is not None:
        from zoomsr.inference.scenes import load_scenes

        manifest = load_scenes(scenes)  # fail on a bad manifest before building the model
    with flags_named():
        options = InferenceOptions(
            native_grid=native_grid, tiling=Tiling(window, overlap, margin),
            batch_size=batch_size, threads=threads, column_width=column_width,
            deflate_level=deflate_level, uncertainty=uncertainty, cog=cog, save_lr=save_lr,
            preview=preview, resume=resume, overwrite=overwrite, progress=progress, seed=seed,
            radiometry=radiometry, rgb_bands=_rgb(rgb_bands), dn_offset=dn_offset,
        )
    if manifest is not None:  # before the model is built and Ray started
        from zoomsr.inference.scenes import check_scene_outputs

        check_scene_outputs(manifest, options, scenes)
    # (without --scenes, INPUTS and --output were given: checked above)
    if manifest is None and resume and not overwrite:
        # a side output missing: before the model
        finished_before(cast(Path, output), save_lr, preview)
    if ray is not None and manifest is None and is_s2naip_input(inputs or []):
        raise ConfigError(f"{cast('list[str]', inputs)[0]}: S2-NAIP chunk input runs locally; "
                          "drop --ray (its tiles are small and independent: one machine "
                          "does them fast)")
    with flags_named():  # (--precision, checked as the model is built)
        net = load_model(weights, model, config, random_weights, device, precision, bands,
                         sample_steps, seed)
    # before Ray is started or joined: a requeued job whose cluster is gone still succeeds.
    # With --ray, `auto` is the workers' precision, known once Ray is up: either is taken
    if manifest is None and resume and not overwrite and finished_same_run(
            cast(Path, output), cast("list[str]", inputs), net, options,
            any_precision=ray is not None and precision == "auto"):
        # as --scenes does: a re-run of a command that finished (a requeued job) succeeds; any
        # other file there (not a zoomsr output) is refused as usual
        typer.echo(f"{output}: finished by an earlier run, nothing to resume (--overwrite "
                   "computes it again)")
        return
    if ray == RAY_DEFAULT:
        ray = default_ray_address()
    # SIGTERM (SLURM's time limit, `kill`, `docker stop`) stops a run as Ctrl-C does: rows
    # kept, temporary files removed, one line on how to go on (it left a temporary file)
    with sigterm_as_interrupt(), ExitStack() as stack:
        pool = None
        if ray is not None:
            from zoomsr.inference.distributed import RayPool

            # one pool for the whole job: scenes and a wide scene's column strips reuse it
            pool = stack.enter_context(RayPool(ray, workers=ray_workers))
            if precision == "auto":
                # auto means bf16 where the rows are computed on a GPU: the workers', not
                # this machine's (a head node without a GPU ran GPU workers in fp32)
                net = replace(net, autocast=pool.worker_gpus() > 0)
        rows = pool.rows if pool is not None else None
        if manifest is not None:
            on_interrupt(lambda: _kept_scenes([sc.output for sc in manifest]))
            _run_scenes(manifest, net, options, rows)
            return
        out = cast(Path, output)  # given without --scenes (checked above)
        sides = list(side_outputs(out, save_lr, preview).values())
        before = {p: _identity(p) for p in (out, *sides)}  # files there now: not this run's
        on_interrupt(lambda: _kept(out, sides, before))
        result = run_inference(cast("list[str]", inputs), out, net, options, row_source=rows)
    _report(result, net)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _kept(output: Path, sides: list[Path], before: dict[Path, tuple[int, int] | None]) -> str:
    """What an interrupted run of ``output`` (with side outputs ``sides``) kept, and how to go
    on. ``before``: each file's :func:`_identity` when the run started; another file there now
    is this run's, renamed into place once complete (a Ctrl-C landing just after that said
    nothing, or only rows, was kept)."""
    from zoomsr.inference.writer import has_saved_state, partial_dir

    def written(path: Path) -> bool:
        return _identity(path) not in (None, before.get(path))

    if written(output):
        missing = [p.name for p in sides if not written(p)]
        if missing:  # the run's state is still there: --resume writes them
            return (f"interrupted after {output} was written (it is complete), before "
                    f"{' and '.join(missing)}: run the same command with --resume to write "
                    f"{'them' if len(missing) > 1 else 'it'}")
        if has_saved_state(output):  # only the removal of the run's partial folder was left
            shutil.rmtree(partial_dir(output), ignore_errors=True)
        return f"interrupted after {output} was written: it is complete"
    if has_saved_state(output):
        return (f"interrupted: the rows finished so far are kept (in {partial_dir(output)}); "
                "run the same command with --resume to continue")
    return "interrupted before the first row was finished: nothing was kept"


def _kept_scenes(outputs: list[Path]) -> str:
    """What an interrupted ``--scenes`` run kept (finished outputs, rows of unfinished
    ones), and how to go on."""
    from zoomsr.inference.writer import has_saved_state

    done = sum(o.is_file() and not has_saved_state(o) for o in outputs)
    started = sum(has_saved_state(o) for o in outputs)
    if not done and not started:
        return "interrupted before the first row was finished: nothing was kept"
    return (f"interrupted: {done} of {len(outputs)} scene output(s) are there and the rows "
            f"finished of {started} other(s) are kept; run the same command with --resume to "
            "continue")


#: At most this many files set aside are listed one by one; more are summed up by reason.
IGNORED_LISTED = 8


def ignored_lines(ignored: Sequence[str], limit: int = IGNORED_LISTED) -> list[str]:
    """The lines saying what discovery set aside (``"PATH: reason"`` each): each one, or, if
    more than ``limit``, one line per reason with the count and a first example (a SAFE
    product's other bands and resolutions made 28 lines of ~200 characters per date)."""
    if len(ignored) <= limit:
        return list(ignored)
    groups: dict[str, list[str]] = {}
    for line in ignored:
        _, _, reason = line.partition(": ")
        # the same reason whatever file it names ("same date as X_TCI.tif", "(R10m/...)")
        key = re.sub(r"\S+\.[A-Za-z0-9]{2,5}\b", "...", re.sub(r"\s*\([^)]*\)", "", reason))
        groups.setdefault(key or line, []).append(line)
    return [f"{len(lines)} files: {key} (e.g. {lines[0].partition(': ')[0]})"
            if len(lines) > 1 else lines[0] for key, lines in groups.items()]


def _fewer_than(n: int, noun: str) -> str:
    """``fewer than 8 dates``; ``no date`` for a single-image model."""
    return f"no {noun}" if n == 1 else f"fewer than {n} {noun}s"


def crs_label(crs: CRS) -> str:
    """``EPSG:32632`` where the CRS is exactly that code, else its PROJ string: rasterio's
    ``to_string`` names the closest code (70 % alike: a custom CRS with other datum shifts
    was said to be EPSG:23032, which the file is not)."""
    auth = crs.to_authority(confidence_threshold=100)
    return ":".join(auth) if auth else (crs.to_proj4().replace("=True", "") or crs.to_wkt())


def _report(result: InferenceResult, net: InferenceModel) -> None:
    g = result.grid
    typer.echo(f"wrote {result.output} ({g.hr_width}x{g.hr_height} px, "
               f"{g.resolution / g.scale:.4g} {g.unit}, {crs_label(g.crs)})")
    bands = "" if net.bands == ("tci",) else f" of bands {','.join(net.bands)}"
    source = (f"{len(result.frames)} input frame(s); {result.windows} window(s)" if result.frames
              else f"{result.windows} S2-NAIP tile(s), each a chunk")
    typer.echo(f"model {net.label} ({net.n_images} image(s){bands}), {source}"
               + (f", {result.rows_resumed} window rows resumed" if result.rows_resumed else ""))
    layers = [f.clouds.name for f in result.frames if f.clouds is not None]
    if layers:
        by = " and ".join(f"{n.upper()} for {layers.count(n)}" for n in ("scl", "msk_classi")
                          if n in layers)
        typer.echo(f"frame choice: clouds counted ({by} of {len(result.frames)} date(s))")
    if result.few_frame_windows and 0 < len(result.frames) < net.n_images:
        typer.echo(f"note: {len(result.frames)} date(s) for a model of {net.n_images} images: "
                   "the best dates were repeated in every window")
    elif result.few_frame_windows and not result.frames:  # S2-NAIP tiles
        typer.echo(f"note: {result.few_frame_windows} tile(s) had "
                   f"{_fewer_than(net.n_images, 'time step')} free of black pixels where other "
                   "steps have data (a short series, or black steps): the black pixels were "
                   "filled from the other steps, and a series shorter than the model's "
                   "repeated its best steps")
    elif result.few_frame_windows:
        typer.echo(f"note: {result.few_frame_windows} window(s) had "
                   f"{_fewer_than(net.n_images, 'date')} free of nodata where other dates "
                   "have data (gaps, swath edges, smaller footprints); the gaps were filled "
                   "from the other dates")
    for line in ignored_lines(result.ignored):
        typer.echo(f"ignored: {line}")
    share = result.windows_computed / result.windows if result.windows else 1.0
    part = "" if share >= 1 else f", {share:.0%} of it computed in this run"
    typer.echo(f"{result.area_km2:.3f} km2{part} in {result.seconds:.1f} s "
               f"({result.km2_per_s:.3g} km2/s)")
    for extra in (result.lr_output, result.preview):
        if extra is not None:
            typer.echo(f"wrote {extra}")


def _run_scenes(manifest: list[Scene], net: InferenceModel, options: InferenceOptions,
                rows: RowSource | None) -> None:
    """Run every scene of ``manifest`` with one model (and ``rows``: one Ray pool's); exit
    non-zero if any scene failed, after the others ran."""
    from zoomsr.inference.scenes import SceneOutcome, run_scenes

    def on_scene(outcome: SceneOutcome) -> None:
        head = f"scene {outcome.scene.index + 1}/{len(manifest)}"
        if outcome.status == "done" and outcome.result is not None:
            typer.echo(f"{head}:")
            _report(outcome.result, net)
        elif outcome.status == "skipped":
            typer.echo(f"{head}: {outcome.scene.output} exists, skipped (--resume)")
        else:
            typer.echo(f"{head}: failed ({outcome.scene.output.name})")

    report = run_scenes(manifest, net, options, row_source=rows, on_scene=on_scene)
    typer.echo(f"{len(report.done)} scene(s) done, {len(report.skipped)} skipped, "
               f"{len(report.failed)} failed")
    if report.failed:
        for o in report.failed:
            typer.echo(f"failed: {o.scene.name}: {o.error}", err=True)
        # 1 when any failure was a runtime one (a requeue may retry it), else 2 (inputs)
        codes = {o.exit_code for o in report.failed}
        raise typer.Exit(1 if 1 in codes else max(codes))
