"""Deterministic synthetic daily bars on real NYSE sessions, COPYed straight into ``raw``.

Used by the dbt tests (tests/test_dbt_*.py) and the dbt benchmark (bench/bench_dbt.py); also handy by
hand to fill a scratch database:

    .venv/bin/python -m devtools.synthetic_bars --database scratch --symbols 20 --start 2023-01-01 --end 2024-06-30

Prices follow a geometric random walk per symbol (seeded), with open/high/low consistent with close
(low <= open, close <= high) and a positive volume. Rows have the columns of ``ingest.raw_tables`` (the one
definition of the raw tables) and look like what its landing path writes: daily bars with bar_time at 00:00
America/New_York of the session, lineage columns filled, and one raw.load_batches row per symbol.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import string
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from ingest.raw_tables import IBKR_BARS, LOAD_BATCHES, LoadBatch, RawBar, open_for_landing
from ingest.symbols import normalize_symbol
from market_calendar import EXCHANGE_TIMEZONE, sessions_in_range
from warehouse_db import schemas

logger = logging.getLogger("synthetic_bars")


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate: which symbols, which sessions, how it was 'landed'."""

    symbols: Sequence[str]
    start: str
    end: str
    seed: int = 7
    ingested_at: datetime | None = None
    """Landing time of every row; default: 2 days before now (so an incremental build's lookback skips them)."""
    source: str = "ibkr"
    bar_size: str = "1 day"
    what_to_show: str = "TRADES"
    use_rth: bool = True


def nyse_sessions(start: str, end: str) -> pd.DatetimeIndex:
    """NYSE session dates between start and end (inclusive), tz-naive."""
    return sessions_in_range(start, end)


def con_id_for(symbol: str) -> int:
    """The contract id of ``symbol``'s bars: the same in every call, as IBKR's never change, and one per symbol as
    staging spells it (brk.b and BRK B are one contract). 56 bits of a hash, so that two symbols share one only by a
    chance of about n^2 / 2^57; a shared one is what int_bars_deduplicated_one_symbol_per_contract fails on."""
    spelled = symbol.strip().upper().replace(".", " ")
    return int.from_bytes(hashlib.sha256(spelled.encode()).digest()[:7], "big") or 1


def symbol_names(count: int) -> list[str]:
    """``count`` distinct valid tickers: A..Z, then AA.., AAA.. (deterministic)."""
    letters = string.ascii_uppercase
    names: list[str] = []
    length = 1
    while len(names) < count:
        for index in range(len(letters) ** length):
            name, rest = "", index
            for _ in range(length):
                name = letters[rest % 26] + name
                rest //= 26
            names.append("S" + name if length > 1 else "S" + name)
            if len(names) == count:
                break
        length += 1
    return names


def generate_bars(config: SyntheticConfig, sessions: pd.DatetimeIndex | None = None) -> pd.DataFrame:
    """One DataFrame with a row per symbol and session, columns as raw.ibkr_bars."""
    sessions = nyse_sessions(config.start, config.end) if sessions is None else sessions
    rng = np.random.default_rng(config.seed)
    n_symbols, n_sessions = len(config.symbols), len(sessions)
    start_price = rng.uniform(5.0, 500.0, size=(n_symbols, 1))
    log_returns = rng.normal(0.0003, 0.02, size=(n_symbols, n_sessions))
    close = start_price * np.exp(np.cumsum(log_returns, axis=1))
    previous_close = np.concatenate([start_price, close[:, :-1]], axis=1)
    open_ = previous_close * np.exp(rng.normal(0.0, 0.005, size=close.shape))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.02, size=close.shape))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.02, size=close.shape))
    volume = np.round(rng.lognormal(13.0, 0.5, size=close.shape))
    wap = (open_ + high + low + close) / 4.0
    bar_count = rng.integers(1_000, 50_000, size=close.shape)

    ingested_at = config.ingested_at or (datetime.now(UTC) - timedelta(days=2))
    bar_times = sessions.tz_localize(EXCHANGE_TIMEZONE)
    # Lineage ids are unique per call (a re-delivery is a new batch); the bar values are seeded.
    load_id = uuid.uuid4()
    batch_ids = [uuid.uuid4() for _ in config.symbols]
    values = {
        "symbol": np.repeat(np.asarray(config.symbols, dtype=object), n_sessions),
        "con_id": np.repeat(np.asarray([con_id_for(symbol) for symbol in config.symbols], dtype=np.int64), n_sessions),
        "exchange": "SMART",
        "currency": "USD",
        "bar_size": config.bar_size,
        "what_to_show": config.what_to_show,
        "use_rth": config.use_rth,
        "bar_time": bar_times[np.tile(np.arange(n_sessions), n_symbols)],
        "session_date": np.tile(sessions.date, n_symbols),
        "open": open_.ravel(),
        "high": high.ravel(),
        "low": low.ravel(),
        "close": close.ravel(),
        "volume": volume.ravel(),
        "wap": wap.ravel(),
        "bar_count": bar_count.ravel(),
        "source": config.source,
        "load_id": load_id,
        "batch_id": np.repeat(np.asarray(batch_ids, dtype=object), n_sessions),
        "ingested_at": ingested_at,
    }
    # Every column of raw.ibkr_bars, in its order; a source column this generator does not fill gets RawBar's default.
    return pd.DataFrame({name: values.get(name, RawBar._field_defaults.get(name)) for name in IBKR_BARS.column_names})


PRICE_COLUMNS = ("open", "high", "low", "close", "wap")


def join_prices(frame: pd.DataFrame, neighbour: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each symbol's prices scaled so that it joins ``neighbour``'s bars without a jump.

    Bars after the neighbour's continue from its last close; bars before it lead into its first open. Every call
    of :func:`generate_bars` starts its own random walk at its own level, and appending one such frame to another
    would put a price gap between them that no real series has (and that the dbt test for unadjusted splits may
    rightly flag). Symbols are matched as staging normalises them (``brk.b`` and ``BRK B`` are one series).
    """
    frame = frame.copy()
    keys = frame["symbol"].map(normalize_symbol)
    ends = (
        neighbour.assign(key=neighbour["symbol"].map(normalize_symbol))
        .sort_values("session_date")
        .groupby("key")
        .agg(
            first_session=("session_date", "first"),
            first_open=("open", "first"),
            last_session=("session_date", "last"),
            last_close=("close", "last"),
        )  # fmt: skip
    )
    for key, index in frame.groupby(keys).groups.items():
        if key not in ends.index:
            continue
        part, neighbour_ends = frame.loc[index].sort_values("session_date"), ends.loc[key]
        if part["session_date"].iloc[0] > neighbour_ends["last_session"]:
            factor = neighbour_ends["last_close"] / part["open"].iloc[0]
        elif part["session_date"].iloc[-1] < neighbour_ends["first_session"]:
            factor = neighbour_ends["first_open"] / part["close"].iloc[-1]
        else:
            continue
        frame.loc[index, list(PRICE_COLUMNS)] *= factor
    return frame


def copy_bars(
    conn: psycopg.Connection,
    frame: pd.DataFrame,
    *,
    readjustment_factors: Mapping[str, float] | None = None,
    failed_batches: Sequence[LoadBatch] = (),
) -> int:
    """COPY a frame with raw.ibkr_bars' columns, and one ok raw.load_batches row per batch, into raw in one
    transaction (as role loader); returns rows written. ``readjustment_factors`` marks a symbol's batch as a
    re-adjusted history (old units per new unit), as ingest does after a split. ``failed_batches`` land as they are,
    beside the others: a request that failed lands its batch row and no bar."""
    factors = readjustment_factors or {}
    columns = sql.SQL(", ").join(map(sql.Identifier, IBKR_BARS.column_names))
    with conn.transaction():
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(schemas.LOADER_ROLE)))
        with conn.cursor() as cur:
            statement = sql.SQL("copy {} ({}) from stdin (format csv)").format(IBKR_BARS.identifier, columns)
            with cur.copy(statement) as copy:
                for chunk in _csv_chunks(frame[list(IBKR_BARS.column_names)]):
                    copy.write(chunk)
            statement = sql.SQL("copy {} ({}) from stdin").format(
                LOAD_BATCHES.identifier, sql.SQL(", ").join(map(sql.Identifier, LoadBatch._fields))
            )
            with cur.copy(statement) as copy:
                for row in batch_rows(frame):
                    copy.write_row(row._replace(readjustment_factor=factors.get(row.symbol)))
                for row in failed_batches:
                    copy.write_row(row)
    return len(frame)


def batch_rows(frame: pd.DataFrame) -> list[LoadBatch]:
    """One ok raw.load_batches row per batch of the frame, as the landing path would have written it."""
    batches = frame.groupby(["batch_id"], sort=False).agg(
        load_id=("load_id", "first"),
        source=("source", "first"),
        symbol=("symbol", "first"),
        bar_size=("bar_size", "first"),
        what_to_show=("what_to_show", "first"),
        use_rth=("use_rth", "first"),
        requested_start=("bar_time", "min"),
        requested_end=("bar_time", "max"),
        row_count=("symbol", "size"),
        finished_at=("ingested_at", "max"),
    )
    return [
        LoadBatch(
            batch_id=batch_id,
            load_id=row.load_id,
            source=row.source,
            symbol=row.symbol,
            bar_size=row.bar_size,
            what_to_show=row.what_to_show,
            use_rth=bool(row.use_rth),
            status="ok",
            row_count=int(row.row_count),
            started_at=row.finished_at,
            finished_at=row.finished_at,
            requested_start=row.requested_start,
            requested_end=row.requested_end,
            request_reason="synthetic bars (devtools.synthetic_bars)",
        )
        for batch_id, row in zip(batches.index, batches.itertuples(index=False), strict=True)
    ]


def _csv_chunks(frame: pd.DataFrame, rows: int = 200_000) -> Iterator[bytes]:
    for start in range(0, len(frame), rows):
        buffer = io.StringIO()
        frame.iloc[start : start + rows].to_csv(buffer, header=False, index=False, float_format="%.17g")
        yield buffer.getvalue().encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    from warehouse_db import resolve_settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", help="database in the configured server (default: the configured one)")
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--start", default="2023-01-01")
    parser.add_argument("--end", default="2024-06-30")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    settings = resolve_settings()
    if args.database:
        settings = settings.with_database(args.database)
    frame = generate_bars(SyntheticConfig(symbol_names(args.symbols), args.start, args.end, args.seed))
    with open_for_landing(settings) as conn:
        rows = copy_bars(conn, frame)
    logger.info("landed %d synthetic bars for %d symbols in %s", rows, args.symbols, settings.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
