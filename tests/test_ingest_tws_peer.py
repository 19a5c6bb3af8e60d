"""``python -m ingest`` against a TWS peer written independently of our simulator (tests/tws_peer_independent.py).

What the other peer tests (test_ingest_gateway_variants.py, test_ingest_ibkr_protocol_variants.py) do not cover:
TCP delivery split at awkward points (a byte per segment, a length prefix apart from its body, an answer in one
segment), start-up messages in another order (farm notices before and between the managed accounts and the next valid
id, the current time, a 2119 and a 2100), server versions inside the client's range other than 157 and 178 (163,
165, 166), contract details with empty optional fields, daily bars with volumes of 0 and -1 and -1 counts and WAPs,
several contract matches, and 162 "HMDS server disconnect" and 1100-1102 under a request's id.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from tws_peer_independent import (
    CURRENT_TIME,
    MANAGED_ACCOUNTS,
    NEXT_VALID_ID,
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
from ingest.ibkr.pacing import PacingLimiter, PacingPolicy
from ingest.ibkr.session_types import ContractRef, Outcome
from warehouse_db import connect
from warehouse_db.settings import REPO_ROOT, ConnectionSettings

HMDS = "Historical Market Data Service error message:"
TWO_DAYS = [
    ("20240104", "185.0", "186.5", "183.4", "184.2", "5821", "184.9", "3100"),
    ("20240105", "184.2", "185.9", "182.7", "183.1", "4410", "183.6", "2870"),
]


# ``python -m ingest`` with the loader's pacing policy as derived from the bar size, except that identical requests may
# follow each other at once: a retry here would otherwise wait out IBKR's 15 s rule (the limiter's own test, and
# test_ingest_ibkr's pacing test, keep that). The CLI has no flag for it, so this is LoadOptions(pacing=...) from outside.
QUICK_RETRIES = """
import dataclasses, runpy
from ingest.ibkr.options import LoadOptions
derived = LoadOptions.pacing_policy
LoadOptions.pacing_policy = lambda self: dataclasses.replace(derived(self), identical_window_s=0.01, margin_s=0.0)
runpy.run_module("ingest", run_name="__main__", alter_sys=True)  # as -m does: sys.argv[0] is ingest/__main__.py
"""


def run_ingest(db: ConnectionSettings, port: int, *args: str, quick_retries: bool = False) -> tuple[int, str, str]:
    """``python -m ingest`` against the peer; ``quick_retries``: see :data:`QUICK_RETRIES`."""
    env = {
        **os.environ,
        **db.libpq_env(),
        "DATABASE_URL": "",
        "IBKR_HOST": "127.0.0.1",
        "IBKR_PORT": str(port),
        "IBKR_CLIENT_ID": "23",
        "IBKR_CONNECT_TIMEOUT": "5",
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


def in_a_session(peer: TwsPeer, action: Callable[[IbkrSession], Awaitable[Any]]) -> Any:
    """What ``action`` returns, run in the loader's own gateway session against the peer; identical requests may
    follow each other at once (the 15 s rule is the limiter's own test)."""

    async def run(port: int) -> Any:
        settings = IbkrSettings(port=port, client_id=5, connect_timeout_s=5, request_timeout_s=5)
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
