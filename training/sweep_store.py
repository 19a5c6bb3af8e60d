"""A sweep's rows in ``ml.sweeps`` and ``ml.sweep_trials`` (the tables: training/results_schema.py): saved by the
sweep driver (training/sweep.py; each trial event by its recorder, training/sweep_recorder.py) in one short
transaction per trial event, so an interrupted sweep can resume from them; and the lock that lets one driver at a
time run a sweep."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from psycopg import sql
from psycopg.types.json import Jsonb

from training.results_schema import SWEEP_TRIALS, SWEEPS, nullable
from warehouse_db import schemas


@dataclass
class SweepRecord:
    """The ml.sweeps row of one sweep (the driver keeps it and saves it whole at every change)."""

    sweep_id: str
    status: str
    started_at: datetime
    updated_at: datetime
    trials_requested: int
    objective: str
    search_algorithm: str
    scheduler: str
    space: dict[str, Any]
    base_config: dict[str, Any]
    search_folds: list[int]
    report_folds: list[int]
    trial_seeds: list[int]
    mart_hash: str
    run_dir: str
    finished_at: datetime | None = None
    ray_address: str | None = None
    ray_nodes: int | None = None
    trials_completed: int = 0
    trials_pruned: int = 0
    trials_failed: int = 0
    best_trial: int | None = None
    best_objective: float | None = None
    best_params: dict[str, Any] | None = None
    configurations_tried: int | None = None
    trial_steps_run: int | None = None
    trial_steps_without_early_stopping: int | None = None
    parameter_importance: dict[str, float] | None = None
    final_run_id: str | None = None
    deflated_sharpe: float | None = None
    verdict: str | None = None
    error: str | None = None


@dataclass
class TrialRecord:
    """The ml.sweep_trials row of one trial."""

    sweep_id: str
    trial_number: int
    tune_trial_id: str
    state: str
    params: dict[str, Any]
    config: dict[str, Any]
    config_hash: str
    started_at: datetime
    objective: float | None = None
    folds_done: int = 0
    fold_ids: list[int] = dataclasses.field(default_factory=list)
    fold_scores: list[float | None] = dataclasses.field(default_factory=list)
    trial_steps: int = 0
    node: str | None = None
    finished_at: datetime | None = None
    wall_seconds: float | None = None
    error: str | None = None

    @property
    def scored(self) -> bool:
        """Completed or pruned with a validation score: a configuration that was tried."""
        return self.state in ("completed", "pruned") and self.folds_done > 0


_JSON_COLUMNS = frozenset({"space", "base_config", "best_params", "parameter_importance", "params", "config"})


def _row_values(record: Any) -> tuple[list[str], list[Any]]:
    columns = [f.name for f in dataclasses.fields(record)]
    values = []
    for name in columns:
        value = getattr(record, name)
        if name in _JSON_COLUMNS and value is not None:
            value = Jsonb(json.loads(json.dumps(value, default=str)))
        elif isinstance(value, float):
            value = nullable(value)
        elif isinstance(value, list):
            value = [nullable(v) if isinstance(v, float) else v for v in value]
        values.append(value)
    return columns, values


def _upsert(conn, table: str, keys: Sequence[str], record: Any) -> None:
    columns, values = _row_values(record)
    conn.execute(
        sql.SQL("insert into {} ({}) values ({}) on conflict ({}) do update set {}").format(
            sql.Identifier(schemas.ML, table),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            sql.SQL(", ").join(map(sql.Identifier, keys)),
            sql.SQL(", ").join(
                sql.SQL("{} = excluded.{}").format(sql.Identifier(c), sql.Identifier(c))
                for c in columns
                if c not in keys
            ),
        ),
        values,
    )


def save_sweep(conn, record: SweepRecord) -> None:
    """Insert or replace the sweep's row (``conn`` is the sweep driver's trainer connection, autocommit)."""
    _upsert(conn, SWEEPS, ("sweep_id",), record)


def save_trial(conn, record: TrialRecord) -> None:
    """Insert or replace one trial's row."""
    _upsert(conn, SWEEP_TRIALS, ("sweep_id", "trial_number"), record)


def load_sweep(conn, sweep_id: str) -> SweepRecord | None:
    """The sweep's row, or None where there is no sweep ``sweep_id``."""
    records = _select_for_sweep(conn, SweepRecord, SWEEPS, sweep_id)
    return records[0] if records else None


def load_trials(conn, sweep_id: str) -> list[TrialRecord]:
    """Every trial of the sweep, in trial order."""
    return _select_for_sweep(conn, TrialRecord, SWEEP_TRIALS, sweep_id, order_by="trial_number")


RecordT = TypeVar("RecordT")


def _select_for_sweep(conn, record_type: type[RecordT], table: str, sweep_id: str, order_by: str = "") -> list[RecordT]:
    """The rows of ml.<table> for one sweep, as ``record_type`` (its fields are the columns read)."""
    columns = [f.name for f in dataclasses.fields(record_type)]
    query = sql.SQL("select {} from {} where sweep_id = %s").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(schemas.ML, table)
    )
    if order_by:
        query += sql.SQL(" order by {}").format(sql.Identifier(order_by))
    rows = conn.execute(query, (sweep_id,)).fetchall()
    return [record_type(**dict(zip(columns, row, strict=True))) for row in rows]


def sweep_tables_exist(conn) -> bool:
    return conn.execute("select to_regclass(%s) is not null", (f"{schemas.ML}.{SWEEPS}",)).fetchone()[0]


def try_lock_sweep(conn, sweep_id: str) -> bool:
    """A session-level lock on the sweep id: one driver per sweep; released when ``conn`` closes (or dies)."""
    return conn.execute(
        "select pg_try_advisory_lock(hashtext('training.sweep'), hashtext(%s))", (sweep_id,)
    ).fetchone()[0]
