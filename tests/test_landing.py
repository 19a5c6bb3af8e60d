"""The landing path is atomic: a batch lands whole or not at all, even when the loader is SIGKILLed mid-COPY."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, date, datetime

import pytest

from ingest.landing import Batch, land_batch, new_load_id, utc_now
from ingest.raw_reads import read_bar_spans
from ingest.raw_tables import BarSettings, RawBar
from warehouse_db import connect
from warehouse_db.settings import REPO_ROOT, ConnectionSettings

# A subprocess that lands one big batch, slowly enough to be caught in the middle of its COPY.
LAND_BIG_BATCH = textwrap.dedent(
    """
    import sys
    from datetime import date, datetime, timedelta, timezone
    from ingest.landing import Batch, land_batch, new_load_id, utc_now
    from ingest.raw_tables import BarSettings, RawBar
    from warehouse_db import connect

    rows = int(sys.argv[1])
    start = datetime(2000, 1, 1, tzinfo=timezone.utc)
    def bars():
        for i in range(rows):
            t = start + timedelta(minutes=i)
            yield RawBar("BIG", t, t.date(), 10.0, 11.0, 9.0, 10.5, 100.0, 10.2, 5, con_id=1)
    with connect() as conn:
        batch = Batch(symbol="BIG", settings=BarSettings(bar_size="1 min"), status="ok", started_at=utc_now())
        print(land_batch(conn, load_id=new_load_id(), source="test", batch=batch, bars=bars()), flush=True)
    """
)
BIG_BATCH_ROWS = 1_500_000


def run_lander(settings: ConnectionSettings, rows: int) -> subprocess.Popen:
    env = {**os.environ, **settings.libpq_env()}
    return subprocess.Popen(
        [sys.executable, "-c", LAND_BIG_BATCH, str(rows)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def batch_state(settings: ConnectionSettings) -> tuple[int, list[tuple[str, int]]]:
    with connect(settings) as conn:
        bars = conn.execute("select count(*) from raw.ibkr_bars where symbol = 'BIG'").fetchone()[0]
        batches = conn.execute("select status, row_count from raw.load_batches where symbol = 'BIG'").fetchall()
    return bars, batches


def test_sigkill_in_the_middle_of_a_copy_leaves_nothing_and_a_rerun_lands_everything(warehouse):
    lander = run_lander(warehouse, BIG_BATCH_ROWS)
    deadline = time.monotonic() + 60
    with connect(warehouse, autocommit=True) as observer:
        while time.monotonic() < deadline:
            copying = observer.execute(
                "select count(*) from pg_stat_activity where datname = current_database() and query ilike 'copy %%landing_bars%%'"
            ).fetchone()[0]
            if copying or lander.poll() is not None:
                break
            time.sleep(0.02)
    assert lander.poll() is None, f"the lander finished before it could be killed: {lander.communicate()}"
    time.sleep(0.3)  # well inside the COPY: rows are streaming
    lander.send_signal(signal.SIGKILL)
    lander.wait(timeout=30)
    assert lander.returncode == -signal.SIGKILL

    # The server notices the dead client and rolls back; give it a moment to do so.
    deadline = time.monotonic() + 30
    with connect(warehouse, autocommit=True) as observer:
        while (
            observer.execute(
                "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and state <> 'idle'"
            ).fetchone()[0]
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
    assert batch_state(warehouse) == (0, [])

    rerun = run_lander(warehouse, BIG_BATCH_ROWS)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert int(out.strip()) == BIG_BATCH_ROWS
    assert batch_state(warehouse) == (BIG_BATCH_ROWS, [("ok", BIG_BATCH_ROWS)])


def bar(symbol: str, day: date, close: float) -> RawBar:
    return RawBar(
        symbol=symbol,
        bar_time=datetime(day.year, day.month, day.day, 5, tzinfo=UTC),
        session_date=day,
        open=close,
        high=close + 1,
        low=close - 1,
        close=close,
        volume=1000.0,
        wap=close,
        bar_count=10,
        con_id=42,
        exchange="SMART",
        currency="USD",
    )


def test_a_failing_batch_rolls_back_its_rows_and_its_batch_row(warehouse):
    def bars_then_crash():
        yield bar("AAA", date(2025, 3, 3), 10.0)
        raise RuntimeError("source died mid-batch")

    with connect(warehouse) as conn:
        with pytest.raises(RuntimeError, match="source died"):
            land_batch(
                conn,
                load_id=new_load_id(),
                source="test",
                batch=Batch("AAA", BarSettings(), "ok", utc_now()),
                bars=bars_then_crash(),
            )
        assert conn.execute("select count(*) from raw.ibkr_bars").fetchone()[0] == 0
        assert conn.execute("select count(*) from raw.load_batches").fetchone()[0] == 0


def test_batches_record_status_and_watermarks_follow_ok_bars(warehouse):
    settings = BarSettings()
    with connect(warehouse) as conn:
        load_id = new_load_id()
        landed = land_batch(
            conn,
            load_id=load_id,
            source="test",
            batch=Batch("AAA", settings, "ok", utc_now()),
            bars=[bar("AAA", date(2025, 3, 3), 10.0), bar("AAA", date(2025, 3, 4), 11.0)],
        )
        empty = land_batch(conn, load_id=load_id, source="test", batch=Batch("BBB", settings, "ok", utc_now()), bars=[])
        failed = land_batch(
            conn,
            load_id=load_id,
            source="test",
            batch=Batch(
                "CCC",
                settings,
                "failed",
                utc_now(),
                error_code=200,
                error_message="No security definition has been found",
            ),
            bars=[],
        )
        statuses = conn.execute(
            "select symbol, status, row_count, error_code from raw.load_batches order by symbol"
        ).fetchall()
        spans = read_bar_spans(conn, settings)
        other_settings = read_bar_spans(conn, BarSettings(what_to_show="ADJUSTED_LAST"))
    assert (landed, empty, failed) == (2, 0, 0)
    assert statuses == [("AAA", "ok", 2, None), ("BBB", "no_data", 0, None), ("CCC", "failed", 0, 200)]
    assert spans == {"AAA": (datetime(2025, 3, 3, 5, tzinfo=UTC), datetime(2025, 3, 4, 5, tzinfo=UTC))}
    assert other_settings == {}


def test_bars_are_stamped_with_the_database_clock_not_the_loaders(warehouse, monkeypatch):
    # dbt's incremental models find new bars by ingested_at against the database's current_timestamp: a loader
    # machine whose clock runs three hours behind must not land bars that look older than the last build.
    import ingest.landing

    behind = datetime(2020, 1, 1, tzinfo=UTC)
    monkeypatch.setattr(ingest.landing, "utc_now", lambda: behind)
    with connect(warehouse) as conn:
        land_batch(
            conn,
            load_id=new_load_id(),
            source="test",
            batch=Batch("AAA", BarSettings(), "ok", behind),
            bars=[bar("AAA", date(2025, 3, 3), 10.0)],
        )
        ingested_at, finished_at, skew = conn.execute(
            "select b.ingested_at, l.finished_at, now() - b.ingested_at "
            "from raw.ibkr_bars as b join raw.load_batches as l using (batch_id)"
        ).fetchone()
    assert ingested_at == finished_at
    assert abs(skew.total_seconds()) < 60, f"ingested_at {ingested_at} is not the database's clock"
