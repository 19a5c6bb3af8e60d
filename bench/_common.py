"""Helpers shared by the benchmarks: a scratch database in the embedded cluster and a stopwatch."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from warehouse_db import embedded  # noqa: E402
from warehouse_db.settings import ConnectionSettings  # noqa: E402


@contextmanager
def scratch_database(prefix: str) -> Iterator[ConnectionSettings]:
    """A new database in the embedded cluster, dropped afterwards."""
    cluster = embedded.start()
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = cluster.with_database("postgres").connect_kwargs()
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield cluster.with_database(name)
    finally:
        with psycopg.connect(**admin, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def best_of(repeats: int, run: Callable[[], None], reset: Callable[[], None]) -> float:
    """Fastest wall time of ``repeats`` runs, calling ``reset`` before each."""
    times = []
    for _ in range(repeats):
        reset()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)
