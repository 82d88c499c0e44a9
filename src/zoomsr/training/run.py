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

The run folder's checks, resume and lock are :mod:`.run_folder`; the trainer's callbacks,
checkpoint writer and progress bar :mod:`.callbacks`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from zoomsr.errors import ConfigError, ZoomsrWarning
from zoomsr.io.atomic import atomic_write_text
from zoomsr.io.folders import require_writable_folder
from zoomsr.models import save_checkpoint
from zoomsr.training.base import SRModule, check_loss_weights, check_val_weights
from zoomsr.training.callbacks import (
    _CHECKPOINT_TEMPS,
    _AtomicCheckpointIO,
    _DataOrderOfOldCheckpoints,
    _ModelSummary,
    _progress_bar,
    _quietly,
    _SaveFinal,
    _StepCheckpoint,
    _ValidationAtItsStep,
    _without_tips,
)
from zoomsr.training.config import TrainConfig, dump_config
from zoomsr.training.datamodule import TrainValDataModule, build_datamodule
from zoomsr.training.esrgan import ESRGANModule
from zoomsr.training.gate import STARTED_BY, RunGate, launched_by_a_launcher
from zoomsr.training.regression import RegressionModule
from zoomsr.training.run_folder import (
    LAST,
    RUN_OUTPUTS,
    _check_resume_matches,
    _run_folder_lock,
    check_run_folder,
    remove_run_outputs,
    resolve_resume,
)
from zoomsr.training.sr3 import SR3Module

MODULES: dict[str, type[SRModule]] = {
    "regression": RegressionModule,
    "esrgan": ESRGANModule,
    "sr3": SR3Module,
}


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
