"""The pipeline on a PostgreSQL configured unlike the embedded warehouse: a server, database or login that sets its own
TimeZone, DateStyle, IntervalStyle, extra_float_digits, search_path or transaction defaults, and a client with PGTZ.

Where a setting is harmless the chain must give the same marts and results as on a plainly configured server; where
the server cannot serve (a database that is not UTF-8, a login whose transactions are read-only) the command says so
in one line with its documented exit status. One server for the module (Debian's PostgreSQL 15 where it is installed,
as users run 15+, else the bundled 18); each case is a database of its own, its settings set on the database or on
the login in that database (ALTER ROLE ... IN DATABASE), so the cases share the server without touching each other.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import sqlalchemy
from psycopg import sql
from test_external_server import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    DEBIAN_15_BIN,
    LOGINS,
    PYTHON,
    admin_url,
    clean_env,
    dbt_build,
    ingest,
    login_env,
    run,
    server_env,
    train,
)

from devtools.external_server import ExternalServer, external_server
from warehouse_db import connect
from warehouse_db.settings import ConnectionSettings

pytestmark = pytest.mark.integration  # its own PostgreSQL server

UNUSUAL_DATABASE = {
    "TimeZone": "Pacific/Kiritimati",  # UTC+14: a bar's UTC time is the next calendar day there
    "DateStyle": "German",
    "IntervalStyle": "iso_8601",
    "extra_float_digits": "-3",
    "default_transaction_isolation": "serializable",
}
UNUSUAL_LOGIN = {"TimeZone": "Pacific/Pago_Pago", "DateStyle": "SQL, DMY", "extra_float_digits": "0", "search_path": ""}


@pytest.fixture(scope="module")
def server() -> Iterator[ExternalServer]:
    with external_server(DEBIAN_15_BIN if (DEBIAN_15_BIN / "postgres").exists() else None) as running:
        yield running


def database(
    server: ExternalServer,
    name: str,
    settings: dict[str, str] | None = None,
    login_settings: dict[str, str] | None = None,
    create: str = "",
) -> ConnectionSettings:
    """A new database owned by the admin login, with ``settings`` on the database and ``login_settings`` on the
    admin login in that database only."""
    with connect(server.superuser(), autocommit=True) as conn:
        if not conn.execute("select 1 from pg_roles where rolname = %s", (ADMIN_USER,)).fetchone():
            server.create_owner(ADMIN_USER, ADMIN_PASSWORD, name)
            conn.execute(sql.SQL("drop database {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {} owner {} " + create).format(*map(sql.Identifier, (name, ADMIN_USER))))
        for setting, value in (settings or {}).items():
            conn.execute(
                sql.SQL("alter database {} set {} = {}").format(
                    sql.Identifier(name), sql.Identifier(setting), sql.Literal(value)
                )
            )
        for setting, value in (login_settings or {}).items():
            conn.execute(
                sql.SQL("alter role {} in database {} set {} = {}").format(
                    sql.Identifier(ADMIN_USER), sql.Identifier(name), sql.Identifier(setting), sql.Literal(value)
                )
            )
    return server.settings(ADMIN_USER, ADMIN_PASSWORD, name)


PROBE = (
    "select timestamptz '2024-03-08 21:00:00.123456+00', date '2024-03-08', interval '1 day 02:03:04', "
    "1::float8 / 3, 0.1::float8 + 0.2, current_setting('TimeZone')"
)
EXPECTED = (
    dt.datetime(2024, 3, 8, 21, 0, 0, 123456, tzinfo=dt.UTC),
    dt.date(2024, 3, 8),
    dt.timedelta(days=1, hours=2, minutes=3, seconds=4),
    1 / 3,
    0.1 + 0.2,
    "UTC",
)


def test_connections_read_every_value_as_stored_whatever_the_server_says(
    server: ExternalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DateStyle 'German' (or 'SQL, DMY') ended ingest in a NotImplementedError traceback (psycopg reads timestamps
    only in the ISO style); extra_float_digits 0 or less rounded every float8 training read (it learned from other
    numbers than the mart holds); a timestamp came back in the server's zone (the report's dbt_run_started_at,
    +14:00)."""
    settings = database(server, "probe", UNUSUAL_DATABASE, UNUSUAL_LOGIN)
    with connect(settings) as conn:
        row = conn.execute(PROBE).fetchone()
        assert row == EXPECTED and row[0].utcoffset() == dt.timedelta(0)
        assert conn.execute("show DateStyle").fetchone()[0].startswith("ISO")
    # libpq sends PGTZ and PGDATESTYLE at connection start, where they beat the options.
    monkeypatch.setenv("PGTZ", "Asia/Tokyo")
    monkeypatch.setenv("PGDATESTYLE", "Postgres, DMY")
    with connect(settings) as conn:
        assert conn.execute(PROBE).fetchone() == EXPECTED
    monkeypatch.delenv("PGTZ")
    monkeypatch.delenv("PGDATESTYLE")
    # Great Expectations' SQLAlchemy engine, too.
    engine = sqlalchemy.create_engine(settings.sqlalchemy_url())
    try:
        with engine.connect() as conn:
            assert tuple(conn.execute(sqlalchemy.text(PROBE)).one()) == EXPECTED
    finally:
        engine.dispose()
    # The user's own options (a URL's `options`, PGOPTIONS) still apply, beside the project's: connections the project
    # opens and Great Expectations' engine alike.
    users = "select current_setting('work_mem'), current_setting('IntervalStyle')"
    with connect(replace(settings, options={"options": "-c work_mem=7MB"})) as conn:
        assert conn.execute(users).fetchone() == ("7MB", "postgres")
    monkeypatch.setenv("PGOPTIONS", "-c work_mem=9MB")
    with connect(settings) as conn:
        assert conn.execute(users).fetchone() == ("9MB", "postgres")
    engine = sqlalchemy.create_engine(settings.sqlalchemy_url())
    try:
        with engine.connect() as conn:
            assert tuple(conn.execute(sqlalchemy.text(users)).one()) == ("9MB", "postgres")
    finally:
        engine.dispose()


def chain(server: ExternalServer, name: str, env: dict[str, str], tmp_path: Path) -> list:
    """`make db-up`, ingest, dbt build and a short training run on database ``name`` with ``env``; what of it must not
    depend on the server's settings: training's content hash over every row, the fold's dates, its Sharpe ratios, and
    the mart's rows and sessions. The run's report gives dbt's start time in UTC."""
    run([PYTHON, "-m", "warehouse_db", "up"], env)
    ingest(env)
    dbt_build(env, tmp_path / name)
    trained = train(env, tmp_path / name)
    outcome = [
        re.sub(r"^\S+ \S+ |finished in \d+ s", "", line)
        for line in trained.splitlines()
        if re.search(r"content sha256|fold \d+: train|test Sharpe", line)
    ]
    report = next((tmp_path / name / "runs").glob("*/report.html")).read_text(encoding="utf-8")
    started = re.search(r"dbt_run_started_at</th><td>([^<]*)<", report)
    assert started and started[1].endswith("+00:00"), started  # not the server's +14:00 or -11:00
    with connect(server.settings(ADMIN_USER, ADMIN_PASSWORD, name)) as conn:
        outcome.append(
            conn.execute(
                "select count(*), min(session_date), max(session_date), count(distinct session_date) "
                "from marts.training_bars"
            ).fetchone()
        )
    return outcome


@dataclass(frozen=True)
class Plain:
    """The plain database, built and trained on once for the module: the baseline the unusual server's outcome must
    equal, and the built warehouse the read-only test then makes read-only."""

    name: str
    outcome: list


@pytest.fixture(scope="module")
def plain(server: ExternalServer, tmp_path_factory: pytest.TempPathFactory) -> Plain:
    """A database set to UTC and nothing else, provisioned by the admin login with the loader's, trainer's and
    analyst's own logins (the read-only test needs them); ingest lands as the loader's login, dbt builds and training
    runs as the admin login (as on the unusual database, whose login settings are the admin login's)."""
    name, tmp_path = "plain", tmp_path_factory.mktemp("plain")
    database(server, name, {"TimeZone": "UTC"})
    admin_env = {**clean_env(tmp_path), "DATABASE_URL": admin_url(server, name)}
    run([PYTHON, "-m", "warehouse_db", "up"], {**admin_env, **login_env("loader", "trainer", "analyst")})
    return Plain(name, chain(server, name, admin_env, tmp_path))


@pytest.mark.slow
def test_an_unusually_configured_server_gives_the_same_marts_and_results(
    server: ExternalServer, plain: Plain, tmp_path: Path
) -> None:
    """Ingest, dbt build and a short training run on a database and a login set to other time zones, date and
    interval styles, float digits, isolation and search_path, with PGTZ in the client's environment: the same mart
    (training's content hash over every row, session dates and folds), the same results, as on a plain database."""
    name = "unusual"
    database(server, name, UNUSUAL_DATABASE, UNUSUAL_LOGIN)
    env = {**clean_env(tmp_path / name), "DATABASE_URL": admin_url(server, name), "PGTZ": "Asia/Tokyo"}
    unusual = chain(server, name, env, tmp_path)
    assert len(plain.outcome) == 4, plain.outcome  # the hash, the fold's dates, its Sharpe ratios, the mart
    assert unusual == plain.outcome


@pytest.mark.parametrize("encoding", ["LATIN1", "SQL_ASCII"])
def test_a_database_that_is_not_utf8_is_refused_in_one_line(
    encoding: str, server: ExternalServer, tmp_path: Path
) -> None:
    """`make db-up` said "warehouse ready" and ingest landed; then dbt build failed 6 (LATIN1) or 11 (SQL_ASCII) of
    its text tests ("Unicode escape values cannot be used ...", "conversion between UTF8 and SQL_ASCII is not
    supported"), and the docs promised UTF-8 throughout."""
    name = f"enc_{encoding.lower()}"
    database(server, name, create=f"template template0 encoding '{encoding}' lc_collate 'C' lc_ctype 'C'")
    env = {**clean_env(tmp_path), "DATABASE_URL": admin_url(server, name)}
    for command in ([PYTHON, "-m", "warehouse_db", "up"], [PYTHON, "-m", "warehouse_db", "status"]):
        refused = run(command, env, expect=4).strip()
        assert refused.splitlines() == [
            f"error: PostgreSQL {ADMIN_USER}@127.0.0.1:{server.port}/{name}: the database is encoded {encoding}, and "
            "the warehouse needs a UTF8 database (its text is UTF-8: symbols, names, the gateway's messages, dbt's "
            f"text tests): create one with CREATE DATABASE {name}_utf8 ENCODING 'UTF8' TEMPLATE template0 and point "
            "PGDATABASE (or DATABASE_URL) at it"
        ], refused
    refused = ingest(env, expect=4).strip()
    assert len(refused.splitlines()) == 1 and f"encoded {encoding}" in refused, refused


def test_a_read_only_login_or_a_logins_statement_timeout_ends_in_one_line(
    server: ExternalServer, plain: Plain, tmp_path: Path
) -> None:
    """default_transaction_read_only on a writing login: `make db-up` (the admin login) and training (the trainer's
    login) ended in a ReadOnlySqlTransaction traceback, ingest in "cannot execute CREATE TABLE in a read-only
    transaction". The analyst only reads: read-only is harmless there. A statement cancelled by a login's own
    statement_timeout is one line too.

    On the module's plain database (provisioned with these logins, loaded and built): this test is its last user."""
    name = plain.name
    base = clean_env(tmp_path)
    admin_env = {**base, "DATABASE_URL": admin_url(server, name), **login_env("loader", "trainer", "analyst")}
    trainer_login, analyst_login = LOGINS["trainer"][0], LOGINS["analyst"][0]
    with connect(server.superuser(), autocommit=True) as conn:
        for login in (ADMIN_USER, trainer_login, analyst_login):
            conn.execute(
                sql.SQL("alter role {} in database {} set default_transaction_read_only = on").format(
                    sql.Identifier(login), sql.Identifier(name)
                )
            )
    where = f"127.0.0.1:{server.port}/{name}"
    refused = run([PYTHON, "-m", "warehouse_db", "up"], admin_env, expect=4).strip()
    assert refused.splitlines() == [
        f"error: PostgreSQL {ADMIN_USER}@{where}: {ADMIN_USER}'s transactions are read-only "
        "(default_transaction_read_only is on for the login or the database), and provisioning writes: have an "
        f"administrator run ALTER ROLE {ADMIN_USER} RESET default_transaction_read_only (or ALTER DATABASE {name} "
        "RESET default_transaction_read_only)"
    ], refused
    trainer_env = {**base, **server_env(server, name), **login_env("trainer")}
    command = [PYTHON, "-m", "training", "--timesteps", "64", "--runs-dir", str(tmp_path / "runs"), "--no-progress-bar"]
    refused = run(command, trainer_env, expect=4)
    assert "Traceback" not in refused, refused
    assert f"{trainer_login}'s transactions are read-only" in refused and "the trainer role writes" in refused
    # A login's own statement_timeout (WAREHOUSE_STATEMENT_TIMEOUT=0 leaves it in force): training ended in a
    # QueryCanceled traceback, ingest in two lines (the error's CONTEXT on the second).
    with connect(server.superuser(), autocommit=True) as conn:
        for login in (trainer_login, LOGINS["loader"][0]):
            conn.execute(
                sql.SQL("alter role {} in database {} set statement_timeout = '1ms'").format(
                    sql.Identifier(login), sql.Identifier(name)
                )
            )
        conn.execute(
            sql.SQL("alter role {} in database {} reset default_transaction_read_only").format(
                sql.Identifier(trainer_login), sql.Identifier(name)
            )
        )
    unlimited = {"WAREHOUSE_STATEMENT_TIMEOUT": "0"}
    cancelled = "canceling statement due to statement timeout (WAREHOUSE_STATEMENT_TIMEOUT sets how long"
    refused = run(command, {**trainer_env, **unlimited}, expect=4)
    assert "Traceback" not in refused and f"ERROR training: warehouse: {cancelled}" in refused, refused
    loader_env = {**base, **server_env(server, name), **login_env("loader"), **unlimited}
    refused = ingest(loader_env, expect=4).strip()
    assert len(refused.splitlines()) == 1 and refused.startswith(f"error: warehouse: {cancelled}"), refused
    # The analyst reads the marts and ml as before.
    analyst_env = {**base, **server_env(server, name), **login_env("analyst")}
    read = run(
        [
            PYTHON,
            "-m",
            "warehouse_db",
            "psql",
            "--as",
            "analyst",
            "-Atc",
            "select count(*) > 0 from marts.training_bars",
        ],
        analyst_env,
    )
    assert read.strip() == "t"
    with connect(server.settings(*LOGINS["analyst"], name), role="analyst") as conn:
        assert conn.execute("select count(*) > 0 from marts.walk_forward_folds").fetchone() == (True,)
