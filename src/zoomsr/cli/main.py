"""Root ``zoomsr`` command: global options, sub-command groups and exit codes.

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad input, 130 interrupted.
Errors print one line on stderr; ``--debug`` (or ``ZOOMSR_DEBUG=1``) shows the traceback.
"""

from __future__ import annotations

import inspect
import os
import sys
import traceback
import warnings
from typing import TYPE_CHECKING

import click
import typer

if TYPE_CHECKING:
    # typer >= 0.25 vendors click: its commands are not click.Command (older: they are)
    from typer._click.core import Command as _VendoredCommand

try:
    from typer.exceptions import TyperException
except ImportError:  # typer < 0.25 raises click's own exceptions
    TyperException = click.ClickException  # type: ignore[misc, assignment]

from zoomsr import __version__
from zoomsr.cli import benchmark as benchmark_cli
from zoomsr.cli import configs as configs_cli
from zoomsr.cli import data as data_cli
from zoomsr.cli import demo as demo_cli
from zoomsr.cli import evaluate as evaluate_cli
from zoomsr.cli import evaluate_model as evaluate_model_cli
from zoomsr.cli import exiting, interrupt
from zoomsr.cli import infer as infer_cli
from zoomsr.cli import metrics as metrics_cli
from zoomsr.cli import models as models_cli
from zoomsr.cli import train as train_cli
from zoomsr.cli import weights as weights_cli
from zoomsr.cli.interrupt import sigterm_stops
from zoomsr.errors import ConfigError, ZoomsrError, ZoomsrWarning
from zoomsr.stopping import take_termination

app = typer.Typer(
    name="zoomsr",
    help="Super-resolution of Sentinel-2 time series: data, models, metrics, training, inference.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_cli.app, name="data")
app.add_typer(models_cli.app, name="models")
app.add_typer(metrics_cli.app, name="metrics")
app.add_typer(weights_cli.app, name="weights")
app.add_typer(configs_cli.app, name="configs")
app.command("evaluate")(sigterm_stops(evaluate_cli.evaluate))
app.command("evaluate-model")(sigterm_stops(evaluate_model_cli.evaluate_model_command))
app.command("benchmark")(sigterm_stops(benchmark_cli.benchmark_command))
app.command("train")(train_cli.train)
app.command("infer")(infer_cli.infer)
app.command("demo")(sigterm_stops(demo_cli.demo))

_state = {"debug": False}

# Typer >= 0.25 vendors its own click; older releases raise click's exceptions. Accept both.
_EXIT = (typer.Exit, click.exceptions.Exit)
_USAGE = (TyperException, click.ClickException)
_ABORT = (typer.Abort, click.Abort)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"zoomsr {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """zoomsr: multi-temporal super-resolution for Sentinel-2."""
    _state["debug"] = debug


def _debug_wanted(argv: list[str]) -> bool:
    return _state["debug"] or "--debug" in argv or os.environ.get("ZOOMSR_DEBUG") == "1"


def normalise_argv(args: list[str]) -> list[str]:
    """Rewrite what click cannot parse by itself before it parses ``args``: ``--debug`` after
    the command (the error hint says "run with --debug"; click only takes it before) moves to
    the front, and a ``--ray`` without a value in ``zoomsr infer``
    (:func:`zoomsr.cli.infer.normalise_ray_flag`). Other arguments are left as they are."""
    if "--debug" in args[1:]:
        end = args.index("--") if "--" in args else len(args)  # after "--": a file name
        if "--debug" in args[:end]:
            args = ["--debug"] + [a for i, a in enumerate(args) if a != "--debug" or i >= end]
    for i, token in enumerate(args):
        if not token.startswith("-"):  # root options are flags: the first word is the command
            if token == "infer":
                return args[: i + 1] + infer_cli.normalise_ray_flag(args[i + 1:])
            return args
    return args


def refuse_empty_arguments(args: list[str]) -> None:
    """Refuse an empty argument (``zoomsr demo "$OUT"`` with ``OUT`` unset): click takes ``""``
    as a path to the current folder, which a command then writes into or scans. No option or
    argument of zoomsr means anything when empty (``--ray`` alone is ``--ray=``)."""
    end = args.index("--") if "--" in args else len(args)
    command = next((a for a in args if not a.startswith("-")), "")
    for i, token in enumerate(args):
        if token.strip() or i >= end and token:
            continue
        before = args[i - 1] if i else ""
        where = (f"after {before}" if before.startswith("-")
                 else f"as an argument of `zoomsr {command}`")
        raise ConfigError(f"an empty argument {where} ({token!r}): an unset shell variable? "
                          "give the path or value (. for the current folder)")


def _interrupted(args: list[str]) -> None:
    """Say that the command was interrupted, and for ``infer`` and ``train`` how to go on
    (from what they kept: :mod:`zoomsr.cli.interrupt`)."""
    exiting.while_reporting()
    if os.environ.get("LOCAL_RANK", "0") != "0":
        return  # a DDP worker Lightning started: its rank 0 says it once, for the machine
    command = next((a for a in args if not a.startswith("-")), "")  # root options are flags
    text = interrupt.message()
    if text == "interrupted" and command == "train":
        text = ("interrupted: the same command continues from the last checkpoint "
                "(checkpoints/last.ckpt; --resume auto, the default)")
    typer.echo(text, err=True)


def _unwrap_help(command: click.Command | _VendoredCommand) -> None:
    """Join the lines of each paragraph of every command's help: Typer's rich help keeps the
    docstrings' line breaks and wraps the lines again at the terminal's width, so a terminal
    narrower than the source broke sentences into ragged lines."""
    if command.help:
        command.help = "\n\n".join(
            p if p.startswith("\b") else " ".join(line.strip() for line in p.splitlines())
            for p in inspect.cleandoc(command.help).split("\n\n"))
    for sub in getattr(command, "commands", {}).values():
        _unwrap_help(sub)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code (the console script exits with it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    _state["debug"] = False
    interrupt.on_interrupt(None)  # set by the command that runs (main() may run several)
    command = typer.main.get_command(app)
    _unwrap_help(command)
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message, category, *where, **kw) -> None:  # noqa: ANN001, ANN002, ANN003
            # zoomsr's own warnings (input that looks wrong but need not be) as one line,
            # like its errors; other libraries' as Python shows them
            if issubclass(category, ZoomsrWarning):
                typer.echo(f"warning: {message}", err=True)
            else:
                shown(message, category, *where, **kw)

        warnings.showwarning = show
        warnings.simplefilter("always", ZoomsrWarning)  # each input problem, each time
        return _main(command, args)


def _main(command: click.Command | _VendoredCommand, args: list[str]) -> int:
    take_termination()  # none left from an earlier command (main() may run several)
    try:
        exiting.command_starts()  # Ctrl-C stops the command from here (before: ends quietly)
        refuse_empty_arguments(args)
        result = command.main(args=normalise_argv(args), prog_name="zoomsr",
                              standalone_mode=False)
        if result == 130:  # typer turns Ctrl-C (and SIGTERM's Terminated) into 130, silently
            _interrupted(args)
        return result if isinstance(result, int) else 0
    except _EXIT as exc:
        return exc.exit_code
    except _USAGE as exc:
        # one line, as every other error (click's usage errors took four: the usage, a
        # blank line, "Try ... --help", the error)
        text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        typer.echo(f"error: {text}{hint}", err=True)
        return exc.exit_code
    except (*_ABORT, KeyboardInterrupt) as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, EOFError):  # click turns it into Abort: not a Ctrl-C
            return _failed(cause, args)
        _interrupted(args)
        return 130
    except ZoomsrError as exc:
        if _debug_wanted(args):
            traceback.print_exc()
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - the CLI boundary turns any failure into one line
        return _failed(exc, args)


def _failed(exc: BaseException, args: list[str]) -> int:
    """Report an unexpected failure in one line (its traceback with ``--debug``); exit 1."""
    if _debug_wanted(args):
        traceback.print_exception(exc)
    text = str(exc) or ("a file ended early" if isinstance(exc, EOFError) else "")
    typer.echo(f"error: {type(exc).__name__}: {text} (run with --debug for the traceback)",
               err=True)
    return 1


def run() -> None:
    """Run the command line and end the process (the console script's entry point,
    :func:`zoomsr.cli.entry.run`, calls it once the imports are done)."""
    exiting.console_script()
    exiting.leave(main())


if __name__ == "__main__":
    run()
