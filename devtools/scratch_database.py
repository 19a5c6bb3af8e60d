"""Throw-away databases in a PostgreSQL cluster (the embedded one by default), for tests and benchmarks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from warehouse_db import connect, embedded
from warehouse_db.provision import provision
from warehouse_db.settings import ConnectionSettings


def _maintenance(cluster: ConnectionSettings) -> psycopg.Connection:
    return psycopg.connect(**cluster.with_database("postgres").connect_kwargs(), autocommit=True)


def create_database(
    cluster: ConnectionSettings, prefix: str = "scratch", template: str | None = None, *, name: str | None = None
) -> ConnectionSettings:
    """A new, empty UTF-8 database named ``name`` or ``<prefix>_<random>`` (or a copy of ``template``, which must be
    idle)."""
    name = name or f"{prefix}_{uuid.uuid4().hex[:10]}"
    statement = sql.SQL("create database {} encoding 'UTF8'").format(sql.Identifier(name))
    if template:
        statement = sql.SQL("create database {} template {}").format(sql.Identifier(name), sql.Identifier(template))
    with _maintenance(cluster) as conn:
        conn.execute(statement)
    return cluster.with_database(name)


def clone_database(
    cluster: ConnectionSettings, template: str, prefix: str = "clone", *, name: str | None = None
) -> ConnectionSettings:
    """A copy of ``template`` (named like :func:`create_database`'s), provisioned again (database-level grants are
    not copied by CREATE DATABASE)."""
    settings = create_database(cluster, prefix, template=template, name=name)
    with connect(settings) as conn:
        provision(conn)
    return settings


def drop_database(settings: ConnectionSettings) -> None:
    """Drop the database, closing whatever connections are still open on it."""
    with _maintenance(settings) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(settings.dbname)))


@contextmanager
def scratch_database(prefix: str, cluster: ConnectionSettings | None = None) -> Iterator[ConnectionSettings]:
    """A new database for the duration of the ``with`` block (in the embedded cluster unless one is given)."""
    settings = create_database(cluster or embedded.start(), prefix)
    try:
        yield settings
    finally:
        drop_database(settings)
