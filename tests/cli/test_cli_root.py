import subprocess
import sys

import pytest

from zoomsr import __version__


def _python(script: str, check: bool = False) -> subprocess.CompletedProcess:
    """``script`` run by a fresh Python (its exit status, stdout and stderr as text)."""
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=check)


def test_version_and_help(cli):
    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"zoomsr {__version__}"
    code, out, _ = cli("--help")
    assert code == 0 and "data" in out and "models" in out


def test_every_subcommand_has_help(cli):
    for args in (["data", "--help"], ["data", "sample", "--help"], ["data", "check", "--help"],
                 ["data", "info", "--help"], ["models", "--help"]):
        code, out, _ = cli(*args)
        assert code == 0 and "Usage" in out, args


def test_usage_errors_exit_2(cli):
    code, _, err = cli("data", "sample")  # missing argument
    assert code == 2 and "Missing argument" in err
    code, _, err = cli("no-such-command")
    assert code == 2


def test_console_script_exit_codes_and_one_line_errors(tmp_path):
    run = [sys.executable, "-m", "zoomsr"]
    p = subprocess.run(run + ["data", "check", str(tmp_path / "missing")],
                       capture_output=True, text=True)
    assert p.returncode == 2
    expected = f"error: {tmp_path / 'missing'}: dataset folder not found"
    assert p.stderr.strip().splitlines() == [expected]
    assert "Traceback" not in p.stderr
    for args in (["--debug", "data", "check", str(tmp_path / "missing")],
                 ["data", "check", str(tmp_path / "missing"), "--debug"]):  # where errors say
        p = subprocess.run(run + args, capture_output=True, text=True)
        assert p.returncode == 2 and "Traceback" in p.stderr, args


def test_debug_is_moved_before_the_command_but_not_a_file_named_so():
    from zoomsr.cli.main import normalise_argv

    assert normalise_argv(["data", "check", "d", "--debug"]) == ["--debug", "data", "check", "d"]
    assert normalise_argv(["data", "check", "--", "--debug"]) == ["data", "check", "--",
                                                                   "--debug"]
    assert normalise_argv(["--debug", "data", "check", "d"]) == ["--debug", "data", "check", "d"]


def test_cli_starts_without_importing_torch():
    # `zoomsr --help` must stay instant: command modules import heavy libraries lazily.
    code = "import sys, zoomsr.cli.main; print(sorted({'torch', 'rasterio'} & set(sys.modules)))"
    p = _python(code, check=True)
    assert p.stdout.strip() == "[]"


def test_help_paragraphs_wrap_at_the_terminal_width(cli, monkeypatch):
    """The docstrings' own line breaks are not kept: on a terminal narrower than the source a
    sentence used to break into ragged lines ("--frames TCI" alone on one)."""
    monkeypatch.setenv("COLUMNS", "80")
    for args in (["demo", "--help"], ["infer", "--help"], ["train", "--help"],
                 ["data", "build", "--help"], ["metrics", "agreement", "--help"]):
        code, out, _ = cli(*args)
        assert code == 0, args
        prose = out.split("╭")[0].splitlines()[3:]  # the description, before the boxes
        paragraphs = "\n".join(line.rstrip() for line in prose).split("\n\n")
        for p in paragraphs:
            lines = [line for line in p.splitlines() if line.strip()]
            # every line but a paragraph's last is filled to near the width
            assert all(len(line) > 60 for line in lines[:-1]), (args, p)


def test_unwrap_help_joins_paragraph_lines_and_keeps_verbatim_blocks():
    import click

    from zoomsr.cli.main import _unwrap_help

    group = click.Group("g", help="Title.")
    group.add_command(click.Command("c", help="""First line.

        A paragraph written
        over three
        lines.

        \b
        zoomsr infer IN -o OUT
        zoomsr infer IN -o OUT --resume
        """))
    _unwrap_help(group)
    assert group.commands["c"].help == (
        "First line.\n\nA paragraph written over three lines.\n\n"
        "\b\nzoomsr infer IN -o OUT\nzoomsr infer IN -o OUT --resume")


def _ctrl_c_after(script: str, line: str, wait: float,
                  shell_loop: bool = False) -> tuple[int, str, str]:
    """Run ``script`` (in a bash loop of two runs with ``shell_loop``, each followed by
    ``echo after``); once it prints ``line``, wait ``wait`` s and send SIGINT to the process
    group, as a terminal's Ctrl-C does. Return (exit code, the rest of stdout, stderr)."""
    import os
    import shlex
    import signal
    import time

    from process_groups import own_group

    command = [sys.executable, "-c", script]
    if shell_loop:
        one = shlex.join(command)
        command = ["bash", "-c", f"for i in 1 2; do {one}; echo after $i; done"]
    with own_group(command) as proc:
        assert proc.stdout.readline().strip() == line
        time.sleep(wait)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


#: A command that runs until Ctrl-C, says how it stopped, and returns 130 (as main() does).
_STOPPABLE = (
    "import sys, time\n"
    "import zoomsr.cli.main as cli\n"
    "from zoomsr.cli import exiting\n"
    "def command():\n"
    "    exiting.command_starts()\n"  # as main() does before the command runs
    "    print('running', flush=True)\n"
    "    try:\n"
    "        time.sleep(20)\n"
    "    except KeyboardInterrupt:\n"
    "        print('interrupted', file=sys.stderr)\n"
    "        return 130\n"
    "cli.main = command\n"
)


def test_ctrl_c_ends_the_process_killed_by_sigint_so_a_shell_loop_stops():
    """A command stopped by Ctrl-C says so, cleans up, then ends killed by SIGINT: with
    ``exit(130)`` a shell loop over zoomsr commands went on with the next one (bash stops a
    loop only when the command died of the signal). Shells show 130 either way."""
    import signal

    code, out, err = _ctrl_c_after(_STOPPABLE + "cli.run()\n", "running", 0.2)
    assert code == -signal.SIGINT and err.strip() == "interrupted", (code, err)
    code, out, err = _ctrl_c_after(_STOPPABLE + "cli.run()\n", "running", 0.2,
                                   shell_loop=True)
    assert "after" not in out and err.strip() == "interrupted", (code, out, err)


def test_sigterm_handled_as_ctrl_c_exits_130():
    """A command that handles SIGTERM as Ctrl-C (``data build``) exits with code 130."""
    script = (  # a real SIGTERM, through Typer (which turns the interrupt into 130)
        "import os, signal, sys, time\n"
        "import typer\n"
        "import zoomsr.cli.main as cli\n"
        "from zoomsr.stopping import sigterm_as_interrupt\n"
        "app = typer.Typer()\n"
        "@app.command()\n"
        "def build():\n"
        "    with sigterm_as_interrupt():\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(5)\n"
        "cli.app = app\n"
        "sys.argv = ['zoomsr']\n"
        "cli.run()\n"
    )

    proc = _python(script)
    assert proc.returncode == 130 and proc.stderr.strip() == "interrupted", proc.stderr
    # where SIGINT is ignored (a background job), no Ctrl-C can have stopped it either
    ignored = ("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
               "import zoomsr.cli.main as cli\ncli.main = lambda: 130\ncli.run()\n")
    proc = _python(ignored)
    assert proc.returncode == 130 and proc.stderr == "", proc.stderr


@pytest.mark.parametrize("when", ["imports", "building the command line"])
def test_a_ctrl_c_during_start_up_ends_it_quietly(when):
    """A Ctrl-C during the imports of the command line (torch's: about 0.2 s), or while Typer
    builds it, printed a KeyboardInterrupt traceback of 13-48 lines."""
    import signal

    script = (
        "import os, signal\n"
        "import typer\n"
        "from zoomsr.cli import entry, exiting\n"
        "def ctrl_c():\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "first = exiting.console_script\n"
        "def then_ctrl_c(**kwargs):\n"
        "    first(**kwargs)\n"
        "    ctrl_c()\n"  # as the imports start
        "build = typer.main.get_command\n"
        "def building(app):\n"
        "    ctrl_c()\n"
        "    return build(app)\n"
        + {"imports": "exiting.console_script = then_ctrl_c\n",
           "building the command line": "typer.main.get_command = building\n"}[when]
        + "entry.run()\n"
        "print('not reached')\n"
    )
    proc = _python(script)
    assert proc.returncode == -signal.SIGINT, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""


@pytest.mark.parametrize("sent", ["SIGINT", "SIGTERM"])
def test_an_interrupt_landing_in_a_del_still_stops_the_command(sent):
    """Python cannot raise a KeyboardInterrupt from a ``__del__`` or a weakref callback (a
    WeakSet's, as threads end): it printed "Exception ignored in: ..." and the command ran
    to its end. The interrupt is now sent again and stops the command; a SIGTERM handled as
    Ctrl-C (``Terminated``) is sent again as SIGTERM, also where SIGINT is ignored (a
    background job), where a SIGINT would be lost."""
    script = (
        "import os, signal, time\n"
        + ("signal.signal(signal.SIGINT, signal.SIG_IGN)\n" if sent == "SIGTERM" else "")
        + "from zoomsr.cli import exiting\n"
        "from zoomsr.stopping import sigterm_as_interrupt\n"
        "exiting.console_script()\n"
        "exiting.command_starts()\n"
        "class Collected:\n"
        "    def __del__(self):\n"
        f"        os.kill(os.getpid(), signal.{sent})\n"
        "        time.sleep(0.1)\n"  # the interrupt comes here, inside __del__
        "try:\n"
        "    with sigterm_as_interrupt():\n"
        "        obj = Collected()\n"
        "        del obj\n"
        "        time.sleep(5)\n"
        "    print('ran to its end')\n"
        "except KeyboardInterrupt as exc:\n"
        "    print('stopped by', getattr(exc, 'signum', 2))\n"
    )
    proc = _python(script)
    signum = 15 if sent == "SIGTERM" else 2
    assert proc.stdout.strip() == f"stopped by {signum}" and proc.stderr == "", proc.stderr


def test_importing_the_entry_point_leaves_ctrl_c_alone():
    """Worker processes started with spawn or forkserver (torch's DataLoader on macOS) import
    the console script's module again: its quiet Ctrl-C handler made them die of SIGINT."""
    code = ("import signal, zoomsr.cli.entry\n"
            "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n")
    out = _python(code, check=True).stdout
    assert out.strip() == "True"


def test_a_ctrl_c_during_the_exit_after_an_interrupt_just_ends_it():
    """After "interrupted...", Python's exit (library teardown) takes about a second; another
    Ctrl-C there printed "Exception ignored in atexit callback" with a traceback. It now ends
    the exit at once, killed by SIGINT like the exit it cut short."""
    import signal

    script = (
        "import atexit, sys, time\n"
        "import zoomsr.cli.main as cli\n"
        "def slow_teardown():\n"
        "    print('in teardown', flush=True)\n"
        "    time.sleep(3)\n"
        "atexit.register(print, 'teardown done', flush=True)\n"
        "atexit.register(slow_teardown)\n"  # runs first: the latest registered does
        "cli.main = lambda: 130\n"
        "cli.run()\n"
    )
    code, out, err = _ctrl_c_after(script, "in teardown", 0.1)
    assert code == -signal.SIGINT, err
    assert err == "", err
    assert "teardown done" not in out  # ended there, not after the teardown


def test_a_ctrl_c_during_the_exit_of_a_finished_command_just_ends_it():
    import signal

    script = (
        "import atexit, time\n"
        "import zoomsr.cli.main as cli\n"
        "def slow_teardown():\n"
        "    print('in teardown', flush=True)\n"
        "    time.sleep(3)\n"
        "atexit.register(slow_teardown)\n"
        "cli.main = lambda: 0\n"
        "cli.run()\n"
    )
    code, _, err = _ctrl_c_after(script, "in teardown", 0.1)
    assert code == -signal.SIGINT and err == "", err


def test_a_ctrl_c_while_an_interrupted_command_reports_waits_for_its_line():
    """Between the first Ctrl-C and the exit, the command says how it stopped (reading what it
    kept): another Ctrl-C there printed a traceback instead of that line."""
    import signal

    script = (
        "import sys, time, types\n"
        "import zoomsr.cli.main as cli\n"
        "from zoomsr.cli import interrupt\n"
        "def hint():\n"
        "    print('reporting', flush=True)\n"
        "    time.sleep(1)\n"
        "    return 'interrupted: go on with --resume'\n"
        "def command_main(**kwargs):\n"
        "    interrupt.on_interrupt(hint)\n"
        "    raise KeyboardInterrupt\n"
        "command = types.SimpleNamespace(help=None, main=command_main)\n"
        "cli.typer.main.get_command = lambda app: command\n"
        "sys.argv = ['zoomsr', 'infer']\n"
        "cli.run()\n"
    )
    code, _, err = _ctrl_c_after(script, "reporting", 0.2)
    assert code == -signal.SIGINT, (code, err)
    assert err.strip().splitlines() == ["interrupted: go on with --resume"], err


def test_the_command_line_starts_without_importing_triton():
    """torch's FLOP counter imports triton (where installed), and a Ctrl-C during that import
    became an ImportError torch logs and goes on from: a command started and interrupted at
    once then ran to its end. Start-up no longer imports it, nor do the packages of the long
    commands but training (Lightning imports it)."""

    code = ("import sys, zoomsr.cli.main, zoomsr.inference, zoomsr.data, zoomsr.evaluation\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'triton'))\n")
    out = _python(code, check=True).stdout
    assert out.strip() == "[]"


def test_an_eof_error_is_an_error_not_a_ctrl_c(capsys):
    """click turns EOFError (np.load of an empty file, input() at the end of stdin) into its
    Abort, which was reported as a Ctrl-C ("interrupted", exit 130)."""
    import click

    from zoomsr.cli import main as cli_main

    @click.command()
    def reads() -> None:
        raise EOFError("no data left in file")

    assert cli_main._main(reads, []) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == ("error: EOFError: no data left in file (run with "
                                            "--debug for the traceback)")
    assert "interrupted" not in err


@pytest.mark.parametrize("argv", [["demo", ""], ["data", "sample", ""],
                                  ["evaluate", "--pred", "p", "--target", "t", "--out", ""],
                                  ["data", "info", " "]])
def test_an_empty_argument_is_refused_before_anything_is_written(cli, tmp_path, monkeypatch,
                                                                  argv):
    """`zoomsr demo "$OUT"` with OUT unset wrote the demo files into the current folder; the
    same for data sample, train/evaluate --out, and data check/info checked it."""
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(*argv)
    assert code == 2 and not out and list(tmp_path.iterdir()) == []
    where = "after --out" if argv[-2] == "--out" else f"as an argument of `zoomsr {argv[0]}`"
    assert err.strip() == (f"error: an empty argument {where} ({argv[-1]!r}): an unset shell "
                           "variable? give the path or value (. for the current folder)")


@pytest.mark.parametrize("argv", [["data", "sample", "s", "--seed", "-1"],
                                  ["metrics", "agreement", "j.csv", "--out", "o", "--seed", "-1"],
                                  ["data", "build", "o", "--s2", "x", "--hr", "y", "--seed", "-2"],
                                  ["infer", "x", "-o", "y.tif", "--threads", "0"]])
def test_usage_errors_are_one_line_before_any_work(cli, tmp_path, monkeypatch, argv):
    """A negative seed failed late (after the scoring, for agreement) as a bare ValueError;
    click's usage errors took four lines."""
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(*argv)
    option = argv[-2]
    assert code == 2 and not out and list(tmp_path.iterdir()) == []
    assert len(err.strip().splitlines()) == 1 and err.startswith(
        f"error: Invalid value for '{option}': ")
    command = " ".join(a for a in argv[:2] if not a.startswith("-") and a in (
        "data", "sample", "metrics", "agreement", "build", "infer"))
    assert err.strip().endswith(f"(see zoomsr {command} --help)")


def test_long_commands_handle_sigterm_as_ctrl_c():
    """SIGTERM (a time limit, `kill`) ended these at once, silently, exit 143; infer and data
    build handle it themselves, and train leaves it to Lightning (which installs its own
    handler only where none is set)."""
    import typer.main

    from zoomsr.cli.main import app

    def callback(*path: str):
        group = typer.main.get_command(app)
        for name in path:
            group = group.commands[name]
        return group.callback

    handled = [("evaluate",), ("evaluate-model",), ("benchmark",), ("demo",),
               ("data", "sample"), ("metrics", "agreement"), ("metrics", "consistency"),
               ("weights", "download"), ("weights", "import-ncnn")]
    def wrapped(fn) -> bool:
        return getattr(fn, "handles_sigterm", False)

    for path in handled:
        assert wrapped(callback(*path)), path
    assert not wrapped(callback("train"))
