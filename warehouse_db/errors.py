"""What can go wrong with the warehouse that a user can cause or fix: every such failure is a WarehouseError.

Command-line entry points catch :class:`WarehouseError` and print its message as one line (exit status 4 in
every CLI); the message says what happened and what to do, and never contains a password or any part of one.
"""

from __future__ import annotations

NOT_BUILT_ADVICE = "run `make ingest` and then the dbt build (`make dbt-build`) first"
"""What a user does about a warehouse that has nothing in it yet."""


STATEMENT_TIMEOUT_HINT = (
    "WAREHOUSE_STATEMENT_TIMEOUT sets how long one statement of ingest and training may run, in seconds (default "
    "1800); at 0 the login's or the database's own statement_timeout applies"
)


def server_error_line(error: Exception) -> str:
    """A PostgreSQL error as one line: its primary message (psycopg's text adds CONTEXT, DETAIL and HINT lines), and
    for a cancelled statement (SQLSTATE 57014; a statement_timeout, the project's or the server's) what sets the
    limit. The server may speak another language (lc_messages): nothing here reads its text."""
    import psycopg

    primary = getattr(getattr(error, "diag", None), "message_primary", None) or " ".join(str(error).split())
    if isinstance(error, psycopg.errors.QueryCanceled):
        primary += f" ({STATEMENT_TIMEOUT_HINT})"
    return primary


class WarehouseError(Exception):
    """Base class of every warehouse problem a user can fix (unreachable, not provisioned, no privileges, a full disk)."""


class WarehouseConfigError(WarehouseError, ValueError):
    """The configuration (DATABASE_URL, PG* or WAREHOUSE_* variables) is malformed; the message names the setting."""


class ConfigFileError(WarehouseConfigError):
    """The ``.env`` file cannot be read (not UTF-8, a line that is not NAME=value); the message names file and line."""


class WarehouseUnreachable(WarehouseError, ConnectionError):
    """No connection could be opened to the configured PostgreSQL (also a ConnectionError, as it always was)."""


class ProvisioningError(WarehouseError):
    """The connected user may not create the project's roles or schemas, or a component login is unsafe."""


class WarehouseNotProvisioned(WarehouseError):
    """The roles, schemas or tables a step needs do not exist yet: an earlier step has not run."""

    @classmethod
    def missing_role(cls, role: str, where: str) -> WarehouseNotProvisioned:
        return cls(
            f"the warehouse {where} has no role {role!r} yet (nothing was provisioned): {NOT_BUILT_ADVICE}, "
            "or have an administrator run `python -m warehouse_db provision`"
        )

    @classmethod
    def missing_relation(cls, relation: str, where: str) -> WarehouseNotProvisioned:
        return cls(f"{relation} does not exist yet in {where}: {NOT_BUILT_ADVICE}")
