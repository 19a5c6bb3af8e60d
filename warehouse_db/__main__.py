"""``python -m warehouse_db up|down|status|provision|env|psql``: what the Makefile's db targets run.

Exit status: 0 done (``status``: the warehouse is ready); 2 bad usage; 3 (``status`` only) the warehouse is not
ready: the embedded one is not running, or the server answers but is not provisioned, or refuses a login; 4 the warehouse is
misconfigured, cannot be reached, started or provisioned, the embedded one belongs to another OS user (a command run
with sudo in a user's clone), or (``up``) a seed file cannot be read, is not UTF-8 or has a header other than its
declared columns (one line on stderr says which and what to do); 130 interrupted (Ctrl-C,
SIGTERM from kill, or SIGHUP; run it again: starting and provisioning are idempotent, and an initdb stopped halfway,
even by ``kill -9``, begins again).
``env`` that fails also prints ``(exit N)`` to stdout where it is not a terminal, so that
``eval "$(python -m warehouse_db env)"`` fails with the same status N (a ``&&`` chain and a ``set -e`` script stop).
``psql`` exits with psql's own status (4 where sslmode requires SSL and no psql is on PATH).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import shlex
import shutil
import socket
import ssl
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from command_line import (
    EXIT_USAGE,
    OneLineParser,
    locale_is_ascii,
    outlives_its_reader,
    print_bytes,
    sigterm_interrupts,
)
from warehouse_db import embedded
from warehouse_db.connection import connect, resolve_settings
from warehouse_db.errors import WarehouseError
from warehouse_db.provision import ensure_provisioned, grant_statement, missing_pieces, provision, roles_out_of_reach
from warehouse_db.schemas import COMPONENT_ROLES
from warehouse_db.seed_files import check_seed_files
from warehouse_db.settings import (
    ConnectionSettings,
    create_warehouse_dir,
    login_variables,
    read_config,
    read_passfile,
    uses_external_server,
    warehouse_dir,
)

EXIT_OK = 0
EXIT_NOT_READY = 3
"""``status`` only: the warehouse is not running or not provisioned (as ``pg_ctl status`` answers 3), so that a
script can ask before it runs a step."""
EXIT_WAREHOUSE = 4
EXIT_INTERRUPTED = 130
# libpq's sslmodes that refuse a connection without SSL (verify-*: and check the server's certificate).
SSL_REQUIRING_MODES = ("require", "verify-ca", "verify-full")

PASSFILE_NAME = "pgpass"
"""``env`` puts passwords for shells in ``<WAREHOUSE_DIR>/pgpass`` (git-ignored with the rest, mode 0600)."""


def write_passfile(path: Path, settings: ConnectionSettings, inherited: Path | None = None) -> bool:
    """A libpq password file with a line for each login that has a password, then the lines of ``inherited`` (the
    passfile libpq would otherwise read: exporting PGPASSFILE hides it); False when there is no login's line."""
    logins = [(settings.user, settings.password), *((login.user, login.password) for login in settings.logins.values())]
    lines = []
    for user, password in logins:
        if user and password:
            fields = ["*", settings.port or "*", settings.dbname or "*", user, password]
            lines.append(":".join(str(field).replace("\\", "\\\\").replace(":", "\\:") for field in fields))
    if not lines:
        return False
    # Each line once: in a shell that ran `env` before, PGPASSFILE names this very file.
    lines = list(dict.fromkeys([*lines, *_readable_passfile_lines(inherited)]))
    create_warehouse_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as passfile:  # the user's lines, byte for byte
        passfile.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)  # an existing file keeps its mode under O_CREAT
    return True


def _home_passfile() -> Path | None:
    """``~/.pgpass``; None without a home directory (no HOME and no user entry: a container's arbitrary uid)."""
    try:
        return Path.home() / ".pgpass"
    except RuntimeError:
        return None


def _readable_passfile_lines(path: Path | None) -> list[str]:
    """The lines of a passfile as libpq would read it (:func:`read_passfile`); none for ``path`` None."""
    text = read_passfile(path) if path is not None else None
    # Lines end at '\n' alone, as libpq reads them (splitlines would also cut at \f, \v or U+2028).
    return [line for line in text.split("\n") if line] if text is not None else []


def shell_env(
    settings: ConnectionSettings, passfile: Path, inherited: Path | None = None
) -> tuple[dict[str, str], list[str]]:
    """Variables to export for dbt and psql, and variables to unset, without any password.

    The output of ``env`` lands on terminals and in shell history; a password must not. libpq (psql, dbt's
    psycopg2) reads passwords from the file named by PGPASSFILE when none is given, so they go there, followed by
    the lines of ``inherited``, the passfile the shell's libpq read before (a component login's password may be
    only there: dbt's, say, beside a DATABASE_URL that holds the admin's).
    """
    env = {
        name: value
        for name, value in settings.libpq_env().items()
        if name != "PGPASSWORD" and not (name.startswith("WAREHOUSE_") and name.endswith("_PASSWORD"))
    }
    if write_passfile(passfile, settings, inherited):
        env["PGPASSFILE"] = str(passfile)
    if locale_is_ascii():  # dbt, in UTF-8 mode as our commands are (command_line.utf8_where_the_locale_is_ascii)
        env["PYTHONUTF8"] = "1"
    # PGSERVICE is resolved into the variables above; left set, its file would beat them in libpq (a component's
    # own login, say).
    return env, ["PGPASSWORD", "PGSERVICE"]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="python -m warehouse_db", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the embedded warehouse (if no external server is configured) and provision it")
    sub.add_parser("down", help="stop the embedded warehouse")
    sub.add_parser("status", help="say which server is configured, whether it answers and whether it is provisioned")
    sub.add_parser("provision", help="create the roles, schemas and per-component logins (idempotent)")
    sub.add_parser(
        "env",
        help='print `export PG...` lines for dbt/psql in this shell: eval "$(python -m warehouse_db env)" '
        "(passwords go to <WAREHOUSE_DIR>/pgpass, never to the terminal)",
    )
    sub.add_parser(
        "psql",
        help="open psql on the warehouse; `psql --as ROLE` uses that role's login and acts as the role; every "
        "other argument goes to psql unchanged (e.g. psql -c 'select 1')",
    )
    return parser


@outlives_its_reader
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["env"]:
        return _main(argv)
    status = 1  # what Python exits with after a traceback
    try:
        status = _main(argv)
    except SystemExit as usage_error:
        status = usage_error.code if isinstance(usage_error.code, int) else 1
        raise
    finally:
        if status != EXIT_OK:
            _fail_the_eval(status)
    return status


def _fail_the_eval(status: int) -> None:
    """After ``env`` failed: a statement on stdout that ends with ``status`` and does nothing else, so that
    ``eval "$(python -m warehouse_db env)"`` fails as ``env`` did. Else the shell's ``eval ""`` returned 0: ``&& dbt run``
    ran, and ``set -e`` went on, with whatever PG* variables the shell had (another server's, or none). ``(exit N)``
    ends a subshell, never the user's shell (POSIX: bash and dash are tested). On a terminal nothing is printed: the
    error line on stderr is all a person running ``env`` by hand needs."""
    try:
        if sys.stdout.isatty():
            return
        print_bytes(f"(exit {status})\n".encode())
    except (OSError, ValueError, AttributeError):  # an output that cannot be written to: nobody evals it
        pass


def _main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if argv[:1] == ["psql"]:
        # Not through argparse: psql's own options (-c, -f, -v ...) must reach psql untouched.
        return _psql(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        with sigterm_interrupts():  # kill, a timeout or a scheduler ends it as Ctrl+C does, initdb's child with it
            return _run(args.command)
    except WarehouseError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_WAREHOUSE
    except KeyboardInterrupt:
        print("error: interrupted; run it again: starting and provisioning pick up where they stopped", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(command: str) -> int:
    if command == "up":
        check_seed_files()  # before dbt seed, which would end in a traceback naming no file (seed_files.py)
    config = read_config()
    pgdata = warehouse_dir(config) / embedded.PGDATA_NAME
    if command == "down" or (command == "status" and not uses_external_server(config)):
        embedded.refuse_another_users(pgdata)  # before its files are read: they may not be this user's to read
    if command == "down":
        return _down(pgdata)
    if command == "status" and not uses_external_server(config) and not embedded.is_running(pgdata):
        # A status starts nothing: after `make db-down` it says so instead of starting the server again.
        print(
            f"embedded warehouse in {pgdata.resolve()}: not running (`make db-up` starts it, as do ingest, training and "
            "`make psql`; `dbt run` as typed does not)"
        )
        return EXIT_NOT_READY
    settings = resolve_settings()
    if command == "env":
        return _env(config, settings)
    role = _component_login(command, settings)
    if command == "up" and role is not None:
        ensure_provisioned(settings, role)
    found = _inspect(command, settings, role)
    _print_connection(config, settings, role, found)
    return _readiness(command, found)


def _down(pgdata: Path) -> int:
    # Stopping ends every session at once (pg_ctl -m fast): say which, so that an ingest or a training run that
    # then fails with "terminating connection due to administrator command" has its cause named here.
    sessions = embedded.open_sessions(pgdata)
    stopped = embedded.stop(pgdata)
    if not stopped:
        print("embedded warehouse was not running")
    elif sessions:
        count = f"{len(sessions)} open session{'s' if len(sessions) > 1 else ''}"
        print(f"embedded warehouse stopped; it ended {count}: {', '.join(sessions)}")
    else:
        print("embedded warehouse stopped")
    return EXIT_OK


def _env(config: dict[str, str], settings: ConnectionSettings) -> int:
    # The passfile libpq reads now: a URL's passfile parameter, else PGPASSFILE, else ~/.pgpass.
    inherited = settings.options.get("passfile") or config.get("PGPASSFILE") or _home_passfile()
    exports, unsets = shell_env(settings, warehouse_dir(config) / PASSFILE_NAME, inherited and Path(inherited))
    lines = [
        *(f"export {name}={shlex.quote(value)}" for name, value in exports.items()),
        f"unset {' '.join(unsets)}",
    ]
    # As bytes, as the shell and libpq take them: in the encoding of paths, whatever PYTHONIOENCODING says (an
    # ascii one spelt a socket directory under ~/café/ as caf\xe9, and eval set a PGHOST that does not exist).
    print_bytes(os.fsencode("".join(f"{line}\n" for line in lines)))
    return EXIT_OK


def _component_login(command: str, settings: ConnectionSettings) -> str | None:
    """The component role whose own login `up` and `status` check as, or None for the admin login."""
    # A machine that runs one component (say dbt) may hold only that component's login, not the admin login
    # (PGUSER or DATABASE_URL's user): `up` and `status` then check as that login, as the component itself does.
    own_login = command != "provision" and settings.user is None and not settings.embedded
    return next((role for role in COMPONENT_ROLES if role in settings.logins), None) if own_login else None


@dataclass(frozen=True)
class _Found:
    """What the server said: its version, the pieces not provisioned, the logins that may not act as their roles."""

    version: str
    server_version: int
    missing: list[str]
    out_of_reach: dict[str, list[str]]
    refused: dict[str, str]
    """The component logins configured here that the server refuses (a wrong password, say): role -> libpq's reason."""


def _inspect(command: str, settings: ConnectionSettings, role: str | None) -> _Found:
    """Connect (as ``role``'s login, else the admin's), provision on `up` and `provision`, and look."""
    with connect(settings, role=role) as conn:
        version = conn.execute("show server_version").fetchone()[0]
        server_version = conn.info.server_version
        if command in ("up", "provision") and role is None:
            provision(conn, settings.logins)
        missing = missing_pieces(conn)
        # Without PGUSER the admin login is libpq's default (the OS user's name, as in psql): the login connected.
        admin = settings if settings.user or role is not None else replace(settings, user=conn.info.user)
        out_of_reach = {} if missing else roles_out_of_reach(conn, admin)
    refused = {} if missing or out_of_reach else _refused_logins(settings, role)
    return _Found(version, server_version, missing, out_of_reach, refused)


def _refused_logins(settings: ConnectionSettings, checked_as: str | None) -> dict[str, str]:
    """The component logins configured here (WAREHOUSE_<ROLE>_USER / _PASSWORD) that cannot log in, each tried as its
    component will: the admin login's checks say only that they exist and may act as their roles, and a wrong
    password showed first as the component's own failure. The embedded warehouse's logins need no password."""
    if settings.embedded:
        return {}
    refused = {}
    for role in COMPONENT_ROLES:
        if role == checked_as or role not in settings.logins:
            continue
        try:
            with connect(settings, role=role):
                pass
        except WarehouseError as error:  # libpq's reason names the login, never its password
            refused[role] = str(error)
    return refused


def _print_connection(config: dict[str, str], settings: ConnectionSettings, role: str | None, found: _Found) -> None:
    # The embedded one describes itself ("embedded warehouse postgres@..."): only an external server says where from.
    where = " [external server (DATABASE_URL / PG* variables)]" if uses_external_server(config) else ""
    logins = ", ".join(f"{role}={settings.logins[role].user}" for role in COMPONENT_ROLES if role in settings.logins)
    # reachable, not ready: `status` on a server nobody provisioned, as a login that may not act as its roles, or
    # with a component login the server refuses
    state = "reachable" if found.missing or found.out_of_reach or found.refused else "ready"
    print(f"warehouse {state}: {settings.for_role(role).describe()}{where}, PostgreSQL {found.version}")
    print(f"logins: {logins}" if logins else "logins: one login for every role (SET ROLE)")


def _readiness(command: str, found: _Found) -> int:
    not_ready = EXIT_NOT_READY if command == "status" else EXIT_WAREHOUSE
    if found.missing:
        print(f"not provisioned yet ({', '.join(found.missing)}): run `make db-up` (python -m warehouse_db up)")
        return not_ready
    if found.out_of_reach:
        grants = "; ".join(
            grant_statement(roles, login, found.server_version) for login, roles in found.out_of_reach.items()
        )
        lacking = "; ".join(
            f"login {login} may not act as role {', '.join(roles)}" for login, roles in found.out_of_reach.items()
        )
        print(f"not ready: {lacking}: run `make db-up` with the admin login, or have an administrator run {grants}")
        return not_ready
    if found.refused:
        why = "; ".join(f"{login_variables(role)[1]} ({reason})" for role, reason in found.refused.items())
        print(f"not ready: the server refuses a component's own login: check {why}")
        return not_ready
    return EXIT_OK


def _psql(args: list[str]) -> int:
    role = None
    if args[:1] == ["--as"]:
        if len(args) < 2 or args[1] not in COMPONENT_ROLES:
            print(f"error: psql --as needs one of {', '.join(COMPONENT_ROLES)}", file=sys.stderr)
            return EXIT_USAGE
        role, args = args[1], args[2:]
    try:
        settings = resolve_settings()
    except WarehouseError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_WAREHOUSE
    # A PGPASSWORD of this shell belongs to another login than --as ROLE's; libpq_env() brings the right one.
    # PGSERVICE is resolved into libpq_env()'s variables, which its file would otherwise beat.
    env = {name: value for name, value in os.environ.items() if name not in ("PGPASSWORD", "PGSERVICE")}
    env.update(settings.for_role(role).libpq_env())
    if role:
        env["PGOPTIONS"] = " ".join(part for part in (env.get("PGOPTIONS"), f"-c role={role}") if part)
    # The bundled client matches the embedded server (Debian's psql 15 cannot \l on PostgreSQL 18), but it has no
    # SSL support: where the settings demand SSL (a hosted server's sslmode=require), the psql on PATH does it.
    psql_path = embedded.client_bin_dir() / "psql"
    sslmode = env.get("PGSSLMODE", "")
    if not settings.embedded and sslmode in SSL_REQUIRING_MODES and not embedded.client_has_ssl():
        on_path = shutil.which("psql", path=env.get("PATH"))
        if on_path is None:
            print(
                f"error: sslmode={sslmode} asks for SSL, and the bundled psql has no SSL support: install a "
                "PostgreSQL client (e.g. `apt install postgresql-client`) so that psql is on PATH, or use another "
                'SQL client with `eval "$(.venv/bin/python -m warehouse_db env)"`',
                file=sys.stderr,
            )
            return EXIT_WAREHOUSE
        psql_path = Path(on_path)
    elif (
        not settings.embedded
        and env.get("PGSSLMODE", "prefer") in ("prefer", "allow")
        and not embedded.client_has_ssl()
    ):
        # Unset is libpq's default, prefer; an empty PGSSLMODE is no mode at all (psql: invalid sslmode value "").
        try:  # up to SSL_PROBE_SECONDS asking a server that does not answer
            note = _unencrypted_session_note(env, env.get("PGSSLMODE", "prefer"), settings.connect_timeout)
        except KeyboardInterrupt:
            print("error: interrupted before psql started", file=sys.stderr)
            return EXIT_INTERRUPTED
        if note:
            print(note, file=sys.stderr)
    os.execve(psql_path, [str(psql_path), *args], env)


# libpq's SSLRequest: length 8, then the code 1234.5679 (80877103); the server answers S (it offers SSL) or N.
SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")
SSL_PROBE_SECONDS = 5


def _unencrypted_session_note(env: dict[str, str], sslmode: str, connect_timeout: int) -> str | None:
    """One line for the bundled psql (no SSL support) about to connect under ``sslmode`` prefer or allow: the session
    will not be encrypted, where a libpq with SSL would have encrypted it against a server that offers SSL (prefer).
    None for a Unix socket or a server on this machine (a loopback address, whatever the host's name), and when
    nothing answers (psql then says why). The server is asked as libpq asks it, and never sees a login: it answers
    an SSLRequest with S or N, and after an S the TLS handshake is completed and shut down cleanly, so that its log
    holds no 'could not accept SSL connection'."""
    host = env.get("PGHOST") or ""
    if not host or host.startswith(("/", "@")) or "," in host:  # a socket, or a list of hosts libpq tries in turn
        return None
    port = env.get("PGPORT") or "5432"
    try:
        with socket.create_connection((host, int(port)), timeout=min(connect_timeout or 10, SSL_PROBE_SECONDS)) as sock:
            peer = ipaddress.ip_address(sock.getpeername()[0].split("%")[0])
            if peer.is_loopback or (isinstance(peer, ipaddress.IPv6Address) and (peer.ipv4_mapped or peer).is_loopback):
                return None
            sock.sendall(SSL_REQUEST)
            answer = sock.recv(1)
            if answer not in (b"S", b"N"):  # not a PostgreSQL server as far as this can tell: psql will say
                return None
            offers_ssl = answer == b"S"
            if offers_ssl:
                _shut_down_tls(sock)
    except (OSError, ValueError):
        return None
    where = f"{host}:{port}"
    if not offers_ssl:
        return f"note: this psql session to {where} is not encrypted: the server offers no SSL"
    return (
        f"note: this psql session to {where} is not encrypted, though the server offers SSL: the bundled psql has no "
        f"SSL support (sslmode={sslmode}); PGSSLMODE=require runs the psql on PATH, which encrypts it"
    )


def _shut_down_tls(sock: socket.socket) -> None:
    """Complete the TLS handshake the server began with its S, then end it with a close_notify (nothing is sent
    under it and no certificate is trusted: the session psql then opens is a connection of its own)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with contextlib.suppress(OSError, ValueError), context.wrap_socket(sock) as tls:
        tls.unwrap()


if __name__ == "__main__":
    sys.exit(main())
