"""``zoomsr train CONFIG.yaml [--set key=value ...]``: train a model from a YAML config."""

from __future__ import annotations

from pathlib import Path

import typer

from zoomsr.cli.interrupt import on_interrupt
from zoomsr.errors import ConfigError


def train(
    config: Path = typer.Argument(
        ..., help="YAML config file, or the name of one zoomsr ships (tiny, esrgan_8img, ...: "
        "`zoomsr configs list`; docs/training.md)."),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", help="Override a config key: --set trainer.max_steps=20 (repeatable)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Run folder (default: runs/NAME, NAME from the config)."
    ),
    resume: str = typer.Option(
        "auto", "--resume",
        help="auto: continue from OUT/checkpoints/last.ckpt if present; never; or a .ckpt path "
        "(or a run folder: its checkpoints/last.ckpt).",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="With --resume never (or a checkpoint from elsewhere): "
        "start afresh in OUT, removing the earlier run's checkpoints, logs, samples and "
        "generator there; without it such a run is refused. Never removes what the run "
        "resumes from."),
    devices: int | None = typer.Option(
        None, "--devices", min=1, help="Devices per node (N > 1 trains with DDP)."
    ),
    accelerator: str | None = typer.Option(
        None, "--accelerator", help="cpu, gpu or auto (default: the config's)."
    ),
    num_nodes: int | None = typer.Option(None, "--num-nodes", min=1, help="Nodes for DDP."),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Show the progress bar (default: the config's)."
    ),
) -> None:
    """Train the config's model; checkpoints, logs and the final generator go to OUT."""
    run_dir = out  # known once the config is read, where --out is not given
    on_interrupt(lambda: _kept(run_dir, resume))  # reads run_dir when Ctrl-C comes
    from zoomsr.training.config import load_config

    items = list(overrides)
    if devices is not None:
        items.append(f"trainer.devices={devices}")
    if num_nodes is not None:
        items.append(f"trainer.num_nodes={num_nodes}")
    if accelerator is not None:
        if accelerator not in ("cpu", "gpu", "auto"):
            raise ConfigError(f"--accelerator must be cpu, gpu or auto, got {accelerator!r}")
        items.append(f"trainer.accelerator={accelerator}")
    if progress is not None:
        items.append(f"trainer.progress_bar={str(progress).lower()}")
    cfg = load_config(config, items)
    run_dir = out if out is not None else Path("runs") / cfg.name

    from zoomsr.training.run import train as run_training

    result = run_training(cfg, run_dir, resume=resume, overwrite=overwrite)
    if result.generator_path is None:  # a non-zero DDP rank: rank 0 reports
        return
    if result.already_done:
        typer.echo(f"{cfg.name}: already at step {result.global_step} (trainer.max_steps), "
                   "nothing to do (raise trainer.max_steps to train on)")
        typer.echo(f"checkpoint: {result.last_checkpoint}")
        typer.echo(f"generator:  {result.generator_path}")
        return
    resumed = f", resumed from {result.resumed_from}" if result.resumed_from else ""
    shown = {k: v for k, v in result.metrics.items() if k.startswith("val/")}
    summary = " ".join(f"{k}={v:.4g}" for k, v in sorted(shown.items()))
    typer.echo(f"trained {cfg.name} to step {result.global_step}{resumed}")
    if summary:
        typer.echo(f"last validation: {summary}")
    typer.echo(f"checkpoint: {result.last_checkpoint}")
    typer.echo(f"generator:  {result.generator_path}")
    split = _split_line(result.out_dir / "splits.json")
    if split:
        typer.echo(split)


def _split_line(path: Path) -> str | None:
    """``splits:     14 train, 8 val items (RUN/splits.json)``: what the run trained and
    validated on (nothing said it; a small sample's held-out tiles and buffers are in
    neither)."""
    import json

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    counts = [f"{len(v)} {k}" for k, v in doc.items() if isinstance(v, list)] \
        if isinstance(doc, dict) else []
    return f"splits:     {', '.join(counts)} items ({path})" if counts else None


def _kept(run_dir: Path | None, resume: str) -> str:
    """What an interrupted run in ``run_dir`` (None: not known yet) kept, and how to go on."""
    if run_dir is None:
        return "interrupted before the run started: nothing was written"
    # zoomsr.training.run.LAST; not imported here: Ctrl-C may have come during that import
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        if resume not in ("auto", "never"):  # --resume PATH: resumed from it again
            return (f"interrupted before the first checkpoint was written: the same command "
                    f"resumes from {resume} again")
        return ("interrupted before the first checkpoint was written: the same command starts "
                "over")
    if resume == "auto":
        return (f"interrupted: the same command continues from the last checkpoint ({last}; "
                "--resume auto, the default)")
    return f"interrupted: the last checkpoint is {last}; --resume auto continues from it"
