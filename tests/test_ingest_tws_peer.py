"""``python -m ingest`` against a TWS peer written independently of our simulator (tests/tws_peer_independent.py).

What the other peer tests (test_ingest_gateway_variants.py, test_ingest_ibkr_protocol_variants.py) do not cover:
TCP delivery split at awkward points (a byte per segment, a length prefix apart from its body, an answer in one
segment), start-up messages in another order (farm notices before and between the managed accounts and the next valid
id, the current time, a 2119 and a 2100), server versions inside the client's range other than 157 and 178 (163,
165, 166), contract details with empty optional fields, daily bars with volumes of 0 and -1 and -1 counts and WAPs,
several contract matches, and 162 "HMDS server disconnect" and 1100-1102 under a request's id.

The second half takes the behaviours of a real gateway that /work/shared/reference/ib-tws-protocol.md states, one by
one, to this peer: each answer IBKR ends a symbol's request with (162 no data, 200, 162 "No data of type", zero bars,
321), a connection that ends mid-answer, 326 and a gateway not logged in, notices while a request is out, intraday bar
times in each format and zone servers write, bars not yet final, listings in other currencies, and IBKR's own checks
of each request (its pacing rules and what a request may look like) on the peer's clock (``referee``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from tws_peer_independent import (
    CLOSE,
    CURRENT_TIME,
    HMDS,
    MANAGED_ACCOUNTS,
    NEXT_VALID_ID,
    Cut,
    TwsPeer,
    contract_end,
    daily_bars,
    error,
    notice,
    stock,
)

from ingest.exit_codes import ExitCode
from ingest.ibkr.config import IbkrSettings
from ingest.ibkr.fetcher import IbkrSession
from ingest.ibkr.loader import LoadOptions, load
from ingest.ibkr.pacing import PacingLimiter, PacingPolicy
from ingest.ibkr.session_types import ContractRef, Outcome
from ingest.raw_tables import BarSettings
from ingest.watchlist import WatchlistEntry
from market_calendar import EXCHANGE_TZ as NY
from warehouse_db import connect
from warehouse_db.settings import REPO_ROOT, ConnectionSettings

TWO_DAYS = [
    ("20240104", "185.0", "186.5", "183.4", "184.2", "5821", "184.9", "3100"),
    ("20240105", "184.2", "185.9", "182.7", "183.1", "4410", "183.6", "2870"),
]


# ``python -m ingest`` with the loader's pacing policy as derived from the bar size, except that identical requests may
# follow each other at once: a retry here would otherwise wait out IBKR's 15 s rule (the limiter's own test keeps that:
# test_ingest_ibkr_units). The CLI has no flag for it, so this is LoadOptions(pacing=...) from outside.
QUICK_RETRIES = """
import dataclasses, runpy
from ingest.ibkr.options import LoadOptions
derived = LoadOptions.pacing_policy
LoadOptions.pacing_policy = lambda self: dataclasses.replace(derived(self), identical_window_s=0.01, margin_s=0.0)
runpy.run_module("ingest", run_name="__main__", alter_sys=True)  # as -m does: sys.argv[0] is ingest/__main__.py
"""


def run_ingest(
    db: ConnectionSettings, port: int, *args: str, quick_retries: bool = False, connect_timeout_s: float = 5
) -> tuple[int, str, str]:
    """``python -m ingest`` against the peer; ``quick_retries``: see :data:`QUICK_RETRIES`."""
    env = {
        **os.environ,
        **db.libpq_env(),
        "DATABASE_URL": "",
        "IBKR_HOST": "127.0.0.1",
        "IBKR_PORT": str(port),
        "IBKR_CLIENT_ID": "23",
        "IBKR_CONNECT_TIMEOUT": str(connect_timeout_s),
        "IBKR_RECONNECT_TIMEOUT": "2",
    }
    done = subprocess.run(
        [
            sys.executable,
            *(["-c", QUICK_RETRIES] if quick_retries else ["-m", "ingest"]),
            "--no-progress",
            "--months",
            "1",
            *args,
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    return done.returncode, done.stdout, done.stderr


def query(db: ConnectionSettings, sql: str) -> list[tuple]:
    with connect(db) as conn:
        return conn.execute(sql).fetchall()


def landed(db: ConnectionSettings) -> list[tuple]:
    return query(
        db,
        "select symbol, session_date::text, open, high, low, close, volume, wap, bar_count from raw.ibkr_bars "
        "order by symbol, bar_time",
    )


NASDAQ_WATCHLIST = "symbol,primary_exchange\nAAPL,NASDAQ\nMSFT,NASDAQ\n"


def start_up_in_another_order() -> list[list[object]]:
    """A gateway that reports farms before and between the two messages the client waits for, with the current time
    and an account-data unsubscribe among them, and two managed accounts."""
    return [
        notice(2104, "Market data farm connection is OK:usfarm"),
        notice(2119, "Market data farm is connecting:usfarm.nj"),
        [NEXT_VALID_ID, 1, 7],
        [CURRENT_TIME, 1, 1704465000],
        notice(2106, "HMDS data farm connection is OK:ushmds"),
        [MANAGED_ACCOUNTS, 1, "DU111111,DU222222,"],
        notice(2158, "Sec-def data farm connection is OK:secdefnj"),
        notice(2100, "API client has been unsubscribed from account data."),
    ]


@pytest.mark.parametrize(
    ("delivery", "server_version"),
    # 163: contract details with a version field and one size increment; 165: the new contract details shape, but
    # errors still without advancedOrderRejectJson; 166: errors with it. (157 and 178: test_ingest_gateway_variants.)
    [("bytes", 163), ("split", 165), ("coalesced", 166)],
)
def test_any_tcp_split_start_up_order_and_server_version_lands_the_bars_as_sent(
    warehouse, tmp_path, delivery, server_version
):
    """One byte per segment, each length prefix apart from its body, or an answer's messages in one segment: the
    same rows land. Contract details leave every optional field empty (the primary exchange too: the watchlist's
    lands); a notice under each request's id (10167) and farm notices come before each answer; the bars carry a
    volume of 0 and -1, -1 counts and WAPs, and a fractional volume, and land as sent."""
    rows = [
        ("20240104", "185.0", "186.5", "183.4", "184.2", "0", "-1", "-1"),
        ("20240105", "184.2", "185.9", "182.7", "183.1", "-1", "-1", "0"),
        ("20240108", "183.9", "185.6", "182.0", "185.5", "4410.5", "184.1", "2870"),
    ]

    def contracts(req_id, symbol, primary):
        return [
            stock(req_id, symbol, {"AAPL": 265598, "MSFT": 272093}[symbol], "", time_zone="", min_tick=""),
            contract_end(req_id),
        ]

    def history(req_id, symbol, nth):
        delayed = error(req_id, 10167, "Requested market data is not subscribed. Displaying delayed market data.")
        return [delayed, 0.05, daily_bars(req_id, rows)]

    peer = TwsPeer(
        server_version=server_version,
        delivery=delivery,
        start_up=start_up_in_another_order,
        between=[notice(2108, "Market data farm connection is inactive but should be available upon demand.usfarm")],
        contracts=contracts,
        history=history,
    )
    watchlist = tmp_path / "watchlist.csv"
    watchlist.write_text(NASDAQ_WATCHLIST)
    with peer.listening() as port:
        status, out, err = run_ingest(warehouse, port, "--watchlist", str(watchlist))
    assert (status, err) == (ExitCode.OK, ""), out + err
    expected = [
        ("2024-01-04", 185.0, 186.5, 183.4, 184.2, 0.0, -1.0, -1),
        ("2024-01-05", 184.2, 185.9, 182.7, 183.1, -1.0, -1.0, 0),
        ("2024-01-08", 183.9, 185.6, 182.0, 185.5, 4410.5, 184.1, 2870),
    ]
    assert landed(warehouse) == [(symbol, *row) for symbol in ("AAPL", "MSFT") for row in expected]
    assert query(warehouse, "select distinct symbol, con_id, exchange, currency from raw.ibkr_bars order by 1") == [
        ("AAPL", 265598, "NASDAQ", "USD"),
        ("MSFT", 272093, "NASDAQ", "USD"),
    ]


def batches(db: ConnectionSettings) -> list[tuple]:
    return query(db, "select symbol, status, row_count, error_code, error_message from raw.load_batches order by 1")


LISTINGS = "conId 11 on NYSE, conId 12 on ARCA, conId 13 on NYSE"


@pytest.mark.parametrize(
    ("watchlist", "args", "failure"),
    [
        # Not in the watchlist: no primary exchange to choose by.
        (
            "MSFT,NASDAQ",
            ("--symbols", "AAPL"),
            f"ambiguous: 3 contracts match AAPL ({LISTINGS}); add AAPL to the watchlist with its primary_exchange",
        ),
        # The watchlist's primary exchange is none of theirs: "set its primary_exchange" was no help, it was set.
        (
            "AAPL,NASDAQ",
            (),
            f"ambiguous: 3 contracts match AAPL ({LISTINGS}), none on NASDAQ, its primary_exchange in the watchlist: "
            "correct it there",
        ),
        (
            "AAPL,NYSE",
            (),
            "ambiguous: 2 contracts on NYSE match AAPL (conId 11 on NYSE, conId 13 on NYSE); its primary_exchange in "
            "the watchlist cannot tell them apart",
        ),
        ("AAPL,ARCA", (), None),  # the one listing on the watchlist's exchange is taken
    ],
)
def test_several_contract_matches_name_each_and_what_the_watchlist_can_do(
    warehouse, tmp_path, watchlist, args, failure
):
    """A server that does not narrow the lookup by the primary exchange asked for answers with every listing."""

    def contracts(req_id, symbol, primary):
        listings = [
            stock(req_id, symbol, 11, "NYSE"),
            stock(req_id, symbol, 12, "ARCA"),
            stock(req_id, symbol, 13, "NYSE"),
        ]
        return [*listings, contract_end(req_id)]

    path = tmp_path / "watchlist.csv"
    path.write_text(f"symbol,primary_exchange\n{watchlist}\n")
    peer = TwsPeer(contracts=contracts, history=lambda req_id, symbol, nth: [daily_bars(req_id, TWO_DAYS)])
    with peer.listening() as port:
        status, out, err = run_ingest(warehouse, port, "--watchlist", str(path), *args)
    if failure is None:
        assert (status, err) == (ExitCode.OK, ""), out + err
        assert query(warehouse, "select distinct con_id, exchange from raw.ibkr_bars") == [(12, "ARCA")]
        return
    assert status == ExitCode.FAILED_SYMBOLS, out + err
    assert f"AAPL failed: {failure}\n" in err
    assert batches(warehouse) == [("AAPL", "failed", 0, None, failure)]
    assert peer.history_requests() == []


def test_a_request_lost_to_an_hmds_server_disconnect_is_asked_again(warehouse):
    """IB Gateway ends a request with 162 "HMDS server disconnect occurred. Attempting reconnection..." when its link
    to the historical data server drops: the request was lost, not refused, and the symbol used to fail at once."""
    lost = HMDS + "HMDS server disconnect occurred.  Attempting reconnection..."

    def history(req_id, symbol, nth):
        return [error(req_id, 162, lost)] if symbol == "AAPL" and nth == 1 else [daily_bars(req_id, TWO_DAYS)]

    peer = TwsPeer(history=history)
    with peer.listening() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL", "MSFT", quick_retries=True)
    assert (status, err) == (ExitCode.OK, ""), out + err
    assert batches(warehouse) == [("AAPL", "ok", 2, None, None), ("MSFT", "ok", 2, None, None)]
    assert [m[3] for m in peer.history_requests()].count("AAPL") == 2


AAPL = ContractRef("AAPL", 265598, "NASDAQ")


def in_a_session(
    peer: TwsPeer, action: Callable[[IbkrSession], Awaitable[Any]], *, request_timeout_s: float = 5
) -> Any:
    """What ``action`` returns, run in the loader's own gateway session against the peer; identical requests may
    follow each other at once (the 15 s rule is the limiter's own test)."""

    async def run(port: int) -> Any:
        settings = IbkrSettings(port=port, client_id=5, connect_timeout_s=5, request_timeout_s=request_timeout_s)
        limiter = PacingLimiter(PacingPolicy(identical_window_s=0.01, margin_s=0.0))
        async with IbkrSession(settings, limiter) as session:
            return await action(session)

    with peer.listening() as port:
        return asyncio.run(run(port))


async def fetch_daily(session: IbkrSession) -> Outcome:
    return await session.fetch(
        AAPL, end="", duration="5 D", bar_size="1 day", what_to_show="TRADES", use_rth=True, intraday=False
    )


@pytest.mark.integration  # a socket and the real client library
def test_an_hmds_server_that_stays_disconnected_fails_the_request_naming_the_disconnect_not_a_timeout():
    """The session itself: three tries, each ended by the gateway, fail the request naming the disconnect."""
    lost = HMDS + "HMDS server disconnect occurred.  Attempting reconnection..."
    peer = TwsPeer(history=lambda req_id, symbol, nth: [error(req_id, 162, lost)])

    started = time.monotonic()
    outcome = in_a_session(peer, fetch_daily)
    assert (outcome.status, outcome.error_code, outcome.attempts) == ("failed", 162, 3)
    assert outcome.error_message == f"the gateway ended the request without an answer (3 tries; the last: {lost})"
    assert time.monotonic() - started < 4  # ended by the gateway each time, not by the 5 s timeout


LOST = "Connectivity between IB and Trader Workstation has been lost."
RESTORED = "Connectivity between IB and Trader Workstation has been restored - data maintained."


def test_connectivity_lost_under_a_requests_id_is_no_empty_range(warehouse):
    """A server that sends IBKR's connectivity notices under the id of the request they cut short (not -1, as IB
    Gateway does): ib_async ends the request empty on a 1100, and the loader took that for "no bars in the range",
    landed the symbol as no_data, and the next run counted it as current."""

    def history(req_id, symbol, nth):
        if symbol == "AAPL" and nth == 1:
            return [error(req_id, 1100, LOST), 0.5, notice(1102, RESTORED)]
        return [daily_bars(req_id, TWO_DAYS)]

    peer = TwsPeer(history=history)
    with peer.listening() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL", "MSFT", quick_retries=True)
    assert status == ExitCode.OK, out + err
    assert batches(warehouse) == [("AAPL", "ok", 2, None, None), ("MSFT", "ok", 2, None, None)]
    assert [m[3] for m in peer.history_requests()].count("AAPL") == 2


@pytest.mark.integration  # a socket and the real client library
@pytest.mark.parametrize("code, text", [(1101, RESTORED.replace("maintained", "lost")), (1102, RESTORED)])
def test_connectivity_restored_under_a_requests_id_ends_it_unanswered_and_it_is_asked_again(code, text):
    def history(req_id, symbol, nth):
        return [error(req_id, code, text)] if nth == 1 else [daily_bars(req_id, TWO_DAYS)]

    outcome = in_a_session(TwsPeer(history=history), fetch_daily)
    assert (outcome.status, len(outcome.bars), outcome.attempts) == ("ok", 2, 2)


@pytest.mark.integration  # a socket and the real client library
def test_a_contract_lookup_cut_short_by_a_connectivity_notice_under_its_id_is_asked_again():
    """It used to fail its symbol: "no contract found (no error code)"."""
    asked = []

    def contracts(req_id, symbol, primary):
        asked.append(req_id)
        if len(asked) == 1:
            return [error(req_id, 1100, LOST), 0.2, notice(1102, RESTORED)]
        return [stock(req_id, symbol, 265598), contract_end(req_id)]

    outcome = in_a_session(TwsPeer(contracts=contracts), lambda session: session.qualify("AAPL", "NASDAQ"))
    assert (outcome.contract, len(asked)) == (AAPL, 2)


# --- The reference's behaviours of a real gateway (/work/shared/reference/ib-tws-protocol.md), each against this peer


def watchlist_of(tmp_path, *symbols: str) -> str:
    path = tmp_path / "watchlist.csv"
    path.write_text("symbol,primary_exchange\n" + "".join(f"{s},NASDAQ\n" for s in symbols))
    return str(path)


def test_each_answer_ibkr_ends_a_symbols_request_with_gets_its_own_status_and_the_others_land(warehouse, tmp_path):
    """162 "HMDS query returned no data" is an empty range (no_data, with the code); 200 on the lookup and 162 "No
    data of type ..." fail their symbol with IBKR's code and text; zero bars answered in time are no data; the others,
    a class share spelled with a space among them, land; each failure names its symbol; exit 1."""
    eod_chart = HMDS + "No data of type EODChart is available for the exchange 'BEST' and the security type 'Stock'"
    answers = {
        "AAPL": lambda req_id: [error(req_id, 162, HMDS + "HMDS query returned no data: AAPL@SMART Trades")],
        "IBM": lambda req_id: [error(req_id, 162, eod_chart)],
        "ORCL": lambda req_id: [daily_bars(req_id, [])],
        "NVDA": lambda req_id: [daily_bars(req_id, TWO_DAYS)],
        "BRK B": lambda req_id: [daily_bars(req_id, TWO_DAYS)],
    }

    def contracts(req_id, symbol, primary):
        if symbol == "MSFT":
            return [error(req_id, 200, "No security definition has been found for the request")]
        return [stock(req_id, symbol, 1000 + sum(map(ord, symbol))), contract_end(req_id)]

    peer = TwsPeer(contracts=contracts, history=lambda req_id, symbol, nth: answers[symbol](req_id), referee=True)
    watchlist = watchlist_of(tmp_path, "AAPL", "MSFT", "IBM", "ORCL", "NVDA", "BRK B")
    with peer.listening() as port:
        status, out, err = run_ingest(warehouse, port, "--watchlist", watchlist)
    assert status == ExitCode.FAILED_SYMBOLS, out + err
    assert batches(warehouse) == [
        ("AAPL", "no_data", 0, 162, HMDS + "HMDS query returned no data: AAPL@SMART Trades"),
        ("BRK B", "ok", 2, None, None),
        ("IBM", "failed", 0, 162, eod_chart),
        ("MSFT", "failed", 0, 200, "No security definition has been found for the request"),
        ("NVDA", "ok", 2, None, None),
        ("ORCL", "no_data", 0, None, "the gateway answered with no bars"),
    ]
    assert "MSFT failed: " in err and "IBM failed: " in err and "Traceback" not in err
    assert sorted(m[3] for m in peer.history_requests()) == ["AAPL", "BRK B", "IBM", "NVDA", "ORCL"]  # each once
    assert peer.refused == []
    # The API start (71) and the positions download ib_async always asks for (61), then lookups (9) and bar requests
    # (20) only: no account, order or execution download that a gateway could hold the start-up with.
    assert [m[0] for m in peer.received[:2]] == ["71", "61"] and {m[0] for m in peer.received} == {
        "71",
        "61",
        "9",
        "20",
    }


def test_a_321_on_a_bar_request_stops_the_run_with_exit_5_naming_the_symbol_and_ibkrs_text(warehouse):
    """IBKR's 321 "Error validating request" is about the request's settings, which every symbol shares."""
    text = "Error validating request.-'bP' : cause - Historical data query end date/time string is invalid."
    peer = TwsPeer(history=lambda req_id, symbol, nth: [error(req_id, 321, text)])
    started = time.monotonic()  # ib_async takes a 321 for a warning and would wait for the request's timeout
    with peer.listening() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL", "--max-open", "1")
    assert status == ExitCode.INVALID_REQUEST and time.monotonic() - started < 30, out + err  # not the 60 s timeout
    assert err.splitlines()[-1] == f"error: IBKR rejected the request for AAPL as invalid (error 321): {text}", err
    assert "Traceback" not in err
    assert batches(warehouse) == [("AAPL", "failed", 0, 321, text)]
    assert len(peer.history_requests()) == 1  # not asked again


@pytest.mark.parametrize(
    "keep",
    # Of the bars' frame: half of it (in the middle of the bars), 2 bytes (within the length prefix), 4 (the prefix
    # and no field), none (between two messages: after a notice, before the answer).
    [None, 2, 4, 0],
    ids=["mid-bars", "mid-length", "after-length", "between-messages"],
)
def test_a_connection_that_ends_mid_answer_is_reconnected_and_the_request_asked_again(warehouse, keep):
    """The reference: a socket dropped mid-reply makes the requests in flight raise ConnectionError; the loader
    reconnects and asks again, and what the first answer had sent before the cut never lands."""

    def history(req_id, symbol, nth):
        if symbol == "AAPL" and nth == 1:
            return [
                notice(2104, "Market data farm connection is OK:usfarm"),
                Cut(daily_bars(req_id, TWO_DAYS), keep),
            ]
        return [daily_bars(req_id, TWO_DAYS)]

    peer = TwsPeer(history=history, delivery="split")
    with peer.listening() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL", "MSFT", quick_retries=True)
    assert status == ExitCode.OK and "reconnects 1" in out, out + err
    assert [line.split(": ", 1)[1] for line in err.splitlines()] == [
        f"connection to 127.0.0.1:{port} (client id 23) lost; requests will reconnect and resume",
        f"reconnected to 127.0.0.1:{port} (client id 23)",
    ]
    assert batches(warehouse) == [("AAPL", "ok", 2, None, None), ("MSFT", "ok", 2, None, None)]
    assert [m[3] for m in peer.history_requests()].count("AAPL") == 2
    assert sum(1 for m in peer.received if m[0] == "71") == 2  # a second API session


def test_a_client_id_the_gateway_still_holds_when_reconnecting_is_tried_again_until_it_is_free(warehouse):
    """After a drop, a gateway may still hold the old connection's session for a moment and answer the reconnect with
    326 "client id is already in use" (and close): that reconnect is tried again, not taken for the run's end."""
    sessions = []

    def start_up():
        sessions.append(len(sessions) + 1)
        if len(sessions) == 2:
            return [
                notice(326, "Unable to connect as the client id is already in use. Retry with a unique client id."),
                CLOSE,
            ]
        return [[MANAGED_ACCOUNTS, 1, "DU111111"], [NEXT_VALID_ID, 1, 1]]

    def history(req_id, symbol, nth):
        return [Cut(daily_bars(req_id, TWO_DAYS))] if symbol == "AAPL" and nth == 1 else [daily_bars(req_id, TWO_DAYS)]

    peer = TwsPeer(start_up=start_up, history=history)
    with peer.listening() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL", "MSFT", quick_retries=True)
    assert status == ExitCode.OK and "reconnects 1" in out, out + err
    assert "client id 23 is already in use" in err and "Traceback" not in err
    assert batches(warehouse) == [("AAPL", "ok", 2, None, None), ("MSFT", "ok", 2, None, None)]
    assert sessions == [1, 2, 3]


@pytest.mark.integration  # a socket and the real client library
def test_a_contract_lookup_cut_mid_answer_is_asked_again_after_the_reconnect():
    """The connection ends after the contract's details and within the end of their list."""
    asked = []

    def contracts(req_id, symbol, primary):
        asked.append(req_id)
        end = Cut(contract_end(req_id)) if len(asked) == 1 else contract_end(req_id)
        return [stock(req_id, symbol, 265598), end]

    outcome = in_a_session(TwsPeer(contracts=contracts), lambda session: session.qualify("AAPL", "NASDAQ"))
    assert (outcome.contract, len(asked)) == (AAPL, 2)


@pytest.mark.integration  # a socket and the real client library
def test_a_request_unanswered_within_the_timeout_is_cancelled_and_asked_again():
    """The reference: the client sends cancelHistoricalData (25) when its own timeout fires, and the gateway answers
    the cancel with 162 "query cancelled": a timeout, asked again, not a failure or an empty range."""
    peer = TwsPeer(history=lambda req_id, symbol, nth: [] if nth == 1 else [daily_bars(req_id, TWO_DAYS)])
    outcome = in_a_session(peer, fetch_daily, request_timeout_s=1)
    assert (outcome.status, len(outcome.bars), outcome.attempts) == ("ok", 2, 2)
    first, _ = (int(m[1]) for m in peer.history_requests())
    assert [int(m[2]) for m in peer.received if m[0] == "25"] == [first]  # that request cancelled, the retry not


@pytest.mark.integration  # a socket and the real client library
def test_connectivity_and_farm_notices_while_a_request_is_out_do_not_end_it():
    """The reference: 1100 then 1102 (IB Gateway sends them under id -1) both arrive while the request is out, and
    the request still completes; so it does across an HMDS farm's 2105 and 2106."""

    def history(req_id, symbol, nth):
        return [
            notice(1100, LOST),
            0.2,
            notice(2105, "HMDS data farm connection is broken:ushmds"),
            0.2,
            notice(2106, "HMDS data farm connection is OK:ushmds"),
            notice(1102, RESTORED),
            daily_bars(req_id, TWO_DAYS),
        ]

    outcome = in_a_session(TwsPeer(history=history), fetch_daily)
    assert (outcome.status, len(outcome.bars), outcome.attempts) == ("ok", 2, 1)


def test_a_gateway_restarting_behind_a_proxy_is_reconnected_once_it_is_back(warehouse):
    """IB Gateway's daily restart drops the connection mid-answer; until it has logged in again, a proxy in front of
    it (socat, a container's port) accepts each connection and closes it at once. The reconnect is tried again until
    the gateway answers, within IBKR_RECONNECT_TIMEOUT, and the request is asked again."""

    def history(req_id, symbol, nth):
        return [Cut(daily_bars(req_id, TWO_DAYS))] if symbol == "AAPL" and nth == 1 else [daily_bars(req_id, TWO_DAYS)]

    peer = TwsPeer(history=history, accepts=lambda nth: nth not in (2, 3))
    with peer.listening() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL", "MSFT", quick_retries=True)
    assert status == ExitCode.OK and "reconnects 1" in out, out + err
    assert err.count("reconnect failed (cannot connect to IB Gateway/TWS") == 2 and "Traceback" not in err, err
    assert batches(warehouse) == [("AAPL", "ok", 2, None, None), ("MSFT", "ok", 2, None, None)]
    assert peer.connections == 4


@pytest.mark.parametrize(
    ("start_up", "says"),
    [
        # IB Gateway answers a second client with the same id with 326 and closes the connection.
        (
            lambda: [
                notice(326, "Unable to connect as the client id is already in use. Retry with a unique client id."),
                CLOSE,
            ],
            "client id 23 is already in use: set another IBKR_CLIENT_ID (or give another --client-id",
        ),
        # A gateway not logged in yet: it answers the handshake and reports farms, but no account and no order id.
        (
            lambda: [
                notice(2104, "Market data farm connection is OK:usfarm"),
                notice(2158, "Sec-def data farm connection is OK:secdefnj"),
            ],
            "answered the API handshake (server version 178) but sent no managed account within 1 s",
        ),
        ((lambda: [[MANAGED_ACCOUNTS, 1, "DU111111"]]), "sent no next valid order id within 1 s"),
    ],
    ids=["client-id-in-use", "not-logged-in", "no-next-valid-id"],
)
def test_a_start_up_that_never_completes_is_one_line_naming_why_and_exit_3(warehouse, start_up, says):
    peer = TwsPeer(start_up=start_up)
    started = time.monotonic()
    with peer.listening() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL", connect_timeout_s=1)
    assert status == ExitCode.GATEWAY and err.count("\n") == 1, out + err
    assert says in err
    assert time.monotonic() - started < 15
    assert peer.history_requests() == [] and query(warehouse, "select count(*) from raw.load_batches") == [(0,)]


def intraday_bars(req_id: int, times: list[str]) -> list[object]:
    return daily_bars(req_id, [(t, "10.0", "11.0", "9.0", "10.5", "100", "10.2", "5") for t in times])


# One hour bars of 2024-01-04 09:30 and 2024-01-05 10:30 and 11:30 New York time, as each server writes them: IBKR
# with the formatDate=2 the loader asks for (epoch seconds), and servers that write local times anyway, in their login
# time zone (US/Eastern, Europe/London, Asia/Tokyo: the last bar there is dated Saturday) or without a zone.
WRITTEN = {
    "AAPL": ["1704378600", "1704468600", "1704472200"],
    "MSFT": ["20240104 09:30:00 US/Eastern", "20240105 10:30:00 US/Eastern", "20240105 11:30:00 US/Eastern"],
    "IBM": ["20240104 14:30:00 Europe/London", "20240105 15:30:00 Europe/London", "20240105 16:30:00 Europe/London"],
    "ORCL": ["20240104 23:30:00 Asia/Tokyo", "20240106 00:30:00 Asia/Tokyo", "20240106 01:30:00 Asia/Tokyo"],
    "NVDA": ["20240104  09:30:00", "20240105  10:30:00", "20240105  11:30:00"],
}


def test_intraday_bars_in_any_time_format_land_at_their_instant_on_their_new_york_session(warehouse):
    """Loaded at 12:00 New York time on 2024-01-05: the 11:30 bar is still forming and does not land. Every request
    asks for epoch seconds (formatDate=2) and passes IBKR's own checks (the referee)."""
    peer = TwsPeer(history=lambda req_id, symbol, nth: [intraday_bars(req_id, WRITTEN[symbol])], referee=True)
    now = datetime(2024, 1, 5, 12, 0, tzinfo=NY)
    with peer.listening() as port:
        options = LoadOptions(
            entries=[WatchlistEntry(s, "NASDAQ") for s in WRITTEN], bar=BarSettings("1 hour"), months=1, now=now
        )
        summary = load(warehouse, IbkrSettings(port=port, client_id=17), options)
    assert summary.count("landed") == len(WRITTEN) and summary.unfinished == len(WRITTEN) and summary.ahead == 0
    landed_times = query(
        warehouse,
        "select symbol, bar_time at time zone 'UTC', session_date from raw.ibkr_bars order by symbol, bar_time",
    )
    assert landed_times == [
        (symbol, when, day)
        for symbol in sorted(WRITTEN)
        for when, day in [
            (datetime(2024, 1, 4, 14, 30), date(2024, 1, 4)),
            (datetime(2024, 1, 5, 15, 30), date(2024, 1, 5)),
        ]
    ]
    requests = peer.history_requests()
    # endDateTime written as the reference has it (yyyymmdd hh:mm:ss UTC; the run's moment is not the gateway's "now"),
    # duration, bar size, formatDate (2: epoch seconds)
    assert {tuple(m[15:18]) + (m[20],) for m in requests} == {
        ("20240105 17:00:00 UTC", "1 hour", "30 D", "2"),
        ("20231206 17:00:00 UTC", "1 hour", "2 D", "2"),  # back to the window's start, 5 December, only
    }
    assert peer.refused == []


def test_a_daily_bar_of_the_session_in_progress_and_one_dated_ahead_land_only_once_final(warehouse):
    """During the session IBKR answers with today's bar so far; a server ahead of the run's clock may send the next
    session's. Neither lands; after the close a new load asks again and today's lands."""
    written = [("20240104", *TWO_DAYS[0][1:]), ("20240105", *TWO_DAYS[1][1:]), ("20240108", *TWO_DAYS[1][1:])]
    peer = TwsPeer(history=lambda req_id, symbol, nth: [daily_bars(req_id, written)], referee=True)
    close = datetime(2024, 1, 5, 16, 0, tzinfo=NY)
    with peer.listening() as port:
        for now, unfinished in ((close - timedelta(minutes=1), 1), (close + timedelta(seconds=20), 0)):
            options = LoadOptions(entries=[WatchlistEntry("AAPL", "NASDAQ")], months=1, now=now)
            summary = load(warehouse, IbkrSettings(port=port, client_id=17), options)
            assert summary.count("landed") == 1 and (summary.unfinished, summary.ahead) == (unfinished, 1)
    assert query(warehouse, "select session_date::text, count(*) from raw.ibkr_bars group by 1 order by 1") == [
        ("2024-01-04", 2),  # landed by both loads (the second's overlap): dbt keeps the latest
        ("2024-01-05", 1),
    ]
    assert [m[20] for m in peer.history_requests()] == ["1", "1"]  # formatDate 1: dates as yyyymmdd
    assert peer.refused == []


def test_a_paged_intraday_load_keeps_to_ibkrs_pacing_rules_by_the_servers_clock(warehouse):
    """A month of 2-minute bars is some fifteen 2-day pages per symbol, asked for as fast as IBKR's rules allow: by
    the peer's own clock, never an identical request within 15 s nor 6 for one contract within 2 s (162 otherwise),
    and every page asked once."""
    peer = TwsPeer(history=lambda req_id, symbol, nth: [intraday_bars(req_id, ["1704378600"])], referee=True)
    with peer.listening() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "AAPL", "MSFT", "--bar-size", "2 mins")
    assert (status, err) == (ExitCode.OK, ""), out + err
    assert peer.refused == []
    pages = [m[3] for m in peer.history_requests()]
    assert pages.count("AAPL") == pages.count("MSFT") >= 12
    assert len({tuple(m[2:20]) for m in peer.history_requests()}) == len(pages)  # no page asked twice


@pytest.mark.parametrize(
    ("listings", "failure"),
    [
        # A server that does not narrow the lookup by the currency asked for (USD), and knows only the Canadian
        # listing of the ticker: another company's bars, in CAD, used to land as the watchlist's NYSE stock.
        (
            [(4711, "TSE", "CAD")],
            "no USD listing matches ABC: the gateway answered with conId 4711 on TSE in CAD; the loader loads US "
            "listings in USD: check the symbol",
        ),
        (
            [(4711, "TSE", "CAD"), (4713, "LSE", "GBP")],
            "no USD listing matches ABC: the gateway answered with conId 4711 on TSE in CAD, conId 4713 on LSE in "
            "GBP; the loader loads US listings in USD: check the symbol",
        ),
        # The listing in USD is the one asked for, although the watchlist names no exchange for it (it used to be
        # "ambiguous").
        ([(4711, "TSE", "CAD"), (4712, "NYSE", "USD")], None),
    ],
)
def test_a_listing_in_another_currency_than_the_one_asked_for_is_never_taken(warehouse, listings, failure):
    def contracts(req_id, symbol, primary):
        return [*(stock(req_id, symbol, c, p, currency=cur) for c, p, cur in listings), contract_end(req_id)]

    peer = TwsPeer(contracts=contracts, history=lambda req_id, symbol, nth: [daily_bars(req_id, TWO_DAYS)])
    with peer.listening() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", "ABC")
    if failure is None:
        assert (status, err) == (ExitCode.OK, ""), out + err
        assert query(warehouse, "select distinct con_id, exchange, currency from raw.ibkr_bars") == [
            (4712, "NYSE", "USD")
        ]
        return
    assert status == ExitCode.FAILED_SYMBOLS, out + err
    assert f"ABC failed: {failure}\n" in err
    assert batches(warehouse) == [("ABC", "failed", 0, None, failure)]
    assert peer.history_requests() == []


def test_a_listing_in_another_currency_landed_before_is_not_asked_for_again(warehouse):
    """raw holds ABC's bars under another company's listing (conId 4711 on TSE in CAD), as the loader landed them
    before it took only USD listings: the next load asked for that contract's bars again, by its id, without a lookup.
    It now looks ABC up again and takes its USD listing."""

    def contracts(req_id, symbol, primary):
        listings = [(4711, "TSE", "CAD"), (4712, "NYSE", "USD")]
        return [*(stock(req_id, symbol, c, p, currency=cur) for c, p, cur in listings), contract_end(req_id)]

    peer = TwsPeer(contracts=contracts, history=lambda req_id, symbol, nth: [daily_bars(req_id, TWO_DAYS)])
    with peer.listening() as port:
        for n, now in enumerate((datetime(2024, 1, 10, 17, 0, tzinfo=NY), datetime(2024, 1, 17, 17, 0, tzinfo=NY))):
            options = LoadOptions(entries=[WatchlistEntry("ABC", "NYSE")], months=1, now=now)
            summary = load(warehouse, IbkrSettings(port=port, client_id=17), options)
            assert summary.count("landed") == 1, summary.results
            if n == 0:  # as the loader landed it before
                with connect(warehouse) as conn:
                    conn.execute("update raw.ibkr_bars set con_id = 4711, exchange = 'TSE', currency = 'CAD'")
    assert [m[0] for m in peer.received if m[0] in ("9", "20")] == ["9", "20", "9", "20"]  # looked up each time
    assert [m[2] for m in peer.history_requests()] == ["4712", "4712"]


@pytest.mark.parametrize(
    ("what_to_show", "older_part_end"), [("TRADES", "20231218 05:00:00 UTC"), ("ADJUSTED_LAST", "")]
)
def test_a_longer_window_asks_for_what_it_lacks_in_requests_ibkr_accepts(warehouse, what_to_show, older_part_end):
    """A load of 1 month, then of 3: TRADES asks for the older part alone, with an explicit endDateTime; ADJUSTED_LAST,
    which IBKR serves only up to "now" (an endDateTime is refused, 321), asks for the whole window again."""
    month = [d for d in (date(2023, 12, 11) + timedelta(days=n) for n in range(30)) if d.weekday() < 5]
    sessions = [d.strftime("%Y%m%d") for d in month if d not in (date(2023, 12, 25), date(2024, 1, 1))]
    bars = [(day, *TWO_DAYS[0][1:]) for day in sessions]
    peer = TwsPeer(history=lambda req_id, symbol, nth: [daily_bars(req_id, bars)], referee=True)
    now = datetime(2024, 1, 10, 17, 0, tzinfo=NY)
    with peer.listening() as port:
        for months in (1, 3):
            options = LoadOptions(
                entries=[WatchlistEntry("AAPL", "NASDAQ")],
                bar=BarSettings(what_to_show=what_to_show),
                months=months,
                now=now,
            )
            summary = load(warehouse, IbkrSettings(port=port, client_id=17), options)
            assert summary.count("landed") == 1, summary.results
    assert peer.refused == []
    assert [(m[15], m[19]) for m in peer.history_requests()] == [("", what_to_show), (older_part_end, what_to_show)]


def test_never_more_historical_requests_open_at_once_than_ibkr_allows(warehouse):
    """IBKR serves at most 50 at once (322 beyond). 55 symbols, each answered after 3 s (all of them would be out by then), with --max-open 50."""
    symbols = [f"S{n:02d}" for n in range(55)]
    peer = TwsPeer(
        contracts=lambda req_id, symbol, primary: [stock(req_id, symbol, 5000 + int(symbol[1:])), contract_end(req_id)],
        history=lambda req_id, symbol, nth: [3.0, daily_bars(req_id, TWO_DAYS)],
        referee=True,
    )
    started = time.monotonic()
    with peer.listening() as port:
        status, out, err = run_ingest(warehouse, port, "--symbols", *symbols, "--max-open", "50")
    assert (status, err) == (ExitCode.OK, ""), out + err
    assert peer.refused == [] and peer.most_open == 50
    assert peer.busiest_second() <= 50  # 110 messages: IBKR disconnects a client that sends more than 50 a second
    assert query(warehouse, "select count(*) from raw.load_batches where status = 'ok'") == [(55,)]
    assert time.monotonic() - started < 30  # the 51st to 55th waited for a slot, not for a timeout


@pytest.mark.parametrize("watchlist", ["AAPL,NASDAQ", "MSFT,NASDAQ"], ids=["in-the-watchlist", "not-in-it"])
def test_one_contract_answered_once_per_exchange_it_trades_on_is_one_match(warehouse, tmp_path, watchlist):
    """IBKR answers a lookup without an exchange with the contract once per exchange it trades on (the same conId);
    a server that does so for SMART too named one stock 'ambiguous', as several listings the watchlist could not
    tell apart."""

    def contracts(req_id, symbol, primary):
        same = [stock(req_id, symbol, 265598, exchange=exchange) for exchange in ("SMART", "ISLAND", "ARCA", "BATS")]
        return [*same, contract_end(req_id)]

    path = tmp_path / "watchlist.csv"
    path.write_text(f"symbol,primary_exchange\n{watchlist}\n")
    peer = TwsPeer(contracts=contracts, history=lambda req_id, symbol, nth: [daily_bars(req_id, TWO_DAYS)])
    with peer.listening() as port:
        status, out, err = run_ingest(warehouse, port, "--watchlist", str(path), "--symbols", "AAPL")
    assert (status, err) == (ExitCode.OK, ""), out + err
    assert query(warehouse, "select distinct con_id, exchange from raw.ibkr_bars") == [(265598, "NASDAQ")]
    assert [(m[2], m[9]) for m in peer.history_requests()] == [("265598", "SMART")]  # asked SMART-routed, as ever


def test_a_contract_answered_without_an_id_lands_without_one(warehouse):
    """A server that answers the lookups with conId 0 (no id): each symbol's bars landed under contract id 0, and the
    loader warned that ABC and XYZ, both "conId 0", were one company under two symbols (dbt's one_symbol_per_contract
    then failed the build on their shared sessions). They land without a contract id, as a CSV file's bars may."""

    def contracts(req_id, symbol, primary):
        return [stock(req_id, symbol, 0, "NYSE"), contract_end(req_id)]

    peer = TwsPeer(contracts=contracts, history=lambda req_id, symbol, nth: [daily_bars(req_id, TWO_DAYS)])
    for _ in range(2):  # the second run finds both current: nothing to ask, no warning either
        with peer.listening() as port:
            status, out, err = run_ingest(warehouse, port, "--symbols", "ABC", "XYZ")
        assert (status, err) == (ExitCode.OK, ""), out + err
    assert query(
        warehouse, "select symbol, con_id, exchange, count(*) from raw.ibkr_bars group by 1, 2, 3 order by 1"
    ) == [
        ("ABC", None, "NYSE", 2),
        ("XYZ", None, "NYSE", 2),
    ]
    assert [m[2] for m in peer.history_requests()] == ["0", "0"]  # asked by symbol and exchange, as without an id
