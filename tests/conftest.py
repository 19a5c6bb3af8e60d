"""Shared fixtures: every test that needs PostgreSQL gets a database of its own in the embedded cluster."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from ingest.landing import ensure_landing_tables
from warehouse_db import connect, embedded
from warehouse_db.provision import provision
from warehouse_db.settings import ConnectionSettings


@pytest.fixture(scope="session")
def embedded_cluster() -> ConnectionSettings:
    """The repository's embedded warehouse, started if needed (tests only add and drop databases in it)."""
    return embedded.start()


def create_database(cluster: ConnectionSettings, prefix: str = "test") -> ConnectionSettings:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(**cluster.with_database("postgres").connect_kwargs(), autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return cluster.with_database(name)


def drop_database(settings: ConnectionSettings) -> None:
    with psycopg.connect(**settings.with_database("postgres").connect_kwargs(), autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(settings.dbname)))


@pytest.fixture
def warehouse(embedded_cluster: ConnectionSettings) -> Iterator[ConnectionSettings]:
    """A fresh, provisioned database with the raw landing tables; dropped afterwards."""
    settings = create_database(embedded_cluster)
    with connect(settings) as conn:
        provision(conn)
        ensure_landing_tables(conn)
    yield settings
    drop_database(settings)
