"""``python -m warehouse_db up|down|status|psql|env|provision``: what the Makefile's db targets run."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys

from warehouse_db import embedded
from warehouse_db.connection import connect, resolve_settings
from warehouse_db.provision import ProvisioningError, provision
from warehouse_db.settings import REPO_ROOT, ConnectionSettings, read_config, uses_external_server

PASSFILE = REPO_ROOT / ".warehouse" / "pgpass"
"""Where ``env`` puts the password for shells (git-ignored with the rest of .warehouse/, mode 0600)."""


def shell_env(settings: ConnectionSettings) -> dict[str, str]:
    """PG* variables for a shell, without the password: it goes to a private passfile (PGPASSFILE) instead.

    The output of ``env`` lands on terminals and in shell history; a password must not. libpq (psql, dbt's
    psycopg2) reads the password from the file named by PGPASSFILE when none is given.
    """
    env = settings.libpq_env()
    password = env.pop("PGPASSWORD", None)
    if password:
        PASSFILE.parent.mkdir(parents=True, exist_ok=True)
        fields = [settings.port or 5432, settings.dbname or "*", settings.user or "*", password]
        escaped = [str(field).replace("\\", "\\\\").replace(":", "\\:") for field in fields]
        fd = os.open(PASSFILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as passfile:
            passfile.write(":".join(["*", *escaped]) + "\n")
        os.chmod(PASSFILE, 0o600)
        env["PGPASSFILE"] = str(PASSFILE)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warehouse_db", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the embedded warehouse (if no external server is configured) and provision it")
    sub.add_parser("down", help="stop the embedded warehouse")
    sub.add_parser("status", help="say which server is configured and whether it answers")
    sub.add_parser("provision", help="create the roles and schemas (idempotent)")
    sub.add_parser(
        "env",
        help='print `export PG...` lines for dbt/psql in this shell: eval "$(python -m warehouse_db env)" '
        "(a password goes to .warehouse/pgpass, never to the terminal)",
    )
    psql = sub.add_parser("psql", help="open psql on the warehouse (extra arguments go to psql)")
    psql.add_argument("psql_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.command == "down":
        stopped = embedded.stop()
        print("embedded warehouse stopped" if stopped else "embedded warehouse was not running")
        return 0

    settings = resolve_settings()
    if args.command == "env":
        for name, value in shell_env(settings).items():
            print(f"export {name}={shlex.quote(value)}")
        return 0
    if args.command == "psql":
        env = {**os.environ, **settings.libpq_env()}
        # The bundled client matches the embedded server (Debian's psql 15 cannot \l on PostgreSQL 18).
        psql_path = embedded.client_bin_dir() / "psql"
        os.execve(psql_path, [str(psql_path), *args.psql_args], env)
    try:
        with connect(settings) as conn:
            version = conn.execute("show server_version").fetchone()[0]
            if args.command in ("up", "provision"):
                provision(conn)
    except (ConnectionError, ProvisioningError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    where = "external server (DATABASE_URL / PG* variables)" if uses_external_server(read_config()) else "embedded"
    print(f"warehouse ready: {settings.describe()} [{where}], PostgreSQL {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
