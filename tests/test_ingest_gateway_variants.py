"""``python -m ingest`` as a user runs it, against TWS-protocol peers that behave as real gateways do and our simulator
does not: a conId that changed since the last load, daily bars dated with a time or in epoch seconds, a gateway that
drops every client during start-up, and a slow gateway stopped with SIGTERM.

Each test runs the whole CLI in a subprocess (the real ib_async client, the embedded warehouse) against a scripted
peer (devtools.scripted_gateway) and checks the exit status, the one line printed, what landed in ``raw`` and that a
re-run completes the load.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from devtools.scripted_gateway import ScriptedGateway, bars
from ingest.exit_codes import ExitCode
from warehouse_db import connect
from warehouse_db.settings import REPO_ROOT, ConnectionSettings

DAYS = ["20240104", "20240105"]


def ingest(db: ConnectionSettings, port: int, *args: str) -> subprocess.Popen:
    env = {
        **os.environ,
        **db.libpq_env(),
        "DATABASE_URL": "",
        "IBKR_HOST": "127.0.0.1",
        "IBKR_PORT": str(port),
        "IBKR_CLIENT_ID": "17",
        "IBKR_CONNECT_TIMEOUT": "5",
        "IBKR_RECONNECT_TIMEOUT": "2",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "ingest", "--no-progress", "--months", "1", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_ingest(db: ConnectionSettings, port: int, *args: str) -> tuple[int, str, str]:
    loader = ingest(db, port, *args)
    out, err = loader.communicate(timeout=60)
    return loader.returncode, out, err


def query(db: ConnectionSettings, sql: str) -> list[tuple]:
    with connect(db) as conn:
        return conn.execute(sql).fetchall()


def assert_no_partial_batch(db: ConnectionSettings) -> None:
    partial = query(
        db,
        "select b.symbol from raw.load_batches b left join raw.ibkr_bars r using (batch_id) "
        "group by b.batch_id, b.symbol, b.row_count having b.row_count <> count(r.batch_id)",
    )
    assert partial == []


def test_sigterm_ends_a_slow_load_in_one_line_with_130_and_a_rerun_completes_it(warehouse):
    """kill, a timeout or a scheduler stopping the job: as Ctrl+C, whole batches only, then a re-run loads the rest."""
    symbols = ["AAPL", "MSFT", "IBM", "KO", "PEP", "XOM", "CVX", "JPM"]
    seconds_per_answer = {"now": 0.4}

    def answer(req_id: int, nth: int):  # a slow gateway: answers come one after another
        return [seconds_per_answer["now"] * nth, bars(req_id, DAYS)]

    gateway = ScriptedGateway(answer=answer)
    with gateway.running_in_thread() as port:
        loader = ingest(warehouse, port, "--symbols", *symbols)
        deadline = time.monotonic() + 30
        while query(warehouse, "select count(*) from raw.load_batches") < [(2,)] and time.monotonic() < deadline:
            time.sleep(0.05)
        loader.send_signal(signal.SIGTERM)
        out, err = loader.communicate(timeout=30)
        assert loader.returncode == ExitCode.INTERRUPTED, out + err
        assert err == "error: interrupted; every batch landed so far is complete, nothing partial landed\n"
        landed = query(warehouse, "select count(*) from raw.load_batches where status = 'ok'")[0][0]
        assert 2 <= landed < len(symbols)
        assert_no_partial_batch(warehouse)

        seconds_per_answer["now"] = 0.0
        status, out, err = run_ingest(warehouse, port, "--symbols", *symbols)
    assert status == ExitCode.OK, out + err
    per_symbol = query(warehouse, "select symbol, count(*) from raw.load_batches where status = 'ok' group by symbol")
    assert sorted(per_symbol) == sorted((s, 1) for s in symbols)
    assert_no_partial_batch(warehouse)
