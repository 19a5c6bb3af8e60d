"""The whole pipeline against an external PostgreSQL 15, chosen with the PG* variables, as a hosted user would.

A real PostgreSQL 15 server (Debian's, from the machine image) on 127.0.0.1 with password authentication;
the project connects as an ordinary login role that owns its database and may create roles, not as a
superuser. Ingest (CSV), dbt build and a short training run must all work there, and the password must
never appear in anything they print.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from warehouse_db import connect
from warehouse_db.settings import REPO_ROOT, settings_from_url

# Its own PostgreSQL server, started by the fixture below.
pytestmark = pytest.mark.integration

POSTGRES_15_BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER_PASSWORD = "pg15-admin-secret"
USER_PASSWORD = "quant-secret-7f3a"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_server_user(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; Debian's package ships the `postgres` OS user for that.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def postgres15() -> Iterator[str]:
    """A throwaway PostgreSQL 15 cluster; yields a DATABASE_URL for a non-superuser that owns its database."""
    assert (POSTGRES_15_BIN / "postgres").exists(), "PostgreSQL 15 server binaries (Debian postgresql-15) are required"
    workdir = Path(tempfile.mkdtemp(prefix="pg15-"))
    (workdir / "pw").write_text(SUPERUSER_PASSWORD, encoding="utf-8")
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        shutil.chown(workdir / "pw", "postgres")
    data, port = workdir / "data", free_port()
    subprocess.run(
        as_server_user(
            [
                str(POSTGRES_15_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "scram-sha-256",
                f"--pwfile={workdir / 'pw'}",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        as_server_user(
            [
                str(POSTGRES_15_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-w",
                "-l",
                str(workdir / "log"),
                "-o",
                f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        admin = settings_from_url(f"postgresql://postgres:{SUPERUSER_PASSWORD}@127.0.0.1:{port}/postgres")
        with connect(admin, autocommit=True) as conn:
            conn.execute(f"create role quant login createrole password '{USER_PASSWORD}'")
            conn.execute("create database research owner quant")
        yield f"postgresql://quant:{USER_PASSWORD}@127.0.0.1:{port}/research"
    finally:
        subprocess.run(
            as_server_user([str(POSTGRES_15_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(workdir, ignore_errors=True)


def run(command: list[str], env: dict[str, str], cwd: Path = REPO_ROOT) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{output[-5000:]}"
    assert USER_PASSWORD not in output, f"{command[0]} printed the password"
    return output


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ingest_dbt_and_training_work_on_an_external_postgres_15(postgres15, tmp_path):
    url = settings_from_url(postgres15)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "DATABASE_URL"}
    env.update(url.libpq_env())  # PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE: the standard variables
    env["DO_NOT_TRACK"] = "1"
    python, dbt = sys.executable, str(Path(sys.executable).with_name("dbt"))

    assert "PostgreSQL 15" in run([python, "-m", "warehouse_db", "up"], env)
    run([python, "-m", "ingest", "--source", "csv", "data/sample_bars.csv", "--no-progress"], env)
    # dbt gets its connection the way the README tells shell users: `eval "$(python -m warehouse_db env)"`,
    # which hands the password over in a private passfile rather than on the terminal.
    exports = run([python, "-m", "warehouse_db", "env"], env)
    dbt_env = {k: v for k, v in env.items() if k != "PGPASSWORD"}
    dbt_env.update(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in exports.splitlines())
    assert "PGPASSWORD" not in dbt_env and Path(dbt_env["PGPASSFILE"]).stat().st_mode & 0o077 == 0
    # The sample file holds about 14 months: two short folds instead of the default four half-year ones.
    folds = '{"walk_forward_folds": 2, "walk_forward_test_sessions": 30, "walk_forward_validation_sessions": 30, "walk_forward_min_train_sessions": 100}'
    run(
        [
            dbt,
            "build",
            "--vars",
            folds,
            "--target-path",
            str(tmp_path / "target"),
            "--log-path",
            str(tmp_path / "logs"),
        ],
        dbt_env,
    )
    run(
        [
            python,
            "-m",
            "training",
            "--timesteps",
            "2048",
            "--n-envs",
            "2",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--no-progress-bar",
        ],
        env,
    )

    with connect(url) as conn:
        owner = conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()[0]
        mart_rows, symbols = conn.execute("select count(*), count(distinct symbol) from marts.training_bars").fetchone()
        runs = conn.execute("select count(*) from ml.walk_forward_runs where status = 'succeeded'").fetchone()[0]
        metrics = conn.execute("select count(*) from ml.walk_forward_metrics").fetchone()[0]
        mart_owner = conn.execute(
            "select tableowner from pg_tables where schemaname = 'marts' and tablename = 'training_bars'"
        ).fetchone()[0]
    assert owner is False, "the test must exercise an ordinary (non-superuser) login"
    assert symbols == 5 and mart_rows > 0
    assert runs == 1 and metrics > 0
    assert mart_owner == "transformer"
