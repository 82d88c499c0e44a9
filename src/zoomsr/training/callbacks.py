"""What the Lightning trainer of a run is built with besides the module: callbacks, the
checkpoint writer, the progress bar, and the filters that keep Lightning's output quiet.

The atomic checkpoint writer (:class:`_AtomicCheckpointIO`), the callbacks that log each
validation at its step, save step checkpoints and ``last.ckpt`` at the last step, place an
old checkpoint's data order and print the model summary, the step progress bar
(:func:`_progress_bar`), and the logging filters and context managers that hold back
Lightning's tips and lines (:func:`_without_tips`, :func:`_quietly`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ModelSummary
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.model_summary import get_human_readable_count

from zoomsr.io.atomic import atomic_path
from zoomsr.io.gdal_errors import fsync_file
from zoomsr.training.datamodule import TrainValDataModule


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
