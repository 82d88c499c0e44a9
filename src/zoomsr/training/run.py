"""Run a training job: data module, Lightning trainer, checkpoints, logs, resume, export.

Run folder ``OUT``::

    OUT/config.yaml                 the resolved config (with derived model channels)
    OUT/checkpoints/last.ckpt       newest state (resume point); step=NNNNNNN.ckpt every k steps
    OUT/tensorboard/                TensorBoard events (one run, continued on resume)
    OUT/csv/version_N/metrics.csv   logged metrics, one version per (re)start
    OUT/samples/val_stepNNNNNNN.png LR / SR / HR grid of each validation
    OUT/generator.pth               the trained generator (EMA weights when enabled), readable
                                    by zoomsr.models.from_checkpoint

Checkpoints carry the model name and config (``checkpoint["zoomsr"]``), so
``from_checkpoint("OUT/checkpoints/last.ckpt")`` rebuilds the generator too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import (
    Callback,
    LearningRateMonitor,
    ModelCheckpoint,
    ModelSummary,
)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.model_summary import get_human_readable_count

from zoomsr.errors import CheckpointError, ConfigError, InputError, ZoomsrWarning, first_line
from zoomsr.io.atomic import atomic_path, atomic_write_text, output_lock
from zoomsr.io.folders import require_writable_folder
from zoomsr.io.gdal_errors import fsync_file
from zoomsr.models import default_config, read_checkpoint, save_checkpoint
from zoomsr.training.base import CONFIG_KEY, SRModule, check_loss_weights, check_val_weights
from zoomsr.training.config import TrainConfig, dump_config
from zoomsr.training.datamodule import TrainValDataModule, build_datamodule
from zoomsr.training.esrgan import ESRGANModule
from zoomsr.training.gate import STARTED_BY, RunGate, launched_by_a_launcher
from zoomsr.training.regression import RegressionModule
from zoomsr.training.sr3 import SR3Module

MODULES: dict[str, type[SRModule]] = {
    "regression": RegressionModule,
    "esrgan": ESRGANModule,
    "sr3": SR3Module,
}
LAST = "last.ckpt"


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or already complete) run left behind."""

    out_dir: Path
    global_step: int
    last_checkpoint: Path
    generator_path: Path | None  # None on non-zero DDP ranks
    resumed_from: Path | None
    metrics: dict[str, float]
    #: The run was at ``trainer.max_steps`` already (its generator exported): nothing was
    #: done or written.
    already_done: bool = False


def build_module(cfg: TrainConfig) -> SRModule:
    """The Lightning module of ``cfg.task`` (regression, esrgan or sr3)."""
    return MODULES[cfg.task](cfg)


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


class _AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing each file to a temporary file in its own folder,
    flushed to disk, then renamed over the target (:func:`os.replace`).

    Lightning writes through fsspec, whose temporary file is in ``$TMPDIR``: where the run
    folder is on another filesystem (a cluster's scratch space) the rename fails (EXDEV) and
    it copies into the target opened with ``O_TRUNC`` instead, so a job killed mid-copy left
    a truncated ``last.ckpt``, the file a resume reads. A kill now leaves the old file and a
    hidden ``.NAME.*.ckpt.tmp``, removed when the next run of the folder starts.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:  # Lightning's own refusal
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        with atomic_path(target) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())  # the data on disk before the rename makes it the file
        with contextlib.suppress(OSError):  # the rename itself (not on every filesystem)
            fsync_file(target.parent)


#: Temporary files of :class:`_AtomicCheckpointIO` left by a killed run (in ``checkpoints/``).
_CHECKPOINT_TEMPS = ".*.ckpt.tmp"


class _ValidationAtItsStep(Callback):
    """Log each validation at the step of its checkpoint and sample image.

    Lightning logs a validation during training at its count of batches stepped, which it
    raises only after the validation: the validation after step 10 (``step=0000010.ckpt``,
    ``val_step0000010.png``) was logged at step 9. Training metrics keep Lightning's step:
    the loss logged at step N is that of the weights after N updates, as the validation at
    step N is. Checkpoint callbacks run after this one (Lightning orders them last), so the
    count is restored before a checkpoint records it.
    """

    def __init__(self) -> None:
        self._count: int | None = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loop = trainer.fit_loop.epoch_loop
        if trainer.sanity_checking or not hasattr(loop, "_batches_that_stepped"):
            return
        self._count, loop._batches_that_stepped = loop._batches_that_stepped, trainer.global_step

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        self._restore(trainer)

    def _restore(self, trainer: L.Trainer) -> None:
        if self._count is not None:
            trainer.fit_loop.epoch_loop._batches_that_stepped = self._count
            self._count = None


class _StepCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that saves every N steps also on an epoch's last batch.

    Lightning (2.6) puts a save due on an epoch's last batch off until the validation it
    expects there, but with validation every N steps (``check_val_every_n_epoch=None``) none
    may come: the step's checkpoint was then written at the next validation, under a later
    step, or never (regression and SR3 runs; ESRGAN's manual optimisation is not deferred).
    """

    def __init__(self, val_every_n_steps: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.val_every_n_steps = val_every_n_steps

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning's end-of-run save of last.ckpt (a run that saved none before) would hold
        # the end-of-training state; _SaveFinal saves it at the last step instead.
        pass

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           *args: Any, **kwargs: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        validates_now = trainer.global_step % self.val_every_n_steps == 0
        if getattr(self, "_defer_save_until_validation", False) and not validates_now:
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)
            self._defer_save_until_validation = False


class _SaveFinal(Callback):
    """Save ``last.ckpt`` at the last step, so it always holds the final step.

    Saved in that step's ``on_train_batch_end``, as the step checkpoints are. At the end of
    training Lightning has counted the stopped epoch as finished: a run extended from a file
    saved then (``trainer.max_steps`` raised) started the next epoch part-way and never
    trained on the rest of the stopped one. ``on_train_end`` saves only when the last step
    did not (a run that stopped otherwise).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saved_step: int | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           *args: Any, **kwargs: Any) -> None:
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            trainer.save_checkpoint(self.path, weights_only=False)
            self.saved_step = trainer.global_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.saved_step != trainer.global_step:
            trainer.save_checkpoint(self.path, weights_only=False)


class _DataOrderOfOldCheckpoints(Callback):
    """A checkpoint written before the data module saved its place in the epoch (no
    ``S2NAIPDataModule`` entry): go on after the batches Lightning's progress counts, in the
    checkpoint's epoch, whatever the number of DataLoader workers (its order was drawn
    otherwise, so the run is not byte-identical to an uninterrupted one)."""

    def __init__(self, datamodule: TrainValDataModule) -> None:
        self.datamodule = datamodule

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if type(self.datamodule).__name__ in checkpoint:
            return
        try:
            progress = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]
            epoch, batches = int(checkpoint["epoch"]), int(progress["current"]["processed"])
            over = bool(progress.get("is_last_batch"))
        except (KeyError, TypeError, ValueError):
            return
        self.datamodule.load_state_dict(self.datamodule.place(epoch, batches, over))


class _ModelSummary(ModelSummary):
    """Lightning's model summary without its FLOPs column and total: Lightning counts FLOPs
    only for a module with an ``example_input_array``, so here they would all read 0."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int = 0,
        **summarize_kwargs: Any,
    ) -> None:
        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        widths = [max(len(str(v)) for v in [name, *values]) for name, values in columns]
        rows = [[name for name, _ in columns],
                *zip(*(values for _, values in columns), strict=True)]
        lines = [" | ".join(f"{v!s:<{w}}" for v, w in zip(row, widths, strict=True)).rstrip()
                 for row in rows]
        rule = "-" * (sum(widths) + 3 * len(widths))
        totals = [
            (get_human_readable_count(trainable_parameters), "Trainable params"),
            (get_human_readable_count(total_parameters - trainable_parameters),
             "Non-trainable params"),
            (get_human_readable_count(total_parameters), "Total params"),
            (f"{model_size:,.3f}", "Total estimated model params size (MB)"),
        ]
        text = "\n".join([lines[0], rule, *lines[1:], rule,
                          *(f"{value:<10}{label}" for value, label in totals)])
        logging.getLogger("lightning.pytorch.callbacks.model_summary").info("\n" + text)


class _NoTips(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing litlogger / litmodels" adverts, and its
    "Detected KeyboardInterrupt, attempting graceful shutdown" (zoomsr says, in one line,
    what an interrupted run kept and how to go on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg).lstrip()
        return not (text.startswith("💡 Tip:")
                    or text.startswith("Detected KeyboardInterrupt"))


#: The loggers Lightning's rank_zero_info writes to (lightning_utilities picks one of them).
_TIP_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


@contextlib.contextmanager
def _without_tips() -> Iterator[None]:
    tips = _NoTips()
    loggers = [logging.getLogger(name) for name in _TIP_LOGGERS]
    for logger in loggers:
        logger.addFilter(tips)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(tips)


#: Columns of the training progress bar's final line when stderr is not a terminal.
LOG_WIDTH = 400


def _progress_bar() -> Callback:
    from lightning.pytorch.callbacks import RichProgressBar

    class StepProgressBar(RichProgressBar):
        """Rich bar counting steps out of ``trainer.max_steps``, across epochs.

        A run ends at max_steps, not after N epochs, so Lightning's bar (batches of the
        current epoch, reset at each epoch) gives neither the progress nor the time left of
        the run; a resumed run starts the bar at its checkpoint's step.
        """

        def _get_train_description(self, current_epoch: int) -> str:
            return f"Training to step {self.trainer.max_steps} (epoch {current_epoch})"

        def _step_task(self, trainer: L.Trainer) -> None:
            assert self.progress is not None
            description = self._get_train_description(trainer.current_epoch)
            if self.train_progress_bar_id is None:
                # started at the step reached, so that the rate (and the time left) counts
                # only the steps of this process
                self.train_progress_bar_id = self.progress.add_task(
                    description, total=trainer.max_steps, completed=trainer.global_step)
            else:  # a new epoch: same task, so the rate and time left carry on
                self.progress.update(self.train_progress_bar_id, description=description)

        def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            if self.is_disabled or self.progress is None:
                return
            self._step_task(trainer)
            self.refresh()

        def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule,
                               outputs: Any, batch: Any, batch_idx: int) -> None:
            if self.is_disabled or self.progress is None:
                return
            if self.train_progress_bar_id is None:  # resumed within an epoch
                self._step_task(trainer)
            self._update(self.train_progress_bar_id, trainer.global_step)
            self._update_metrics(trainer, pl_module)
            self.refresh()

        def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
            metrics = super().get_metrics(trainer, pl_module)
            metrics.pop("v_num", None)  # the run folder is the version
            return metrics

    # on stderr, as every zoomsr progress bar (rich's console writes to stdout by default,
    # mixed into the run's report); into a file (nohup, SLURM) wide enough that its final
    # state stays one line (rich's 80 columns wrapped the losses over six)
    wide = {} if sys.stderr.isatty() else {"width": LOG_WIDTH}
    return StepProgressBar(console_kwargs={"stderr": True, **wide})


def _strategy(cfg: TrainConfig) -> Any:
    t = cfg.trainer
    if t.strategy != "auto" or t.devices * t.num_nodes == 1:
        return t.strategy
    # ESRGAN's generator loss leaves the discriminator out of the graph and vice versa.
    return "ddp_find_unused_parameters_true" if cfg.task == "esrgan" else "ddp"


def build_trainer(
    cfg: TrainConfig, out: Path, callbacks: Sequence[Callback] = ()
) -> tuple[L.Trainer, ModelCheckpoint]:
    """The Lightning trainer for ``cfg`` writing under ``out``."""
    t = cfg.trainer
    ckpt_dir = out / "checkpoints"
    checkpoint = _StepCheckpoint(
        t.val_every_n_steps,
        dirpath=ckpt_dir,
        filename="step={step:07d}",
        auto_insert_metric_name=False,
        every_n_train_steps=t.checkpoint_every_n_steps,
        # "step" (always available) as the monitor keeps the newest keep_checkpoints files.
        monitor="step",
        mode="max",
        save_top_k=t.keep_checkpoints,
        save_last=True,
        # Overwrite a file of the same name (last.ckpt, written by _SaveFinal too, or a step
        # checkpoint of a resumed run), never write last-v1.ckpt, step=...-v1.ckpt beside it.
        enable_version_counter=False,
    )
    all_callbacks: list[Callback] = [checkpoint, _SaveFinal(ckpt_dir / LAST), _ModelSummary(),
                                     _ValidationAtItsStep(), *callbacks]
    loggers = [
        TensorBoardLogger(save_dir=out, name="tensorboard", version="", default_hp_metric=False),
        # One csv/version_N/metrics.csv per (re)start: Lightning's CSV logger would delete an
        # existing metrics.csv in its folder.
        CSVLogger(save_dir=out, name="csv"),
    ]
    all_callbacks.append(LearningRateMonitor(logging_interval="step"))
    if t.progress_bar:
        all_callbacks.append(_progress_bar())
    try:
        with _without_tips():  # Lightning advertises its cloud loggers here
            trainer = L.Trainer(
                default_root_dir=out,
                max_steps=t.max_steps,
                max_epochs=-1,
                val_check_interval=t.val_every_n_steps,
                check_val_every_n_epoch=None,
                limit_val_batches=t.limit_val_batches,
                num_sanity_val_steps=t.sanity_val_steps,
                accelerator=t.accelerator,
                devices=t.devices,
                num_nodes=t.num_nodes,
                strategy=_strategy(cfg),
                precision=t.precision,
                log_every_n_steps=t.log_every_n_steps,
                enable_progress_bar=t.progress_bar,
                enable_model_summary=False,  # _ModelSummary instead
                deterministic=t.deterministic,
                logger=loggers,
                callbacks=all_callbacks,
                plugins=[_AtomicCheckpointIO()],
            )
    except MisconfigurationException as exc:  # e.g. accelerator "gpu" where there is none
        raise ConfigError(f"trainer settings (accelerator={t.accelerator}, devices={t.devices}, "
                          f"strategy={t.strategy}, precision={t.precision}): "
                          f"{str(exc).strip().splitlines()[0]}") from None
    return trainer, checkpoint


def train(
    cfg: TrainConfig,
    out: str | os.PathLike[str],
    resume: str | os.PathLike[str] | None = "auto",
    callbacks: Sequence[Callback] = (),
    overwrite: bool = False,
) -> TrainResult:
    """Train ``cfg`` into the run folder ``out`` (module docstring), resuming per ``resume``.

    Raises :class:`~zoomsr.errors.DataError` for a missing dataset, an empty train/val split
    or an unreadable file of a validation pair, and :class:`~zoomsr.errors.ConfigError` for
    bands or tile weights the dataset lacks, weight files a loss or validation metric needs
    that are not there (``losses.clip.pretrained``, ``val.lpips_weights``...), or when ``out``
    holds a run of another model, a checkpoint past ``trainer.max_steps`` or of other fixed
    settings, or checkpoints of a run this one does not continue (``overwrite``: remove that
    run's outputs, once the trainer is built, and start afresh; see
    :func:`check_run_folder`); all before the model is built. Raises
    :class:`~zoomsr.errors.InputError` when another run is training in ``out`` (it holds the
    folder's lock), before anything there is written.

    Under a launcher (torchrun, SLURM, Lightning's variables set on each node), where each
    rank is a process of its own, a rank that stops before training stops every rank, with
    the same error (the lowest failing rank's; another rank's names it): the others would
    wait for it in the process group's set-up for its timeout (see :mod:`.gate`).
    """
    started = time.monotonic()
    out = Path(out)
    if not logging.getLogger("lightning.pytorch").handlers:
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    # Under a launcher the run's other processes wait for this one: what stops it before
    # training is told to them first (the gate below), not raised at once.
    launched = launched_by_a_launcher(_RANK_VARIABLES)
    failed: Exception | None = None
    ready: _Ready | TrainResult | None = None
    with contextlib.ExitStack() as held:
        # One process of the run holds the folder until the run ends: the first, as the
        # environment says (refused before Lightning's trainer, which prints its device lines);
        # else the one Lightning makes rank 0 (it knows the ranks once the trainer is built,
        # however DDP was launched; the processes it starts itself start inside fit).
        locked = _launched_first()
        try:
            ready = _ready(cfg, out, resume, overwrite)
            if isinstance(ready, TrainResult):
                return ready
            if locked:
                held.enter_context(_run_folder_lock(out))
        except Exception as exc:
            if not launched:
                raise
            failed = exc
        trainer, gate = _trainer_and_gate(cfg, out, callbacks, ready, failed, started)
        if failed is None:
            try:
                if locked and not trainer.is_global_zero:
                    held.close()  # the environment was wrong: not this process's to hold
                elif not locked and trainer.is_global_zero:
                    held.enter_context(_run_folder_lock(out))
            except Exception as exc:
                if gate is None:
                    raise
                failed = exc
        if gate is not None:
            gate.agree("checked", failed)  # one failed: raised on every process
        assert ready is not None and not isinstance(ready, TrainResult)
        if trainer.is_global_zero:
            try:
                # only now: anything above can still fail, and the earlier run must then stay
                _start_folder(cfg, out, ready)
            except Exception as exc:
                if gate is not None:
                    gate.agree("started", exc, first_only=True)
                raise
        if gate is not None:
            gate.agree("started", None, first_only=True)
        module = ready.module
        with _starting_the_others(trainer):
            _fit(trainer, module, ready.datamodule, ready.resume_path)
        generator_path = None
        if trainer.is_global_zero:
            # the bands and frame count travel with the weights, so `zoomsr infer` feeds
            # them right; a benchmark dataset's model records its dataset instead (infer
            # feeds Sentinel-2 TCI, which such a model was not trained on)
            data = ({"bands": list(cfg.data.bands)} if not cfg.data.benchmark else
                    {"dataset": cfg.data.dataset, "dataset_options": dict(cfg.data.options)})
            generator_path = save_checkpoint(
                module.inference_generator.cpu(), out / "generator.pth",
                global_step=trainer.global_step, n_images=cfg.data.n_images, **data,
            )
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    return TrainResult(
        out_dir=out,
        global_step=trainer.global_step,
        # as the generator's path is given (Lightning's dirpath is made absolute)
        last_checkpoint=out / "checkpoints" / LAST,
        generator_path=generator_path,
        resumed_from=ready.resume_path,
        metrics=metrics,
    )


@dataclass(frozen=True)
class _Ready:
    """What :func:`train`'s checks before the trainer leave for the run."""

    datamodule: TrainValDataModule
    resume_path: Path | None
    stale: list[Path]  # the earlier run's files that --overwrite removes
    module: SRModule


def _ready(cfg: TrainConfig, out: Path, resume: str | os.PathLike[str] | None,
           overwrite: bool) -> _Ready | TrainResult:
    """:func:`train`'s checks, before anything is written, and its model; a
    :class:`TrainResult` where the run is done already."""
    require_writable_folder(out, f"run folder {out}", create=False)  # before any work
    datamodule = build_datamodule(cfg)  # checks data.root first
    # split, bands, tile weights, the validation pairs' files (a benchmark dataset: its
    # folder, split and first validation item): before a model is built
    datamodule.check(val_limit=_val_pairs_seen(cfg))
    check_val_weights(cfg.val)  # LPIPS / CLIP files: not found at the first validation only
    check_loss_weights(cfg.losses)  # VGG19 / CLIP files
    resume_path = resolve_resume(out, resume)
    stale = check_run_folder(out, resume, resume_path, overwrite)
    if resume_path is not None:
        own = resume_path.resolve().parent == (out / "checkpoints").resolve()
        step = _check_resume_matches(resume_path, cfg, own, datamodule)
        generator = out / "generator.pth"
        if own and step == cfg.trainer.max_steps and generator.is_file():
            # a finished run's command again (a requeued job): it added an empty log version
            # and an events file and rewrote generator.pth, to train no step
            return TrainResult(out_dir=out, global_step=step, last_checkpoint=resume_path,
                               generator_path=generator, resumed_from=resume_path, metrics={},
                               already_done=True)
    late = [m for m in cfg.optim.milestones if m > cfg.trainer.max_steps]
    if late:
        warnings.warn(f"config key 'optim.milestones': {', '.join(map(str, late))} past "
                      f"trainer.max_steps={cfg.trainer.max_steps}: this run ends before the "
                      "learning rate changes there", ZoomsrWarning, stacklevel=3)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    return _Ready(datamodule, resume_path, stale, build_module(cfg))


def _trainer_and_gate(cfg: TrainConfig, out: Path, callbacks: Sequence[Callback],
                      ready: _Ready | TrainResult | None, failed: Exception | None,
                      started: float) -> tuple[L.Trainer, RunGate | None]:
    """The trainer, and the gate where the run's processes that exist before training
    meet (None: this is the only one). Where this process failed its checks (``failed``), a
    trainer is built quietly, only to find the others: ``failed`` is raised at once where
    there are none (or no trainer can be built)."""
    gate = None
    try:
        with _quietly() if failed is not None else contextlib.nullcontext():
            extra = ([] if not isinstance(ready, _Ready)
                     else [*callbacks, _DataOrderOfOldCheckpoints(ready.datamodule)])
            trainer, _ = build_trainer(cfg, out, extra)
            gate = RunGate.of(trainer, started)
    except Exception:
        if failed is None:
            raise
    if failed is not None and gate is None:
        raise failed
    return trainer, gate


def _start_folder(cfg: TrainConfig, out: Path, ready: _Ready) -> None:
    """Rank 0 starts the run in ``out``: a killed run's temporary files and (``--overwrite``)
    the earlier run's outputs removed, the config and splits written."""
    for temp in (out / "checkpoints").glob(_CHECKPOINT_TEMPS):  # a killed run's
        temp.unlink(missing_ok=True)
    remove_run_outputs(out, ready.stale)
    atomic_write_text(out / "config.yaml", dump_config(cfg))
    # the tiles it trains and validates on, for `zoomsr evaluate --splits`
    atomic_write_text(out / "splits.json",
                      json.dumps(ready.datamodule.splits_doc(), indent=1) + "\n")


@contextlib.contextmanager
def _quietly() -> Iterator[None]:
    """Lightning's lines (devices) and warnings held back: a trainer built only to tell the
    run's other processes why this one stops."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextlib.contextmanager
def _starting_the_others(trainer: L.Trainer) -> Iterator[None]:
    """While ``trainer`` fits: the processes Lightning starts itself (``--devices N``
    without a launcher, each node's others) know that they do not meet at a gate (this
    process passed its checks before starting them)."""
    if trainer.world_size <= 1 or STARTED_BY in os.environ:
        yield
        return
    os.environ[STARTED_BY] = str(os.getpid())
    try:
        yield
    finally:
        os.environ.pop(STARTED_BY, None)


def _val_pairs_seen(cfg: TrainConfig) -> int | None:
    """How many validation pairs (of the split's, in order) validation reads at most: with
    ``trainer.limit_val_batches``, that many batches on each process (None: all)."""
    t = cfg.trainer
    if t.limit_val_batches is None:
        return None
    batch = cfg.data.val_batch_size or cfg.data.batch_size
    return t.limit_val_batches * batch * t.devices * t.num_nodes


#: Where launchers put a process's rank: torchrun and Kubeflow, Lightning's own DDP processes
#: and nodes, SLURM, LSF, Open MPI and MPICH.
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID",
                   "JSM_NAMESPACE_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK")


def _launched_first() -> bool:
    """Whether the environment makes this process the first of its run (no rank, or 0)."""
    return all(os.environ.get(name, "0").strip() in ("", "0") for name in _RANK_VARIABLES)


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


def _fit(trainer: L.Trainer, module: SRModule, datamodule: TrainValDataModule,
         resume_path: Path | None) -> None:
    """``trainer.fit``, quiet about what does not apply here; Ctrl-C is a KeyboardInterrupt."""
    with warnings.catch_warnings(), _without_tips():
        # The sample datasets are small: Lightning suggests more workers than useful.
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        # ESRGAN checkpoints hold the state after the iteration's updates, which is what resume
        # needs; Lightning's advice to keep pre-update copies does not apply.
        warnings.filterwarnings("ignore", message=".*no pre-optimization state was saved.*")
        # Resuming writes into the run's own checkpoint folder; the data module's state (in the
        # checkpoint) says where in the epoch to go on, which Lightning cannot know of.
        warnings.filterwarnings("ignore", message=".*Checkpoint directory .* is not empty.*")
        warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
        # A run folder moved or copied: Lightning's best-k bookkeeping, which no run uses.
        warnings.filterwarnings("ignore", message=".*The dirpath has changed from.*")
        # Raised inside Lightning by newer torch; nothing for a user to act on.
        warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
        on_ctrl_c = signal.getsignal(signal.SIGINT)
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume_path)
        except SystemExit:
            # Lightning turns Ctrl-C into sys.exit(1) after its shutdown: an interrupt to the
            # caller (the CLI says so and stops; the last checkpoint is kept for resume)
            if trainer.interrupted:
                raise KeyboardInterrupt from None
            raise
        finally:
            # Lightning ignores SIGINT from the first Ctrl-C on: give the caller its own back
            if on_ctrl_c is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, on_ctrl_c)


__all__ = ["MODULES", "RUN_OUTPUTS", "TrainResult", "build_module", "build_trainer",
           "check_run_folder", "remove_run_outputs", "resolve_resume", "train"]
