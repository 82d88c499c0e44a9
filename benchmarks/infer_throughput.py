"""Scene-inference throughput and memory: bare model vs the whole ``zoomsr infer`` pipeline.

Measures, on this machine, in one run:

1. the bare model forward throughput: batches of 32 x 32 LR chunks of ``T`` images through
   RRDBNet (ESRGAN; full size by default: 64 features, 23 blocks, growth 32, 8 images), in
   chunks per second, with inputs and outputs in the model device's memory, at each
   ``--batch`` size given (the best is the reference);
2. the pipeline's throughput on a generated georeferenced scene of ``--size`` LR pixels a side
   (T uint8 TCI GeoTIFFs on the training grid): discovery, windowed reads, frame choice, model,
   blending, the raw rows and the final tiled, compressed GeoTIFF, all included; expressed in
   32 x 32 output chunks per second (so comparable with 1.) and km² of output per second;
3. the peak resident memory (and on CUDA, the peak GPU memory torch allocated) of the
   pipeline process for that scene and for one about 4x larger (``2 * size - overlap`` a
   side, so that both tile into whole windows when ``size = k * (window - overlap) +
   overlap``), each run in a fresh subprocess;
4. with ``--ceiling``, the pipeline on the smaller scene with a model that costs nothing
   (nearest-neighbour upsampling of one frame, on the same device): the most chunks/s the
   rest of the pipeline (reads, frame choice, blending, writing) allows on this machine. If it
   is not well above the bare model's rate, the pipeline cannot reach it.

With ``--zero-cost``, every run uses that model: the pipeline's own speed and memory, e.g.
how its peak memory grows with the scene (the 4x scene doubles the width)::

    python benchmarks/infer_throughput.py --zero-cost --size 976 --pipeline-batch 4 \
        --threads 1 --device cpu --seconds 1 --repeats 3

The bare rate is measured before and after the pipeline runs (their mean is the reference),
and ``--repeats N`` repeats the whole measurement and prints medians, because on a shared
machine the speed drifts within minutes.

Weights are random (speed does not depend on them). Example (CPU-sized model)::

    python benchmarks/infer_throughput.py --size 120 --window 64 --overlap 8 --device cpu
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _model(args: argparse.Namespace):
    from zoomsr.inference import build_inference_model
    from zoomsr.models import parse_config

    if args.zero_cost:
        return _zero_cost_model(args)
    config = parse_config("rrdbnet", [args.config]) if args.config else {}
    config["num_in_ch"] = 3 * args.images
    graphs = {"auto": None, "on": True, "off": False}[args.cuda_graphs]
    return build_inference_model(model="rrdbnet", config=config, random_weights=True,
                                 device=args.device, precision=args.precision,
                                 cuda_graphs=graphs)


def _zero_cost_model(args: argparse.Namespace):
    """A model whose forward costs (almost) nothing: frame 1's RGB, nearest-upsampled x4."""
    import torch

    from zoomsr.devices import resolve_device
    from zoomsr.inference.model import InferenceModel

    class Nearest(torch.nn.Module):
        name = "nearest"

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T*3, h, w]
            return torch.nn.functional.interpolate(x[:, :3], scale_factor=4, mode="nearest")

    return InferenceModel(Nearest(), "zero-cost (nearest x4)", args.images, "stacked", 4,
                          "none", "", resolve_device(args.device), config={})


def bare(args: argparse.Namespace, windows: bool = True) -> dict:
    """Chunks/s of the model alone on ``[batch, T, 3, 32, 32]`` inputs already on its device,
    outputs left there (``InferenceModel.forward_device``; waited for once, at the end), for
    each ``--batch`` size: the best is the reference. Before 2026-11-27 each batch came from
    and went back to host memory (copies and a wait per batch): a weaker, noisier reference."""
    import torch

    model = _model(args)
    rates = {}
    for batch in args.batch:
        x = np.random.default_rng(0).random((batch, args.images, 3, 32, 32), dtype=np.float32)
        rates[batch] = _rate(model, torch.as_tensor(x).to(model.device), args, 1)
    best = max(rates, key=rates.get)
    out = {"chunks_per_s": rates[best], "batch": best, "by_batch": rates,
           "device": str(model.device), "config": model.config,
           "cuda_graphs": getattr(model, "cuda_graphs", False)}
    if args.bare_window and windows:  # the pipeline's calls: --pipeline-batch windows
        w = args.bare_window
        x = np.random.default_rng(0).random((args.pipeline_batch, args.images, 3, w, w),
                                            dtype=np.float32)
        out["window_chunks_per_s"] = _rate(model, torch.as_tensor(x).to(model.device), args,
                                           (w / 32) ** 2)
    return out


def _rate(model, x, args: argparse.Namespace, chunks_per_item: float) -> float:
    """32 x 32 chunks/s of ``model`` on ``x`` (on its device), timed as :func:`bare` does."""
    import torch

    for _ in range(2):  # kernel selection; with CUDA graphs, the capture (2nd call)
        model.forward_device(x)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    n, start = 0, time.perf_counter()
    while n < args.min_batches or time.perf_counter() - start < args.seconds:
        model.forward_device(x)
        n += 1
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return n * len(x) * chunks_per_item / (time.perf_counter() - start)


def _frame(path: Path, size: int, seed: int, overviews: bool = False) -> None:
    """One uint8 TCI GeoTIFF of random values (1-255: 0 is nodata) on the zoom-17 lattice;
    with ``overviews``, internal overviews down to about 256 px (as a COG has them)."""
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling

    from zoomsr import grid as tiles

    t = tiles.Tile(20000, 50000)
    transform = Affine(tiles.LR_RESOLUTION, 0, t.bounds.left, 0, -tiles.LR_RESOLUTION,
                       t.bounds.top)
    data = np.random.default_rng([0, seed]).integers(1, 256, size=(3, size, size),
                                                     dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3,
                       dtype="uint8", crs="EPSG:3857", transform=transform, nodata=0,
                       tiled=True, blockxsize=256, blockysize=256, compress="deflate") as ds:
        ds.write(data)
        factors = [2 ** k for k in range(1, 12) if size // 2 ** k >= 256]
        if overviews and factors:
            ds.build_overviews(factors, Resampling.average)


def make_scene(folder: Path, size: int, images: int, overviews: bool = False) -> list[Path]:
    """``images`` uint8 TCI GeoTIFFs of ``size`` px on the zoom-17 lattice (EPSG:3857), one
    process per frame (random data compresses slowly: 8 frames of 8192 px take ~25 s on one
    core); ``overviews``: with internal overviews. Spawned, not forked: the caller may hold a
    CUDA context and threads."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"frame{i:02d}_TCI.tif" for i in range(images)]
    with ProcessPoolExecutor(max_workers=min(images, os.cpu_count() or 1),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_frame, paths, [size] * images, range(images), [overviews] * images))
    return paths


def scene(folder: Path, size: int, images: int, overviews: bool = False) -> list[Path]:
    """The generated scene of ``size`` in ``folder``, made on first use (random data
    compresses slowly: for large scenes this takes longer than the pipeline run); with
    ``overviews``, another scene whose files have overviews (``scene{size}x{images}ov``)."""
    done = folder / f"scene{size}x{images}{'ov' if overviews else ''}"
    if not done.is_dir():
        part = folder / f".{done.name}.part"  # renamed when complete
        make_scene(part, size, images, overviews)
        part.rename(done)
    return sorted(done.glob("frame*_TCI.tif"))


def writer_peaks(writer: str) -> list[float]:
    """Set where the pipeline's GeoTIFF writer runs (``auto``, ``thread``, ``process``) and
    return the list its processes' peak resident memory (MB, each its own since it started)
    is appended to, one per scene. Not ``RUSAGE_CHILDREN``: Linux counts in a child's peak
    the memory of the process it was forked from, until it runs Python."""
    from zoomsr.inference import pipeline as scene_pipeline

    if writer != "auto":  # else the pipeline's default (a thread)
        scene_pipeline.WRITER_PROCESS = writer == "process"
    peaks: list[float] = []

    class Recorded(scene_pipeline.GeoTIFFProcess):
        def finish(self, tags: dict[str, str]) -> None:
            super().finish(tags)
            peaks.append(self.peak_rss_mb or 0.0)

    scene_pipeline.GeoTIFFProcess = Recorded
    return peaks


def window_arg(text: str) -> int | None:
    """``--window``: LR px, or ``auto`` (the CLI's default: chosen per scene)."""
    return None if text == "auto" else int(text)


def warm_up(model, args: argparse.Namespace) -> None:  # noqa: ANN001
    """One model call of the pipeline's shape (kernel selection is not timed): its tiling
    and batch as the run resolves them on the model's device (``options.for_device``)."""
    from zoomsr.inference.options import for_device
    from zoomsr.inference.windows import WindowGrid, windows_per_call

    opts = for_device(options(args), model.device)
    grid = WindowGrid(args.size, args.size, opts.tiling.for_scene(args.size, args.size))
    batch = windows_per_call(opts.batch_size or 1, opts.tiling, grid)
    model.forward(np.zeros((batch, args.images, 3, grid.win_h, grid.win_w), np.float32))


def writer_strip() -> int:
    """The GeoTIFF writer's strip height in this process (output rows)."""
    from zoomsr.io import geotiff

    return geotiff.STRIP


def read_threads() -> int:
    """Threads decoding a row's files at once in this process (1: its row thread alone)."""
    from zoomsr.inference import reader

    n = min(reader.workers_available(), reader.READ_THREADS)
    return n if n >= 2 else 1


def options(args: argparse.Namespace):
    """The run's ``InferenceOptions`` from :func:`add_pipeline_options`' arguments (and with
    ``--turns``, the pipeline's turns for the host turned on in this process)."""
    from zoomsr.inference import InferenceOptions, Tiling
    from zoomsr.inference import pipeline as scene_pipeline

    scene_pipeline.ONE_ROW_ON_HOST = args.turns
    if args.writer_strip:
        from zoomsr.io import geotiff

        geotiff.STRIP = args.writer_strip
    if args.read_threads:
        from zoomsr.inference import reader

        reader.READ_THREADS = args.read_threads
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    extra = {} if args.column_width is None else {"column_width": args.column_width}
    if args.deflate_level is not None:
        extra["deflate_level"] = args.deflate_level
    return InferenceOptions(tiling=Tiling(args.window, args.overlap),
                            batch_size=args.pipeline_batch, progress=False,
                            threads=args.threads, **extra)


def pipeline(args: argparse.Namespace) -> dict:
    """One pipeline run (called in a subprocess so its peak memory is its own).

    The scene comes from ``--scene-dir`` (made there once by the parent, so neither the
    time nor the memory of making it counts)."""
    from zoomsr.inference import run_inference

    if args.read_cache == "min":  # GDAL's block cache at its minimum: what the sized one buys
        from zoomsr.inference import pipeline as scene_pipeline
        from zoomsr.inference.reader import MIN_CACHE_BYTES

        scene_pipeline.read_cache_bytes = lambda *a, **k: MIN_CACHE_BYTES
    model = _model(args)
    peaks = writer_peaks(args.writer)
    with tempfile.TemporaryDirectory() as tmp:
        paths = scene(Path(args.scene_dir or tmp), args.size, args.images,
                      args.input_overviews)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        opts = options(args)
        warm_up(model, args)
        start = time.perf_counter()
        result = run_inference(paths, Path(tmp) / "out.tif", model, opts)
        elapsed = time.perf_counter() - start
        size_mb = (Path(tmp) / "out.tif").stat().st_size / 1e6
    chunks = args.size * args.size / (32 * 32)
    own_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    writer_mb = max(peaks, default=0.0)  # the GeoTIFF writer's process, if the run had one
    gpu_mb = pinned_mb = None
    if model.device.type == "cuda":
        import torch

        gpu_mb = torch.cuda.max_memory_allocated(model.device) / 2**20
        # pinned host memory (counted in the RSS): torch's pool, blocks rounded to powers of 2
        with contextlib.suppress(AttributeError, RuntimeError):
            pinned_mb = torch.cuda.host_memory_stats().get("allocated_bytes.peak", 0) / 2**20
    return {
        "peak_gpu_mb": gpu_mb, "peak_pinned_mb": pinned_mb,
        "size": args.size, "seconds": elapsed, "chunks_per_s": chunks / elapsed,
        "km2_per_s": result.grid.area_km2 / elapsed, "area_km2": result.grid.area_km2,
        "windows": result.windows, "output_mb": size_mb, "column_width": opts.column_width,
        "phases": result.phases,
        "turns": args.turns, "switch_interval": sys.getswitchinterval(),
        "writer_strip": writer_strip(), "read_threads": read_threads(),
        "deflate_level": opts.deflate_level,
        "cuda_graphs": getattr(model, "cuda_graphs", False),
        "input_overviews": args.input_overviews,
        # what the run's graphs did (the run drops them at its end: InferenceModel.release_graphs)
        "graphs": getattr(model, "graphs_report", None),
        "peak_rss_mb": own_mb, "writer_rss_mb": writer_mb,
        # the two peaks added (an upper bound: they need not coincide): what the ratios use
        "peak_rss_total_mb": own_mb + writer_mb, "writer": args.writer,
        "rss_after_setup_mb": rss_before / 1024,
    }


def _child(args: argparse.Namespace, size: int, zero_cost: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--_child", "--size", str(size)]
    for key in ("config", "images", "device", "precision", "cuda_graphs", "window", "overlap",
                "pipeline_batch", "threads", "scene_dir", "read_cache", "column_width",
                "switch_interval", "writer", "writer_strip", "read_threads", "deflate_level"):
        value = getattr(args, key)
        if value is not None:
            cmd += [f"--{key.replace('_', '-')}", str(value)]
    if args.window is None:
        cmd += ["--window", "auto"]
    if zero_cost or args.zero_cost:
        cmd.append("--zero-cost")
    if args.turns:
        cmd.append("--turns")
    if args.input_overviews:
        cmd.append("--input-overviews")
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:  # show why (with PYTHONFAULTHANDLER=1, a crash's Python stacks)
        sys.stderr.write(out.stderr[-20000:])
        raise SystemExit(f"pipeline run of {size} px failed (exit {out.returncode}): "
                         + " ".join(cmd))
    return json.loads(out.stdout.strip().splitlines()[-1])


def add_model_options(p: argparse.ArgumentParser, config: str = "") -> None:
    """The model options every inference benchmark takes (random RRDBNet weights)."""
    p.add_argument("--config", default=config,
                   help="RRDBNet config k=v,... ('' for full ESRGAN; default %(default)r)")
    p.add_argument("--images", type=int, default=8, help="Input images T.")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("--cuda-graphs", choices=("auto", "on", "off"), default="auto",
                   help="Replay the model's forward from CUDA graphs (zoomsr.inference.graphs;"
                   " auto: as ZOOMSR_CUDA_GRAPHS says, off when unset).")


def add_pipeline_options(p: argparse.ArgumentParser, size: int, pipeline_batch: int,
                         size_help: str = "Scene side, LR px.") -> None:
    """The scene and tiling options of the pipeline benchmarks."""
    p.add_argument("--size", type=int, default=size, help=size_help)
    p.add_argument("--window", type=window_arg, default=256,
                   help="Window side, LR px, or auto (the CLI's default: chosen per scene; "
                   "--pipeline-batch then counts 128 px windows, as --batch-size does).")
    p.add_argument("--overlap", type=int, default=16)
    p.add_argument("--threads", type=int, default=None,
                   help="Rows computed at once (default: 3 on a GPU, 1 on a CPU).")
    p.add_argument("--pipeline-batch", type=int, default=pipeline_batch,
                   help="Windows per model call.")
    p.add_argument("--column-width", type=int, default=None,
                   help="Column strips of about this many LR px (default: the pipeline's, "
                   "4096; wider scenes are processed strip by strip).")
    p.add_argument("--turns", action="store_true",
                   help="Row threads bring their output to the host one at a time, not "
                   "whenever it is ready (pipeline.ONE_ROW_ON_HOST): what the turns cost.")
    p.add_argument("--switch-interval", type=float, default=None, metavar="S",
                   help="sys.setswitchinterval in the pipeline's process (Python's default: "
                   "0.005 s): how much the threads' wait for the interpreter lock costs.")
    p.add_argument("--writer-strip", type=int, default=None, metavar="ROWS",
                   help="Output rows the GeoTIFF writer writes at a time (zoomsr.io.geotiff."
                   "STRIP, a multiple of 256; default: the module's).")
    p.add_argument("--read-threads", type=int, default=None, metavar="N",
                   help="Threads decoding a row's files at once (zoomsr.inference.reader."
                   "READ_THREADS, at most the CPUs; 1: the row thread alone, as before "
                   "2026-11-27; default: the module's).")
    p.add_argument("--deflate-level", type=int, default=None, metavar="L",
                   help="DEFLATE level of the output (1 fastest .. 12 smallest; default: "
                   "the pipeline's, zoomsr.io.deflate.DEFLATE_LEVEL; GDAL's own default is "
                   "6).")
    p.add_argument("--writer", choices=("auto", "thread", "process"), default="auto",
                   help="Where the output GeoTIFF is compressed while rows are computed "
                   "(pipeline.WRITER_PROCESS; auto: the pipeline's default, a thread).")
    p.add_argument("--input-overviews", action="store_true",
                   help="Generated inputs with internal overviews, as COGs have them (the "
                   "Sentinel-2 COGs of the cloud archives): discovery's decimated look then "
                   "reads them instead of decoding each whole file.")
    p.add_argument("--zero-cost", action="store_true",
                   help="A model that costs nothing: the speed and memory of the pipeline "
                   "alone (e.g. how its memory grows with the scene).")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_options(p)
    add_pipeline_options(p, size=512, pipeline_batch=4,
                         size_help="Scene side, LR px (the 4x scene: 2x).")
    p.add_argument("--batch", type=int, nargs="+", default=[16],
                   help="Chunks per bare forward; with several sizes, the best rate is the "
                   "reference.")
    p.add_argument("--seconds", type=float, default=10.0, help="Bare timing duration.")
    p.add_argument("--min-batches", type=int, default=3)
    p.add_argument("--bare-window", type=int, default=None, metavar="PX",
                   help="Also time the model on the pipeline's calls (--pipeline-batch windows "
                   "of PX LR px a side, e.g. 256), in 32 x 32 chunks/s: is the model as fast "
                   "per pixel on windows as on chunks?")
    p.add_argument("--repeats", type=int, default=1, help="Whole measurements; medians shown.")
    p.add_argument("--ceiling", action="store_true",
                   help="Also run the smaller scene with a zero-cost model (see 4.).")
    p.add_argument("--json", action="store_true", help="Print the results as JSON only.")
    p.add_argument("--save", default=None, metavar="PATH",
                   help="Also write the results (every run's figures) as JSON to PATH.")
    p.add_argument("--read-cache", choices=("sized", "min"), default="sized",
                   help="GDAL's block cache as the pipeline sizes it, or held at its minimum "
                   "(to see what the sized one saves in decoding, and costs in memory).")
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--scene-dir", default=None, metavar="DIR",
                   help="Keep the generated scenes in DIR and reuse them in later runs "
                   "(default: a temporary folder, removed at the end).")
    args = p.parse_args()
    if args._child:
        print(json.dumps(pipeline(args)))
        return
    with contextlib.ExitStack() as stack:
        if args.scene_dir is None:
            args.scene_dir = stack.enter_context(tempfile.TemporaryDirectory())
        for size in (args.size, 2 * args.size - args.overlap):
            scene(Path(args.scene_dir), size, args.images, args.input_overviews)
        runs = _measure(args)
    _report(args, runs)


def _measure(args: argparse.Namespace) -> list[dict]:
    """``--repeats`` whole measurements (bare, both scenes, bare again, the ceiling)."""
    runs = []
    for _ in range(args.repeats):
        # the bare rate is measured before and after the pipeline runs and averaged, so that a
        # machine whose speed drifts (a shared host) does not bias the ratio either way
        before = bare(args)
        small = _child(args, args.size)
        # 2x a side (less one overlap, so both scenes tile into whole windows when --size does)
        large = _child(args, 2 * args.size - args.overlap)
        after = bare(args, windows=False)  # the windows once: GPU time is scarce
        rate = (before["chunks_per_s"] + after["chunks_per_s"]) / 2
        runs.append({
            "bare": {**before, "chunks_per_s": rate,
                     "before_after": [before["chunks_per_s"], after["chunks_per_s"]],
                     "by_batch_after": after["by_batch"]},
            "pipeline": small, "pipeline_4x": large,
            "pipeline_vs_bare": small["chunks_per_s"] / rate,
            "pipeline_4x_vs_bare": large["chunks_per_s"] / rate,
            "peak_rss_ratio_4x": large["peak_rss_total_mb"] / small["peak_rss_total_mb"],
            "area_ratio_4x": large["area_km2"] / small["area_km2"],
        })
        if args.ceiling:
            runs[-1]["ceiling"] = _child(args, args.size, zero_cost=True)
    return runs


def _report(args: argparse.Namespace, runs: list[dict]) -> None:
    med = statistics.median
    report = {key: med(r[key] for r in runs) for key in
              ("pipeline_vs_bare", "pipeline_4x_vs_bare", "peak_rss_ratio_4x", "area_ratio_4x")}
    report["runs"] = runs
    if args.save:
        Path(args.save).write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    b = runs[0]["bare"]
    cfg = " ".join(f"{k}={v}" for k, v in b["config"].items())
    name = "zero-cost (nearest x4, no model)" if args.zero_cost else f"rrdbnet {cfg}"
    print(f"model {name} on {b['device']}; {len(runs)} run(s), medians")
    print(f"bare forward      {med(r['bare']['chunks_per_s'] for r in runs):8.2f} chunks/s "
          f"(32x32, on the device, best of batch {'/'.join(map(str, args.batch))}: "
          f"{'/'.join(str(r['bare']['batch']) for r in runs)}; mean of before and after the "
          "pipeline runs)")
    if args.bare_window:
        print(f"bare, windows     {med(r['bare']['window_chunks_per_s'] for r in runs):8.2f} "
              f"chunks/s ({args.pipeline_batch} windows of {args.bare_window} px a call; "
              "before the pipeline runs)")
    for label, key in (("pipeline", "pipeline"), ("pipeline 4x", "pipeline_4x")):
        r = runs[0][key]
        print(f"{label:<17} {med(x[key]['chunks_per_s'] for x in runs):8.2f} chunks/s  "
              f"{med(x[key]['km2_per_s'] for x in runs):.4f} km2/s  {r['size']}x{r['size']} "
              f"LR px, {r['area_km2']:.2f} km2, {med(x[key]['seconds'] for x in runs):.1f} s, "
              f"peak RSS {med(x[key]['peak_rss_total_mb'] for x in runs):.0f} MB (writer "
              f"process {med(x[key]['writer_rss_mb'] for x in runs):.0f} MB of it)"
              + (f", GPU {med(x[key]['peak_gpu_mb'] for x in runs):.0f} MB"
                 if r.get("peak_gpu_mb") is not None else ""))
    for label, key in (("phases", "pipeline"), ("phases 4x", "pipeline_4x")):
        if runs[0][key].get("phases"):  # medians, s from the start (after discovery)
            ph = {k: med(x[key]["phases"][k] for x in runs) for k in runs[0][key]["phases"]}
            print(f"{label:<17} first row at {ph['first_row']:.2f} s, last row at "
                  f"{ph['last_row']:.2f} s, then {ph['output_finish']:.2f} s finishing the "
                  f"output and {ph['after_output']:.2f} s after it")
    print(f"pipeline / bare   {report['pipeline_vs_bare']:.1%} (4x scene: "
          f"{report['pipeline_4x_vs_bare']:.1%})")
    print(f"peak RSS 4x / 1x  {report['peak_rss_ratio_4x']:.3f} (the pipeline's process and "
          f"its writer's added; area ratio "
          f"{report['area_ratio_4x']:.2f})")
    if runs[0]["pipeline"].get("peak_gpu_mb") is not None:
        ratio = med(r["pipeline_4x"]["peak_gpu_mb"] / r["pipeline"]["peak_gpu_mb"] for r in runs)
        print(f"peak GPU memory 4x / 1x  {ratio:.3f}")
    if args.ceiling:
        rate = med(r["ceiling"]["chunks_per_s"] for r in runs)
        print(f"zero-cost model   {rate:8.2f} chunks/s  (the pipeline's ceiling here: "
              f"{rate / med(r['bare']['chunks_per_s'] for r in runs):.1f}x the bare model)")
    if len(runs) > 1:
        print("per run, pipeline / bare: " + ", ".join(
            f"{r['pipeline_vs_bare']:.0%}/{r['pipeline_4x_vs_bare']:.0%}" for r in runs))


if __name__ == "__main__":
    main()
