"""The IBKR loader end to end: real ib_async against the in-process gateway simulator, real embedded PostgreSQL.

Each test gets a database of its own (``warehouse`` fixture) and a simulator of its own on an ephemeral port.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from datetime import time as dtime

import psycopg
import pytest

from devtools.scratch_database import create_database, drop_database
from gateway_simulator import (
    GatewaySimulator,
    PacingLimits,
    PacingRules,
    SimulatorConfig,
    Split,
    run_simulator_in_thread,
)
from gateway_simulator import __main__ as simulator_cli
from gateway_simulator.contracts import con_id_for
from ingest import cli
from ingest.exit_codes import ExitCode
from ingest.ibkr import in_flight, planner
from ingest.ibkr.config import IbkrSettings
from ingest.ibkr.fetcher import IbkrSession
from ingest.ibkr.loader import LoadOptions, LoadSummary, load, run_load
from ingest.ibkr.pacing import PacingLimiter, PacingPolicy
from ingest.ibkr.planner import months_before
from ingest.ibkr.session_types import ContractRef, GatewayUnavailableError, InvalidRequestError, RetryPolicy
from ingest.landing import Batch, land_batch, new_load_id, utc_now
from ingest.raw_tables import BarSettings, RawBar, claim_load, ensure_raw_tables, load_lock_key, open_for_landing
from ingest.report import format_summary
from ingest.watchlist import WatchlistEntry, load_watchlist
from market_calendar import EXCHANGE_TZ as NY
from warehouse_db import connect
from warehouse_db.provision import provision
from warehouse_db.settings import REPO_ROOT, ConnectionSettings

# The real ib_async client against the simulator over loopback (and mostly a warehouse too).
pytestmark = pytest.mark.integration

WATCHLIST = load_watchlist()


@contextmanager
def simulator(**config) -> Iterator[GatewaySimulator]:
    with run_simulator_in_thread(SimulatorConfig(**config)) as sim:
        yield sim


def run(db: ConnectionSettings, sim: GatewaySimulator, entries, months: int = 12, **options) -> LoadSummary:
    """A load with the test's options; 12 months keep most tests quick (the full-watchlist test runs the default)."""
    ibkr = IbkrSettings(port=sim.port, request_timeout_s=options.pop("request_timeout_s", 30.0))
    return load(db, ibkr, LoadOptions(entries=list(entries), months=months, **options))


def query(db: ConnectionSettings, sql: str, *params) -> list[tuple]:
    with connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def nyse_sessions(first: date, last: date) -> list[date]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import exchange_calendars as xcals

        calendar = xcals.get_calendar("XNYS", start="2020-01-02")
        return [s.date() for s in calendar.sessions_in_range(first.isoformat(), last.isoformat())]


def assert_consistent_batches(db: ConnectionSettings) -> None:
    """No partial batch: every ok batch holds exactly its row_count bars, and no bar lacks its batch."""
    mismatched = query(
        db,
        """
        select b.symbol, b.row_count, count(r.batch_id)
        from raw.load_batches b left join raw.ibkr_bars r using (batch_id)
        group by b.batch_id, b.symbol, b.row_count
        having b.row_count <> count(r.batch_id)
        """,
    )
    assert mismatched == []
    orphans = query(
        db,
        "select count(*) from raw.ibkr_bars r "
        "where not exists (select 1 from raw.load_batches b where b.batch_id = r.batch_id)",
    )
    assert orphans == [(0,)]


def ibkr_env(db: ConnectionSettings, port: int) -> dict[str, str]:
    return {
        **db.libpq_env(),
        "DATABASE_URL": "",
        "IBKR_HOST": "127.0.0.1",
        "IBKR_PORT": str(port),
        "IBKR_CLIENT_ID": "17",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the full watchlist ----------------------------------------------------------------------------------


def test_full_watchlist_lands_every_session_then_runs_incrementally(warehouse):
    assert len(WATCHLIST) == 150
    with simulator() as sim:
        # How fast: bench/bench_ingest.py (a speed target is a benchmark's ratio, not a timed test).
        first = run(warehouse, sim, WATCHLIST)
        assert first.ok and first.count("landed") == 150 and first.count("failed") == 0
        assert sim.stats.historical_requests == 150 and sim.stats.contract_requests == 150
        assert sim.stats.pacing_violations == 0 and sim.stats.max_open_historical <= 40

        # One row per symbol per NYSE session, from 12 months back to the last closed session (during trading hours
        # the simulator also serves today's bar so far, which is not final and never lands).
        per_symbol = query(
            warehouse,
            "select symbol, count(*), count(distinct session_date), min(session_date), max(session_date), "
            "bool_and(bar_time = (session_date::timestamp at time zone 'America/New_York')), "
            "count(distinct con_id), min(exchange), min(currency) from raw.ibkr_bars group by symbol",
        )
        assert len(per_symbol) == 150
        last_session = sim.calendar.last_closed_session(sim.now())
        window_start = months_before(datetime.now(NY).date(), 12)
        expected = nyse_sessions(window_start, last_session)
        for symbol, rows, sessions, low, high, midnight, con_ids, exchange, currency in per_symbol:
            assert rows == sessions, f"{symbol}: duplicate sessions"
            assert high == last_session and low <= expected[1], symbol
            assert nyse_sessions(low, high) == expected[expected.index(low) :], f"{symbol}: sessions missing"
            assert midnight and con_ids == 1 and currency == "USD" and exchange in ("NASDAQ", "NYSE"), symbol
        assert first.rows == sum(r[1] for r in per_symbol)

        # Second run: everything is current -- no request of any kind, nothing lands.
        second = run(warehouse, sim, WATCHLIST)
        assert second.ok and second.count("current") == 150 and second.rows == 0
        assert sim.stats.historical_requests == 150 and sim.stats.contract_requests == 150

        # A new symbol: only it is qualified and fetched.
        newco = WatchlistEntry("NEWCO", "NYSE")
        third = run(warehouse, sim, [*WATCHLIST, newco])
        assert third.count("landed") == 1 and third.count("current") == 150
        assert sim.stats.historical_requests == 151 and sim.stats.contract_requests == 151
        assert sim.stats.requests_log[-1].symbol == "NEWCO"

        # --full-refresh fetches everything again; the conIds already in raw need no new lookup.
        fourth = run(warehouse, sim, [*WATCHLIST, newco], full_refresh=True)
        assert fourth.ok and fourth.count("landed") == 151
        assert sim.stats.historical_requests == 302 and sim.stats.contract_requests == 151
    assert_consistent_batches(warehouse)
    statuses = query(warehouse, "select status, count(*) from raw.load_batches group by status")
    assert statuses == [("ok", 302)]


def test_enforced_pacing_sees_zero_violations_on_the_full_watchlist(warehouse):
    with simulator(enforce_pacing=True) as sim:
        summary = run(warehouse, sim, WATCHLIST)
        assert summary.ok and summary.count("landed") == 150
        assert sim.stats.pacing_violations == 0
        assert sim.stats.max_open_historical <= 40


def test_strict_mode_keeps_to_the_rolling_limit_against_an_enforcing_gateway(warehouse):
    """The 60-per-10-minutes rule, scaled down to 10 per 3 s on both sides so that it bites within seconds."""
    entries = WATCHLIST[:25]
    with simulator(enforce_pacing=True) as sim:
        sim.pacing = PacingRules(
            clock=sim.clock, limits=PacingLimits(rolling_window_s=3.0, rolling_max=10, rolling_for_all_bar_sizes=True)
        )
        # A margin of half a second: on a loaded machine a request may reach the gateway that much after it left.
        policy = PacingPolicy(strict=True, rolling_window_s=3.0, rolling_max=10, margin_s=0.5)
        started = time.monotonic()
        summary = run(warehouse, sim, entries, pacing=policy)
        took = time.monotonic() - started
    assert summary.ok and summary.count("landed") == 25
    assert sim.stats.pacing_violations == 0
    assert took >= 6.0, "25 requests at 10 per 3 s cannot take less than 6 s"


# --- faults ----------------------------------------------------------------------------------------------


def test_an_unknown_symbol_is_recorded_as_failed_with_code_200_and_the_others_land(warehouse, monkeypatch, capsys):
    symbols = ["AAPL", "MSFT", "ZZZQ", "BRK B", "JPM"]
    with simulator(unknown_symbols=frozenset({"ZZZQ"})) as sim:
        for name, value in ibkr_env(warehouse, sim.port).items():
            monkeypatch.setenv(name, value)
        status = cli.main(["--symbols", *symbols, "--no-progress"])
    out = capsys.readouterr().out
    assert status == ExitCode.FAILED_SYMBOLS
    assert "ZZZQ" in out and "200" in out and "No security definition" in out
    batches = {
        symbol: (status, code, message, rows)
        for symbol, status, code, message, rows in query(
            warehouse, "select symbol, status, error_code, error_message, row_count from raw.load_batches"
        )
    }
    assert batches["ZZZQ"][:2] == ("failed", 200) and "No security definition" in batches["ZZZQ"][2]
    assert batches["ZZZQ"][3] == 0
    assert all(batches[s][0] == "ok" and batches[s][3] > 200 for s in ("AAPL", "MSFT", "BRK B", "JPM"))
    assert query(warehouse, "select count(*) from raw.ibkr_bars where symbol = 'ZZZQ'") == [(0,)]


def test_pacing_violations_are_retried_and_everything_lands(warehouse):
    entries = WATCHLIST[:12]
    with simulator(pacing_nth=frozenset({2, 5, 9})) as sim:
        # A retry is the identical request again, which IBKR's rules space 15 s apart, after a 2 s back-off and a 5 s
        # cooldown (each unit-tested): shorter ones keep this test about retrying (it waited 15 s on them).
        quick_retry = RetryPolicy(pacing_backoff_s=0.2, pacing_cooldown_s=0.5)
        summary = run(warehouse, sim, entries, pacing=PacingPolicy(identical_window_s=1.0), retry=quick_retry)
        assert sim.stats.pacing_violations == 3
    assert summary.ok and summary.count("landed") == 12
    assert summary.gateway_stats.pacing_violations == 3
    assert query(warehouse, "select status, count(*) from raw.load_batches group by status") == [("ok", 12)]
    assert_consistent_batches(warehouse)


def test_a_connection_dropped_mid_request_is_reconnected_and_everything_lands(warehouse):
    entries = WATCHLIST[:12]
    with simulator(drop_nth=frozenset({4}), latency_s=0.2) as sim:
        # Requests lost with the connection are re-sent identically, which IBKR's rules space 15 s apart
        # (as in the 162 test above); a 1 s window keeps this test about reconnecting.
        summary = run(warehouse, sim, entries, pacing=PacingPolicy(identical_window_s=1.0))
        assert sim.stats.dropped_connections == 1 and sim.stats.connections == 2
    assert summary.ok and summary.count("landed") == 12
    assert summary.gateway_stats.reconnects == 1 and summary.gateway_stats.dropped_requests >= 1
    assert query(warehouse, "select status, count(*) from raw.load_batches group by status") == [("ok", 12)]
    assert_consistent_batches(warehouse)


def test_a_timeout_is_told_apart_from_no_data_and_321_fails_at_once():
    async def scenario(port: int) -> tuple:
        fast = IbkrSettings(port=port, client_id=31, request_timeout_s=0.3)
        patient = IbkrSettings(port=port, client_id=32, request_timeout_s=10)
        # The retry of a timed-out request is an identical request: IBKR's 15 s rule applies (unit-tested);
        # a 1 s window here keeps this test about telling outcomes apart.
        quick_retry = PacingLimiter(PacingPolicy(identical_window_s=1.0))
        async with IbkrSession(fast, quick_retry, RetryPolicy(timeout_retries=1)) as impatient:
            ref = (await impatient.qualify("AAPL", "NASDAQ")).contract
            timed_out = await impatient.fetch(
                ref, end="", duration="5 D", bar_size="1 day", what_to_show="TRADES", use_rth=True, intraday=False
            )
        async with IbkrSession(patient, PacingLimiter(PacingPolicy())) as session:
            # Sunday noon: an hour with no session is IBKR's 162 "HMDS query returned no data".
            no_data = await session.fetch(
                ref,
                end="20261122 17:00:00 UTC",
                duration="3600 S",
                bar_size="1 hour",
                what_to_show="TRADES",
                use_rth=True,
                intraday=True,
            )
            started = time.monotonic()
            with pytest.raises(InvalidRequestError) as invalid:
                await session.fetch(  # over 365 days must be given in years: 321
                    ref, end="", duration="400 D", bar_size="1 day", what_to_show="TRADES", use_rth=True, intraday=False
                )
            invalid_after = time.monotonic() - started
        return timed_out, no_data, invalid.value, invalid_after

    with simulator(latency_s=1.0) as sim:
        timed_out, no_data, invalid, invalid_after = asyncio.run(scenario(sim.port))
    assert timed_out.status == "failed" and timed_out.error_code is None
    assert timed_out.error_message.startswith("timed out") and timed_out.attempts == 2
    assert no_data.status == "no_data" and no_data.error_code == 162 and "no data" in no_data.error_message
    assert invalid.code == 321 and "years" in invalid.message
    assert invalid_after < 2.0, "a 321 must not wait for the request timeout"


def test_a_timeout_stays_a_timeout_when_the_answer_to_its_cancel_arrives_first(monkeypatch):
    """At its timeout ib_async cancels the request, and IBKR answers the cancel with 162 "query cancelled". On a busy
    machine that answer was read before the session resumed the request, and the timeout was reported as "the gateway
    ended the request" (seen in make test on a loaded machine). A loop busy for 0.3 s after each request stands in."""
    awaited = in_flight.first_of

    async def on_a_busy_loop(awaitable, event):
        try:
            return await awaited(awaitable, event)
        finally:
            await asyncio.sleep(0.3)  # the simulator's answer to the cancel is read meanwhile

    monkeypatch.setattr(in_flight, "first_of", on_a_busy_loop)

    async def scenario(port: int):
        settings = IbkrSettings(port=port, client_id=33, request_timeout_s=0.3)
        quick_retry = PacingLimiter(PacingPolicy(identical_window_s=1.0))
        async with IbkrSession(settings, quick_retry, RetryPolicy(timeout_retries=1)) as session:
            ref = (await session.qualify("AAPL", "NASDAQ")).contract
            return await session.fetch(
                ref, end="", duration="5 D", bar_size="1 day", what_to_show="TRADES", use_rth=True, intraday=False
            )

    with simulator(latency_s=1.0) as sim:
        timed_out = asyncio.run(scenario(sim.port))
    assert (timed_out.status, timed_out.error_code, timed_out.attempts) == ("failed", None, 2), timed_out
    assert timed_out.error_message.startswith("timed out"), timed_out.error_message


def test_an_invalid_request_stops_the_run_with_exit_status_5(warehouse, monkeypatch, capsys):
    monkeypatch.setattr(planner, "daily_duration", lambda start, end: "400 D")
    with simulator() as sim:
        for name, value in ibkr_env(warehouse, sim.port).items():
            monkeypatch.setenv(name, value)
        status = cli.main(["--symbols", "AAPL", "MSFT", "--no-progress"])
    captured = capsys.readouterr()
    assert status == ExitCode.INVALID_REQUEST
    assert "error 321" in captured.err and "years" in captured.err
    assert query(warehouse, "select distinct status, error_code from raw.load_batches") == [("failed", 321)]


def test_a_landing_past_the_statement_timeout_ends_ingest_in_one_line_naming_the_limit(warehouse, monkeypatch, capsys):
    """A batch whose landing waits past WAREHOUSE_STATEMENT_TIMEOUT (here behind another session's lock on raw) ends
    ingest with status 4 and one line naming what sets the limit, as a cancelled statement elsewhere does: the IBKR
    loader's landing said "canceling statement due to statement timeout" and no word of the limit (and put psycopg's
    CONTEXT or DETAIL, where the server sends one, on lines of their own)."""
    with simulator() as sim, connect(warehouse) as holder:
        holder.execute("lock table raw.ibkr_bars in share mode")  # reads go on; the landing's INSERT waits
        for name, value in {**ibkr_env(warehouse, sim.port), "WAREHOUSE_STATEMENT_TIMEOUT": "1"}.items():
            monkeypatch.setenv(name, value)
        status = cli.main(["--symbols", "AAPL", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert status == ExitCode.WAREHOUSE, err
    last = err.splitlines()[-1]
    assert last.startswith("error: warehouse: landing AAPL failed: canceling statement due to statement timeout ("), err
    assert "WAREHOUSE_STATEMENT_TIMEOUT sets how long" in last and "CONTEXT" not in err, err


def test_the_simulator_refuses_an_exchange_without_permissions_as_ibkr_does_and_the_run_names_it(warehouse):
    """``--no-permissions NYSE``: the watchlist's NYSE stocks fail with IBKR's 162 naming NYSE, the NASDAQ ones land, and
    the summary says once what the NYSE symbols lack (exit 1: some symbols loaded)."""
    entries = WATCHLIST[50:70]
    nyse = [e.symbol for e in entries if e.primary_exchange == "NYSE"]
    assert nyse and len(nyse) < len(entries)
    with simulator(no_permissions={"NYSE"}) as sim:
        summary = run(warehouse, sim, entries)
        assert sim.stats.historical_requests == len(entries), "a refusal is not asked again"
    refusals = summary.refusals
    assert list(refusals) == ["no market-data permissions for NYSE STK"]
    refusal, symbols = refusals["no market-data permissions for NYSE STK"]
    assert (refusal.code, sorted(symbols)) == (162, sorted(nyse)) and not summary.refused_everything
    assert summary.count("landed") == len(entries) - len(nyse)
    assert query(warehouse, "select distinct error_code from raw.load_batches where status = 'failed'") == [(162,)]
    options = LoadOptions(entries=entries, months=12)
    assert "market data refused: no market-data permissions for NYSE STK (error 162; " in format_summary(
        summary, options
    )


@pytest.mark.parametrize("flags", [["--competing-session"], ["--no-permissions", "NYSE", "NASDAQ"]])
def test_the_simulators_refusals_for_the_whole_login_end_the_cli_with_exit_6(warehouse, monkeypatch, capsys, flags):
    parsed = simulator_cli.build_parser().parse_args(["--port", "0", *flags])
    with run_simulator_in_thread(simulator_cli.config_from_args(parsed)) as sim:
        for name, value in ibkr_env(warehouse, sim.port).items():
            monkeypatch.setenv(name, value)
        status = cli.main(["--symbols", "AAPL", "JPM", "--no-progress"])
    err = capsys.readouterr().err
    assert status == ExitCode.MARKET_DATA_REFUSED, err
    assert err.strip().splitlines()[-1].startswith("error: IBKR refused market data ")


def test_a_gateway_that_goes_away_for_good_stops_the_run_cleanly(warehouse):
    """Reconnecting is bounded: when the gateway stays away, the run stops, recording what it had."""
    entries = WATCHLIST[:60]

    def landed_batches() -> int:
        try:
            return query(warehouse, "select count(*) from raw.load_batches where status = 'ok'")[0][0]
        except psycopg.errors.UndefinedTable:  # the load creates its tables as it starts
            return 0

    async def scenario() -> tuple[LoadSummary, float]:
        sim = GatewaySimulator(SimulatorConfig(latency_s=0.5))
        await sim.start("127.0.0.1", 0)
        ibkr = IbkrSettings(port=sim.port, reconnect_timeout_s=1.0)
        task = asyncio.create_task(run_load(warehouse, ibkr, LoadOptions(entries=entries, max_open=5)))
        # The gateway goes away once five batches have landed (a fixed 2.5 s was 0.2 s more than a loaded machine
        # needed for them), while the next requests are out.
        deadline = time.monotonic() + 60
        while await asyncio.to_thread(landed_batches) < 5 and not task.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await sim.stop()
        stopped = time.monotonic()
        summary = await task
        return summary, time.monotonic() - stopped

    summary, after_stop = asyncio.run(scenario())
    assert summary.aborted and "lost and not restored within 1 s" in summary.aborted
    assert not summary.ok
    assert summary.count("landed") >= 5 and summary.count("failed") >= 1
    assert summary.count("landed") + summary.count("failed") + summary.count("not_attempted") == 60
    assert after_stop < 10, "every waiting request must give up at once once the gateway is lost"
    landed = query(warehouse, "select count(*) from raw.load_batches where status = 'ok'")[0][0]
    assert landed == summary.count("landed")
    assert_consistent_batches(warehouse)


def test_no_gateway_at_the_configured_address_is_a_clear_immediate_error(warehouse, monkeypatch, capsys):
    port = free_port()
    for name, value in ibkr_env(warehouse, port).items():
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    status = cli.main(["--symbols", "AAPL", "--no-progress"])
    took = time.monotonic() - started
    err = capsys.readouterr().err
    assert status == ExitCode.GATEWAY
    assert f"no IB Gateway or TWS answers at 127.0.0.1:{port}" in err and "IBKR_PORT" in err
    assert "log in (its API port opens only once it is logged in" in err  # IB Gateway listens only once logged in
    assert took < 10
    assert query(warehouse, "select count(*) from raw.load_batches") == [(0,)]


def test_dry_run_prints_the_plan_and_requests_nothing(warehouse, monkeypatch, capsys):
    with simulator() as sim:
        run(warehouse, sim, [WatchlistEntry("AAPL", "NASDAQ")])
        requests = sim.stats.historical_requests
        for name, value in ibkr_env(warehouse, sim.port).items():
            monkeypatch.setenv(name, value)
        status = cli.main(["--symbols", "AAPL", "MSFT", "--dry-run", "--months", "24"])
        assert sim.stats.historical_requests == requests
    out = capsys.readouterr().out
    assert status == ExitCode.OK
    aapl = next(line for line in out.splitlines() if line.startswith("AAPL"))
    msft = next(line for line in out.splitlines() if line.startswith("MSFT"))
    assert "duration=2 Y" in aapl and "backfill" in aapl
    assert "duration=2 Y" in msft and "nothing in the warehouse" in msft
    assert "would request 2 historical request(s) for 2 symbol(s)" in out

    # By default five years, in one request per symbol.
    status = cli.main(["--symbols", "AAPL", "--dry-run"])
    assert status == ExitCode.OK and "duration=5 Y" in capsys.readouterr().out


# --- a ticker change --------------------------------------------------------------------------------------


def land_old_ticker(
    db: ConnectionSettings, symbol: str, con_id: int, days: list[date], bar_size: str = "1 day"
) -> None:
    """Bars of ``symbol`` under ``con_id``, landed as a load of the IBKR source would land them."""
    bars = [
        RawBar(symbol, datetime.combine(day, dtime(0), NY), day, 10.0, 11.0, 9.0, 10.5, 1000.0, 10.2, 5, con_id=con_id)
        for day in days
    ]
    with connect(db) as conn:
        ensure_raw_tables(conn)
        batch = Batch(symbol, BarSettings(bar_size=bar_size), "ok", utc_now())
        land_batch(conn, load_id=new_load_id(), source="ibkr", batch=batch, bars=bars)


def test_a_new_ticker_under_a_contract_id_raw_holds_for_another_symbol_is_warned_about_and_lands(
    warehouse, monkeypatch, capsys, caplog
):
    meta = con_id_for("META")  # the simulator's conId for META: FB's bars carry it, as after FB became META
    days = nyse_sessions(months_before(datetime.now(NY).date(), 2), months_before(datetime.now(NY).date(), 1))
    land_old_ticker(warehouse, "FB", meta, days)
    land_old_ticker(warehouse, "HOURLY", con_id_for("AAPL"), days[:1], bar_size="1 hour")  # other bar settings
    with simulator() as sim:
        for name, value in ibkr_env(warehouse, sim.port).items():
            monkeypatch.setenv(name, value)
        with caplog.at_level(logging.WARNING, logger="ingest.ibkr.loader"):
            status = cli.main(["--symbols", "META", "AAPL", "--no-progress", "--months", "3"])
        out = capsys.readouterr().out
        # Not refused: META landed in full, and the run says what the next dbt build will say.
        assert status == ExitCode.OK
        assert query(warehouse, "select status from raw.load_batches where symbol = 'META'") == [("ok",)]
        assert query(
            warehouse, "select count(distinct con_id), min(con_id) from raw.ibkr_bars where symbol = 'META'"
        ) == [(1, meta)]
        expected = (
            f"META: conId {meta} is already in raw.ibkr_bars under FB (same bar settings): one company under two "
            "symbols, as after a ticker change; dbt build fails int_bars_deduplicated_one_symbol_per_contract on the "
            'sessions they share until the old ticker\'s bars are deleted, see docs/ingest.md "A ticker change"'
        )
        assert [r.getMessage() for r in caplog.records if "conId" in r.getMessage()] == [expected]
        assert [line for line in out.splitlines() if "conId" in line] == [f"ticker change? {expected}"]

        # The next run finds META's conId in raw (no lookup) and says it again while FB's bars are there.
        lookups = sim.stats.contract_requests
        again = run(warehouse, sim, [WatchlistEntry("META", "NASDAQ"), WatchlistEntry("AAPL", "NASDAQ")], months=3)
        assert sim.stats.contract_requests == lookups
        assert [(c.con_id, c.symbols, c.this_run) for c in again.shared_contracts] == [
            (meta, ("FB", "META"), ("META",))
        ]
        assert again.ok
        assert cli.main(["--symbols", "META", "--dry-run", "--months", "3"]) == ExitCode.OK  # the plan says it too
        assert f"ticker change? {expected}" in capsys.readouterr().out.splitlines()

        # After the documented clean-up, nothing to say.
        query(warehouse, "delete from raw.ibkr_bars where symbol = 'FB' returning 1")
        assert run(warehouse, sim, [WatchlistEntry("META", "NASDAQ")], months=3).shared_contracts == []


# --- SIGKILL ---------------------------------------------------------------------------------------------


def test_a_longer_months_asks_for_the_older_part_only_and_a_split_in_its_overlap_is_noticed(
    warehouse, embedded_cluster, monkeypatch
):
    """``--months 12`` on Monday evening, ``--months 24`` on Tuesday at midday (Monday's close is still the last, so
    both symbols are current): each gets one request for the older year plus a week of overlap, not the held year
    again. AAPL split 4-for-1 on Tuesday, and the overlap's re-delivered bars show it: its whole history is fetched
    again in the same run. The warehouse then keeps what one 24-month load keeps, and a third run asks for nothing."""
    evening, midday = datetime(2026, 11, 23, 18, 0, tzinfo=NY), datetime(2026, 11, 24, 11, 30, tzinfo=NY)
    splits = (Split("AAPL", date(2026, 11, 24), 4),)

    def cli_load(db: ConnectionSettings, now: datetime, months: int) -> list:
        with simulator(now=now, splits=splits) as sim:
            monkeypatch.setattr(
                "ingest.ibkr.loader.utc_now", lambda: now
            )  # the CLI plans on the simulator's pinned clock
            for name, value in ibkr_env(db, sim.port).items():
                monkeypatch.setenv(name, value)
            assert cli.main(["--symbols", "AAPL", "MSFT", "--months", str(months), "--no-progress"]) == ExitCode.OK
            return sim.stats.requests_log

    cli_load(warehouse, evening, 12)
    requests = cli_load(warehouse, midday, 24)
    older_part = "20251201 05:00:00 UTC"  # the first held session (2025-11-24) + 7 days, explicit
    assert [(r.symbol, r.end_date_time, r.duration) for r in requests if r.symbol == "MSFT"] == [
        ("MSFT", older_part, "2 Y")
    ]
    assert sorted((r.end_date_time, r.duration) for r in requests if r.symbol == "AAPL") == [
        ("", "2 Y"),  # the whole history again, after the split
        (older_part, "2 Y"),
    ]
    batches = query(
        warehouse,
        "select symbol, requested_start, requested_end, readjustment_factor, request_reason from raw.load_batches "
        "where requested_start < '2025-01-01' order by symbol",
    )
    (aapl, msft) = batches
    assert aapl[3] == pytest.approx(0.25) and "4-for-1 split" in aapl[4]
    assert msft[1:4] == (datetime(2024, 11, 24, tzinfo=NY), datetime(2025, 12, 1, tzinfo=NY), None)
    assert "current: only the older part 2024-11-24..2025-12-01" in msft[4]
    # Only the week of overlap landed twice (the old plan landed the whole held year again: about 250 sessions).
    ((twice,),) = query(
        warehouse,
        "select count(*) from (select session_date from raw.ibkr_bars where symbol = 'MSFT' "
        "group by session_date having count(*) > 1) d",
    )
    assert 1 <= twice <= 6
    assert cli_load(warehouse, midday, 24) == []  # current and covered from the window's start: nothing to ask

    kept = (
        "select distinct on (symbol, bar_time) symbol, bar_time, open, high, low, close, volume, wap, bar_count "
        "from raw.ibkr_bars order by symbol, bar_time, ingested_at desc, load_id desc, batch_id desc"
    )  # the version of every bar dbt keeps (the latest landed), which the mart is built from
    single = create_database(embedded_cluster, "test")
    try:
        with connect(single) as conn:
            provision(conn)
            ensure_raw_tables(conn)
        assert len(cli_load(single, midday, 24)) == 2
        assert query(warehouse, kept) == query(single, kept)
    finally:
        drop_database(single)


def test_on_a_terminal_the_progress_bar_counts_the_symbols_and_a_warning_prints_above_it(warehouse):
    """`python -m ingest` with stderr on a terminal (no --no-progress): the load runs under tqdm's bar, and a warning
    logged during the load (a symbol IBKR does not know) prints on a line of its own, not glued to the bar (no test
    ran this path: every other one passes --no-progress or has no terminal)."""
    import fcntl
    import pty
    import struct
    import termios
    import threading

    main, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal's size (a pty's is 0)
    seen = bytearray()

    def read_terminal() -> None:
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the loader has closed the terminal
                return
            if not chunk:
                return
            seen.extend(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        with simulator(unknown_symbols=frozenset({"ZZZQ"})) as sim:
            loader = subprocess.Popen(
                [sys.executable, "-m", "ingest", "--symbols", "AAPL", "ZZZQ", "MSFT", "--months", "3"],
                cwd=REPO_ROOT,
                env={**os.environ, **ibkr_env(warehouse, sim.port)},
                stdout=subprocess.PIPE,
                stderr=terminal,
                text=True,
            )
            os.close(terminal)
            out, _ = loader.communicate(timeout=120)
        reader.join(10)
    finally:
        os.close(main)
    shown = seen.decode("utf-8", "replace")
    assert loader.returncode == ExitCode.FAILED_SYMBOLS, (out, shown)
    pieces = [piece.strip() for piece in re.split(r"[\r\n]", shown) if piece.strip()]
    bars = [piece for piece in pieces if "ibkr:" in piece]
    assert bars and bars[-1].startswith("ibkr: 100%|") and "| 3/3 [" in bars[-1], shown
    assert all(piece.startswith("ibkr: ") for piece in bars), shown  # nothing glued to the bar
    warning = [piece for piece in pieces if "ZZZQ failed: error 200:" in piece]
    assert len(warning) == 1 and "ibkr:" not in warning[0], shown
    assert pieces.index(warning[0]) > pieces.index(bars[0]), shown  # printed while the bar was up
    assert "Traceback" not in shown
    assert re.search(r"^landed +2 +\d+$", out, re.MULTILINE) and "ZZZQ" in out, out
    assert query(warehouse, "select symbol, status from raw.load_batches order by symbol") == [
        ("AAPL", "ok"),
        ("MSFT", "ok"),
        ("ZZZQ", "failed"),
    ]
    assert_consistent_batches(warehouse)


def test_sigkill_mid_run_then_a_rerun_completes_every_symbol_without_partial_batches(warehouse):
    # The watchlist's first 60 symbols (--limit): more than the 40 requests open at once, so the run is killed with
    # bars in flight and symbols not yet asked for, as with all 150 (which took twice as long).
    symbols = 60

    def start_loader(port: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "ingest", "--no-progress", "--months", "12", "--limit", str(symbols)],
            cwd=REPO_ROOT,
            env={**os.environ, **ibkr_env(warehouse, port)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def landed() -> int:
        try:
            return query(warehouse, "select count(*) from raw.load_batches")[0][0]
        except Exception:  # noqa: BLE001 - the tables appear once the loader has started
            return 0

    with simulator(latency_s=1.0) as sim:
        loader = start_loader(sim.port)
        deadline = time.monotonic() + 60
        while landed() < 15 and loader.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert loader.poll() is None, f"the loader finished before it could be killed: {loader.communicate()}"
        os.kill(loader.pid, signal.SIGKILL)
        loader.wait(10)
        # The simulator reads what was already on the wire, then sees the socket close: only then has it counted every
        # request of the killed run (a fixed 0.5 s was a guess at how long that takes).
        deadline = time.monotonic() + 30
        while sim.stats.open_connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sim.stats.open_connections == 0, "the simulator never saw the killed loader's connection close"
        before = landed()
        assert 15 <= before < symbols
        assert_consistent_batches(warehouse)

    # The re-run needs no slow gateway (the latency was there to catch the first run mid-way): the same simulator
    # without it, whose bars and contracts are the same (the same seed), counts the re-run's requests alone.
    with simulator() as sim:
        rerun = start_loader(sim.port)
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, out + err
        requests_by_rerun = sim.stats.historical_requests
    complete = query(
        warehouse,
        "select symbol, count(*), count(distinct session_date) from raw.ibkr_bars group by symbol",
    )
    assert len(complete) == symbols
    assert all(rows == sessions and rows > 200 for _, rows, sessions in complete)
    assert query(warehouse, "select count(distinct symbol) from raw.load_batches where status = 'ok'") == [(symbols,)]
    assert_consistent_batches(warehouse)
    # The re-run asked for exactly the symbols that had not landed, once each.
    assert requests_by_rerun == symbols - before
    symbols_fetched_twice = query(
        warehouse, "select count(*) from (select symbol from raw.load_batches group by symbol having count(*) > 1) t"
    )
    assert symbols_fetched_twice == [(0,)]


def test_timestamps_of_landed_daily_bars_are_new_york_midnight(warehouse):
    with simulator() as sim:
        run(warehouse, sim, [WatchlistEntry("AAPL", "NASDAQ")], months=1)
    ((bar_time, session_date),) = query(
        warehouse, "select bar_time, session_date from raw.ibkr_bars order by bar_time desc limit 1"
    )
    assert bar_time == datetime.combine(session_date, dtime(0), NY)


def test_contract_ref_pacing_identity_prefers_the_con_id():
    assert ContractRef("AAPL", 265598).pacing_id == "265598"
    assert ContractRef("AAPL").pacing_id == "AAPL"


def test_the_cli_dispatches_csv_files_to_the_csv_source(warehouse, monkeypatch, capsys, tmp_path):
    for name, value in ibkr_env(warehouse, free_port()).items():
        monkeypatch.setenv(name, value)
    good = tmp_path / "good.csv"
    good.write_text("symbol,date,open,high,low,close,volume\nAAPL,2024-07-01,5.04,5.11,4.90,4.96,7202384\n")
    assert cli.main(["--source", "csv", str(good), "--no-progress"]) == ExitCode.OK
    assert "1 rows landed" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("symbol,date,open,high,low,close,volume\nAAPL,2024-07-02,5.04,4.00,4.90,4.96,7202384\n")
    assert cli.main(["--source", "csv", str(bad), "--no-progress"]) == ExitCode.USAGE
    assert f"{bad}:2" in capsys.readouterr().err
    assert query(warehouse, "select source, count(*) from raw.ibkr_bars group by source") == [("csv", 1)]


def test_a_client_id_in_use_a_silent_port_and_a_connection_that_never_opens_are_told_apart():
    """A silent port accepted the connection; a host that never lets it open (a wrong address, a firewall dropping it)
    did not, and was described with the silent port's causes (a gateway not accepting this host, a client id in use),
    none of which can keep a connection from opening."""

    async def connect(port: int, client_id: int = 17) -> str:
        session = IbkrSession(
            IbkrSettings(port=port, client_id=client_id, connect_timeout_s=1.0), PacingLimiter(PacingPolicy())
        )
        try:
            await session.connect()
        except GatewayUnavailableError as error:
            return str(error)
        finally:
            await session.close()
        return "connected"

    async def scenario(port: int, silent_port: int, unopened_port: int) -> tuple[str, str, str, str]:
        first = IbkrSession(IbkrSettings(port=port, client_id=5), PacingLimiter(PacingPolicy()))
        await first.connect()
        try:
            duplicate = await connect(port, client_id=5)
            other = await connect(port, client_id=6)
        finally:
            await first.close()
        silent = await connect(silent_port)
        unopened = await connect(unopened_port)
        return duplicate, other, silent, unopened

    with simulator() as sim, socket.socket() as listener, socket.socket() as full:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # accepts TCP, never speaks the API
        full.bind(("127.0.0.1", 0))
        full.listen(0)  # never accepts: once its queue is full, the kernel drops new connections' SYNs
        queued = [socket.socket() for _ in range(3)]
        for waiting in queued:
            waiting.setblocking(False)
            waiting.connect_ex(full.getsockname())
        try:
            ports = sim.port, listener.getsockname()[1], full.getsockname()[1]
            duplicate, other, silent, unopened = asyncio.run(scenario(*ports))
        finally:
            for waiting in queued:
                waiting.close()
    assert "client id 5 is already in use" in duplicate and "IBKR_CLIENT_ID" in duplicate
    assert other == "connected"
    assert "no API handshake within 1 s of the connection being accepted" in silent
    assert "no connection within 1 s: the host does not answer (a wrong IBKR_HOST" in unopened
    assert "trusted IPs" not in unopened and "client id" not in unopened.split(": ", 1)[1]


# --- two loads at once ------------------------------------------------------------------------------------


def test_a_second_load_of_the_same_bars_is_refused_in_one_line_while_the_first_runs(warehouse):
    """Two loads of the same bars at once (two terminals, a cron job) would both plan from the same coverage, ask IBKR
    for the same history twice and land it twice. The second is refused before it contacts the gateway, naming the
    first; once the first has gone, a run fetches what is missing, and the next one nothing."""

    def loader(port: int, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "ingest", "--no-progress", "--symbols", "AAPL", "MSFT", "--months", "12", *args],
            cwd=REPO_ROOT,
            env={**os.environ, **ibkr_env(warehouse, port)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def lock_holders() -> int:
        return query(
            warehouse,
            "select count(*) from pg_locks where locktype = 'advisory' and granted "
            "and classid = hashtext('ingest.load')::oid and database = (select oid from pg_database "
            "where datname = current_database())",
        )[0][0]

    # A load of the same bars into another database of the same server holds the same lock key there (advisory locks
    # are per database): it neither blocks this warehouse's loads nor may it be named as their holder.
    other_database = psycopg.connect(
        **{**warehouse.connect_kwargs(), "dbname": "postgres"}, autocommit=True, application_name="other database"
    )
    key = load_lock_key(BarSettings(), "ibkr")
    other_database.execute("select pg_advisory_lock(hashtext('ingest.load'), hashtext(%s))", (key,))
    # The first load's requests are never answered while the test looks: it holds the lock until it is stopped.
    with other_database, simulator(latency_s=600.0) as slow, simulator() as fast:
        first = loader(slow.port, "--timeout", "900", "--client-id", "1")
        try:
            deadline = time.monotonic() + 60
            # Synchronised on what the gateway saw: the first load has planned and asked for both symbols.
            while slow.stats.historical_requests < 2 and first.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert first.poll() is None and slow.stats.historical_requests == 2, (
                first.communicate(timeout=10) if first.poll() is not None else "no requests within 60 s"
            )

            second = loader(fast.port, "--client-id", "2")
            out, err = second.communicate(timeout=60)
            assert second.returncode == ExitCode.BUSY, out + err
            assert err.count("\n") == 1 and "Traceback" not in err, err
            assert err.startswith("error: another ingest of 1 day TRADES RTH bars from ibkr is loading into this "), err
            assert f"(python -m ingest (pid {first.pid}), connected " in err and "nothing was requested" in err, err
            assert fast.stats.historical_requests == 0 and fast.stats.contract_requests == 0

            # A dry run lands nothing: it may plan beside the running load.
            dry = loader(fast.port, "--client-id", "2", "--dry-run")
            out, err = dry.communicate(timeout=60)
            assert dry.returncode == ExitCode.OK and "dry run: 2 symbols" in out, out + err
        finally:
            first.send_signal(signal.SIGTERM)
            _, err = first.communicate(timeout=60)
        assert first.returncode == ExitCode.INTERRUPTED, err
        assert lock_holders() == 0  # gone with its connection

        again = loader(fast.port, "--client-id", "2")
        out, err = again.communicate(timeout=60)
        assert again.returncode == ExitCode.OK and fast.stats.historical_requests == 2, out + err
        last = loader(fast.port, "--client-id", "2")
        out, err = last.communicate(timeout=60)
        assert last.returncode == ExitCode.OK and fast.stats.historical_requests == 2, out + err
    assert query(warehouse, "select symbol, count(*) from raw.load_batches group by symbol order by symbol") == [
        ("AAPL", 1),
        ("MSFT", 1),
    ]
    assert_consistent_batches(warehouse)


def test_a_load_right_after_another_waits_the_moment_its_server_process_takes_to_let_the_lock_go(warehouse):
    """A load that has just ended has closed its connection, but its server process lets the load lock go a moment
    later: a run right after another (seen in CI: one process, a busy server) was refused, naming the run that had
    ended. The lock is held here by another session that lets it go a second later, as such a process does."""
    import threading

    key = load_lock_key(BarSettings(), "ibkr")
    ending = psycopg.connect(**warehouse.connect_kwargs(), autocommit=True)
    ending.execute("select pg_advisory_lock(hashtext('ingest.load'), hashtext(%s))", (key,))
    letting_go = threading.Timer(1.0, ending.close)
    conn = open_for_landing(warehouse)
    try:
        letting_go.start()
        claim_load(conn, BarSettings(), "ibkr")  # the old code raised AnotherLoadRunning at once
        holders = conn.execute(
            "select count(*) from pg_locks where locktype = 'advisory' and granted and pid = pg_backend_pid() "
            "and classid = hashtext('ingest.load')::oid and objid = hashtext(%s)::oid",
            (key,),
        ).fetchone()[0]
        assert holders == 1
    finally:
        letting_go.join()
        conn.close()
