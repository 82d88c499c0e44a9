"""A training run's folder: the checkpoint to resume from, the earlier run's files, its lock.

Which checkpoint a run resumes from (:func:`resolve_resume`), whether it may start in the
folder and which of an earlier run's outputs ``--overwrite`` removes
(:func:`check_run_folder`, :func:`remove_run_outputs`), whether a checkpoint to resume from
is readable and of the same model and fixed settings (:func:`_check_resume_matches`), and the
lock one run holds on its folder (:func:`_run_folder_lock`). The folder's layout is
:mod:`.run`'s docstring.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from zoomsr.errors import CheckpointError, ConfigError, InputError, first_line
from zoomsr.io.atomic import output_lock
from zoomsr.models import default_config, read_checkpoint
from zoomsr.training.base import CONFIG_KEY
from zoomsr.training.config import TrainConfig

#: The newest state of a run (its resume point), in ``OUT/checkpoints/``.
LAST = "last.ckpt"


def resolve_resume(out: Path, resume: str | os.PathLike[str] | None) -> Path | None:
    """``"auto"``: ``OUT/checkpoints/last.ckpt`` if it exists; ``"never"``/None: none;
    otherwise the given checkpoint path (which must exist), or a run folder's (or its
    ``checkpoints/`` folder's) ``last.ckpt``."""
    if resume is None or str(resume) == "never":
        return None
    if str(resume) == "auto":
        last = out / "checkpoints" / LAST
        return last if last.is_file() else None
    path = Path(resume)
    if path.is_dir():
        for last in (path / "checkpoints" / LAST, path / LAST):
            if last.is_file():
                return last
        raise CheckpointError(f"checkpoint to resume from: {path} is a folder without "
                              f"checkpoints/{LAST}: pass a .ckpt file of the run")
    if not path.is_file():
        raise CheckpointError(f"checkpoint to resume from not found: {path}")
    return path


#: Files an earlier run left in its folder that ``overwrite`` removes (relative glob
#: patterns; ``config.yaml`` is rewritten instead, and nothing else in OUT is touched).
RUN_OUTPUTS = ("checkpoints/*.ckpt", "tensorboard/events.out.tfevents.*",
               "csv/version_*/metrics.csv", "csv/version_*/hparams.yaml",
               "samples/val_step*.png", "generator.pth")


def check_run_folder(out: Path, resume: str | os.PathLike[str] | None,
                     resume_path: Path | None, overwrite: bool) -> list[Path]:
    """The earlier run's files to remove before this run starts (empty: none).

    A run that does not continue ``out``'s own checkpoints must start in a folder without
    any: its checkpoints would mix with the earlier run's (replacing its ``last.ckpt``, not
    its step checkpoints). So that is refused unless ``overwrite``,
    which then removes the earlier run's outputs (:data:`RUN_OUTPUTS`; see
    :func:`remove_run_outputs`). ``overwrite`` never removes a run that ``resume="auto"``
    would continue: re-running the same command after a crash must not lose its progress.
    """
    ckpt_dir = out / "checkpoints"
    own = resume_path is not None and resume_path.resolve().parent == ckpt_dir.resolve()
    if own and overwrite:
        how = ("pass --resume never with --overwrite to start afresh, or drop --overwrite to "
               "continue it") if str(resume) == "auto" else (
               "drop --overwrite to continue from it, or drop --resume PATH to start afresh")
        raise ConfigError(f"--overwrite would remove {resume_path}, the checkpoint this run "
                          f"resumes from: {how}")
    old = sorted(p.name for p in ckpt_dir.glob("*.ckpt")) if ckpt_dir.is_dir() else []
    if own or not old:
        return []
    if not overwrite:
        shown = ", ".join(old[:3]) + (f" and {len(old) - 3} more" if len(old) > 3 else "")
        continue_it = ("--resume auto continues it, " if LAST in old else
                       f"--resume {ckpt_dir / old[-1]} continues it, ")
        raise ConfigError(
            f"{out} holds checkpoints of an earlier run ({shown}): {continue_it}--resume "
            "never --overwrite starts afresh there (removing its checkpoints, logs, samples "
            "and generator), or choose another --out"
        )
    return sorted({f for pattern in RUN_OUTPUTS for f in out.glob(pattern) if f.is_file()})


def remove_run_outputs(out: Path, files: Sequence[Path]) -> None:
    """Remove an earlier run's ``files`` (from :func:`check_run_folder`) and the folders they
    leave empty; fails with one line if one cannot be removed, or if checkpoints remain."""
    if not files:
        return
    for f in files:
        try:
            f.unlink(missing_ok=True)
        except OSError as exc:
            raise ConfigError(f"{f}: cannot remove ({exc.strerror or exc}) for --overwrite; "
                              "remove it, or choose another --out") from None
    for folder in sorted({f.parent for f in files}, key=lambda d: -len(d.parts)):
        with contextlib.suppress(OSError):  # not empty (user files), or a mount: kept
            if folder != out and not any(folder.iterdir()):
                folder.rmdir()
    left = sorted((out / "checkpoints").glob("*.ckpt"))
    if left:
        raise ConfigError(f"{left[0]}: still there after --overwrite removed the earlier "
                          "run's checkpoints; remove it, or choose another --out")


def _check_resume_matches(path: Path, cfg: TrainConfig, own: bool,
                          datamodule: Any = None) -> int | None:
    # A resumed run must train the same architecture (anything else is a different run) and
    # cannot end before the step it starts from.
    try:
        ckpt = read_checkpoint(path, weights_only=False)
    except CheckpointError as exc:
        raise _unreadable_checkpoint(path, exc, own) from None
    if "pytorch-lightning_version" not in ckpt.extra:
        # a model file (generator.pth, a published checkpoint): Lightning failed on it with
        # a bare KeyError, after the run folder was made
        raise ConfigError(
            f"{path}: a model file, not a training checkpoint (a .ckpt of checkpoints/, with "
            "the optimiser's state and step); --resume continues a run; to start training "
            "from these weights set model.init_weights to it")
    # Stored configs are complete and JSON-normalised (tuples as lists); compare like with like.
    wanted = json.loads(json.dumps({**default_config(cfg.model.name), **cfg.model.config}))
    if ckpt.model_name != cfg.model.name or dict(ckpt.model_config or {}) != wanted:
        stored = dict(ckpt.model_config or {})
        diff = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        raise ConfigError(
            f"{path} holds another model than the config trains ({ckpt.model_name} vs "
            f"{cfg.model.name}; differing: {', '.join(diff) or 'name'}); "
            + ("use another --out, or --resume never --overwrite to start afresh there" if own
               else "resume from a checkpoint of this model's run, or leave out --resume PATH "
               "to start afresh")
        )
    saved = ckpt.extra.get(CONFIG_KEY)
    if isinstance(saved, dict):
        # restored from the checkpoint whatever the config says (the optimiser's state and
        # learning rates, the schedule, the EMA and discriminator weights): a change was
        # silently ignored while config.yaml claimed it, or crashed after rewriting config.yaml
        was = _flat(json.loads(json.dumps(saved)))
        # checkpoints from before data.dataset existed trained on S2-NAIP
        was.setdefault("data.dataset", "s2naip")
        now = _flat(json.loads(json.dumps(cfg.to_dict(), default=str)))
        diff = [k for k in sorted(set(was) | set(now))
                if _fixed_on_resume(k) is not None and was.get(k) != now.get(k)]
        if diff:
            k = diff[0]
            listed = ("" if len(diff) == 1 else
                      f"{', '.join(diff[:4])}{' ...' if len(diff) > 4 else ''}; ")
            raise ConfigError(
                f"{path}: the run it resumes trained with other settings, which cannot change "
                f"on resume ({listed}{k}: was {was.get(k)!r}, now {now.get(k)!r}: "
                f"{_fixed_on_resume(k)}); resume with the run's values (its config.yaml)"
                + (", or start afresh: --resume never --overwrite there, or another --out"
                   if own else ", or leave out --resume PATH to start afresh"))
    step, max_steps = ckpt.extra.get("global_step"), cfg.trainer.max_steps
    if isinstance(step, int) and step > max_steps:
        raise ConfigError(
            f"{path} is at step {step}, past trainer.max_steps={max_steps}: a resumed run "
            f"cannot go back; set trainer.max_steps to {step} or more to continue it, or "
            + ("--resume never --overwrite to start afresh there" if own else
               "leave out --resume PATH to start afresh")
        )
    # the data module's record of the items it split (a benchmark dataset's), checked here,
    # before config.yaml and splits.json are rewritten, not when Lightning restores it
    check = getattr(datamodule, "check_split_state", None)
    state = ckpt.extra.get(type(datamodule).__qualname__) if datamodule is not None else None
    if callable(check) and isinstance(state, dict):
        check(state)
    return step if isinstance(step, int) else None


_SPLIT = "it chooses the train/val split (another can move trained tiles into validation)"
#: Config keys (and sections) that cannot change on resume, and why.
_FIXED_ON_RESUME = {
    "task": "the checkpoint restores it",
    # the optimiser's state and learning rates, the schedule, the EMA: a new value was
    # silently ignored while config.yaml claimed it
    "optim": "the checkpoint restores it",
    "discriminator": "the checkpoint restores it",
    # crashed loading the discriminator's weights, after config.yaml was rewritten
    "losses.gan.feed_lr": "it sets the discriminator's input channels",
    "seed": "it draws the training order and each step's random numbers",
    # another dataset (or loader options: PROBA-V's band, WorldStrat's bands) under the same
    # weights and optimiser state
    "data.dataset": "it chooses the data the run trains on",
    "data.options": "it chooses the data the run trains on",
    "data.splits": _SPLIT,
    "data.val_fraction": _SPLIT,
    "data.split_group": _SPLIT,
    "data.split_seed": _SPLIT,
}


def _fixed_on_resume(key: str) -> str | None:
    """Why the flat config ``key`` cannot change on resume (None: it can)."""
    for fixed, why in _FIXED_ON_RESUME.items():
        if key == fixed or key.startswith(fixed + "."):
            return why
    return None


def _unreadable_checkpoint(path: Path, exc: CheckpointError, own: bool) -> CheckpointError:
    """``path`` cannot be read (truncated by a kill mid-write, a full disk): the error, with
    the newest readable step checkpoint beside it to resume from instead."""
    text = first_line(exc).removesuffix("; download or save it again")
    found = _newest_readable_step(path.parent, but=path)
    if found is not None:
        how = (f"--resume {found} continues from the newest readable step checkpoint (step "
               f"{_step_number(found)})")
    else:
        how = "no step checkpoint beside it can be read either"
    start = ("--resume never --overwrite starts afresh there" if own else
             "leaving out --resume PATH starts afresh")
    return CheckpointError(f"{text}; {how}, {start}")


def _step_number(path: Path) -> int:
    """The step of a ``step=NNNNNNN.ckpt`` file (-1 for another name)."""
    digits = path.stem.partition("=")[2]
    return int(digits) if digits.isdigit() else -1


def _newest_readable_step(folder: Path, but: Path) -> Path | None:
    """The newest ``step=NNNNNNN.ckpt`` in ``folder`` (not ``but``) that loads."""
    for candidate in sorted(folder.glob("step=*.ckpt"), key=_step_number, reverse=True):
        if candidate.resolve() == but.resolve() or _step_number(candidate) < 0:
            continue
        try:
            # mmap: the archive's structure and records are read, not every tensor's bytes
            torch.load(candidate, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - torch raises many kinds for a damaged file
            continue
        return candidate
    return None


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}`` (lists kept as values)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


@contextlib.contextmanager
def _run_folder_lock(out: Path) -> Iterator[None]:
    """Hold ``out`` for this run: a second run there at once (a requeued job while the old
    one lives) would resume from and overwrite the same checkpoints and generator, and both
    end "successfully". Refused with :class:`InputError`. A folder the lock made is removed
    again when the run fails before writing to it (a trainer that cannot be built)."""
    made = not out.exists()
    try:
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(output_lock(out / "generator.pth"))
            except InputError as exc:
                if "another zoomsr run" not in str(exc):
                    raise
                raise InputError(
                    f"{out}: another zoomsr train run is using this run folder (it holds "
                    f"{out / '.generator.pth.zoomsr-lock'}); wait for it to end or stop it, "
                    "or choose another --out") from None
            yield
    except BaseException:
        if made:
            with contextlib.suppress(OSError):  # not empty: what the run wrote stays
                out.rmdir()
        raise
