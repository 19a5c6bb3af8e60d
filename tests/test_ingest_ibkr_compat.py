"""The loader's client code path works with ib_insync 0.9.86 too: same answers from the same simulator.

ib_insync runs in a venv of its own (both libraries ship a module named ``eventkit``), built on first use with
``pip install ib_insync==0.9.86`` outside the checkout: tests write only to temporary directories, so the venv is
cached under the system's temporary directory, keyed by the library and Python versions and the OS user, and built
under a lock (several test runs may start at once). Both runs execute :mod:`ingest.ibkr.compat_check`, which drives the real
:class:`ingest.ibkr.fetcher.IbkrSession` (connect, qualify, reqHistoricalData, errorEvent capture).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gateway_simulator import SimulatorConfig, run_simulator_in_thread
from warehouse_db.settings import REPO_ROOT

INSYNC_VERSION = "0.9.86"


def insync_venv(uid: int) -> Path:
    """The cached venv of one OS user: shared by all, the first user's (root's, in CI) venv and lock file were theirs
    alone, and every other user's run of this test failed in a PermissionError on the lock."""
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    return Path(tempfile.gettempdir()) / f"ibkr-rl-warehouse-ib_insync-{INSYNC_VERSION}-{python}-uid{uid}"


INSYNC_VENV = insync_venv(os.getuid())


def insync_python() -> Path:
    """The cached venv's python, built first when missing or broken (under a lock: runs may start at once)."""
    python = INSYNC_VENV / "bin" / "python"
    probe = [str(python), "-c", f"import ib_insync; assert ib_insync.__version__ == '{INSYNC_VERSION}'"]
    with open(f"{INSYNC_VENV}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
            return python
        # --clear: a build that died half-way is started over.
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(INSYNC_VENV)], check=True, timeout=120)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", f"ib_insync=={INSYNC_VERSION}"], check=True, timeout=600
        )
        subprocess.run(probe, check=True)
    return python


def compat_report(python: Path | str, port: int, client_id: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(
        [
            str(python),
            "-m",
            "ingest.ibkr.compat_check",
            "--port",
            str(port),
            "--client-id",
            str(client_id),
            "--symbols",
            "AAPL",
            "BRK B",
            "NOSUCH",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_each_os_user_builds_an_ib_insync_venv_of_their_own():
    assert insync_venv(0) != insync_venv(1000)
    assert insync_venv(os.getuid()) == INSYNC_VENV


@pytest.mark.integration
@pytest.mark.slow  # builds a venv with ib_insync on first use
def test_the_same_client_code_gets_the_same_answers_with_ib_insync_0_9_86():
    python = insync_python()
    with run_simulator_in_thread(SimulatorConfig(unknown_symbols=frozenset({"NOSUCH"}))) as sim:
        modern = compat_report(sys.executable, sim.port, client_id=41)
        legacy = compat_report(python, sim.port, client_id=42)
    assert (modern["library"], legacy["library"]) == ("ib_async", "ib_insync")
    assert legacy["version"] == INSYNC_VERSION
    assert legacy["symbols"] == modern["symbols"]
    aapl = legacy["symbols"]["AAPL"]
    assert aapl["con_id"] and aapl["daily"]["status"] == "ok" and aapl["daily"]["bars"] >= 19
    assert aapl["hourly"]["status"] == "ok" and aapl["hourly"]["aware"] is True
    assert legacy["symbols"]["BRK B"]["daily"]["bars"] == aapl["daily"]["bars"]
    assert legacy["symbols"]["NOSUCH"] == {"con_id": None, "error_code": 200}
    assert legacy["pacing_violations"] == modern["pacing_violations"] == 0


def test_a_check_interrupted_mid_way_says_so_in_one_line():
    """Ctrl+C during the check got the generic "interrupted before the command began or after it ended" line, untrue
    mid-check; now the check says it did not finish, exits 130 (as ingest) and prints no traceback and no report."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers: the check waits mid-connect
        command = [sys.executable, "-m", "ingest.ibkr.compat_check", "--port", str(silent.getsockname()[1])]
        check = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        silent.settimeout(60)
        peer, _ = silent.accept()
        with peer:
            check.send_signal(signal.SIGINT)
            stdout, stderr = check.communicate(timeout=60)
    assert check.returncode == 130, stderr
    assert (stdout, stderr) == ("", "error: interrupted; the check did not finish, so there is no report\n")
