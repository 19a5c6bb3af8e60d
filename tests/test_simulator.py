"""The gateway simulator, exercised through the real ib_async client.

Every test talks to an in-process simulator on an ephemeral 127.0.0.1 port (or,
for the CLI test, a subprocess), with the simulator's "today" pinned to
END_DATE so results do not depend on the wall clock.  Time-based pacing rules
are covered by PacingRules unit tests with a fake clock to keep the suite fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import exchange_calendars as xcals
import pytest
from ib_async import IB, BarDataList, Contract, Stock

from gateway_simulator import (
    GatewaySimulator,
    PacingLimits,
    PacingRequest,
    PacingRules,
    SimulatorConfig,
    Split,
    run_simulator_in_thread,
)
from gateway_simulator.contracts import con_id_for
from market_calendar import EXCHANGE_TZ as NY_TZ

# Every test talks to the simulator over a loopback socket.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parents[1]
END_DATE = dt.date(2024, 12, 31)
with warnings.catch_warnings():  # exchange_calendars 4.13 vs pandas 3.1 deprecation noise
    warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
    NYSE = xcals.get_calendar("XNYS")


def nyse_sessions(first: dt.date, last: dt.date) -> list[dt.date]:
    """Sessions straight from exchange_calendars, as the independent reference."""
    return [ts.date() for ts in NYSE.sessions_in_range(first.isoformat(), last.isoformat())]


@contextlib.asynccontextmanager
async def simulator(**overrides: object) -> AsyncIterator[GatewaySimulator]:
    params: dict[str, object] = {"end_date": END_DATE}
    params.update(overrides)
    sim = GatewaySimulator(SimulatorConfig(**params))  # type: ignore[arg-type]
    await sim.start(host="127.0.0.1", port=0)
    try:
        yield sim
    finally:
        await sim.stop()


@contextlib.asynccontextmanager
async def client(sim: GatewaySimulator | int, client_id: int = 1, readonly: bool = True) -> AsyncIterator[IB]:
    port = sim if isinstance(sim, int) else sim.port
    ib = IB()
    await ib.connectAsync("127.0.0.1", port, clientId=client_id, readonly=readonly, timeout=5)
    try:
        yield ib
    finally:
        ib.disconnect()


def record_errors(ib: IB) -> list[tuple[int, int, str]]:
    """Collect (reqId, code, text) from ib.errorEvent."""
    seen: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, text, _contract: seen.append((req_id, code, text))
    return seen


async def daily(
    ib: IB, contract: Contract, end: object = "", duration: str = "1 Y", what: str = "TRADES", timeout: float = 10
) -> BarDataList:
    return await ib.reqHistoricalDataAsync(contract, end, duration, "1 day", what, True, timeout=timeout)


def ohlc(bars: BarDataList) -> dict[object, tuple[float, float, float, float, float]]:
    return {b.date: (b.open, b.high, b.low, b.close, b.volume) for b in bars}


def assert_bar_invariants(bars: BarDataList, quotes: bool = False) -> None:
    for b in bars:
        assert b.high >= max(b.open, b.close), b
        assert b.low <= min(b.open, b.close), b
        assert min(b.open, b.high, b.low, b.close) > 0, b
        for price in (b.open, b.high, b.low, b.close):
            assert round(price, 2) == price, b
        if quotes:
            assert b.volume == -1 and b.barCount == -1, b
        else:
            assert b.volume == int(b.volume) and b.barCount > 0, b
            assert b.low <= b.average <= b.high, b


# --- connection ---------------------------------------------------------------------


def test_connect_readonly_and_read_write() -> None:
    async def main() -> None:
        async with simulator() as sim:
            async with client(sim, 1, readonly=True) as ro, client(sim, 2, readonly=False) as rw:
                for ib in (ro, rw):
                    assert ib.isConnected()
                    assert ib.client.serverVersion() == 178
                    assert ib.managedAccounts() == ["DU0000001"]
                now = await rw.reqCurrentTimeAsync()
                assert abs((now - dt.datetime.now(dt.UTC)).total_seconds()) < 5
                assert sim.stats.open_connections == 2
            assert sim.stats.connections == 2
            # Both clients have left: the simulator serves each connection until it has read the close.
            deadline = time.monotonic() + 30
            while sim.stats.open_connections and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert sim.stats.open_connections == 0

    asyncio.run(main())


def test_duplicate_client_id_is_refused_with_326() -> None:
    async def main() -> None:
        async with simulator() as sim, client(sim, 5) as first:
            second = IB()
            errors = record_errors(second)
            with pytest.raises((asyncio.TimeoutError, ConnectionError)):
                await second.connectAsync("127.0.0.1", sim.port, clientId=5, timeout=1)
            assert any(code == 326 for _, code, _ in errors)
            assert first.isConnected()
            assert await first.qualifyContractsAsync(Stock("IBM", "SMART", "USD"))
            async with client(sim, 6):  # other ids still welcome
                pass

    asyncio.run(main())


def test_malformed_input_never_takes_the_server_down() -> None:
    async def main() -> None:
        async with simulator() as sim:
            # A peer that is not a TWS client at all.
            _, w = await asyncio.open_connection("127.0.0.1", sim.port)
            w.write(b"GET / HTTP/1.0\r\n\r\n")
            await w.drain()
            w.close()
            # A TWS client sending garbage frames after the handshake.
            r, w = await asyncio.open_connection("127.0.0.1", sim.port)
            offer = b"v157..178"
            w.write(b"API\0" + struct.pack(">I", len(offer)) + offer)
            for junk in (b"abc\0", b"20\0x\0", b"9\0", b"\0", b"4242\0\0\0"):
                w.write(struct.pack(">I", len(junk)) + junk)
            payload = b"49\x001\x00"  # reqCurrentTime still answered afterwards
            w.write(struct.pack(">I", len(payload)) + payload)
            await w.drain()
            replies = []
            for _ in range(2):
                (n,) = struct.unpack(">I", await asyncio.wait_for(r.readexactly(4), 5))
                replies.append((await r.readexactly(n)).split(b"\0"))
            assert replies[0][0] == b"178"  # handshake
            assert replies[1][0] == b"49"  # currentTime
            w.close()
            async with client(sim) as ib:  # the server still serves real clients
                assert await daily(ib, Stock("IBM", "SMART", "USD"), duration="5 D")

    asyncio.run(main())


# --- contracts ----------------------------------------------------------------------


def test_qualify_known_stocks() -> None:
    async def main() -> list[Contract]:
        async with simulator() as sim, client(sim) as ib:
            return await ib.qualifyContractsAsync(
                Stock("AAPL", "SMART", "USD"),
                Stock("IBM", "SMART", "USD"),
                Stock("BRK B", "SMART", "USD"),
                Stock("SPY", "SMART", "USD", primaryExchange="ARCA"),
            )

    first = asyncio.run(main())
    aapl, ibm, brk, spy = first
    assert aapl.conId == con_id_for("AAPL") > 0
    assert (aapl.primaryExchange, ibm.primaryExchange, spy.primaryExchange) == ("NASDAQ", "NYSE", "ARCA")
    assert brk.symbol == "BRK B" and brk.localSymbol == "BRK B" and brk.conId > 0
    assert len({c.conId for c in first}) == 4
    again = asyncio.run(main())  # a fresh simulator hands out the same conIds
    assert [c.conId for c in again] == [c.conId for c in first]


def test_unknown_symbol_gives_none_and_error_200() -> None:
    async def main() -> None:
        async with simulator(unknown_symbols=frozenset({"NOPE"})) as sim, client(sim) as ib:
            errors = record_errors(ib)
            result = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"), Stock("NOPE", "SMART", "USD"))
            assert result[0] is not None and result[0].conId == con_id_for("AAPL")
            assert result[1] is None
            assert [(code, text) for _, code, text in errors] == [
                (200, "No security definition has been found for the request")
            ]
            bars = await daily(ib, Stock("NOPE", "SMART", "USD"), duration="5 D")
            assert list(bars) == [] and errors[-1][1] == 200

    asyncio.run(main())


# --- daily bars -----------------------------------------------------------------------


def test_one_year_of_daily_bars_is_one_bar_per_nyse_session() -> None:
    async def main() -> BarDataList:
        async with simulator() as sim, client(sim) as ib:
            return await daily(ib, Stock("AAPL", "SMART", "USD"), "", "1 Y")

    bars = asyncio.run(main())
    dates = [b.date for b in bars]
    assert dates == nyse_sessions(dt.date(2024, 1, 1), END_DATE)
    assert all(d.weekday() < 5 for d in dates)
    assert dt.date(2024, 7, 4) not in dates and dt.date(2024, 11, 28) not in dates  # holidays
    assert dt.date(2024, 7, 3) in dates and dt.date(2024, 11, 29) in dates  # half days
    assert dates[-1] == END_DATE
    assert_bar_invariants(bars)
    assert all(1e5 <= b.volume <= 5e7 for b in bars)


def test_bars_are_deterministic_per_seed() -> None:
    async def fetch(seed: int) -> dict[object, tuple[float, ...]]:
        async with simulator(seed=seed) as sim, client(sim) as ib:
            return ohlc(await daily(ib, Stock("MSFT", "SMART", "USD"), "20240628 21:00:00 UTC", "6 M"))

    first, again, other = asyncio.run(fetch(7)), asyncio.run(fetch(7)), asyncio.run(fetch(8))
    assert first == again
    assert first.keys() == other.keys()
    assert sum(first[d] != other[d] for d in first) == len(first)


def test_overlapping_requests_agree_on_shared_sessions() -> None:
    async def main() -> None:
        async with simulator() as sim, client(sim) as ib:
            stock = Stock("XOM", "SMART", "USD")
            a = ohlc(await daily(ib, stock, dt.date(2024, 6, 28), "3 M"))
            b = ohlc(await daily(ib, stock, dt.datetime(2024, 9, 30, 21, tzinfo=dt.UTC), "6 M"))
            c = ohlc(await daily(ib, stock, "20240510 16:00:00 US/Eastern", "10 D"))
            shared = a.keys() & b.keys()
            assert len(shared) > 40
            assert all(a[d] == b[d] for d in shared)
            assert len(c) == 10 and all(c[d] == a[d] for d in c)
            # Minute bars of a session aggregate to exactly that session's daily bar.
            minutes = await ib.reqHistoricalDataAsync(stock, "20240510 20:00:00 UTC", "1 D", "1 min", "TRADES", True)
            assert len(minutes) == 390
            agg = (
                minutes[0].open,
                max(m.high for m in minutes),
                min(m.low for m in minutes),
                minutes[-1].close,
                sum(m.volume for m in minutes),
            )
            assert agg == c[dt.date(2024, 5, 10)]

    asyncio.run(main())


def test_intraday_bars_follow_session_hours() -> None:
    async def main() -> tuple[BarDataList, BarDataList, BarDataList]:
        async with simulator() as sim, client(sim) as ib:
            stock = Stock("IBM", "SMART", "USD")
            half_day = await ib.reqHistoricalDataAsync(
                stock, dt.date(2024, 11, 29), "1 D", "1 hour", "TRADES", True, formatDate=1
            )
            five = await ib.reqHistoricalDataAsync(
                stock, "20241127 23:00:00 UTC", "2 D", "5 mins", "TRADES", True, formatDate=2
            )
            extended = await ib.reqHistoricalDataAsync(
                stock, "20241128 02:00:00 UTC", "1 D", "30 mins", "MIDPOINT", False, formatDate=2
            )
            return half_day, five, extended

    half_day, five, extended = asyncio.run(main())
    ny = dt.timezone(dt.timedelta(hours=-5))
    assert [b.date.astimezone(ny).strftime("%H:%M") for b in half_day] == ["09:30", "10:00", "11:00", "12:00"]
    assert all(b.date.date() == dt.date(2024, 11, 29) for b in half_day)
    assert len(five) == 2 * 78 and all(b.date.tzinfo == dt.UTC for b in five)
    assert {b.date.date() for b in five} == {dt.date(2024, 11, 26), dt.date(2024, 11, 27)}
    assert min(b.date for b in five).astimezone(ny).strftime("%H:%M") == "09:30"
    assert max(b.date for b in five).astimezone(ny).strftime("%H:%M") == "15:55"
    hours = [b.date.astimezone(ny).strftime("%H:%M") for b in extended]
    assert hours[0] == "04:00" and hours[-1] == "19:30" and len(extended) == 32
    assert_bar_invariants(half_day)
    assert_bar_invariants(five)
    assert_bar_invariants(extended, quotes=True)


def test_what_to_show_views() -> None:
    async def main() -> dict[str, BarDataList]:
        async with simulator() as sim, client(sim) as ib:
            stock = Stock("JNJ", "SMART", "USD")
            views = ("TRADES", "ADJUSTED_LAST", "MIDPOINT", "BID", "ASK")
            results = await asyncio.gather(*(daily(ib, stock, "", "3 M", what) for what in views))
            return dict(zip(views, results, strict=True))

    got = asyncio.run(main())
    trades = got["TRADES"]
    assert all(len(bars) == len(trades) for bars in got.values())
    assert_bar_invariants(trades)
    assert_bar_invariants(got["ADJUSTED_LAST"])
    for what in ("MIDPOINT", "BID", "ASK"):
        assert_bar_invariants(got[what], quotes=True)
    assert all(a.close <= t.close for a, t in zip(got["ADJUSTED_LAST"], trades, strict=True))
    assert got["ADJUSTED_LAST"][-1].close == trades[-1].close
    assert all(b.close < a.close for b, a in zip(got["BID"], got["ASK"], strict=True))


# --- validation and errors ------------------------------------------------------------


def test_invalid_requests_get_error_321() -> None:
    async def main() -> None:
        async with simulator() as sim, client(sim) as ib:
            errors = record_errors(ib)
            stock = Stock("AAPL", "SMART", "USD")
            # ib_async treats 321 as a warning: each request returns [] at its timeout.
            results = await asyncio.gather(
                daily(ib, stock, "", "400 D", timeout=1),
                daily(ib, stock, "20240628 21:00:00 UTC", "1 Y", "ADJUSTED_LAST", timeout=1),
                ib.reqHistoricalDataAsync(stock, "", "1 M", "7 mins", "TRADES", True, timeout=1),
            )
            assert all(list(r) == [] for r in results)
            texts = sorted(text for _, code, text in errors if code == 321)
            assert len(texts) == 3
            assert any("365 days must be made in years" in t for t in texts)
            assert any("End date not supported with adjusted last" in t for t in texts)
            assert any("bar size setting is invalid" in t for t in texts)
            assert await daily(ib, stock, "", "1 Y", "ADJUSTED_LAST")  # empty end is fine
            assert len(await daily(ib, stock, "", "2 Y")) > 500  # > 1 year must be in years

    asyncio.run(main())


def test_request_before_history_is_162_no_data_not_pacing() -> None:
    async def main() -> None:
        async with simulator() as sim, client(sim) as ib:
            errors = record_errors(ib)
            bars = await daily(ib, Stock("AAPL", "SMART", "USD"), "20041231 21:00:00 UTC", "1 M")
            assert list(bars) == []
            assert [(code, text) for _, code, text in errors] == [
                (162, "Historical Market Data Service error message:HMDS query returned no data: AAPL@SMART Trades")
            ]
            assert sim.stats.pacing_violations == 0
            head = await ib.reqHeadTimeStampAsync(Stock("AAPL", "SMART", "USD"), "TRADES", True, 2)
            assert head == dt.datetime(2005, 1, 3, 14, 30, tzinfo=dt.UTC)

    asyncio.run(main())


# --- fault injection -----------------------------------------------------------------------


def test_pacing_nth_answers_that_request_with_162() -> None:
    async def main() -> None:
        async with simulator(pacing_nth=frozenset({2})) as sim, client(sim) as ib:
            errors = record_errors(ib)
            stock = Stock("AAPL", "SMART", "USD")
            assert await daily(ib, stock, "", "1 M")
            assert list(await daily(ib, stock, "", "2 M")) == []
            assert [(code, "pacing violation" in text) for _, code, text in errors] == [(162, True)]
            assert len(await daily(ib, stock, "", "2 M")) > 30  # the retry goes through
            assert sim.stats.pacing_violations == 1
            assert sim.stats.historical_requests == 3
            assert [r.duration for r in sim.stats.requests_log] == ["1 M", "2 M", "2 M"]

    asyncio.run(main())


def test_drop_nth_closes_the_socket_and_reconnect_works() -> None:
    async def main() -> None:
        async with simulator(drop_nth=frozenset({2})) as sim:
            stock = Stock("AAPL", "SMART", "USD")
            ib = IB()
            disconnected: list[bool] = []
            ib.disconnectedEvent += lambda: disconnected.append(True)
            await ib.connectAsync("127.0.0.1", sim.port, clientId=1, readonly=True, timeout=5)
            assert await daily(ib, stock, "", "1 M")
            with pytest.raises(ConnectionError):
                await daily(ib, stock, "", "2 M")
            await asyncio.sleep(0.05)
            assert disconnected and not ib.isConnected()
            await ib.connectAsync("127.0.0.1", sim.port, clientId=1, readonly=True, timeout=5)
            assert len(await daily(ib, stock, "", "2 M")) > 30
            ib.disconnect()
            assert sim.stats.dropped_connections == 1

    asyncio.run(main())


def test_enforced_pacing_counts_a_burst_but_not_spaced_requests() -> None:
    async def main() -> None:
        async with simulator(enforce_pacing=True) as sim, client(sim) as ib:
            errors = record_errors(ib)
            # Distinct symbols and durations: no rule is close to being broken.
            for sym, dur in (("AAPL", "1 M"), ("MSFT", "2 M"), ("IBM", "3 M"), ("XOM", "1 M")):
                assert await daily(ib, Stock(sym, "SMART", "USD"), "", dur)
            assert sim.stats.pacing_violations == 0 and errors == []
            # Six different requests for one contract/exchange/tick type inside 2 s.
            stock = Stock("KO", "SMART", "USD")
            results = await asyncio.gather(*(daily(ib, stock, "", f"{n} M") for n in range(1, 7)))
            assert sum(list(r) == [] for r in results) == 1
            assert sim.stats.pacing_violations == 1
            # An identical request within 15 s is a violation as well.
            assert list(await daily(ib, Stock("AAPL", "SMART", "USD"), "", "1 M")) == []
            assert sim.stats.pacing_violations == 2
            assert all(code == 162 and "pacing violation" in text for _, code, text in errors)

    asyncio.run(main())


def test_latency_is_applied_concurrently() -> None:
    async def main() -> None:
        async with simulator(latency_s=0.3) as sim, client(sim) as ib:
            symbols = ["AAPL", "MSFT", "IBM", "XOM", "KO", "JNJ", "PG", "WMT", "T", "GE"]
            started = time.monotonic()
            results = await asyncio.gather(*(daily(ib, Stock(s, "SMART", "USD"), "", "1 M") for s in symbols))
            elapsed = time.monotonic() - started
            assert all(results)
            assert 0.3 <= elapsed < 1.5
            assert sim.stats.max_open_historical == 10
            assert sim.stats.open_historical == 0

    asyncio.run(main())


def test_client_timeout_cancels_the_pending_query() -> None:
    async def main() -> None:
        async with simulator(latency_s=3.0) as sim, client(sim) as ib:
            errors = record_errors(ib)
            bars = await daily(ib, Stock("AAPL", "SMART", "USD"), "", "1 M", timeout=0.3)
            assert list(bars) == []
            for _ in range(50):
                if errors:
                    break
                await asyncio.sleep(0.02)
            assert errors and errors[0][1] == 162 and "query cancelled" in errors[0][2]
            assert sim.stats.open_historical == 0

    asyncio.run(main())


# --- pacing rules (fake clock) --------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def req(
    symbol: str = "AAPL", duration: str = "1 M", end: str = "", what: str = "TRADES", bar_size: str = "1 day"
) -> PacingRequest:
    return PacingRequest(symbol, "SMART", what, end, duration, bar_size, True)


def test_pacing_rule_identical_requests_within_15_s() -> None:
    clock = FakeClock()
    rules = PacingRules(clock)
    assert rules.check(req()) is None
    clock.t += 14.9
    assert rules.check(req()) is not None
    assert rules.check(req(duration="2 M")) is None  # not identical
    clock.t += 0.2  # 15.1 s after the first
    assert rules.check(req()) is None


def test_pacing_rule_six_requests_for_one_contract_within_2_s() -> None:
    clock = FakeClock()
    rules = PacingRules(clock)
    for n in range(1, 6):
        assert rules.check(req(duration=f"{n} M")) is None
        clock.t += 0.3
    assert rules.check(req(duration="6 M")) is not None  # 6th inside 2 s
    assert rules.check(req(symbol="MSFT")) is None  # other contract unaffected
    assert rules.check(req(what="MIDPOINT")) is None  # other tick type unaffected
    clock.t = 1000.0 + 2.0  # the first has left the window
    assert rules.check(req(duration="7 M")) is None


def test_pacing_rule_sixty_requests_per_ten_minutes_for_small_bars() -> None:
    clock = FakeClock()
    rules = PacingRules(clock)
    for n in range(60):
        assert rules.check(req(symbol=f"S{n}", bar_size="30 secs")) is None
        clock.t += 5.0  # 60 requests over 300 s
    assert rules.check(req(symbol="X", bar_size="5 secs")) is not None
    assert rules.check(req(symbol="X", bar_size="1 min")) is None  # larger bars: rule lifted, as IBKR documents
    clock.t = 1000.0 + 600.0  # the first request is now 10 minutes old
    assert rules.check(req(symbol="Z", bar_size="30 secs")) is None
    assert rules.check(req(symbol="Y", bar_size="30 secs")) is not None


def test_strict_pacing_applies_the_ten_minute_rule_to_every_bar_size() -> None:
    clock = FakeClock()
    lenient, strict = PacingRules(clock), PacingRules(clock, PacingLimits(rolling_for_all_bar_sizes=True))
    for n in range(60):
        assert lenient.check(req(symbol=f"S{n}")) is None
        assert strict.check(req(symbol=f"S{n}")) is None
        clock.t += 1.0
    assert lenient.check(req(symbol="X")) is None
    assert strict.check(req(symbol="X")) is not None


def test_pacing_rule_fifty_open_requests_and_custom_limits() -> None:
    rules = PacingRules(FakeClock())
    assert rules.check(req(), open_requests=49) is None
    assert rules.check(req(symbol="B"), open_requests=50) is not None
    strict = PacingRules(FakeClock(), PacingLimits(burst_count=2))
    assert strict.check(req()) is None
    assert strict.check(req(duration="2 M")) is not None


# --- hosting -------------------------------------------------------------------------------


def test_run_simulator_in_thread_serves_sync_callers() -> None:
    async def fetch(port: int) -> BarDataList:
        async with client(port) as ib:
            return await daily(ib, Stock("AAPL", "SMART", "USD"), "", "5 D")

    with run_simulator_in_thread(SimulatorConfig(end_date=END_DATE)) as sim:
        bars = asyncio.run(fetch(sim.port))
        assert [b.date for b in bars] == nyse_sessions(dt.date(2024, 12, 24), END_DATE)  # 25th: holiday
        assert sim.stats.historical_requests == 1


def test_cli_prints_port_serves_and_exits_0_on_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway_simulator",
            "--port",
            "0",
            "--end-date",
            "2024-12-31",
            "--unknown",
            "NOPE",
            "--log-level",
            "WARNING",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"simulator listening on 127\.0\.0\.1:(\d+)\n", line)
        assert match, line
        port = int(match.group(1))

        async def main() -> None:
            async with client(port) as ib:
                assert len(await daily(ib, Stock("AAPL", "SMART", "USD"), "", "5 D")) == 5
                assert await ib.qualifyContractsAsync(Stock("NOPE", "SMART", "USD")) == [None]

        asyncio.run(main())
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "served 1 historical and 1 contract requests, 0 pacing violations" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- a session in progress, splits -------------------------------------------------------------------


def test_a_session_in_progress_is_served_with_its_bars_so_far() -> None:
    now = dt.datetime(2024, 12, 30, 11, 30, tzinfo=NY_TZ)  # a Monday, two hours into the session
    stock = Stock("KO", "SMART", "USD")

    async def main() -> tuple[BarDataList, BarDataList, BarDataList]:
        async with simulator(end_date=None, now=now) as sim, client(sim) as ib:
            days = await daily(ib, stock, "", "3 D")
            hours = await ib.reqHistoricalDataAsync(stock, "", "1 D", "1 hour", "TRADES", True, formatDate=2)
        async with simulator(end_date=dt.date(2024, 12, 30)) as sim, client(sim) as ib:
            minutes = await ib.reqHistoricalDataAsync(stock, "20241230 16:30:00 UTC", "7200 S", "1 min", "TRADES", True)
        return days, hours, minutes

    days, hours, minutes = asyncio.run(main())
    assert [b.date for b in days] == [dt.date(2024, 12, 26), dt.date(2024, 12, 27), dt.date(2024, 12, 30)]
    today = days[-1]
    assert len(minutes) == 120  # 09:30 .. 11:29, all finished by 11:30
    so_far = (minutes[0].open, max(m.high for m in minutes), min(m.low for m in minutes), minutes[-1].close,
              sum(m.volume for m in minutes))  # fmt: skip
    assert (today.open, today.high, today.low, today.close, today.volume) == so_far
    assert [b.date.astimezone(NY_TZ).strftime("%H:%M") for b in hours] == ["09:30", "10:00", "11:00"]
    assert hours[-1].volume == sum(m.volume for m in minutes[90:])  # the 11:00 bar so far: 30 minutes of it
    assert_bar_invariants(days)


def test_a_split_re_adjusts_the_whole_history_from_its_ex_date() -> None:
    split = Split("KO", dt.date(2024, 12, 16), 10)

    async def fetch(**config: object) -> dict[object, tuple[float, ...]]:
        async with simulator(**config) as sim, client(sim) as ib:
            return ohlc(await daily(ib, Stock("KO", "SMART", "USD"), "20241213 22:00:00 UTC", "1 M"))

    plain = asyncio.run(fetch(end_date=dt.date(2024, 12, 31)))
    before_ex_date = asyncio.run(fetch(end_date=dt.date(2024, 12, 13), splits=(split,)))
    after_ex_date = asyncio.run(fetch(end_date=dt.date(2024, 12, 31), splits=(split,)))
    assert before_ex_date == plain  # nothing happened yet
    assert after_ex_date.keys() == plain.keys()
    for day, (*prices, volume) in plain.items():  # a tenth of the price, to the cent; ten times the volume
        assert after_ex_date[day] == pytest.approx((*(price / 10 for price in prices), volume * 10), abs=0.0051)
    reverse = asyncio.run(fetch(end_date=dt.date(2024, 12, 31), splits=(Split("KO", dt.date(2024, 12, 16), 0.5),)))
    assert all(reverse[day][3] == pytest.approx(plain[day][3] * 2, abs=0.0051) for day in plain)


def test_cli_flags_for_the_clock_and_splits() -> None:
    from gateway_simulator.__main__ import build_parser, config_from_args

    args = build_parser().parse_args(["--port", "0", "--now", "2024-12-30T11:30", "--split", "BRK B:2024-12-16:3/2"])
    config = config_from_args(args)
    assert config.now == dt.datetime(2024, 12, 30, 11, 30, tzinfo=NY_TZ)
    assert config.splits == (Split("BRK B", dt.date(2024, 12, 16), 1.5),)
    args = build_parser().parse_args(["--port", "0", "--no-permissions", "nyse", "ARCA", "--pacing-nth", "1", "3"])
    assert config_from_args(args).no_permissions == {"NYSE", "ARCA"}
    assert config_from_args(args).pacing_nth == {1, 3}
    for bad in (["--end-date", "20240104"], ["--end-date", "2024-W02-5"], ["--split", "KO:2024-12-16:0"],
                ["--split", "KO:2024-12-16"], ["--now", "2024-12-30"], ["--latency", "nan"],
                ["--latency", "-1"], ["--log-level", "loud"], ["--pacing-nth", "0"], ["--drop-nth", "-2"],
                ["--pacing-nth", "x"], ["--no-permissions", "NASDQ"], ["--no-permissions", "SMART"]):  # fmt: skip
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--port", "0", *bad])


@pytest.mark.integration  # binds a port on loopback
def test_a_bad_or_taken_port_is_one_line_not_a_traceback(capsys: pytest.CaptureFixture) -> None:
    from gateway_simulator.__main__ import main

    for port in ("-1", "70000"):
        with pytest.raises(SystemExit) as exit_:
            main(["--port", port])
        assert exit_.value.code == 2
        assert capsys.readouterr().err == (
            f"error: argument --port: expected a port from 0 (any free port) to 65535, got '{port}'; "
            "see python -m gateway_simulator --help\n"
        )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port), "--log-level", "error"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}: ") and err.count("\n") == 1, err
