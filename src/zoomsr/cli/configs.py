"""``zoomsr configs``: the YAML configs zoomsr ships (training recipes, the sample benchmark)."""

from __future__ import annotations

import typer

from zoomsr.config_files import builtin_config, builtin_configs
from zoomsr.errors import ConfigError

app = typer.Typer(help="The configs zoomsr ships: training recipes and the sample benchmark "
                  "(`zoomsr train NAME`, `zoomsr benchmark sample`).", no_args_is_help=True)


def _summary(name: str) -> str:
    """The config's first comment line (what it is), or ''."""
    path = builtin_config(name)
    for line in (path.read_text(encoding="utf-8").splitlines() if path else []):
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


@app.command("list")
def list_configs() -> None:
    """The shipped configs, a line each: name and what it is."""
    names = builtin_configs()
    width = max(map(len, names), default=0)
    for name in names:
        typer.echo(f"{name:<{width}}  {_summary(name)}".rstrip())


@app.command("show")
def show(name: str = typer.Argument(..., help="A name from `zoomsr configs list`.")) -> None:
    """Print a shipped config (to copy and edit: `zoomsr configs show tiny > my.yaml`)."""
    path = builtin_config(name, under="benchmarks")  # (`sample`, as benchmark takes it)
    if path is None:
        raise ConfigError(f"no shipped config named {name!r}; known: "
                          f"{', '.join(builtin_configs())}")
    typer.echo(path.read_text(encoding="utf-8"), nl=False)
