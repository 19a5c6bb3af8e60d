"""The warehouse connection: which PostgreSQL, as which logins, and the project's roles and schemas."""

# ruff: noqa: E402 - the imports follow interrupts_in_one_line(), so that a Ctrl+C while psycopg loads is one line

from command_line import interrupts_in_one_line, utf8_where_the_locale_is_ascii

utf8_where_the_locale_is_ascii()  # before anything reads a path (LC_ALL=C PYTHONUTF8=0)
interrupts_in_one_line()  # first: `python -m warehouse_db` imports psycopg next

from warehouse_db.connection import connect, resolve_settings
from warehouse_db.errors import WarehouseError
from warehouse_db.provision import ensure_provisioned
from warehouse_db.settings import ConnectionSettings

__all__ = ["ConnectionSettings", "WarehouseError", "connect", "ensure_provisioned", "resolve_settings"]
