"""Every command names its sessions in pg_stat_activity.application_name, while it runs, on a real server: dbt, the
training job, the walk-forward and the sweep, ``python -m warehouse_db`` and ``make psql`` (ingest's own test is in
test_ingest_ibkr.py). A user's PGAPPNAME (or a DATABASE_URL's application_name) wins, and the query of
docs/operations.md that finds who holds a dbt rebuild back names both sides.

Each command is caught waiting on a lock the test holds (as a notebook with an open transaction would), and its
waiting sessions are read from pg_stat_activity."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devtools import dbt_harness
from devtools.synthetic_mart import lay_out_folds, mart_database, synthetic_mart, write_mart_yaml
from warehouse_db import connect, resolve_settings
from warehouse_db.settings import REPO_ROOT, ConnectionSettings, settings_from_url

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ray")]  # the walk-forward and the sweep start Ray

HOLDER = "a long analysis"


@pytest.fixture(scope="module")
def mart_warehouse(
    embedded_cluster: ConnectionSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConnectionSettings]:
    """A database with a small mart and its folds, and the raw landing tables and seeds dbt reads."""
    frame = synthetic_mart(n_symbols=2, n_sessions=200, seed=65)
    folds = lay_out_folds(frame["session_date"], folds=2, test_sessions=30, validation_sessions=30)
    with mart_database("test_application_names", frame, folds, embedded_cluster) as settings:
        dbt_harness.prepare_raw(settings)
        dbt_harness.DbtProject(settings, tmp_path_factory.mktemp("dbt_seed")).run("seed", check=True)
        yield settings


def command_env(settings: ConnectionSettings, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PG", "RAY_", "WAREHOUSE_", "DBT_")) and k != "DATABASE_URL"
    }
    return {**env, **settings.libpq_env(), "DO_NOT_TRACK": "1", **extra}


def holding(settings: ConnectionSettings, statement: str) -> psycopg.Connection:
    """A session named HOLDER with an open transaction that ran ``statement`` (a lock the command will wait on)."""
    conn = connect(settings)
    conn.execute(f"set application_name = '{HOLDER}'")
    conn.execute(statement)
    return conn


def waiting_names(
    settings: ConnectionSettings, holder: psycopg.Connection, process: subprocess.Popen, timeout: float = 180
) -> list[str]:
    """The application_name of every session that waits for ``holder``, once the command has one waiting."""
    deadline = time.monotonic() + timeout
    with connect(settings, autocommit=True) as watcher:
        while time.monotonic() < deadline:
            names = [
                name
                for (name,) in watcher.execute(
                    "select application_name from pg_stat_activity where %s = any(pg_blocking_pids(pid))",
                    (holder.info.backend_pid,),
                ).fetchall()
            ]
            if names:
                return names
            if process.poll() is not None:
                pytest.fail(
                    f"the command ended ({process.returncode}) without waiting:\n{process.communicate()[0][-4000:]}"
                )
            time.sleep(0.2)
    pytest.fail("no session of the command waited within the time limit")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, as `kill PID`: every command ends on it as on Ctrl+C (and the walk-forward stops its Ray)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def who_blocks_query() -> str:
    """The query docs/operations.md gives for finding who holds a dbt rebuild back, as it is written there."""
    text = (REPO_ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    (query,) = re.findall(r"```sql\n(-- who waits, and for whom\n.*?)```", text, flags=re.DOTALL)
    return query


@pytest.mark.parametrize("own_name", [None, "nightly dbt"])
def test_dbt_names_its_sessions_and_the_who_blocks_query_names_both_sides(
    mart_warehouse: ConnectionSettings, tmp_path: Path, own_name: str | None
) -> None:
    """dbt-postgres sends application_name "dbt" unless its profile says otherwise, and that beat PGAPPNAME: every
    dbt command looked alike, and a user's own name never arrived."""
    project = dbt_harness.DbtProject(mart_warehouse, tmp_path, extra_env={"PGAPPNAME": own_name} if own_name else {})
    holder = holding(mart_warehouse, "lock table raw.ibkr_bars in access exclusive mode")
    command = [str(dbt_harness.DBT), "run", "--select", "stg_ibkr__bars", "--profiles-dir", str(REPO_ROOT),
               "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=project.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        names = waiting_names(mart_warehouse, holder, process)
        assert set(names) == {own_name or "dbt run"}, names
        with connect(mart_warehouse, autocommit=True) as admin:
            cursor = admin.execute(who_blocks_query())
            columns = [column.name for column in cursor.description]
            # The query lists the whole server's waits: other tests' too, when they run beside this one.
            rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        held = [row for row in rows if row["blocker_pid"] == holder.info.backend_pid]
        assert {(row["waiting"], row["held_by"]) for row in held} == {(own_name or "dbt run", HOLDER)}, rows
    finally:
        holder.close()
        stop(process)


TRAINING_COMMANDS = {
    "training": ["--fold", "1"],
    "training.walk_forward": ["--folds", "1", "--seeds", "1", "--ray-cpus", "1"],
    "training.sweep": ["--trials", "1", "--ray-cpus", "1"],
}


@pytest.mark.parametrize(
    ("module", "own_name"),
    [("training", None), ("training.walk_forward", None), ("training.sweep", None), ("training.walk_forward", "mine")],
)
def test_the_training_commands_name_their_sessions(
    mart_warehouse: ConnectionSettings, tmp_path: Path, module: str, own_name: str | None
) -> None:
    """make train, the walk-forward and the sweep, caught in their data-contract check (Great Expectations' own
    connections): each session is named for the command and its process id (before: blank)."""
    holder = holding(mart_warehouse, "lock table marts.training_bars in access exclusive mode")
    command = [sys.executable, "-m", module, *TRAINING_COMMANDS[module], "--runs-dir", str(tmp_path / "runs"),
               "--mart-yaml", str(write_mart_yaml(tmp_path / "training_bars.yml")), "--no-progress-bar"]  # fmt: skip
    env = command_env(mart_warehouse, **({"PGAPPNAME": own_name} if own_name else {}))
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        names = waiting_names(mart_warehouse, holder, process)
        assert set(names) == {own_name or f"python -m {module} (pid {process.pid})"}, names
    finally:
        holder.close()
        stop(process)


@pytest.mark.parametrize("own_name", [None, "from the url"])
def test_warehouse_db_names_its_sessions(mart_warehouse: ConnectionSettings, own_name: str | None) -> None:
    """`python -m warehouse_db provision` waiting for another provisioning (the lock they take turns on); with a
    DATABASE_URL's application_name, that name (a password in the URL reaches no name)."""
    holder = holding(mart_warehouse, "select pg_advisory_xact_lock(hashtext('warehouse_db.provision'))")
    env = command_env(mart_warehouse)
    if own_name:
        url = f"postgresql://postgres:not-the-password@/{mart_warehouse.dbname}?host={mart_warehouse.host}"
        url += f"&port={mart_warehouse.port}&application_name={own_name.replace(' ', '%20')}"
        assert settings_from_url(url).options == {"application_name": own_name}
        env = {k: v for k, v in env.items() if not k.startswith("PG")} | {"DATABASE_URL": url}
    process = subprocess.Popen(
        [sys.executable, "-m", "warehouse_db", "provision"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        names = waiting_names(mart_warehouse, holder, process)
        assert set(names) == {own_name or f"python -m warehouse_db (pid {process.pid})"}, names
        assert not any("not-the-password" in name for name in names)
    finally:
        holder.close()
        stop(process)


@pytest.mark.parametrize("own_name", [None, "my psql"])
def test_make_psql_names_its_session(mart_warehouse: ConnectionSettings, own_name: str | None) -> None:
    env = command_env(mart_warehouse, **({"PGAPPNAME": own_name} if own_name else {}))
    result = subprocess.run(
        [sys.executable, "-m", "warehouse_db", "psql", "--as", "analyst", "-At", "-c",
         "select application_name from pg_stat_activity where pid = pg_backend_pid()"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{own_name or 'psql'}\n"


def test_a_pgappname_in_dotenv_names_the_embedded_warehouses_sessions(embedded_cluster, tmp_path: Path) -> None:
    """.env is read beside the environment, but libpq reads PGAPPNAME from the environment only: the embedded
    warehouse's sessions ignored a .env's PGAPPNAME."""
    dotenv = tmp_path / ".env"
    dotenv.write_text("PGAPPNAME=named in dotenv\n", encoding="utf-8")
    with connect(resolve_settings(env={}, dotenv_path=dotenv), role="analyst") as conn:
        assert conn.execute("show application_name").fetchone() == ("named in dotenv",)
    with connect(resolve_settings(env={}, dotenv_path=None)) as conn:
        assert conn.execute("show application_name").fetchone()[0].endswith(f" (pid {os.getpid()})")
