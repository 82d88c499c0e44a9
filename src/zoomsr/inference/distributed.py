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
import logging
import os
import socket
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch

from zoomsr.errors import ConfigError, ZoomsrError, ZoomsrWarning, first_line
from zoomsr.inference.assemble import ReadyRow
from zoomsr.inference.model import InferenceModel, cuda_graphs_possible
from zoomsr.inference.rows import ScenePlan
from zoomsr.stopping import interrupts_held
from zoomsr.validate import check_int

if TYPE_CHECKING:
    from zoomsr.inference.grid import TargetGrid
    from zoomsr.inference.reader import SceneReader

#: Rows queued per worker beyond the one it is computing.
AHEAD = 2
#: How long a scene waits for its first model worker to start (a node to be added by the
#: autoscaler, an image pulled, a CPU or GPU freed by other jobs) before it fails.
READY_TIMEOUT_S = 600.0
#: After this long, workers still waiting to be placed are reported (once), not waited for.
WAIT_NOTICE_S = 30.0

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
        "cuda_graphs": getattr(model, "graphs_requested", False),
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
                module.output_size = None  # type: ignore[assignment]  # (an int attribute)
            module = module.to(dev).eval()
            if dev.type == "cuda":
                module = module.to(memory_format=torch.channels_last)
            self.model = InferenceModel(
                module=module, label=spec["label"], n_images=spec["n_images"],
                layout=spec["layout"], scale=spec["scale"], weights=spec["weights"],
                weights_sha256=spec["weights_sha256"], device=dev,
                # as resolved on the driver, whatever the worker's device: the run's record
                # (and so --resume) says which precision its rows were computed in
                autocast=spec["autocast"], config=spec["config"],
                bands=tuple(spec["bands"]), sample_steps=spec["sample_steps"],
                sample_seed=spec["sample_seed"],
                # as asked on the driver, where this worker's device allows (the driver's
                # may be a CPU)
                cuda_graphs=bool(spec.get("cuda_graphs"))
                and cuda_graphs_possible(dev, spec["name"] == "sr3"),
                graphs_requested=bool(spec.get("cuda_graphs")),
            )
            self.plan: ScenePlan | None = None
            self.cache: Any = None  # the scene's GDAL cache environment (read_cache)
            # a row's files decoded by as many threads as the CPUs Ray gave this worker (one
            # by default): the machine's other CPUs are other workers'
            import ray

            from zoomsr.inference import reader

            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
            reader.READ_THREADS = max(1, int(cpus))

        def read_threads(self) -> int:
            """Threads that decode a row's files in this worker (1: its own alone)."""
            from zoomsr.inference import reader

            return 1 if reader.read_pool() is None else min(reader.READ_THREADS,
                                                            reader.workers_available())

        def ready(self) -> bool:
            """Answers once the worker holds its model (it has a CPU, or a GPU, to run on)."""
            return True

        def set_plan(self, plan: ScenePlan) -> None:
            from zoomsr.inference.inputs.rasters import read_cache
            from zoomsr.inference.reader import read_cache_bytes
            from zoomsr.inference.windows import group_read_width

            # calls from one driver run in order on an actor, so rows submitted after this
            # use the new scene; the previous scene's open datasets are released
            if self.plan is not None:
                self.plan.reader.close()
            # CUDA graphs of this plan's batch shapes, made now (one row at a time here, so
            # the rows' count does not matter), the last plan's dropped
            from zoomsr.inference.rows import RowPart, prepare_graphs

            prepare_graphs(self.model, [RowPart(plan, [0])])
            if self.cache is not None:
                self.cache.__exit__(None, None, None)
                self.cache = None
            self.plan = plan
            # GDAL's cache sized for the rows this actor reads (one at a time)
            w = plan.windows
            strip = group_read_width(w, plan.columns or (0, len(w.xs)))
            # (a scene's plan: the Ray path runs scenes)
            reader, grid = cast("SceneReader", plan.reader), cast("TargetGrid", plan.grid)
            self.cache = read_cache(read_cache_bytes(reader.frames, grid, w.win_h, strip, 1))
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


#: The connection preface of HTTP/2, which Ray's GCS and client server (gRPC) speak.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast when nothing answers at a ``host:port`` or ``ray://host:port`` address, or
    what answers is no gRPC server (a web page, the dashboard): ``ray.init`` would retry for
    many minutes, printing warnings, deaf to Ctrl-C. ``auto`` checks the ``RAY_ADDRESS`` it
    would use (a ``ray start`` cluster's own file is left to Ray)."""
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "")
    if address.startswith(("http://", "https://")):
        raise RayUnavailableError(
            f"cannot use {address!r} as a Ray address: that is a web address (the dashboard's, "
            "port 8265 by default); give the head's GCS address HOST:6379 or ray://HOST:10001")
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return
    where = (host.removeprefix("[").removesuffix("]") or "127.0.0.1", int(port))
    try:
        conn = socket.create_connection(where, timeout=timeout)
    except OSError as exc:
        raise RayUnavailableError(
            f"cannot reach Ray at {address!r}: nothing answers there within {timeout:g} s "
            f"({exc.strerror or exc}); is the cluster up (`ray status` on the head) and is this "
            "the head's address (GCS port 6379 by default, ray:// client port 10001)?"
        ) from None
    with conn:
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
            return  # a TLS server does not answer a plain preface: left to Ray
        try:
            conn.settimeout(timeout)
            conn.sendall(_HTTP2_PREFACE)
            reply = conn.recv(64)
        except OSError:  # silent, or reset (a TLS server): left to Ray
            return
    # gRPC (HTTP/2) answers the preface with a SETTINGS frame; only a reply in text (an HTTP/1
    # status line, a web page) is surely no Ray cluster
    text = reply[:1] in (b"H", b"<") and all(32 <= c < 127 or c in (9, 10, 13) for c in reply)
    if text:
        said = reply.split(b"\r\n")[0].decode("ascii", "replace").strip()
        raise RayUnavailableError(
            f"cannot use {address!r} as a Ray address: what answers there is no Ray cluster "
            f"(it says {said[:40]!r}); give the head's GCS address (port 6379 by default) or "
            "ray://HOST:10001, not the dashboard's port (8265)")


def _in_our_terms(exc: BaseException) -> str:
    """Ray's reason, where it names Ray's own CLI (``--address``) in zoomsr's options."""
    text = first_line(exc)
    if "Could not find any running Ray instance" in text:
        return ("no Ray cluster is running on this machine (`ray start --head` starts one); "
                "or pass --ray HOST:PORT of a running one, or --ray local to start Ray here")
    if "Failed to connect to Ray cluster" in text and not os.environ.get("RAY_AUTH_MODE"):
        # Ray logs the reason (InvalidAuthToken) and raises this: a cluster started by
        # `ray start` asks for a token by default (Ray 2.5x), which a client must be told of
        return (f"{text}; if the cluster uses token authentication (`ray start`'s default), "
                "run with RAY_AUTH_MODE=token set (and its token, as `ray start` printed)")
    return text


def gpus_each(available: float, workers: int) -> float:
    """GPUs each of ``workers`` model workers gets when not told: 1 when ``available`` holds
    one per worker, else 0."""
    return 1.0 if available >= workers else 0.0


def workers_device(gpus: float) -> torch.device:
    """Where workers given ``gpus`` GPUs each compute rows."""
    return torch.device("cuda" if gpus else "cpu")


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
        check_int("workers", workers, minimum=1)
        self.address = address
        self.workers = workers
        self.gpus_per_worker = gpus_per_worker
        self._ray: Any = None
        self._started = False
        self._actors: list[Any] = []
        self._ready: list[Any] = []  # started workers, in the order they started
        self._starting: dict[Any, Any] = {}  # ready() ref -> worker not placed yet
        self._requested_at = 0.0
        self._noticed_none = self._noticed = False
        self._gpus = 0.0
        self._model: InferenceModel | None = None
        self.scenes = 0  # scenes whose rows went through this pool (for reports and tests)
        self.actor_starts = 0  # times a set of workers was created
        self._closed = False

    def start(self) -> RayPool:
        """Start or join Ray now (so a wrong address fails before any scene runs)."""
        if self._closed:  # it started a local Ray again, which nothing then stopped
            raise RuntimeError("this RayPool is closed: make a new one (or use it inside its "
                               "`with` block)")
        if self._ray is not None:
            return self
        try:
            import ray
        except ImportError:
            ray = None  # type: ignore[assignment]
        # a folder named ray in the working folder (Ray leaves /tmp/ray) imports as an empty
        # namespace package: "module 'ray' has no attribute 'is_initialized'"
        if ray is None or not callable(getattr(ray, "init", None)):
            raise RayUnavailableError("--ray needs Ray: pip install 'zoomsr[ray]' (or "
                                      "'ray>=2.9')")
        if not ray.is_initialized():
            if self.address not in (None, "", "local"):
                check_reachable(self.address)
            try:
                # a Ctrl-C in the middle of ray.init left Ray's processes running, or crashed
                # the process at exit: it is raised once Ray is up, and Ray is stopped again
                with interrupts_held(), _sigterm_kept(ray):
                    self._init(ray)
            except KeyboardInterrupt:
                if ray.is_initialized():
                    _shutdown(ray)
                raise
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = repr(self.address)
                if self.address == "auto" and os.environ.get("RAY_ADDRESS"):
                    where += f" (RAY_ADDRESS={os.environ['RAY_ADDRESS']})"
                raise RayUnavailableError(
                    f"cannot start or reach Ray at {where}: {_in_our_terms(exc)}"
                ) from None
            self._started = True
        self._ray = ray
        return self

    def _init(self, ray: Any) -> None:
        # Ray announces on every start or join that token authentication is on, its default:
        # the one stderr line of a run that went well (about a private instance this run
        # stops at its end, or a cluster whose token the user gave)
        logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
        logger.addFilter(_token_notice)
        try:
            if self.address in (None, "", "local"):
                cpus = os.cpu_count() or 1
                if self.workers > cpus:
                    # each holds a model and a row in flight: 6 on 2 CPUs took 3.9 GB
                    warnings.warn(f"{self.workers} Ray workers on {cpus} CPU(s): each holds a "
                                  "model and its rows, for no more speed than one a CPU "
                                  f"(--ray-workers {cpus})", ZoomsrWarning, stacklevel=4)
                # address="local": a new instance even where RAY_ADDRESS or a `ray start`
                # cluster exists (no address would join it, and refuse num_cpus)
                ray.init(address="local", num_cpus=self.workers, include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            else:
                ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        finally:
            logger.removeFilter(_token_notice)

    def worker_gpus(self) -> float:
        """GPUs each model worker gets: ``gpus_per_worker``, else 1 when the cluster has a GPU
        per worker, else 0 (starts or joins Ray to ask the cluster)."""
        if self.gpus_per_worker is not None:
            return self.gpus_per_worker
        self.start()
        return gpus_each(self._ray.cluster_resources().get("GPU", 0), self.workers)

    @property
    def device(self) -> torch.device:
        """Where the workers compute rows: ``cuda`` when each gets a GPU, else the CPU (starts
        or joins Ray to ask the cluster). A run on this pool takes this device's defaults
        (``--batch-size``, the automatic windows), not those of the machine it starts on."""
        return workers_device(self.worker_gpus())

    def _kill_actors(self) -> None:
        for actor in self._actors:
            with contextlib.suppress(Exception):  # already dead: nothing left to release
                self._ray.kill(actor)
        self._actors, self._model = [], None
        self._ready, self._starting = [], {}

    def _ensure_actors(self, model: InferenceModel) -> list[Any]:
        """Request the workers for ``model`` (once per model); they start as the cluster
        places them (:meth:`_update_ready`)."""
        if self._actors and self._model is model:
            return self._actors
        ray = self._ray
        self._kill_actors()
        spec = _model_spec(model)
        gpus = self._gpus = self.worker_gpus()
        state = {k: v.detach().cpu() for k, v in model.module.state_dict().items()}
        worker = _worker_class(ray)
        state_ref = ray.put(state)
        self._actors = [worker.options(num_cpus=1, num_gpus=gpus).remote(
            spec, state_ref, workers_device(gpus).type) for _ in range(self.workers)]
        self._starting = {a.ready.remote(): a for a in self._actors}
        self._requested_at = time.monotonic()
        # workers waiting for resources: said once per set of workers (none started yet;
        # some not placed while the others compute)
        self._noticed_none = self._noticed = False
        self._model = model
        self.actor_starts += 1
        return self._actors

    def _update_ready(self, timeout: float = 0.0, at_least: int = 0) -> None:
        """Move the workers that have started to ``_ready`` (waiting up to ``timeout`` s for
        ``at_least`` of them); a worker that failed to start raises here."""
        if not self._starting:
            return
        refs = list(self._starting)
        if at_least:
            self._ray.wait(refs, num_returns=min(at_least, len(refs)), timeout=timeout)
        done, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)  # all started so far
        for ref in done:
            actor = self._starting.pop(ref)
            try:
                self._ray.get(ref)
            except self._ray.exceptions.RayActorError as exc:
                if not (self._ready or self._starting):
                    self._get(ref)  # none other: raised as a dead worker
                # one worker lost (its node pre-empted, out of memory): the others go on
                with contextlib.suppress(Exception):
                    self._ray.kill(actor)
                self._actors.remove(actor)
                warnings.warn(f"a Ray model worker could not start ({first_line(exc)}); "
                              f"going on with the other {len(self._actors)}", ZoomsrWarning,
                              stacklevel=2)
                continue
            except Exception:
                self._get(ref)  # the worker's own error (building the model): one line
            self._ready.append(actor)

    def _wait_for_a_worker(self) -> None:
        """Block until one worker has started; say so when it takes long, and give up after
        :data:`READY_TIMEOUT_S` (a cluster whose CPUs or GPUs are all taken). The rows only go
        to started workers: one that can never be placed would hold its rows forever."""
        while not self._ready:
            waited = time.monotonic() - self._requested_at
            if waited >= READY_TIMEOUT_S:
                n = len(self._actors)
                self._kill_actors()
                raise RayUnavailableError(
                    f"none of {n} Ray model workers started within {READY_TIMEOUT_S:g} s: the "
                    f"cluster has {self._free()} free (each worker needs {_need(self._gpus)}); "
                    "free some, add nodes, or run without --ray")
            step = READY_TIMEOUT_S - waited if self._noticed_none else min(
                READY_TIMEOUT_S - waited, max(WAIT_NOTICE_S - waited, 0.0))
            self._update_ready(timeout=step, at_least=1)
            if not self._ready and not self._noticed_none and \
                    time.monotonic() - self._requested_at >= WAIT_NOTICE_S:
                self._noticed_none = True
                warnings.warn(
                    f"waiting for the Ray model workers to start: none of {len(self._actors)} "
                    f"has after {WAIT_NOTICE_S:g} s (the cluster has {self._free()} free; each "
                    f"needs {_need(self._gpus)}); giving up after {READY_TIMEOUT_S:g} s",
                    ZoomsrWarning, stacklevel=3)

    def _free(self) -> str:
        return _resources(self._ray.available_resources(), self._gpus)

    def rows(self, plan: ScenePlan, model: InferenceModel,
             rows: Sequence[int]) -> Iterator[ReadyRow]:
        """Compute and finish ``rows`` of ``plan`` on the workers; yield them in order."""
        rows = list(rows)
        if not rows:  # e.g. a resumed run whose rows were all computed: no worker needed
            return
        self.start()
        ray = self._ray
        actors = self._ensure_actors(model)
        plan_ref = ray.put(plan)
        # queued on every worker (one still starting runs it first once placed)
        plan_refs = {a: a.set_plan.remote(plan_ref) for a in actors}
        self._wait_for_a_worker()
        checked: set[Any] = set()

        def usable() -> list[Any]:
            """The started workers, their plan checked: awaited, so a failure (an input the
            workers cannot open) is raised here as one line, not printed by Ray as an
            unhandled error when the refs are dropped."""
            self._update_ready()
            failed: list[Exception] = []
            for actor in self._ready:
                if actor not in checked:
                    checked.add(actor)
                    try:
                        self._get(plan_refs[actor])
                    except Exception as exc:  # every ref collected, then the first raised
                        failed.append(exc)
            if failed:
                raise failed[0]
            return self._ready

        workers = usable()
        self.scenes += 1
        pending: deque[Any] = deque()
        todo = iter(rows)
        submitted = 0

        def top_up() -> None:
            nonlocal submitted
            while len(pending) < len(workers) * (1 + AHEAD):
                r = next(todo, None)
                if r is None:
                    return
                pending.append(workers[submitted % len(workers)].row.remote(r))
                submitted += 1

        top_up()
        try:
            while pending:
                result = self._get(pending.popleft())
                if self._starting:  # workers placed later join in
                    workers = usable()
                    if self._starting and not self._noticed and \
                            time.monotonic() - self._requested_at >= WAIT_NOTICE_S:
                        self._noticed = True
                        warnings.warn(
                            f"{len(self._starting)} of {len(self._actors)} Ray model workers "
                            f"wait for resources after {WAIT_NOTICE_S:g} s (the cluster has "
                            f"{self._free()} free; each needs {_need(self._gpus)}): the rows go "
                            f"to the {len(workers)} started, the others join once placed",
                            ZoomsrWarning, stacklevel=2)
                top_up()
                yield result
        finally:
            # a scene that stopped early (error, interrupt) should not keep the workers busy
            for ref in pending:
                with contextlib.suppress(Exception):  # finished or not cancellable: harmless
                    ray.cancel(ref)

    def _get(self, ref: Any) -> Any:
        """``ray.get(ref)``; a worker's exception raised as itself, as on the local path (Ray
        wraps it with the remote traceback), a dead worker as :class:`RayWorkerError`."""
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):  # ZoomsrError: its one line; else as locally
                raise cause from None
            raise
        except ray.exceptions.RayActorError as exc:
            # the next scene gets fresh workers instead of failing the same way
            self._kill_actors()
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise RayWorkerError(f"a Ray model worker died: {first}") from None

    def close(self) -> None:
        """Kill the workers; stop Ray if this pool started it. The pool cannot start again."""
        self._closed = True
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


def _token_notice(record: logging.LogRecord) -> bool:
    return "Token authentication is enabled for this Ray cluster" not in record.getMessage()


def _need(gpus: float) -> str:
    return "1 CPU" + (f" and {gpus:g} GPU" if gpus else "")


def _resources(resources: dict, gpus: float) -> str:
    text = f"{resources.get('CPU', 0):g} CPU(s)"
    return text + (f" and {resources.get('GPU', 0):g} GPU(s)" if gpus else "")


@contextlib.contextmanager
def _sigterm_kept(ray: Any) -> Iterator[None]:
    """Keep the SIGTERM handler in place (the one holding it) while ``ray.init`` runs.

    ``ray.init`` first sets a SIGTERM handler of its own (``sys.exit``): a SIGTERM while Ray
    started its processes ended zoomsr at once (exit 15, nothing said) and left them running
    for minutes. Ray's setter (``ray._private.utils.set_sigterm_handler``) does nothing
    meanwhile, so the signal is held and then handled as zoomsr handles it (a SIGTERM during
    a run stops it as Ctrl-C does); where a Ray has no such setter, nothing changes."""
    utils: Any = getattr(getattr(ray, "_private", None), "utils", None)
    setter = getattr(utils, "set_sigterm_handler", None)
    if setter is None:
        yield
        return
    utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        utils.set_sigterm_handler = setter


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
    check_int("workers", workers, minimum=1)

    def source(plan: ScenePlan, model: InferenceModel, rows: Sequence[int]) -> Iterator[ReadyRow]:
        with RayPool(address, workers, gpus_per_worker) as pool:
            yield from pool.rows(plan, model, rows)

    # the workers' device, whose defaults the run takes: known from gpus_per_worker, or for a
    # local instance from this machine's GPUs (RayPool.worker_gpus's rule); a cluster's only
    # once joined (then the model's device is taken: use a RayPool, whose device asks it)
    gpus = gpus_per_worker
    if gpus is None and address in (None, "", "local"):
        gpus = gpus_each(torch.cuda.device_count(), workers)
    if gpus is not None:
        source.device = workers_device(gpus)  # type: ignore[attr-defined]
    return source
