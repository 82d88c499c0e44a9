"""The processes of a launched DDP run agree that it can start, before its process group.

Under a launcher (torchrun, SLURM's srun, Lightning's variables set by hand on each node)
every rank is a process of its own. Lightning sets up the process group inside ``fit``, where
each rank waits for all the others, for the group's timeout (30 minutes by default): a rank
that stopped before it (rank 0 refused the run folder's lock, a check failing on one node
only) left the others waiting that long, and the job hung instead of failing.

So the processes that exist before training (all ranks under a launcher; the first process
of each node where Lightning starts the others itself) meet first, at the address and port
the process group will use: each tells the others whether its checks passed; where one
failed, every one raises that error (the lowest rank's), in seconds. Rank 0 hosts the store
(as the process group's set-up does; torchrun's agent hosts it instead where it serves that
address), and the process group's set-up takes the same store over (a multi-tenant
``TCPStore`` on that port), so nothing else is opened.
"""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import timedelta
from typing import Any

from zoomsr import errors
from zoomsr.errors import ZoomsrError, first_line

#: Set for the processes Lightning starts itself (``--devices N`` without a launcher): the
#: process starting them passed the checks, and they are not waited for (Lightning ends the
#: others where one fails).
STARTED_BY = "ZOOMSR_TRAIN_STARTED_BY"

#: Seconds between looks at the store (a wait in one call could not be interrupted) and
#: between tries to reach its host.
_POLL_S = 0.05
_CONNECT_S = 0.2

#: Gates of this process so far: each ``train`` of a process (all ranks run the same calls)
#: has keys of its own in a store that outlives it (torchrun's agent's).
_count = 0


def _default_timeout() -> timedelta:
    from torch.distributed import default_pg_timeout

    return default_pg_timeout


def launched_by_a_launcher(rank_variables: tuple[str, ...]) -> bool:
    """Whether this process may be one of a run's processes that a launcher started (a rank
    variable set, not by this package's own start of the others)."""
    if os.environ.get(STARTED_BY):
        return False
    return any(os.environ.get(name, "").strip() for name in rank_variables)


class RunGate:
    """The meeting of a launched run's processes before training (module docstring)."""

    def __init__(self, address: str, port: int, rank: int, ranks: list[int], world: int,
                 timeout: timedelta, since: float) -> None:
        global _count
        _count += 1
        # torch's own test (torch.distributed.rendezvous._create_c10d_store): torchrun's agent
        # hosts the store at its MASTER_ADDR:MASTER_PORT, every rank is a client there
        agent = (os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True)
                 and os.environ.get("MASTER_ADDR") == address
                 and os.environ.get("MASTER_PORT") == str(port))
        self.rank, self.ranks, self.world = rank, ranks, world
        self.hosts = rank == 0 and not agent
        self.timeout = timeout
        self.since = since
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        self.prefix = f"zoomsr/train/{restart}/{_count}/"
        self.store = _connect(address, port, self.hosts, timeout)

    @classmethod
    def of(cls, trainer: Any, since: float) -> RunGate | None:
        """The gate of ``trainer``'s run for this process; None where no other process of
        the run exists before training (one process; a process Lightning started; Lightning
        starting the others with multiprocessing), or the strategy sets up no process group
        of torch's at the cluster environment's address."""
        from lightning.pytorch.strategies import ParallelStrategy
        from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

        strategy = trainer.strategy
        env = getattr(strategy, "cluster_environment", None)
        world = trainer.world_size
        if (os.environ.get(STARTED_BY) or env is None or world <= 1
                or not isinstance(strategy, ParallelStrategy)
                or type(strategy).__name__.startswith("XLA")):
            return None
        if env.creates_processes_externally:
            ranks = list(range(world))
        elif isinstance(strategy.launcher, _SubprocessScriptLauncher):
            # Lightning starts each node's other processes inside fit: its first ones now
            per_node = max(1, getattr(strategy, "num_processes", 1))
            ranks = list(range(0, world, per_node))
        else:
            return None
        if len(ranks) == 1 or trainer.global_rank not in ranks:
            return None
        return cls(env.main_address, env.main_port, trainer.global_rank, ranks, world,
                   getattr(strategy, "_timeout", None) or _default_timeout(), since)

    def agree(self, stage: str, error: BaseException | None, first_only: bool = False) -> None:
        """Tell the others this process's outcome of ``stage`` (``error``: it failed; with
        ``first_only`` rank 0's alone counts, the others tell nothing) and hear theirs;
        where one failed, raise its error (the lowest rank's) here as on every other."""
        tellers = self.ranks[:1] if first_only else self.ranks
        if self.rank in tellers:
            self._set(f"{stage}/{self.rank}", "ok" if error is None else _described(error))
        # a process that failed needs only the lower ranks' outcomes (its own comes first
        # otherwise): rank 0 does not wait for processes that may never come
        heard = [r for r in tellers if error is None or r < self.rank]
        outcomes = self._outcomes(stage, heard)
        failed = next(((r, o) for r, o in zip(heard, outcomes, strict=True) if o != "ok"), None)
        if failed is None:
            if error is None:
                return
            failed = (self.rank, _described(error))
        self._part(stage)
        rank, text = failed
        if rank == self.rank and rank == self.ranks[0] and error is not None:
            raise error
        what = json.loads(text)
        kind = getattr(errors, what["type"], None)
        if not (isinstance(kind, type) and issubclass(kind, ZoomsrError)):
            kind = ZoomsrError
        message = what["message"]
        if rank != self.ranks[0]:
            message = f"{message} (on rank {rank} of {self.world})"
        raise kind(message) from (error if rank == self.rank else None)

    def _outcomes(self, stage: str, ranks: list[int]) -> list[str]:
        keys = [self._key(f"{stage}/{r}") for r in ranks]
        deadline = time.monotonic() + self.timeout.total_seconds()
        try:
            # polled (not one blocking wait): Ctrl-C stops the wait
            while not self.store.check(keys):
                if time.monotonic() > deadline:
                    raise ZoomsrError(
                        f"the other processes of this launched run did not all reach the "
                        f"start of training (waited {_seconds(self.timeout)} for ranks "
                        f"{_listed(ranks)}): see their output for why")
                time.sleep(_POLL_S)
            return [self.store.get(k).decode() for k in keys]
        except RuntimeError as exc:  # DistNetworkError: the store's host is gone
            raise ZoomsrError(
                f"the processes of this launched run lost each other before training "
                f"({first_line(exc)}): see rank 0's output for why") from None

    def _part(self, stage: str) -> None:
        """Leave after a failure: rank 0, where it hosts the store, once the others have
        heard (they come after the same checks: it waits as long again as it took to come
        here, at least two minutes, at most the timeout); the others say they have."""
        key = self._key(f"{stage}/heard")
        try:
            if not self.hosts:
                self.store.add(key, 1)
                return
            wait = min(self.timeout.total_seconds(),
                       max(120.0, 2 * (time.monotonic() - self.since)))
            deadline = time.monotonic() + wait
            while (self.store.add(key, 0) < len(self.ranks) - 1
                   and time.monotonic() < deadline):
                time.sleep(_POLL_S)
        except RuntimeError:  # the store's host is gone: nothing to wait for
            pass

    def _key(self, name: str) -> str:
        return self.prefix + name

    def _set(self, name: str, value: str) -> None:
        self.store.set(self._key(name), value)


def _connect(address: str, port: int, hosts: bool, timeout: timedelta) -> Any:
    """The gate's ``TCPStore`` at ``address:port``: its server where this process ``hosts``
    it (multi-tenant: the process group's set-up takes it over), else a client, once the
    host has opened it (waited for up to ``timeout``)."""
    from torch.distributed import TCPStore

    try:
        if not hosts:
            _wait_for_server(address, port, timeout)
        return TCPStore(address, port, is_master=hosts, timeout=timeout,
                        wait_for_workers=False, multi_tenant=hosts)
    except (RuntimeError, OSError) as exc:  # DistNetworkError: the port taken, ...
        raise ZoomsrError(
            f"the processes of this launched run cannot meet at {address}:{port} (its "
            f"MASTER_ADDR:MASTER_PORT) before training ({first_line(exc)})") from None


def _wait_for_server(address: str, port: int, timeout: timedelta) -> None:
    """Until ``address:port`` takes connections (``TCPStore``'s own wait can be neither
    interrupted nor kept quiet: it logs each failed try)."""
    deadline = time.monotonic() + timeout.total_seconds()
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((address, port), timeout=max(0.1, min(2.0, left))):
                return
        except OSError:
            if left <= 0:
                raise
            time.sleep(_CONNECT_S)


def _described(error: BaseException) -> str:
    """``error`` as the other processes raise it: its class (zoomsr's; any other as a
    :class:`ZoomsrError` naming it) and one-line message."""
    if isinstance(error, ZoomsrError):
        return json.dumps({"type": type(error).__name__, "message": str(error)})
    return json.dumps({"type": "ZoomsrError",
                       "message": f"{type(error).__name__}: {first_line(error)}"})


def _seconds(delta: timedelta) -> str:
    return f"{delta.total_seconds():g} s"


def _listed(ranks: list[int]) -> str:
    return ", ".join(map(str, ranks))
