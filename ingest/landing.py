"""The landing path: bars from any source into ``raw`` with COPY, one batch at a time, all or nothing.

A batch is one symbol's answer to one request. Its bars are COPYed into a temporary table and moved into
``raw.ibkr_bars`` with a single INSERT in the same transaction that writes the batch's ``raw.load_batches``
row. If the process dies anywhere before COMMIT, PostgreSQL discards the transaction: no bar of that batch
and no 'ok' row for it exist, and the next run sees the symbol as still missing.

Every value travels as COPY data or as a bound parameter; nothing from a source is ever spliced into SQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal

import psycopg

from warehouse_db import schemas

BatchStatus = Literal["ok", "no_data", "failed"]

# Columns a source provides for each bar, in COPY order. Lineage columns are added by the INSERT.
BAR_COLUMNS = (
    "symbol",
    "con_id",
    "exchange",
    "currency",
    "bar_time",
    "session_date",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "wap",
    "bar_count",
)
_BAR_COPY_TYPES = (
    "text",
    "int8",
    "text",
    "text",
    "timestamptz",
    "date",
    "float8",
    "float8",
    "float8",
    "float8",
    "float8",
    "float8",
    "int4",
)

_LANDING_COLUMNS = ", ".join(f"{name} {type_}" for name, type_ in zip(BAR_COLUMNS, _BAR_COPY_TYPES, strict=True))

LANDING_DDL = f"""
create table if not exists {schemas.RAW}.ibkr_bars (
    symbol text not null,
    con_id bigint,
    exchange text,
    currency text,
    bar_size text not null,
    what_to_show text not null,
    use_rth boolean not null,
    bar_time timestamptz not null,
    session_date date not null,
    open double precision not null,
    high double precision not null,
    low double precision not null,
    close double precision not null,
    volume double precision,
    wap double precision,
    bar_count integer,
    source text not null,
    load_id uuid not null,
    batch_id uuid not null,
    ingested_at timestamptz not null
);
comment on table {schemas.RAW}.ibkr_bars is
    'Bars exactly as a source sent them; append-only (a bar may arrive many times, dbt dedupes: latest ingested_at wins).';
create index if not exists ibkr_bars_watermark_idx
    on {schemas.RAW}.ibkr_bars (symbol, bar_size, what_to_show, use_rth, bar_time);

create table if not exists {schemas.RAW}.load_batches (
    batch_id uuid primary key,
    load_id uuid not null,
    source text not null,
    symbol text not null,
    bar_size text not null,
    what_to_show text not null,
    use_rth boolean not null,
    requested_start timestamptz,
    requested_end timestamptz,
    status text not null check (status in ('ok', 'no_data', 'failed')),
    row_count integer not null,
    error_code integer,
    error_message text,
    started_at timestamptz not null,
    finished_at timestamptz not null
);
comment on table {schemas.RAW}.load_batches is
    'One row per symbol request of a load: what was asked, what came back (ok / no_data / failed) and why.';
"""


@dataclass(frozen=True)
class BarSettings:
    """What kind of bars a request asks for; part of every raw row's key."""

    bar_size: str = "1 day"
    what_to_show: str = "TRADES"
    use_rth: bool = True


@dataclass(frozen=True)
class RawBar:
    """One bar as the source reported it (prices unadjusted by us)."""

    symbol: str
    con_id: int | None
    exchange: str | None
    currency: str | None
    bar_time: datetime
    session_date: date
    open: float
    high: float
    low: float
    close: float
    volume: float | None
    wap: float | None
    bar_count: int | None

    def as_row(self) -> tuple:
        return (
            self.symbol,
            self.con_id,
            self.exchange,
            self.currency,
            self.bar_time,
            self.session_date,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            self.wap,
            self.bar_count,
        )


@dataclass
class Batch:
    """The outcome of one symbol request, as recorded in ``raw.load_batches``."""

    symbol: str
    settings: BarSettings
    status: BatchStatus
    started_at: datetime
    requested_start: datetime | None = None
    requested_end: datetime | None = None
    error_code: int | None = None
    error_message: str | None = None
    finished_at: datetime | None = None
    batch_id: uuid.UUID = field(default_factory=uuid.uuid4)


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_load_id() -> uuid.UUID:
    """One id per loader run; every batch and bar of the run carries it."""
    return uuid.uuid4()


def ensure_landing_tables(conn: psycopg.Connection) -> None:
    """Create the raw landing tables (idempotent), owned by the loader role."""
    with conn.transaction():
        # Concurrent first runs would race on CREATE TABLE IF NOT EXISTS (pg_type_typname_nsp_index): take turns.
        conn.execute("select pg_advisory_xact_lock(hashtext('ingest.landing_tables'))")
        conn.execute(f"set local role {schemas.LOADER_ROLE}")
        conn.execute(LANDING_DDL)


def land_batches(
    conn: psycopg.Connection,
    *,
    load_id: uuid.UUID,
    source: str,
    batches: Sequence[tuple[Batch, Iterable[RawBar | tuple]]],
) -> list[int]:
    """Land several batches in ONE transaction (a CSV file is all or nothing); returns rows per batch."""
    counts: list[int] = []
    with conn.transaction():
        conn.execute(f"set local role {schemas.LOADER_ROLE}")
        # Only the source's columns, no constraints: raw keeps exactly what was sent.
        conn.execute(f"create temporary table if not exists landing_bars ({_LANDING_COLUMNS}) on commit delete rows")
        for batch, bars in batches:
            counts.append(_land_one(conn, load_id=load_id, source=source, batch=batch, bars=bars))
    return counts


def land_batch(
    conn: psycopg.Connection,
    *,
    load_id: uuid.UUID,
    source: str,
    batch: Batch,
    bars: Iterable[RawBar | tuple],
) -> int:
    """Land one batch atomically; returns the number of bars landed."""
    return land_batches(conn, load_id=load_id, source=source, batches=[(batch, bars)])[0]


def _land_one(
    conn: psycopg.Connection, *, load_id: uuid.UUID, source: str, batch: Batch, bars: Iterable[RawBar | tuple]
) -> int:
    columns = ", ".join(BAR_COLUMNS)
    with conn.cursor() as cur:
        cur.execute("truncate landing_bars")
        with cur.copy(f"copy landing_bars ({columns}) from stdin (format binary)") as copy:
            copy.set_types(_BAR_COPY_TYPES)
            for bar in bars:
                copy.write_row(bar.as_row() if isinstance(bar, RawBar) else bar)
        settings = batch.settings
        ingested_at = utc_now()
        cur.execute(
            f"""
            insert into {schemas.RAW}.ibkr_bars
                ({columns}, bar_size, what_to_show, use_rth, source, load_id, batch_id, ingested_at)
            select {columns}, %s, %s, %s, %s, %s, %s, %s
            from landing_bars
            """,
            (settings.bar_size, settings.what_to_show, settings.use_rth, source, load_id, batch.batch_id, ingested_at),
        )
        row_count = cur.rowcount
        status: BatchStatus = batch.status
        if status == "ok" and row_count == 0:
            status = "no_data"
        cur.execute(
            f"""
            insert into {schemas.RAW}.load_batches
                (batch_id, load_id, source, symbol, bar_size, what_to_show, use_rth, requested_start,
                 requested_end, status, row_count, error_code, error_message, started_at, finished_at)
            values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            (
                batch.batch_id,
                load_id,
                source,
                batch.symbol,
                settings.bar_size,
                settings.what_to_show,
                settings.use_rth,
                batch.requested_start,
                batch.requested_end,
                status,
                row_count,
                batch.error_code,
                batch.error_message,
                batch.started_at,
                batch.finished_at or ingested_at,
            ),
        )
    return row_count


def read_watermarks(conn: psycopg.Connection, settings: BarSettings) -> dict[str, datetime]:
    """The latest landed bar_time per symbol for these bar settings: where an incremental fetch resumes."""
    rows = conn.execute(
        f"""
        select symbol, max(bar_time)
        from {schemas.RAW}.ibkr_bars
        where bar_size = %s and what_to_show = %s and use_rth = %s
        group by symbol
        """,
        (settings.bar_size, settings.what_to_show, settings.use_rth),
    ).fetchall()
    return dict(rows)
