"""IBKR data as it behaves over months: a split re-adjusts the whole history, a session still trading is not a final
bar, adjusted prices can build the mart. The real ib_async client against the gateway simulator on a pinned clock,
the real warehouse and real dbt.

The simulator's days are pinned in the past (late 2026); each load passes the same moment as its planning clock,
so the loader and the simulator agree on what "now" is.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from devtools import dbt_harness
from gateway_simulator import GatewaySimulator, SimulatorConfig, Split, run_simulator_in_thread
from gateway_simulator.bars import BarGenerator, split_adjusted
from gateway_simulator.sessions import nyse_calendar
from ingest.ibkr.config import IbkrSettings
from ingest.ibkr.loader import LoadSummary, load
from ingest.ibkr.options import LoadOptions
from ingest.raw_tables import BarSettings
from ingest.report import format_summary
from ingest.watchlist import WatchlistEntry
from market_calendar import EXCHANGE_TZ as NY
from warehouse_db import connect
from warehouse_db.settings import ConnectionSettings

pytestmark = pytest.mark.integration

AAPL, MSFT = WatchlistEntry("AAPL", "NASDAQ"), WatchlistEntry("MSFT", "NASDAQ")


@contextmanager
def simulator(**config) -> Iterator[GatewaySimulator]:
    with run_simulator_in_thread(SimulatorConfig(**config)) as sim:
        yield sim


def load_at(db: ConnectionSettings, sim: GatewaySimulator, entries, now: datetime, **options) -> LoadSummary:
    return load(db, IbkrSettings(port=sim.port), LoadOptions(entries=entries, now=now, **options))


def query(db: ConnectionSettings, sql: str, *params) -> list[tuple]:
    with connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def latest_bars(db: ConnectionSettings, symbol: str, what_to_show: str = "TRADES") -> list[tuple]:
    """The version of every bar dbt's dedupe keeps (latest landed), as (session, open, high, low, close, volume)."""
    return query(
        db,
        "select distinct on (session_date) session_date, open, high, low, close, volume, wap, bar_count "
        "from raw.ibkr_bars where symbol = %s and what_to_show = %s "
        "order by session_date, ingested_at desc, load_id desc, batch_id desc",
        symbol,
        what_to_show,
    )


def mart_rows(db: ConnectionSettings, symbol: str) -> list[tuple]:
    """Every column of the symbol's training rows except dbt's load stamps, in session order."""
    columns = [
        name
        for (name,) in query(
            db,
            "select column_name from information_schema.columns where table_schema = 'marts' "
            "and table_name = 'training_bars' and column_name not like '%%loaded_at' order by ordinal_position",
        )
    ]
    return query(
        db, f"select {', '.join(columns)} from marts.training_bars where symbol = %s order by session_date", symbol
    )


# --- months of evening loads: splits, a load during the session, skipped days, a holiday, a half day ---------

AAPL_SPLIT = Split("AAPL", date(2026, 10, 21), 10)  # 10-for-1
AAPL_REVERSE_SPLIT = Split("AAPL", date(2026, 11, 18), 1 / 5)  # 1-for-5, four weeks later
NVDA = WatchlistEntry("NVDA", "NASDAQ")


def generated_closes(symbol: str, first: date, last: date, price_factor: float) -> dict[date, float]:
    """The simulator's closes of ``symbol`` from ``first`` to ``last``, in the units of ``price_factor``."""
    calendar = nyse_calendar()
    bars = BarGenerator(7, calendar).daily(symbol, calendar.index_after(first - timedelta(days=1)),
                                           calendar.index_on_or_before(last))  # fmt: skip
    return {bar.time: bar.close for bar in split_adjusted(bars, price_factor)}


def test_months_of_loads_keep_one_unit_per_symbol_and_incremental_builds_equal_a_full_refresh(warehouse, tmp_path):
    """A researcher's evenings: load and build; a split; a load during the session, a week or more skipped, the
    watchlist changed and a reverse split; then a load on a half day after Thanksgiving. Every stored bar ends in
    the units of the last split, the mart's returns across both ex-dates are the stock's, and the incremental
    builds equal a full refresh."""
    project = dbt_harness.DbtProject(warehouse, tmp_path)
    splits = (AAPL_SPLIT, AAPL_REVERSE_SPLIT)

    def load_on(now: datetime, entries) -> tuple[LoadSummary, GatewaySimulator]:
        with simulator(now=now, splits=splits) as sim:
            return load_at(warehouse, sim, entries, now, months=12), sim

    def build(*args: str) -> None:
        built = project.run("build", *args)
        assert built.returncode == 0, built.output[-4000:]
        assert built.statuses()["int_bars_deduplicated_no_unadjusted_splits"] == "pass"
        assert built.statuses()["int_bars_deduplicated_no_bad_ticks"] == "pass"  # a split does not revert
        assert built.statuses()["int_bars_deduplicated_no_bad_intraday_prices"] == "pass"

    first, _ = load_on(datetime(2026, 10, 16, 18, 0, tzinfo=NY), [AAPL, MSFT])  # "1 Y": from 2025-10-16
    assert first.ok and first.count("landed") == 2
    build()

    # The 10-for-1 split: AAPL's usual request, then its whole history again, in "2 Y" (more than was asked).
    split, sim = load_on(datetime(2026, 10, 23, 18, 0, tzinfo=NY), [AAPL, MSFT])
    assert [r.symbol for r in sim.stats.requests_log].count("AAPL") == 2 and sim.stats.historical_requests == 3
    aapl, msft = split.results
    assert aapl.readjustment.factor == pytest.approx(0.1, rel=0.01) and aapl.readjustment.volume_inverse
    assert msft.readjustment is None
    ((factor, reason, start),) = query(
        warehouse,
        "select readjustment_factor, request_reason, requested_start from raw.load_batches "
        "where symbol = 'AAPL' and readjustment_factor is not null",
    )
    assert factor == pytest.approx(0.1, rel=0.01) and "10-for-1 split" in reason
    assert start == datetime(2025, 10, 16, tzinfo=NY)  # back to the oldest stored bar: nothing old is left

    # Four weeks later, during Friday's session: MSFT left the watchlist, NVDA joined, AAPL had a 1-for-5 reverse
    # split. Today's bar is not final and does not land.
    during, _ = load_on(datetime(2026, 11, 20, 11, 30, tzinfo=NY), [AAPL, NVDA])
    assert during.ok and during.unfinished == 2 and during.results[0].readjustment is not None
    assert query(warehouse, "select count(*) from raw.ibkr_bars where session_date = '2026-11-20'") == [(0,)]

    # The next load is on the half day after Thanksgiving, after its 13:00 close.
    half_day, _ = load_on(datetime(2026, 11, 27, 14, 0, tzinfo=NY), [AAPL, NVDA])
    assert half_day.ok and half_day.unfinished == 0
    again, sim = load_on(datetime(2026, 11, 27, 14, 0, tzinfo=NY), [AAPL, NVDA])  # the same load twice
    assert again.count("current") == 2 and sim.stats.historical_requests == 0

    # Raw: every stored AAPL bar, as dbt will keep it (latest landed), is in the units after both splits.
    stored = {row[0]: row[4] for row in latest_bars(warehouse, "AAPL")}
    assert min(stored) == date(2025, 10, 16) and max(stored) == date(2026, 11, 27)
    expected = generated_closes("AAPL", min(stored), max(stored), price_factor=0.1 * 5)
    assert stored == expected

    build()
    mart = {s: dict(zip(("close", "log_return_1", "target"), v, strict=True)) for s, *v in query(
        warehouse,
        "select session_date, close, log_return_1, target_log_return_next from marts.training_bars "
        "where symbol = 'AAPL' order by session_date",
    )}  # fmt: skip
    calendar = nyse_calendar()
    sessions = list(calendar.dates[calendar.index_after(min(mart) - timedelta(days=1)) :
                                   calendar.index_on_or_before(date(2026, 11, 27)) + 1])  # fmt: skip
    assert list(mart) == sessions  # every session, the half day included, Thanksgiving not
    for ex_date in (AAPL_SPLIT.ex_date, AAPL_REVERSE_SPLIT.ex_date):
        previous = sessions[sessions.index(ex_date) - 1]
        assert mart[ex_date]["log_return_1"] == pytest.approx(math.log(expected[ex_date] / expected[previous]))
        assert abs(mart[ex_date]["log_return_1"]) < 0.2  # not ln(10) or ln(1/5)
    assert mart[date(2026, 11, 20)]["close"] == expected[date(2026, 11, 20)]  # the final bar, not the partial one
    assert mart[date(2026, 11, 27)]["target"] is None and mart[date(2026, 11, 25)]["target"] is not None
    last_sessions = dict(query(warehouse, "select symbol, max(session_date) from marts.training_bars group by 1"))
    assert last_sessions == {"AAPL": date(2026, 11, 27), "NVDA": date(2026, 11, 27), "MSFT": date(2026, 10, 23)}
    coverage = dict(query(warehouse, "select symbol, readjustments from marts.symbol_coverage"))
    assert coverage == {"AAPL": 2, "MSFT": 0, "NVDA": 0}

    incremental = {symbol: mart_rows(warehouse, symbol) for symbol in ("AAPL", "MSFT", "NVDA")}
    build("--full-refresh")
    assert {symbol: mart_rows(warehouse, symbol) for symbol in incremental} == incremental


def test_adjusted_last_re_fetches_every_stored_bar_after_a_dividend_and_the_history_does_not_grow(warehouse):
    """ADJUSTED_LAST: every dividend re-bases all earlier bars. A load a week later asks for its 12-month window,
    which starts a week later than the stored bars: those must be re-fetched too, or the series would keep a week
    of bars adjusted for one dividend fewer (a silent jump in the returns). Bars older than what is stored are not
    landed, so the next whole-history request does not reach back another year each run."""
    adjusted = BarSettings(what_to_show="ADJUSTED_LAST")
    first_sessions = []
    for now in (datetime(2026, 11, 13, 18, 0, tzinfo=NY), datetime(2026, 11, 20, 18, 0, tzinfo=NY),
                datetime(2026, 11, 24, 18, 0, tzinfo=NY)):  # fmt: skip
        with simulator(now=now) as sim:  # a dividend goes ex on 16 November
            summary = load_at(warehouse, sim, [AAPL], now, months=12, bar=adjusted)
        assert summary.ok and summary.count("landed") == 1
        ((latest_load, first_session),) = query(
            warehouse,
            "select array_agg(distinct load_id), min(session_date) from ("
            "select distinct on (session_date) session_date, load_id from raw.ibkr_bars "
            "where what_to_show = 'ADJUSTED_LAST' order by session_date, ingested_at desc) as latest",
        )  # fmt: skip
        assert latest_load == [summary.load_id]  # one adjustment basis: every stored bar re-delivered by this load
        first_sessions.append(first_session)
    # The first load asked from 13 November 2025 (its "1 Y" served from the 14th); the history never reaches back
    # further than that, although the later requests ("2 Y") are answered with a year more.
    assert min(first_sessions) >= date(2025, 11, 13) and first_sessions[1] == first_sessions[2]
    versions = query(
        warehouse,
        "select close from raw.ibkr_bars where what_to_show = 'ADJUSTED_LAST' and session_date = %s "
        "order by ingested_at",
        first_sessions[0],
    )
    assert len(versions) == 3 and versions[0] != versions[1]  # the dividend re-based the oldest bar


# --- a session in progress -------------------------------------------------------------------------------

TRADING = datetime(2026, 11, 24, 11, 30, tzinfo=NY)  # a Tuesday, two hours into the session
AFTER_CLOSE = datetime(2026, 11, 24, 16, 30, tzinfo=NY)


def test_a_session_in_progress_never_lands_and_its_final_bar_does_after_the_close(warehouse):
    hourly = BarSettings("1 hour")
    with simulator(now=TRADING) as sim:
        daily = load_at(warehouse, sim, [AAPL], TRADING, months=1)
        intraday = load_at(warehouse, sim, [AAPL], TRADING, months=1, bar=hourly)
    assert daily.ok and daily.unfinished == 1 and intraday.unfinished == 1
    last_daily = query(warehouse, "select max(session_date) from raw.ibkr_bars where bar_size = '1 day'")
    assert last_daily == [(date(2026, 11, 23),)]
    today_hours = query(
        warehouse,
        "select (bar_time at time zone 'America/New_York')::time::text from raw.ibkr_bars "
        "where bar_size = '1 hour' and session_date = '2026-11-24' order by bar_time",
    )
    assert today_hours == [("09:30:00",), ("10:00:00",)]  # 11:00-12:00 had not ended at 11:30

    with simulator(now=AFTER_CLOSE) as sim:
        after = load_at(warehouse, sim, [AAPL], AFTER_CLOSE, months=1)
    assert after.ok and after.count("landed") == 1 and after.unfinished == 0
    calendar = nyse_calendar()
    (final,) = BarGenerator(7, calendar).daily("AAPL", *[calendar.index_on_or_before(date(2026, 11, 24))] * 2)
    landed = query(
        warehouse,
        "select open, high, low, close, volume from raw.ibkr_bars where bar_size = '1 day' and session_date = '2026-11-24'",
    )
    assert landed == [(final.open, final.high, final.low, final.close, final.volume)]


def test_bars_a_gateway_dates_after_the_run_are_named_as_such_and_never_land(warehouse):
    """A gateway whose clock (or data) is a day ahead sends a bar of tomorrow's session: it does not land, and the
    summary does not pass it off as a session still in progress that the next run after the close fetches."""
    with simulator(now=AFTER_CLOSE + timedelta(days=1)) as sim:
        summary = load_at(warehouse, sim, [AAPL], TRADING, months=1)
    assert summary.ok and summary.unfinished == 1 and summary.ahead == 1  # 24 November in progress, the 25th ahead
    assert query(warehouse, "select max(session_date) from raw.ibkr_bars") == [(date(2026, 11, 23),)]
    text = format_summary(summary, LoadOptions(entries=[AAPL], now=TRADING, months=1))
    assert "1 bar(s) of sessions still in progress were not landed" in text
    assert "1 bar(s) dated after this run's moment were not landed" in text


def test_intraday_bars_that_ended_during_the_session_land_on_a_load_after_last_evenings(warehouse):
    """Hourly bars loaded Monday evening, then at 11:30 on Tuesday: the 09:30 and 10:00 bars have ended and land (the
    symbol was 'current', checked after Monday's close, and nothing was asked until Tuesday's close). At 11:45 no bar
    has ended since 11:30: nothing is asked. After the close the rest of the day lands."""
    hourly = BarSettings("1 hour")
    monday_evening = AFTER_CLOSE - timedelta(days=1)

    def hours_of_tuesday() -> list[str]:
        rows = query(
            warehouse,
            "select distinct (bar_time at time zone 'America/New_York')::time::text from raw.ibkr_bars "
            "where session_date = '2026-11-24' order by 1",
        )
        return [hour for (hour,) in rows]

    for now in (monday_evening, TRADING, TRADING + timedelta(minutes=15), AFTER_CLOSE):
        with simulator(now=now) as sim:
            summary = load_at(warehouse, sim, [AAPL], now, months=1, bar=hourly)
            asked = sim.stats.historical_requests
        assert summary.ok
        if now == TRADING:
            assert asked == 1 and hours_of_tuesday() == ["09:30:00", "10:00:00"]
            # The 11:00 bar still forming lands on a run after 12:00, not only after the close, as the summary said.
            text = format_summary(summary, LoadOptions(entries=[AAPL], now=now, months=1, bar=hourly))
            assert (
                "1 bar(s) still in progress were not landed (not final yet; a run after they have ended fetches them)"
                in text
            )
            assert "1 hour TRADES RTH, 1 month," in text
        if now == TRADING + timedelta(minutes=15):
            assert asked == 0 and summary.count("current") == 1
            assert "after the last bar ended (2026-11-24 11:00 EST)" in summary.results[0].reason
    assert hours_of_tuesday() == ["09:30:00", "10:00:00", "11:00:00", "12:00:00", "13:00:00", "14:00:00", "15:00:00"]


def test_an_intraday_bar_lands_on_the_first_load_after_it_became_final(warehouse):
    """3-hour bars: the 15:00 bar covers the last hour of the session, and counted as ending at 18:00 it was left out
    by the load after the close; loads at 18:30 and the next morning found the symbol current: it landed the next
    day after 12:00. Hourly bars: the 09:30 bar, final at 10:30, waited for the first load after 11:00 (a load at
    10:05 asked for it in vain, one at 10:35 found the symbol current)."""

    def bars_of_tuesday(bar_size: str) -> list[str]:
        rows = query(
            warehouse,
            "select (bar_time at time zone 'America/New_York')::time::text from raw.ibkr_bars where bar_size = %s "
            "and session_date = '2026-11-24' order by 1",
            bar_size,
        )
        return [hour for (hour,) in rows]

    with simulator(now=AFTER_CLOSE) as sim:
        summary = load_at(warehouse, sim, [AAPL], AFTER_CLOSE, months=1, bar=BarSettings("3 hours"))
    assert summary.ok and summary.unfinished == 0
    assert bars_of_tuesday("3 hours") == ["09:30:00", "12:00:00", "15:00:00"]

    hourly = BarSettings("1 hour")
    with simulator(now=AFTER_CLOSE - timedelta(days=1)) as sim:
        assert load_at(warehouse, sim, [AAPL], AFTER_CLOSE - timedelta(days=1), months=1, bar=hourly).ok
    for minute, asked_for, landed in (
        (5, 0, []),  # 10:05: no bar has become final since Monday's close (the 09:30 bar is taken to end at 10:30)
        (35, 1, ["09:30:00"]),
        (50, 0, ["09:30:00"]),
    ):
        now = datetime(2026, 11, 24, 10, minute, tzinfo=NY)
        with simulator(now=now) as sim:
            assert load_at(warehouse, sim, [AAPL], now, months=1, bar=hourly).ok
            assert (sim.stats.historical_requests, bars_of_tuesday("1 hour")) == (asked_for, landed), now


def test_an_intraday_update_asks_for_its_overlap_and_the_new_bars_not_a_whole_page(warehouse):
    """Hourly bars loaded Tuesday evening, then Wednesday evening: the update asks back to its overlap (30 bars before
    Tuesday's 15:00 bar: Monday 09:00), three New York days, not IBKR's largest page of 30 days. It asked `30 D`,
    and landed 30 sessions' bars again for Wednesday's 7 new ones: raw grew by a page per symbol and run."""
    hourly = BarSettings("1 hour")
    wednesday = AFTER_CLOSE + timedelta(days=1)
    with simulator(now=AFTER_CLOSE) as sim:
        assert load_at(warehouse, sim, [AAPL], AFTER_CLOSE, months=1, bar=hourly).ok
    held = query(warehouse, "select count(*) from raw.ibkr_bars")[0][0]
    with simulator(now=wednesday) as sim:
        update = load_at(warehouse, sim, [AAPL], wednesday, months=1, bar=hourly)
        asked = [(r.end_date_time, r.duration) for r in sim.stats.requests_log]
    assert update.ok and asked == [("20261125 21:30:00 UTC", "3 D")]
    # Monday's, Tuesday's and Wednesday's bars (09:30, 10:00 ... 15:00), nothing older.
    assert update.rows == 3 * 7
    per_session = query(
        warehouse,
        "select session_date::text, count(distinct bar_time) from raw.ibkr_bars where session_date >= '2026-11-23' "
        "group by 1 order by 1",
    )
    assert per_session == [("2026-11-23", 7), ("2026-11-24", 7), ("2026-11-25", 7)]
    assert query(warehouse, "select count(*) from raw.ibkr_bars")[0][0] == held + 21


# --- adjusted prices ---------------------------------------------------------------------------------------

AFTER = datetime(2026, 10, 23, 18, 0, tzinfo=NY)


def test_the_mart_can_be_built_from_adjusted_last_bars(warehouse, tmp_path: Path):
    with simulator(end_date=AFTER.date()) as sim:
        for what_to_show in ("TRADES", "ADJUSTED_LAST"):
            summary = load_at(
                warehouse, sim, [AAPL, MSFT], AFTER, months=24, bar=BarSettings(what_to_show=what_to_show)
            )
            assert summary.ok and summary.count("landed") == 2
    built = dbt_harness.DbtProject(warehouse, tmp_path).run("build", "--vars", "{what_to_show: ADJUSTED_LAST}")
    assert built.returncode == 0, built.output[-4000:]
    for symbol in ("AAPL", "MSFT"):
        adjusted = {row[0]: row[4] for row in latest_bars(warehouse, symbol, "ADJUSTED_LAST")}
        traded = {row[0]: row[4] for row in latest_bars(warehouse, symbol, "TRADES")}
        mart = dict(query(warehouse, "select session_date, close from marts.training_bars where symbol = %s", symbol))
        assert len(mart) > 300 and all(mart[day] == adjusted[day] for day in mart)
        # Dividends make the difference: the older the session, the lower its adjusted close.
        first = min(mart)
        assert mart[first] < traded[first]
    coverage = query(
        warehouse,
        "select what_to_show, training_rows > 0 from marts.symbol_coverage where symbol = 'AAPL' order by 1",
    )
    assert coverage == [("ADJUSTED_LAST", True), ("TRADES", False)]
