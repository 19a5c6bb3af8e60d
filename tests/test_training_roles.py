"""The training job reads as ``trainer``, with a login that holds nothing else: it can read the marts, never raw
(not even after RESET ROLE); it owns ml, analysts read it."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

from devtools.documented_tables import documented_table
from devtools.scratch_database import scratch_database
from devtools.synthetic_mart import synthetic_mart, write_mart, write_mart_yaml
from training.config import SingleRunConfig, WalkForwardConfig
from training.features import read_mart_schema
from training.mart import read_mart, trainer_connection
from training.metrics import METRICS
from training.policies import BASELINES
from training.results_schema import COLUMN_COMMENTS, ensure_tables
from training.statistics import COMPARISON_METRICS, STATISTIC_METRICS
from training.sweep import SweepConfig
from warehouse_db import connect
from warehouse_db.errors import WarehouseNotProvisioned
from warehouse_db.settings import REPO_ROOT, ConnectionSettings


@pytest.fixture
def mart_warehouse(warehouse: ConnectionSettings) -> ConnectionSettings:
    """The conftest's database (provisioned; raw landing tables created as loader) plus a synthetic mart."""
    with connect(warehouse) as conn:
        write_mart(conn, synthetic_mart(n_symbols=2, n_sessions=200, seed=41))
        conn.execute("set role loader")
        conn.execute("create table raw.training_probe (secret text)")
        conn.execute("insert into raw.training_probe values ('raw rows are not for training')")
        conn.commit()
    return warehouse


@pytest.mark.parametrize("table", ["raw.training_probe", "raw.ibkr_bars"])
def test_trainer_cannot_read_raw_not_even_after_reset_role(mart_warehouse: ConnectionSettings, table: str) -> None:
    with trainer_connection(mart_warehouse) as conn:
        assert conn.execute("select session_user, current_user").fetchone() == ("trainer_login", "trainer")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"select * from {table} limit 1")
        conn.rollback()
        conn.execute("reset role")  # back to the login itself, which holds nothing but trainer
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"select * from {table} limit 1")
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("set role loader")


def test_the_mart_reader_reads_as_trainer(mart_warehouse: ConnectionSettings, tmp_path: Path) -> None:
    """With trainer's SELECT revoked the reader fails, although the admin login (a superuser here) could read."""
    schema = read_mart_schema(write_mart_yaml(tmp_path / "training_bars.yml"))
    assert read_mart(mart_warehouse, schema).symbols == ("SYM000", "SYM001")
    with connect(mart_warehouse) as conn:
        conn.execute("revoke select on marts.training_bars from trainer")
        conn.commit()
        assert conn.execute("select count(*) > 0 from marts.training_bars").fetchone() == (True,)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        read_mart(mart_warehouse, schema)


def test_before_any_run_the_documented_queries_name_the_missing_table(mart_warehouse: ConnectionSettings) -> None:
    """docs/analysts.md says what an analyst sees before the first run creates the ml tables. It said every query ended
    with `relation "ml.walk_forward_runs" does not exist`; each names the first ml table it reads."""
    text = (REPO_ROOT / "docs/analysts.md").read_text(encoding="utf-8")
    promised = re.search(r'`(relation "ml\.walk_forward_)\.\.\.(" does not exist)`, naming the first `ml` table', text)
    assert promised, "docs/analysts.md no longer says what a query before the first run ends with"
    statements = [s for block in re.findall(r"```sql\n(.*?)```", text, re.DOTALL) for s in block.split("\n\n")]
    statements = [s for s in statements if "ml." in s]
    assert len(statements) >= 5
    for statement in statements:
        first = re.search(r"\bml\.(\w+)", re.sub(r"--.*", "", statement)).group(1)  # the first one read, not commented
        with connect(mart_warehouse, role="analyst") as conn, pytest.raises(psycopg.errors.UndefinedTable) as error:
            conn.execute(statement)
        assert str(error.value).splitlines()[0] == f'relation "ml.{first}" does not exist', statement
        assert str(error.value).startswith(promised.group(1)) and promised.group(2) in str(error.value)


def test_ml_tables_belong_to_trainer_and_analysts_can_read_them(mart_warehouse: ConnectionSettings) -> None:
    ensure_tables(mart_warehouse)
    with connect(mart_warehouse) as conn:
        owners = dict(
            conn.execute(
                "select tablename, tableowner from pg_tables where schemaname = 'ml' order by tablename"
            ).fetchall()
        )
    assert owners == {
        **{
            f"walk_forward_{name}": "trainer"
            for name in ("comparisons", "equity", "folds", "metrics", "runs", "selection", "statistics", "tasks")
        },
        "sweeps": "trainer",
        "sweep_trials": "trainer",
    }
    with connect(mart_warehouse, role="analyst") as conn:
        for table in owners:
            assert conn.execute(f"select count(*) from ml.{table}").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("delete from ml.walk_forward_runs")


def test_every_measured_column_of_the_ml_tables_says_what_it_holds_and_in_what_unit(
    mart_warehouse: ConnectionSettings,
) -> None:
    """An analyst reading ml.walk_forward_metrics.value or ml.walk_forward_statistics.estimate with `\\d+` (or any SQL
    client) found no comment: nothing said that 0.05 is 5%, or that a Sharpe ratio is annualised. Every column now has
    one; a measured one names its unit."""
    ensure_tables(mart_warehouse)
    with connect(mart_warehouse, role="analyst") as conn:
        columns = conn.execute(
            """
            select c.relname, a.attname, format_type(a.atttypid, a.atttypmod), col_description(c.oid, a.attnum)
            from pg_class c join pg_namespace n on n.oid = c.relnamespace join pg_attribute a on a.attrelid = c.oid
            where n.nspname = 'ml' and c.relkind = 'r' and a.attnum > 0 and not a.attisdropped
            """
        ).fetchall()
    # Every column, keys and sweeps' text and jsonb columns too: ml.sweeps.status, space, best_params and final_run_id
    # and ml.sweep_trials.state and params had none, and a key's meaning is not always its name's (fold_id null = all
    # folds in the statistics and comparisons).
    undescribed = [f"{table}.{column}" for table, column, _, comment in columns if not comment]
    assert undescribed == [], undescribed
    comment = {(table, column): text for table, column, _, text in columns}
    for table in ("walk_forward_statistics", "walk_forward_comparisons"):
        assert "null: over all folds" in comment[(table, "fold_id")]
    for column in ("walk_forward_metrics.value", "walk_forward_statistics.estimate"):
        assert "0.05 = 5%" in comment[tuple(column.split("."))] and "annualised" in comment[tuple(column.split("."))]
    assert "fraction" in comment[("walk_forward_equity", "drawdown")]
    assert "not a p-value" in comment[("walk_forward_comparisons", "p_agent_better")]


def test_the_ml_column_comments_and_the_baselines_table_name_every_policy_and_metric() -> None:
    """A baseline or metric added in training/ lands rows in the ml tables; the comments that list the policies and
    metrics (and docs/training.md's table of baselines) must name it too, or an analyst never learns it is there."""
    stale = []
    for table, columns in COLUMN_COMMENTS.items():
        for column in {"policy", "baseline"} & set(columns):
            stale += [f"{table}.{column} lacks {name}" for name in BASELINES if name not in columns[column]]
    named = {
        ("walk_forward_metrics", "value"): METRICS,
        ("walk_forward_statistics", "metric"): STATISTIC_METRICS,
        ("walk_forward_comparisons", "metric"): COMPARISON_METRICS,
    }
    for (table, column), names in named.items():
        stale += [f"{table}.{column} lacks {name}" for name in names if name not in COLUMN_COMMENTS[table][column]]
    assert stale == [], f"COLUMN_COMMENTS in training/results_schema.py: {stale}"
    rows = documented_table("policy").splitlines()[2:]
    documented = [row.split("|")[1].strip(" `") for row in rows]
    assert documented == list(BASELINES), "docs/training.md's table of baselines must list BASELINES, in order"


def test_trainer_sees_only_what_it_was_granted(mart_warehouse: ConnectionSettings) -> None:
    with trainer_connection(mart_warehouse) as conn:
        readable = {
            row[0]
            for row in conn.execute(
                "select table_schema from information_schema.tables "
                "where has_table_privilege(format('%I.%I', table_schema, table_name), 'select') "
                "and table_schema not in ('pg_catalog', 'information_schema')"
            )
        }
    assert readable <= {"marts", "ml"} and "marts" in readable


def test_a_database_never_provisioned_is_named_not_a_traceback(embedded_cluster: ConnectionSettings) -> None:
    """The roles belong to the server, the schemas to each database: a new database on a server provisioned for
    another has the trainer role but no ml schema, and training must say what to run."""
    with (
        scratch_database("unprovisioned", embedded_cluster) as settings,
        pytest.raises(WarehouseNotProvisioned, match=r"schema ml does not exist yet .*make ingest"),
    ):
        ensure_tables(settings)


# ml.walk_forward_runs as the release of 2026-12-01 03:05 (5c8f163, training/results_store.py's DDL) created it, and a
# row as that release wrote it: its dbt provenance is target/run_results.json's, its config holds dbt_run_results.
OLDER_RELEASE_RUNS_DDL = """
create table if not exists ml.walk_forward_runs (
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
comment on column ml.walk_forward_runs.mart_hash is 'SHA-256 of the marts.training_bars rows and folds the run read.';
insert into ml.walk_forward_runs values (
    '20261201T172231Z-ee752c', 'walk_forward', 'succeeded', '2026-12-01 17:22:31+00', '2026-12-01 17:23:08+00',
    'c0ffee', '{"seed": 42, "seeds": 2, "dbt_run_results": "/home/r/clone/target/run_results.json"}', 'native',
    2000, 2, 2, 4, 0, 242, 8, 1, 0.67, 'no evidence either way from 4 fold x seed test splits', 9640, 'sha256:4934',
    '29d887b3-06fd-42cf-a09a-1fea368a36ee', '2026-12-01 17:21:55.734855+00', null, 1, '/home/r/clone/runs/x'
);
"""


def test_a_run_an_earlier_release_wrote_keeps_its_row_and_its_dbt_provenance_is_told_apart(
    warehouse: ConnectionSettings,
) -> None:
    """Upgraded with git pull, a warehouse keeps the runs the release before marts.mart_builds wrote. Their
    dbt_invocation_id is the invocation that last wrote target/run_results.json (after README's dbt run && dbt test,
    the test's, which built nothing), yet the column's comment and docs/analysts.md said every row holds the
    invocation that built the mart. The rows are kept as they were; the comment and the page say which they are
    and how to find them (their config holds dbt_run_results, which no later release writes)."""
    with connect(warehouse, role="trainer") as conn:
        conn.execute(OLDER_RELEASE_RUNS_DDL)
        conn.commit()
    with connect(warehouse, role="analyst") as conn:
        before = conn.execute("select * from ml.walk_forward_runs").fetchall()
    ensure_tables(warehouse)  # what the first training command after the pull does
    with connect(warehouse, role="analyst") as conn:
        assert conn.execute("select * from ml.walk_forward_runs").fetchall() == before
        marked = conn.execute("select run_id from ml.walk_forward_runs where config ? 'dbt_run_results'").fetchall()
        comments = dict(
            conn.execute(
                "select attname, col_description(attrelid, attnum) from pg_attribute "
                "where attrelid = 'ml.walk_forward_runs'::regclass and attname like 'dbt_%'"
            ).fetchall()
        )
    assert marked == [("20261201T172231Z-ee752c",)]
    for column in ("dbt_invocation_id", "dbt_generated_at"):
        assert "where config ? 'dbt_run_results'" in comments[column] and "run_results.json" in comments[column]
    analysts = (REPO_ROOT / "docs" / "analysts.md").read_text(encoding="utf-8")
    assert "`config` holds `dbt_run_results` (`where config ? 'dbt_run_results'`)" in analysts
    for config in (SingleRunConfig(), WalkForwardConfig(), SweepConfig()):  # no row written from now on is marked
        assert "dbt_run_results" not in config.to_dict()
