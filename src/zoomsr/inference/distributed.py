"""The scene pipeline on a Ray cluster: rows of windows computed by model workers.

The driver keeps everything that must be sequential and small (blending the rows, writing the
output, the resume state); Ray actors, each holding one copy of the model (on a GPU when the
cluster has them), read their windows from the inputs and run the model on them, using the
same :func:`~zoomsr.inference.pipeline.compute_row` as the local path, so the output is the
same. Inputs must be readable at the same paths on every node (a shared file system or object
store URLs that GDAL reads). Rows are submitted a few per worker ahead and consumed in order,
which bounds the driver's memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from zoomsr.errors import ConfigError, ZoomsrError
from zoomsr.inference.model import InferenceModel
from zoomsr.inference.pipeline import RowResult, ScenePlan

#: Rows queued per worker beyond the one it is computing.
AHEAD = 2


class RayUnavailableError(ZoomsrError, RuntimeError):
    """Ray is not installed or the cluster cannot be reached."""

    exit_code = 1


def _model_spec(model: InferenceModel) -> dict[str, Any]:
    name = getattr(model.module, "name", None)
    if not isinstance(name, str) or model.config is None:
        raise ConfigError("the Ray path needs a zoomsr model (with a name and config)")
    return {
        "name": name, "config": model.config, "label": model.label, "n_images": model.n_images,
        "layout": model.layout, "scale": model.scale, "weights": model.weights,
        "weights_sha256": model.weights_sha256, "autocast": model.autocast,
    }


def _worker_class(ray: Any) -> Any:
    @ray.remote
    class RowWorker:
        """Holds one model; computes rows of windows of the plan it was given."""

        def __init__(self, spec: dict[str, Any], state: dict, plan: ScenePlan,
                     device: str) -> None:
            import torch

            from zoomsr.inference.model import resolve_device
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
            )
            self.plan = plan

        def row(self, r: int) -> RowResult:
            from zoomsr.inference.pipeline import compute_row

            return compute_row(self.plan, self.model, r)

    return RowWorker


def ray_row_source(
    address: str | None = "local",
    workers: int = 2,
    gpus_per_worker: float | None = None,
) -> Callable[[ScenePlan, InferenceModel, Sequence[int]], Iterator[RowResult]]:
    """A ``row_source`` for :func:`~zoomsr.inference.pipeline.run_scene` that uses Ray.

    ``address``: ``"local"`` starts a local Ray instance with ``workers`` CPUs (stopped at the
    end); ``"auto"`` or ``"ray://host:port"`` / ``"host:port"`` joins a running cluster.
    ``gpus_per_worker``: default 1 when the cluster has GPUs, else 0.
    """
    if workers < 1:
        raise ConfigError(f"ray workers must be >= 1, got {workers}")

    def source(plan: ScenePlan, model: InferenceModel, rows: Sequence[int]) -> Iterator[RowResult]:
        try:
            import ray
        except ImportError:
            raise RayUnavailableError("--ray needs Ray: pip install 'ray>=2.9'") from None
        started = False
        if not ray.is_initialized():
            try:
                if address in (None, "", "local"):
                    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                             configure_logging=False)
                else:
                    ray.init(address=address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RayUnavailableError(f"cannot start or reach Ray at {address!r}: {exc}") \
                    from None
            started = True
        actors: list[Any] = []
        try:
            gpus = gpus_per_worker
            if gpus is None:
                gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= workers else 0.0
            device = "cuda" if gpus else "cpu"
            state = {k: v.detach().cpu() for k, v in model.module.state_dict().items()}
            worker = _worker_class(ray)
            spec = _model_spec(model)
            plan_ref, state_ref = ray.put(plan), ray.put(state)
            actors = [
                worker.options(num_cpus=1, num_gpus=gpus).remote(spec, state_ref, plan_ref, device)
                for _ in range(workers)
            ]
            pending: deque[Any] = deque()
            todo = iter(rows)
            for i, r in zip(range(workers * (1 + AHEAD)), todo, strict=False):
                pending.append(actors[i % workers].row.remote(r))
            submitted = len(pending)
            while pending:
                try:
                    result = ray.get(pending.popleft())
                except ray.exceptions.RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, ZoomsrError):  # keep the one-line message
                        raise cause from None
                    raise
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(actors[submitted % workers].row.remote(nxt))
                    submitted += 1
                yield result
        finally:
            for actor in actors:
                ray.kill(actor)
            if started:
                ray.shutdown()

    return source
