"""The warehouse connection: which PostgreSQL, as which logins, and the project's roles and schemas."""

from warehouse_db.connection import connect, resolve_settings
from warehouse_db.errors import WarehouseError
from warehouse_db.provision import ensure_provisioned
from warehouse_db.settings import ConnectionSettings

__all__ = ["ConnectionSettings", "WarehouseError", "connect", "ensure_provisioned", "resolve_settings"]
