"""Which PostgreSQL the project talks to, decided in one place.

Precedence (the first that applies wins):
1. ``DATABASE_URL`` (e.g. a hosted PostgreSQL's connection URL),
2. any of the standard libpq variables ``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD``, ``PGDATABASE``,
3. otherwise the embedded warehouse under ``.warehouse/`` (see :mod:`warehouse_db.embedded`).

Each is read from the process environment first and from ``.env`` second, so an exported variable
always beats the file. Nothing here connects or starts a server; it only decides.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from dotenv import dotenv_values

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DOTENV = REPO_ROOT / ".env"
EMBEDDED_DATABASE = "warehouse"
EMBEDDED_USER = "postgres"
LIBPQ_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")


@dataclass(frozen=True)
class ConnectionSettings:
    """Everything needed to open a connection; ``host`` may be a Unix-socket directory."""

    host: str | None
    port: int | None
    user: str | None
    password: str | None = field(repr=False)
    dbname: str | None
    embedded: bool
    options: Mapping[str, str] = field(default_factory=dict)
    """Extra libpq parameters from a URL's query string (e.g. sslmode)."""

    def connect_kwargs(self) -> dict[str, str | int]:
        """Keyword arguments for ``psycopg.connect`` / ``psycopg2.connect``; UTF-8 is forced."""
        kwargs: dict[str, str | int] = {
            key: value
            for key, value in (
                ("host", self.host),
                ("port", self.port),
                ("user", self.user),
                ("password", self.password),
                ("dbname", self.dbname),
            )
            if value not in (None, "")
        }
        kwargs.update(self.options)
        # The prototype died on a UnicodeDecodeError: never let the server's locale choose the encoding.
        kwargs["client_encoding"] = "UTF8"
        return kwargs

    def libpq_env(self) -> dict[str, str]:
        """The standard PG* variables for a child process (dbt, psql) that should reach the same server."""
        env = {
            name: str(value)
            for name, value in (
                ("PGHOST", self.host),
                ("PGPORT", self.port),
                ("PGUSER", self.user),
                ("PGPASSWORD", self.password),
                ("PGDATABASE", self.dbname),
            )
            if value not in (None, "")
        }
        if "sslmode" in self.options:
            env["PGSSLMODE"] = self.options["sslmode"]
        env["PGCLIENTENCODING"] = "UTF8"
        return env

    def sqlalchemy_url(self) -> str:
        """A SQLAlchemy URL (psycopg 3 driver), for Great Expectations."""
        from sqlalchemy.engine import URL

        query = dict(self.options)
        if self.host and self.host.startswith("/"):
            # A socket directory travels as the `host` query parameter.
            query["host"] = self.host
            host = None
        else:
            host = self.host
        url = URL.create(
            "postgresql+psycopg",
            username=self.user,
            password=self.password or None,
            host=host,
            port=self.port,
            database=self.dbname,
            query=query,
        )
        return url.render_as_string(hide_password=False)

    def describe(self) -> str:
        """A human description that is safe to log: it never contains the password."""
        where = self.host or "localhost"
        if self.port and not (self.host or "").startswith("/"):
            where = f"{where}:{self.port}"
        kind = "embedded warehouse" if self.embedded else "PostgreSQL"
        return f"{kind} {self.user or '(default user)'}@{where}/{self.dbname or '(default db)'}"

    def with_database(self, dbname: str) -> ConnectionSettings:
        return replace(self, dbname=dbname)


def read_config(env: Mapping[str, str] | None = None, dotenv_path: Path | None = DEFAULT_DOTENV) -> dict[str, str]:
    """The effective configuration: ``.env`` values overlaid by the process environment."""
    values: dict[str, str] = {}
    if dotenv_path is not None and dotenv_path.exists():
        values.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    values.update(os.environ if env is None else env)
    return values


def uses_external_server(config: Mapping[str, str]) -> bool:
    return bool(config.get("DATABASE_URL")) or any(config.get(name) for name in LIBPQ_VARIABLES)


def settings_from_url(url: str) -> ConnectionSettings:
    """Parse ``postgresql://user:pass@host:port/db?sslmode=require`` (also ``postgres://``)."""
    parts = urlsplit(url)
    if parts.scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise ValueError(f"DATABASE_URL must start with postgresql:// (got scheme {parts.scheme!r})")
    options = dict(parse_qsl(parts.query))
    host = options.pop("host", None) or (unquote(parts.hostname) if parts.hostname else None)
    return ConnectionSettings(
        host=host,
        port=parts.port,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        dbname=unquote(parts.path.lstrip("/")) or None,
        embedded=False,
        options=options,
    )


def external_settings(config: Mapping[str, str]) -> ConnectionSettings:
    """Settings for a server chosen by DATABASE_URL or the PG* variables."""
    if config.get("DATABASE_URL"):
        return settings_from_url(config["DATABASE_URL"])
    port = config.get("PGPORT")
    return ConnectionSettings(
        host=config.get("PGHOST") or None,
        port=int(port) if port else None,
        user=config.get("PGUSER") or None,
        password=config.get("PGPASSWORD") or None,
        dbname=config.get("PGDATABASE") or None,
        embedded=False,
    )
