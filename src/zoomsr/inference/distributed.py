"""The scene pipeline on a Ray cluster: rows of windows computed by model workers.

The driver keeps everything that must be sequential and small (adding the rows' carried
edges, writing the output, the resume state); Ray actors, each holding one copy of the model
(on a GPU when the cluster has them), read their windows from the inputs, run the model on
them, blend them and finish the rows only they decide, with the same
:func:`~zoomsr.inference.rows.compute_row` as the local path; the workers do not have the
carried sums (the local path adds them in its row threads, in order), so they finish only
their rows' own output rows (:func:`~zoomsr.inference.assemble.prepare_row`) and the driver
adds the carry (:class:`~zoomsr.inference.assemble.RowAssembler`): the same bytes. Inputs
must be readable at the same paths on every node (a shared file system or object store URLs
that GDAL reads). Rows are submitted a few per worker ahead and consumed in order,
which bounds the driver's memory.

:class:`RayPool` holds one Ray session and one set of workers for a whole job: several scenes
(:mod:`zoomsr.inference.scenes`) run one after another through the same workers, each scene's
plan being sent to them once. :func:`ray_row_source` is the one-scene shorthand.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from zoomsr.errors import ConfigError, ZoomsrError, first_line
from zoomsr.inference.assemble import ReadyRow
from zoomsr.inference.model import InferenceModel
from zoomsr.inference.rows import ScenePlan
from zoomsr.stopping import interrupts_held

#: Rows queued per worker beyond the one it is computing.
AHEAD = 2

RowSource = Callable[[ScenePlan, InferenceModel, Sequence[int]], Iterator[ReadyRow]]


class RayUnavailableError(ZoomsrError, RuntimeError):
    """Ray is not installed or the cluster cannot be reached."""

    exit_code = 1


class RayWorkerError(ZoomsrError, RuntimeError):
    """A Ray model worker died (node lost, out of memory); the pool starts new ones."""

    exit_code = 1


def _model_spec(model: InferenceModel) -> dict[str, Any]:
    name = getattr(model.module, "name", None)
    if not isinstance(name, str) or model.config is None:
        raise ConfigError("the Ray path needs a zoomsr model (with a name and config)")
    return {
        "name": name, "config": model.config, "label": model.label, "n_images": model.n_images,
        "layout": model.layout, "scale": model.scale, "weights": model.weights,
        "weights_sha256": model.weights_sha256, "autocast": model.autocast,
        "bands": list(model.bands), "sample_steps": model.sample_steps,
        "sample_seed": model.sample_seed,
    }


def _worker_class(ray: Any) -> Any:
    @ray.remote
    class RowWorker:
        """Holds one model and the plan of the current scene; computes its rows of windows."""

        def __init__(self, spec: dict[str, Any], state: dict, device: str) -> None:
            import torch

            from zoomsr.devices import resolve_device
            from zoomsr.models import create_model

            dev = resolve_device(device)
            module = create_model(spec["name"], **spec["config"])
            module.load_state_dict(state)
            if hasattr(module, "output_size"):
                module.output_size = None
            module = module.to(dev).eval()
            if dev.type == "cuda":
                module = module.to(memory_format=torch.channels_last)
            self.model = InferenceModel(
                module=module, label=spec["label"], n_images=spec["n_images"],
                layout=spec["layout"], scale=spec["scale"], weights=spec["weights"],
                weights_sha256=spec["weights_sha256"], device=dev,
                autocast=spec["autocast"] and dev.type == "cuda", config=spec["config"],
                bands=tuple(spec["bands"]), sample_steps=spec["sample_steps"],
                sample_seed=spec["sample_seed"],
            )
            self.plan: ScenePlan | None = None
            self.cache: Any = None  # the scene's GDAL cache environment (read_cache)

        def set_plan(self, plan: ScenePlan) -> None:
            from zoomsr.inference.reader import read_cache, read_cache_bytes
            from zoomsr.inference.windows import group_read_width

            # calls from one driver run in order on an actor, so rows submitted after this
            # use the new scene; the previous scene's open datasets are released
            if self.plan is not None:
                self.plan.reader.close()
            if self.cache is not None:
                self.cache.__exit__(None, None, None)
                self.cache = None
            self.plan = plan
            # GDAL's cache sized for the rows this actor reads (one at a time)
            w = plan.windows
            strip = group_read_width(w, plan.columns or (0, len(w.xs)))
            self.cache = read_cache(read_cache_bytes(plan.reader.frames, plan.grid, w.win_h,
                                                     strip, 1))
            self.cache.__enter__()

        def row(self, r: int) -> ReadyRow:
            from zoomsr.inference.assemble import prepare_row
            from zoomsr.inference.rows import blend_device, compute_row

            if self.plan is None:
                raise RuntimeError("row() before set_plan()")
            # blended on the worker's GPU if it has one, and finished here: the driver gets
            # uint8 rows (4x less to send than float sums) and only adds the carried edges
            res = compute_row(self.plan, self.model, r, blend_device(self.model))
            return prepare_row(res, self.plan.windows, self.model.scale, with_lr=True)

    return RowWorker


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast when nothing answers at a ``host:port`` or ``ray://host:port`` address:
    ``ray.init`` would retry for many minutes, printing warnings. ``auto`` checks the
    ``RAY_ADDRESS`` it would use (a ``ray start`` cluster's own file is left to Ray)."""
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "")
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise RayUnavailableError(
            f"cannot reach Ray at {address!r}: nothing answers there within {timeout:g} s "
            f"({exc.strerror or exc}); is the cluster up (`ray status` on the head) and is this "
            "the head's address (GCS port 6379 by default, ray:// client port 10001)?"
        ) from None


def _in_our_terms(exc: BaseException) -> str:
    """Ray's reason, where it names Ray's own CLI (``--address``) in zoomsr's options."""
    text = first_line(exc)
    if "Could not find any running Ray instance" in text:
        return ("no Ray cluster is running on this machine (`ray start --head` starts one); "
                "or pass --ray HOST:PORT of a running one, or --ray local to start Ray here")
    return text


class RayPool:
    """One Ray session and one set of model workers, reused by every scene of a job.

    ``address``: ``"local"`` starts a local Ray instance with ``workers`` CPUs (stopped by
    :meth:`close`); ``"auto"`` or ``"ray://host:port"`` / ``"host:port"`` joins a running
    cluster (left running). ``gpus_per_worker``: default 1 when the cluster has a GPU per
    worker, else 0. The workers are created on the first scene, from its model, and kept while
    later scenes use the same model object. :meth:`rows` is a ``row_source`` for
    :func:`~zoomsr.inference.pipeline.run_scene`. Use as a context manager.
    """

    def __init__(self, address: str | None = "local", workers: int = 2,
                 gpus_per_worker: float | None = None) -> None:
        if workers < 1:
            raise ConfigError(f"ray workers must be >= 1, got {workers}")
        self.address = address
        self.workers = workers
        self.gpus_per_worker = gpus_per_worker
        self._ray: Any = None
        self._started = False
        self._actors: list[Any] = []
        self._model: InferenceModel | None = None
        self.scenes = 0  # scenes whose rows went through this pool (for reports and tests)
        self.actor_starts = 0  # times a set of workers was created

    def start(self) -> RayPool:
        """Start or join Ray now (so a wrong address fails before any scene runs)."""
        if self._ray is not None:
            return self
        try:
            import ray
        except ImportError:
            raise RayUnavailableError("--ray needs Ray: pip install 'ray>=2.9'") from None
        if not ray.is_initialized():
            if self.address not in (None, "", "local"):
                check_reachable(self.address)
            try:
                # a Ctrl-C in the middle of ray.init left Ray's processes running, or crashed
                # the process at exit: it is raised once Ray is up, and Ray is stopped again
                with interrupts_held():
                    self._init(ray)
            except KeyboardInterrupt:
                if ray.is_initialized():
                    _shutdown(ray)
                raise
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RayUnavailableError(
                    f"cannot start or reach Ray at {self.address!r}: {_in_our_terms(exc)}"
                ) from None
            self._started = True
        self._ray = ray
        return self

    def _init(self, ray: Any) -> None:
        if self.address in (None, "", "local"):
            # address="local": a new instance even where RAY_ADDRESS or a `ray start` cluster
            # exists (no address would join it, and refuse num_cpus)
            ray.init(address="local", num_cpus=self.workers, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)

    def _kill_actors(self) -> None:
        for actor in self._actors:
            with contextlib.suppress(Exception):  # already dead: nothing left to release
                self._ray.kill(actor)
        self._actors, self._model = [], None

    def _ensure_actors(self, model: InferenceModel) -> list[Any]:
        if self._actors and self._model is model:
            return self._actors
        ray = self._ray
        self._kill_actors()
        spec = _model_spec(model)
        gpus = self.gpus_per_worker
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= self.workers else 0.0
        device = "cuda" if gpus else "cpu"
        state = {k: v.detach().cpu() for k, v in model.module.state_dict().items()}
        worker = _worker_class(ray)
        state_ref = ray.put(state)
        self._actors = [
            worker.options(num_cpus=1, num_gpus=gpus).remote(spec, state_ref, device)
            for _ in range(self.workers)
        ]
        self._model = model
        self.actor_starts += 1
        return self._actors

    def rows(self, plan: ScenePlan, model: InferenceModel,
             rows: Sequence[int]) -> Iterator[ReadyRow]:
        """Compute and finish ``rows`` of ``plan`` on the workers; yield them in order."""
        self.start()
        ray = self._ray
        actors = self._ensure_actors(model)
        plan_ref = ray.put(plan)
        for actor in actors:
            actor.set_plan.remote(plan_ref)
        self.scenes += 1
        n = len(actors)
        pending: deque[Any] = deque()
        todo = iter(rows)
        for i, r in zip(range(n * (1 + AHEAD)), todo, strict=False):
            pending.append(actors[i % n].row.remote(r))
        submitted = len(pending)
        try:
            while pending:
                try:
                    result = ray.get(pending.popleft())
                except ray.exceptions.RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, ZoomsrError):  # keep the one-line message
                        raise cause from None
                    raise
                except ray.exceptions.RayActorError as exc:
                    # the next scene gets fresh workers instead of failing the same way
                    self._kill_actors()
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    raise RayWorkerError(f"a Ray model worker died: {first}") from None
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(actors[submitted % n].row.remote(nxt))
                    submitted += 1
                yield result
        finally:
            # a scene that stopped early (error, interrupt) should not keep the workers busy
            for ref in pending:
                with contextlib.suppress(Exception):  # finished or not cancellable: harmless
                    ray.cancel(ref)

    def close(self) -> None:
        """Kill the workers; stop Ray if this pool started it."""
        if self._ray is None:
            return
        self._kill_actors()
        if self._started:
            _shutdown(self._ray)
            self._started = False
        self._ray = None

    def __enter__(self) -> RayPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shutdown(ray: Any) -> None:
    # held: a Ctrl-C cutting Ray's shutdown left its processes running, or was swallowed by a
    # garbage-collection callback ("Exception ignored in: ... WeakSet ...")
    with interrupts_held():
        ray.shutdown()


def ray_row_source(
    address: str | None = "local",
    workers: int = 2,
    gpus_per_worker: float | None = None,
) -> RowSource:
    """A ``row_source`` for one :func:`~zoomsr.inference.pipeline.run_scene` call on Ray.

    Each call starts (or joins) Ray and its own workers and releases them at the end (a scene
    wider than ``column_width`` calls it once per column strip); for several scenes or wide
    ones use one :class:`RayPool` and pass ``pool.rows``. Arguments as for
    :class:`RayPool`.
    """
    if workers < 1:
        raise ConfigError(f"ray workers must be >= 1, got {workers}")

    def source(plan: ScenePlan, model: InferenceModel, rows: Sequence[int]) -> Iterator[ReadyRow]:
        with RayPool(address, workers, gpus_per_worker) as pool:
            yield from pool.rows(plan, model, rows)

    return source
