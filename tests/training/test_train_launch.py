"""DDP launched by a launcher (torchrun, SLURM, or by hand with Lightning's variables): every
rank is a process of its own, started before training. A rank that cannot start (the run
folder in use by another run, a check failing on one node only) must stop every rank at
once with the same one-line error: the others waited for it in the process group's set-up
for its timeout (30 minutes) before."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from process_groups import own_group
from zoomsr.config_files import CONFIG_DIR
from zoomsr.io.atomic import output_lock

CONFIGS = CONFIG_DIR
#: A refused launch ends within this (seconds), as a rule in a few; the hang it replaces
#: lasted the process group's timeout (30 minutes).
PROMPT_S = 90

#: Variables a launcher sets; none is inherited from the test's own environment.
_LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "WORLD_SIZE",
                     "LOCAL_WORLD_SIZE", "ROLE_RANK", "ROLE_WORLD_SIZE", "MASTER_ADDR",
                     "MASTER_PORT", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_USE_AGENT_STORE",
                     "TORCHELASTIC_RESTART_COUNT", "ZOOMSR_TRAIN_STARTED_BY")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launcher_env(kind: str, rank: int, world: int, port: int) -> dict[str, str]:
    """What ``kind`` of launcher gives rank ``rank`` of ``world`` processes on one node."""
    env = {k: v for k, v in os.environ.items()
           if k not in _LAUNCH_VARIABLES and not k.startswith(("SLURM_", "OMPI_", "PMI_"))}
    env["PYTHONWARNINGS"] = "ignore"
    main = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    if kind == "torchrun":  # torchrun's variables (the store hosted by rank 0, not the agent)
        env.update(main, RANK=str(rank), LOCAL_RANK=str(rank), GROUP_RANK="0",
                   WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world), ROLE_RANK=str(rank),
                   ROLE_WORLD_SIZE=str(world), TORCHELASTIC_RUN_ID="zoomsr-test")
    elif kind == "lightning":  # by hand, as Lightning documents (LOCAL_RANK, NODE_RANK)
        env.update(main, LOCAL_RANK=str(rank), NODE_RANK="0", WORLD_SIZE=str(world))
    elif kind == "slurm":  # srun --ntasks-per-node 2
        env.update(SLURM_NTASKS=str(world), SLURM_NTASKS_PER_NODE=str(world), SLURM_NNODES="1",
                   SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank), SLURM_NODEID="0",
                   SLURM_JOB_ID="4242", SLURM_JOB_NAME="zoomsr-test",
                   SLURM_NODELIST="127.0.0.1", MASTER_PORT=str(port))
    else:
        raise AssertionError(kind)
    return env


def _train_args(sample_root: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "zoomsr", "train", str(CONFIGS / "tiny.yaml"),
            "--devices", "2", "--accelerator", "cpu", "--out", str(out), "--no-progress",
            "--set", f"data.root={sample_root}", "--set", "trainer.max_steps=2",
            "--set", "trainer.val_every_n_steps=2", "--set", "trainer.checkpoint_every_n_steps=2",
            "--set", "data.max_val_pairs=4", *extra]


def _run_ranks(commands: list[list[str]], envs: list[dict[str, str]], cwd: Path,
               timeout: float, watch=None) -> list[tuple[int, str, str, float]]:
    """Start every rank's command at once (as a launcher does); (exit code, stdout, stderr,
    seconds taken) of each. A rank still running after ``timeout`` seconds fails the test
    (its process group is killed: nothing outlives it). ``watch(procs)``: called every
    50 ms while they run."""
    with contextlib.ExitStack() as stack:
        start = time.monotonic()
        procs = [stack.enter_context(own_group(command, env, cwd))
                 for command, env in zip(commands, envs, strict=True)]
        ended: dict[int, float] = {}
        while len(ended) < len(procs):
            for i, proc in enumerate(procs):
                if i not in ended and proc.poll() is not None:
                    ended[i] = time.monotonic() - start
            if time.monotonic() - start > timeout:
                late = [i for i in range(len(procs)) if i not in ended]
                pytest.fail(f"ranks {late} still running after {timeout} s (a launched job "
                            "hangs where it should fail)")
            if watch is not None:
                watch(procs)
            time.sleep(0.05)
        results = []
        for i, proc in enumerate(procs):
            stdout, stderr = proc.communicate(timeout=30)
            results.append((proc.returncode, stdout, stderr, ended[i]))
        return results


def _refusal(out: Path) -> str:
    return (f"error: {out}: another zoomsr train run is using this run folder (it holds "
            f"{out / '.generator.pth.zoomsr-lock'}); wait for it to end or stop it, or choose "
            "another --out")


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "slurm", "lightning"])
def test_a_launched_job_on_a_folder_in_use_fails_on_every_rank_at_once(sample_root, tmp_path,
                                                                        launcher):
    """Rank 0 was refused the folder's lock and exited 2; rank 1 went on into the process
    group and waited for rank 0 for 30 minutes."""
    out = tmp_path / "run"
    port = _free_port()
    args = _train_args(sample_root, out)
    with output_lock(out / "generator.pth"):  # a live run of the folder (this process)
        results = _run_ranks([args, args], [_launcher_env(launcher, r, 2, port) for r in (0, 1)],
                             tmp_path, PROMPT_S)
        # nothing written, and the live run's lock is still its own
        assert sorted(p.name for p in out.iterdir()) == [".generator.pth.zoomsr-lock"]
    for rank, (code, stdout, stderr, _) in enumerate(results):
        assert code == 2, (rank, stderr[-3000:])
        lines = stderr.strip().splitlines()
        assert lines[-1] == _refusal(out), (rank, stderr[-3000:])
        assert [line for line in lines if line.startswith("error:")] == [_refusal(out)]
        assert "trained" not in stdout


@pytest.mark.slow
def test_a_launched_job_with_a_check_failing_on_one_rank_stops_every_rank(sample_root,
                                                                          tmp_path):
    """A node without the dataset (or a weights file): that rank stopped, the others waited
    for it in the process group."""
    out = tmp_path / "run"
    port = _free_port()
    missing = tmp_path / "not-mounted-here"
    args = [_train_args(sample_root, out), _train_args(sample_root, out, "--set",
                                                         f"data.root={missing}")]
    results = _run_ranks(args, [_launcher_env("torchrun", r, 2, port) for r in (0, 1)],
                         tmp_path, PROMPT_S)
    errors = []
    for rank, (code, _, stderr, _) in enumerate(results):
        assert code == 2, (rank, stderr[-3000:])
        errors.append(stderr.strip().splitlines()[-1])
    assert errors == [f"error: {missing}: dataset folder not found (on rank 1 of 2)"] * 2
    assert not (out / ".generator.pth.zoomsr-lock").exists()  # rank 0 let it go


def _lock_holders(lock: Path) -> set[int]:
    """The processes holding a flock on ``lock`` now (Linux's /proc/locks)."""
    try:
        inode = lock.stat().st_ino
        rows = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return set()
    holders = set()
    for row in rows:
        fields = row.split()
        # "1: FLOCK  ADVISORY  WRITE 12345 00:2a:67890 0 EOF"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(f":{inode}"):
            holders.add(int(fields[4]))
    return holders


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "slurm"])
def test_a_launched_job_takes_its_folder_once_and_trains(sample_root, tmp_path, launcher):
    """The lock-free case: rank 0 alone holds the folder, the run trains and lets it go."""
    out = tmp_path / "run"
    port = _free_port()
    args = _train_args(sample_root, out)
    lock = out / ".generator.pth.zoomsr-lock"
    seen: set[int] = set()

    pids: list[int] = []

    def watch(procs) -> None:  # noqa: ANN001
        pids[:] = [p.pid for p in procs]
        seen.update(_lock_holders(lock))

    results = _run_ranks([args, args], [_launcher_env(launcher, r, 2, port) for r in (0, 1)],
                         tmp_path, 240, watch=watch)
    for rank, (code, _, stderr, _) in enumerate(results):
        assert code == 0, (rank, stderr[-3000:])
    assert "trained tiny to step 2" in results[0][1]
    assert results[1][1].strip() == ""  # rank 0 reports
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in results[0][2] + results[1][2]
    assert (out / "generator.pth").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    assert not lock.exists()  # let go at the end
    if Path("/proc/locks").exists():
        assert seen == {pids[0]}, (seen, pids)  # rank 0 alone held it


@pytest.mark.slow
def test_a_job_under_torchrun_itself_trains(sample_root, tmp_path):
    """torchrun's agent hosts the store the ranks meet at (every rank a client there)."""
    out = tmp_path / "run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
    args = _train_args(sample_root, out)
    command = [*torchrun, *args[1:]]  # "-m zoomsr train ..." after torchrun's options
    lock = out / ".generator.pth.zoomsr-lock"
    seen: set[int] = set()
    env = _launcher_env("torchrun", 0, 1, 0)
    for name in _LAUNCH_VARIABLES:
        env.pop(name, None)

    def watch(procs) -> None:  # noqa: ANN001
        seen.update(_lock_holders(lock))

    [(code, stdout, stderr, _)] = _run_ranks([command], [env], tmp_path, 240, watch=watch)
    assert code == 0, stderr[-3000:]
    assert "trained tiny to step 2" in stdout
    assert not lock.exists()
    if Path("/proc/locks").exists():
        assert len(seen) == 1, seen  # one rank held it


def _meet(outcomes: dict[int, Exception | None], first_only: bool = False) -> dict[int, object]:
    """Ranks 0..N-1 (threads here) meet at a gate with these outcomes: what each raised
    (None: nothing)."""
    import threading
    from datetime import timedelta

    from zoomsr.training.gate import RunGate

    port = _free_port()
    ranks = sorted(outcomes)
    raised: dict[int, object] = {}
    gates = []  # rank 0's hosts the store: kept open as train() keeps it (through fit)

    def rank_of(rank: int) -> None:
        gate = RunGate("127.0.0.1", port, rank, ranks, len(ranks), timedelta(seconds=30),
                       time.monotonic())
        gates.append(gate)
        gate.prefix = "test/"  # one process here: each gate counted its own train()
        try:
            gate.agree("checked", outcomes[rank], first_only=first_only)
            raised[rank] = None
        except Exception as exc:  # noqa: BLE001
            raised[rank] = exc

    threads = [threading.Thread(target=rank_of, args=(r,)) for r in ranks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(raised) == len(ranks), raised
    return raised


def test_ranks_meeting_before_training_stop_together_on_the_lowest_failure():
    from zoomsr.errors import ConfigError, DataError, InputError, ZoomsrError

    assert _meet({0: None, 1: None, 2: None}) == {0: None, 1: None, 2: None}
    # rank 0's error as it is, on every rank (its own object on rank 0)
    refused = InputError("o: in use")
    raised = _meet({0: refused, 1: None, 2: DataError("d: missing")})
    assert raised[0] is refused
    for rank in (1, 2):
        assert type(raised[rank]) is InputError and str(raised[rank]) == "o: in use"
    # another rank's names it; the lowest failing one counts; its class travels
    raised = _meet({0: None, 1: None, 2: ConfigError("bad"), 3: DataError("later")})
    for exc in raised.values():
        assert type(exc) is ConfigError and str(exc) == "bad (on rank 2 of 4)"
    # an unexpected error travels as a ZoomsrError naming its type
    raised = _meet({0: None, 1: RuntimeError("boom\nmore")})
    for exc in raised.values():
        assert type(exc) is ZoomsrError and str(exc) == "RuntimeError: boom (on rank 1 of 2)"
    # rank 0's outcome alone (its writes to the run folder)
    assert _meet({0: None, 1: None}, first_only=True) == {0: None, 1: None}
    raised = _meet({0: OSError("disk full"), 1: None}, first_only=True)
    assert isinstance(raised[0], OSError)
    assert type(raised[1]) is ZoomsrError and str(raised[1]) == "OSError: disk full"
