"""Many scenes in one job: a scenes manifest, run scene after scene with one model.

A scenes manifest is JSON::

    {"scenes": [{"inputs": ["s2/tile_a/"], "output": "sr/tile_a.tif"},
                {"inputs": ["a_TCI.tif", "b_TCI.tif"], "output": "sr/tile_b.tif"}]}

``inputs`` is one path or a list of paths (files, folders, frame manifests: anything
``zoomsr infer`` takes); relative paths are resolved against the manifest's folder. Each scene
goes through :func:`~zoomsr.inference.pipeline.run_inference` unchanged (same atomic output and
resume state); the model is built once by the caller, and with Ray the caller passes the
``rows`` of one :class:`~zoomsr.inference.distributed.RayPool`, so all scenes share one Ray
session and one set of model workers. A scene that fails with bad input is recorded with its
one-line reason and the job goes on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rasterio.errors import RasterioError

from zoomsr.errors import DataError, ZoomsrError
from zoomsr.inference.inputs import is_s2naip_input
from zoomsr.inference.model import InferenceModel
from zoomsr.inference.options import InferenceOptions, InferenceResult
from zoomsr.inference.pipeline import run_inference
from zoomsr.inference.run_record import finished_same_run

_KEYS = {"inputs", "output"}


@dataclass(frozen=True)
class Scene:
    """One entry of a scenes manifest: input paths and the output GeoTIFF (absolute)."""

    index: int  # position in the manifest's "scenes" list (0-based, as in error messages)
    inputs: tuple[Path, ...]
    output: Path

    @property
    def name(self) -> str:
        return f"scenes[{self.index}] ({self.output.name})"


@dataclass
class SceneOutcome:
    """What happened to one scene: ``status`` is ``"done"``, ``"skipped"`` or ``"failed"``."""

    scene: Scene
    status: str
    result: InferenceResult | None = None
    error: str | None = None
    exit_code: int = 0  # of a failure: 2 bad input, 1 runtime (as the CLI's exit codes)


@dataclass
class ScenesReport:
    """The outcome of every scene, in manifest order."""

    outcomes: list[SceneOutcome]

    def _with(self, status: str) -> list[SceneOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def done(self) -> list[SceneOutcome]:
        return self._with("done")

    @property
    def skipped(self) -> list[SceneOutcome]:
        return self._with("skipped")

    @property
    def failed(self) -> list[SceneOutcome]:
        return self._with("failed")


def _paths(value: Any, base: Path, where: str) -> tuple[Path, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise DataError(f"{where}: 'inputs' must be a path or a non-empty list of paths")
    out = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise DataError(f"{where}: 'inputs' must hold path strings, got {item!r}")
        out.append(_joined(base, item))
    return tuple(out)


def _joined(base: Path, item: str) -> Path:
    """``item`` against the manifest's folder, without ``..`` / ``.`` parts (the paths are
    printed in reports and errors)."""
    return Path(os.path.normpath(base / Path(item).expanduser()))


def load_scenes(path: str | os.PathLike[str]) -> list[Scene]:
    """Read and validate a scenes manifest (see the module docstring).

    Checks the structure, that outputs are ``.tif``/``.tiff``, that no two scenes share an
    output and that no output is (or lies, as a raster zoomsr did not write, in) another
    scene's input; whether the inputs exist is checked when each scene runs (a missing input fails
    that scene only).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the scenes manifest ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("scenes"), list):
        raise DataError(f'{path}: expected a JSON object {{"scenes": [{{"inputs": [...], '
                        f'"output": "out.tif"}}, ...]}}')
    if not data["scenes"]:
        raise DataError(f"{path}: the scenes manifest lists no scene")
    base = path.parent.absolute()
    scenes: list[Scene] = []
    seen: dict[Path, int] = {}
    for i, entry in enumerate(data["scenes"]):
        where = f"{path}: scenes[{i}]"
        if not isinstance(entry, dict):
            raise DataError(f"{where}: expected an object with 'inputs' and 'output'")
        missing = sorted(_KEYS - set(entry))
        if missing:
            raise DataError(f"{where}: missing {', '.join(repr(k) for k in missing)}")
        unknown = sorted(set(entry) - _KEYS)
        if unknown:
            raise DataError(f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)} "
                            "(use 'inputs' and 'output')")
        inputs = _paths(entry["inputs"], base, where)
        out = entry["output"]
        if not isinstance(out, str) or not out.strip():
            raise DataError(f"{where}: 'output' must be a path string, got {out!r}")
        output = _joined(base, out)
        if output.suffix.lower() not in (".tif", ".tiff"):
            raise DataError(f"{where}: output {out!r} must be a GeoTIFF (.tif or .tiff)")
        if output in seen:
            raise DataError(f"{where}: output {out!r} is also the output of "
                            f"scenes[{seen[output]}]")
        seen[output] = i
        scenes.append(Scene(i, inputs, output))
    _no_output_over_an_input(path, scenes)
    return scenes


def _no_output_over_an_input(path: Path, scenes: Sequence[Scene]) -> None:
    """Refuse an output that is another scene's input: named as one, or an existing raster in
    an input folder that zoomsr did not write (with --overwrite one scene wrote over the
    input of another; each scene checks only its own)."""
    from zoomsr.inference.inputs import made_by_zoomsr

    inputs: dict[Path, tuple[Scene, Path]] = {}
    for other in scenes:
        for item in other.inputs:
            inputs.setdefault(item.resolve(), (other, item))
    for sc in scenes:
        out = sc.output.resolve()
        hit = inputs.get(out)
        named = hit is not None
        if not named and out.is_file() and not made_by_zoomsr(out):
            hit = next((inputs[p] for p in out.parents if p in inputs and p.is_dir()), None)
        if hit is not None:
            other, item = hit
            raise DataError(f"{path}: scenes[{sc.index}]: output {sc.output} is "
                            + ("" if named else "a file in ")
                            + f"an input of scenes[{other.index}] ({item}); write it elsewhere")


def check_scene_outputs(scenes: Sequence[Scene], options: InferenceOptions,
                        manifest: str | os.PathLike[str] | None = None) -> None:
    """Refuse scenes one of whose side outputs (``--save-lr``'s ``X.lr.tif``,
    ``--preview``'s ``X.preview.png``) is another's output or side output: the later scene
    replaced the earlier one's file, and the job said both were done. ``manifest``: the
    file the scenes came from, named first as its other errors are (the CLI checks this
    before Ray starts; :func:`run_scenes` again)."""
    from zoomsr.inference.side_outputs import side_outputs

    names = {"lr": "LR mosaic (--save-lr)", "preview": "preview (--preview)"}
    writers: dict[Path, tuple[Scene, str]] = {}
    for sc in scenes:
        files = {"output": sc.output, **{names[key]: path for key, path in side_outputs(
            sc.output, options.save_lr, options.preview).items()}}
        for what, path in files.items():
            other = writers.get(path.resolve())
            if other is not None and other[0] is not sc:
                where = f"{manifest}: " if manifest is not None else ""
                raise DataError(
                    f"{where}scenes[{sc.index}] and scenes[{other[0].index}] both write "
                    f"{path} (the {what} of one, the {other[1]} of the other); give them other "
                    "output names")
            writers[path.resolve()] = (sc, what)


def run_scenes(
    scenes: Sequence[Scene],
    model: InferenceModel,
    options: InferenceOptions | None = None,
    *,
    row_source: Callable[..., Any] | None = None,
    on_scene: Callable[[SceneOutcome], None] | None = None,
) -> ScenesReport:
    """Run each scene with :func:`~zoomsr.inference.pipeline.run_inference`, in order.

    With ``options.resume`` (and not ``overwrite``), a scene whose output an earlier run
    finished is skipped (:func:`~zoomsr.inference.run_record.finished_same_run`: outputs are only
    ever renamed into place once complete; one lacking a side output asked for now fails). A
    scene failing with bad input or an I/O error is recorded (its one-line reason) and the
    next scene runs; other errors (interrupts, bugs, Ray unreachable) stop the job, leaving
    finished scenes and the partial state of the current one for ``--resume``. ``on_scene``
    is called after each scene. Scenes of S2-NAIP chunks run locally whatever ``row_source``.
    """
    from zoomsr.inference.distributed import RayUnavailableError

    options = options or InferenceOptions()
    check_scene_outputs(scenes, options)
    kwargs = {} if row_source is None else {"row_source": row_source}
    outcomes: list[SceneOutcome] = []
    for scene in scenes:
        try:
            if options.resume and not options.overwrite and finished_same_run(
                    scene.output, list(scene.inputs), model, options):
                outcome = SceneOutcome(scene, "skipped")
            else:
                # S2-NAIP chunks are small and independent: they run here, not on Ray
                local = is_s2naip_input(list(scene.inputs))
                result = run_inference(list(scene.inputs), scene.output, model, options,
                                       **({} if local else kwargs))
                outcome = SceneOutcome(scene, "done", result=result)
        except RayUnavailableError:
            raise
        except (ZoomsrError, OSError, RasterioError) as exc:
            text = str(exc).strip()
            outcome = SceneOutcome(
                scene, "failed", error=text.splitlines()[0] if text else type(exc).__name__,
                exit_code=getattr(exc, "exit_code", 1))
        outcomes.append(outcome)
        if on_scene is not None:
            on_scene(outcome)
    return ScenesReport(outcomes)
