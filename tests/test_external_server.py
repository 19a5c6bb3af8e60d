"""The pipeline against external PostgreSQL servers, chosen with DATABASE_URL or the PG* variables, as a user of a
hosted server runs it.

Each server is a real PostgreSQL on 127.0.0.1 with password authentication (devtools.external_server): the
bundled PostgreSQL 18 always, and Debian's PostgreSQL 15 where it is installed. The project connects as an
ordinary CREATEROLE login that owns its database, never as a superuser:
- with per-component logins: the admin login provisions them, then ingest, dbt and training each run with nothing
  but their own login, and the trainer's login cannot read raw even after RESET ROLE;
- with a single login (a hosted server that offers one), which acts as each role with SET ROLE (bundled server).
Ingest (CSV), dbt build and a short training run must work, and no output, file left behind or ml/raw row may contain
any piece of a password (as it is or percent-encoded):
the passwords contain ``#``, ``/``, ``?``, ``@``, ``:``, spaces and quotes, unencoded in DATABASE_URL.
"""

from __future__ import annotations

import getpass
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from devtools.external_server import ExternalServer, external_server
from devtools.leaks import files_with_fragments, leaked_fragments
from warehouse_db import connect, resolve_settings
from warehouse_db.errors import WarehouseNotProvisioned
from warehouse_db.schemas import COMPONENT_ROLES
from warehouse_db.settings import REPO_ROOT, login_variables

pytestmark = pytest.mark.integration  # its own PostgreSQL servers

DEBIAN_15_BIN = Path("/usr/lib/postgresql/15/bin")
SERVERS = {"bundled-postgres-18": None, "debian-postgres-15": DEBIAN_15_BIN}
ADMIN_USER, ADMIN_PASSWORD = "quant", "qu#nt /Adm?n@7:x"
LOGINS = {
    "loader": ("loader_app", "L0#d/er?Pw@1"),
    "transformer": ("transformer_app", "Tr#f/rm?Pw@2"),
    "trainer": ("trainer_app", "Tn#r /Pw?x@3 'q\"%zz"),  # a space broke Great Expectations' URL
    "analyst": ("analyst_app", "An#l/5t?Pw@4"),
}
BYSTANDER_PASSWORD = "by#st/and?er@5"  # an ordinary login that holds no project role
PASSWORDS = [ADMIN_PASSWORD, BYSTANDER_PASSWORD, *(password for _, password in LOGINS.values())]
PYTHON, DBT = sys.executable, str(Path(sys.executable).with_name("dbt"))


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[ExternalServer]:
    bin_dir = SERVERS[request.param]
    if bin_dir is not None and not (bin_dir / "postgres").exists():
        pytest.skip(
            f"Debian's PostgreSQL 15 is not installed here ({bin_dir}, package postgresql-15); the same tests ran "
            "against the bundled PostgreSQL 18 over TCP"
        )
    with external_server(bin_dir) as running:
        yield running


def clean_env(tmp_path: Path) -> dict[str, str]:
    """This process's environment without any warehouse setting; passfiles go to tmp_path."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PG", "WAREHOUSE_")) and name != "DATABASE_URL"
    }
    return {**env, "DO_NOT_TRACK": "1", "WAREHOUSE_DIR": str(tmp_path / "warehouse-dir")}


def server_env(server: ExternalServer, dbname: str) -> dict[str, str]:
    return {"PGHOST": "127.0.0.1", "PGPORT": str(server.port), "PGDATABASE": dbname}


def login_env(*roles: str) -> dict[str, str]:
    env = {}
    for role in roles:
        user_variable, password_variable = login_variables(role)
        env[user_variable], env[password_variable] = LOGINS[role]
    return env


def admin_url(server: ExternalServer, dbname: str) -> str:
    return f"postgresql://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{server.port}/{dbname}"


def run(command: list[str], env: dict[str, str], expect: int = 0) -> str:
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == expect, f"{' '.join(command)} exited {result.returncode}:\n{output[-5000:]}"
    assert not leaked_fragments(output, PASSWORDS), f"{' '.join(command)} printed a piece of a password"
    return output


def ingest(env: dict[str, str], expect: int = 0) -> str:
    return run([PYTHON, "-m", "ingest", "--source", "csv", "data/sample_bars.csv", "--no-progress"], env, expect)


def dbt_env(env: dict[str, str]) -> dict[str, str]:
    """dbt's environment as the README tells shell users to make it: `eval "$(python -m warehouse_db env)"`, which
    hands passwords over in a private passfile rather than on the terminal."""
    exports = run([PYTHON, "-m", "warehouse_db", "env"], env)
    shell = {name: value for name, value in env.items() if not name.endswith("PASSWORD")}
    for line in exports.splitlines():
        command, _, rest = line.partition(" ")
        if command == "export":
            name, _, value = rest.partition("=")
            shell[name] = shlex.split(value)[0]
        elif command == "unset":
            for name in rest.split():
                shell.pop(name, None)
    assert Path(shell["PGPASSFILE"]).stat().st_mode & 0o077 == 0
    return shell


def dbt_build(env: dict[str, str], tmp_path: Path) -> None:
    run([DBT, "build", "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs")], dbt_env(env))


def train(env: dict[str, str], tmp_path: Path) -> str:
    """The shortest run that still reads the mart, checks the contract, trains, evaluates and writes ml.*."""
    command = [PYTHON, "-m", "training", "--timesteps", "128", "--n-envs", "1", "--n-steps", "64",
               "--batch-size", "64", "--n-epochs", "1", "--symbols-limit", "2",
               "--runs-dir", str(tmp_path / "runs"), "--no-progress-bar"]  # fmt: skip
    return run(command, env)


def rows_with_fragments(conn: psycopg.Connection, *schemas: str) -> dict[str, list[str]]:
    """Every table of ``schemas`` whose rows (as text: every column, jsonb and error texts included) hold a piece of
    a password."""
    tables = conn.execute(
        "select schemaname, tablename from pg_tables where schemaname = any(%s) order by 1, 2", (list(schemas),)
    ).fetchall()
    assert tables, f"no table in {schemas}"
    found = {}
    for schema, table in tables:
        rows = conn.execute(
            sql.SQL("select t::text from {}.{} as t").format(sql.Identifier(schema), sql.Identifier(table))
        )
        if pieces := leaked_fragments("\n".join(text for (text,) in rows), PASSWORDS):
            found[f"{schema}.{table}"] = pieces
    return found


def memberships(conn: psycopg.Connection, login: str) -> set[str]:
    rows = conn.execute(
        "select r.rolname from pg_auth_members m join pg_roles r on r.oid = m.roleid "
        "join pg_roles u on u.oid = m.member where u.rolname = %s",
        (login,),
    )
    return {name for (name,) in rows}


def assert_built_and_trained(conn: psycopg.Connection) -> None:
    rolsuper = conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()[0]
    assert rolsuper is False, "the test must exercise an ordinary (non-superuser) login"
    mart_rows, symbols = conn.execute("select count(*), count(distinct symbol) from marts.training_bars").fetchone()
    assert symbols == 5 and mart_rows > 0
    assert conn.execute("select count(*) from ml.walk_forward_runs where status = 'succeeded'").fetchone() == (1,)
    owners = dict(conn.execute("select schemaname || '.' || tablename, tableowner from pg_tables").fetchall())
    assert owners["raw.ibkr_bars"] == "loader"
    assert owners["marts.training_bars"] == owners["marts.mart_builds"] == "transformer"
    assert owners["ml.walk_forward_runs"] == "trainer"
    # The run recorded the dbt invocation that built the mart it read (dbt wrote it with the mart's rows).
    assert conn.execute(
        "select count(*) from ml.walk_forward_runs join marts.mart_builds using (dbt_invocation_id)"
    ).fetchone() == (1,)


@pytest.mark.slow
def test_each_component_runs_with_nothing_but_its_own_login(server: ExternalServer, tmp_path: Path) -> None:
    database = "research"
    admin = server.create_owner(ADMIN_USER, ADMIN_PASSWORD, database)
    base = clean_env(tmp_path)
    loader_env = {**base, **server_env(server, database), **login_env("loader")}

    # Before an administrator provisions, the loader's login does not exist: one line, exit 4.
    refused = ingest(loader_env, expect=4)
    assert "Traceback" not in refused and "loader_app" in refused

    admin_env = {**base, "DATABASE_URL": admin_url(server, database), **login_env(*COMPONENT_ROLES)}
    up = run([PYTHON, "-m", "warehouse_db", "up"], admin_env)
    assert "external server" in up and "trainer=trainer_app" in up
    ingest(loader_env)
    transformer_env = {**base, **server_env(server, database), **login_env("transformer")}
    # `make dbt-build` and `make db-up` run `up` first: on dbt's machine, with only the transformer's login (no
    # admin login to provision with), it checks as that login. It used to stop with "no password supplied".
    assert "warehouse ready: PostgreSQL transformer_app@" in run([PYTHON, "-m", "warehouse_db", "up"], transformer_env)
    dbt_build(transformer_env, tmp_path)
    trained = train({**base, **server_env(server, database), **login_env("trainer")}, tmp_path)
    # The run's first line names the login it reads and writes with (it said "(default user)", PGUSER being unset).
    assert f"PostgreSQL trainer_app@127.0.0.1:{server.port}/{database}" in trained, trained

    with connect(admin) as conn:
        assert_built_and_trained(conn)
        for role, (login, _) in LOGINS.items():
            assert memberships(conn, login) == {role}, f"{login} must be a member of {role} only"
        # Nor does anything a run leaves behind for others to read: the rows of ml and raw (configurations, run
        # folders, error texts, load batches), the run folder (run.log, config.yaml, the report, the models), dbt's
        # target/ and logs/. Only `env`'s passfile (mode 0600) is there to hold passwords.
        assert not rows_with_fragments(conn, "ml", "raw")
    assert not files_with_fragments(tmp_path, PASSWORDS, skip=[tmp_path / "warehouse-dir" / "pgpass"])
    trainer_login, trainer_password = LOGINS["trainer"]
    with connect(server.settings(trainer_login, trainer_password, database)) as conn:
        conn.execute("reset role")
        assert conn.execute("select count(*) > 0 from marts.training_bars").fetchone() == (True,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select * from raw.ibkr_bars limit 1")
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("set role loader")


@pytest.mark.slow
def test_a_single_login_acts_as_every_role(tmp_path: Path) -> None:
    """A hosted server that offers one login: it provisions, lands as loader and builds as transformer (dbt's
    profile without a transformer login), and reads the mart and writes ml as trainer, all with SET ROLE.

    The training job itself runs in the per-component test; its single-login path is this same connect()."""
    base = clean_env(tmp_path)
    with external_server() as server:
        admin = server.create_owner(ADMIN_USER, ADMIN_PASSWORD, "solo")
        env = {**base, "DATABASE_URL": admin_url(server, "solo")}

        # Nothing provisioned yet: acting as trainer says what to run first (the training CLI prints it, exit 4).
        with pytest.raises(WarehouseNotProvisioned, match="make ingest.*dbt build"):
            connect(admin, role="trainer")

        run([PYTHON, "-m", "warehouse_db", "up"], env)
        ingest(env)
        dbt_build(env, tmp_path)
        with connect(admin, role="trainer") as conn:
            assert conn.execute("select session_user, current_user").fetchone() == (ADMIN_USER, "trainer")
            assert conn.execute("select count(distinct symbol) from marts.training_bars").fetchone() == (5,)
            conn.execute("create table ml.single_login_probe (x int)")
            conn.commit()
        with connect(admin) as conn:
            owners = dict(conn.execute("select schemaname || '.' || tablename, tableowner from pg_tables").fetchall())
            assert owners["raw.ibkr_bars"] == "loader"
            assert owners["marts.training_bars"] == "transformer"
            assert owners["ml.single_login_probe"] == "trainer"
            assert memberships(conn, ADMIN_USER) >= set(COMPONENT_ROLES)


def test_pg_variables_select_an_external_server(server: ExternalServer, tmp_path: Path) -> None:
    env = {**clean_env(tmp_path), **server_env(server, "postgres"), "PGUSER": "postgres"}
    env["PGPASSWORD"] = server.superuser_password
    resolved = resolve_settings(env=env, dotenv_path=None)
    assert not resolved.embedded
    assert (resolved.host, resolved.port, resolved.dbname) == ("127.0.0.1", server.port, "postgres")
    status = run([PYTHON, "-m", "warehouse_db", "status"], env, expect=3)  # reachable, not ready
    assert "external server" in status and "not provisioned yet" in status
    assert "warehouse ready" not in status, status


def test_status_is_not_ready_for_a_login_that_may_not_act_as_the_roles(server: ExternalServer, tmp_path: Path) -> None:
    """A provisioned database seen through a login that holds none of the project roles: `status` said "warehouse
    ready" (exit 0), and then ingest, dbt and training each failed at SET ROLE."""
    server.create_owner(ADMIN_USER, ADMIN_PASSWORD, "reach")
    base = clean_env(tmp_path)
    run([PYTHON, "-m", "warehouse_db", "up"], {**base, "DATABASE_URL": admin_url(server, "reach")})
    with connect(server.superuser(), autocommit=True) as conn:
        conn.execute("drop role if exists bystander")
        conn.execute(sql.SQL("create role bystander login password {}").format(sql.Literal(BYSTANDER_PASSWORD)))
    env = {**base, **server_env(server, "reach"), "PGUSER": "bystander", "PGPASSWORD": BYSTANDER_PASSWORD}
    status = run([PYTHON, "-m", "warehouse_db", "status"], env, expect=3)
    assert "warehouse ready" not in status, status
    assert "login bystander may not act as role loader, transformer, trainer, analyst" in status, status
    with connect(server.superuser(), autocommit=True) as conn:
        separate_set = conn.info.server_version >= 160000
    # PostgreSQL 16 keeps a membership's options when it is granted again: only WITH SET TRUE gives the right to SET
    # ROLE to a member WITH SET FALSE; 15 has no SET option (a syntax error there).
    grant = "GRANT loader, transformer, trainer, analyst TO bystander" + (" WITH SET TRUE" if separate_set else "")
    assert status.strip().endswith(f"have an administrator run {grant}"), status
    # Provisioning as the admin login grants that login the roles, not this one: the GRANT is what helps.
    refused = ingest(env, expect=4)
    assert refused.strip().endswith("or GRANT loader TO bystander" + (" WITH SET TRUE" if separate_set else "")), (
        refused
    )
    if separate_set:
        # A member WITH SET FALSE still may not act as the role, and a plain GRANT (what status suggested before)
        # leaves it so, with a notice that the membership exists.
        with connect(server.superuser(), autocommit=True) as conn:
            conn.execute("grant loader, transformer, trainer, analyst to bystander with set false")
            conn.execute("grant loader, transformer, trainer, analyst to bystander")
        status = run([PYTHON, "-m", "warehouse_db", "status"], env, expect=3)
        assert status.strip().endswith(f"have an administrator run {grant}"), status
        assert "bystander may not act as role 'loader'" in ingest(env, expect=4)  # as ingest finds
    # The statement status suggests is the one that works, on this server's version.
    suggested = status.strip().rsplit("have an administrator run ", 1)[1]
    with connect(server.superuser(), autocommit=True) as conn:
        conn.execute(suggested)
    assert run([PYTHON, "-m", "warehouse_db", "status"], env).startswith("warehouse ready"), status
    ready = run([PYTHON, "-m", "warehouse_db", "status"], {**env, "PGUSER": ADMIN_USER, "PGPASSWORD": ADMIN_PASSWORD})
    assert ready.startswith("warehouse ready"), ready
    # Without PGUSER, libpq (as psql) logs in as the OS user's name: status checked no login at all and said ready.
    os_user = getpass.getuser()
    with connect(server.superuser(), autocommit=True) as conn:
        conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(os_user)))
        conn.execute(
            sql.SQL("create role {} login password {}").format(sql.Identifier(os_user), sql.Literal(BYSTANDER_PASSWORD))
        )
    try:
        unnamed = {name: value for name, value in env.items() if name != "PGUSER"}
        status = run([PYTHON, "-m", "warehouse_db", "status"], unnamed, expect=3)
        assert f"login {os_user} may not act as role loader, transformer, trainer, analyst" in status, status
    finally:
        with connect(server.superuser(), autocommit=True) as conn:
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(os_user)))


def test_up_gives_back_the_admin_login_its_right_to_set_role(server: ExternalServer, tmp_path: Path) -> None:
    """PostgreSQL 16+: the admin login's own membership in a role, made WITH SET FALSE, stayed so through `make db-up`:
    provisioning re-granted it without WITH SET TRUE, which keeps an existing membership's options, and status then
    said the admin login may not act as the roles and to run `make db-up`."""
    admin = server.create_owner(ADMIN_USER, ADMIN_PASSWORD, "selfset")
    env = {**clean_env(tmp_path), "DATABASE_URL": admin_url(server, "selfset")}
    run([PYTHON, "-m", "warehouse_db", "up"], env)
    with connect(admin, autocommit=True) as conn:
        separate_set = conn.info.server_version >= 160000
        if separate_set:  # 15 has no SET option: there membership is the right, and `up` must keep it
            conn.execute("grant loader, transformer, trainer, analyst to quant with set false")
            assert conn.execute("select pg_has_role('quant', 'loader', 'SET')").fetchone() == (False,)
    run([PYTHON, "-m", "warehouse_db", "up"], env)
    with connect(admin) as conn:
        rights = conn.execute(
            "select bool_and(pg_has_role('quant', r, %s)) from unnest(%s::text[]) as r",
            ("SET" if separate_set else "MEMBER", list(COMPONENT_ROLES)),
        ).fetchone()
    assert rights == (True,)


def test_ingest_on_a_machine_with_another_components_login_names_the_loader_login_to_set(
    server: ExternalServer, tmp_path: Path
) -> None:
    """Only the trainer's login configured (a training machine), then ingest: it fell back to libpq's default user
    and said only "(default user) ... no password supplied", not which variable to set."""
    server.create_owner(ADMIN_USER, ADMIN_PASSWORD, "trainonly")
    env = {**clean_env(tmp_path), "DATABASE_URL": admin_url(server, "trainonly"), **login_env("trainer")}
    run([PYTHON, "-m", "warehouse_db", "up"], env)
    env = {**clean_env(tmp_path), **server_env(server, "trainonly"), **login_env("trainer")}
    refused = ingest(env, expect=4).strip()
    assert len(refused.splitlines()) == 1, refused
    assert refused.endswith(
        "no login is configured for the loader role here: set WAREHOUSE_LOADER_USER and WAREHOUSE_LOADER_PASSWORD "
        "(docs/operations.md), or the admin login (DATABASE_URL, or PGUSER and PGPASSWORD)"
    ), refused


def test_pgservice_reaches_the_server_its_service_names(server: ExternalServer, tmp_path: Path) -> None:
    """PGSERVICE, libpq's way to name a server: the project took it for "nothing configured" and used the embedded
    warehouse, while psql followed the service to the external server. Now every command follows the service, and
    psql --as a role connects as that role's own login even though the service names the admin login."""
    server.create_owner(ADMIN_USER, ADMIN_PASSWORD, "svc")
    services = tmp_path / "pg_service.conf"
    services.write_text(
        f"[warehouse]\nhost=127.0.0.1\nport={server.port}\ndbname=svc\nuser={ADMIN_USER}\npassword={ADMIN_PASSWORD}\n",
        encoding="utf-8",
    )
    env = {**clean_env(tmp_path), "PGSERVICE": "warehouse", "PGSERVICEFILE": str(services), **login_env("analyst")}
    run([PYTHON, "-m", "warehouse_db", "up"], env)
    status = run([PYTHON, "-m", "warehouse_db", "status"], env)
    assert status.startswith(f"warehouse ready: PostgreSQL {ADMIN_USER}@127.0.0.1:{server.port}/svc"), status
    assert not (tmp_path / "warehouse-dir").exists(), "an embedded warehouse was created"
    analyst_login = LOGINS["analyst"][0]
    who = run(
        [PYTHON, "-m", "warehouse_db", "psql", "--as", "analyst", "-Atc", "select session_user, current_user"], env
    )
    assert who.strip() == f"{analyst_login}|analyst"


@pytest.mark.parametrize("admin_password_from", ["PGPASSWORD", "PGSERVICE"])
def test_a_component_login_takes_its_password_from_the_passfile(
    admin_password_from: str, server: ExternalServer, tmp_path: Path
) -> None:
    """A component's own login with its password only in PGPASSFILE (as the docs allow for dbt), beside the admin's
    password in PGPASSWORD or in the service: in-process libpq sent the admin's password for that login, since both
    beat the passfile, and ingest failed with "password authentication failed" while dbt and psql connected."""
    database = f"passfile_{admin_password_from.lower()}"
    server.create_owner(ADMIN_USER, ADMIN_PASSWORD, database)
    base = clean_env(tmp_path)
    run(
        [PYTHON, "-m", "warehouse_db", "up"],
        {**base, "DATABASE_URL": admin_url(server, database), **login_env("loader")},
    )
    user, password = LOGINS["loader"]
    passfile = tmp_path / "pgpass"
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    passfile.write_text(f"# the loader's\n*:*:*:someone_else:x\n127.0.0.1:{server.port}:{database}:{user}:{escaped}\n")
    passfile.chmod(0o600)
    if admin_password_from == "PGPASSWORD":
        admin = {**server_env(server, database), "PGUSER": ADMIN_USER, "PGPASSWORD": ADMIN_PASSWORD}
    else:
        services = tmp_path / "pg_service.conf"
        services.write_text(
            f"[wh]\nhost=127.0.0.1\nport={server.port}\ndbname={database}\nuser={ADMIN_USER}\npassword={ADMIN_PASSWORD}\n"
        )
        admin = {"PGSERVICE": "wh", "PGSERVICEFILE": str(services)}
    env = {**base, **admin, "WAREHOUSE_LOADER_USER": user, "PGPASSFILE": str(passfile)}
    assert "rows landed" in ingest(env)
    with connect(server.settings(user, password, database), role="loader") as conn:
        assert conn.execute("select count(*) > 0 from raw.ibkr_bars").fetchone() == (True,)


def test_dbt_takes_its_logins_password_from_the_passfile_beside_a_database_url(
    server: ExternalServer, tmp_path: Path
) -> None:
    """DATABASE_URL with the admin's password, dbt's own login with its password only in PGPASSFILE's file (as the
    docs allow): `warehouse_db env` exported PGPASSFILE=<WAREHOUSE_DIR>/pgpass holding the admin's line alone, which
    hid the user's file, and dbt (`make db-up`'s seed, `make dbt-build`) stopped with "no password supplied"."""
    database = "dbt_passfile"
    server.create_owner(ADMIN_USER, ADMIN_PASSWORD, database)
    base = {**clean_env(tmp_path), "DATABASE_URL": admin_url(server, database)}
    run([PYTHON, "-m", "warehouse_db", "up"], {**base, **login_env("transformer")})  # creates dbt's login
    user, password = LOGINS["transformer"]
    passfile = tmp_path / "pgpass"
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    passfile.write_text(f"127.0.0.1:{server.port}:{database}:{user}:{escaped}\n", encoding="utf-8")
    passfile.chmod(0o600)
    env = {**base, "WAREHOUSE_TRANSFORMER_USER": user, "PGPASSFILE": str(passfile)}
    assert "warehouse ready" in run([PYTHON, "-m", "warehouse_db", "up"], env)
    checked = run([DBT, "--no-use-colors", "debug", "--connection", "--log-path", str(tmp_path / "logs")], dbt_env(env))
    assert "Connection test: [OK connection ok]" in checked, checked


def test_status_and_up_are_not_ready_when_the_server_refuses_a_components_login(
    server: ExternalServer, tmp_path: Path
) -> None:
    """A wrong WAREHOUSE_TRAINER_PASSWORD: `status` and `up` checked, as the admin login, only that each component
    login exists and may act as its role, and said "warehouse ready" (exit 0); training then failed on its first
    connection. They now try each configured login as its component will and name the variable to check."""
    server.create_owner(ADMIN_USER, ADMIN_PASSWORD, "wrongpw")
    env = {**clean_env(tmp_path), "DATABASE_URL": admin_url(server, "wrongpw"), **login_env(*COMPONENT_ROLES)}
    run([PYTHON, "-m", "warehouse_db", "up"], env)
    wrong = "Xq7#zK9!wv@Jm"
    env["WAREHOUSE_TRAINER_PASSWORD"] = wrong
    for command, status in (("status", 3), ("up", 4)):
        said = run([PYTHON, "-m", "warehouse_db", command], env, expect=status)
        assert "warehouse ready" not in said and "warehouse reachable" in said, said
        last = said.strip().splitlines()[-1]
        assert last.startswith(
            "not ready: the server refuses a component's own login: check WAREHOUSE_TRAINER_PASSWORD"
        ), last
        assert 'password authentication failed for user "trainer_app"' in last, last
        assert not leaked_fragments(said, [wrong]), said
    env["WAREHOUSE_TRAINER_PASSWORD"] = LOGINS["trainer"][1]
    assert run([PYTHON, "-m", "warehouse_db", "status"], env).startswith("warehouse ready")


def _address_elsewhere() -> str:
    """An IPv4 address of this machine that is not a loopback one: a server listening there stands in for a server on
    another machine, as the traffic to it is not loopback traffic as far as any client can tell."""
    import ipaddress

    import psutil

    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not ipaddress.ip_address(address.address).is_loopback:
                return address.address
    # Not a skip: a check that cannot run has checked nothing, and every machine the suite runs on (a developer's, CI's)
    # has a network interface besides loopback.
    pytest.fail("this machine has no IPv4 address but loopback ones: no stand-in for a server on another machine")


@pytest.mark.parametrize("offers_ssl", [True, False], ids=["ssl-server", "plain-server"])
def test_make_psql_says_when_its_session_to_another_machine_is_not_encrypted(offers_ssl: bool, tmp_path: Path) -> None:
    """The bundled psql has no SSL support: under libpq's default sslmode=prefer it connected to a server elsewhere
    that offers SSL without encryption, where any psql with SSL would have encrypted the session, and said nothing.
    Now one line on stderr says that the session is not encrypted and (where the server offers SSL) that
    PGSSLMODE=require gets an encrypted one, through the psql on PATH. The same server over 127.0.0.1 gets no line,
    nor does a server that is asked under sslmode=disable; the probe leaves nothing in the server's log."""
    if not (DEBIAN_15_BIN / "postgres").exists():  # not a skip: a check that cannot run has checked nothing
        pytest.fail(
            f"Debian's PostgreSQL 15 is not installed here ({DEBIAN_15_BIN}, package postgresql-15): this test needs a "
            "server with SSL, and the bundled one has none"
        )
    host = _address_elsewhere()

    def psql(env: dict[str, str]) -> tuple[str, list[str]]:
        """Whether the session psql opened is encrypted (t/f), and the lines on stderr."""
        command = [
            PYTHON,
            "-m",
            "warehouse_db",
            "psql",
            "-Atc",
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        ]
        result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert not leaked_fragments(result.stdout + result.stderr, PASSWORDS)
        return result.stdout.strip(), result.stderr.splitlines()

    with external_server(DEBIAN_15_BIN, host=host, ssl=offers_ssl) as elsewhere:
        elsewhere.create_owner(ADMIN_USER, ADMIN_PASSWORD, "remote")
        env = {**clean_env(tmp_path), **server_env(elsewhere, "remote"), "PGHOST": host, "PGUSER": ADMIN_USER}
        env["PGPASSWORD"] = ADMIN_PASSWORD
        where = f"{host}:{elsewhere.port}"
        if offers_ssl:
            assert psql(env) == ("f", [
                f"note: this psql session to {where} is not encrypted, though the server offers SSL: the bundled psql "
                "has no SSL support (sslmode=prefer); PGSSLMODE=require runs the psql on PATH, which encrypts it"
            ])  # fmt: skip
            # What the line says gets an encrypted session.
            assert psql({**env, "PGSSLMODE": "require"}) == ("t", [])
        else:
            assert psql(env) == (
                "f",
                [f"note: this psql session to {where} is not encrypted: the server offers no SSL"],
            )
        assert psql({**env, "PGSSLMODE": "disable"}) == ("f", [])  # asked for: nothing to say
        # An empty PGSSLMODE is not libpq's default but no mode at all: psql opens no session, and says why alone
        # (the note said first that the session was not encrypted).
        empty = subprocess.run([PYTHON, "-m", "warehouse_db", "psql", "-Atc", "select 1"], cwd=REPO_ROOT,
                               env={**env, "PGSSLMODE": ""}, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert (empty.returncode, empty.stdout, empty.stderr) == (2, "", 'psql: error: invalid sslmode value: ""\n')
        # The same server over loopback (it listens there too): nothing leaves this machine, nothing is said.
        assert psql({**env, "PGHOST": "127.0.0.1"}) == ("f", [])
        assert "could not" not in (elsewhere.workdir / "log").read_text(encoding="utf-8")
