"""The ``ml`` tables the training job owns: created as trainer, written in one transaction at the end of a run.

``ml.evaluation_metrics`` and ``ml.equity_curves`` join to ``marts.training_bars`` on (symbol, session_date);
analysts read them through the ``analyst`` role, which the provisioning grants SELECT on every table trainer creates
in ``ml``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

import warehouse_db
from training.evaluation import Evaluation
from warehouse_db import schemas
from warehouse_db.settings import ConnectionSettings

logger = logging.getLogger(__name__)

DDL = f"""
create table if not exists {schemas.ML}.training_runs (
    run_id              text primary key,
    started_at          timestamptz not null,
    finished_at         timestamptz not null,
    status              text not null,
    env                 text not null,
    seed                integer not null,
    timesteps           bigint not null,
    total_timesteps     bigint not null,
    steps_per_second    double precision,
    symbols             integer not null,
    mart_rows           bigint not null,
    mart_hash           text not null,
    dbt_invocation_id   text,
    dbt_generated_at    timestamptz,
    resumed_from        text,
    run_dir             text not null,
    config              jsonb not null
);
comment on table {schemas.ML}.training_runs is
    'One row per finished training run: what it trained on (mart_hash, dbt_invocation_id) and how (config).';
comment on column {schemas.ML}.training_runs.timesteps is 'Environment steps trained in this run.';
comment on column {schemas.ML}.training_runs.total_timesteps is
    'The model''s steps, including a resumed checkpoint''s.';
comment on column {schemas.ML}.training_runs.mart_hash is
    'SHA-256 of the marts.training_bars rows the run read (all splits of its symbols).';

create table if not exists {schemas.ML}.evaluation_metrics (
    run_id  text not null references {schemas.ML}.training_runs (run_id) on delete cascade,
    split   text not null,
    symbol  text not null,
    policy  text not null,
    metric  text not null,
    value   double precision,
    primary key (run_id, split, symbol, policy, metric)
);
comment on table {schemas.ML}.evaluation_metrics is
    'Replay metrics per run, split, symbol (''__all__'' = all symbols side by side, equal starting cash) and policy '
    '(agent, buy_and_hold, flat, random). value is null where a metric is undefined.';

create table if not exists {schemas.ML}.equity_curves (
    run_id        text not null references {schemas.ML}.training_runs (run_id) on delete cascade,
    split         text not null,
    symbol        text not null,
    policy        text not null,
    session_date  date not null,
    net_worth     double precision not null,
    drawdown      double precision not null,
    position      smallint not null,
    primary key (run_id, split, symbol, policy, session_date)
);
comment on table {schemas.ML}.equity_curves is
    'Net worth at each session''s close during evaluation replays; '
    'joins marts.training_bars on (symbol, session_date).';
comment on column {schemas.ML}.equity_curves.position is 'Position held during the session: 0 flat, 1 long.';
comment on column {schemas.ML}.equity_curves.drawdown is 'net_worth / running peak - 1 (0 at a new high).';
"""


@dataclass(frozen=True)
class RunRecord:
    """The ml.training_runs row of one run."""

    run_id: str
    started_at: datetime
    finished_at: datetime
    status: str
    env: str
    seed: int
    timesteps: int
    total_timesteps: int
    steps_per_second: float | None
    symbols: int
    mart_rows: int
    mart_hash: str
    dbt_invocation_id: str | None
    dbt_generated_at: str | None
    resumed_from: str | None
    run_dir: str
    config: dict[str, Any]


def ensure_tables(settings: ConnectionSettings) -> None:
    """Create the ml tables if they do not exist (as trainer, so analysts' default privileges apply)."""
    with warehouse_db.connect(settings, role=schemas.TRAINER_ROLE) as conn, conn.transaction():
        # Two runs starting at once would race on CREATE TABLE IF NOT EXISTS; take turns.
        conn.execute("select pg_advisory_xact_lock(hashtext('training.results_store'))")
        conn.execute(DDL)


def run_exists(settings: ConnectionSettings, run_id: str) -> bool:
    with warehouse_db.connect(settings, role=schemas.TRAINER_ROLE) as conn:
        query = sql.SQL("select 1 from {} where run_id = %s").format(sql.Identifier(schemas.ML, "training_runs"))
        return conn.execute(query, (run_id,)).fetchone() is not None


def _nullable(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def write_run(settings: ConnectionSettings, record: RunRecord, evaluation: Evaluation) -> None:
    """Insert the run, its metrics and its equity curves in one transaction (all or nothing)."""
    ensure_tables(settings)
    with warehouse_db.connect(settings, role=schemas.TRAINER_ROLE) as conn, conn.transaction():
        fields = list(record.__dataclass_fields__)
        values = [getattr(record, name) for name in fields]
        values[fields.index("config")] = Jsonb(json.loads(json.dumps(record.config, default=str)))
        values[fields.index("steps_per_second")] = _nullable(record.steps_per_second)
        conn.execute(
            sql.SQL("insert into {} ({}) values ({})").format(
                sql.Identifier(schemas.ML, "training_runs"),
                sql.SQL(", ").join(map(sql.Identifier, fields)),
                sql.SQL(", ").join(sql.Placeholder() * len(fields)),
            ),
            values,
        )
        with conn.cursor().copy(
            sql.SQL("copy {} (run_id, split, symbol, policy, metric, value) from stdin").format(
                sql.Identifier(schemas.ML, "evaluation_metrics")
            )
        ) as copy:
            for row in evaluation.metrics.itertuples(index=False):
                copy.write_row((record.run_id, row.split, row.symbol, row.policy, row.metric, _nullable(row.value)))
        curve_rows = 0
        with conn.cursor().copy(
            sql.SQL(
                "copy {} (run_id, split, symbol, policy, session_date, net_worth, drawdown, position) from stdin"
            ).format(sql.Identifier(schemas.ML, "equity_curves"))
        ) as copy:
            for curve in evaluation.curves:
                dates = curve.dates.astype("datetime64[D]").tolist()
                for date, net_worth, drawdown, position in zip(
                    dates, curve.net_worth.tolist(), curve.drawdown.tolist(), curve.positions.tolist(), strict=True
                ):
                    copy.write_row(
                        (record.run_id, curve.split, curve.symbol, curve.policy, date, net_worth, drawdown, position)
                    )
                    curve_rows += 1
    logger.info(
        "wrote run %s to %s.training_runs, %d metrics and %d equity-curve rows",
        record.run_id,
        schemas.ML,
        len(evaluation.metrics),
        curve_rows,
    )
