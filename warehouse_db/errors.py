"""What can go wrong with the warehouse that a user can cause or fix: every such failure is a WarehouseError.

Command-line entry points catch :class:`WarehouseError` and print its message as one line (exit status 4 in
every CLI); the message says what happened and what to do, and never contains a password.
"""

from __future__ import annotations


class WarehouseError(Exception):
    """Base class of every warehouse problem a user can fix (unreachable, not provisioned, no privileges)."""


class WarehouseUnreachable(WarehouseError, ConnectionError):
    """No connection could be opened to the configured PostgreSQL (also a ConnectionError, as it always was)."""


class ProvisioningError(WarehouseError):
    """The connected user may not create the project's roles or schemas."""
