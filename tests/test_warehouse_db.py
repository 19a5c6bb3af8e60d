"""Which server the project uses, how it connects (URLs, logins, timeouts), and who may connect to it."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from command_line import EXIT_USAGE
from devtools.leaks import leaked_fragments
from devtools.scratch_database import create_database, drop_database
from warehouse_db import __main__ as warehouse_main
from warehouse_db import connect, embedded, ensure_provisioned, resolve_settings, schemas, seed_files
from warehouse_db.__main__ import main as warehouse_db_main
from warehouse_db.errors import (
    ConfigFileError,
    ProvisioningError,
    WarehouseConfigError,
    WarehouseError,
    WarehouseNotProvisioned,
    WarehouseUnreachable,
)
from warehouse_db.provision import RESERVED_WORDS, grant_statement, provision, sql_name
from warehouse_db.settings import (
    REPO_ROOT,
    SESSION_SETTINGS,
    ConnectionSettings,
    Login,
    external_settings,
    passfile_password,
    read_config,
    settings_from_url,
    uses_external_server,
)
from warehouse_db.settings import warehouse_dir as warehouse_dir_setting

SECRET = "xQ#v/7?kZ@m:3%jW"
"""A password with every character that tends to break URL parsing, raw (not percent-encoded)."""


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
    s = settings_from_url("postgresql://quant:s%40cret@10.0.0.1.com:6543/prod?sslmode=require")
    assert (s.host, s.port, s.user, s.password, s.dbname) == ("10.0.0.1.com", 6543, "quant", "s@cret", "prod")
    assert s.connect_kwargs()["sslmode"] == "require"
    assert s.libpq_env()["PGSSLMODE"] == "require"
    assert settings_from_url("postgresql://postgres@/warehouse?host=/tmp/sock").host == "/tmp/sock"
    assert settings_from_url("postgres://u@[::1]:5433/d").host == "::1"
    with pytest.raises(ValueError, match="postgresql://"):
        settings_from_url("mysql://x@y/z")


def test_dotenvs_libpq_variables_apply_beside_a_database_url(tmp_path):
    """docs/operations.md: .env may set PGSSLMODE, PGAPPNAME and the like, and they apply to every connection. Beside
    a DATABASE_URL they were dropped (libpq reads them from the environment, never from .env): a .env asking for
    sslmode=require with its URL connected with libpq's 'prefer', and dbt and psql were not told either. A URL's own
    parameter still wins, as it does over an exported variable in libpq."""
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "DATABASE_URL=postgresql://quant:pw@db.example.com/warehouse?application_name=from-url\n"
        "PGSSLMODE=require\nPGSSLROOTCERT=/etc/ca.pem\nPGAPPNAME=from-dotenv\n",
        encoding="utf-8",
    )
    settings = external_settings(read_config(env={}, dotenv_path=dotenv))
    kwargs = settings.connect_kwargs()
    assert (kwargs["sslmode"], kwargs["sslrootcert"], kwargs["application_name"]) == (
        "require",
        "/etc/ca.pem",
        "from-url",
    )
    assert settings.libpq_env()["PGSSLMODE"] == "require"


@pytest.mark.parametrize(
    ("userinfo", "password"),
    [
        (f"quant:{SECRET}", SECRET),
        ("quant:pa#ss", "pa#ss"),
        ("quant:pa/ss", "pa/ss"),
        ("quant:pa?ss", "pa?ss"),
        ("quant:p@ss:w#rd/?", "p@ss:w#rd/?"),
        ("quant:a%2Fb%23c", "a/b#c"),  # percent-encoded characters are decoded as usual
    ],
)
def test_a_password_may_hold_url_delimiters_unencoded(userinfo, password):
    s = settings_from_url(f"postgresql://{userinfo}@10.0.0.1.com:6543/prod?sslmode=require")
    assert (s.host, s.port, s.user, s.password, s.dbname) == ("10.0.0.1.com", 6543, "quant", password, "prod")
    assert s.options == {"sslmode": "require"}


def test_a_user_name_with_an_at_sign_keeps_it():
    # Some hosted servers name logins user@server and users paste them unencoded.
    s = settings_from_url("postgresql://admin@myserver:pw@myserver.example.com/db")
    assert (s.user, s.password, s.host) == ("admin@myserver", "pw", "myserver.example.com")


@pytest.mark.parametrize(
    "url",
    [
        f"quant:{SECRET}@10.0.0.1.com/prod",  # no scheme
        f"postgresql://quant:{SECRET}",  # no host: the password would be read as host:port
        f"postgresql://quant:{SECRET}@10.0.0.1.com:{SECRET}/prod",
        f"postgresql://quant:{SECRET}@10.0.0.1.com/prod?connect_timeout={SECRET}",
        f"postgresql://quant:{SECRET}@10.0.0.1.com/prod?port={SECRET}",
        f"postgresql://quant:{SECRET}@a,b/prod",
        f"postgresql://quant:{SECRET}@[::1/prod",
    ],
)
def test_a_malformed_url_is_refused_without_quoting_any_of_it(url):
    with pytest.raises(WarehouseConfigError) as raised:
        external_settings({"DATABASE_URL": url})
    assert "DATABASE_URL" in str(raised.value)
    assert not leaked_fragments(str(raised.value), [SECRET])


def test_component_logins_come_from_variables_and_never_show_their_passwords():
    config = {
        "DATABASE_URL": f"postgresql://quant:{SECRET}@10.0.0.1.com/prod",
        "WAREHOUSE_TRAINER_USER": "trainer_app",
        "WAREHOUSE_TRAINER_PASSWORD": "Tn#r/Pw?x@3",
        "WAREHOUSE_LOADER_USER": "loader_app",
    }
    s = external_settings(config)
    assert s.logins == {"trainer": Login("trainer_app", "Tn#r/Pw?x@3"), "loader": Login("loader_app")}
    trainer = s.for_role("trainer")
    assert (trainer.user, trainer.password, trainer.host) == ("trainer_app", "Tn#r/Pw?x@3", "10.0.0.1.com")
    assert s.for_role("analyst") is s  # no login of its own: the admin login with SET ROLE
    env = s.libpq_env()
    assert env["WAREHOUSE_TRAINER_USER"] == "trainer_app" and env["WAREHOUSE_LOADER_USER"] == "loader_app"
    shown = repr(s) + s.describe() + trainer.describe() + repr(trainer)
    assert not leaked_fragments(shown, [SECRET, "Tn#r/Pw?x@3"])
    with pytest.raises(WarehouseConfigError, match="WAREHOUSE_ANALYST_USER"):
        external_settings({"PGHOST": "h", "WAREHOUSE_ANALYST_PASSWORD": "x"})


def test_pgservice_selects_its_server_as_libpq_does(tmp_path):
    # PGSERVICE alone used to choose the embedded warehouse while psql (libpq) followed the service elsewhere.
    services = tmp_path / "services.conf"
    services.write_text(
        f"# comment\n[other]\nhost=elsewhere\n\n[wh]\nhost=10.0.0.1.com\nport=6543\nuser=quant\n"
        f"password={SECRET}\ndbname=prod\nsslmode=require\nconnect_timeout=4\n",
        encoding="utf-8",
    )
    config = {"PGSERVICE": "wh", "PGSERVICEFILE": str(services), "PGHOST": "ignored", "PGPORT": "1"}
    assert uses_external_server(config)
    s = external_settings(config)  # the service beats the PG* variables, as in libpq
    assert (s.host, s.port, s.user, s.password, s.dbname) == ("10.0.0.1.com", 6543, "quant", SECRET, "prod")
    assert (s.options, s.connect_timeout, s.embedded) == ({"sslmode": "require"}, 4, False)
    system = tmp_path / "etc"
    system.mkdir()
    (system / "pg_service.conf").write_text("[sys]\nhost=sys.example.com\n", encoding="utf-8")
    s = external_settings({"PGSERVICE": "sys", "PGSERVICEFILE": str(services), "PGSYSCONFDIR": str(system)})
    assert s.host == "sys.example.com"

    with pytest.raises(WarehouseConfigError, match=r"PGSERVICE=nope: no service \[nope\] in .*services.conf or "):
        external_settings({"PGSERVICE": "nope", "PGSERVICEFILE": str(services)})
    for text, problem in (
        (f"[wh]\nhost=h\npassword {SECRET}\n", ":3: not a line of a libpq service file's section"),
        (f"[wh]\nhost=h\npassword = {SECRET}\n", ":3: not a line of a libpq service file's section"),
        (f"[wh]\nhost=h\npasswrd={SECRET}\n", ":3: not a line of a libpq service file's section"),
    ):
        services.write_text(text, encoding="utf-8")
        with pytest.raises(WarehouseConfigError) as error:
            external_settings({"PGSERVICE": "wh", "PGSERVICEFILE": str(services)})
        assert problem in str(error.value) and not leaked_fragments(str(error.value), [SECRET])


SERVICE_FILES = {
    # name: (the user's service file, the system-wide one): what libpq itself makes of each decides the outcome
    "spaces around =": ("[wh]\nhost = /tmp/spaced\n", None),
    "lines outside the section": ("stray line\n[x]\nstray\n[wh]\nhost=/tmp/inside\n[y]\nstray\n", None),
    "a section or keyword twice": ("[wh]\nhost=/tmp/first\nhost=/tmp/second\n[wh]\nport=12\n", None),
    "indented lines": ("  [wh]\n\thost=/tmp/indented\n   port=13  \n", None),
    "an unknown keyword": ("[wh]\nhost=/tmp/x\nbogus=1\n", None),
    "a nested service": ("[wh]\nservice=other\n[other]\nhost=/tmp/other\n", None),
    "not in the user's file": ("[other]\nhost=/tmp/user\n", "[wh]\nhost=/tmp/system\n"),
    "a missing user's file": (None, "[wh]\nhost=/tmp/system\n"),
}


@pytest.mark.parametrize("case", SERVICE_FILES)
def test_a_service_file_is_read_as_libpq_reads_it(case, tmp_path, monkeypatch):
    """The project resolves PGSERVICE itself, and libpq reads it again for every connection the project opens (and
    psql outside it): where the two read a file differently, `make psql` and dbt (given the resolved variables) reached
    one server while ingest and training failed on libpq's syntax error (spaces around '='), or the project refused a
    file libpq reads (a stray line outside the service's section, a keyword given twice)."""
    user_text, system_text = SERVICE_FILES[case]
    (tmp_path / "etc").mkdir()
    if user_text is not None:
        (tmp_path / "user.conf").write_text(user_text, encoding="utf-8")
    if system_text is not None:
        (tmp_path / "etc" / "pg_service.conf").write_text(system_text, encoding="utf-8")
    config = {"PGSERVICE": "wh", "PGSERVICEFILE": str(tmp_path / "user.conf"), "PGSYSCONFDIR": str(tmp_path / "etc")}
    for name in list(os.environ):
        if name.startswith("PG"):
            monkeypatch.delenv(name)
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    # libpq itself, not psycopg.connect (which unit tests may not call): every host here is a socket directory that
    # does not exist, so that nothing is reached and libpq's message says whether the service file stopped it.
    attempt = psycopg.pq.PGconn.connect(b"connect_timeout=1")
    libpq_refuses = b"service" in attempt.error_message
    attempt.finish()
    libpq = {option.keyword.decode(): (option.val or b"").decode() for option in psycopg.pq.Conninfo.get_defaults()}
    if libpq_refuses:
        with pytest.raises(WarehouseConfigError, match="PGSERVICE=wh: |user.conf:"):
            external_settings(config)
    else:
        settings = external_settings(config)
        assert (settings.host, str(settings.port or 5432)) == (libpq["host"], libpq["port"])


def test_the_system_wide_service_file_is_where_libpq_looks_without_pgsysconfdir(tmp_path):
    """Without PGSYSCONFDIR, libpq reads the pg_service.conf of the directory it was built with (psycopg's and Debian's
    psql: /etc/postgresql-common); the project looked in no system-wide file at all."""
    with pytest.raises(WarehouseConfigError) as error:
        external_settings({"PGSERVICE": "nope", "PGSERVICEFILE": str(tmp_path / "services.conf")})
    assert "does not exist" in str(error.value)  # a PGSERVICEFILE that is not there is an error in libpq too
    (tmp_path / "services.conf").write_text("", encoding="utf-8")
    with pytest.raises(WarehouseConfigError) as error:
        external_settings({"PGSERVICE": "nope", "PGSERVICEFILE": str(tmp_path / "services.conf")})
    assert str(error.value).endswith(" or /etc/postgresql-common/pg_service.conf")


PASSFILE = r"""# localhost:*:*:commented:not-a-password
*:*:*:star:any\:thing\\x:extra
127.0.0.1:5433:db:first:one
127.0.0.1:5433:db:first:two
10.0.0.1:*:*:\*lit:literal
/tmp/no-such-socket-dir:*:*:sock:socket-directory
localhost:*:*:sock:local
localhost:5432:dbless:dbless:db-defaults-to-user
*:*:*:empty:
*:*:*:empty:after-an-empty-one
"""
PASSFILE_LOOKUPS = [  # host, port, dbname, user
    ("127.0.0.1", 5433, "db", "star"),
    ("127.0.0.1", 5433, "db", "first"),
    ("127.0.0.1", 5434, "db", "first"),
    ("10.0.0.1", None, "d", "*lit"),
    ("10.0.0.1", None, "d", "xlit"),
    ("/tmp/no-such-socket-dir", None, "d", "sock"),
    (None, None, "d", "sock"),
    ("/var/run/postgresql", None, "d", "sock"),
    (None, None, None, "dbless"),
    ("127.0.0.1", None, "d", "empty"),
    ("127.0.0.1", None, "d", "commented"),
]


@pytest.mark.parametrize("mode", [0o600, 0o640])
def test_a_passfile_is_read_as_libpq_reads_it(mode, tmp_path, monkeypatch):
    """A component's own login without a password of its own gets it from the passfile ourselves, since in-process
    libpq would send PGPASSWORD (the admin's) first: the lookup must find what libpq itself finds (escapes, `*`,
    sockets as localhost, the first match, and nothing from a file others may read)."""
    passfile = tmp_path / "pgpass"
    passfile.write_text(PASSFILE, encoding="utf-8")
    passfile.chmod(mode)
    for name in list(os.environ):
        if name.startswith("PG"):
            monkeypatch.delenv(name)
    found = []
    for host, port, dbname, user in PASSFILE_LOOKUPS:
        ours = passfile_password(str(passfile), host, port, dbname, user)
        # libpq itself, without connecting: it reads the passfile before it starts (hosts here reach nothing).
        fields = {"host": host, "port": port, "dbname": dbname, "user": user, "passfile": str(passfile)}
        attempt = psycopg.pq.PGconn.connect_start(psycopg.conninfo.make_conninfo(**fields).encode())
        libpq = (attempt.password or b"").decode() or None
        attempt.finish()
        assert ours == libpq, (host, port, dbname, user)
        found.append(ours)
    if mode == 0o600:
        assert found == [
            "any:thing\\x", "one", None, "literal", None, "socket-directory", "local", "local",
            "db-defaults-to-user", None, None,
        ]  # fmt: skip
    else:
        assert found == [None] * len(PASSFILE_LOOKUPS)


def test_beside_a_database_url_the_passfile_is_the_one_pgpassfile_names(tmp_path, monkeypatch):
    """DATABASE_URL without a passfile parameter: in-process libpq reads PGPASSFILE's file (not ~/.pgpass), and
    PGPASSWORD, the admin's, beats it. The lookup read ~/.pgpass there, so a component login whose password is only
    in PGPASSFILE's file went without one, and libpq sent it the admin's password."""
    for name in list(os.environ):
        if name.startswith("PG"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.pgpass
    passfile = tmp_path / "pgpass"
    passfile.write_text("10.0.0.1:5433:research:loader_app:L0ader\n", encoding="utf-8")
    passfile.chmod(0o600)
    config = {
        "DATABASE_URL": "postgresql://quant@10.0.0.1:5433/research",
        "PGPASSWORD": "admin-password",
        "PGPASSFILE": str(passfile),
        "WAREHOUSE_LOADER_USER": "loader_app",
    }
    loader = external_settings(config).for_role("loader")
    # What libpq itself finds in the passfile for the loader's connection, PGPASSFILE in its environment.
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    kwargs = {key: value for key, value in loader.connect_kwargs().items() if key != "password"}
    attempt = psycopg.pq.PGconn.connect_start(psycopg.conninfo.make_conninfo(**kwargs).encode())
    libpq = (attempt.password or b"").decode() or None
    attempt.finish()
    assert loader.password == libpq == "L0ader"
    # No PGPASSWORD: nothing to look up, libpq reads the passfile itself, as before.
    del config["PGPASSWORD"]
    assert external_settings(config).for_role("loader").password is None


def test_timeouts_default_and_follow_their_variables():
    s = external_settings({"PGHOST": "h"})
    assert (s.connect_timeout, s.statement_timeout) == (10, 1800)
    assert s.connect_kwargs()["connect_timeout"] == "10"
    s = external_settings({"PGHOST": "h", "PGCONNECT_TIMEOUT": "3", "WAREHOUSE_STATEMENT_TIMEOUT": "0"})
    assert (s.connect_timeout, s.statement_timeout) == (3, 0)
    assert s.libpq_env()["PGCONNECT_TIMEOUT"] == "3"
    url = external_settings({"DATABASE_URL": "postgresql://u@h/d?connect_timeout=4", "PGCONNECT_TIMEOUT": "3"})
    assert url.connect_timeout == 4  # the URL's own parameter wins, as in libpq
    for bad in ("-1", "ten", "1.5"):
        with pytest.raises(WarehouseConfigError, match="PGCONNECT_TIMEOUT"):
            external_settings({"PGHOST": "h", "PGCONNECT_TIMEOUT": bad})
    with pytest.raises(WarehouseConfigError, match="PGPORT"):
        external_settings({"PGHOST": "h", "PGPORT": "70000"})


def test_env_prints_no_password_and_hands_every_login_a_passfile_line(tmp_path, monkeypatch, capsys):
    for name in list(os.environ):
        if name.startswith(("PG", "WAREHOUSE_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://quant:{SECRET}@10.0.0.1.com:6543/prod")
    monkeypatch.setenv("WAREHOUSE_TRANSFORMER_USER", "transformer_app")
    monkeypatch.setenv("WAREHOUSE_TRANSFORMER_PASSWORD", "Tr#f/rm?Pw@2")
    monkeypatch.setenv("WAREHOUSE_DIR", str(tmp_path))
    assert warehouse_db_main(["env"]) == 0
    printed = capsys.readouterr()
    assert not leaked_fragments(printed.out + printed.err, [SECRET, "Tr#f/rm?Pw@2"])
    assert "export WAREHOUSE_TRANSFORMER_USER=transformer_app" in printed.out
    assert "unset PGPASSWORD" in printed.out
    passfile = tmp_path / "pgpass"
    assert f"export PGPASSFILE={passfile}" in printed.out
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    assert passfile.read_text(encoding="utf-8").splitlines() == [
        "*:6543:prod:quant:xQ#v/7?kZ@m\\:3%jW",
        "*:6543:prod:transformer_app:Tr#f/rm?Pw@2",
    ]


def test_env_works_without_a_home_directory(tmp_path, monkeypatch, capsys):
    """No HOME and no user entry (a container run with an arbitrary uid): `env`, which `make db-up` and dbt's targets
    run, looked for ~/.pgpass outside any error handling and ended in a RuntimeError traceback."""
    for name in list(os.environ):
        if name.startswith(("PG", "WAREHOUSE_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://quant:{SECRET}@10.0.0.1.com:6543/prod")
    monkeypatch.setenv("WAREHOUSE_DIR", str(tmp_path))

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert warehouse_db_main(["env"]) == 0
    printed = capsys.readouterr()
    assert f"export PGPASSFILE={tmp_path / 'pgpass'}" in printed.out, printed.err


@pytest.mark.parametrize("args", [["--as"], ["--as", "admin", "-c", "select 1"], ["--as", "Analyst"]])
def test_psql_as_anything_but_a_component_role_is_one_line_and_status_2(capsys, args: list[str]) -> None:
    """make psql ROLE=... with no role or another name: refused before a setting is read or psql is started."""
    assert warehouse_db_main(["psql", *args]) == EXIT_USAGE == 2
    printed = capsys.readouterr()
    assert printed.err == "error: psql --as needs one of loader, transformer, trainer, analyst\n"
    assert printed.out == ""


@pytest.mark.parametrize("sslmode", ["require", "verify-full"])
def test_psql_asked_for_ssl_without_a_psql_that_has_it_is_one_line_and_status_4(tmp_path, sslmode: str) -> None:
    """A hosted server's PGSSLMODE=require: the bundled psql, built without SSL, used to say only `sslmode value
    "require" invalid when SSL support is not compiled in` (status 2). make psql now takes the psql on PATH for it,
    and where there is none says so in one line. PATH here holds no psql; nothing is contacted."""
    assert not embedded.client_has_ssl()  # the wheel's client; should it gain SSL, revisit _psql
    env = {name: value for name, value in os.environ.items() if not name.startswith(("PG", "WAREHOUSE_", "DATABASE_"))}
    env |= {"PATH": str(tmp_path), "PGHOST": "127.0.0.1", "PGPORT": "1", "PGUSER": "quant", "PGPASSWORD": SECRET}
    env |= {"PGDATABASE": "prod", "PGSSLMODE": sslmode, "WAREHOUSE_ANALYST_USER": "analyst_app"}
    env["WAREHOUSE_ANALYST_PASSWORD"] = SECRET[::-1]
    result = subprocess.run(
        [sys.executable, "-m", "warehouse_db", "psql", "--as", "analyst", "-c", "select 1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (4, ""), result.stderr
    assert result.stderr.splitlines() == [
        f"error: sslmode={sslmode} asks for SSL, and the bundled psql has no SSL support: install a PostgreSQL client "
        "(e.g. `apt install postgresql-client`) so that psql is on PATH, or use another SQL client with "
        '`eval "$(.venv/bin/python -m warehouse_db env)"`'
    ]
    assert leaked_fragments(result.stderr, [SECRET, SECRET[::-1]]) == []


def libpq_passfile_password(passfile: Path, user: str, raw: bool = False) -> str | bytes | None:
    """The password libpq itself takes from ``passfile`` for ``user`` at 10.0.0.1:6543/prod, without connecting
    (``raw``: its bytes)."""
    fields = {"host": "10.0.0.1", "port": 6543, "dbname": "prod", "user": user, "passfile": str(passfile)}
    attempt = psycopg.pq.PGconn.connect_start(psycopg.conninfo.make_conninfo(**fields).encode())
    password = attempt.password or b""
    attempt.finish()
    return password if raw else password.decode() or None


@pytest.mark.parametrize("how", ["PGPASSFILE", "~/.pgpass", "passfile parameter"])
def test_env_keeps_the_passwords_of_the_passfile_it_replaces(how, tmp_path, monkeypatch, capsys):
    """A DATABASE_URL with the admin's password and dbt's own login whose password is only in the user's passfile
    (a way docs/operations.md allows): `env` exported PGPASSFILE=<WAREHOUSE_DIR>/pgpass with the admin's line alone,
    which hid the user's passfile, so `make db-up`'s dbt seed and `make dbt-build` stopped with "fe_sendauth: no
    password supplied". The user's lines now follow the project's, and libpq finds both."""
    for name in list(os.environ):
        if name.startswith(("PG", "WAREHOUSE_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    users_passfile = home / ".pgpass" if how == "~/.pgpass" else tmp_path / "users-pgpass"
    users_passfile.write_bytes(
        b"10.0.0.1:6543:prod:transformer_app:Tr\\:f/rm?Pw@2\n"
        b"10.0.0.1:6543:prod:loader_app:L\xe9\x0cd\xe2\x80\xa8er\r\n"  # Latin-1, a form feed, U+2028, CRLF
    )
    users_passfile.chmod(0o600)
    url = f"postgresql://quant:{SECRET}@10.0.0.1:6543/prod"
    if how == "PGPASSFILE":
        monkeypatch.setenv("PGPASSFILE", str(users_passfile))
    elif how == "passfile parameter":
        url += f"?passfile={users_passfile}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("WAREHOUSE_TRANSFORMER_USER", "transformer_app")
    monkeypatch.setenv("WAREHOUSE_DIR", str(tmp_path / "warehouse-dir"))
    assert warehouse_db_main(["env"]) == 0
    printed = capsys.readouterr()
    assert not leaked_fragments(printed.out + printed.err, [SECRET, "Tr:f/rm?Pw@2"])
    ours = tmp_path / "warehouse-dir" / "pgpass"
    assert f"export PGPASSFILE={ours}" in printed.out
    assert stat.S_IMODE(ours.stat().st_mode) == 0o600
    assert libpq_passfile_password(ours, "quant") == SECRET
    assert libpq_passfile_password(ours, "transformer_app") == "Tr:f/rm?Pw@2"
    assert libpq_passfile_password(ours, "loader_app", raw=True) == b"L\xe9\x0cd\xe2\x80\xa8er"

    # In a shell that ran `eval "$(python -m warehouse_db env)"` before, PGPASSFILE names our file: it keeps what it
    # holds, each line once.
    monkeypatch.setenv("PGPASSFILE", str(ours))
    before = ours.read_bytes()
    assert warehouse_db_main(["env"]) == 0
    capsys.readouterr()
    assert ours.read_bytes() == before
    assert libpq_passfile_password(ours, "transformer_app") == "Tr:f/rm?Pw@2"
    ours.unlink()
    if how == "PGPASSFILE":
        monkeypatch.setenv("PGPASSFILE", str(users_passfile))
    else:
        monkeypatch.delenv("PGPASSFILE")

    # A passfile others may read is one libpq ignores: its lines are not carried over either.
    users_passfile.chmod(0o644)
    assert warehouse_db_main(["env"]) == 0
    capsys.readouterr()
    assert libpq_passfile_password(ours, "quant") == SECRET
    assert libpq_passfile_password(ours, "transformer_app") is None


def test_client_encoding_is_always_utf8():
    s = settings_from_url("postgresql://u@h/d")
    assert s.connect_kwargs()["client_encoding"] == "UTF8"


def test_great_expectations_engine_reads_utf8_whatever_pgclientencoding_says(
    warehouse: ConnectionSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PGCLIENTENCODING=LATIN1 in the environment (libpq's default for a connection that names none): the project's
    own connections and dbt's and psql's (`warehouse_db env`) read UTF-8, but the SQLAlchemy engine of the training
    contract took LATIN1, where a name outside Latin-1 is an error ("has no equivalent in encoding LATIN1")."""
    import sqlalchemy

    monkeypatch.setenv("PGCLIENTENCODING", "LATIN1")
    engine = sqlalchemy.create_engine(warehouse.sqlalchemy_url())
    try:
        with engine.connect() as conn:
            row = conn.execute(sqlalchemy.text("select current_setting('client_encoding'), 'Трейдер €'")).one()
    finally:
        engine.dispose()
    assert tuple(row) == ("UTF8", "Трейдер €")


def test_docs_operations_md_lists_the_session_settings_every_connection_sets():
    """docs/operations.md's table of what every connection sets is a second copy of SESSION_SETTINGS: a setting added,
    dropped or changed in one of them must show in the other."""
    page = (REPO_ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = page.split("**What every connection of ingest, training and `warehouse_db` sets**", 1)[1]
    rows = [line for line in section.split("\n\n", 2)[1].splitlines() if line.startswith("| `")]
    documented = dict(re.findall(r"^\| `(\w+)` \| `([^`]+)`", "\n".join(rows), re.M))
    set_elsewhere = {
        "client_encoding": "UTF8",
        "statement_timeout": "WAREHOUSE_STATEMENT_TIMEOUT",
    }  # connect_kwargs, limit
    assert documented == {**SESSION_SETTINGS, **set_elsewhere}, "docs/operations.md 'What a server must offer'"


def test_make_db_up_names_a_seed_file_that_is_not_utf8_before_dbt_reads_it(tmp_path, monkeypatch, capsys):
    """A seed saved by a spreadsheet in its own encoding (an 'é' in a reason as byte 0xe9) ended make db-up's dbt
    seed, and every other dbt command, in a traceback naming no file ("'utf-8' codec can't decode byte 0xe9 in
    position 50"). `up` now checks the seeds before anything else: one line naming the file and the line, exit 4."""
    seed_files.check_seed_files()  # the project's own seeds are UTF-8
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "xnys_sessions.csv").write_text("session_date\n2024-03-15\n", encoding="utf-8")
    (seeds / "known_missing_sessions.csv").write_bytes(
        b"\xef\xbb\xbfsymbol,session_date,reason\r\nSA,2024-03-15,halted all day\r\nSB,2024-03-15,halted \xe9t\xe9\r\n"
    )
    monkeypatch.setattr(seed_files, "SEEDS_DIR", seeds)
    monkeypatch.setattr(warehouse_main, "read_config", lambda: pytest.fail("up went on past a seed dbt cannot read"))
    assert warehouse_db_main(["up"]) == 4
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: {seeds / 'known_missing_sessions.csv'} is not UTF-8 text: byte 0xe9 on line 3; save it as UTF-8 "
        "(dbt cannot parse the project until then, and nothing was loaded)"
    ]
    # A seed that cannot be read at all (here a directory named like one; no permission alike) is one line too.
    (seeds / "known_missing_sessions.csv").unlink()
    (seeds / "known_missing_sessions.csv").mkdir()
    assert warehouse_db_main(["up"]) == 4
    err = capsys.readouterr().err
    assert err.splitlines() == [f"error: {seeds / 'known_missing_sessions.csv'} cannot be read: Is a directory"], err


def test_make_db_up_refuses_a_seed_header_in_one_line_before_dbt_reads_the_file(tmp_path, monkeypatch, capsys):
    """known_missing_sessions.csv with a misspelt header (``sesion_date``) or a column more: dbt seed's refusal
    (check_seed_file.sql) came only after dbt had loaded the file, whose CSV reader printed a two-line RuntimeWarning
    ('"session_date" does not match the name of any column in this table') for it first, twice. `up` (make db-up, so
    make dbt-build) now checks the header against dbt_project.yml's column_types before dbt runs: the macro's one
    line, exit 4. The header's order, a BOM and CRLF line ends are fine."""
    declared = seed_files.declared_columns()
    assert (
        declared["known_missing_sessions"] == declared["verified_price_moves"] == ["symbol", "session_date", "reason"]
    )
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "xnys_sessions.csv").write_text(
        "is_half_day,session_date,open_at,close_at\r\nfalse,2024-03-15,2024-03-15 09:30-04,2024-03-15 16:00-04\r\n",
        encoding="utf-8-sig",
    )
    monkeypatch.setattr(seed_files, "SEEDS_DIR", seeds)
    monkeypatch.setattr(warehouse_main, "read_config", lambda: pytest.fail("up went on past a seed dbt would refuse"))
    shown = seeds / "known_missing_sessions.csv"
    for header, unknown, missing in [
        ("symbol,sesion_date,reason", "sesion_date", "session_date"),
        ("symbol,session_date,reason,note", "note", "none"),
        ("symbol,reason", "none", "session_date"),
    ]:
        shown.write_text(f"{header}\nSB,2024-03-18,halted all day\n", encoding="utf-8")
        assert warehouse_db_main(["up"]) == 4
        assert capsys.readouterr().err.splitlines() == [
            f"error: {shown} line 1: the header is '{header}', expected the columns symbol,session_date,reason "
            f"(unknown: {unknown}; missing: {missing}). Nothing was loaded; the previous rows stay."
        ]
    shown.write_text("\ufeffreason,symbol,session_date\r\nhalted all day,SB,2024-03-18\r\n", encoding="utf-8")
    seed_files.check_seed_files(seeds)  # any order, with a BOM and CRLF


def test_make_db_up_leaves_a_dbt_project_file_it_cannot_read_to_dbt(tmp_path, monkeypatch, capsys):
    """The header check reads dbt_project.yml's column_types; a project file that is not YAML (a bracket left open
    while editing), or not a mapping, ended make db-up in a yaml.scanner.ScannerError traceback before the
    warehouse was even started. The check now leaves such a file to dbt, whose own error names it (the seeds' UTF-8
    check still runs), and `up` goes on."""
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "known_missing_sessions.csv").write_text("symbol,sesion_date,reason\n", encoding="utf-8")
    project = tmp_path / "dbt_project.yml"
    monkeypatch.setattr(seed_files, "SEEDS_DIR", seeds)
    monkeypatch.setattr(seed_files, "DBT_PROJECT", project)

    def read_config():
        raise WarehouseError("up went on to read its settings")

    monkeypatch.setattr(warehouse_main, "read_config", read_config)
    for text in ["name: warehouse\nseeds:\n  warehouse:\n    known_missing_sessions: [\n", "- a list\n", "seeds: 3\n"]:
        project.write_text(text, encoding="utf-8")
        assert seed_files.declared_columns() == {}
        assert warehouse_db_main(["up"]) == 4
        assert capsys.readouterr().err.splitlines() == ["error: up went on to read its settings"]
    project.unlink()
    assert seed_files.declared_columns() == {}


def test_schema_names_agree_with_dbt_project():
    import yaml

    project = yaml.safe_load((REPO_ROOT / "dbt_project.yml").read_text(encoding="utf-8"))
    text = (REPO_ROOT / "dbt_project.yml").read_text(encoding="utf-8")
    for schema in (schemas.STAGING, schemas.INTERMEDIATE, schemas.MARTS):
        assert f"+schema: {schema}" in text, f"dbt_project.yml does not configure schema {schema}"
    assert project["flags"]["send_anonymous_usage_stats"] is False


# --- failures a user causes: one line, no password, no hang ------------------------------------------------------


@pytest.mark.integration  # a real connection attempt (to a closed port)
@pytest.mark.parametrize("password", ["hunter2-very-secret", SECRET])
def test_a_password_never_appears_in_descriptions_or_connection_errors(password):
    s = settings_from_url(f"postgresql://quant:{password}@127.0.0.1:1/prod?connect_timeout=2")
    assert password not in s.describe() and password not in repr(s)
    with pytest.raises(ConnectionError) as raised:
        connect(s)
    assert not leaked_fragments(str(raised.value), [password])
    assert "127.0.0.1" in str(raised.value) and "\n" not in str(raised.value)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a hung server, a black-holing proxy)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.mark.integration  # a real connection attempt
def test_a_server_that_never_answers_cannot_hang_a_connection(silent_server):
    s = external_settings(
        {"DATABASE_URL": f"postgresql://quant:{SECRET}@127.0.0.1:{silent_server}/prod", "PGCONNECT_TIMEOUT": "2"}
    )
    started = time.monotonic()
    with pytest.raises(WarehouseUnreachable, match="PGCONNECT_TIMEOUT") as raised:
        connect(s, role="trainer")
    assert time.monotonic() - started < 10
    assert not leaked_fragments(str(raised.value), [SECRET])


@pytest.mark.integration  # starts our CLIs against a socket
@pytest.mark.slow
def test_commands_end_in_one_line_and_exit_4_when_the_server_never_answers(silent_server, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "WAREHOUSE_")) and k != "DATABASE_URL"}
    env.update(DATABASE_URL=f"postgresql://quant:{SECRET}@127.0.0.1:{silent_server}/prod", PGCONNECT_TIMEOUT="2")
    commands = {
        "warehouse_db": [sys.executable, "-m", "warehouse_db", "status"],
        "ingest": [sys.executable, "-m", "ingest", "--source", "csv", "data/sample_bars.csv", "--no-progress"],
        "training": [sys.executable, "-m", "training", "--runs-dir", str(tmp_path / "runs"), "--timesteps", "64"],
    }
    # Side by side: each one waits out PGCONNECT_TIMEOUT on its own socket to the silent server.
    started = {
        name: subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, command in commands.items()
    }
    try:
        outputs = {name: "".join(process.communicate(timeout=120)) for name, process in started.items()}
    finally:
        for process in started.values():
            process.kill()
            process.wait()
    for name, output in outputs.items():
        status = started[name].returncode
        assert status == 4, f"{name}: exit {status}\n{output}"
        errors = [line for line in output.splitlines() if "error" in line.lower()]
        assert len(errors) == 1 and "PGCONNECT_TIMEOUT" in errors[0], f"{name}:\n{output}"
        assert "Traceback" not in output and not leaked_fragments(output, [SECRET]), f"{name}:\n{output}"


# --- roles and logins ---------------------------------------------------------------------------------------------


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


@pytest.mark.parametrize("role", schemas.COMPONENT_ROLES)
def test_each_component_connects_with_a_login_that_holds_its_role_only(warehouse, role):
    with connect(warehouse, role=role) as conn:
        assert conn.execute("select session_user, current_user").fetchone() == (f"{role}_login", role)
        conn.execute("reset role")  # what a compromised or buggy component would try
        reachable = {
            other
            for (other,) in conn.execute(
                "select rolname from pg_roles where rolname = any(%s) and pg_has_role(session_user, oid, 'member')",
                (list(schemas.COMPONENT_ROLES),),
            )
        }
        assert reachable == {role}
        can_read_raw = conn.execute("select has_schema_privilege('raw', 'usage')").fetchone()[0]
        assert can_read_raw is (role in (schemas.LOADER_ROLE, schemas.TRANSFORMER_ROLE))
        assert conn.execute("select rolsuper from pg_roles where rolname = session_user").fetchone() == (False,)


def test_provisioning_is_idempotent(warehouse):
    with connect(warehouse) as conn:
        provision(conn)
        provision(conn)
        roles = conn.execute(
            "select rolname from pg_roles where rolname = any(%s) order by rolname",
            (list(schemas.COMPONENT_ROLES),),
        ).fetchall()
    assert [r for (r,) in roles] == ["analyst", "loader", "trainer", "transformer"]


def test_provisioning_gives_a_login_that_is_a_member_with_set_false_the_right_to_set_role(warehouse):
    """PostgreSQL 16+: a GRANT of a membership that exists keeps its options, so provisioning's plain GRANT left a
    login WITH SET FALSE unable to SET ROLE: its component failed at SET ROLE, and `make db-up`, which status
    suggests, could not fix it."""
    name = f"set_false_{os.getpid()}"
    with connect(warehouse, autocommit=True) as conn:
        assert conn.info.server_version >= 160000, "the embedded warehouse is PostgreSQL 18"
        conn.execute(f"create role {name} login")
        conn.execute(f"grant loader to {name} with set false")
    try:
        with connect(warehouse) as conn:
            provision(conn, {"loader": Login(name)})
            assert conn.execute("select pg_has_role(%s, 'loader', 'SET')", (name,)).fetchone() == (True,)
    finally:
        with connect(warehouse, autocommit=True) as conn:
            conn.execute(f"drop role {name}")


def test_provisioning_refuses_a_login_that_would_cross_a_boundary(warehouse):
    name = f"shared_{os.getpid()}"
    with connect(warehouse, autocommit=True) as conn:
        conn.execute(f"create role {name} login")
        conn.execute(f"grant trainer, loader to {name}")
    try:
        with connect(warehouse) as conn, pytest.raises(ProvisioningError, match="also a member of loader"):
            provision(conn, {"trainer": Login(name)})
    finally:
        with connect(warehouse, autocommit=True) as conn:
            conn.execute(f"drop role {name}")


def test_a_component_with_only_its_own_login_is_told_to_have_the_warehouse_provisioned(embedded_cluster):
    bare = create_database(embedded_cluster, "unprovisioned")  # roles exist cluster-wide; its schemas do not
    try:
        loader_only = ConnectionSettings(
            host=bare.host, port=bare.port, user=None, password=None, dbname=bare.dbname, embedded=False,
            logins={"loader": Login("loader_login")},
        )  # fmt: skip
        with pytest.raises(WarehouseNotProvisioned, match="schema raw.*python -m warehouse_db provision"):
            ensure_provisioned(loader_only, schemas.LOADER_ROLE)
    finally:
        drop_database(bare)


def test_make_psql_passes_its_arguments_to_psql(warehouse):
    env = {**os.environ, **warehouse.libpq_env()}
    make = ["make", "-s", "-o", ".venv/.requirements-installed", "psql"]
    for extra, expected in (([], "postgres"), (["ROLE=analyst"], "analyst")):
        result = subprocess.run(
            [*make, *extra, "ARGS=-At -c 'select current_user'"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected


def test_make_targets_use_the_pinned_packages_whatever_pythonpath_says(embedded_cluster, tmp_path):
    """A PYTHONPATH exported for another project comes before .venv's site-packages: its packages were imported in
    place of the pinned ones, and where they did not fit, every target ended in a traceback."""
    (tmp_path / "psycopg").mkdir()
    (tmp_path / "psycopg" / "__init__.py").write_text('raise ImportError("another project\'s psycopg")\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "WAREHOUSE_")) and k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(tmp_path)
    make = ["make", "-s", "-o", ".venv/.requirements-installed", "db-status"]
    result = subprocess.run(make, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("warehouse ready: "), result.stdout + result.stderr


# --- the embedded warehouse: only its owner gets in; first use is safe under concurrency ----------------------------


def test_the_embedded_warehouse_admits_its_owner_only(embedded_cluster):
    pgdata = Path(embedded_cluster.host)
    hba_lines = [
        line
        for line in (pgdata / "pg_hba.conf").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert hba_lines == ["local all all peer map=warehouse_owner"]
    with connect(embedded_cluster) as conn:
        assert conn.execute("show listen_addresses").fetchone() == ("",)
        assert conn.execute("show unix_socket_permissions").fetchone() == ("0700",)
    if os.geteuid() != 0:
        return  # switching OS users needs root; the settings above are what keep others out
    psql = [str(embedded.client_bin_dir() / "psql"), "-h", embedded_cluster.host, "-p", str(embedded_cluster.port)]
    for os_user, refusal in (("nobody", "Permission denied"), (embedded.SERVER_USER_AS_ROOT, "Peer authentication")):
        attempt = subprocess.run(
            [*psql, "-U", "postgres", "-d", "postgres", "-c", "select 1"],
            user=os_user, cwd="/", capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert attempt.returncode != 0 and refusal in attempt.stderr, (os_user, attempt.stderr)


@pytest.mark.parametrize("command", ["up", "down", "status", "provision", "env", "psql"])
def test_another_os_users_warehouse_is_left_as_it_was(fresh_warehouse_dir, command, monkeypatch, capsys):
    """`sudo make db-up` in a user's clone, that user's warehouse stopped: root rewrote its access files to admit
    root, owned by embedded_postgres, then could not start it (the data is the user's), and the user's own commands
    said from then on that it belonged to another OS user. A user's `make db-down` or `make db-status` on root's
    warehouse (a clone once run with sudo) ended in a PermissionError traceback. Now nothing is read or written, and
    one line says whose it is: for every command that reaches the embedded warehouse (`env` runs before every dbt
    target, and would write its pgpass there; docs/operations.md says any command)."""
    pgdata = fresh_warehouse_dir / embedded.PGDATA_NAME
    pgdata.mkdir(mode=0o700)
    files = {"PG_VERSION": "18\n", "postgresql.conf": "# the user's\n", "pg_hba.conf": "local all all peer\n"}
    for name, text in files.items():
        (pgdata / name).write_text(text, encoding="utf-8")
    if os.geteuid() == 0:
        nobody = 65534
        os.chown(pgdata, nobody, nobody)  # a user's warehouse, and this command runs as root
        owner = "OS user nobody"
    else:  # switching OS users needs root: here the server's OS user is another than the directory's owner
        monkeypatch.setattr(embedded, "_server_uid", lambda: os.geteuid() + 1)
        owner = f"OS user {embedded._owner_name()}"
    for name in list(os.environ):
        if name.startswith(("PG", "WAREHOUSE_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("WAREHOUSE_DIR", str(fresh_warehouse_dir))
    assert warehouse_db_main([command]) == 4
    assert capsys.readouterr().err.splitlines() == [
        f"error: the embedded warehouse in {pgdata} belongs to {owner}, and this command runs as OS user "
        f"{embedded._owner_name()}: run it as its owner (not with sudo), or set WAREHOUSE_DIR for a warehouse of your "
        "own"
    ]
    assert sorted(path.name for path in pgdata.iterdir()) == sorted(files)
    for name, text in files.items():
        assert (pgdata / name).read_text(encoding="utf-8") == text
    assert sorted(path.name for path in fresh_warehouse_dir.iterdir()) == [embedded.PGDATA_NAME]


def test_a_trust_era_data_directory_is_secured_when_started(fresh_warehouse_dir):
    pgdata = fresh_warehouse_dir / embedded.PGDATA_NAME
    pgdata.mkdir()
    # How earlier versions created it: embedded-postgres' own initdb, trust authentication, a 0777 socket.
    embedded._embedded_postgres().get_server(pgdata, cleanup_mode=None)
    assert "trust" in (pgdata / "pg_hba.conf").read_text(encoding="utf-8")
    settings = embedded.start(pgdata)
    assert "trust" not in (pgdata / "pg_hba.conf").read_text(encoding="utf-8")
    with connect(settings, role="trainer") as conn:
        assert conn.execute("show unix_socket_permissions").fetchone() == ("0700",)
        assert conn.execute("select session_user").fetchone() == ("trainer_login",)


@pytest.mark.slow
def test_commands_started_at_once_on_a_fresh_warehouse_do_not_race(fresh_warehouse_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "WAREHOUSE_")) and k != "DATABASE_URL"}
    env["WAREHOUSE_DIR"] = str(fresh_warehouse_dir)
    ingest = [sys.executable, "-m", "ingest", "--source", "csv", "data/sample_bars.csv", "--no-progress"]
    commands = [
        [sys.executable, "-m", "warehouse_db", "up"],
        ingest,
        [sys.executable, "-m", "warehouse_db", "up"],
        ingest,
        ingest,
        [sys.executable, "-m", "training", "--runs-dir", str(tmp_path / "runs"), "--timesteps", "64"],
    ]
    processes = [
        subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for command in commands
    ]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    for command, process, output in zip(commands, processes, outputs, strict=True):
        if command[2] == "training":  # nothing built yet: it says so in one line
            assert process.returncode == 4, output
            assert "make ingest" in output and "Traceback" not in output
        else:
            assert process.returncode == 0, f"{' '.join(command[2:])}:\n{output}"
    settings = embedded.start(fresh_warehouse_dir / embedded.PGDATA_NAME)
    with connect(settings) as conn:
        assert conn.execute("select count(distinct load_id) from raw.ibkr_bars").fetchone() == (3,)


def _at_once(work, times: int = 6) -> list[str]:
    """Run ``work()`` in several threads released together; the first line of every error raised."""
    barrier, errors = threading.Barrier(times), []

    def run() -> None:
        barrier.wait()
        try:
            work()
        except Exception as error:  # noqa: BLE001 - collected and asserted on below
            errors.append(str(error).splitlines()[0])

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_first_use_ddl_is_safe_when_sessions_run_it_at_once(embedded_cluster):
    """Provisioning, the raw landing tables and the ml tables: CREATE ... IF NOT EXISTS alone races on the
    catalogs ("duplicate key value violates unique constraint pg_type_typname_nsp_index")."""
    from ingest.raw_tables import ensure_raw_tables
    from training.results_schema import ensure_tables

    settings = create_database(embedded_cluster, "first_use")
    try:

        def provision_it() -> None:
            with connect(settings) as conn:
                provision(conn, settings.logins)

        def land_tables() -> None:
            with connect(settings, role=schemas.LOADER_ROLE) as conn:
                ensure_raw_tables(conn)

        for work in (provision_it, land_tables, lambda: ensure_tables(settings)):
            assert _at_once(work) == []
    finally:
        drop_database(settings)


def test_an_unknown_database_url_parameter_is_refused_without_quoting_any_of_the_url():
    for url in (
        f"postgresql://quant:{SECRET}@127.0.0.1:5432/db?foo=bar",
        "postgresql://quant@127.0.0.1/db?password=abc&Secretpart",  # an unencoded '&' in a password
    ):
        with pytest.raises(WarehouseConfigError, match="DATABASE_URL: a query parameter is not a libpq") as refused:
            settings_from_url(url)
        assert "foo" not in str(refused.value) and "Secretpart" not in str(refused.value)
    assert settings_from_url("postgresql://q@h/db?application_name=lab&sslmode=disable").options == {
        "application_name": "lab",
        "sslmode": "disable",
    }
    assert settings_from_url("postgresql://q@h/db?ssl=true").options == {"sslmode": "require"}  # as libpq reads it


@pytest.mark.parametrize(
    ("content", "where", "says"),
    [
        (b"PGPORT=5432\nPGHOST=\xff\xfe\n", ":2:", "not UTF-8 (byte 0xff)"),
        (b"PGPORT=5432\nthis is not a setting\n", ":2:", "not a NAME=value line"),
    ],
)
def test_a_dotenv_that_cannot_be_read_names_its_line(tmp_path, content, where, says):
    dotenv = tmp_path / ".env"
    dotenv.write_bytes(content)
    with pytest.raises(ConfigFileError) as refused:
        read_config(env={}, dotenv_path=dotenv)
    assert str(refused.value).startswith(f"{dotenv}{where} {says}")


def test_a_dotenv_with_a_byte_order_mark_and_comments_is_read(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_bytes(b"\xef\xbb\xbfPGHOST=db\r\n# a comment\r\nexport PGUSER=quant\r\n")
    assert read_config(env={}, dotenv_path=dotenv) == {"PGHOST": "db", "PGUSER": "quant"}


def test_a_component_password_without_its_user_is_refused_on_the_embedded_warehouse_too(tmp_path):
    with pytest.raises(WarehouseConfigError, match="WAREHOUSE_TRAINER_PASSWORD is set but WAREHOUSE_TRAINER_USER"):
        resolve_settings(env={"WAREHOUSE_TRAINER_PASSWORD": SECRET}, dotenv_path=tmp_path / "missing.env")


def test_ctrl_c_in_the_warehouse_command_is_one_line_and_status_130(monkeypatch, capsys):
    def interrupted(command: str) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(warehouse_main, "_run", interrupted)
    assert warehouse_main.main(["up"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: interrupted")


def test_a_usage_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        warehouse_main.main(["bogus"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'bogus'" in err and "see python -m warehouse_db --help" in err


def test_status_starts_nothing_and_says_the_embedded_warehouse_is_not_running(fresh_warehouse_dir):
    """After `make db-down`, `make db-status` says the server is down instead of starting it again, and exits 3 (not
    ready) so that a script can tell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "WAREHOUSE_")) and k != "DATABASE_URL"}
    env["WAREHOUSE_DIR"] = str(fresh_warehouse_dir)
    status = [sys.executable, "-m", "warehouse_db", "status"]
    result = subprocess.run(status, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert result.stdout.strip().endswith(
        "not running (`make db-up` starts it, as do ingest, training and `make psql`; `dbt run` as typed does not)"
    ), result.stdout
    assert not embedded.is_running(fresh_warehouse_dir / embedded.PGDATA_NAME)

    up = subprocess.run(status[:-1] + ["up"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    ready = subprocess.run(status, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert ready.returncode == 0 and ready.stdout.startswith("warehouse ready: "), ready.stdout + ready.stderr
    # It names the embedded warehouse once (it said "embedded warehouse postgres@... [embedded]").
    assert ready.stdout.startswith("warehouse ready: embedded warehouse "), ready.stdout
    assert ready.stdout.count("embedded") == 1, ready.stdout


def dbt_debug_as_typed(env: dict[str, str], logs: Path) -> tuple[int, str, str]:
    """`dbt debug --connection` as a user types it in the repository root (profiles.yml found there): its exit
    status, the host its profile rendered and its whole output."""
    dbt = Path(sys.executable).with_name("dbt")
    command = [str(dbt), "--no-use-colors", "debug", "--connection", "--log-path", str(logs)]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    hosts = re.findall(r"^\S+\s+host: (.*)$", output, flags=re.MULTILINE)
    return result.returncode, hosts[0] if hosts else "", output


def test_dbt_typed_by_hand_reaches_the_embedded_warehouse_of_an_exported_WAREHOUSE_DIR(
    fresh_warehouse_dir, monkeypatch
):
    """`export WAREHOUSE_DIR=...`, `make db-up`, then `dbt run` as the README says to type it: the profile's host
    was .warehouse/pgdata whatever WAREHOUSE_DIR said, so dbt built the repository's default warehouse without a word
    (or failed naming .warehouse/). It now reads WAREHOUSE_DIR as warehouse_db does: absolute, ~/ from HOME, relative
    from the repository; a ~user/ it cannot expand fails, naming it."""
    home = fresh_warehouse_dir  # short: the socket's path must stay within the Unix limit of 107 bytes
    warehouse_dir = home / "wh"
    embedded.start(warehouse_dir / embedded.PGDATA_NAME)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PG", "WAREHOUSE_", "DBT_")) and k != "DATABASE_URL"
    }
    env.update({"HOME": str(home), "DO_NOT_TRACK": "1"})
    monkeypatch.setenv("HOME", str(home))
    relative = os.path.relpath(warehouse_dir, REPO_ROOT)
    for spelling in (str(warehouse_dir), relative, "~/wh"):
        assert warehouse_dir_setting({"WAREHOUSE_DIR": spelling}).resolve() == warehouse_dir.resolve()  # as make db-up
        status, host, output = dbt_debug_as_typed({**env, "WAREHOUSE_DIR": spelling}, home / "logs")
        assert Path(host).resolve() == (warehouse_dir / embedded.PGDATA_NAME).resolve(), (spelling, output[-3000:])
        assert status == 0 and "Connection test: [OK connection ok]" in output, (spelling, output[-3000:])

    status, host, output = dbt_debug_as_typed(env, home / "logs")  # neither WAREHOUSE_DIR nor PGHOST: the default
    assert Path(host).resolve() == (REPO_ROOT / ".warehouse" / embedded.PGDATA_NAME).resolve(), output[-3000:]
    without_home = {k: v for k, v in env.items() if k != "HOME"}
    for unexpandable, where in (("~no-such-user-k9/wh", env), ("~/wh", without_home)):  # not guessed: dbt fails
        status, host, output = dbt_debug_as_typed({**where, "WAREHOUSE_DIR": unexpandable}, home / "logs")
        said = f"WAREHOUSE_DIR={unexpandable}: dbt expands only ~/ (from HOME); write the full path"
        assert status == 1 and host == said, output[-3000:]
        assert f'could not translate host name "{said}"' in output, output[-3000:]  # one host: no comma to split


def test_dbt_typed_by_hand_under_a_WAREHOUSE_DIR_with_a_comma_says_to_eval_the_env(tmp_path: Path) -> None:
    """warehouse_db puts the socket of a warehouse under a path with a comma in a runtime directory (libpq reads a
    host with a comma as a list of hosts). dbt typed by hand without the env eval took <WAREHOUSE_DIR>/pgdata as two
    hosts and failed on both ('No such file' for the first half, 'could not translate host name' for the rest); it
    now fails with one host that says what to do."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PG", "WAREHOUSE_", "DBT_")) and k != "DATABASE_URL"
    }
    env.update({"DO_NOT_TRACK": "1", "HOME": str(tmp_path)})
    said = 'the warehouse path has a comma so its socket is elsewhere: eval "$(.venv/bin/python -m warehouse_db env)" first'
    for spelling in (str(tmp_path / "a,b"), "~/a,b"):
        status, host, output = dbt_debug_as_typed({**env, "WAREHOUSE_DIR": spelling}, tmp_path / "logs")
        assert status == 1 and host == said, (spelling, output[-3000:])
        assert f'could not translate host name "{said}"' in output, output[-3000:]
        assert "No such file" not in output, output[-3000:]


def test_lock_files_left_by_a_killed_server_whose_pid_was_reused_do_not_stop_it_starting(fresh_warehouse_dir):
    """A server killed with SIGKILL (or a machine that lost power) leaves postmaster.pid and the socket's lock file;
    after a reboot the PID they name may belong to any process. The warehouse must still start, and status must say
    it is not running, instead of both taking that process for the server."""
    pgdata = fresh_warehouse_dir / embedded.PGDATA_NAME
    embedded.start(pgdata)
    lock_files = [pgdata / "postmaster.pid", *pgdata.glob(".s.PGSQL.*.lock")]
    left_behind = {path: path.read_text().splitlines()[1:] for path in lock_files}
    assert embedded.stop(pgdata)
    with subprocess.Popen(["sleep", "60"]) as other_process:
        try:
            for path, rest in left_behind.items():
                path.write_text("\n".join([str(other_process.pid), *rest]) + "\n")
            assert not embedded.is_running(pgdata)
            settings = embedded.start(pgdata)
            with connect(settings) as conn:
                assert conn.execute("select 1").fetchone() == (1,)
            assert embedded.is_running(pgdata)
        finally:
            other_process.kill()


def test_a_warehouse_deleted_under_its_running_server_starts_afresh_and_stays_reachable(fresh_warehouse_dir):
    """`rm -rf .warehouse` while its server runs, then any command: the old server, still running, would stop by
    itself within a minute and on its way out delete the new server's socket file (every command then failed until
    `make db-down`). It is stopped before the new one starts."""
    import psutil

    pgdata = fresh_warehouse_dir / embedded.PGDATA_NAME
    embedded.start(pgdata)
    old_server = psutil.Process(int((pgdata / "postmaster.pid").read_text().splitlines()[0]))
    shutil.rmtree(pgdata)
    settings = embedded.start(pgdata)
    assert not old_server.is_running()
    with connect(settings) as conn:
        assert conn.execute("select count(*) from pg_roles where rolname = 'loader'").fetchone() == (1,)


@pytest.mark.integration  # embedded.start runs (and stops at the directory before any server starts)
@pytest.mark.parametrize("where", ["a-file", "a-file/sub"])
def test_a_warehouse_dir_that_cannot_be_a_directory_is_one_line_and_status_4(tmp_path, monkeypatch, capsys, where):
    from ingest import cli as ingest_cli

    (tmp_path / "a-file").write_text("not a directory\n")
    for name in list(os.environ):
        if name.startswith(("PG", "WAREHOUSE_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("WAREHOUSE_DIR", str(tmp_path / where))
    bars = tmp_path / "bars.csv"
    bars.write_text("symbol,date,open,high,low,close,volume\nAAPL,2024-01-02,1,1,1,1,1\n")
    assert warehouse_db_main(["env"]) == 4
    assert ingest_cli.main(["--source", "csv", str(bars)]) == 4
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(f"the warehouse directory {tmp_path / where} (WAREHOUSE_DIR)" in x for x in lines)


def test_a_warehouse_dir_anywhere_in_the_repository_stays_out_of_git(tmp_path, monkeypatch):
    """WAREHOUSE_DIR may be any path (relative ones start at the repository): what the project creates there, a
    password file included, must not show up for `git add`, while a directory that existed before is left alone."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for name in list(os.environ):
        if name.startswith(("PG", "WAREHOUSE_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://quant:{SECRET}@10.0.0.1.com:6543/prod")
    monkeypatch.setenv("WAREHOUSE_DIR", str(tmp_path / "warehouse-data" / "prod"))
    assert warehouse_db_main(["env"]) == 0
    assert (tmp_path / "warehouse-data" / "prod" / "pgpass").exists()
    untracked = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path,
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert untracked == ""
    monkeypatch.setenv("WAREHOUSE_DIR", str(tmp_path))
    assert warehouse_db_main(["env"]) == 0
    assert not (tmp_path / ".gitignore").exists()


def test_a_warehouse_dir_that_existed_before_keeps_the_database_and_password_file_out_of_git(tmp_path, monkeypatch):
    """WAREHOUSE_DIR=. (or a directory the repository tracks) gets no .gitignore of its own: the repository's
    .gitignore keeps what the warehouse puts there, the password file above all, out of `git add`."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_bytes((REPO_ROOT / ".gitignore").read_bytes())
    for name in list(os.environ):
        if name.startswith(("PG", "WAREHOUSE_")) or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://quant:{SECRET}@10.0.0.1.com:6543/prod")
    for directory in (tmp_path, tmp_path / "data"):
        directory.mkdir(exist_ok=True)
        monkeypatch.setenv("WAREHOUSE_DIR", str(directory))
        assert warehouse_db_main(["env"]) == 0
        assert (directory / warehouse_main.PASSFILE_NAME).exists()
        (directory / embedded.PGDATA_NAME).mkdir()  # what the embedded server keeps there, as it names it
        (directory / embedded.PGDATA_NAME / "PG_VERSION").write_text("18\n", encoding="utf-8")
        (directory / f".{embedded.PGDATA_NAME}.lock").touch()
    untracked = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path,
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert untracked == "?? .gitignore\n"


def _initdb_bootstrapping(process: subprocess.Popen) -> bool:
    """Whether initdb, started by ``process``, is creating the cluster (its standalone ``postgres`` runs)."""
    import psutil

    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    for child in children:
        with contextlib.suppress(psutil.Error):
            if child.name() == "postgres" and {"--boot", "--single"} & set(child.cmdline()):
                return True
    return False


@pytest.mark.parametrize(
    "how", ["kill -9 of the whole group (a machine that lost power)", "SIGTERM to the command (kill PID)"]
)
def test_an_initdb_stopped_halfway_begins_again_on_the_next_up(fresh_warehouse_dir, how):
    """`make db-up` stopped while initdb creates the cluster: a killed initdb left pgdata with PG_VERSION and a
    standalone backend's postmaster.pid, and every later `up` and `down` ended in a traceback (an assert in
    embedded-postgres) until the user found and deleted the folder. SIGTERM ended the command with no line (143)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "WAREHOUSE_")) and k != "DATABASE_URL"}
    env["WAREHOUSE_DIR"] = str(fresh_warehouse_dir)
    up = [sys.executable, "-m", "warehouse_db", "up"]
    process = subprocess.Popen(up, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not _initdb_bootstrapping(process):
            assert process.poll() is None and time.monotonic() < deadline, "initdb did not start"
            time.sleep(0.02)
        if how.startswith("kill -9"):
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if how.startswith("SIGTERM"):
        assert process.returncode == warehouse_main.EXIT_INTERRUPTED, (process.returncode, err)
        assert err.strip().splitlines()[-1].startswith("error: interrupted; run it again"), err
        assert "Traceback" not in err
        # Python killed initdb alone: its standalone backend wrote on in the folder (and the next `up` could fail
        # removing it, 'Directory not empty'); the command stops it before it exits
        folder = embedded.initdb_folder(fresh_warehouse_dir / embedded.PGDATA_NAME).resolve()
        assert not [p for p in psutil.process_iter(["name", "cwd"]) if p.info["cwd"] and Path(p.info["cwd"]) == folder]
    for command in ("down", "up", "down"):
        result = subprocess.run(
            [*up[:-1], command], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0 and "Traceback" not in result.stderr, (command, result.stderr[-3000:])
        if command == "up":
            assert "warehouse ready" in result.stdout, result.stdout
    assert not embedded.initdb_folder(fresh_warehouse_dir / embedded.PGDATA_NAME).exists()


def test_a_client_killed_mid_statement_leaves_no_statement_behind(fresh_warehouse_dir):
    """`dbt run` stopped with SIGTERM (or SIGKILL, or a second Ctrl+C after its cancel was refused) while a model's
    statement waits for a lock or runs: the server went on with that statement, holding its locks, until it ended on its
    own (here: until the lock was released), and `dbt run` again waited behind it. Now the server notices the client is
    gone within seconds and ends the statement."""
    settings = embedded.start(fresh_warehouse_dir / embedded.PGDATA_NAME)
    with connect(settings) as conn:
        conn.execute("create table public.held (x int)")
    holder = connect(settings)
    holder.execute("lock table public.held in access exclusive mode")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | settings.libpq_env()
    env["PGAPPNAME"] = "killed mid-statement"
    client = subprocess.Popen([sys.executable, "-c", "import psycopg; psycopg.connect().execute('select * from public.held')"],
                              env=env)  # fmt: skip
    try:
        with connect(settings, autocommit=True) as watcher:
            sessions = "select count(*) from pg_stat_activity where application_name = 'killed mid-statement'"
            deadline = time.monotonic() + 60
            while not watcher.execute(
                "select count(*) from pg_stat_activity where %s = any(pg_blocking_pids(pid))",
                (holder.info.backend_pid,),
            ).fetchone()[0]:
                assert client.poll() is None and time.monotonic() < deadline, "the client never waited for the lock"
                time.sleep(0.05)
            client.kill()
            client.wait()
            deadline = time.monotonic() + 15
            while watcher.execute(sessions).fetchone()[0]:
                assert time.monotonic() < deadline, "the killed client's statement still waits for the lock"
                time.sleep(0.1)
    finally:
        holder.close()
        if client.poll() is None:
            client.kill()
            client.wait()


def test_down_names_the_sessions_it_ends(fresh_warehouse_dir):
    """`make db-down` while a command runs stops the server at once and ends that command's session (it then fails with
    "terminating connection due to administrator command"): down says which sessions it ended."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "WAREHOUSE_")) and k != "DATABASE_URL"}
    env["WAREHOUSE_DIR"] = str(fresh_warehouse_dir)
    settings = embedded.start(fresh_warehouse_dir / embedded.PGDATA_NAME)
    down = [sys.executable, "-m", "warehouse_db", "down"]
    with connect(settings, role="analyst") as analysis:
        analysis.execute("set application_name = 'a long analysis'")
        analysis.commit()
        result = subprocess.run(down, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "embedded warehouse stopped; it ended 1 open session: analyst_login (a long analysis)\n"
        with pytest.raises(psycopg.OperationalError):
            analysis.execute("select 1")
    again = subprocess.run(down, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout == "embedded warehouse was not running\n", again.stderr


def test_the_embedded_warehouse_starts_under_any_directory_name(fresh_warehouse_dir):
    """A clone under `~/My Projects/tensor café/`: pg_ctl starts PostgreSQL through a shell, and embedded-postgres
    passed the socket directory unquoted, so a space made `make db-up` (and `make demo`) fail with PostgreSQL's
    'invalid argument: "Projects/..."'. A `$`, a double quote or a backquote broke pg_ctl's own quoting of -D, and
    a comma split the socket directory in two (PostgreSQL's list of socket directories, libpq's list of hosts).
    A server that cannot start says so in one line, with the last line of its log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "WAREHOUSE_")) and k != "DATABASE_URL"}
    warehouse_dir = fresh_warehouse_dir / 'My Projects, "$HOME" `id` café'
    env["WAREHOUSE_DIR"] = str(warehouse_dir)
    command = [sys.executable, "-m", "warehouse_db"]
    try:
        up = subprocess.run([*command, "up"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert up.returncode == 0, up.stderr
        select = [*command, "psql", "--as", "analyst", "-Atc", "select current_user"]
        result = subprocess.run(select, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert (result.returncode, result.stdout) == (0, "analyst\n"), result.stderr

        down = subprocess.run([*command, "down"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stderr
        with (warehouse_dir / embedded.PGDATA_NAME / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("shared_buffers = 'plenty'\n")
        up = subprocess.run([*command, "up"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert up.returncode == 4 and up.stdout == "", up.stdout + up.stderr
        assert up.stderr.count("\n") == 1 and "did not start (" in up.stderr and "shared_buffers" in up.stderr, (
            up.stderr
        )
    finally:
        embedded.stop(warehouse_dir / embedded.PGDATA_NAME)


def test_a_warehouse_moved_while_its_server_runs_is_restarted_where_it_now_is(fresh_warehouse_dir):
    """`mv ~/code/project ~/work/` after `make demo`: the server ran on in the moved directory, but its socket was no
    longer where postmaster.pid said, and every command failed ("connection to server on socket <old path> failed:
    No such file or directory") until the user found the process and killed it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "WAREHOUSE_")) and k != "DATABASE_URL"}
    before, after = fresh_warehouse_dir / "before", fresh_warehouse_dir / "after"
    embedded.start(before / embedded.PGDATA_NAME)
    before.rename(after)
    try:
        env["WAREHOUSE_DIR"] = str(after)
        status = [sys.executable, "-m", "warehouse_db", "status"]
        result = subprocess.run(status, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and result.stdout.startswith("warehouse ready: "), result.stdout + result.stderr
        assert result.stderr.splitlines() == [
            f"WARNING warehouse_db.embedded: restarting the embedded warehouse: it was moved from "
            f"{before / embedded.PGDATA_NAME} to {after / embedded.PGDATA_NAME} while it ran"
        ]
    finally:
        embedded.stop(after / embedded.PGDATA_NAME)


def test_a_copy_of_a_running_warehouse_starts_its_own_server_and_leaves_the_original_running(fresh_warehouse_dir):
    """`cp -r project project-copy` while the warehouse runs: the copy's postmaster.pid names the original's server.
    The restart of a moved warehouse took the copy for the original moved, stopped the original's server (ending its
    sessions) and then failed; before that, the copy's commands used the original's server and data. A server is the
    copy's only if it works in the copy's data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "WAREHOUSE_")) and k != "DATABASE_URL"}
    original, copy = fresh_warehouse_dir / "original", fresh_warehouse_dir / "copy"
    embedded.start(original / embedded.PGDATA_NAME)
    try:
        subprocess.run(["cp", "-a", str(original), str(copy)], check=True)  # as its owner copies it (-a: also as root)
        env["WAREHOUSE_DIR"] = str(copy)
        command = [sys.executable, "-m", "warehouse_db"]
        down = subprocess.run([*command, "down"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert (down.returncode, down.stdout) == (0, "embedded warehouse was not running\n"), down.stderr
        up = subprocess.run([*command, "up"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert up.returncode == 0 and "restarting" not in up.stderr, up.stderr
        assert embedded.is_running(original / embedded.PGDATA_NAME), "the original's server was stopped"
        assert embedded.is_running(copy / embedded.PGDATA_NAME)
        pids = [(path / embedded.PGDATA_NAME / "postmaster.pid").read_text().split()[0] for path in (original, copy)]
        assert pids[0] != pids[1]
    finally:
        for path in (copy, original):
            with contextlib.suppress(WarehouseError):  # the copy's postmaster.pid may name the original's server
                embedded.stop(path / embedded.PGDATA_NAME)


def test_an_output_that_cannot_encode_a_path_ends_no_command(tmp_path):
    """PYTHONIOENCODING=ascii (or a latin-1 terminal) and a clone under ~/café/: `make db-status` ended in a
    UnicodeEncodeError traceback (status 1) instead of its line; the verdict's −, … and × did the same to `make train`
    after the run had landed. What the output cannot take is spelt so that it can. `env`, whose lines a shell evals,
    writes the path's own bytes: an escaped one would set a PGHOST that does not exist."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "WAREHOUSE_")) and k != "DATABASE_URL"}
    env.update(PYTHONIOENCODING="ascii", WAREHOUSE_DIR=str(tmp_path / "tensor café"))
    status = [sys.executable, "-m", "warehouse_db", "status"]
    result = subprocess.run(status, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert (result.returncode, result.stderr) == (3, ""), result.stderr
    assert result.stdout.startswith(f"embedded warehouse in {tmp_path}/tensor caf\\xe9/pgdata: not running")

    env["DATABASE_URL"] = "postgresql://quant@10.0.0.1/café−×"
    shell = f'eval "$({shlex.quote(sys.executable)} -m warehouse_db env)" && printf %s "$PGDATABASE"'
    result = subprocess.run(["bash", "-c", shell], cwd=REPO_ROOT, env=env, capture_output=True, timeout=120)
    assert (result.returncode, result.stdout, result.stderr) == (0, "café−×".encode(), b"")


@pytest.mark.integration
def test_a_c_locale_with_utf8_mode_off_reaches_a_warehouse_under_a_non_ascii_path(fresh_warehouse_dir: Path) -> None:
    """LC_ALL=C with PYTHONUTF8=0 (Python then reads paths and settings as ASCII) and WAREHOUSE_DIR under café Ü/:
    `make db-up` ended in a UnicodeDecodeError traceback (embedded-postgres read initdb's output as ASCII), then in a
    UnicodeEncodeError, and dbt, in the shell that evals `warehouse_db env`, in another. The commands run in UTF-8 mode,
    as Python itself would under that locale, and `env` exports PYTHONUTF8=1 for dbt."""
    where = fresh_warehouse_dir / "café Ü"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "WAREHOUSE_", "LC_", "LANG"))}
    env.update(LC_ALL="C", PYTHONUTF8="0", WAREHOUSE_DIR=str(where), DO_NOT_TRACK="1")
    env.pop("DATABASE_URL", None)
    dbt = shlex.quote(str(REPO_ROOT / ".venv" / "bin" / "dbt"))
    shell = (
        f'{shlex.quote(sys.executable)} -m warehouse_db up && eval "$({shlex.quote(sys.executable)} -m warehouse_db env)"'
        f' && printf "PYTHONUTF8=%s\\n" "$PYTHONUTF8" && {dbt} debug --log-path {shlex.quote(str(where / "logs"))}'
    )
    try:
        result = subprocess.run(["bash", "-c", shell], cwd=REPO_ROOT, env=env, capture_output=True, timeout=300)
    finally:
        embedded.stop(where / embedded.PGDATA_NAME)
    output = (result.stdout + result.stderr).decode("utf-8", "replace")
    assert result.returncode == 0, output
    assert f"warehouse ready: embedded warehouse postgres@{where}/pgdata/warehouse" in output
    assert "PYTHONUTF8=1" in output and "All checks passed!" in output and "Traceback" not in output


def test_env_outlives_the_reader_of_its_output():
    """`python -m warehouse_db env | head -0`, or a reader that is gone before the lines come: `env` writes its lines'
    own bytes, past the output's encoding, and that write ended in a BrokenPipeError traceback with status 1, where
    every other command goes on quietly (docs/operations.md: never a BrokenPipeError)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "WAREHOUSE_")) and k != "DATABASE_URL"}
    env["DATABASE_URL"] = "postgresql://quant@10.0.0.1/warehouse"  # nothing is connected to
    for unbuffered in ("", "1"):  # make exports PYTHONUNBUFFERED=1
        env["PYTHONUNBUFFERED"] = unbuffered
        gone, stdout = os.pipe()
        os.close(gone)  # the reader has gone away
        try:
            result = subprocess.run([sys.executable, "-m", "warehouse_db", "env"], cwd=REPO_ROOT, env=env,
                                    stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120)  # fmt: skip
        finally:
            os.close(stdout)
        assert (result.returncode, result.stderr) == (0, ""), result.stderr


def test_env_with_its_output_closed_ends_with_its_own_status_and_line():
    """`python -m warehouse_db env >&-` (stdout closed before Python starts: sys.stdout is None): env, and every
    command, ended in an AttributeError traceback from the flush at the end, with status 120, whether env had
    succeeded or failed. Nobody reads a closed output: what goes there is dropped, and the status is env's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "WAREHOUSE_")) and k != "DATABASE_URL"}
    command = f"{shlex.quote(sys.executable)} -m warehouse_db env >&-"
    for url, status, stderr in (
        ("postgresql://quant@10.0.0.1/warehouse", 0, ""),  # nothing is connected to
        (f"mysql://quant:{SECRET}@10.0.0.1/warehouse", 4, "error: DATABASE_URL must start with postgresql:// or "
         "postgres://\n"),
    ):  # fmt: skip
        result = subprocess.run(["bash", "-c", command], cwd=REPO_ROOT, env={**env, "DATABASE_URL": url},
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert (result.returncode, result.stderr) == (status, stderr), result.stderr


@pytest.mark.parametrize("shell", ["bash", "dash"])
@pytest.mark.parametrize(
    ("setting", "args", "status"),
    [
        ({"DATABASE_URL": f"mysql://quant:{SECRET}@10.0.0.1/warehouse"}, "", 4),  # misconfigured
        ({"WAREHOUSE_DIR": "/dev/null/warehouse"}, "", 4),  # the embedded one cannot be started
        ({"DATABASE_URL": "postgresql://quant@10.0.0.1/warehouse"}, " --bogus", EXIT_USAGE),
    ],
    ids=["bad-url", "embedded-cannot-start", "usage"],
)
def test_a_failing_env_stops_the_shell_that_evals_it(shell, setting, args, status):
    """`eval "$(python -m warehouse_db env)" && dbt run`, as users chain it: when env failed, its line went to
    stderr, stdout was empty, the shell's `eval ""` returned 0, and dbt (or psql) went on with whatever PG* variables
    the shell had: another server, or none. Now the eval fails with env's own status, so a `&&` chain and a `set -e`
    script stop, while the shell that evals it (a terminal's) goes on; on a terminal env prints its error alone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "WAREHOUSE_")) and k != "DATABASE_URL"}
    env.update(setting)
    env_command = f"{shlex.quote(sys.executable)} -m warehouse_db env{args}"
    scripts = {
        "chain": f'eval "$({env_command})" && echo RAN',
        "set -e": f'set -e; eval "$({env_command})"; echo RAN',
        "goes on": f'eval "$({env_command})"; echo "shell goes on after status $?"',
    }
    for name, script in scripts.items():
        result = subprocess.run([shell, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        stdout = f"shell goes on after status {status}\n" if name == "goes on" else ""
        assert (result.returncode, result.stdout) == (0 if name == "goes on" else status, stdout), (name, result)
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: "), result.stderr
        assert not leaked_fragments(result.stderr, [SECRET])
    # By hand on a terminal: the one error line, and nothing a person would wonder about.
    import pty

    primary, secondary = pty.openpty()
    try:
        result = subprocess.run([sys.executable, "-m", "warehouse_db", "env", *args.split()], cwd=REPO_ROOT, env=env,
                                stdout=secondary, stderr=subprocess.PIPE, text=True, timeout=120)  # fmt: skip
        os.set_blocking(primary, False)
        with contextlib.suppress(BlockingIOError):
            assert os.read(primary, 4096) == b""
    finally:
        os.close(primary)
        os.close(secondary)
    assert result.returncode == status and len(result.stderr.splitlines()) == 1, result.stderr


def test_every_keyword_as_a_login_or_database_name_parses_in_the_statements_messages_suggest(embedded_cluster):
    """A login or database named by an SQL keyword (``user``, ``select``, ``order``): the statements a message suggests
    (ALTER ROLE / ALTER DATABASE ... RESET, CREATE DATABASE, GRANT) named it bare, a syntax error as pasted, and for a
    login named ``all``, ALTER ROLE all RESET ... reset every role. Every keyword this server knows, through sql_name,
    must reach PostgreSQL's parser whole: the server then says the role or database does not exist (or that CREATE
    DATABASE cannot run in a transaction), never a syntax error. The static list must hold every word this server
    reserves."""
    expected = {
        "alter role {} reset default_transaction_read_only": psycopg.errors.UndefinedObject,
        "alter database {} reset default_transaction_read_only": psycopg.errors.InvalidCatalogName,
        "create database {} encoding 'UTF8' template template0": psycopg.errors.ActiveSqlTransaction,
    }
    wrong = []
    with connect(embedded_cluster) as conn, conn.transaction(force_rollback=True):  # whatever ran leaves nothing
        version = conn.info.server_version
        keywords = conn.execute("select word, catcode from pg_get_keywords()").fetchall()
        reserved = {word for word, catcode in keywords if catcode in ("R", "T")}
        assert reserved <= RESERVED_WORDS, f"reserved by PostgreSQL {version} and missing: {reserved - RESERVED_WORDS}"
        for word, _ in keywords:
            statements = [(text.format(sql_name(word)), error) for text, error in expected.items()]
            statements.append((grant_statement(["loader", "analyst"], word, version), psycopg.errors.UndefinedObject))
            for statement, error in statements:
                try:
                    with conn.transaction():
                        conn.execute(statement)
                except error:
                    continue
                except psycopg.errors.ReservedName:  # none: read as a role's name, one that no role can have
                    continue
                except psycopg.Error as other:
                    wrong.append(f"{statement}: {type(other).__name__}: {str(other).splitlines()[0]}")
                else:
                    wrong.append(f"{statement}: ran")
    assert not wrong, "\n".join(wrong)
