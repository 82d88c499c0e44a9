import subprocess
import sys

from zoomsr import __version__


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
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
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


def _ctrl_c_after(script: str, line: str, wait: float) -> tuple[int, str, str]:
    """Run ``script``; once it prints ``line``, wait ``wait`` s and send SIGINT. Return (exit
    code, the rest of stdout, stderr)."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == line
        time.sleep(wait)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    return proc.returncode, out, err


def test_a_ctrl_c_during_the_exit_after_an_interrupt_just_ends_it():
    """After "interrupted...", Python's exit (library teardown) takes about a second; another
    Ctrl-C there printed "Exception ignored in atexit callback" with a traceback, or killed
    the process by SIGINT (-2). It now ends the exit early with exit code 130."""
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
    assert code == 130, err
    assert "KeyboardInterrupt" not in err and "Exception ignored" not in err, err
    assert "teardown done" not in out  # ended there, not after the teardown


def test_a_ctrl_c_during_module_teardown_after_an_interrupt_exits_130():
    """After the exit callbacks, Python's finalisation resets Python-level signal handlers
    to the default and then tears modules down (about 0.7 s with torch): a Ctrl-C there
    killed the process by SIGINT (-2) instead of exit code 130."""
    script = (
        "import time\n"
        "import zoomsr.cli.main as cli\n"
        "class Slow:\n"
        "    def __del__(self):\n"  # a slow module teardown
        "        print('teardown', flush=True)\n"
        "        time.sleep(2)\n"
        "slow = Slow()\n"
        "cli.main = lambda: 130\n"
        "cli.run()\n"
    )
    code, _, err = _ctrl_c_after(script, "teardown", 0.3)
    assert code == 130, (code, err)
    assert "KeyboardInterrupt" not in err, err


def test_a_ctrl_c_while_an_interrupted_command_reports_is_ignored():
    """Between the first Ctrl-C and the exit, the command says how it stopped (reading what it
    kept): another Ctrl-C there printed a traceback and ended the process by SIGINT."""
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
    assert code == 130, (code, err)
    assert err.strip().splitlines() == ["interrupted: go on with --resume"], err


def test_the_command_line_starts_without_importing_triton():
    """torch's FLOP counter imports triton (where installed), and a Ctrl-C during that import
    became an ImportError torch logs and goes on from: a command started and interrupted at
    once then ran to its end. Start-up no longer imports it, nor do the packages of the long
    commands but training (Lightning imports it)."""
    import subprocess
    import sys

    code = ("import sys, zoomsr.cli.main, zoomsr.inference, zoomsr.data, zoomsr.evaluation\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'triton'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
