"""RayPool's handling of workers the cluster places late, or never, against a scripted Ray
(no cluster): which workers get rows, what is said, when it gives up."""

from __future__ import annotations

import time
import types
import warnings

import pytest

from zoomsr.errors import ZoomsrWarning
from zoomsr.inference import distributed


class _TaskError(Exception):
    pass


class _ActorError(Exception):
    pass


class _Ref:
    def __init__(self, value, ready) -> None:  # noqa: ANN001
        self.value, self.ready = value, ready


class _Ray:
    exceptions = types.SimpleNamespace(RayTaskError=_TaskError, RayActorError=_ActorError)

    def put(self, x):  # noqa: ANN001, ANN201
        return _Ref(lambda: x, lambda: True)

    def wait(self, refs, num_returns=1, timeout=None):  # noqa: ANN001, ANN201
        end = time.monotonic() + (timeout or 0)
        while True:
            done = [r for r in refs if r.ready()]
            if len(done) >= num_returns or time.monotonic() >= end:
                return done, [r for r in refs if r not in done]
            time.sleep(0.005)

    def get(self, ref):  # noqa: ANN001, ANN201
        while not ref.ready():
            time.sleep(0.005)
        return ref.value()

    def cancel(self, ref) -> None:  # noqa: ANN001
        pass

    def kill(self, actor) -> None:  # noqa: ANN001
        actor.killed = True

    resources = {"CPU": 1}

    def cluster_resources(self) -> dict:
        return self.resources

    def available_resources(self) -> dict:
        return {"CPU": 0}


class _Actor:
    """A worker that starts once ``placed()`` is true (or dies then, with ``dies``)."""

    def __init__(self, placed, dies: bool = False) -> None:  # noqa: ANN001
        self.placed, self.dies, self.killed, self.rows = placed, dies, False, []

    def _method(self, fn):  # noqa: ANN001, ANN202
        return types.SimpleNamespace(remote=lambda *a: _Ref(lambda: fn(*a), self.placed))

    @property
    def ready(self):  # noqa: ANN201
        def start() -> bool:
            if self.dies:
                raise _ActorError("the actor died in its creation task")
            return True

        return self._method(start)

    @property
    def set_plan(self):  # noqa: ANN201
        return self._method(lambda plan: None)

    @property
    def row(self):  # noqa: ANN201
        def compute(r: int) -> tuple:
            self.rows.append(r)
            return ("row", r)

        return self._method(compute)


@pytest.fixture
def pool_of(monkeypatch):
    """``pool_of(actors)``: a RayPool whose workers are these scripted actors."""
    monkeypatch.setattr(distributed, "READY_TIMEOUT_S", 1.0)
    monkeypatch.setattr(distributed, "WAIT_NOTICE_S", 0.0)
    monkeypatch.setattr(distributed, "_model_spec", lambda model: {})

    def make(actors: list[_Actor]) -> distributed.RayPool:
        made = iter(actors)
        worker = types.SimpleNamespace(options=lambda **kw: types.SimpleNamespace(
            remote=lambda *a: next(made)))
        monkeypatch.setattr(distributed, "_worker_class", lambda ray: worker)
        pool = distributed.RayPool("auto", workers=len(actors))
        pool._ray = _Ray()
        return pool

    return make


MODEL = types.SimpleNamespace(module=types.SimpleNamespace(state_dict=dict))


def test_rows_go_to_started_workers_and_the_wait_is_said_once(pool_of):
    never = _Actor(lambda: False)
    started = _Actor(lambda: True)
    pool = pool_of([started, never])
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        for _ in range(3):  # three strips or scenes through one pool
            assert [r for _, r in pool.rows(object(), MODEL, range(4))] == [0, 1, 2, 3]
    assert started.rows == [0, 1, 2, 3] * 3 and never.rows == []
    notes = [str(w.message) for w in said if issubclass(w.category, ZoomsrWarning)]
    assert notes == ["1 of 2 Ray model workers wait for resources after 0 s (the cluster has "
                     "0 CPU(s) free; each needs 1 CPU): the rows go to the 1 started, the "
                     "others join once placed"]


def test_a_worker_placed_late_joins(pool_of):
    t0 = time.monotonic()
    late = _Actor(lambda: time.monotonic() - t0 > 0.05)
    pool = pool_of([_Actor(lambda: True), late])
    rows = []
    for _, r in pool.rows(object(), MODEL, range(40)):
        rows.append(r)
        time.sleep(0.005)
    assert rows == list(range(40)) and late.rows  # it took some rows once it started


def test_no_worker_started_gives_up_with_one_line(pool_of):
    pool = pool_of([_Actor(lambda: False)])
    with pytest.warns(ZoomsrWarning, match="none of 1 has"), \
            pytest.raises(distributed.RayUnavailableError,
                          match=r"none of 1 Ray model workers started within 1 s"):
        list(pool.rows(object(), MODEL, range(3)))


def test_nothing_to_compute_asks_for_no_worker(pool_of):
    """A resumed run whose rows are all done: no worker started, nothing waited for."""
    pool = pool_of([_Actor(lambda: False)])
    assert list(pool.rows(object(), MODEL, range(0))) == [] and pool.actor_starts == 0


def test_a_worker_that_dies_while_starting_leaves_the_others_running(pool_of):
    t0 = time.monotonic()
    dies = _Actor(lambda: time.monotonic() - t0 > 0.05, dies=True)
    alive = _Actor(lambda: True)
    pool = pool_of([alive, dies])
    rows = []
    with pytest.warns(ZoomsrWarning, match=r"a Ray model worker could not start \(the actor "
                                           r"died in its creation task\); going on with the "
                                           r"other 1"):
        for _, r in pool.rows(object(), MODEL, range(30)):
            rows.append(r)
            time.sleep(0.005)
    assert rows == list(range(30)) and dies.killed and pool._actors == [alive]


@pytest.mark.parametrize(("cluster_gpus", "given", "expected"),
                         [(2, None, 1.0), (1, None, 0.0), (0, None, 0.0), (0, 0.5, 0.5)])
def test_worker_gpus_one_per_worker_when_the_cluster_has_them(cluster_gpus, given, expected):
    pool = distributed.RayPool("auto", workers=2, gpus_per_worker=given)
    pool._ray = _Ray()
    pool._ray.resources = {"CPU": 4, "GPU": cluster_gpus}
    assert pool.worker_gpus() == expected


def test_pool_arguments_and_a_closed_pool_are_refused(monkeypatch):
    """RayPool("local", "2") failed with a TypeError, 1.5 workers were taken; a pool used
    after close() started a new local Ray that nothing stopped."""
    from zoomsr.errors import ConfigError

    for bad in ("2", 1.5, 0):
        with pytest.raises(ConfigError, match=r"^workers must be "):
            distributed.RayPool("local", bad)
    pool = distributed.RayPool("local", 1)
    pool.close()
    with pytest.raises(RuntimeError, match="this RayPool is closed"):
        pool.start()
    with pytest.raises(RuntimeError, match="this RayPool is closed"):
        next(pool.rows(None, None, [0]))


def test_a_refused_join_suggests_token_authentication(monkeypatch):
    """Joining a `ray start` cluster (token auth by default) failed after 20 s with "Failed to
    connect to Ray cluster at ...", the reason only in Ray's log lines."""
    exc = RuntimeError("Failed to connect to Ray cluster at 192.0.2.2:6390")
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    text = distributed._in_our_terms(exc)
    assert text.startswith("Failed to connect to Ray cluster at 192.0.2.2:6390; if the cluster "
                           "uses token authentication") and "RAY_AUTH_MODE=token" in text
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # already set: not suggested again
    assert distributed._in_our_terms(exc) == str(exc)


def test_rays_token_notice_is_kept_off_stderr_when_joining_too(caplog):
    """Filtered when a local instance starts; a join printed it (the one line of a good run)."""
    import logging

    name = "ray._private.authentication.authentication_token_setup"
    seen = []

    class FakeRay:
        def init(self, address, **kwargs):  # noqa: ANN001, ANN003
            seen.append(address)
            logging.getLogger(name).warning("Token authentication is enabled for this Ray "
                                            "cluster")
            logging.getLogger(name).warning("something else")

    caplog.set_level(logging.WARNING, logger=name)
    for address in ("local", "127.0.0.1:6390"):
        distributed.RayPool(address, 1)._init(FakeRay())
    assert seen == ["local", "127.0.0.1:6390"]
    assert [r.getMessage() for r in caplog.records] == ["something else"] * 2


def test_more_local_workers_than_cpus_are_warned_about(monkeypatch):
    """6 workers on 2 CPUs started without a word (3.9 GB of models)."""
    monkeypatch.setattr(distributed.os, "cpu_count", lambda: 2)

    class FakeRay:
        def init(self, **kwargs):  # noqa: ANN003
            pass

    with pytest.warns(ZoomsrWarning, match=r"^6 Ray workers on 2 CPU\(s\): .*--ray-workers 2"):
        distributed.RayPool("local", 6)._init(FakeRay())
    with warnings.catch_warnings():
        warnings.simplefilter("error", ZoomsrWarning)
        distributed.RayPool("local", 2)._init(FakeRay())
        distributed.RayPool("127.0.0.1:6390", 6)._init(FakeRay())  # a cluster's own CPUs


@pytest.mark.parametrize("shadow", ["missing", "folder"])
def test_ray_missing_or_shadowed_by_a_folder_says_to_install_it(shadow, monkeypatch, tmp_path):
    """A folder named ray where Python looks (Ray leaves /tmp/ray; `python -m zoomsr` run
    from /tmp) imports as an empty namespace package: it ended in an AttributeError."""
    import sys

    fake = None
    if shadow == "folder":
        fake = types.ModuleType("ray")
        fake.__path__ = [str(tmp_path / "ray")]  # what a namespace package has, and no more
    monkeypatch.setitem(sys.modules, "ray", fake)  # None: "import ray" raises ImportError
    with pytest.raises(distributed.RayUnavailableError,
                       match=r"--ray needs Ray: pip install 'zoomsr\[ray\]'"):
        distributed.RayPool().start()
