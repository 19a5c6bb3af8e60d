"""Open connections to the warehouse. Every other module asks here instead of building its own."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import psycopg
from psycopg import sql

from warehouse_db import embedded
from warehouse_db.errors import WarehouseUnreachable
from warehouse_db.settings import (
    DEFAULT_DOTENV,
    ConnectionSettings,
    external_settings,
    read_config,
    uses_external_server,
)

logger = logging.getLogger(__name__)


def resolve_settings(
    env: Mapping[str, str] | None = None, dotenv_path: Path | None = DEFAULT_DOTENV
) -> ConnectionSettings:
    """Settings of the configured server; starts the embedded warehouse when no server is configured."""
    config = read_config(env, dotenv_path)
    if uses_external_server(config):
        return external_settings(config)
    return embedded.start()


def connect(
    settings: ConnectionSettings | None = None,
    *,
    role: str | None = None,
    autocommit: bool = False,
) -> psycopg.Connection:
    """A psycopg 3 connection with UTF-8 client encoding, optionally acting as ``role`` (SET ROLE).

    Acting as a role means the session has exactly that role's privileges: the training job reads
    the marts as ``trainer`` and therefore cannot see raw data even by mistake.
    """
    settings = settings or resolve_settings()
    try:
        conn = psycopg.connect(**settings.connect_kwargs(), autocommit=autocommit)
    except psycopg.OperationalError as error:
        # libpq's message never includes the password; add where we tried, also without it.
        raise WarehouseUnreachable(f"cannot connect to {settings.describe()}: {error}".strip()) from None
    if role is not None:
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
        if not autocommit:
            conn.commit()
    return conn
