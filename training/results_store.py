"""A run's results: written by the driver to the ``ml.walk_forward_*`` tables (training/results_schema.py) in one
transaction at the end of the run, all or nothing."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

import warehouse_db
from training.folds import FOLD_COLUMNS, Fold
from training.metrics import METRICS, drawdown
from training.results_schema import RUNS, ensure_tables, nullable
from training.statistics import RunStatistics, counted
from warehouse_db import schemas
from warehouse_db.errors import WarehouseError
from warehouse_db.settings import ConnectionSettings

if TYPE_CHECKING:  # the run's modules (torch, stable-baselines3, Ray): a command's --help imports this one
    from training.evaluation import PolicyReplay
    from training.fold_task import TaskResult
    from training.task_runners import TaskFailure

logger = logging.getLogger(__name__)

AGGREGATE_SYMBOL = "__all__"


@dataclass(frozen=True)
class RunRecord:
    """The ml.walk_forward_runs row of one run."""

    run_id: str
    kind: str
    status: str
    started_at: datetime
    finished_at: datetime
    config_hash: str
    config: dict[str, Any]
    env: str
    timesteps_per_task: int
    folds: int
    seeds: int
    tasks_succeeded: int
    tasks_failed: int
    test_sessions: int
    symbols: int
    configurations_tried: int
    deflated_sharpe: float | None
    verdict: str
    mart_rows: int
    mart_hash: str
    dbt_invocation_id: str | None
    dbt_generated_at: str | None
    ray_address: str | None
    ray_nodes: int | None
    run_dir: str


def run_exists(settings: ConnectionSettings, run_id: str) -> bool:
    """Whether ml.walk_forward_runs holds ``run_id``; False before the first run created the table."""
    with warehouse_db.connect(settings, role=schemas.TRAINER_ROLE) as conn:
        if conn.execute("select to_regclass(%s) is null", (f"{schemas.ML}.{RUNS}",)).fetchone()[0]:
            return False
        query = sql.SQL("select 1 from {} where run_id = %s").format(sql.Identifier(schemas.ML, RUNS))
        return conn.execute(query, (run_id,)).fetchone() is not None


@dataclass(frozen=True)
class StoredRun:
    """What a finished run's closing lines say, read back from ml.walk_forward_runs (a resumed sweep with nothing to
    run prints them again)."""

    run_id: str
    status: str
    """'succeeded', or 'partial' when some fold x seed tasks failed."""
    verdict: str
    run_dir: str


def load_run(settings: ConnectionSettings, run_id: str) -> StoredRun | None:
    """``run_id``'s row of ml.walk_forward_runs; None when there is none (or no table yet)."""
    with warehouse_db.connect(settings, role=schemas.TRAINER_ROLE) as conn:
        if conn.execute("select to_regclass(%s) is null", (f"{schemas.ML}.{RUNS}",)).fetchone()[0]:
            return None
        query = sql.SQL("select run_id, status, verdict, run_dir from {} where run_id = %s").format(
            sql.Identifier(schemas.ML, RUNS)
        )
        row = conn.execute(query, (run_id,)).fetchone()
    return StoredRun(*row) if row else None


@contextmanager
def _disk_full_in_one_line(record: RunRecord) -> Iterator[None]:
    """The database server's disk full while a run lands (SQLSTATE 53100, on an insert, a COPY or the commit): one line
    that says where the results are, not a traceback after the whole run; the transaction landed nothing."""
    try:
        yield
    except psycopg.errors.DiskFull as error:
        raise WarehouseError(
            f"the warehouse's disk is full ({error.diag.message_primary or error}): nothing of run {record.run_id!r} landed "
            f"in ml.*; its results are only in {record.run_dir}; free some space on the database server"
        ) from None


# Each table's columns, in the order its rows below give them (COPY matches values to columns by position).
_TASK_COLUMNS = ("run_id", "fold_id", "seed", "status", "attempts", "error", "selected_step", "validation_score",
                 "selection_metric", "timesteps", "steps_per_second", "wall_seconds", "node", "train_symbols",
                 "validation_symbols", "test_symbols")  # fmt: skip
_SELECTION_COLUMNS = ("run_id", "fold_id", "seed", "step", "validation_score")
_METRIC_COLUMNS = ("run_id", "fold_id", "seed", "split", "symbol", "policy", "metric", "value", "sessions")
_STATISTICS_COLUMNS = ("run_id", "fold_id", "policy", "metric", "estimator", "estimate", "ci_low", "ci_high",
                       "confidence", "folds", "seeds", "tasks", "sessions", "symbols", "annualised_from")  # fmt: skip
_COMPARISON_COLUMNS = ("run_id", "fold_id", "baseline", "metric", "difference", "ci_low", "ci_high", "p_agent_better",
                       "p_ci_low", "p_ci_high", "confidence", "folds", "seeds", "tasks", "sessions")  # fmt: skip
_EQUITY_COLUMNS = ("run_id", "fold_id", "seed", "split", "policy", "session_date", "net_worth", "drawdown", "exposure")


def write_run(
    settings: ConnectionSettings,
    record: RunRecord,
    folds: Sequence[Fold],
    results: Sequence[TaskResult],
    failures: Sequence[TaskFailure],
    statistics: RunStatistics,
    selection_metric: str,
) -> None:
    """Insert everything about one run in one transaction (all or nothing)."""
    ensure_tables(settings)
    run_id = record.run_id
    with (
        _disk_full_in_one_line(record),
        warehouse_db.connect(settings, role=schemas.TRAINER_ROLE) as conn,
        conn.transaction(),
    ):
        _insert_run_row(conn, record)
        _copy(conn, "walk_forward_folds", ("run_id", *FOLD_COLUMNS), _fold_rows(run_id, folds))
        _copy(conn, "walk_forward_tasks", _TASK_COLUMNS, _task_rows(run_id, results, failures, selection_metric))
        _copy(conn, "walk_forward_selection", _SELECTION_COLUMNS, _selection_rows(run_id, results))
        metric_rows = _copy(conn, "walk_forward_metrics", _METRIC_COLUMNS, _metric_rows(run_id, results))
        _copy(conn, "walk_forward_statistics", _STATISTICS_COLUMNS, _statistics_rows(run_id, statistics))
        _copy(conn, "walk_forward_comparisons", _COMPARISON_COLUMNS, _comparison_rows(run_id, statistics))
        equity_rows = _copy(conn, "walk_forward_equity", _EQUITY_COLUMNS, _equity_rows(run_id, results))
    logger.info(
        "wrote run %s to %s.%s: %s, %d failed, %d metric and %d equity rows",
        record.run_id,
        schemas.ML,
        RUNS,
        counted(len(results), "task"),
        len(failures),
        metric_rows,
        equity_rows,
    )


def _insert_run_row(conn, record: RunRecord) -> None:
    fields = list(record.__dataclass_fields__)
    values = [getattr(record, name) for name in fields]
    values[fields.index("config")] = Jsonb(json.loads(json.dumps(record.config, default=str)))
    values[fields.index("deflated_sharpe")] = nullable(record.deflated_sharpe)
    try:
        conn.execute(
            sql.SQL("insert into {} ({}) values ({})").format(
                sql.Identifier(schemas.ML, RUNS),
                sql.SQL(", ").join(map(sql.Identifier, fields)),
                sql.SQL(", ").join(sql.Placeholder() * len(fields)),
            ),
            values,
        )
    except psycopg.errors.UniqueViolation:
        # The run checked its id before training; another run with the same id (another --runs-dir, another
        # machine) landed in the meantime.
        raise FileExistsError(
            f"ml.walk_forward_runs already has a run {record.run_id!r}: another run with this id landed while "
            f"this one ran; this run's results are only in {record.run_dir} (choose another --run-id)"
        ) from None


def _copy(conn, table: str, columns: Sequence[str], rows) -> int:
    statement = sql.SQL("copy {} ({}) from stdin").format(
        sql.Identifier(schemas.ML, table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    count = 0
    with conn.cursor().copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def _fold_rows(run_id: str, folds: Sequence[Fold]):
    return ((run_id, *fold.to_dict().values()) for fold in folds)  # to_dict keeps FOLD_COLUMNS' order


def _task_rows(
    run_id: str, results: Sequence[TaskResult], failures: Sequence[TaskFailure], selection_metric: str
) -> list[tuple]:
    rows = []
    for r in results:
        rows.append((run_id, r.fold_id, r.seed, "succeeded", r.attempts, None, r.selected_step,
                     nullable(r.validation_score), selection_metric, r.training.steps,
                     nullable(r.training.steps_per_second), r.wall_seconds, r.node, r.symbols["train"],
                     r.symbols["validation"], r.symbols["test"]))  # fmt: skip
    for f in failures:
        # A failed task selected no checkpoint, trained no steps and traded no symbols: only its attempts and error.
        rows.append((run_id, f.fold_id, f.seed, "failed", f.attempts, f.error, None, None, selection_metric,
                     None, None, None, None, None, None, None))  # fmt: skip
    return rows


def _selection_rows(run_id: str, results: Sequence[TaskResult]):
    return ((run_id, r.fold_id, r.seed, step, nullable(score)) for r in results for step, score in r.selection_history)


def _metric_rows(run_id: str, results: Sequence[TaskResult]):
    for result in results:
        for split, replays in result.replays.items():
            for policy, replay in replays.items():
                for metric, value in replay.metrics().items():
                    yield (run_id, result.fold_id, result.seed, split, AGGREGATE_SYMBOL, policy, metric,
                           nullable(value), replay.sessions)  # fmt: skip
                for symbol, values in replay.symbol_metrics.items():
                    for metric in METRICS:
                        yield (run_id, result.fold_id, result.seed, split, symbol, policy, metric,
                               nullable(values[metric]), replay.sessions)  # fmt: skip


def _statistics_rows(run_id: str, statistics: RunStatistics):
    for s in statistics.policies:
        for estimator, interval in (("mean", s.mean), ("iqm", s.iqm)):
            yield (run_id, s.fold_id, s.policy, s.metric, estimator, nullable(interval.estimate),
                   nullable(interval.low), nullable(interval.high), statistics.confidence, s.size.folds,
                   s.size.seeds, s.size.tasks, s.size.sessions, s.size.symbols, s.annualised_from)  # fmt: skip


def _comparison_rows(run_id: str, statistics: RunStatistics):
    for c in statistics.comparisons:
        yield (run_id, c.fold_id, c.baseline, c.metric, nullable(c.difference.estimate), nullable(c.difference.low),
               nullable(c.difference.high), nullable(c.p_agent_better.estimate), nullable(c.p_agent_better.low),
               nullable(c.p_agent_better.high), statistics.confidence, c.size.folds, c.size.seeds, c.size.tasks,
               c.size.sessions)  # fmt: skip


def _equity_rows(run_id: str, results: Sequence[TaskResult]):
    for result in results:
        for split, replays in result.replays.items():
            for policy, replay in replays.items():
                yield from _curve_rows(run_id, result, split, policy, replay)


def _curve_rows(run_id: str, result: TaskResult, split: str, policy: str, replay: PolicyReplay):
    exposure = [None, *replay.exposure.tolist()]
    for day, worth, fall, long_share in zip(
        replay.dates.tolist(), replay.net_worth.tolist(), drawdown(replay.net_worth).tolist(), exposure, strict=True
    ):
        yield (run_id, result.fold_id, result.seed, split, policy, day, worth, fall, long_share)
