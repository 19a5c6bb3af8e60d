"""dbt rebuilding the warehouse while others read it (warehouse/macros/materializations_in_place.sql).

A rebuilt view or table keeps its identity, so the mart views that read it stay (an analyst never finds one missing,
a `--select` run never drops one for good), a reader's open transaction holds no plain `dbt build` back, and two
runs at once take turns on each incremental model and in the on-run-start hooks.
Real dbt, real PostgreSQL; one small warehouse built per module and copied for each test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devtools import dbt_harness, scratch_database, synthetic_bars
from warehouse_db import connect, schemas
from warehouse_db.settings import ConnectionSettings

SYMBOLS = ["SA", "SB"]
START, END = "2021-01-04", "2023-12-29"  # 3 years: one fold fits, so every mart has rows


@pytest.fixture(scope="module")
def built(embedded_cluster: ConnectionSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = scratch_database.create_database(embedded_cluster, "test_dbt_concurrency")
    dbt_harness.prepare_raw(settings)
    frame = synthetic_bars.generate_bars(synthetic_bars.SyntheticConfig(SYMBOLS, START, END, seed=5))
    with connect(settings) as conn:
        synthetic_bars.copy_bars(conn, frame)
    dbt_harness.DbtProject(settings, tmp_path_factory.mktemp("dbt_concurrency")).run("build", check=True)
    yield settings.dbname
    scratch_database.drop_database(settings)


@pytest.fixture
def project(built: str, dbt_series: dbt_harness.ScratchSeries) -> Iterator[dbt_harness.DbtProject]:
    with dbt_series.database(template=built) as settings:
        yield dbt_series.project(settings)


def relations(settings: ConnectionSettings) -> dict[str, tuple[str, int]]:
    """Every relation dbt builds past staging: name -> (kind, oid)."""
    with connect(settings) as conn:
        rows = conn.execute(
            "select n.nspname || '.' || c.relname, c.relkind::text, c.oid::int from pg_class c "
            "join pg_namespace n on n.oid = c.relnamespace where n.nspname = any(%s) and c.relkind in ('r', 'v')",
            ([schemas.INTERMEDIATE, schemas.MARTS],),
        ).fetchall()
    return {name: (kind, oid) for name, kind, oid in rows}


def test_a_selected_rebuild_keeps_the_mart_views_that_read_what_it_rebuilt(project: dbt_harness.DbtProject) -> None:
    """dbt's own materializations swap a new relation in and drop the old one with CASCADE: every view reading it
    went too, and a run that did not select those views (here: the folds and two intermediate models) left
    marts.walk_forward_fold_rows, marts.bar_corrections and marts.symbol_coverage missing until the next full run."""
    before = relations(project.settings)
    assert {
        f"{schemas.MARTS}.{name}" for name in ("walk_forward_fold_rows", "bar_corrections", "symbol_coverage")
    } <= set(before)
    selected = ("walk_forward_folds", "int_calendar_days_numbered", "int_bar_corrections", "walk_forward_plan")
    project.run("run", "--select", *selected, check=True)
    after = relations(project.settings)
    assert after == before  # every relation still there, each the same one (its oid)
    with connect(project.settings, role=schemas.ANALYST_ROLE) as conn:
        assert conn.execute(f"select count(*) from {schemas.MARTS}.walk_forward_fold_rows").fetchone()[0] > 0


def test_a_readers_open_transaction_holds_no_build_back_and_keeps_its_snapshot(project: dbt_harness.DbtProject) -> None:
    """An analyst in the middle of a transaction over every mart (a notebook left open): `dbt build` used to wait for
    it without a word (the seed's TRUNCATE and every table swap need the reader gone) for as long as it stayed open.
    Now the build goes through, and the reader's snapshot still reads every mart, unchanged, until it ends."""
    marts = sorted(name for name in relations(project.settings) if name.startswith(f"{schemas.MARTS}."))
    counts = f"select {', '.join(f'(select count(*) from {name})' for name in marts)}"
    reader = connect(project.settings, role=schemas.ANALYST_ROLE)
    try:
        reader.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        seen = reader.execute(counts).fetchone()  # the transaction stays open, holding its locks
        # Rows of the last session change, so that the build has something to rewrite everywhere.
        with connect(project.settings) as conn:
            conn.execute(
                "update raw.ibkr_bars set open = open * 1.01, high = high * 1.01, low = low * 1.01, close = close * 1.01, "
                "ingested_at = now() where session_date = %s",
                (END,),
            )
        # The old build waited on the reader for as long as it stayed open: it fails as soon as any session is seen
        # waiting for the reader (a fixed 90 s limit was 24 s more than a build took on a busy machine).
        built: dict[str, dbt_harness.DbtResult] = {}
        build = threading.Thread(target=lambda: built.__setitem__("build", project.run("build", timeout=1800)))
        build.start()
        with connect(project.settings, autocommit=True) as watcher:
            held_back = 0
            while build.is_alive() and not held_back:
                held_back = watcher.execute(
                    "select count(*) from pg_stat_activity where %s = any(pg_blocking_pids(pid))",
                    (reader.info.backend_pid,),
                ).fetchone()[0]
                time.sleep(0.2)
        if held_back:
            reader.close()  # lets the build go on, so that it ends
            build.join()
            pytest.fail(f"the build waited for the reader's open transaction:\n{built['build'].output[-4000:]}")
        build.join()
        result = built["build"]
        assert result.returncode == 0, result.output[-4000:]
        assert reader.execute(counts).fetchone() == seen
        reader.rollback()
        assert reader.execute(counts).fetchone() == seen  # same rows, rebuilt
    finally:
        reader.close()


def test_two_runs_at_once_take_turns_on_each_incremental_model(project: dbt_harness.DbtProject, tmp_path: Path) -> None:
    """`dbt run` in two terminals at once: both computed the same new rows of an incremental model, and the second's
    insert failed with "duplicate key value violates unique constraint". Now each locks the model's table first, and
    the second adds to what the first committed. Both runs are held at that table (by a transaction of the test's
    own, which writers wait for) until both are seen waiting there, so the two always meet."""
    table = f"{schemas.INTERMEDIATE}.int_bars_deduplicated"
    runs = [dbt_harness.DbtProject(project.settings, tmp_path / name) for name in ("first", "second")]
    results: dict[int, dbt_harness.DbtResult] = {}
    with connect(project.settings) as conn:  # every bar landed again: both runs have every key to rebuild
        conn.execute("update raw.ibkr_bars set ingested_at = now()")
    with connect(project.settings) as gate:
        gate.execute(f"lock table {table} in share row exclusive mode")
        threads = [
            threading.Thread(target=lambda i=i, run=run: results.__setitem__(i, run.run("run", timeout=180)))
            for i, run in enumerate(runs)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        with connect(project.settings, autocommit=True) as watcher:
            while time.monotonic() < deadline:
                waiting = watcher.execute(
                    "select count(*) from pg_locks where relation = %s::regclass and not granted", (table,)
                ).fetchone()[0]
                if waiting == 2 or not any(thread.is_alive() for thread in threads):
                    break
                time.sleep(0.05)
        assert waiting == 2, "both runs should wait at the incremental model's table"
        gate.rollback()  # both go
    for thread in threads:
        thread.join(200)
    for result in results.values():
        assert result.returncode == 0, result.output[-3000:]
    with connect(project.settings) as conn:
        rows, keys = conn.execute(
            f"select count(*), count(distinct (symbol, bar_size, what_to_show, use_rth, session_date)) from {table}"
        ).fetchone()
    assert rows == keys > 0


def test_two_runs_at_once_take_turns_in_the_on_run_start_hooks(project: dbt_harness.DbtProject) -> None:
    """Both commands' on-run-start hooks replace the ema functions and grant on the marts schema; PostgreSQL refused the
    second of two concurrent replacements with "tuple concurrently updated", and that dbt run failed (1 in 5 runs of
    the test above). Here the test's own transaction plays the first run, caught in the middle of its hook: it holds
    the hooks' lock and has just altered the function, uncommitted. The real run must wait for it, then succeed."""
    ema_step = (
        f"{schemas.INTERMEDIATE}.ema_step(double precision, double precision, double precision, double precision)"
    )
    with connect(project.settings) as first_run:
        first_run.execute("select pg_advisory_xact_lock(hashtext('warehouse.on_run_start'))")
        first_run.execute(f"alter function {ema_step} cost 100")
        result: dict[str, dbt_harness.DbtResult] = {}
        second = threading.Thread(target=lambda: result.__setitem__("run", project.run("run", "--select", "stg_ibkr__bars",
                                                                                       timeout=180)))  # fmt: skip
        second.start()
        deadline = time.monotonic() + 120
        with connect(project.settings, autocommit=True) as watcher:
            waiting = 0
            while time.monotonic() < deadline and second.is_alive() and not waiting:
                waiting = watcher.execute(
                    "select count(*) from pg_locks where not granted and pid <> %s", (first_run.info.backend_pid,)
                ).fetchone()[0]
                time.sleep(0.05)
        assert waiting, "the second run should wait for the first run's hook"
        first_run.commit()
    second.join(200)
    assert result["run"].returncode == 0, result["run"].output[-3000:]
