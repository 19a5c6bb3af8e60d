"""Read ``marts.training_bars`` and its walk-forward folds as the ``trainer`` role, fingerprint what was read, and
find who built it.

The training job reads nothing else: the trainer role can SELECT the marts and nothing upstream of them. Rows and
folds are read in one repeatable-read transaction, so they always belong to the same build of the mart.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

import warehouse_db
from training.features import MART_MODEL, MartSchema
from training.folds import FOLD_COLUMNS, FOLDS_TABLE, Fold
from training.market_data import KEY_COLUMNS
from warehouse_db import schemas
from warehouse_db.errors import WarehouseNotProvisioned
from warehouse_db.settings import ConnectionSettings

logger = logging.getLogger(__name__)

MART_TABLE = MART_MODEL
TEXT_COLUMNS = ("symbol",)


def mart_columns(schema: MartSchema) -> list[str]:
    """The columns the job reads and the contract checks, in a fixed order (extra mart columns are ignored)."""
    return [*KEY_COLUMNS, *schema.price_columns, *schema.feature_names, schema.target]


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

    @property
    def row_count(self) -> int:
        return len(self.frame)


@dataclass(frozen=True)
class DbtProvenance:
    """Which dbt invocation last wrote target/run_results.json (null fields when the file is absent)."""

    invocation_id: str | None
    generated_at: str | None
    path: str


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
    frame = pd.DataFrame(rows, columns=columns)
    for name in columns:
        if name not in (*TEXT_COLUMNS, "session_date"):
            frame[name] = frame[name].astype(np.float64)
    # Sort here, not in SQL: text ordering in PostgreSQL depends on the database's collation.
    frame = frame.sort_values(list(KEY_COLUMNS), kind="mergesort").reset_index(drop=True)
    snapshot = MartSnapshot(
        frame=frame, content_hash=content_hash(frame, columns, folds), symbols=chosen, folds=folds, build=build
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
        except psycopg.errors.UndefinedTable:
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


def read_dbt_provenance(run_results: Path) -> DbtProvenance:
    """invocation_id and generated_at of dbt's last run_results.json, if there is one."""
    run_results = Path(run_results)
    if not run_results.exists():
        logger.warning("no %s: the dbt invocation that built the mart is recorded as null", run_results)
        return DbtProvenance(None, None, str(run_results))
    try:
        document = json.loads(run_results.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        logger.warning("cannot read %s (%s): dbt provenance recorded as null", run_results, error)
        return DbtProvenance(None, None, str(run_results))
    metadata = document.get("metadata") or {}
    # A run_results.json from another command (dbt test, say) names another invocation than the one that built the mart.
    if not any(
        str(result.get("unique_id", "")).startswith("model.")
        and str(result.get("unique_id", "")).endswith(f".{MART_TABLE}")
        for result in document.get("results") or []
    ):
        logger.warning(
            "%s does not list the %s model: its invocation may not be the one that built it", run_results, MART_TABLE
        )
    return DbtProvenance(metadata.get("invocation_id"), metadata.get("generated_at"), str(run_results))
