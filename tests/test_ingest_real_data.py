"""IBKR data as it behaves over months: a split re-adjusts the whole history, a session still trading is not a final
bar, adjusted prices can build the mart. The real ib_async client against the gateway simulator on a pinned clock,
the real warehouse and real dbt.

The simulator's days are pinned in the past (late 2026); each load passes the same moment as its planning clock,
so the loader and the simulator agree on what "now" is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

import pytest

from devtools import dbt_harness
from devtools.scratch_database import scratch_database
from gateway_simulator import GatewaySimulator, SimulatorConfig, Split, run_simulator_in_thread
from gateway_simulator.bars import BarGenerator
from gateway_simulator.sessions import nyse_calendar
from ingest.ibkr.config import IbkrSettings
from ingest.ibkr.loader import LoadSummary, load
from ingest.ibkr.options import LoadOptions
from ingest.raw_tables import BarSettings, open_for_landing
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


# --- a split ---------------------------------------------------------------------------------------------

BEFORE, AFTER = datetime(2026, 10, 16, 18, 0, tzinfo=NY), datetime(2026, 10, 23, 18, 0, tzinfo=NY)
SPLIT = Split("AAPL", date(2026, 10, 21), 10)  # a 10-for-1 split between the two loads


def test_a_split_re_fetches_the_whole_window_and_the_mart_equals_a_fresh_load(warehouse, embedded_cluster, tmp_path):
    with simulator(end_date=BEFORE.date(), splits=(SPLIT,)) as sim:
        first = load_at(warehouse, sim, [AAPL, MSFT], BEFORE, months=12)
    assert first.ok and first.count("landed") == 2

    with simulator(end_date=AFTER.date(), splits=(SPLIT,)) as sim:
        second = load_at(warehouse, sim, [AAPL, MSFT], AFTER, months=12)
        # AAPL: the usual incremental request, then its whole window again; MSFT: the incremental request only.
        assert [r.symbol for r in sim.stats.requests_log].count("AAPL") == 2 and sim.stats.historical_requests == 3
    aapl, msft = second.results
    assert aapl.status == "landed" and aapl.readjustment is not None and msft.readjustment is None
    assert aapl.readjustment.factor == pytest.approx(0.1, rel=0.01) and aapl.readjustment.volume_inverse
    ((factor, reason, start),) = query(
        warehouse,
        "select readjustment_factor, request_reason, requested_start from raw.load_batches "
        "where symbol = 'AAPL' and readjustment_factor is not null",
    )
    assert factor == pytest.approx(0.1, rel=0.01) and "10-for-1 split" in reason
    assert start == datetime(2025, 10, 16, tzinfo=NY)  # back to the first load's start: nothing old is left

    # A fresh load of the same window, after the split, straight into another database.
    with scratch_database("test_fresh_load", embedded_cluster) as fresh:
        open_for_landing(fresh).close()
        with simulator(end_date=AFTER.date(), splits=(SPLIT,)) as sim:
            assert load_at(fresh, sim, [AAPL], AFTER, months=24).ok
        assert latest_bars(warehouse, "AAPL") == latest_bars(fresh, "AAPL")

        built = dbt_harness.DbtProject(warehouse, tmp_path / "incremental").run("build")
        assert built.returncode == 0, built.output[-4000:]
        assert built.statuses()["int_bars_deduplicated_no_unadjusted_splits"] == "pass"
        fresh_built = dbt_harness.DbtProject(fresh, tmp_path / "fresh").run("build")
        assert fresh_built.returncode == 0, fresh_built.output[-4000:]
        rows = mart_rows(warehouse, "AAPL")
        assert len(rows) > 200 and rows == mart_rows(fresh, "AAPL")
    coverage = query(
        warehouse,
        "select symbol, readjustments, last_readjustment_factor from marts.symbol_coverage order by symbol",
    )
    assert [(s, n) for s, n, _ in coverage] == [("AAPL", 1), ("MSFT", 0)]
    assert coverage[0][2] == pytest.approx(0.1, rel=0.01) and coverage[1][2] is None


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


# --- adjusted prices ---------------------------------------------------------------------------------------


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
