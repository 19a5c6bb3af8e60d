"""Which server the project uses, how it connects, and what each role may do."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import psycopg
import pytest

from warehouse_db import connect, embedded, schemas
from warehouse_db.connection import resolve_settings
from warehouse_db.settings import REPO_ROOT, read_config, settings_from_url, uses_external_server


def test_no_configuration_means_the_embedded_warehouse(tmp_path):
    config = read_config(env={"HOME": "/root"}, dotenv_path=tmp_path / "missing.env")
    assert not uses_external_server(config)


def test_environment_beats_dotenv_and_either_selects_an_external_server(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("PGHOST=from-dotenv\nPGUSER=quant\n", encoding="utf-8")
    config = read_config(env={"PGHOST": "from-env"}, dotenv_path=dotenv)
    assert uses_external_server(config)
    assert config["PGHOST"] == "from-env" and config["PGUSER"] == "quant"


def test_database_url_is_parsed_including_socket_hosts_and_ssl():
    s = settings_from_url("postgresql://quant:s%40cret@db.example.com:6543/prod?sslmode=require")
    assert (s.host, s.port, s.user, s.password, s.dbname) == ("db.example.com", 6543, "quant", "s@cret", "prod")
    assert s.connect_kwargs()["sslmode"] == "require"
    assert s.libpq_env()["PGSSLMODE"] == "require"
    assert settings_from_url("postgresql://postgres@/warehouse?host=/tmp/sock").host == "/tmp/sock"
    with pytest.raises(ValueError, match="postgresql://"):
        settings_from_url("mysql://x@y/z")


def test_client_encoding_is_always_utf8():
    s = settings_from_url("postgresql://u@h/d")
    assert s.connect_kwargs()["client_encoding"] == "UTF8"


@pytest.mark.integration  # a real connection attempt (to a closed port)
def test_a_password_never_appears_in_descriptions_or_connection_errors():
    secret = "hunter2-very-secret"
    s = settings_from_url(f"postgresql://quant:{secret}@127.0.0.1:1/prod?connect_timeout=2")
    assert secret not in s.describe() and secret not in repr(s)
    with pytest.raises(ConnectionError) as raised:
        connect(s)
    assert secret not in str(raised.value)
    assert "127.0.0.1" in str(raised.value)


def test_schema_names_agree_with_dbt_project():
    import yaml

    project = yaml.safe_load((REPO_ROOT / "dbt_project.yml").read_text(encoding="utf-8"))
    text = (REPO_ROOT / "dbt_project.yml").read_text(encoding="utf-8")
    for schema in (schemas.STAGING, schemas.INTERMEDIATE, schemas.MARTS):
        assert f"+schema: {schema}" in text, f"dbt_project.yml does not configure schema {schema}"
    assert project["flags"]["send_anonymous_usage_stats"] is False


def test_trainer_cannot_read_raw_but_analyst_and_trainer_share_ml(warehouse):
    with connect(warehouse, role=schemas.TRAINER_ROLE) as trainer:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            trainer.execute("select count(*) from raw.ibkr_bars")
        trainer.rollback()
        trainer.execute("create table ml.results (x int)")
        trainer.execute("insert into ml.results values (1)")
        trainer.commit()
    with connect(warehouse, role=schemas.ANALYST_ROLE) as analyst:
        assert analyst.execute("select x from ml.results").fetchall() == [(1,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            analyst.execute("select count(*) from raw.load_batches")


def test_provisioning_is_idempotent(warehouse):
    from warehouse_db.provision import provision

    with connect(warehouse) as conn:
        provision(conn)
        provision(conn)
        roles = conn.execute(
            "select rolname from pg_roles where rolname = any(%s) order by rolname",
            ([schemas.LOADER_ROLE, schemas.TRANSFORMER_ROLE, schemas.TRAINER_ROLE, schemas.ANALYST_ROLE],),
        ).fetchall()
    assert [r for (r,) in roles] == ["analyst", "loader", "trainer", "transformer"]


@pytest.fixture(scope="module")
def second_server():
    """A second, independent PostgreSQL server, standing in for an external one chosen with PG* variables."""
    pgdata = REPO_ROOT / ".warehouse" / "external-test" / "pgdata"
    shutil.rmtree(pgdata.parent, ignore_errors=True)
    settings = embedded.start(pgdata=pgdata, database="analytics")
    yield settings
    embedded.stop(pgdata)
    shutil.rmtree(pgdata.parent, ignore_errors=True)


def test_pg_variables_select_an_external_server(second_server, embedded_cluster):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "DATABASE_URL"}
    env.update(second_server.libpq_env())
    resolved = resolve_settings(env=env, dotenv_path=None)
    assert not resolved.embedded
    assert (resolved.host, resolved.dbname) == (second_server.host, "analytics")
    assert resolved.host != embedded_cluster.host

    up = subprocess.run(
        [sys.executable, "-m", "warehouse_db", "up"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert up.returncode == 0, up.stderr
    assert "external server" in up.stdout and "analytics" in up.stdout
    with connect(resolved) as conn:
        assert conn.execute(
            "select to_regnamespace('raw') is not null and to_regnamespace('ml') is not null"
        ).fetchone()[0]
