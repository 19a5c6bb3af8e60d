"""The pipeline on a user's PostgreSQL whose database and login names are awkward: a hyphen, a space, upper case, a
single quote, non-ASCII (``o'brien-Trading DB entrepôt``, ``Loader-App``, ``trans'former``, ``Trainer Ü``), with
passwords holding ``@ : / % ? # ' " \\``, spaces, non-ASCII and a leading ``-``.

Every command must connect and work, no output, file or ml/raw row may show a piece of a password, and a statement
a message suggests must be one an administrator can paste. One server for the module (Debian's PostgreSQL 15 where it
is installed, as users run 15+, else the bundled 18); each case is a database of its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_external_server
from psycopg import sql
from test_external_server import DBT, DEBIAN_15_BIN, PYTHON, clean_env, dbt_env, rows_with_fragments, run, train

from devtools.external_server import ExternalServer, external_server
from devtools.leaks import files_with_fragments
from warehouse_db import connect
from warehouse_db.settings import ConnectionSettings, login_variables

pytestmark = pytest.mark.integration  # its own PostgreSQL server

ADMIN, ADMIN_PASSWORD = "o'brien Ädmin", "-p@ss:w/rd?#'\" \\ é%zz"
LOGINS = {
    "loader": ("Loader-App", "-L@:/%?#'\"\\ ü1"),
    "transformer": ("trans'former", "-T@:/%?#'\" \\ ø2"),
    "trainer": ("Trainer Ü", "-R@:/%?#'\" \\ ñ3"),
    "analyst": ('analyst"x', "-A@:/%?#'\" \\ ç4"),
}
PASSWORDS = [ADMIN_PASSWORD, *(password for _, password in LOGINS.values())]


@pytest.fixture(scope="module")
def server() -> Iterator[ExternalServer]:
    with external_server(DEBIAN_15_BIN if (DEBIAN_15_BIN / "postgres").exists() else None) as running:
        yield running


@pytest.fixture(autouse=True)
def _our_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared helpers (run, dbt_env, train) look in every command's output for a piece of these passwords."""
    monkeypatch.setattr(test_external_server, "PASSWORDS", PASSWORDS)


def database(server: ExternalServer, name: str, create: str = "") -> ConnectionSettings:
    """A new database ``name`` owned by the admin login (an ordinary CREATEROLE login, made on first use)."""
    with connect(server.superuser(), autocommit=True) as conn:
        if not conn.execute("select 1 from pg_roles where rolname = %s", (ADMIN,)).fetchone():
            verifier = conn.pgconn.encrypt_password(ADMIN_PASSWORD.encode(), ADMIN.encode(), b"scram-sha-256")
            conn.execute(
                sql.SQL("create role {} login createrole password {}").format(
                    sql.Identifier(ADMIN), sql.Literal(verifier.decode())
                )
            )
        conn.execute(sql.SQL("create database {} owner {} " + create).format(*map(sql.Identifier, (name, ADMIN))))
    return server.settings(ADMIN, ADMIN_PASSWORD, name)


def admin_env(server: ExternalServer, name: str, tmp_path: Path) -> dict[str, str]:
    """The admin login by the PG* variables."""
    return {
        **clean_env(tmp_path),
        "PGHOST": "127.0.0.1",
        "PGPORT": str(server.port),
        "PGDATABASE": name,
        "PGUSER": ADMIN,
        "PGPASSWORD": ADMIN_PASSWORD,
    }


def component_env(server: ExternalServer, name: str, tmp_path: Path, role: str) -> dict[str, str]:
    """A machine that holds one component's own login only, as the docs set it up."""
    user_variable, password_variable = login_variables(role)
    user, password = LOGINS[role]
    env = {**clean_env(tmp_path), "PGHOST": "127.0.0.1", "PGPORT": str(server.port), "PGDATABASE": name}
    return {**env, user_variable: user, password_variable: password}


def resets_as_pasted(server: ExternalServer, env: dict[str, str], dbname: str, login: str, database: str) -> None:
    """`up` for a login whose transactions are read-only refuses in one line naming the ALTER ROLE (or ALTER
    DATABASE) RESET to run, names quoted as given (``login``, ``database``); each runs as pasted, and `up` then
    succeeds."""
    refused = run([PYTHON, "-m", "warehouse_db", "up"], env, expect=4).strip()
    assert len(refused.splitlines()) == 1, refused
    statements = refused.split("have an administrator run ", 1)[1]
    assert statements == (
        f"ALTER ROLE {login} RESET default_transaction_read_only "
        f"(or ALTER DATABASE {database} RESET default_transaction_read_only)"
    ), refused
    alter_role, alter_database = statements.removesuffix(")").split(" (or ")
    with connect(server.superuser(dbname=dbname), autocommit=True) as conn:
        conn.execute(alter_database)  # nothing to reset there, but it must parse and name that database
        conn.execute(alter_role)
    assert run([PYTHON, "-m", "warehouse_db", "up"], env).startswith("warehouse ready"), refused


def test_a_suggested_statement_names_the_database_and_login_as_sql_spells_them(
    server: ExternalServer, tmp_path: Path
) -> None:
    """A database not encoded UTF8, and an admin login whose transactions are read-only: the one line said to run
    CREATE DATABASE my-warehouse_utf8 ..., ALTER ROLE o'brien Ädmin RESET ... and ALTER DATABASE Trading DB RESET ...,
    each a syntax error as pasted. Each statement the line names now runs as it is and fixes what it says."""
    latin1 = "my-warehouse"
    database(server, latin1, create="template template0 encoding 'LATIN1' lc_collate 'C' lc_ctype 'C'")
    refused = run([PYTHON, "-m", "warehouse_db", "status"], admin_env(server, latin1, tmp_path), expect=4).strip()
    assert len(refused.splitlines()) == 1, refused
    create = refused.split("create one with ", 1)[1].split(" and point ", 1)[0]
    assert create == "CREATE DATABASE \"my-warehouse_utf8\" ENCODING 'UTF8' TEMPLATE template0", refused
    with connect(server.superuser(), autocommit=True) as conn:
        conn.execute(create)
        conn.execute(sql.SQL("alter database {} owner to {}").format(*map(sql.Identifier, (f"{latin1}_utf8", ADMIN))))
    run([PYTHON, "-m", "warehouse_db", "up"], admin_env(server, f"{latin1}_utf8", tmp_path))

    read_only = "Trading DB"
    database(server, read_only)
    with connect(server.superuser(), autocommit=True) as conn:
        conn.execute(sql.SQL("alter role {} set default_transaction_read_only = on").format(sql.Identifier(ADMIN)))
    try:
        resets_as_pasted(server, admin_env(server, read_only, tmp_path), read_only, '"o\'brien Ädmin"', '"Trading DB"')
    finally:
        with connect(server.superuser(), autocommit=True) as conn:
            conn.execute(sql.SQL("alter role {} reset default_transaction_read_only").format(sql.Identifier(ADMIN)))


def test_a_suggested_statement_quotes_a_login_and_a_database_named_by_a_reserved_word(
    server: ExternalServer, tmp_path: Path
) -> None:
    """A read-only login named ``user`` on a database named ``order``: the line said to run ALTER ROLE user RESET ...
    (or ALTER DATABASE order RESET ...), both syntax errors as pasted (sql_name quoted only what was not a plain
    lower-case name). Each statement now runs as it is and fixes what it says."""
    login, password, name = "user", ADMIN_PASSWORD, "order"  # the output is searched for pieces of ADMIN_PASSWORD
    with connect(server.superuser(), autocommit=True) as conn:
        verifier = conn.pgconn.encrypt_password(password.encode(), login.encode(), b"scram-sha-256").decode()
        conn.execute(
            sql.SQL("create role {} login createrole password {}").format(sql.Identifier(login), sql.Literal(verifier))
        )
        conn.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(name), sql.Identifier(login)))
        conn.execute(sql.SQL("alter role {} set default_transaction_read_only = on").format(sql.Identifier(login)))
    env = {**admin_env(server, name, tmp_path), "PGUSER": login, "PGPASSWORD": password}
    resets_as_pasted(server, env, name, '"user"', '"order"')


def test_a_pgoptions_the_server_refuses_is_named_in_the_one_line(server: ExternalServer, tmp_path: Path) -> None:
    """PGOPTIONS that the server refuses (a bad value, an unknown setting, a quote that splits an argument): the line
    said only `FATAL: invalid value for parameter "work_mem"`, which reads like the server's own configuration (so did a
    bad PGTZ or PGDATESTYLE, which libpq sends as settings too); and
    one that makes transactions read-only was blamed on the login or the database, with an ALTER ROLE that changes
    nothing. Harmless options with quotes and spaces, and a quoted PGAPPNAME, change nothing."""
    name = "pg options"
    database(server, name)
    env = admin_env(server, name, tmp_path)
    run([PYTHON, "-m", "warehouse_db", "up"], env)
    named = "; it is a setting of PGOPTIONS (or an options parameter of DATABASE_URL or the service), which libpq sends"
    for options, refusal in [
        ("-c work_mem=lots", 'invalid value for parameter "work_mem": "lots"'),
        ("-c nosuch=1", 'unrecognized configuration parameter "nosuch"'),
        ("-c search_path='a b'", "invalid command-line argument for server process: b'"),
    ]:
        for command in (["warehouse_db", "status"], ["ingest", "--source", "csv", "data/sample_bars.csv"]):
            refused = run([PYTHON, "-m", *command], {**env, "PGOPTIONS": options}, expect=4).strip()
            assert len(refused.splitlines()) == 1 and refusal in refused, refused
            assert refused.endswith(f"{named} at connection start"), refused
    # PGTZ, PGDATESTYLE and PGGEQO are sent at connection start too: the line named none of them.
    for variable, value, refusal in [
        ("PGTZ", "Mars/Olympus", 'invalid value for parameter "TimeZone": "Mars/Olympus"'),
        ("PGDATESTYLE", "bogus", 'invalid value for parameter "DateStyle": "bogus"'),
    ]:
        refused = run([PYTHON, "-m", "warehouse_db", "status"], {**env, variable: value}, expect=4).strip()
        assert len(refused.splitlines()) == 1 and refusal in refused, refused
        assert refused.endswith(f"; it is {variable}'s value, which libpq sends at connection start"), refused
    read_only = {**env, "PGOPTIONS": "-c default_transaction_read_only=on"}
    refused = run([PYTHON, "-m", "warehouse_db", "up"], read_only, expect=4).strip()
    assert refused.splitlines() == [
        f"error: PostgreSQL {ADMIN}@127.0.0.1:{server.port}/{name}: PGOPTIONS (or an options parameter of DATABASE_URL "
        "or the service) sets default_transaction_read_only, and provisioning writes: leave that setting out there"
    ], refused
    harmless = {**env, "PGOPTIONS": "-c search_path=x -c TimeZone=Asia/Tokyo", "PGAPPNAME": "an 'app' \"x\""}
    assert run([PYTHON, "-m", "warehouse_db", "status"], harmless).startswith("warehouse ready")


@pytest.mark.slow
def test_the_chain_runs_on_a_database_and_logins_with_awkward_names(server: ExternalServer, tmp_path: Path) -> None:
    """A database named ``o'brien-Trading DB entrepôt``: dbt-postgres wrote its name into a string literal as it is,
    and every dbt command that lists relations (seed, build, docs generate) stopped with a syntax error; Great
    Expectations refused the URL with the space in it, and training died in a pydantic traceback. Now `make db-up`,
    ingest, dbt build, training, `dbt docs generate` and `psql --as analyst` work, each component with its own
    login, and nothing shows a piece of a password."""
    name = "o'brien-Trading DB entrepôt"
    admin = database(server, name)
    everyone = {**admin_env(server, name, tmp_path)}
    for role, (user, password) in LOGINS.items():
        user_variable, password_variable = login_variables(role)
        everyone |= {user_variable: user, password_variable: password}
    run([PYTHON, "-m", "warehouse_db", "up"], everyone)

    loader = component_env(server, name, tmp_path, "loader")
    assert "rows landed" in run([PYTHON, "-m", "ingest", "--source", "csv", "data/sample_bars.csv", "--no-progress"],
                                loader)  # fmt: skip
    dbt = dbt_env(component_env(server, name, tmp_path, "transformer"))
    target, logs = str(tmp_path / "target"), str(tmp_path / "logs")
    run([DBT, "build", "--target-path", target, "--log-path", logs], dbt)
    run([DBT, "docs", "generate", "--no-compile", "--target-path", target, "--log-path", logs], dbt)
    catalog = json.loads((tmp_path / "target" / "catalog.json").read_text(encoding="utf-8"))
    assert catalog["nodes"]["model.warehouse.training_bars"]["metadata"]["database"] == name
    train(component_env(server, name, tmp_path, "trainer"), tmp_path)
    analyst = component_env(server, name, tmp_path, "analyst")
    who = run([PYTHON, "-m", "warehouse_db", "psql", "--as", "analyst", "-Atc",
               "select current_database(), session_user, count(*) from ml.walk_forward_runs group by 1, 2"],
              analyst)  # fmt: skip
    assert who.strip() == f"{name}|{LOGINS['analyst'][0]}|1"

    with connect(admin) as conn:
        assert not rows_with_fragments(conn, "ml", "raw")
        owners = dict(conn.execute("select schemaname || '.' || tablename, tableowner from pg_tables").fetchall())
        assert owners["marts.training_bars"] == "transformer" and owners["ml.walk_forward_runs"] == "trainer"
    # Skipped: env's 0600 passfile, and dbt's docs page, its own static file copied as it is (its script holds `ss:w`
    # and `%3A/` by chance).
    skip = [tmp_path / "warehouse-dir" / "pgpass", tmp_path / "target" / "index.html"]
    assert not files_with_fragments(tmp_path, PASSWORDS, skip=skip)
