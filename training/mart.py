"""Read ``marts.training_bars`` and its walk-forward folds as the ``trainer`` role, fingerprint what was read, and
find who built it.

The training job reads nothing else: the trainer role can SELECT the marts and nothing upstream of them. Rows, folds
and the mart's build record (``marts.mart_builds``, written by dbt in the mart's own transaction) are read in one
repeatable-read transaction, so they always belong to the same build of the mart.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

import warehouse_db
from training.features import KEY_COLUMNS, MART_MODEL, MartSchema
from training.folds import FOLD_COLUMNS, FOLDS_TABLE, Fold
from warehouse_db import schemas
from warehouse_db.errors import WarehouseNotProvisioned
from warehouse_db.settings import ConnectionSettings

logger = logging.getLogger(__name__)

MART_TABLE = MART_MODEL
BUILDS_TABLE = "mart_builds"
"""Which dbt invocation built each mart (warehouse/macros/record_mart_build.sql, a post-hook of training_bars)."""
TEXT_COLUMNS = ("symbol",)


def mart_columns(schema: MartSchema) -> list[str]:
    """The columns the job reads and the contract checks, in a fixed order (extra mart columns are ignored)."""
    return [*KEY_COLUMNS, *schema.price_columns, *schema.feature_names, schema.target]


@dataclass(frozen=True)
class DbtProvenance:
    """The dbt invocation that built the mart, from ``marts.mart_builds`` (null fields for a mart built before dbt
    recorded it there)."""

    invocation_id: str | None
    run_started_at: str | None
    """When that dbt invocation started (ISO 8601)."""


@dataclass(frozen=True)
class MartSnapshot:
    """The mart rows a run used (every session of the selected symbols), sorted by symbol and session date, and
    the walk-forward folds of the same build, oldest first."""

    frame: pd.DataFrame
    content_hash: str
    """Covers the rows and the folds."""
    symbols: tuple[str, ...]
    folds: tuple[Fold, ...]
    build: tuple = ()
    """The build of the mart the rows come from (:func:`build_marker`, read in the same transaction)."""
    dbt: DbtProvenance = DbtProvenance(None, None)
    """The dbt invocation that built these rows (:func:`read_dbt_provenance`, same transaction)."""

    @property
    def row_count(self) -> int:
        return len(self.frame)


def trainer_connection(settings: ConnectionSettings):
    """A connection acting as the trainer role (never anything with more privileges)."""
    return warehouse_db.connect(settings, role=schemas.TRAINER_ROLE)


class SymbolSelectionError(ValueError):
    """The configured symbols are not (all) in the mart."""


def select_symbols(available: Sequence[str], wanted: Sequence[str] = (), limit: int | None = None) -> tuple[str, ...]:
    """``wanted`` (or all ``available``), sorted, first ``limit``; naming a symbol the mart lacks is an error."""
    available_set = set(available)
    if wanted:
        missing = sorted(set(wanted) - available_set)
        if missing:
            raise SymbolSelectionError(f"symbols not in {schemas.MARTS}.{MART_TABLE}: {missing}")
        chosen = sorted(set(wanted))
    else:
        chosen = sorted(available_set)
    return tuple(chosen[:limit] if limit is not None else chosen)


def read_mart(
    settings: ConnectionSettings,
    schema: MartSchema,
    symbols: Sequence[str] = (),
    symbols_limit: int | None = None,
) -> MartSnapshot:
    """Load the contract's columns of the selected symbols (every session) and the folds, as trainer, in one
    repeatable-read transaction."""
    columns = mart_columns(schema)
    table = sql.Identifier(schemas.MARTS, MART_TABLE)
    with trainer_connection(settings) as conn:
        # One snapshot for every statement below: the folds belong to the rows' build even if dbt runs meanwhile.
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            # Locked before the snapshot is taken (the first SELECT takes it): dbt rebuilds a table by swapping in
            # a new one, whose rows a snapshot taken before the swap could not see.
            try:
                conn.execute(
                    sql.SQL("lock table {}, {} in access share mode").format(
                        table, sql.Identifier(schemas.MARTS, FOLDS_TABLE)
                    )
                )
            except psycopg.errors.UndefinedTable:
                raise WarehouseNotProvisioned.missing_relation(
                    f"{schemas.MARTS}.{MART_TABLE} / {schemas.MARTS}.{FOLDS_TABLE}",
                    settings.for_role(schemas.TRAINER_ROLE).describe(),
                ) from None
            available = [row[0] for row in conn.execute(sql.SQL("select distinct symbol from {}").format(table))]
            chosen = select_symbols(available, symbols, symbols_limit)
            if not chosen:
                raise SymbolSelectionError(f"{schemas.MARTS}.{MART_TABLE} has no rows")
            query = sql.SQL("select {} from {} where symbol = any(%s)").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), table
            )
            with conn.cursor() as cursor:
                cursor.execute(query, (list(chosen),))
                rows = cursor.fetchall()
            folds = read_folds(conn)
            build = build_marker(conn)
            dbt = read_dbt_provenance(conn)
    frame = pd.DataFrame(rows, columns=columns)
    for name in columns:
        if name not in (*TEXT_COLUMNS, "session_date"):
            frame[name] = frame[name].astype(np.float64)
    # Sort here, not in SQL: text ordering in PostgreSQL depends on the database's collation.
    frame = frame.sort_values(list(KEY_COLUMNS), kind="mergesort").reset_index(drop=True)
    snapshot = MartSnapshot(
        frame=frame,
        content_hash=content_hash(frame, columns, folds),
        symbols=chosen,
        folds=folds,
        build=build,
        dbt=dbt,
    )
    logger.info(
        "read %d rows of %s.%s (%d symbols) and %d folds as %s; content %s",
        snapshot.row_count,
        schemas.MARTS,
        MART_TABLE,
        len(chosen),
        len(folds),
        schemas.TRAINER_ROLE,
        snapshot.content_hash,
    )
    return snapshot


def build_marker(conn: psycopg.Connection) -> tuple:
    """What tells one build of the mart from another, cheaply: its row count, the sum of its rows' xmin (the
    transaction that wrote each row: a dbt run that deletes, inserts or swaps rows changes it) and its folds. Equal
    before and after: no write to them landed in between."""
    query = sql.SQL(
        "select (select count(*) from {mart}), (select sum(xmin::text::bigint) from {mart}), "
        "(select md5(coalesce(string_agg(f::text, '|' order by fold_id), '')) from {folds} as f)"
    ).format(mart=sql.Identifier(schemas.MARTS, MART_TABLE), folds=sql.Identifier(schemas.MARTS, FOLDS_TABLE))
    return tuple(conn.execute(query).fetchone())


def read_build_marker(settings: ConnectionSettings) -> tuple | None:
    """The build marker now; None while the mart does not exist (the contract check then says what to run)."""
    with trainer_connection(settings) as conn:
        try:
            return build_marker(conn)
        except (psycopg.errors.UndefinedTable, psycopg.errors.InsufficientPrivilege):
            return None


def read_folds(conn: psycopg.Connection) -> tuple[Fold, ...]:
    """Every row of ``marts.walk_forward_folds``, oldest fold first."""
    query = sql.SQL("select {} from {} order by fold_id").format(
        sql.SQL(", ").join(map(sql.Identifier, FOLD_COLUMNS)), sql.Identifier(schemas.MARTS, FOLDS_TABLE)
    )
    with conn.cursor() as cursor:
        cursor.execute(query)
        return tuple(Fold.from_row(dict(zip(FOLD_COLUMNS, row, strict=True))) for row in cursor.fetchall())


def content_hash(frame: pd.DataFrame, columns: Sequence[str], folds: Sequence[Fold] = ()) -> str:
    """SHA-256 over the rows in their (symbol, session_date) order, column by column, then over the folds:
    same rows and folds, same hash."""
    digest = hashlib.sha256()
    for name in columns:
        digest.update(name.encode("utf-8") + b"\x00")
        values = frame[name]
        if name in TEXT_COLUMNS:
            digest.update("\x1f".join(values.astype(str)).encode("utf-8"))
        elif name == "session_date":
            digest.update(pd.to_datetime(values).to_numpy(dtype="datetime64[D]").astype("<i8").tobytes())
        else:
            numbers = values.to_numpy(dtype=np.float64)
            numbers = np.where(np.isnan(numbers), np.nan, numbers)  # one bit pattern for every NULL/NaN
            digest.update(numbers.astype("<f8").tobytes())
        digest.update(b"\x00")
    for fold in folds:
        digest.update(json.dumps(fold.to_dict(), sort_keys=True).encode("utf-8") + b"\x00")
    return f"sha256:{digest.hexdigest()}"


def read_dbt_provenance(conn: psycopg.Connection) -> DbtProvenance:
    """The dbt invocation that built ``marts.training_bars``, from ``marts.mart_builds`` (in the caller's
    transaction: the record commits with the mart's rows). A mart built by an older release has no record: null,
    said in one info line."""
    builds = sql.Identifier(schemas.MARTS, BUILDS_TABLE)
    # to_regclass, not a query that fails: an error would abort the caller's transaction.
    exists = conn.execute("select to_regclass(%s) is not null", (f"{schemas.MARTS}.{BUILDS_TABLE}",)).fetchone()[0]
    row = None
    if exists:
        query = sql.SQL("select dbt_invocation_id, dbt_run_started_at from {} where model = %s").format(builds)
        row = conn.execute(query, (MART_TABLE,)).fetchone()
    if row is None:
        logger.info(
            "%s.%s has no build record in %s.%s (built before dbt recorded one; `dbt run` records it): "
            "the dbt invocation that built it is recorded as null",
            schemas.MARTS,
            MART_TABLE,
            schemas.MARTS,
            BUILDS_TABLE,
        )
        return DbtProvenance(None, None)
    invocation_id, run_started_at = row
    return DbtProvenance(invocation_id, run_started_at.isoformat())
