"""Open connections to the warehouse. Every other module asks here instead of building its own."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import psycopg
from psycopg import sql

from warehouse_db import embedded
from warehouse_db.errors import WarehouseConfigError, WarehouseNotProvisioned, WarehouseUnreachable
from warehouse_db.provision import grant_statement, sql_name
from warehouse_db.schemas import ANALYST_ROLE
from warehouse_db.settings import (
    DEFAULT_DOTENV,
    SESSION_SETTINGS,
    ConnectionSettings,
    client_limits,
    component_logins,
    external_settings,
    read_config,
    uses_external_server,
    warehouse_dir,
)

logger = logging.getLogger(__name__)


def resolve_settings(
    env: Mapping[str, str] | None = None, dotenv_path: Path | None = DEFAULT_DOTENV
) -> ConnectionSettings:
    """Settings of the configured server; starts the embedded warehouse when no server is configured.

    Raises WarehouseConfigError for a malformed setting and WarehouseError when the embedded warehouse cannot start.
    """
    config = read_config(env, dotenv_path)
    if uses_external_server(config):
        return external_settings(config)
    component_logins(config)  # checked here too, though the embedded warehouse has logins of its own
    limits = client_limits(config)
    # The user's name for the sessions, from .env too (libpq itself reads PGAPPNAME from the environment only).
    named = {"application_name": config["PGAPPNAME"]} if config.get("PGAPPNAME") else {}
    return replace(embedded.start(pgdata=warehouse_dir(config) / embedded.PGDATA_NAME), **limits, options=named)


def connect(
    settings: ConnectionSettings | None = None,
    *,
    role: str | None = None,
    autocommit: bool = False,
) -> psycopg.Connection:
    """A psycopg 3 connection with UTF-8 client encoding, optionally acting as ``role``.

    Acting as a role means the session has exactly that role's privileges (``SET ROLE``): the training job reads
    the marts as ``trainer`` and therefore cannot see raw data even by mistake. Where the settings name the role's
    own login (see :mod:`warehouse_db.settings`), the connection is opened with that login, a member of that role
    only, so that not even ``RESET ROLE`` reaches further. Every statement is limited to the settings'
    statement_timeout; opening the connection to their connect_timeout. The session's date style, float digits and
    time zone are the project's (:data:`~warehouse_db.settings.SESSION_SETTINGS`), whatever the server, database,
    login or the client's environment (PGTZ, PGDATESTYLE) say.
    """
    settings = (settings or resolve_settings()).for_role(role)
    try:
        conn = psycopg.connect(**settings.connect_kwargs(), autocommit=autocommit)
    except psycopg.OperationalError as error:
        # libpq's message never includes the password; add where we tried, also without it.
        reason = _one_line(error)
        if "timeout expired" in reason:
            reason += f" (no answer within {settings.connect_timeout} s; PGCONNECT_TIMEOUT sets the limit)"
        elif settings.embedded and "Peer authentication failed" in reason:
            reason += " (the embedded warehouse admits only the OS user who created it)"
        elif _names_an_option(reason, settings.users_options()):
            reason += f"; it is a setting of {OPTIONS_SOURCES}, which libpq sends at connection start"
        elif variable := _environment_variable_named(reason):
            reason += f"; it is {variable}'s value, which libpq sends at connection start"
        raise WarehouseUnreachable(f"cannot connect to {settings.describe()}: {reason}") from None
    except psycopg.ProgrammingError as error:  # libpq refused the parameters themselves (PG* variables, URL)
        raise WarehouseConfigError(f"cannot connect to {settings.describe()}: {_one_line(error)}") from None
    except UnicodeError:  # the host name, looked up by psycopg in Python: IDNA refuses an empty or 64+ letter label
        raise WarehouseConfigError(
            f"cannot connect to {settings.describe()}: the host is not a host name (a part between dots is empty or "
            "longer than 63 characters): check PGHOST, or DATABASE_URL's host"
        ) from None
    if refusal := _cannot_serve(conn, settings, role):
        conn.close()
        raise WarehouseConfigError(refusal)
    try:
        # The project's session settings, set once connected (connect_kwargs sends no `options`): a SET beats the
        # server's, the database's and the login's settings, PGOPTIONS, and PGTZ and PGDATESTYLE, which libpq sends at
        # connection start.
        statements = [
            sql.SQL("set {} = {}").format(sql.Identifier(name), sql.Literal(value))
            for name, value in SESSION_SETTINGS.items()
        ]
        if settings.statement_timeout:
            statements.append(sql.SQL("set statement_timeout = {}").format(settings.statement_timeout * 1000))
        if role is not None:
            statements.append(sql.SQL("set role {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("; ").join(statements))
        if not autocommit:
            conn.commit()
    except (psycopg.errors.InvalidParameterValue, psycopg.errors.UndefinedObject):
        conn.close()
        raise WarehouseNotProvisioned.missing_role(role, settings.describe()) from None
    except psycopg.errors.InsufficientPrivilege:
        login, server_version = settings.user or conn.info.user, conn.info.server_version
        conn.close()
        raise WarehouseNotProvisioned(
            f"{login} may not act as role {role!r} in {settings.describe()}: "
            "have an administrator run `python -m warehouse_db provision` with the admin login (it grants each "
            f"component's own login its role), or {grant_statement([role], login, server_version)}"
        ) from None
    return conn


def _cannot_serve(conn: psycopg.Connection, settings: ConnectionSettings, role: str | None) -> str | None:
    """Why this database or login cannot serve the project, from what the server reports at connection start (no
    query): a database that is not UTF-8, or, for any role but analyst (which only reads), transactions that are
    read-only (``default_transaction_read_only`` set on the login or the database)."""
    where, login = settings.describe(), settings.user or conn.info.user
    encoding = conn.info.parameter_status("server_encoding")
    if encoding is not None and encoding != "UTF8":
        return (
            f"{where}: the database is encoded {encoding}, and the warehouse needs a UTF8 database (its text "
            "is UTF-8: symbols, names, the gateway's messages, dbt's text tests): create one with "
            f"CREATE DATABASE {sql_name(conn.info.dbname + '_utf8')} ENCODING 'UTF8' TEMPLATE template0 and point "
            "PGDATABASE (or DATABASE_URL) at it"
        )
    if role == ANALYST_ROLE:
        return None
    does = f"the {role} role writes" if role else "provisioning writes"
    if conn.info.parameter_status("default_transaction_read_only") == "on":
        if "default_transaction_read_only" in settings.users_options().lower():
            return (
                f"{where}: {OPTIONS_SOURCES} sets default_transaction_read_only, and {does}: leave that setting out "
                "there"
            )
        return (
            f"{where}: {login}'s transactions are read-only (default_transaction_read_only is on for the login or the "
            f"database), and {does}: have an administrator run ALTER ROLE {sql_name(login)} RESET "
            f"default_transaction_read_only (or ALTER DATABASE {sql_name(conn.info.dbname)} RESET "
            "default_transaction_read_only)"
        )
    return None


OPTIONS_SOURCES = "PGOPTIONS (or an options parameter of DATABASE_URL or the service)"
"""Where the user's own libpq ``options`` come from (:meth:`ConnectionSettings.users_options`)."""


def _names_an_option(reason: str, options: str) -> bool:
    """Whether libpq's reason for a failed connection names a setting or an argument of the user's ``options``
    (``-c name=value``, ``--name=value``): the server refused it at connection start. The server quotes a setting's
    name in every language, and puts an argument it cannot read after a colon."""
    tokens = [token for token in options.split() if token != "-c"]
    names = {token.removeprefix("--").removeprefix("-c").partition("=")[0].lower() for token in tokens}
    lowered = reason.lower()
    return any(f'"{name}"' in lowered for name in names if name) or any(
        f": {token} " in f"{reason} " for token in tokens
    )


ENVIRONMENT_SENT_SETTINGS = {"PGTZ": "timezone", "PGDATESTYLE": "datestyle", "PGGEQO": "geqo"}
"""The server settings libpq sends at connection start from these variables of the client's environment (libpq's
"Environment Variables"); the server refuses a bad value before any statement runs."""


def _environment_variable_named(reason: str) -> str | None:
    """The variable (PGTZ, ...) whose setting libpq's reason for a failed connection names, where it is set."""
    lowered = reason.lower()
    return next(
        (variable for variable, name in ENVIRONMENT_SENT_SETTINGS.items()
         if os.environ.get(variable) and f'"{name}"' in lowered),
        None,
    )  # fmt: skip


def _one_line(error: Exception) -> str:
    """libpq's messages span lines (a hint on the next); a CLI prints one."""
    return " ".join(str(error).split())
