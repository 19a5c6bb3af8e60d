"""How rows land in raw: each landing is one transaction, all of its bars and batch rows or none.

Bars are streamed by binary COPY into a temporary table, then moved into ``raw.ibkr_bars`` by one INSERT in the
same transaction that writes the batches' ``raw.load_batches`` rows. If the process dies anywhere before COMMIT,
PostgreSQL discards the transaction: no bar of it and no batch row exist. The tables themselves, and the connection
a landing starts from, are :mod:`ingest.raw_tables`.

Every value travels as COPY data or as a bound parameter; nothing from a source is ever spliced into SQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import psycopg
from psycopg import sql

from ingest.raw_tables import (
    BAR_SETTINGS_COLUMNS,
    BAR_SOURCE_COLUMNS,
    IBKR_BARS,
    LINEAGE_COLUMNS,
    LOAD_BATCHES,
    BarSettings,
    BatchStatus,
    Column,
    LoadBatch,
    RawBar,
)
from warehouse_db import schemas


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_load_id() -> uuid.UUID:
    """One id per loader run; every batch and bar of the run carries it."""
    return uuid.uuid4()


@dataclass
class Batch:
    """The outcome of one symbol request, as a source reports it; landing turns it into a :class:`LoadBatch`."""

    symbol: str
    settings: BarSettings
    status: BatchStatus
    started_at: datetime
    requested_start: datetime | None = None
    requested_end: datetime | None = None
    error_code: int | None = None
    error_message: str | None = None
    finished_at: datetime | None = None
    request_reason: str | None = None
    """Why the request was made (the planner's reason, e.g. 'new sessions after ...' or a re-adjustment)."""
    readjustment_factor: float | None = None
    """Set when re-delivered bars disagreed with stored ones by this consistent price factor (a split)."""
    batch_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def row(self, *, load_id: uuid.UUID, source: str, row_count: int, landed_at: datetime) -> LoadBatch:
        status: BatchStatus = "no_data" if self.status == "ok" and row_count == 0 else self.status
        return LoadBatch(
            batch_id=self.batch_id,
            load_id=load_id,
            source=source,
            symbol=self.symbol,
            bar_size=self.settings.bar_size,
            what_to_show=self.settings.what_to_show,
            use_rth=self.settings.use_rth,
            status=status,
            row_count=row_count,
            started_at=self.started_at,
            finished_at=self.finished_at or landed_at,
            requested_start=self.requested_start,
            requested_end=self.requested_end,
            error_code=self.error_code,
            error_message=self.error_message,
            request_reason=self.request_reason,
            readjustment_factor=self.readjustment_factor,
        )


_STAGING_TABLE = "landing_bars"
_STAGING_EXTRA = (Column("batch_key", "integer", nullable=False), Column("line", "bigint"))
"""Beside the bar: which batch of the transaction it belongs to, and where in its file it came from (CSV)."""


@dataclass(frozen=True)
class LandedBatch:
    """What one batch put into raw."""

    row: LoadBatch
    first_bar_time: datetime | None
    last_bar_time: datetime | None


class BarWriter:
    """Streams bars into the transaction's temporary table (binary COPY): memory stays flat however many."""

    def __init__(self, copy: psycopg.Copy) -> None:
        self._write = copy.write_row

    def write(self, batch_key: int, bar: RawBar, line: int | None = None) -> None:
        self._write((*bar, batch_key, line))


class Landing:
    """One landing transaction: any number of batches, all of them landing or none."""

    def __init__(self, conn: psycopg.Connection, *, load_id: uuid.UUID, source: str) -> None:
        self.conn = conn
        self.load_id = load_id
        self.source = source

    @contextmanager
    def copy(self) -> Iterator[BarWriter]:
        """``with landing.copy() as bars: bars.write(batch_key, bar)``: stream bars of any batches."""
        columns = BAR_SOURCE_COLUMNS + _STAGING_EXTRA
        statement = sql.SQL("copy {} ({}) from stdin (format binary)").format(
            sql.Identifier(_STAGING_TABLE), sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
        )
        with self.conn.cursor() as cur, cur.copy(statement) as copy:
            copy.set_types([column.copy_type for column in columns])
            yield BarWriter(copy)

    def duplicates(self, limit: int = 100) -> list[tuple[str, date, list[tuple[int, int]]]]:
        """Bars that appear more than once in the transaction, in one batch or in several (two files of a run):
        (symbol, session_date, [(batch_key, line), ...]) in the order they were written, the first ones first.

        Across batches too: they would land with the same ingested_at and load_id, leaving the version dbt keeps to
        their random batch ids. (Its one caller, the CSV source, lands one bar setting per transaction.)
        """
        # Places are gathered for the duplicated bars only: for every bar of a large file, that costs seconds.
        groups = self.conn.execute(
            sql.SQL(
                "with duplicated as ("
                "select symbol, session_date, min(array[batch_key, line]) as first_place from {staging} "
                "group by symbol, session_date having count(*) > 1 order by first_place limit %s) "
                "select symbol, session_date, array_agg(array[batch_key, line] order by batch_key, line) "
                "from duplicated join {staging} using (symbol, session_date) "
                "group by symbol, session_date, first_place order by first_place"
            ).format(staging=sql.Identifier(_STAGING_TABLE)),
            (limit,),
        ).fetchall()
        return [
            (symbol, session_date, [(key, line) for key, line in places]) for symbol, session_date, places in groups
        ]

    def finish(
        self, batches: Mapping[int, Batch], *, requested_range_from_bars: bool = False
    ) -> dict[int, LandedBatch]:
        """Move the streamed bars into ``raw.ibkr_bars`` and write one ``raw.load_batches`` row per batch.

        ``batches`` maps every batch key that was written to (and any without bars, such as failures) to its
        outcome. With ``requested_range_from_bars`` a batch's requested range is its first and last bar (a
        file asks for nothing: it holds what it holds). Returns what each batch landed.
        """
        # The database's clock, not this machine's: dbt compares ingested_at with its own current_timestamp to
        # find what landed since its last build, and a loader whose clock runs behind would land bars it skips.
        landed_at = self.conn.execute("select clock_timestamp()").fetchone()[0]
        keys = list(batches)
        stats = {
            key: (count, first, last)
            for key, count, first, last in self.conn.execute(
                sql.SQL("select batch_key, count(*), min(bar_time), max(bar_time) from {} group by batch_key").format(
                    sql.Identifier(_STAGING_TABLE)
                )
            ).fetchall()
        }
        unknown = set(stats) - set(keys)
        if unknown:
            raise ValueError(f"bars were written for batch keys without a batch: {sorted(unknown)}")
        source_columns = sql.SQL(", ").join(sql.Identifier(c.name) for c in BAR_SOURCE_COLUMNS)
        other_columns = sql.SQL(", ").join(sql.Identifier(c.name) for c in BAR_SETTINGS_COLUMNS + LINEAGE_COLUMNS)
        with self.conn.cursor() as cur:
            # Batch ids and settings per key, joined in: one INSERT for every batch of the transaction.
            cur.execute("create temporary table if not exists landing_batch_keys "
                        "(batch_key integer primary key, bar_size text, what_to_show text, use_rth boolean, "
                        "batch_id uuid) on commit delete rows")  # fmt: skip
            cur.execute("truncate landing_batch_keys")
            cur.executemany(
                "insert into landing_batch_keys values (%s, %s, %s, %s, %s)",
                [
                    (key, b.settings.bar_size, b.settings.what_to_show, b.settings.use_rth, b.batch_id)
                    for key, b in batches.items()
                ],
            )
            cur.execute(
                sql.SQL(
                    "insert into {table} ({source_columns}, {other_columns}) "
                    "select {bar_columns}, k.bar_size, k.what_to_show, k.use_rth, %s, %s, k.batch_id, %s "
                    "from {staging} as b join landing_batch_keys as k using (batch_key)"
                ).format(
                    table=IBKR_BARS.identifier,
                    source_columns=source_columns,
                    other_columns=other_columns,
                    bar_columns=sql.SQL(", ").join(sql.Identifier("b", c.name) for c in BAR_SOURCE_COLUMNS),
                    staging=sql.Identifier(_STAGING_TABLE),
                ),
                (self.source, self.load_id, landed_at),
            )
            result: dict[int, LandedBatch] = {}
            rows = []
            for key, batch in batches.items():
                count, first, last = stats.get(key, (0, None, None))
                row = batch.row(load_id=self.load_id, source=self.source, row_count=count, landed_at=landed_at)
                if requested_range_from_bars:
                    row = row._replace(requested_start=first, requested_end=last)
                rows.append(row)
                result[key] = LandedBatch(row, first, last)
            insert_batches = sql.SQL("insert into {} ({}) values ({})").format(
                LOAD_BATCHES.identifier,
                sql.SQL(", ").join(map(sql.Identifier, LoadBatch._fields)),
                sql.SQL(", ").join(sql.Placeholder() * len(LoadBatch._fields)),
            )
            cur.executemany(insert_batches, rows)
        return result


@contextmanager
def landing(conn: psycopg.Connection, *, load_id: uuid.UUID, source: str) -> Iterator[Landing]:
    """A landing transaction, as the loader role: committed when the block ends, rolled back if it raises."""
    with conn.transaction():
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(schemas.LOADER_ROLE)))
        # Only the source's columns, no constraints: raw keeps exactly what was sent.
        conn.execute(
            sql.SQL("create temporary table if not exists {} ({}) on commit delete rows").format(
                sql.Identifier(_STAGING_TABLE),
                sql.SQL(", ").join(c.definition for c in BAR_SOURCE_COLUMNS + _STAGING_EXTRA),
            )
        )
        conn.execute(sql.SQL("truncate {}").format(sql.Identifier(_STAGING_TABLE)))
        yield Landing(conn, load_id=load_id, source=source)


def land_batch(
    conn: psycopg.Connection, *, load_id: uuid.UUID, source: str, batch: Batch, bars: Iterable[RawBar]
) -> int:
    """Land one batch atomically; returns the number of bars landed."""
    with landing(conn, load_id=load_id, source=source) as transaction:
        with transaction.copy() as writer:
            for bar in bars:
                writer.write(0, bar)
        return transaction.finish({0: batch})[0].row.row_count
