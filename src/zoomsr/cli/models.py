"""``zoomsr models``: list the architectures and describe one configuration."""

from __future__ import annotations

import json
from typing import cast

import typer

app = typer.Typer(help="List and describe model architectures.", no_args_is_help=True)


@app.command("list")
def list_models() -> None:
    """List the architectures with their input layout."""
    from zoomsr.models import MODELS  # lazy: torch is slow to import and --help needs none
    from zoomsr.models.factory import ModelClassInfo

    classes = cast("dict[str, ModelClassInfo]", MODELS)
    width = max(len(name) for name in classes)
    layout_width = max(len(cls.input_layout) for cls in classes.values())
    for name, cls in classes.items():
        typer.echo(f"{name:<{width}}  {cls.input_layout:<{layout_width}}  {cls.description}")


def format_gflops(gflops: float) -> str:
    """GFLOPs for people: one decimal with thousands separators (``36.7``, ``230,612,480.0``);
    below 0.1, two significant digits (``0.0012``) rather than ``0.0``."""
    if 0 < gflops < 0.1:
        return f"{gflops:.2g}"
    return f"{gflops:,.1f}"


def _format_config(config: dict) -> str:
    return " ".join(
        f"{k}={','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
        for k, v in config.items()
    )


@app.command("info")
def info(
    name: str = typer.Argument(..., help="Model name (see `zoomsr models list`), or a "
                               "checkpoint zoomsr wrote (its model and config), or a weights "
                               "name of `zoomsr weights list`."),
    config: list[str] = typer.Option(
        [],
        "--config",
        "-c",
        help="Config override key=value; repeat it or separate pairs with commas.",
    ),
    lr_size: int = typer.Option(32, "--lr-size", min=1, help="Side of the LR input chunk."),
    as_json: bool = typer.Option(False, "--json", help="Print the description as JSON."),
) -> None:
    """Print parameters, GFLOPs per LR chunk and input/output layout of a model config."""
    from zoomsr.errors import CheckpointError, ConfigError
    from zoomsr.models import MODELS, model_info, parse_config

    recorded: dict = {}
    extra: dict = {}
    given = name
    if name not in MODELS:
        name, recorded, extra = _model_of(name)
    overrides = parse_config(name, config)
    try:
        details = model_info(name, lr_size=lr_size, **{**recorded, **overrides})
    except ConfigError as exc:
        if recorded:
            try:  # the recorded config alone: is it the file's fault, or an option's?
                model_info(name, **recorded)
            except ConfigError as own:
                raise CheckpointError(
                    f"{given}: its recorded {name} config is refused: {own}") from None
        raise exc from None
    if as_json:
        typer.echo(json.dumps({**details.__dict__, **({"recorded": extra} if extra else {})},
                              indent=2, default=str))
        return
    rows = [
        ("model", f"{details.name}: {details.description}"),
        ("parameters", _format_parameters(details.parameters, details.parameters_used)),
        (
            "GFLOPs",
            f"{format_gflops(details.gflops)} {details.flops_note} on a {lr_size}x{lr_size} "
            "input chunk "
            "(a multiply-add counts 2 FLOPs)",
        ),
        ("input", f"{details.input_layout}, e.g. " + " + ".join(map(str, details.input_shapes))),
        ("output", f"{details.output_layout}, e.g. {details.output_shape}"),
        ("config", _format_config(details.config)),
    ]
    if extra:  # what the checkpoint says of itself (training step, images, bands...)
        rows.append(("recorded", ", ".join(f"{k}={v}" for k, v in extra.items())))
    for label, value in rows:
        typer.echo(f"{label:<11} {value}")


#: Entries of a checkpoint that `models info` shows, when the file has them.
_RECORDED = ("global_step", "epoch", "n_images", "bands", "dataset", "scale")


def _model_of(given: str) -> tuple[str, dict, dict]:
    """The model name, config and recorded entries (:data:`_RECORDED`) of a checkpoint file or
    registry weights ``given``; an unknown model name is refused as ``model_info`` refuses
    it."""
    from pathlib import Path

    from zoomsr.errors import CheckpointError, ConfigError
    from zoomsr.models import read_checkpoint
    from zoomsr.models.checkpoints import CHECKPOINT_SUFFIXES, require_checkpoint_file
    from zoomsr.weights import registry

    if given in registry.REGISTRY:
        entry = registry.get_entry(given)
        return entry.model, dict(entry.config), {"bands": ",".join(entry.bands)}
    looks_like_a_path = (any(sep in given for sep in "/\\") or Path(given).exists()
                         or Path(given).suffix.lower() in CHECKPOINT_SUFFIXES)
    if looks_like_a_path:
        require_checkpoint_file(given)  # not found, a folder...: named as such
    if not Path(given).is_file():
        from zoomsr.models import MODELS

        raise ConfigError(f"unknown model {given!r}; choose one of: {', '.join(MODELS)} (or a "
                          "checkpoint file, or a name of `zoomsr weights list`)")
    ckpt = read_checkpoint(given)
    if ckpt.model_name is None:
        from zoomsr.models import infer_model

        guessed = infer_model(ckpt.state_dict)  # an RRDBNet from BasicSR, Lightning...
        if guessed is not None:
            return guessed[0], guessed[1], {"config": "read from its tensors"}
        raise CheckpointError(f"{given}: records no model (not written by zoomsr); give the "
                              "model's name and its config: zoomsr models info NAME -c k=v")
    extra = {k: ckpt.extra[k] for k in _RECORDED if ckpt.extra.get(k) is not None}
    if isinstance(extra.get("bands"), (list, tuple)):
        extra["bands"] = ",".join(map(str, extra["bands"]))
    return ckpt.model_name, dict(ckpt.model_config or {}), extra


def _millions(count: int) -> str:
    """``1.5 M``, or ``0.0042 M`` for a tiny model (``0.0 M`` said nothing)."""
    return f"{count / 1e6:.1f} M" if count >= 50_000 else f"{count / 1e6:.2g} M"


def _format_parameters(total: int, used: int) -> str:
    text = f"{total:,} ({_millions(total)})"
    if used < total:  # modules kept for the checkpoint layout, never run
        text += (f"; {used:,} ({_millions(used)}) used by the forward pass, the rest "
                 "kept in the checkpoint layout")
    return text
