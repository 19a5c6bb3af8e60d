"""What can go wrong with the warehouse that a user can cause or fix: every such failure is a WarehouseError.

Command-line entry points catch :class:`WarehouseError` and print its message as one line (exit status 4 in
every CLI); the message says what happened and what to do, and never contains a password or any part of one.
"""

from __future__ import annotations

NOT_BUILT_ADVICE = "run `make ingest` and then the dbt build (`make dbt-build`) first"
"""What a user does about a warehouse that has nothing in it yet."""


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
