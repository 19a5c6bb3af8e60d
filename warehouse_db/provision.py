"""Apply the warehouse's roles, schemas and privileges (``provision.sql``) to the connected database."""

from __future__ import annotations

from pathlib import Path

import psycopg

from warehouse_db.errors import ProvisioningError

__all__ = ["ProvisioningError", "provision"]

PROVISION_SQL = Path(__file__).with_name("provision.sql")


def provision(conn: psycopg.Connection) -> None:
    """Create the roles loader/transformer/trainer/analyst and the raw and ml schemas, idempotently.

    Runs in its own transaction. Concurrent first runs may race on CREATE ROLE; a transaction-level
    advisory lock makes them take turns.
    """
    try:
        with conn.transaction():
            conn.execute("select pg_advisory_xact_lock(hashtext('warehouse_db.provision'))")
            conn.execute(PROVISION_SQL.read_text(encoding="utf-8"))
    except psycopg.errors.InsufficientPrivilege as error:
        user = conn.info.user
        raise ProvisioningError(
            f"PostgreSQL user {user!r} may not create the warehouse roles and schemas ({error}). "
            "Grant it CREATEROLE and ownership of the database, or have an administrator run "
            "`python -m warehouse_db provision` once."
        ) from None
