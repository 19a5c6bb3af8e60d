"""Apply the warehouse's roles, schemas and privileges (``provision.sql``) and its per-component logins.

Provisioning is the admin login's job: the embedded warehouse does it on every start, ``python -m warehouse_db
up|provision`` does it on any server, and ingest does it on a single-login server (whose one login is the admin).
A component that has its own login only checks that an admin has provisioned (:func:`ensure_provisioned`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import psycopg
from psycopg import sql

from warehouse_db.errors import ProvisioningError, WarehouseNotProvisioned, WarehouseUnreachable
from warehouse_db.schemas import COMPONENT_ROLES, ML, RAW
from warehouse_db.settings import ConnectionSettings, Login, login_variables

__all__ = [
    "PrivilegeMissing",
    "ProvisioningError",
    "ensure_provisioned",
    "grant_statement",
    "missing_pieces",
    "provision",
    "sql_name",
]

PROVISION_SQL = Path(__file__).with_name("provision.sql")
LOCK_TIMEOUT = "60s"
"""How long provisioning waits for another process that is provisioning (or holds a lock it needs)."""


class PrivilegeMissing(ProvisioningError):
    """The connected login may not provision (no CREATEROLE, not the database's owner)."""


def provision(
    conn: psycopg.Connection, logins: Mapping[str, Login] | None = None, *, passwordless_logins: bool = False
) -> None:
    """Create the roles loader/transformer/trainer/analyst, the raw and ml schemas and the given per-component
    logins, idempotently, in one transaction.

    A login that does not exist is created with its configured password (sent as a SCRAM verifier computed
    here, never in clear text), or without one where ``passwordless_logins`` (the embedded warehouse's peer
    authentication needs none). Existing logins keep their passwords. Every login must end up a member of its
    role only: one that is a superuser or a member of another project role is refused, since the boundary
    between components would not hold. Concurrent runs take turns (an advisory lock).
    """
    logins = dict(logins or {})
    try:
        with conn.transaction():
            conn.execute(f"set local statement_timeout = '{LOCK_TIMEOUT}'")
            conn.execute("select pg_advisory_xact_lock(hashtext('warehouse_db.provision'))")
            conn.execute(PROVISION_SQL.read_text(encoding="utf-8"))
            for role, login in logins.items():
                _ensure_login(conn, role, login, passwordless_logins)
    except psycopg.errors.InsufficientPrivilege as error:
        raise PrivilegeMissing(
            f"PostgreSQL user {conn.info.user!r} may not create the warehouse roles, schemas or logins "
            f"({_first_line(error)}). Grant it CREATEROLE and ownership of the database, or have an administrator "
            "run `python -m warehouse_db provision` once."
        ) from None
    except psycopg.errors.QueryCanceled:
        raise ProvisioningError(
            f"provisioning waited more than {LOCK_TIMEOUT} for another session (another process provisioning, "
            "or a transaction holding a lock on the warehouse's roles or schemas); try again when it has finished"
        ) from None


SET_OPTION_VERSION = 160000
"""PostgreSQL 16 grants the right to SET ROLE apart from membership (``WITH SET``); 15 has no such option."""


def grant_statement(roles: Sequence[str], login: str, server_version: int) -> str:
    """The GRANT that lets ``login`` act as ``roles`` (SET ROLE), as an administrator would type it.

    From PostgreSQL 16 on it says ``WITH SET TRUE``: granting a membership that exists keeps its options, so a plain
    GRANT leaves a member WITH SET FALSE (a login that created the roles is one) unable to SET ROLE, with only a
    notice that the membership exists. PostgreSQL 15 knows no SET option, and its membership is enough.
    """
    granted = ", ".join(sql_name(role) for role in roles)
    return f"GRANT {granted} TO {sql_name(login)}" + (" WITH SET TRUE" if server_version >= SET_OPTION_VERSION else "")


# fmt: off
RESERVED_WORDS = frozenset({
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "authorization", "binary",
    "both", "case", "cast", "check", "collate", "collation", "column", "concurrently", "constraint", "create",
    "cross", "current_catalog", "current_date", "current_role", "current_schema", "current_time",
    "current_timestamp", "current_user", "default", "deferrable", "desc", "distinct", "do", "else", "end", "except",
    "false", "fetch", "for", "foreign", "freeze", "from", "full", "grant", "group", "having", "ilike", "in",
    "initially", "inner", "intersect", "into", "is", "isnull", "join", "lateral", "leading", "left", "like",
    "limit", "localtime", "localtimestamp", "natural", "not", "notnull", "null", "offset", "on", "only", "or",
    "order", "outer", "overlaps", "placing", "primary", "references", "returning", "right", "select",
    "session_user", "similar", "some", "symmetric", "system_user", "table", "tablesample", "then", "to", "trailing",
    "true", "union", "unique", "user", "using", "variadic", "verbose", "when", "where", "window", "with",
})
# fmt: on
"""The words PostgreSQL reads as keywords where a statement names a login or a database: ``select word from
pg_get_keywords() where catcode in ('R', 'T')`` on PostgreSQL 18.6 (15's list is the same less ``system_user``). A
message is often built without a connection to ask the server; a word a later version reserves fails the test that
compares this list with the server's own."""


def sql_name(name: str) -> str:
    """``name`` (a login's, a database's) as SQL spells it in a statement a message suggests: bare where PostgreSQL
    reads it unchanged, else quoted (``"o'brien Ädmin"``, ``"my-warehouse"``, and a reserved word: ``"user"``)."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) and name not in RESERVED_WORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def _verifier(conn: psycopg.Connection, login: Login) -> str:
    """The password as the server stores it (SCRAM or md5, as its password_encryption says): the clear text
    never travels to the server, so it cannot end up in a server log either."""
    assert login.password is not None
    algorithm = conn.execute("show password_encryption").fetchone()[0]
    return conn.pgconn.encrypt_password(login.password.encode(), login.user.encode(), algorithm.encode()).decode()


def _ensure_login(conn: psycopg.Connection, role: str, login: Login, passwordless: bool) -> None:
    user = sql.Identifier(login.user)
    found = conn.execute("select rolsuper, rolbypassrls from pg_roles where rolname = %s", (login.user,)).fetchone()
    if found is None:
        if login.password:
            password = sql.Literal(_verifier(conn, login))
            conn.execute(sql.SQL("create role {} login password {}").format(user, password))
        elif passwordless:
            conn.execute(sql.SQL("create role {} login").format(user))
        else:
            user_variable, password_variable = login_variables(role)
            raise ProvisioningError(
                f"login {login.user!r} ({user_variable}) does not exist: create it (CREATE ROLE ... LOGIN PASSWORD) "
                f"or set {password_variable} so that provisioning creates it"
            )
    elif found[0] or found[1]:
        raise ProvisioningError(
            f"login {login.user!r} for the {role} role is a superuser or bypasses row security: a component's "
            f"login must be an ordinary login that is a member of {role} only"
        )
    # PostgreSQL 16 separates membership from the right to SET ROLE (which connect() does), and a GRANT of a
    # membership that exists keeps its options: WITH SET TRUE is what gives a member WITH SET FALSE that right.
    separate_set = conn.info.server_version >= SET_OPTION_VERSION
    privilege = "SET" if separate_set else "MEMBER"
    if not conn.execute("select pg_has_role(%s, %s, %s)", (login.user, role, privilege)).fetchone()[0]:
        grant = sql.SQL("grant {} to {}" + (" with set true" if separate_set else ""))
        conn.execute(grant.format(sql.Identifier(role), user))
    others = [
        other
        for (other,) in conn.execute(
            "select rolname from pg_roles where rolname = any(%s) and rolname <> %s "
            "and pg_has_role(%s, oid, 'member') order by rolname",
            (list(COMPONENT_ROLES), role, login.user),
        )
    ]
    if others:
        raise ProvisioningError(
            f"login {login.user!r} for the {role} role is also a member of {', '.join(others)}: the boundary "
            f"between components would not hold. Give {role} a login of its own (REVOKE the other roles from it)"
        )


def missing_pieces(conn: psycopg.Connection) -> list[str]:
    """What provisioning creates and this database lacks (roles, schemas); empty when it is provisioned."""
    row = conn.execute(
        "select array(select r from unnest(%s::text[]) as r where not exists "
        "(select from pg_roles where rolname = r)), "
        "array(select s from unnest(%s::text[]) as s where to_regnamespace(s) is null)",
        (list(COMPONENT_ROLES), [RAW, ML]),
    ).fetchone()
    return [f"role {name}" for name in row[0]] + [f"schema {name}" for name in row[1]]


def roles_out_of_reach(conn: psycopg.Connection, settings: ConnectionSettings) -> dict[str, list[str]]:
    """Logins that exist but may not act as a project role they are configured for (their own role, or every role
    without a login of its own for the admin login), with those roles: such a login's component fails at SET ROLE."""
    pairs = [(role, settings.for_role(role).user) for role in COMPONENT_ROLES]
    pairs = [(role, login) for role, login in pairs if login]
    # Acting as a role is SET ROLE, which PostgreSQL 16 grants apart from membership (a login that created the roles
    # is a member WITH SET FALSE): what provisioning checks and grants too.
    privilege = "SET" if conn.info.server_version >= SET_OPTION_VERSION else "MEMBER"
    rows = conn.execute(
        "select l, r from unnest(%s::text[], %s::text[]) as p(r, l) "
        "where exists (select from pg_roles where rolname = r) and exists (select from pg_roles where rolname = l) "
        "and not pg_has_role(l, r, %s) order by array_position(%s::text[], r)",
        ([role for role, _ in pairs], [login for _, login in pairs], privilege, list(COMPONENT_ROLES)),
    ).fetchall()
    out_of_reach: dict[str, list[str]] = {}
    for login, role in rows:
        out_of_reach.setdefault(login, []).append(role)
    return out_of_reach


def ensure_provisioned(settings: ConnectionSettings, role: str) -> None:
    """Make sure the warehouse is provisioned before ``role`` works in it.

    Where an admin login is configured (DATABASE_URL's or PGUSER's user) or the component has no login of its
    own, that login provisions, as it always did; if it may not, that is fine as long as an administrator already
    has. A component configured with only its own login (it may not create roles) just checks.
    """
    from warehouse_db.connection import connect

    if settings.user is not None or role not in settings.logins:
        try:
            admin = connect(settings)
        except WarehouseUnreachable as error:
            if settings.user is None and not settings.embedded and _login_refused(str(error)):
                # No login named for the role, nor an admin login: libpq's default user (the OS user's name) was a
                # guess, as on a machine set up for another component (only WAREHOUSE_TRAINER_USER, say).
                user_variable, password_variable = login_variables(role)
                raise WarehouseUnreachable(
                    f"{error}; no login is configured for the {role} role here: set {user_variable} and "
                    f"{password_variable} (docs/operations.md), or the admin login (DATABASE_URL, or PGUSER and "
                    "PGPASSWORD)"
                ) from None
            raise
        with admin as conn:
            try:
                provision(conn, settings.logins)
            except PrivilegeMissing:
                conn.rollback()
                if missing_pieces(conn):
                    raise
        return
    with connect(settings, role=role) as conn:
        missing = missing_pieces(conn)
    if missing:
        raise WarehouseNotProvisioned(
            f"{settings.describe()} lacks {', '.join(missing)}: have an administrator run "
            "`python -m warehouse_db provision` with the admin login (DATABASE_URL or PGUSER)"
        )


def _login_refused(reason: str) -> bool:
    """Whether libpq's reason says the server refused the login (no or a wrong password, no such role), not that it
    could not be reached."""
    no_such_role = 'role "' in reason and "does not exist" in reason
    return no_such_role or "no password supplied" in reason or "authentication failed" in reason


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
