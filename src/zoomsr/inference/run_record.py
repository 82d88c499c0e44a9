"""What a scene run records of itself, and the comparisons made with it: the fingerprint a
partial run is continued by (:func:`run_fingerprint`), the finished output's tags
(:func:`model_tags`, :func:`scene_tags`), and whether a finished output is this run's own
result (:func:`finished_before`, :func:`finished_same_run`: ``--resume`` of a requeued
job), each difference named in the option's terms."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import torch

from zoomsr import __version__
from zoomsr.errors import DataError, InputError
from zoomsr.inference.grid import TargetGrid
from zoomsr.inference.inputs import Frame, is_s2naip_input
from zoomsr.inference.inputs.files import zoomsr_tags
from zoomsr.inference.model import InferenceModel
from zoomsr.inference.options import InferenceOptions
from zoomsr.inference.reader import SceneReader
from zoomsr.inference.rows import ScenePlan
from zoomsr.inference.side_outputs import side_outputs, side_outputs_tag
from zoomsr.inference.writer import SAMPLING_OPTIONS, has_saved_state


def _input_files(frames: Sequence[Frame]) -> list[list]:
    """``[path, size, mtime_ns]`` of every file the frames read: what tells that an input
    changed since a run (a partial one, or a finished output's tags)."""
    files = []
    for f in frames:
        for p in f.files:
            st = p.stat()
            files.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    return files


def run_fingerprint(plan: ScenePlan, model: InferenceModel, options: InferenceOptions,
                 groups: list[tuple[int, int]], device: torch.device | None = None) -> dict:
    """What a saved run was made with, to continue it only with the same (``device``: where
    the rows are computed, a Ray pool's workers; default the model's)."""
    reader, grid = cast(SceneReader, plan.reader), cast(TargetGrid, plan.grid)  # a scene's
    return {
        "zoomsr": __version__,
        "frames": [f.describe() for f in reader.frames],
        "files": _input_files(reader.frames),
        "grid": grid.describe(),
        "tiling": [plan.windows.tiling.window, plan.windows.tiling.overlap,
                   plan.windows.tiling.margin_px],
        "model": model.describe(),  # known by weights_sha256: PartialRun leaves the path out
        "device": (device or model.device).type,
        "autocast": model.autocast,
        "batch_size": plan.batch_size,
        "uncertainty": plan.uncertainty,
        "seed": plan.seed,
        "save_lr": options.save_lr,
        "column_width": options.column_width,
        # where the windows and strips lie: a run saved by a zoomsr that placed them otherwise
        # must not be continued (its carry would not fit, or fit and mix two layouts)
        "layout": {"ys": plan.windows.ys, "xs": plan.windows.xs, "strips": groups},
    }


def model_tags(model: InferenceModel) -> dict[str, str]:
    """The output tags that say which zoomsr and which model made it (every output kind)."""
    return {
        "zoomsr_version": __version__,
        "zoomsr_model": model.label,
        "zoomsr_architecture": json.dumps({"name": model.describe()["architecture"],
                                           "config": model.config}),
        "zoomsr_weights": model.weights,
        "zoomsr_weights_sha256": model.weights_sha256,
        "zoomsr_n_images": str(model.n_images),
        "zoomsr_scale": str(model.scale),
        "zoomsr_precision": model.precision,  # as computed
        **({"zoomsr_sampling": json.dumps(model.describe()["sampling"])} if model.diffusion
           else {}),
    }


def scene_tags(plan: ScenePlan, model: InferenceModel, options: InferenceOptions, few: int,
          native: bool, files: list[list]) -> dict[str, str]:
    """The output's tags; ``files``: :func:`_input_files` as the run found them when it
    started (a file removed or rewritten since must neither fail the run at its end nor be
    recorded with its new content's size and time)."""
    grid = cast(TargetGrid, plan.grid)  # a scene's plan: its reader and grid
    tags = {
        **model_tags(model),
        "zoomsr_inputs": json.dumps([f.describe() for f in cast(SceneReader, plan.reader).frames]),
        # --resume of a finished output tells an input changed since (size, time) from it
        "zoomsr_input_files": json.dumps(files),
        "zoomsr_grid": ("native " if native else "training grid ")
        + f"{grid.crs.to_string()} {grid.resolution:.6g} {grid.unit} -> "
        f"{grid.resolution / grid.scale:.6g} {grid.unit}",
        # the windows' own size: the window clamped to a scene side smaller than it
        "zoomsr_tiling": json.dumps({"window": plan.windows.tiling.window,
                                     "overlap": plan.windows.tiling.overlap,
                                     "margin": plan.windows.tiling.margin_px,
                                     "window_used_px": [plan.windows.win_h,
                                                        plan.windows.win_w]}),
        "zoomsr_windows_with_too_few_frames": str(few),
        **side_outputs_tag(options),
    }
    if plan.uncertainty:
        tags["zoomsr_uncertainty"] = (
            f"band 4: per-pixel standard deviation x 255 of the outputs of {plan.uncertainty} "
            f"frame subsets (mean over RGB); 255 where fewer than {plan.n_images + 1} dates "
            "are usable (undetermined)"
        )
        tags["zoomsr_seed"] = str(plan.seed)  # draws the subsets
    return tags


def _other_sampling(tag: str | None, model: InferenceModel) -> str:
    """How a diffusion model's sampling now differs from a finished output's ``tag``, in the
    options' terms (``--sample-steps 6, it was 5``)."""
    now = model.describe()["sampling"]
    try:
        was = json.loads(tag) if tag else {}
    except ValueError:
        was = {}
    if not isinstance(was, dict) or not was:
        return "SR3 sampling, not recorded by the run that wrote it"
    diffs = [f"{SAMPLING_OPTIONS.get(k, k)} {now[k]}, it was {was.get(k)}" for k in now
             if was.get(k) != now[k]]
    return "; ".join(diffs) or "SR3 sampling"


def _other_options(tags: dict[str, str], layout: str | None, options: InferenceOptions,
                   chunks: bool = False, precision: str | None = None) -> list[str]:
    """What in ``options`` asks for another result than the finished output with ``tags``
    (and GDAL's ``layout``, ``COG`` for a COG) holds: one phrase per difference. ``chunks``:
    an S2-NAIP chunk output, which ignores the tiling options."""
    diffs = []
    if "zoomsr_grid" in tags and tags["zoomsr_grid"].startswith("native ") != options.native_grid:
        diffs.append("--native-grid " + ("given" if options.native_grid else "not given")
                     + ", it was " + ("not " if options.native_grid else "") + "used")
    found = re.search(r"outputs of (\d+) frame subsets", tags.get("zoomsr_uncertainty", ""))
    was = int(found.group(1)) if found else 0
    if was != options.uncertainty:
        diffs.append(f"--uncertainty {options.uncertainty}, it was {was}")
    elif was and tags.get("zoomsr_seed", str(options.seed)) != str(options.seed):
        diffs.append(f"--seed {options.seed}, it was {tags['zoomsr_seed']}")
    if precision is not None and tags.get("zoomsr_precision", precision) != precision:
        diffs.append(f"--precision {precision}, it was {tags['zoomsr_precision']}")
    if (layout == "COG") != options.cog:
        diffs.append("--cog " + ("given, it is not a COG" if options.cog else
                                 "not given, it is a COG"))
    if chunks:
        return diffs
    diffs += _other_radiometry(tags.get("zoomsr_inputs"), options)
    try:
        tiling = json.loads(tags["zoomsr_tiling"])
    except (KeyError, ValueError, TypeError):
        return diffs
    t = options.tiling
    asked = {"window": t.window, "overlap": t.overlap, "margin": t.margin}
    for key, value in asked.items():
        if value is not None and isinstance(tiling, dict) and key in tiling \
                and tiling[key] != value:
            diffs.append(f"--{key} {value}, it was {tiling[key]}")
    return diffs


def _other_radiometry(record: str | None, options: InferenceOptions) -> list[str]:
    """The radiometry options given now (``--radiometry``, ``--dn-offset``,
    ``--rgb-bands``) that the frames of a finished output's ``zoomsr_inputs`` tag were not
    read with: one phrase per option (a partial run's state compares them frame by frame; a
    finished one's was reported done with the old reading)."""
    try:
        frames = [f for f in json.loads(record or "[]") if isinstance(f, dict)]
    except ValueError:
        return []  # not written by this zoomsr
    diffs = []
    kinds = sorted({str(f.get("radiometry")) for f in frames})
    if options.radiometry != "auto" and kinds and kinds != [options.radiometry]:
        diffs.append(f"--radiometry {options.radiometry}, it was {', '.join(kinds)}")
    # the frames' own and their extra bands' (tci,b08: B08's offset with a TCI frame)
    read = [*frames, *(e for f in frames for e in (f.get("extras") or {}).values()
                       if isinstance(e, dict))]
    offsets = sorted({f.get("dn_offset") for f in read if f.get("radiometry") == "dn"},
                     key=str)
    if options.dn_offset is not None and offsets and offsets != [options.dn_offset]:
        shown = ", ".join(f"{o:g}" if isinstance(o, (int, float)) else str(o) for o in offsets)
        diffs.append(f"--dn-offset {options.dn_offset:g}, it was {shown}")
    orders = {tuple(f.get("bands") or ()) for f in frames if len(f.get("paths") or []) == 1}
    if options.rgb_bands is not None and orders and orders != {tuple(options.rgb_bands)}:
        was = "; ".join(",".join(map(str, o)) for o in sorted(orders))
        diffs.append(f"--rgb-bands {','.join(map(str, options.rgb_bands))}, it was {was}")
    return diffs


def finished_before(output: str | os.PathLike[str], save_lr: bool = False,
                    preview: bool = False) -> bool:
    """Whether ``output`` is the finished output of an earlier zoomsr run (no partial run
    beside it) with every side output asked for now: ``--resume`` then has nothing to do (a
    requeued job's command succeeds). :class:`InputError` when it is finished but lacks a side
    output asked for now (``--resume`` cannot add one): the file is missing, or its run did
    not write it (its ``zoomsr_side_outputs`` tag; a file of that name left by another run)."""
    out = Path(output)
    tags = None if not out.is_file() or has_saved_state(out) else zoomsr_tags(out)
    if tags is None:
        return False
    written = tags.get("zoomsr_side_outputs")
    try:
        own = set(json.loads(written)) if written else None
    except (ValueError, TypeError):
        own = None
    flags = {"lr": "--save-lr", "preview": "--preview"}
    for key, path in side_outputs(out, save_lr, preview).items():
        if not path.is_file() or (own is not None and key not in own):
            why = "is missing" if not path.is_file() else "is another run's"
            raise InputError(
                f"{out}: finished by an earlier run without {flags[key]} ({path.name} {why}); "
                f"--resume cannot add it: pass --overwrite to compute it again "
                f"with {flags[key]}")
    return True


def finished_same_run(output: str | os.PathLike[str],
                      inputs: Sequence[str | os.PathLike[str]], model: InferenceModel,
                      options: InferenceOptions, any_precision: bool = False) -> bool:
    """:func:`finished_before`, and the earlier run made it with these weights (by SHA-256)
    from these input files (its tags): ``--resume`` of a requeued job has nothing to do.
    :class:`InputError` when the tags name other weights or inputs (the job now asks for
    another result: the finished one was reported as done). ``any_precision``: the precision
    it was computed in is not compared (``--precision auto`` on Ray: the workers' device
    decides, and it is not known before Ray is up)."""
    out = Path(output)
    if not finished_before(out, options.save_lr, options.preview):
        return False
    from zoomsr.inference.inputs.rasters import open_raster

    with open_raster(out) as ds:
        tags = ds.tags()
        layout = ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT")
    redo = "--resume continues only that run: pass --overwrite to compute it again"
    chunks = is_s2naip_input(list(inputs))
    mine = model_tags(model)  # what this run would tag
    precision = None if any_precision else model.precision
    if "zoomsr_version" in tags and (diffs := _other_options(tags, layout, options, chunks,
                                                             precision)):
        # a requeued job whose command changed asks for another result: it was reported done
        raise InputError(f"{out}: finished by an earlier run with other options "
                         f"({'; '.join(diffs)}); {redo}")
    old = tags.get("zoomsr_weights_sha256")
    if old and old != model.weights_sha256:
        raise InputError(f"{out}: finished by an earlier run with other weights (SHA-256 "
                         f"{old[:12]}..., now {model.weights_sha256[:12]}... of "
                         f"{model.label}); {redo}")
    if model.diffusion and tags.get("zoomsr_sampling") != mine["zoomsr_sampling"]:
        raise InputError(f"{out}: finished by an earlier run with other options "
                         f"({_other_sampling(tags.get('zoomsr_sampling'), model)}); {redo}")
    if "zoomsr_inputs" not in tags:
        return True  # tags not written by this zoomsr: nothing to compare
    if chunks:  # chunk outputs name their dataset folder
        root = os.path.abspath(inputs[0])
        if not tags["zoomsr_inputs"].startswith(f"S2-NAIP chunks {root} ("):
            raise InputError(f"{out}: finished by an earlier run of other inputs (not the "
                             f"S2-NAIP chunks of {root}: {tags['zoomsr_inputs']}); {redo}")
        from zoomsr.inference.s2naip import inputs_digest

        digest = tags.get("zoomsr_input_digest")
        if digest is not None and (digest_now := inputs_digest(root, model.bands)) != digest:
            raise InputError(f"{out}: finished by an earlier run, but the S2-NAIP tiles of "
                             f"{root} changed since (tiles added or removed, or files "
                             f"rewritten: {digest.split(',')[0]} then, "
                             f"{digest_now.split(',')[0]} now); "
                             f"{redo}")
        return True
    try:
        was = {str(p) for f in json.loads(tags["zoomsr_inputs"]) for p in f.get("paths", [])}
    except (ValueError, TypeError, AttributeError):
        return True  # tags not written by this zoomsr: nothing to compare
    now = _rgb_files(inputs, [out, *side_outputs(out, options.save_lr,
                                                 options.preview).values()])
    if now is not None and was != now:
        gone, new = sorted(was - now), sorted(now - was)
        parts = ([f"{len(gone)} of its files not among them now, e.g. {gone[0]}"] if gone
                 else []) + ([f"{len(new)} new, e.g. {new[0]}"] if new else [])
        raise InputError(f"{out}: finished by an earlier run of other inputs "
                         f"({'; '.join(parts)}); {redo}")
    changed = _changed_since(tags.get("zoomsr_input_files"))
    if changed:
        raise InputError(f"{out}: finished by an earlier run, but {changed} changed since "
                         f"(size or time); {redo}")
    return True


def _changed_since(record: str | None) -> str | None:
    """The first input file of a finished output's ``zoomsr_input_files`` tag whose size or
    modification time is not the recorded one (None: all the same, gone, or no record)."""
    try:
        files = json.loads(record) if record else []
        for path, size, mtime in files:
            try:
                st = os.stat(path)
            except OSError:
                continue  # staged for the job and removed since: nothing to compare
            if (st.st_size, st.st_mtime_ns) != (size, mtime):
                return str(path)
    except (ValueError, TypeError):
        return None  # not written by this zoomsr
    return None


def _rgb_files(inputs: Sequence[str | os.PathLike[str]], outputs: Sequence[Path]
               ) -> set[str] | None:
    """The RGB files (TCI, or B04/B03/B02) that ``inputs`` name, as the frames' paths are
    tagged, from the names alone (no raster decoded); the run's own ``outputs`` left out (a
    glob of the input folder may hold them). None when they cannot be listed, e.g. inputs
    staged for the job and removed once it finished: nothing to compare."""
    from zoomsr.inference.inputs.files import band_role, expand

    mine = {os.path.abspath(p) for p in outputs}
    items = [i for i in inputs if os.path.abspath(i) not in mine]
    try:
        candidates, _ = expand(items)
    except (DataError, OSError):
        return None
    rgb = {None, "tci", "red", "green", "blue"}
    files: set[str] = set()
    for c in candidates:
        paths = ([c[k] for k in ("tci", "red", "green", "blue") if k in c]
                 if isinstance(c, dict) else [p for p in c if band_role(p) in rgb])
        files |= {str(p) for p in paths}
    return files
