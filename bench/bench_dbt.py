"""Benchmark: dbt full build vs incremental build of the warehouse on synthetic daily bars.

For each size (150 symbols x 1 year, then 5,000 symbols x 10 years = ~12.6 M raw rows) it:
  1. creates its own database in the embedded cluster, provisions it, COPYs the synthetic history into
     raw (landed now, as `make ingest` right before `make dbt-build` lands it),
  2. times `dbt run --full-refresh` (every model; the baseline),
  3. times `dbt run` with nothing new landed (incremental; the history is still within var raw_lookback, so
     it is re-read, as the build after a first load re-reads it),
  4. lands one new session for every symbol and times `dbt run` (incremental),
  5. prints the times and the ratios nothing-new / full and incremental / full (target: <= 10 % at the large size),
  6. times `dbt test` on the result (every data test; not part of the ratio), and at the small size
     checks that a full refresh gives the same training_bars as the incremental build.

    .venv/bin/python bench/bench_dbt.py               # both sizes (the large one takes a while)
    .venv/bin/python bench/bench_dbt.py --small-only  # 150 x 1 year only

Results are also written to bench/results/bench_dbt.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from command_line import OneLineParser
from devtools import dbt_harness, scratch_database, synthetic_bars
from training.features import read_mart_schema
from warehouse_db import connect, embedded
from warehouse_db.settings import REPO_ROOT

logger = logging.getLogger("bench_dbt")
RESULTS = REPO_ROOT / "bench" / "results" / "bench_dbt.json"


@dataclass(frozen=True)
class Size:
    name: str
    symbols: int
    start: str
    end: str


SMALL = Size("150 symbols x 1 year", 150, "2024-01-01", "2024-12-31")
LARGE = Size("5000 symbols x 10 years", 5000, "2015-01-01", "2024-12-31")


@dataclass
class Measurement:
    size: str
    raw_rows: int
    load_seconds: float
    full_seconds: float
    nothing_new_seconds: float
    nothing_new_ratio: float
    incremental_seconds: float
    ratio: float
    test_seconds: float
    mart_rows: int
    incremental_equals_full: bool | None


def land_history(settings, size: Size, chunk_symbols: int = 250) -> int:
    names = synthetic_bars.symbol_names(size.symbols)
    sessions = synthetic_bars.nyse_sessions(size.start, size.end)
    landed_at = datetime.now(UTC)
    rows = 0
    with connect(settings) as conn:
        for index, first in enumerate(range(0, len(names), chunk_symbols)):
            config = synthetic_bars.SyntheticConfig(
                names[first : first + chunk_symbols], size.start, size.end, seed=1000 + index, ingested_at=landed_at
            )
            rows += synthetic_bars.copy_bars(conn, synthetic_bars.generate_bars(config, sessions))
            logger.info("landed %s rows", f"{rows:,}")
        conn.execute("analyze raw.ibkr_bars")
        conn.commit()
    return rows


def land_next_session(settings, size: Size) -> str:
    """One new bar for every symbol, on the session after the history, landed now."""
    after = datetime.fromisoformat(size.end).date() + timedelta(days=1)
    session = synthetic_bars.nyse_sessions(str(after), str(after + timedelta(days=10)))[:1]
    config = synthetic_bars.SyntheticConfig(
        synthetic_bars.symbol_names(size.symbols), str(session[0].date()), str(session[0].date()), seed=99,
        ingested_at=datetime.now(UTC),
    )  # fmt: skip
    with connect(settings) as conn:
        last = pd.DataFrame(
            conn.execute(
                "select distinct on (symbol) symbol, session_date, open, close from raw.ibkr_bars "
                "order by symbol, bar_time desc"
            ).fetchall(),
            columns=["symbol", "session_date", "open", "close"],
        )
        # The new bars continue each symbol's last close, as a real next session would.
        new_bars = synthetic_bars.join_prices(synthetic_bars.generate_bars(config, session), last)
        synthetic_bars.copy_bars(conn, new_bars)
    return str(session[0].date())


def mart_digest(settings) -> tuple[int, str]:
    schema = read_mart_schema()
    columns = ["symbol", "session_date", "open", "high", "low", "close", "volume", *schema.feature_names, schema.target]
    return dbt_harness.table_digest(settings, "marts.training_bars", columns, ["symbol", "session_date"])


def measure(size: Size, keep: bool) -> Measurement:
    cluster = embedded.start()
    settings = scratch_database.create_database(cluster, "bench_dbt")
    work_dir = Path(tempfile.mkdtemp(prefix="bench_dbt_"))
    project = dbt_harness.DbtProject(settings, work_dir)
    try:
        dbt_harness.prepare_raw(settings)
        started = time.perf_counter()
        raw_rows = land_history(settings, size)
        load_seconds = time.perf_counter() - started
        logger.info("%s: %s raw rows landed in %.1f s", size.name, f"{raw_rows:,}", load_seconds)
        project.run("seed", check=True)

        full = project.run("run", "--full-refresh", check=True)
        logger.info("%s: full build %.1f s", size.name, full.seconds)
        nothing_new = project.run("run", check=True)
        logger.info("%s: incremental build, nothing new %.1f s", size.name, nothing_new.seconds)
        session = land_next_session(settings, size)
        incremental = project.run("run", check=True)
        logger.info("%s: incremental build (session %s) %.1f s", size.name, session, incremental.seconds)
        tests = project.run("test")
        failed = tests.failed()
        if failed:
            logger.warning("data tests failed: %s", sorted(failed))
        mart_rows, digest = mart_digest(settings)

        equal = None
        if size.symbols * 260 < 1_000_000:
            project.run("run", "--full-refresh", check=True)
            equal = mart_digest(settings) == (mart_rows, digest)
        return Measurement(
            size=size.name, raw_rows=raw_rows, load_seconds=round(load_seconds, 1), full_seconds=round(full.seconds, 1),
            nothing_new_seconds=round(nothing_new.seconds, 1),
            nothing_new_ratio=round(nothing_new.seconds / full.seconds, 4),
            incremental_seconds=round(incremental.seconds, 1), ratio=round(incremental.seconds / full.seconds, 4),
            test_seconds=round(tests.seconds, 1), mart_rows=mart_rows, incremental_equals_full=equal,
        )  # fmt: skip
    finally:
        if not keep:
            scratch_database.drop_database(settings)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small-only", action="store_true", help="only 150 symbols x 1 year")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark databases")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    sizes = [SMALL] if args.small_only else [SMALL, LARGE]
    measurements = [measure(size, args.keep) for size in sizes]
    print()
    print(f"{'size':<26}{'raw rows':>12}{'full s':>9}{'none s':>9}{'none/full':>11}{'incr s':>9}{'incr/full':>11}"
          f"{'tests s':>9}{'mart rows':>12}")  # fmt: skip
    for m in measurements:
        print(f"{m.size:<26}{m.raw_rows:>12,}{m.full_seconds:>9.1f}{m.nothing_new_seconds:>9.1f}"
              f"{m.nothing_new_ratio:>10.1%}{m.incremental_seconds:>9.1f}{m.ratio:>10.1%}"
              f"{m.test_seconds:>9.1f}{m.mart_rows:>12,}")  # fmt: skip
        if m.incremental_equals_full is not None:
            print(f"  incremental == full refresh (training_bars digest): {m.incremental_equals_full}")
    print("none: `dbt run` with nothing new landed; incr: `dbt run` after one new session for every symbol")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps([asdict(m) for m in measurements], indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
