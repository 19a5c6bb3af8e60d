"""What every command shares (command_line.py): ``~`` in a path setting given where no shell expands
it, and a reader of standard output that goes away (``| head``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from command_line import outlives_its_reader, user_path
from ingest.cli import build_parser as ingest_parser
from ingest.cli import main as ingest_main
from training.cli import main as training_main
from training.cli import parse_command_line, walk_forward_main
from training.config import SingleRunConfig, WalkForwardConfig, load_config
from training.sweep import SweepConfig
from training.sweep import main as sweep_main
from warehouse_db.__main__ import main as warehouse_db_main
from warehouse_db.errors import WarehouseConfigError
from warehouse_db.settings import warehouse_dir

NO_SUCH_USER = "~no-such-user-k9"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty home directory, in a working directory of its own (where a literal '~' folder would appear)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def test_a_tilde_in_a_config_file_is_the_home_directory_never_a_folder_named_tilde(home: Path) -> None:
    (home.parent / "run.yaml").write_text("runs_dir: ~/experiments\nmart_yaml: '~'\n", encoding="utf-8")
    config = load_config(Path("run.yaml"), cls=WalkForwardConfig)
    assert (config.runs_dir, config.mart_yaml) == (home / "experiments", home)
    # --flag=~/x reaches the program unexpanded (a shell expands only a word that starts with ~), and so does the
    # file --config names; a stored configuration (a resumed sweep's) goes through the same fields.
    home.mkdir()
    (home / "run.yaml").write_text("seed: 7\n", encoding="utf-8")
    config = parse_command_line(SingleRunConfig, ["--config=~/run.yaml", "--runs-dir=~/flagged"], "prog", "")
    assert (config.seed, config.runs_dir) == (7, home / "flagged")
    assert load_config(base={"runs_dir": "~/stored"}, cls=WalkForwardConfig).runs_dir == home / "stored"
    assert SweepConfig(space=Path("~/space.yaml")).space == home / "space.yaml"
    assert not Path("~").exists()


def test_every_other_path_setting_expands_the_same_way(home: Path) -> None:
    assert warehouse_dir({"WAREHOUSE_DIR": "~/warehouse"}) == home / "warehouse"  # from .env: no shell there
    args = ingest_parser().parse_args(["--source", "csv", "--watchlist=~/watch.csv", "~/bars.csv"])
    assert (args.watchlist, args.paths) == (home / "watch.csv", [home / "bars.csv"])
    assert user_path("~/x") == home / "x"
    assert user_path("a/~/b") == Path("a/~/b")  # only a leading ~ is a home directory, as in a shell


def test_an_unknown_users_home_is_refused_in_one_line_never_made_a_folder(
    home: Path, capsys: pytest.CaptureFixture
) -> None:
    (home.parent / "run.yaml").write_text(f"runs_dir: {NO_SUCH_USER}/runs\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"runs_dir {NO_SUCH_USER}/runs: {NO_SUCH_USER} is no home directory here"):
        load_config(Path("run.yaml"), cls=WalkForwardConfig)
    assert sweep_main([f"--space={NO_SUCH_USER}/space.yaml"]) == 2
    assert f"space {NO_SUCH_USER}/space.yaml: {NO_SUCH_USER} is no home" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        ingest_parser().parse_args(["--source", "csv", f"--watchlist={NO_SUCH_USER}/w.csv"])
    assert exit_.value.code == 2
    with pytest.raises(WarehouseConfigError, match=f"WAREHOUSE_DIR={NO_SUCH_USER}/w: {NO_SUCH_USER} is no home"):
        warehouse_dir({"WAREHOUSE_DIR": f"{NO_SUCH_USER}/w"})
    assert list(home.parent.iterdir()) == [home.parent / "run.yaml"]


def _closed_pipe() -> int:
    """The write end of a pipe whose reader has already gone away: every write to it fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


def test_a_command_outlives_the_reader_of_its_output(monkeypatch: pytest.MonkeyPatch) -> None:
    landed = []

    @outlives_its_reader
    def long_job() -> int:
        print("trial 1 ...", flush=True)
        print("a log line", file=sys.stderr, flush=True)  # make sweep 2>&1 | head: the log's reader went away too
        landed.append("results")  # what a long job computed after its reader left still lands
        print("verdict")
        return 6

    with open(_closed_pipe(), "w", encoding="utf-8") as stdout, open(_closed_pipe(), "w", encoding="utf-8") as stderr:
        monkeypatch.setattr(sys, "stdout", stdout)
        monkeypatch.setattr(sys, "stderr", stderr)
        assert long_job() == 6
        assert (sys.stdout, sys.stderr) == (stdout, stderr)
        print("and later writes go nowhere quietly")
    assert landed == ["results"]


def test_a_verdict_reaches_an_output_that_cannot_encode_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """PYTHONIOENCODING=ascii or a latin-1 terminal: `make train` printed its verdict (−, …, ×) after the run had
    landed, and ended in a UnicodeEncodeError traceback with status 1. The commands' characters are spelt in ASCII,
    anything else escaped."""

    @outlives_its_reader
    def verdict() -> int:
        print("95% CI of the Sharpe difference −0.90 … +1.10; 20 fold × seed test splits (× √252) ± 1; report: ~/café")
        return 0

    for encoding in ("ascii", "latin-1"):
        with open(tmp_path / encoding, "w", encoding=encoding) as stdout:
            monkeypatch.setattr(sys, "stdout", stdout)
            assert verdict() == 0
        said = (tmp_path / encoding).read_text(encoding=encoding)
        assert said == (
            "95% CI of the Sharpe difference -0.90 ... +1.10; 20 fold x seed test splits (x sqrt 252) +/- 1; report: "
            + ("~/caf\\xe9\n" if encoding == "ascii" else "~/café\n")
        )


def test_every_commands_main_outlives_the_reader_of_its_output() -> None:
    mains = [ingest_main, training_main, walk_forward_main, sweep_main, warehouse_db_main]
    assert all(getattr(main, "__wrapped__", None) for main in mains)


def test_a_help_page_cut_short_ends_quietly() -> None:
    module = "training.sweep"  # tyro's help raised BrokenPipeError (argparse's, ingest's, never did)
    write_end = _closed_pipe()
    finished = subprocess.run(
        [sys.executable, "-m", module, "--help"], stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60
    )
    assert (finished.returncode, finished.stderr) == (0, "")
    finished = subprocess.run([sys.executable, "-m", module, "--help"], stdout=write_end, stderr=write_end, timeout=60)
    os.close(write_end)
    assert finished.returncode == 0


INTERRUPTED_IN_IMPORTS = (
    -signal.SIGINT,
    "error: interrupted before the command began or after it ended: nothing was half-written\n",
)


@pytest.mark.parametrize("module", ["training.walk_forward", "training", "training.sweep"])
def test_ctrl_c_while_a_training_command_still_imports_is_one_line(module: str, tmp_path: Path) -> None:
    # A command's modules take a moment to import (psycopg, tyro, NumPy; torch, Ray and Great Expectations took
    # seconds until the job imported them itself), before the command's own Ctrl+C handling: a Ctrl+C then printed a
    # traceback of the import machinery.
    env = {**os.environ, "WAREHOUSE_DIR": str(tmp_path / "warehouse")}
    command = subprocess.Popen(
        [sys.executable, "-m", module], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    # psycopg's compiled part is loaded while the command's modules import (warehouse_db, under every training command),
    # well before the command parses its flags and begins its own Ctrl+C handling. NumPy, the mark until the training
    # commands deferred their heavy imports, is now loaded by `python -m training` after that handling began.
    maps = Path(f"/proc/{command.pid}/maps")
    deadline = time.monotonic() + 60
    while "psycopg_binary" not in maps.read_text() and time.monotonic() < deadline:  # it is importing psycopg now
        time.sleep(0.001)
    command.send_signal(signal.SIGINT)
    stdout, stderr = command.communicate(timeout=60)
    status, last_words = INTERRUPTED_IN_IMPORTS  # -SIGINT: Python ends through SIGINT, and a shell reports 130
    assert command.returncode == status
    assert stdout == "" and len(stderr.splitlines()) == 1 and stderr.endswith(last_words), stderr


# A command as the project's are built: its output outlives its reader, SIGTERM and SIGHUP interrupt it as Ctrl+C
# does, and it reports the interruption in one line with status 130. While it works it answers each line asked on the
# pipe named by its first argument with a line on the pipe named by its second: a test learns whether it still works
# without waiting for a time to pass.
LONG_COMMAND = """
import os, sys
from command_line import outlives_its_reader, sigterm_interrupts

@outlives_its_reader
def main():
    asked, answers = open(int(sys.argv[1])), open(int(sys.argv[2]), "w")
    try:
        with sigterm_interrupts():
            print("working", flush=True)
            for _ in asked:
                print("still working", file=answers, flush=True)
    except KeyboardInterrupt:
        print("error: interrupted; nothing was half-written", file=sys.stderr)
        return 130
    return 0

sys.exit(main())
"""


def _on_its_terminal(ignore_sighup: bool) -> subprocess.Popen:
    """LONG_COMMAND in a session of its own whose controlling terminal is a pty (as a shell over ssh starts it);
    ``ignore_sighup``: started as ``nohup`` starts it. Returns once it works; its ``terminal`` is the pty's other end,
    and ``ask`` says whether it still works."""
    import fcntl
    import pty
    import termios

    terminal, its_end = pty.openpty()
    (asked, ask), (answer, answers) = os.pipe(), os.pipe()

    def on_a_terminal_of_its_own() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        # As nohup starts it, or as a login shell does (whatever the tests were started with: `nohup make test`).
        signal.signal(signal.SIGHUP, signal.SIG_IGN if ignore_sighup else signal.SIG_DFL)

    process = subprocess.Popen([sys.executable, "-c", LONG_COMMAND, str(asked), str(answers)], stdin=its_end,
                               stdout=its_end, stderr=its_end, pass_fds=(asked, answers),
                               preexec_fn=on_a_terminal_of_its_own)  # fmt: skip
    for fd in (its_end, asked, answers):
        os.close(fd)
    said = b""
    while b"working" not in said:
        said += os.read(terminal, 1024)

    def still_working() -> bool:
        try:
            os.write(ask, b"?\n")
        except BrokenPipeError:  # it has ended
            return False
        return os.read(answer, 1024) == b"still working\n"  # b"": it ended without answering

    process.terminal = terminal  # type: ignore[attr-defined]
    process.still_working = still_working  # type: ignore[attr-defined]
    return process


def test_a_terminal_that_hangs_up_interrupts_a_command_as_ctrl_c_does() -> None:
    """An ssh session that drops hangs up the terminal: SIGHUP, and every later write to it fails with EIO. SIGHUP
    ended a command at once (status -1), before it could finish what Ctrl+C lets it finish (a load's batch in
    flight, removing a run's folder); and the one line it then prints must not become a traceback (EIO)."""
    process = _on_its_terminal(ignore_sighup=False)
    os.close(process.terminal)  # type: ignore[attr-defined]  # the terminal hangs up
    assert process.wait(timeout=30) == 130


def test_nohup_keeps_a_command_running_when_its_terminal_hangs_up() -> None:
    """``nohup`` starts a command with SIGHUP ignored so that it outlives its terminal: it must stay ignored. The
    hang-up's SIGHUP is sent before closing the terminal returns; a command it interrupted answers nothing after."""
    process = _on_its_terminal(ignore_sighup=True)
    assert process.still_working()  # type: ignore[attr-defined]
    os.close(process.terminal)  # type: ignore[attr-defined]
    assert process.still_working(), "the command stopped on SIGHUP under nohup"  # type: ignore[attr-defined]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 130


SIGTERM_INSIDE_A_TASK = """
import asyncio, gc, os, signal, sys
from command_line import sigterm_interrupts
from ingest.cli import _setup_logging

_setup_logging(verbose=False)

async def ends_itself():
    await asyncio.sleep(0)
    os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, inside this task: the KeyboardInterrupt is raised in it
    await asyncio.sleep(5)

async def load():
    await asyncio.gather(ends_itself(), asyncio.sleep(5), asyncio.sleep(5))  # requests in flight

with sigterm_interrupts():
    try:
        asyncio.run(load())
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
gc.collect()
"""


def test_sigterm_inside_one_of_the_loads_tasks_is_the_commands_one_line_and_no_asyncio_traceback():
    """SIGTERM lands wherever the ingest's event loop is; inside a task, asyncio logged that task's traceback ('Task
    exception was never retrieved') and 'Task was destroyed but it is pending!' after the one line (seen in CI)."""
    done = subprocess.run([sys.executable, "-c", SIGTERM_INSIDE_A_TASK], capture_output=True, text=True, timeout=60)
    assert done.stderr == "error: interrupted\n", done.stderr
