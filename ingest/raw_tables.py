"""The raw tables, defined once: their columns, the rows sources build for them, how rows land, what is read back.

``raw.ibkr_bars`` holds every bar exactly as a source sent it (append-only; dbt dedupes), and
``raw.load_batches`` one row per symbol request of a load. Everything that knows their layout lives here:

* the columns (:data:`IBKR_BARS`, :data:`LOAD_BATCHES`), from which the DDL, the COPY types and the checks
  against dbt's sources YAML (``warehouse/models/staging/_ibkr__sources.yml``, by a test) are derived;
* the row types sources build: :class:`RawBar` (one bar, as the CSV and IBKR sources both produce it) and
  :class:`LoadBatch` (one row of ``raw.load_batches``);
* :func:`open_for_landing`, the one place a landing connection is opened and the warehouse provisioned;
* :func:`claim_load`, the lock that lets one IBKR load of a kind of bars run at a time;
* the landing path (:func:`landing`, :func:`land_batch`): COPY into a temporary table, then one INSERT into
  ``raw.ibkr_bars`` in the same transaction that writes the batches' ``raw.load_batches`` rows. If the process
  dies anywhere before COMMIT, PostgreSQL discards the transaction: no bar of it and no batch row exist;
* the reads the IBKR loader plans from (coverage, known contracts, stored bars).

Adding a raw column: add it to :class:`RawBar` (with a default, so every source keeps working) and to
:data:`BAR_SOURCE_COLUMNS`, then to the sources YAML and ``stg_ibkr__bars.sql``. An existing warehouse gains
the column the next time anything lands (:func:`ensure_raw_tables`).

Every value travels as COPY data or as a bound parameter; nothing from a source is ever spliced into SQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal, NamedTuple

import psycopg
from psycopg import sql

from warehouse_db import connect, ensure_provisioned, resolve_settings, schemas
from warehouse_db.errors import ProvisioningError
from warehouse_db.settings import ConnectionSettings

BatchStatus = Literal["ok", "no_data", "failed"]
BATCH_STATUSES: tuple[BatchStatus, ...] = ("ok", "no_data", "failed")


@dataclass(frozen=True)
class Column:
    """One column of a raw table."""

    name: str
    sql_type: str
    """PostgreSQL's own spelling (``information_schema.columns.data_type``), also the sources YAML's data_type."""
    nullable: bool = True

    @property
    def copy_type(self) -> str:
        """The type name binary COPY sends the value as."""
        return _COPY_TYPES[self.sql_type]

    @property
    def definition(self) -> sql.Composable:
        return sql.SQL("{} {}{}").format(
            sql.Identifier(self.name), sql.SQL(self.sql_type), sql.SQL("" if self.nullable else " not null")
        )


_COPY_TYPES = {
    "text": "text",
    "bigint": "int8",
    "integer": "int4",
    "double precision": "float8",
    "boolean": "bool",
    "date": "date",
    "timestamp with time zone": "timestamptz",
    "uuid": "uuid",
}
_SAFE_WIDENINGS = {("integer", "bigint")}
"""Type changes :func:`ensure_raw_tables` applies to an existing table by itself (bar_count was integer once)."""


# --- raw.ibkr_bars ----------------------------------------------------------------------------------


class RawBar(NamedTuple):
    """One bar exactly as a source reported it: what the CSV and the IBKR sources both build.

    Field order is the COPY order (:data:`BAR_SOURCE_COLUMNS` lists the same names with their types).
    """

    symbol: str
    bar_time: datetime
    """Daily bars: 00:00 New York time of the session date. Intraday bars: the bar's start."""
    session_date: date
    open: float
    high: float
    low: float
    close: float
    volume: float | None = None
    wap: float | None = None
    bar_count: int | None = None
    con_id: int | None = None
    exchange: str | None = None
    currency: str | None = None


BAR_SOURCE_COLUMNS: tuple[Column, ...] = (
    Column("symbol", "text", nullable=False),
    Column("bar_time", "timestamp with time zone", nullable=False),
    Column("session_date", "date", nullable=False),
    Column("open", "double precision", nullable=False),
    Column("high", "double precision", nullable=False),
    Column("low", "double precision", nullable=False),
    Column("close", "double precision", nullable=False),
    Column("volume", "double precision"),
    Column("wap", "double precision"),
    Column("bar_count", "bigint"),
    Column("con_id", "bigint"),
    Column("exchange", "text"),
    Column("currency", "text"),
)
"""The columns a source provides for each bar, in :class:`RawBar`'s order."""

BAR_SETTINGS_COLUMNS: tuple[Column, ...] = (
    Column("bar_size", "text", nullable=False),
    Column("what_to_show", "text", nullable=False),
    Column("use_rth", "boolean", nullable=False),
)
"""What kind of bars were requested (:class:`BarSettings`): part of every bar's key."""

LINEAGE_COLUMNS: tuple[Column, ...] = (
    Column("source", "text", nullable=False),
    Column("load_id", "uuid", nullable=False),
    Column("batch_id", "uuid", nullable=False),
    Column("ingested_at", "timestamp with time zone", nullable=False),
)
"""Where a row came from; written by the landing path, never by a source."""

if RawBar._fields != tuple(column.name for column in BAR_SOURCE_COLUMNS):  # pragma: no cover - a definition error
    raise AssertionError("RawBar's fields and BAR_SOURCE_COLUMNS must list the same names in the same order")


@dataclass(frozen=True)
class BarSettings:
    """What kind of bars a request asks for; part of every raw row's key."""

    bar_size: str = "1 day"
    what_to_show: str = "TRADES"
    use_rth: bool = True


# --- raw.load_batches -------------------------------------------------------------------------------


class LoadBatch(NamedTuple):
    """One row of ``raw.load_batches``: one symbol request of a load, what came back and why it was made."""

    batch_id: uuid.UUID
    load_id: uuid.UUID
    source: str
    symbol: str
    bar_size: str
    what_to_show: str
    use_rth: bool
    status: BatchStatus
    row_count: int
    started_at: datetime
    finished_at: datetime
    requested_start: datetime | None = None
    requested_end: datetime | None = None
    error_code: int | None = None
    error_message: str | None = None
    request_reason: str | None = None
    readjustment_factor: float | None = None


LOAD_BATCH_COLUMNS: tuple[Column, ...] = (
    Column("batch_id", "uuid", nullable=False),
    Column("load_id", "uuid", nullable=False),
    Column("source", "text", nullable=False),
    Column("symbol", "text", nullable=False),
    Column("bar_size", "text", nullable=False),
    Column("what_to_show", "text", nullable=False),
    Column("use_rth", "boolean", nullable=False),
    Column("status", "text", nullable=False),
    Column("row_count", "integer", nullable=False),
    Column("started_at", "timestamp with time zone", nullable=False),
    Column("finished_at", "timestamp with time zone", nullable=False),
    Column("requested_start", "timestamp with time zone"),
    Column("requested_end", "timestamp with time zone"),
    Column("error_code", "integer"),
    Column("error_message", "text"),
    Column("request_reason", "text"),
    Column("readjustment_factor", "double precision"),
)

if LoadBatch._fields != tuple(column.name for column in LOAD_BATCH_COLUMNS):  # pragma: no cover
    raise AssertionError("LoadBatch's fields and LOAD_BATCH_COLUMNS must list the same names in the same order")


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


# --- the tables ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawTable:
    name: str
    columns: tuple[Column, ...]
    comment: str
    constraints: tuple[str, ...] = ()
    indexes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(index name, columns)."""

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(schemas.RAW, self.name)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)


IBKR_BARS = RawTable(
    name="ibkr_bars",
    columns=BAR_SOURCE_COLUMNS + BAR_SETTINGS_COLUMNS + LINEAGE_COLUMNS,
    comment="Bars exactly as a source sent them; append-only (a bar may arrive many times, dbt dedupes: "
    "latest ingested_at wins).",
    indexes=(("ibkr_bars_watermark_idx", ("symbol", "bar_size", "what_to_show", "use_rth", "bar_time")),),
)
LOAD_BATCHES = RawTable(
    name="load_batches",
    columns=LOAD_BATCH_COLUMNS,
    comment="One row per symbol request of a load: what was asked, why, what came back (ok / no_data / failed).",
    constraints=("primary key (batch_id)", f"check (status in ({', '.join(repr(s) for s in BATCH_STATUSES)}))"),
)
RAW_TABLES = (IBKR_BARS, LOAD_BATCHES)


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_load_id() -> uuid.UUID:
    """One id per loader run; every batch and bar of the run carries it."""
    return uuid.uuid4()


def open_for_landing(settings: ConnectionSettings | None = None) -> psycopg.Connection:
    """A connection to the warehouse, provisioned and with the raw tables in place: where every source starts.

    Raises :class:`warehouse_db.errors.WarehouseError` (unreachable, not allowed to provision) with a message
    fit to print as it is.
    """
    settings = settings or resolve_settings()
    # Provisioning needs an admin login; the landing itself runs as the loader (its own login where configured).
    ensure_provisioned(settings, schemas.LOADER_ROLE)
    conn = connect(settings, role=schemas.LOADER_ROLE)
    try:
        ensure_raw_tables(conn)
    except BaseException:
        conn.close()
        raise
    return conn


class AnotherLoadRunning(Exception):
    """Another load of the same bar settings holds the warehouse's load lock; the message names it."""


def load_lock_key(settings: BarSettings, source: str) -> str:
    """What :func:`claim_load` locks (``hashtext`` of it, under ``hashtext('ingest.load')``): one load at a time per
    source and bar settings, per database."""
    return f"{source}|{settings.bar_size}|{settings.what_to_show}|{settings.use_rth}"


def claim_load(conn: psycopg.Connection, settings: BarSettings, source: str) -> None:
    """Hold the warehouse's lock for loads of ``settings`` from ``source`` until ``conn`` closes, or raise
    :class:`AnotherLoadRunning` naming the load that holds it.

    Two loads of the same bars at once would both plan from the same coverage, request the same history twice
    (twice the pacing budget) and land it twice. A session-level advisory lock: it goes when the connection does,
    however the process ends. The connection's ``application_name`` names this process (``python -m ingest (pid N)``,
    or the user's PGAPPNAME: :func:`warehouse_db.settings.application_name`), so that the refused run (and
    ``pg_stat_activity``) can say which one holds it.
    """
    key = load_lock_key(settings, source)
    got = conn.execute("select pg_try_advisory_lock(hashtext('ingest.load'), hashtext(%s))", (key,)).fetchone()[0]
    if got:
        conn.commit()
        return
    # Its login, not the loader role this session acts as, may see the other session's application_name.
    conn.execute("set local role none")
    holder = conn.execute(
        "select a.application_name, a.backend_start from pg_locks l join pg_stat_activity a using (pid) "
        "where l.locktype = 'advisory' and l.granted and l.classid = hashtext('ingest.load')::oid "
        "and l.objid = hashtext(%s)::oid and l.objsubid = 2 "
        # Advisory locks are per database, pg_locks shows every database's: another database's load is not the one.
        "and l.database = (select oid from pg_database where datname = current_database()) limit 1",
        (key,),
    ).fetchone()
    conn.rollback()
    if holder is None:
        who = "it has just ended"
    elif holder[1] is None:
        who = "another login's session"
    else:
        who = f"{holder[0] or 'a session without application_name'}, connected {holder[1]:%Y-%m-%d %H:%M:%S %Z}"
    rth = "RTH" if settings.use_rth else "all hours"
    raise AnotherLoadRunning(
        f"another ingest of {settings.bar_size} {settings.what_to_show} {rth} bars from {source} is loading into "
        f"this warehouse ({who}): nothing was requested; run again when it has ended (only what is still missing "
        "is fetched)"
    )


def ensure_raw_tables(conn: psycopg.Connection) -> None:
    """Create the raw tables, or bring an existing warehouse's up to :data:`RAW_TABLES`; owned by the loader role.

    Only what is missing is changed (a missing column is added, ``integer`` widened to ``bigint``), so the
    usual call takes no lock that would wait for a dbt build reading raw. Concurrent first calls take turns.
    """
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('ingest.raw_tables'))")
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(schemas.LOADER_ROLE)))
        for table in RAW_TABLES:
            _ensure_table(conn, table)


def _ensure_table(conn: psycopg.Connection, table: RawTable) -> None:
    existing = dict(
        conn.execute(
            "select column_name, data_type from information_schema.columns where table_schema = %s and table_name = %s",
            (schemas.RAW, table.name),
        ).fetchall()
    )
    if not existing:
        parts = [column.definition for column in table.columns] + [sql.SQL(c) for c in table.constraints]
        conn.execute(sql.SQL("create table {} ({})").format(table.identifier, sql.SQL(", ").join(parts)))
        conn.execute(sql.SQL("comment on table {} is {}").format(table.identifier, sql.Literal(table.comment)))
    for column in table.columns:
        current = existing.get(column.name)
        if existing and current is None:
            # Added columns are nullable: rows landed before the column existed have no value for it.
            conn.execute(
                sql.SQL("alter table {} add column {} {}").format(
                    table.identifier, sql.Identifier(column.name), sql.SQL(column.sql_type)
                )
            )
        elif current is not None and current != column.sql_type:
            if (current, column.sql_type) not in _SAFE_WIDENINGS:
                raise ProvisioningError(
                    f"{schemas.RAW}.{table.name}.{column.name} is {current} in the warehouse but this version of "
                    f"ingest expects {column.sql_type}; migrate the column by hand"
                )
            conn.execute(
                sql.SQL("alter table {} alter column {} type {}").format(
                    table.identifier, sql.Identifier(column.name), sql.SQL(column.sql_type)
                )
            )
    for index_name, columns in table.indexes:
        conn.execute(
            sql.SQL("create index if not exists {} on {} ({})").format(
                sql.Identifier(index_name), table.identifier, sql.SQL(", ").join(map(sql.Identifier, columns))
            )
        )


# --- landing --------------------------------------------------------------------------------------------

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


# --- reads ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Coverage:
    """What the warehouse holds for one symbol and one set of bar settings (the planner's input)."""

    last_bar_time: datetime | None = None
    """The watermark: the latest landed bar."""
    covered_from: datetime | None = None
    """The earliest start any successful batch of the source asked for."""
    checked_at: datetime | None = None
    """The latest moment a successful batch of the source asked for data up to (its ``requested_end``).

    Not when it finished: a request sent at 15:59 and answered at 16:01 saw the session still trading."""
    first_bar_time: datetime | None = None
    """The earliest landed bar. It may be older than ``covered_from``: a duration in whole years (``2 Y``) can
    return more than was asked for, and all of it lands."""

    @property
    def empty(self) -> bool:
        return self.last_bar_time is None and self.checked_at is None

    @property
    def held_from(self) -> datetime | None:
        """The earliest moment the warehouse holds bars for, or asked for them from: what a re-fetch of the whole
        history must reach back to, so that no stored bar keeps an older adjustment."""
        known = [moment for moment in (self.first_bar_time, self.covered_from) if moment is not None]
        return min(known, default=None)


def read_bar_spans(conn: psycopg.Connection, settings: BarSettings) -> dict[str, tuple[datetime, datetime]]:
    """The earliest and the latest landed bar_time per symbol for these bar settings: where a history re-fetch
    must reach back to, and where an incremental fetch resumes (the watermark)."""
    rows = conn.execute(
        sql.SQL(
            "select symbol, min(bar_time), max(bar_time) from {} "
            "where bar_size = %s and what_to_show = %s and use_rth = %s group by symbol"
        ).format(IBKR_BARS.identifier),
        (settings.bar_size, settings.what_to_show, settings.use_rth),
    ).fetchall()
    return {symbol: (first, last) for symbol, first, last in rows}


def read_coverage(
    conn: psycopg.Connection, settings: BarSettings, symbols: Sequence[str], *, source: str
) -> dict[str, Coverage]:
    """Watermark, covered window start and last successful check per symbol, for these bar settings."""
    spans = read_bar_spans(conn, settings)
    rows = conn.execute(
        sql.SQL(
            "select symbol, min(requested_start), max(requested_end) from {} "
            "where source = %s and bar_size = %s and what_to_show = %s and use_rth = %s "
            "and status in ('ok', 'no_data') and symbol = any(%s) group by symbol"
        ).format(LOAD_BATCHES.identifier),
        (source, settings.bar_size, settings.what_to_show, settings.use_rth, list(symbols)),
    ).fetchall()
    batches = {symbol: (covered_from, checked_at) for symbol, covered_from, checked_at in rows}
    coverage: dict[str, Coverage] = {}
    for symbol in symbols:
        covered_from, checked_at = batches.get(symbol, (None, None))
        first_bar_time, last_bar_time = spans.get(symbol, (None, None))
        coverage[symbol] = Coverage(
            last_bar_time=last_bar_time, first_bar_time=first_bar_time, covered_from=covered_from, checked_at=checked_at
        )
    return coverage


@dataclass(frozen=True)
class KnownContract:
    """A contract id already in raw, with the listing it was landed with."""

    con_id: int
    exchange: str | None
    currency: str | None


def read_known_contracts(
    conn: psycopg.Connection, settings: BarSettings, symbols: Sequence[str], *, source: str
) -> dict[str, KnownContract]:
    """conIds already in raw (from loads of ``source``): those symbols need no contract-details request.

    Looks at the latest bar of these settings first (an index scan), then at any bar of the symbol.
    """
    rows = conn.execute(
        sql.SQL(
            """
            select s.symbol, k.con_id, k.exchange, k.currency
            from unnest(%s::text[]) as s(symbol)
            cross join lateral (
                (select b.con_id, b.exchange, b.currency, 0 as preference
                 from {bars} b
                 where b.symbol = s.symbol and b.bar_size = %s and b.what_to_show = %s and b.use_rth = %s
                   and b.source = %s and b.con_id is not null
                 order by b.bar_time desc
                 limit 1)
                union all
                (select b.con_id, b.exchange, b.currency, 1
                 from {bars} b
                 where b.symbol = s.symbol and b.source = %s and b.con_id is not null
                 limit 1)
                order by preference
                limit 1
            ) k
            """
        ).format(bars=IBKR_BARS.identifier),
        (list(symbols), settings.bar_size, settings.what_to_show, settings.use_rth, source, source),
    ).fetchall()
    return {
        symbol: KnownContract(con_id=int(con_id), exchange=exchange, currency=currency)
        for symbol, con_id, exchange, currency in rows
    }


CONTRACT_HOLDERS_SQL = sql.SQL(
    """
    with recursive symbols(symbol) as (
        (select b.symbol from {bars} b order by b.symbol limit 1)
        union all
        select (select b.symbol from {bars} b where b.symbol > s.symbol order by b.symbol limit 1)
        from symbols s
        where s.symbol is not null
    )
    select s.symbol, latest.con_id
    from symbols s
    cross join lateral (
        select b.con_id
        from {bars} b
        where b.symbol = s.symbol and b.bar_size = %s and b.what_to_show = %s and b.use_rth = %s
        order by b.bar_time desc
        limit 1
    ) latest
    where latest.con_id = any(%s)
    """
).format(bars=IBKR_BARS.identifier)
"""Parameters: bar_size, what_to_show, use_rth, the contract ids (a list). See :func:`read_contract_holders`."""


def read_contract_holders(
    conn: psycopg.Connection, settings: BarSettings, con_ids: Iterable[int]
) -> dict[int, set[str]]:
    """Per contract id of ``con_ids``, the symbols in ``raw.ibkr_bars`` whose latest bar of these settings carries it.

    A symbol is judged by its latest bar only: a skip scan over the watermark index finds the symbols and a second
    probe their latest bar, so the cost grows with the number of symbols, not of bars (raw.ibkr_bars has no index on
    con_id, and a scan of it grows with every load: on 5,000 symbols of 1,260 daily bars this takes 0.08 s, a scan
    by con_id 1.3 s, and the planner's own coverage read 0.7 s). A latest bar with a null con_id (a CSV file's)
    names no contract.
    """
    wanted = sorted(set(con_ids))
    if not wanted:
        return {}
    rows = conn.execute(
        CONTRACT_HOLDERS_SQL, (settings.bar_size, settings.what_to_show, settings.use_rth, wanted)
    ).fetchall()
    holders: dict[int, set[str]] = {}
    for symbol, con_id in rows:
        holders.setdefault(int(con_id), set()).add(symbol)
    return holders


class StoredBar(NamedTuple):
    """The version of a bar the warehouse currently holds (the latest landed), as far as prices and volume go."""

    bar_time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float | None


def read_stored_bars(
    conn: psycopg.Connection,
    settings: BarSettings,
    spans: Mapping[str, Sequence[tuple[datetime, datetime | None]]],
) -> dict[str, dict[datetime, StoredBar]]:
    """Per symbol, the latest landed version of every bar within its ``spans`` (from, until; until None: no end),
    an index range scan each.

    The IBKR loader compares re-delivered bars against these to notice a re-adjusted history (a split).
    """
    ranges = [(symbol, since, until) for symbol, symbol_spans in spans.items() for since, until in symbol_spans]
    if not ranges:
        return {}
    symbols, starts, ends = (list(column) for column in zip(*ranges, strict=True))
    rows = conn.execute(
        sql.SQL(
            """
            select distinct on (b.symbol, b.bar_time)
                   b.symbol, b.bar_time, b.open, b.high, b.low, b.close, b.volume
            from unnest(%s::text[], %s::timestamptz[], %s::timestamptz[]) as s(symbol, since, until)
            join {bars} b
              on b.symbol = s.symbol and b.bar_time >= s.since and (s.until is null or b.bar_time <= s.until)
             and b.bar_size = %s and b.what_to_show = %s and b.use_rth = %s
            order by b.symbol, b.bar_time, b.ingested_at desc, b.load_id desc, b.batch_id desc
            """
        ).format(bars=IBKR_BARS.identifier),
        (symbols, starts, ends, settings.bar_size, settings.what_to_show, settings.use_rth),
    ).fetchall()
    stored: dict[str, dict[datetime, StoredBar]] = {}
    for symbol, *values in rows:
        stored.setdefault(symbol, {})[values[0]] = StoredBar(*values)
    return stored
