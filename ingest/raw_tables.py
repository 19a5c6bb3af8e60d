"""The raw tables, defined once: their columns, the rows sources build for them, and their DDL.

``raw.ibkr_bars`` holds every bar exactly as a source sent it (append-only; dbt dedupes), and
``raw.load_batches`` one row per symbol request of a load. Their layout is defined here:

* the columns (:data:`IBKR_BARS`, :data:`LOAD_BATCHES`), from which the DDL (:func:`ensure_raw_tables`), the COPY
  types and the checks against dbt's sources YAML (``warehouse/models/staging/_ibkr__sources.yml``, by a test) are
  derived;
* the row types sources build: :class:`RawBar` (one bar, as the CSV and IBKR sources both produce it) and
  :class:`LoadBatch` (one row of ``raw.load_batches``);
* :func:`open_for_landing`, the one place a landing connection is opened and the warehouse provisioned;
* :func:`claim_load`, the lock that lets one IBKR load of a kind of bars run at a time.

How rows land is :mod:`ingest.landing`; what the IBKR loader reads back from raw, :mod:`ingest.raw_reads`.

Adding a raw column: add it to :class:`RawBar` (with a default, so every source keeps working) and to
:data:`BAR_SOURCE_COLUMNS`, then to the sources YAML, ``stg_ibkr__bars.sql`` and docs/ingest.md's raw tables (the
whole recipe: docs/development.md, "Where things go"). An existing warehouse gains the column the next time anything
lands (:func:`ensure_raw_tables`).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime
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


LOCK_RELEASE_GRACE_S = 3.0
"""How long a load waits for the lock before it is refused: a load that has just ended closed its connection, but its
server process lets the lock go a moment later (a run right after another in one process, on a busy server, was
refused naming the run that had ended)."""


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
    deadline = time.monotonic() + LOCK_RELEASE_GRACE_S
    while True:
        got = conn.execute("select pg_try_advisory_lock(hashtext('ingest.load'), hashtext(%s))", (key,)).fetchone()[0]
        conn.commit()
        if got:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
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
