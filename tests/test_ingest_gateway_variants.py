"""``python -m ingest`` as a user runs it, against TWS-protocol peers that behave as real gateways do and our simulator
does not: a conId that changed since the last load, daily bars dated with a time or in epoch seconds or on days
without a session, a gateway that drops every client during start-up, and a slow gateway stopped with SIGTERM.

Each test runs the whole CLI in a subprocess (the real ib_async client, the embedded warehouse) against a scripted
peer (devtools.scripted_gateway) and checks the exit status, the one line printed, what landed in ``raw`` and that a
re-run completes the load.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from devtools import dbt_harness
from devtools.scripted_gateway import ScriptedGateway, bars, contract_end, error, notice, one_stock, stock
from gateway_simulator import protocol
from gateway_simulator.contracts import con_id_for
from ingest.exit_codes import ExitCode
from ingest.ibkr.config import IbkrSettings
from ingest.ibkr.loader import LoadOptions, load
from ingest.raw_tables import BarSettings
from ingest.sessions import recent_session_ends
from ingest.watchlist import WatchlistEntry
from market_calendar import EXCHANGE_TZ as NY
from warehouse_db import connect
from warehouse_db.settings import REPO_ROOT, ConnectionSettings

DAYS = ["20240104", "20240105"]
AAPL = WatchlistEntry("AAPL", "NASDAQ")
EXCHANGE_SESSION_TEST = "stg_ibkr__bars_session_date_is_exchange_session"
NO_SECURITY = "No security definition has been found for the request"
# IB Gateway's farm notices, as it words them (the farm's name ends the text).
MARKET_DATA_OK = "Market data farm connection is OK:usfarm.nj"
MARKET_DATA_INACTIVE = "Market data farm connection is inactive but should be available upon demand.usfarm.nj"
HMDS_BROKEN = "HMDS data farm connection is broken:{}"
HMDS_OK = "HMDS data farm connection is OK:{}"
HMDS_INACTIVE = "HMDS data farm connection is inactive but should be available upon demand.{}"
SEC_DEF_BROKEN = "Sec-def data farm connection is broken:{}"
SEC_DEF_OK = "Sec-def data farm connection is OK:{}"


def ingest(
    db: ConnectionSettings, port: int, *args: str, reconnect_timeout_s: float = 2, connect_timeout_s: float = 5
) -> subprocess.Popen:
    env = {
        **os.environ,
        **db.libpq_env(),
        "DATABASE_URL": "",
        "IBKR_HOST": "127.0.0.1",
        "IBKR_PORT": str(port),
        "IBKR_CLIENT_ID": "17",
        "IBKR_CONNECT_TIMEOUT": str(connect_timeout_s),
        "IBKR_RECONNECT_TIMEOUT": str(reconnect_timeout_s),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "ingest", "--no-progress", "--months", "1", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_ingest(
    db: ConnectionSettings, port: int, *args: str, reconnect_timeout_s: float = 2, connect_timeout_s: float = 5
) -> tuple[int, str, str]:
    loader = ingest(db, port, *args, reconnect_timeout_s=reconnect_timeout_s, connect_timeout_s=connect_timeout_s)
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


def test_a_con_id_that_changed_since_the_last_load_is_looked_up_again(warehouse):
    """IBKR gives a stock a new conId after some corporate actions (a reverse split with a new CUSIP): the conId kept
    in raw then gets error 200, which must not fail the symbol on every run from then on."""
    con_id = {"AAPL": 111}

    def contracts(req_id, request):
        return [stock(req_id, request.symbol, con_id[request.symbol]), contract_end(req_id)]

    def answer(req_id: int, nth: int):
        asked_for = int(gateway.historical_requests[nth - 1][2])
        return [bars(req_id, DAYS)] if asked_for == con_id["AAPL"] else [error(req_id, 200, NO_SECURITY)]

    gateway = ScriptedGateway(contracts=contracts, answer=answer)
    with gateway.running_in_thread() as port:
        assert run_ingest(warehouse, port, "--symbols", "AAPL")[0] == ExitCode.OK
        con_id["AAPL"] = 222
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL", "--full-refresh")
        assert status == ExitCode.OK, out + err
        assert "IBKR no longer knows conId 111 (error 200); its conId is now 222" in err
        # The next run asks with the new conId at once.
        asked = len(gateway.contract_requests)
        assert run_ingest(warehouse, port, "--symbols", "AAPL", "--full-refresh")[0] == ExitCode.OK
        assert len(gateway.contract_requests) == asked
    batches = query(warehouse, "select status, row_count from raw.load_batches order by started_at")
    assert batches == [("ok", 2)] * 3
    latest_load = "(select load_id from raw.load_batches order by started_at desc limit 1)"
    assert query(warehouse, f"select distinct con_id from raw.ibkr_bars where load_id = {latest_load}") == [(222,)]
    assert_no_partial_batch(warehouse)


def test_daily_bars_dated_with_a_time_or_in_epoch_seconds_land_on_the_session_the_gateway_wrote(warehouse):
    """IBKR writes daily bars as yyyyMMdd; other servers add a time and zone, or send epoch seconds (00:00 UTC)."""
    dates = {
        "AAPL": ["20240104", "20240105"],
        "MSFT": ["20240104 16:00:00 US/Eastern", "20240105 16:00:00 US/Eastern"],
        "IBM": ["1704326400", "1704412800"],  # 2024-01-04 and -05, 00:00 UTC: 19:00 New York the evening before
    }

    def answer(req_id: int, nth: int):
        return [bars(req_id, dates[gateway.historical_requests[nth - 1][3]])]

    gateway = ScriptedGateway(answer=answer)
    with gateway.running_in_thread() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", *dates)
    assert status == ExitCode.OK, out + err
    landed = query(warehouse, "select symbol, session_date, bar_time from raw.ibkr_bars order by symbol, bar_time")
    sessions = [date(2024, 1, 4), date(2024, 1, 5)]
    expected = [(s, day, datetime.combine(day, datetime.min.time(), NY)) for s in sorted(dates) for day in sessions]
    assert landed == expected


def documented_sql(containing: str) -> str:
    """The SQL block of docs/ingest.md that contains ``containing``: what an administrator is told to run."""
    text = (REPO_ROOT / "docs" / "ingest.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```sql\n(.*?)```", text, re.DOTALL) if containing in b]
    return block


def test_the_summary_names_the_first_25_days_without_a_session_and_counts_the_rest(warehouse):
    """A gateway dating a whole stretch in another time zone: 30 weekend days. The summary lists 25 and one line for
    the others (each one's warning names it); the sessions land, and the run ends with status 0."""
    good = ["20240701", "20240702", "20240703", "20240705", "20240708"]
    weekends = [day for day in (date(2024, 1, 6) + timedelta(days=n) for n in range(120)) if day.weekday() >= 5][:30]
    sent = sorted([*good, *(day.strftime("%Y%m%d") for day in weekends)])

    gateway = ScriptedGateway(answer=lambda req_id, nth: [bars(req_id, sent)])
    with gateway.running_in_thread() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL", "--no-progress")
    assert status == ExitCode.OK, out + err
    lines = out.splitlines()
    head = "30 bar(s) dated on days without an exchange session were not landed"
    (first,) = [n for n, line in enumerate(lines) if line.startswith(head)]
    listed = [
        f"  AAPL: 1 bar(s): {day.isoformat()} is a {day:%A}: the exchange has no session then" for day in weekends
    ]
    assert lines[first + 1 : first + 27] == [*listed[:25], "  ... and 5 more days (the warnings name each)"], out
    for day in weekends:  # every one is named on stderr, the five the summary leaves out too
        assert f"AAPL: 1 bar(s) not landed: {day.isoformat()} is a {day:%A}" in err
    assert query(warehouse, "select status, row_count from raw.load_batches") == [("ok", 5)]


def test_bars_dated_on_days_without_a_session_never_land_and_the_symbols_other_bars_do(warehouse, tmp_path):
    """A server writing dates in another time zone dates a bar on a holiday or a weekend. Landed, it failed dbt's
    exchange-session test on every build after (raw is append-only); refusing the run would let one bad bar stop every
    symbol. Such bars are left out and named; the symbol's other bars land, and dbt builds. A warehouse that holds one
    from before gets out with the SQL docs/ingest.md gives, run as a login with the project's roles only."""
    good = ["20240701", "20240702", "20240703", "20240705", "20240708"]  # the 3rd is a half day: a session
    sent = [*good[:3], "20240704", good[3], "20240706", good[4]]  # Independence Day; a Saturday

    gateway = ScriptedGateway(answer=lambda req_id, nth: [bars(req_id, sent)])
    with gateway.running_in_thread() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL")
    assert status == ExitCode.OK, out + err
    holiday = "2024-07-04 is an exchange holiday: there was no session that day"
    saturday = "2024-07-06 is a Saturday: the exchange has no session then"
    for reason in (holiday, saturday):
        assert f"AAPL: 1 bar(s) not landed: {reason}" in err
        assert f"  AAPL: 1 bar(s): {reason}" in out
    assert "2 bar(s) dated on days without an exchange session were not landed" in out
    landed = query(warehouse, "select session_date from raw.ibkr_bars order by bar_time")
    assert landed == [(datetime.strptime(day, "%Y%m%d").date(),) for day in good]
    assert query(warehouse, "select status, row_count from raw.load_batches") == [("ok", 5)]

    project = dbt_harness.DbtProject(warehouse, tmp_path)
    built = project.run("build")
    assert built.returncode == 0, built.output[-4000:]
    assert built.statuses()[EXCHANGE_SESSION_TEST] == "pass"

    # A Saturday bar that landed before the loader refused them (dbt's test fails on it: tests/test_dbt_data_tests.py)
    # and the way out, as an administrator whose login is a member of the project's roles and nothing more.
    columns = "symbol, con_id, exchange, currency, bar_size, what_to_show, use_rth, open, high, low, close, volume, " \
              "wap, bar_count, source, load_id, batch_id, ingested_at"  # fmt: skip
    admin = f"nonsession_admin_{uuid.uuid4().hex[:8]}"
    with connect(warehouse) as conn:
        saturday_copy = (
            f"insert into raw.ibkr_bars ({columns}, bar_time, session_date) select {columns}, "
            "bar_time + interval '1 day', session_date + 1 from raw.ibkr_bars where session_date = '2024-07-05'"
        )
        conn.execute(saturday_copy)
        # A weekly bar dated by its Saturday is no such bar (its date only names its week): it must stay.
        weekly_columns = columns.replace("bar_size", "'1 week'")
        conn.execute(saturday_copy.replace(f"select {columns}", f"select {weekly_columns}"))
        conn.execute(f"create role {admin} login in role loader, transformer")
    try:
        assert len(query(warehouse, "select from raw.ibkr_bars")) == len(good) + 2
        with connect(replace(warehouse, user=admin, logins={}), autocommit=True) as conn:  # as psql
            conn.execute(documented_sql("delete from raw.ibkr_bars as bar"))
    finally:
        with connect(warehouse) as conn:
            conn.execute(f"drop role {admin}")
    daily = "select session_date from raw.ibkr_bars where bar_size = '1 day' order by bar_time"
    assert query(warehouse, daily) == landed
    assert query(warehouse, "select session_date from raw.ibkr_bars where bar_size = '1 week'") == [(date(2024, 7, 6),)]
    tested = project.run("test", "--select", EXCHANGE_SESSION_TEST)
    assert tested.returncode == 0 and tested.statuses()[EXCHANGE_SESSION_TEST] == "pass", tested.output[-4000:]


def test_a_bar_a_server_sent_without_usable_prices_does_not_break_the_next_load(warehouse):
    """raw keeps what a server sent: a close of 0 or NaN lands (dbt's data tests flag it). A later load re-delivers it
    (an incremental one in its overlap, here a full refresh) and compares it with the stored bar: that used to end the
    whole run in a ZeroDivisionError traceback (0), or take it for a split and fetch the whole window again with a NaN
    factor, on every run."""
    now = datetime.now(UTC)
    days = [f"{session:%Y%m%d}" for session, end in recent_session_ends(now) if end <= now][-2:]  # in the window
    closes = {"AAPL": {days[1]: 0}, "MSFT": {days[1]: "nan"}}

    def answer(req_id: int, nth: int):
        return [bars(req_id, days, closes[gateway.historical_requests[nth - 1][3]])]

    gateway = ScriptedGateway(answer=answer)
    with gateway.running_in_thread() as port:
        for _ in range(2):
            status, out, err = run_ingest(warehouse, port, "--symbols", *closes, "--full-refresh")
            assert (status, err) == (ExitCode.OK, ""), out + err
    assert len(gateway.historical_requests) == 4  # no whole-window re-fetch
    batches = "select symbol, row_count, readjustment_factor from raw.load_batches order by symbol, started_at"
    assert query(warehouse, batches) == [("AAPL", 2, None)] * 2 + [("MSFT", 2, None)] * 2


def test_an_answer_the_client_cannot_decode_fails_its_symbol_at_once_while_the_others_load(warehouse):
    """MSFT's answer has dates the client library cannot parse: it drops the message, and the request used to wait
    for its timeout, three times. It now fails as its answer arrives, by its request id: AAPL, whose request waits
    meanwhile (answers interleave), is not the one failed, and lands."""
    sent: dict[str, list] = {}

    def answer(req_id: int, nth: int):
        symbol = gateway.historical_requests[nth - 1][3]
        if symbol == "AAPL":
            sent[symbol] = bars(req_id, DAYS)
            return [1.5, sent[symbol]]
        sent[symbol] = bars(req_id, ["2024-01-04", "2024-01-05"])
        return [sent[symbol]]

    gateway = ScriptedGateway(answer=answer)
    with gateway.running_in_thread() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL", "MSFT", "--timeout", "10")
    assert status == ExitCode.FAILED_SYMBOLS, out + err
    batches = query(warehouse, "select symbol, status, row_count, error_message from raw.load_batches order by symbol")
    assert batches[0] == ("AAPL", "ok", 2, None)
    assert batches[1][:3] == ("MSFT", "failed", 0)
    assert batches[1][3].startswith("the client could not decode the gateway's answer (ValueError: time data")
    assert len(gateway.historical_requests) == 2  # MSFT was not asked again
    [(seconds,)] = query(
        warehouse, "select extract(epoch from finished_at - started_at) from raw.load_batches where symbol = 'MSFT'"
    )
    assert seconds < 10  # nor did it wait for its timeout
    assert gateway.sent_at(sent["MSFT"]) < gateway.sent_at(sent["AAPL"])  # while AAPL's request waited
    assert "MSFT" in err and "could not decode" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("bar_size", "dates", "last_close"),
    [
        # Bars dated by their period's first session. Thanksgiving week: its last session is the Friday half day,
        # closing at 13:00.
        ("1 week", ["20261116", "20261123"], datetime(2026, 11, 27, 13, 0, tzinfo=NY)),
        # May 2027 ends on Memorial Day: its last session is Friday the 28th.
        ("1 month", ["20270401", "20270503"], datetime(2027, 5, 28, 16, 0, tzinfo=NY)),
        # Dated by the 1st, a Saturday: a monthly bar's date only names its month, so it lands all the same.
        ("1 month", ["20270401", "20270501"], datetime(2027, 5, 28, 16, 0, tzinfo=NY)),
    ],
)
def test_the_week_or_month_in_progress_lands_only_after_its_last_session_has_closed(
    warehouse, bar_size, dates, last_close
):
    """A weekly or monthly request during the period's last session gets its bar so far: it used to land as final.
    Loaded in-process, for the run's moment (``LoadOptions.now``) is not a command-line setting."""
    gateway = ScriptedGateway(answer=lambda req_id, nth: [bars(req_id, dates)])
    with gateway.running_in_thread() as port:
        for now in (last_close - timedelta(minutes=1), last_close):
            options = LoadOptions(entries=[AAPL], bar=BarSettings(bar_size), months=3, now=now)
            summary = load(warehouse, IbkrSettings(port=port, client_id=17), options)
            assert summary.ok and summary.unfinished == (1 if now < last_close else 0) and summary.ahead == 0
    landed = query(warehouse, "select session_date, load_id from raw.ibkr_bars order by bar_time, ingested_at")
    first_load, second_load = landed[0][1], landed[-1][1]
    # The finished period landed at once; the one in progress only after its close (the re-run asked again).
    assert [(day, load == first_load) for day, load in landed] == [
        (datetime.strptime(dates[0], "%Y%m%d").date(), True),
        (datetime.strptime(dates[0], "%Y%m%d").date(), False),
        (datetime.strptime(dates[1], "%Y%m%d").date(), False),
    ]
    assert first_load != second_load


@pytest.mark.parametrize(
    ("server_version", "refused"),
    [
        # The oldest version ib_async accepts (contract details still carry a version field); the newest, 178, is
        # what every other test's peer claims.
        (157, ""),
        (156, "the API handshake failed: "),
        (179, "the server chose API version 179, above the highest this client offered (178)"),
    ],
)
def test_the_oldest_server_version_loads_and_one_beyond_either_end_is_one_line_and_exit_3(
    warehouse, server_version, refused
):
    gateway = ScriptedGateway(server_version=server_version, answer=lambda req_id, nth: [bars(req_id, DAYS)])
    with gateway.running_in_thread() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL")
    if not refused:
        assert (status, err) == (ExitCode.OK, ""), out + err
        assert query(warehouse, "select status, row_count from raw.load_batches") == [("ok", 2)]
        return
    assert status == ExitCode.GATEWAY and err.count("\n") == 1, out + err
    assert err.startswith(f"error: cannot connect to IB Gateway/TWS at 127.0.0.1:{port}: {refused}"), err
    assert query(warehouse, "select count(*) from raw.load_batches") == [(0,)]


def test_contract_details_the_client_cannot_decode_are_named_in_the_failure(warehouse):
    """A server whose contract details do not have the shape of the version it claimed: the client library drops the
    message, and the lookup found "no contract (no error code)" without a word of why."""

    def contracts(req_id, request):
        details = stock(req_id, request.symbol, 265598)
        details[30] = ""  # the count of security ids (CUSIP, ISIN...), which the client reads as a number
        return [details, contract_end(req_id)]

    gateway = ScriptedGateway(contracts=contracts, answer=lambda req_id, nth: [bars(req_id, DAYS)])
    with gateway.running_in_thread() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL")
    assert status == ExitCode.FAILED_SYMBOLS, out + err
    [(message,)] = query(warehouse, "select error_message from raw.load_batches where status = 'failed'")
    assert message.startswith("no contract found (no error code); the client could not decode an answer (ValueError: ")


@pytest.mark.parametrize(
    ("start_up_notices", "names"),
    [
        ((), "closed the connection during the API start-up ("),  # the detail depends on when the client noticed
        (
            [(502, "Couldn't connect to TWS. Confirm that API is enabled.")],
            "closed the connection during the API start-up (error 502: Couldn't connect to TWS.",
        ),
    ],
)
def test_a_gateway_that_drops_every_client_during_start_up_is_one_line_and_exit_3(warehouse, start_up_notices, names):
    """IB Gateway closes the connection of a host not among its trusted IPs; other servers may say why first."""
    gateway = ScriptedGateway(start_up_notices=start_up_notices, close_after_start=True)
    with gateway.running_in_thread() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL")
    assert status == ExitCode.GATEWAY
    assert err.count("\n") == 1 and err.startswith(f"error: cannot connect to IB Gateway/TWS at 127.0.0.1:{port}")
    assert names in err and "Trusted IPs" in err
    assert query(warehouse, "select count(*) from raw.load_batches") == [(0,)]


def test_a_connection_closed_before_the_handshake_is_one_line_and_exit_3_at_once(warehouse):
    """A tunnel with no gateway behind it, or IB Gateway refusing the host: accepted, then closed without a word."""
    gateway = ScriptedGateway(closes_before_handshake=True)
    started = time.monotonic()
    with gateway.running_in_thread() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL", connect_timeout_s=30)
    assert status == ExitCode.GATEWAY and err.count("\n") == 1, out + err
    assert err.startswith(
        f"error: cannot connect to IB Gateway/TWS at 127.0.0.1:{port}: the connection was accepted, then closed before "
        "the API handshake"
    ), err
    # IBKR_CONNECT_TIMEOUT (30 s here) is not waited out; the margin is the loader's start on a busy machine (6 s seen).
    assert time.monotonic() - started < 20
    assert query(warehouse, "select count(*) from raw.load_batches") == [(0,)]


def test_a_client_id_in_use_given_by_flag_is_named_with_the_flag(warehouse):
    """The message said to set another IBKR_CLIENT_ID, which a run given --client-id does not read at all."""
    gateway = ScriptedGateway(client_id_in_use=True)
    with gateway.running_in_thread() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL", "--client-id", "23")
    assert status == ExitCode.GATEWAY and err.count("\n") == 1, out + err
    assert "client id 23 is already in use: set another IBKR_CLIENT_ID (or give another --client-id" in err


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


def test_a_batch_handed_to_the_warehouse_commits_before_an_interrupted_load_exits(warehouse):
    """Ctrl+C while a batch's transaction waits on the warehouse (a slow or busy server): the batch lands whole, the
    connection is not closed under it, and the load then stops in one line with 130."""
    gateway = ScriptedGateway(answer=lambda req_id, nth: [0.5, bars(req_id, DAYS)])
    waiting_for_the_lock = "select count(*) from pg_locks where not granted and relation = 'raw.ibkr_bars'::regclass"
    with gateway.running_in_thread() as port:
        loader = ingest(warehouse, port, "--symbols", "AAPL")
        with connect(warehouse) as conn:
            # Once the bars are asked for (they come 0.5 s later), the warehouse makes their batch wait, as a busy
            # server would.
            deadline = time.monotonic() + 30
            while not gateway.historical_requests and time.monotonic() < deadline:
                time.sleep(0.01)
            conn.execute("lock table raw.ibkr_bars in access exclusive mode")
            while query(warehouse, waiting_for_the_lock) == [(0,)] and time.monotonic() < deadline:
                time.sleep(0.05)
            assert query(warehouse, waiting_for_the_lock) == [(1,)], "the batch's transaction never reached the lock"
            loader.send_signal(signal.SIGINT)
            time.sleep(1.0)
            assert loader.poll() is None, "the load must wait for the batch it handed over"
        out, err = loader.communicate(timeout=30)
    assert loader.returncode == ExitCode.INTERRUPTED, out + err
    assert err == "error: interrupted; every batch landed so far is complete, nothing partial landed\n"
    assert query(warehouse, "select symbol, status, row_count from raw.load_batches") == [("AAPL", "ok", 2)]
    assert_no_partial_batch(warehouse)


# --- IBKR's outages, per farm ----------------------------------------------------------------------------------------
# IB Gateway reports each data farm's state right after the handshake and whenever it changes (IBKR restarts its farms
# every night). A historical request may need any HMDS farm (which one serves a symbol is not known), a contract lookup
# any sec-def farm, and both IBKR itself (1100/2110). A farm that is down answers nothing: the scripted gateway stays
# silent then, so a request sent during an outage times out and shows up as one more request.


def test_an_hmds_outage_reported_at_start_up_holds_historical_requests_until_its_own_farm_is_ok(warehouse):
    """During IBKR's nightly reset the gateway starts the session with "ushmds broken": the first requests must not go
    out into it (each would time out and burn a try), and contract lookups, which need no HMDS farm, need not wait."""
    restored = notice(2106, HMDS_OK.format("ushmds"))
    looked_up: list[float] = []

    def contracts(req_id, request):
        looked_up.append(time.monotonic())
        return one_stock(req_id, request)

    def answer(req_id: int, nth: int):
        return [bars(req_id, DAYS)] if gateway.sent_at(restored) is not None else []

    gateway = ScriptedGateway(
        start_up_notices=[(2104, MARKET_DATA_OK), (2105, HMDS_BROKEN.format("ushmds")), (2158, SEC_DEF_OK.format("n"))],
        after_start_up=[1.5, restored],
        contracts=contracts,
        answer=answer,
    )
    with gateway.running_in_thread() as port:
        status, out, err = run_ingest(
            warehouse, port, "--symbols", "AAPL", "MSFT", "--timeout", "1", reconnect_timeout_s=30
        )
    assert status == ExitCode.OK, out + err
    assert len(gateway.historical_requests) == 2, err  # one per symbol: none went out during the outage
    assert len(looked_up) == 2 and max(looked_up) < gateway.sent_at(restored)
    assert "HMDS (historical data) farm ushmds down (2105: " in err and "farm ushmds restored (2106: " in err
    assert query(warehouse, "select symbol, status, row_count from raw.load_batches order by symbol") == [
        ("AAPL", "ok", 2),
        ("MSFT", "ok", 2),
    ]


def test_an_ok_for_one_hmds_farm_does_not_end_another_farms_outage(warehouse):
    """euhmds breaks, then ushmds reports OK: euhmds is still down. Requests wait for it, as for any HMDS farm, but no
    longer than IBKR_RECONNECT_TIMEOUT (a load of US stocks may never hear of euhmds again), and the log names it."""
    broken = notice(2105, HMDS_BROKEN.format("euhmds"))
    other_farm_ok = notice(2106, HMDS_OK.format("ushmds"))
    asked: list[float] = []

    def contracts(req_id, request):
        return [broken, *one_stock(req_id, request), 0.3, other_farm_ok]

    def answer(req_id: int, nth: int):
        asked.append(time.monotonic())
        return [bars(req_id, DAYS)]

    gateway = ScriptedGateway(contracts=contracts, answer=answer)
    with gateway.running_in_thread() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL", reconnect_timeout_s=3)
    assert status == ExitCode.OK, out + err
    assert gateway.sent_at(other_farm_ok) is not None
    assert len(asked) == 1 and asked[0] - gateway.sent_at(broken) >= 2.5, err  # held for euhmds's 3 s
    assert "IBKR has not reported HMDS (historical data) farm euhmds restored within 3 s" in err


def test_an_inactive_hmds_farm_holds_nothing_and_ends_that_farms_outage(warehouse):
    """2107/2108 "inactive but should be available upon demand" are no outage: the gateway connects to the farm when a
    request needs it. After "ushmds broken", "ushmds inactive" lets requests go at once."""
    inactive = notice(2107, HMDS_INACTIVE.format("ushmds"))
    asked: list[float] = []

    def contracts(req_id, request):
        return [notice(2105, HMDS_BROKEN.format("ushmds")), *one_stock(req_id, request), 0.3, inactive]

    def answer(req_id: int, nth: int):
        asked.append(time.monotonic())
        return [bars(req_id, DAYS)]

    start_up = [(2104, MARKET_DATA_OK), (2107, HMDS_INACTIVE.format("cashhmds")), (2108, MARKET_DATA_INACTIVE)]
    gateway = ScriptedGateway(start_up_notices=start_up, contracts=contracts, answer=answer)
    with gateway.running_in_thread() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL", reconnect_timeout_s=20)
    assert status == ExitCode.OK, out + err
    assert len(asked) == 1 and asked[0] - gateway.sent_at(inactive) < 5, err  # not the 20 s reconnect timeout
    assert "farm ushmds restored (2107: " in err and "cashhmds" not in err


def test_a_lookup_lost_while_a_sec_def_farm_is_down_is_asked_again_once_it_is_ok(warehouse):
    """A sec-def farm breaks with a contract lookup out: the lookup's timeout is not counted, and it is asked again
    when the farm is back (2158), not while it is still down."""
    broken = notice(2157, SEC_DEF_BROKEN.format("secdefnj"))
    restored = notice(2158, SEC_DEF_OK.format("secdefnj"))
    lookups: list[float] = []

    def contracts(req_id, request):
        lookups.append(time.monotonic())
        if len(lookups) == 1:
            return [broken, 1.5, restored]  # no answer: the farm broke
        return one_stock(req_id, request) if gateway.sent_at(restored) is not None else []

    gateway = ScriptedGateway(contracts=contracts, answer=lambda req_id, nth: [bars(req_id, DAYS)])
    with gateway.running_in_thread() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL", "--timeout", "1", reconnect_timeout_s=30)
    assert status == ExitCode.OK, out + err
    assert len(lookups) == 2 and lookups[1] >= gateway.sent_at(restored), err
    assert "sec-def farm secdefnj down (2157: " in err and "sec-def farm secdefnj restored (2158: " in err
    assert query(warehouse, "select status, row_count from raw.load_batches") == [("ok", 2)]


# IBKR's own connectivity (1100/2110) and the farm lists of its 1102, in the words of real IB Gateway / TWS builds as
# public logs quote them.
LOST = "Connectivity between IB and Trader Workstation has been lost."
LINK_BROKEN = "Connectivity between Trader Workstation and server is broken. It will be restored automatically."
RESTORED = "Connectivity between IB and Trader Workstation has been restored - data maintained."
SOME_FARMS = (
    RESTORED + " The following farms are connected: usfarm; secdefnj. The following farms are not connected: {}."
)
ALL_FARMS = (
    "Connectivity between IBKR and Trader Workstation has been restored - data maintained. All data farms are "
    "connected: {}."
)


@pytest.mark.parametrize(
    "earlier",
    [
        [],
        # Inactive at start-up, then connected by a 1102's list: it is no longer inactive, so the later list's "not
        # connected" is an outage (it was taken for an inactive farm's, and held nothing).
        [
            notice(2107, HMDS_INACTIVE.format("ushmds")),
            notice(1100, LOST),
            notice(1102, ALL_FARMS.format("usfarm; ushmds; secdefnj")),
        ],
    ],
    ids=["connected-before", "inactive-then-listed-connected"],
)
def test_a_farm_that_a_1102_names_as_not_connected_holds_requests_until_its_own_ok(warehouse, earlier):
    """IBKR comes back (1102) but says ushmds is not connected: historical requests wait for ushmds's own 2106, instead
    of going out into its outage and burning tries (the 1102 used to end every wait)."""
    restored = notice(2106, HMDS_OK.format("ushmds"))

    def contracts(req_id, request):
        lost = [*earlier, notice(1100, LOST), *one_stock(req_id, request)]
        return [*lost, 0.3, notice(1102, SOME_FARMS.format("ushmds")), 2.0, restored]

    def answer(req_id: int, nth: int):
        return [bars(req_id, DAYS)] if gateway.sent_at(restored) is not None else []

    gateway = ScriptedGateway(contracts=contracts, answer=answer)
    with gateway.running_in_thread() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL", "--timeout", "1", reconnect_timeout_s=30)
    assert status == ExitCode.OK, out + err
    assert len(gateway.historical_requests) == 1, err  # none went out while ushmds was down
    assert "HMDS (historical data) farm ushmds down (1102: " in err and "farm ushmds restored (2106: " in err


@pytest.mark.parametrize(
    ("outage", "ended_by", "logged"),
    [
        # ushmds broke with IBKR, whose 1102 then lists it among the connected farms; no 2106 follows.
        (
            [notice(2105, HMDS_BROKEN.format("ushmds")), notice(1100, LOST)],
            notice(1102, ALL_FARMS.format("usfarm; ushmds; secdefnj")),
            "farm ushmds restored (1102: ",
        ),
        # 2110 (the gateway lost its link to IBKR's server), then the farms come back (2104) and no 1101/1102: a farm
        # that reports OK is reached through that link.
        (
            [notice(2110, LINK_BROKEN)],
            notice(2104, MARKET_DATA_OK),
            "IBKR's server restored (2104: Market data farm connection is OK:usfarm.nj)",
        ),
    ],
    ids=["1102-lists-it-connected", "farm-ok-after-2110"],
)
def test_an_outage_ended_by_another_notice_than_its_own_ok_lets_requests_go_at_once(
    warehouse, outage, ended_by, logged
):
    """Requests go when the outage ends, not after the reconnect timeout (they used to wait for a notice that never
    came)."""
    asked: list[float] = []

    def contracts(req_id, request):
        return [*outage, *one_stock(req_id, request), 0.3, ended_by]

    def answer(req_id: int, nth: int):
        asked.append(time.monotonic())
        return [bars(req_id, DAYS)]

    gateway = ScriptedGateway(contracts=contracts, answer=answer)
    with gateway.running_in_thread() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL", reconnect_timeout_s=20)
    assert status == ExitCode.OK, out + err
    assert len(asked) == 1 and asked[0] - gateway.sent_at(ended_by) < 5, err  # not the 20 s reconnect timeout
    assert logged in err


def test_an_outage_over_before_a_request_goes_out_does_not_excuse_its_timeout(warehouse):
    """One request open at a time (--max-open 1): the second symbol waits for the first one's slot while ushmds breaks
    and recovers. It then goes out, after the outage, into a gateway that never answers it: its timeout counts as one,
    and is not excused as lost to an outage it never met (the count used to be taken before the wait for the slot)."""
    flap = [notice(2105, HMDS_BROKEN.format("ushmds")), 0.2, notice(2106, HMDS_OK.format("ushmds"))]

    def answer(req_id: int, nth: int):
        return [0.3, *flap, 0.3, bars(req_id, DAYS)] if nth == 1 else []

    gateway = ScriptedGateway(answer=answer)
    with gateway.running_in_thread() as port:
        loader = ingest(warehouse, port, "-v", "--symbols", "AAPL", "MSFT", "--max-open", "1", "--timeout", "1")
        # Its retry would wait 15 s (IBKR's identical-request rule): what matters is how the timeout was taken.
        timed_out = next((line for line in loader.stderr if "request timed out" in line), "")
        loader.send_signal(signal.SIGINT)
        out, err = loader.communicate(timeout=30)
    assert timed_out.rstrip().endswith(": request timed out; retrying"), timed_out + err
    assert len(gateway.historical_requests) == 2 and loader.returncode == ExitCode.INTERRUPTED, out + err


def test_a_321_on_one_symbols_contract_lookup_fails_that_symbol_at_once_and_the_others_land(warehouse):
    """A 321 on a bar request concerns the run's settings, which every symbol shares: the run stops (exit 5). On a
    contract lookup it concerns that symbol's contract (its watchlist line): that symbol fails at once, with the
    code, and the others land (ib_async alone would wait for its timeout, three times)."""

    looked_up: list[float] = []

    def contracts(req_id, request):
        looked_up.append(time.monotonic())
        if request.symbol == "MSFT":
            return [error(req_id, 321, "Error validating request.-'bW' : cause - Invalid exchange")]
        return one_stock(req_id, request)

    gateway = ScriptedGateway(contracts=contracts, answer=lambda req_id, nth: [bars(req_id, DAYS)])
    with gateway.running_in_thread() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL", "MSFT", "--timeout", "10")
        # From the first lookup on: the loader's start (Python, its imports, the warehouse) took 14 s on a busy machine.
        took = time.monotonic() - looked_up[0]
    assert status == ExitCode.FAILED_SYMBOLS, out + err
    assert took < 10, "a 321 must not wait for the request timeout"
    batches = query(warehouse, "select symbol, status, error_code, row_count from raw.load_batches order by symbol")
    assert batches == [("AAPL", "ok", None, 2), ("MSFT", "failed", 321, 0)]
    assert len(gateway.contract_requests) == 2, "a 321 on a lookup is not asked again"
    assert_no_partial_batch(warehouse)


# --- market-data entitlements: a new user's first run against a paper or live login ---------------------------------

ELEVEN = ["AAPL", "MSFT", "NVDA", "AMZN", "META", "GOOGL", "AVGO", "TSLA", "COST", "NFLX", "AMD"]


def test_a_login_without_any_market_data_permission_says_so_once_exits_6_and_a_rerun_asks_again(warehouse):
    """A paper login whose live login shares no subscriptions: IBKR answers every historical request with 162 "No market
    data permissions for <exchange> STK". Each symbol fails at once (no timeout, no retry) and lands its failure with
    the code; the run ends in one line naming the exchanges and what to subscribe, exit 6, and the log says it once per
    exchange, not once per symbol. Once the user has subscribed, the next run asks for every symbol again."""
    subscribed = {"NASDAQ": False, "NYSE": False}

    def exchange_of(symbol: str) -> str:
        return "NYSE" if symbol in ("AVGO", "COST") else "NASDAQ"

    looked_up: list[float] = []

    def contracts(req_id, request):
        looked_up.append(time.monotonic())
        return [
            stock(req_id, request.symbol, con_id_for(request.symbol), exchange_of(request.symbol)),
            contract_end(req_id),
        ]

    def answer(req_id: int, nth: int):
        exchange = exchange_of(gateway.historical_requests[nth - 1][3])
        if subscribed[exchange]:
            return [bars(req_id, DAYS)]
        return [error(req_id, 162, protocol.text_no_permissions("ISLAND" if exchange == "NASDAQ" else exchange))]

    gateway = ScriptedGateway(contracts=contracts, answer=answer)
    with gateway.running_in_thread() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", *ELEVEN, "--timeout", "20")
        took = time.monotonic() - looked_up[0]  # from the first lookup on, not counting the loader's start
        assert status == ExitCode.MARKET_DATA_REFUSED, out + err
        assert took < 20, "a refusal is no timeout"
        assert len(gateway.historical_requests) == len(ELEVEN), "a refusal is not asked again"
        last = err.strip().splitlines()[-1]
        assert last.startswith("error: IBKR refused market data for every symbol that failed: ")
        assert "no market-data permissions for ISLAND STK (error 162; 9 symbols: " in last
        assert "no market-data permissions for NYSE STK (error 162; 2 symbols: AVGO, COST)" in last
        assert "Market Data Subscriptions" in last and "Delayed data does not help" in last
        assert err.count("IBKR refused") == 3  # once per exchange in the log, once in the last line
        assert "market data refused: no market-data permissions for NYSE STK (error 162; 2 symbols: AVGO, COST)" in out
        assert out.count("what to do: subscribe to it in Client Portal") == 1
        assert "Traceback" not in err
        failures = query(warehouse, "select distinct status, error_code, row_count from raw.load_batches")
        assert failures == [("failed", 162, 0)]

        subscribed["NASDAQ"] = True  # the user subscribes to NASDAQ only: those land, NYSE's still fail (exit 1)
        status, out, err = run_ingest(warehouse, port, "--symbols", *ELEVEN)
        assert status == ExitCode.FAILED_SYMBOLS, out + err
        assert "market data refused: no market-data permissions for NYSE STK (error 162; 2 symbols: AVGO, COST)" in out

        subscribed["NYSE"] = True
        asked = len(gateway.historical_requests)
        status, out, err = run_ingest(warehouse, port, "--symbols", *ELEVEN)
        assert status == ExitCode.OK, out + err
        assert len(gateway.historical_requests) == asked + 2  # the two still missing, and only they
    landed = query(warehouse, "select count(distinct symbol) from raw.load_batches where status = 'ok'")
    assert landed == [(len(ELEVEN),)]
    assert_no_partial_batch(warehouse)


@pytest.mark.parametrize(
    "code, text", [(10197, protocol.TEXT_COMPETING_SESSION), (162, protocol.TEXT_OTHER_IP)], ids=["10197", "other-ip"]
)
def test_a_competing_live_session_stops_the_run_at_the_first_refusal_with_exit_6(warehouse, code, text):
    """The same username logged in elsewhere (TWS on another machine, Client Portal, the mobile app): IBKR refuses
    every request alike until that session ends. The run stops at the first refusal instead of failing every symbol
    one by one, lands that failure with its code, says what to do in one line, and a re-run loads everything."""
    competing = [True]

    def answer(req_id: int, nth: int):
        return [0.05, error(req_id, code, text)] if competing[0] else [bars(req_id, DAYS)]

    gateway = ScriptedGateway(answer=answer)
    with gateway.running_in_thread() as port:
        # One request open at a time: the refusal is heard before the next symbol's request would go out.
        status, out, err = run_ingest(warehouse, port, "--symbols", *ELEVEN, "--max-open", "1")
        assert status == ExitCode.MARKET_DATA_REFUSED, out + err
        assert len(gateway.historical_requests) == 1
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"error: IBKR refused market data to this login (error {code} for ")
        assert "log that session out" in last and "Traceback" not in err
        assert query(warehouse, "select status, error_code, error_message from raw.load_batches") == [
            ("failed", code, text)
        ]
        assert "not attempted" in out

        competing[0] = False
        status, out, err = run_ingest(warehouse, port, "--symbols", *ELEVEN)
        assert status == ExitCode.OK, out + err
    landed = query(warehouse, "select count(distinct symbol) from raw.load_batches where status = 'ok'")
    assert landed == [(len(ELEVEN),)]
    assert_no_partial_batch(warehouse)
