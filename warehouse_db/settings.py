"""Which PostgreSQL the project talks to, as which logins, with which timeouts: decided in one place.

Server (the first that applies wins):
1. ``DATABASE_URL`` (e.g. a hosted PostgreSQL's connection URL),
2. any of the standard libpq variables ``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD``, ``PGDATABASE``, or
   ``PGSERVICE`` (a libpq service file's section, which beats those variables as in libpq),
3. otherwise the embedded warehouse under ``WAREHOUSE_DIR`` (default ``.warehouse/``; see
   :mod:`warehouse_db.embedded`), which creates and uses its own per-component logins.

Logins: the URL's or PGUSER's login is the *admin* login (it provisions, and it is the single login of a hosted
server that offers one). ``WAREHOUSE_<ROLE>_USER`` / ``WAREHOUSE_<ROLE>_PASSWORD`` (ROLE = LOADER, TRANSFORMER,
TRAINER, ANALYST) name a component's own login, a member of that role only; a component with such a login
connects with it, so that its boundary holds even against a ``RESET ROLE``.

Timeouts: ``PGCONNECT_TIMEOUT`` (seconds, default 10; a URL's ``connect_timeout`` wins) and
``WAREHOUSE_STATEMENT_TIMEOUT`` (seconds one statement of ingest or training may run, default 1800, 0 = none).

Each is read from the process environment first and from ``.env`` second, so an exported variable always beats
the file. Nothing here connects or starts a server; it only decides. No error message here ever quotes any
part of ``DATABASE_URL`` or of a password.
"""

from __future__ import annotations

import functools
import io
import os
import stat
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote

import psycopg
from dotenv import dotenv_values
from dotenv.parser import parse_stream

from command_line import path_exists, read_user_file, user_path
from warehouse_db.errors import ConfigFileError, WarehouseConfigError
from warehouse_db.schemas import COMPONENT_ROLES

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DOTENV = REPO_ROOT / ".env"
DEFAULT_WAREHOUSE_DIR = REPO_ROOT / ".warehouse"
EMBEDDED_DATABASE = "warehouse"
EMBEDDED_USER = "postgres"
LIBPQ_VARIABLES = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")
DEFAULT_CONNECT_TIMEOUT = 10
"""Seconds to wait for a server to answer a new connection (dbt's profile uses the same default)."""
DEFAULT_STATEMENT_TIMEOUT = 1800
"""Seconds one SQL statement of ingest or training may run, lock waits included (0: no limit)."""

LIBPQ_OPTION_VARIABLES = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "passfile": "PGPASSFILE",
    "application_name": "PGAPPNAME",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "channel_binding": "PGCHANNELBINDING",
    "gssencmode": "PGGSSENCMODE",
    "options": "PGOPTIONS",
}
"""libpq connection parameters that travel from a URL or .env to child processes, with their standard variables."""

SESSION_SETTINGS = {"DateStyle": "ISO", "IntervalStyle": "postgres", "extra_float_digits": "3", "TimeZone": "UTC"}
"""What the project's own connections set at connection start, whatever the server, database or login says: psycopg
reads dates and times only in the ISO style (DateStyle 'German' ended ingest in a NotImplementedError), every float8
is read with all its digits only from extra_float_digits 1 up (0 or less rounds them, and training then learned from
other numbers than the mart holds), and timestamps come back in UTC (a run's report showed when dbt built the mart in
the server's zone). Session dates never depend on TimeZone: the SQL names the exchange's zone wherever it turns a
timestamp into a date."""


def application_name() -> str:
    """What this process's connections are called in ``pg_stat_activity.application_name`` unless the user names them
    (``PGAPPNAME``, a URL's ``application_name``): the command as typed and the process id, e.g. ``python -m
    training.walk_forward (pid 4242)``, so that a session that blocks a dbt rebuild, or that ``make db-down`` ended,
    says which command it was. The module or script only, never an argument (an argument may hold a password)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        command = f"python -m {spec.name.removesuffix('.__main__')}"
    else:  # a script (pytest, bench/...), or python -c, or an interactive python
        script = sys.argv[0] if sys.argv else ""
        command = f"python {script}".rstrip() if script in ("", "-c") else Path(script).name
    return f"{command} (pid {os.getpid()})"


def login_variables(role: str) -> tuple[str, str]:
    """The variables that name a component's own login: ``WAREHOUSE_<ROLE>_USER``, ``WAREHOUSE_<ROLE>_PASSWORD``."""
    return f"WAREHOUSE_{role.upper()}_USER", f"WAREHOUSE_{role.upper()}_PASSWORD"


@dataclass(frozen=True)
class Login:
    """A login (a PostgreSQL role with LOGIN) and its password; None means libpq finds it (passfile, peer)."""

    user: str
    password: str | None = field(default=None, repr=False)


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
    """Extra libpq parameters (a URL's query string, PGSSLMODE and the like from .env)."""
    logins: Mapping[str, Login] = field(default_factory=dict)
    """Per-component logins by role (loader, transformer, trainer, analyst); roles without one use ``user``."""
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT
    statement_timeout: int = DEFAULT_STATEMENT_TIMEOUT

    def for_role(self, role: str | None) -> ConnectionSettings:
        """These settings with the role's own login as the login, when one is configured."""
        login = self.logins.get(role) if role else None
        return self if login is None else replace(self, user=login.user, password=login.password)

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
        # Named for the command (libpq's fallback: PGAPPNAME or an application_name option, the user's, wins).
        kwargs.setdefault("fallback_application_name", application_name())
        # A server that accepts TCP and never answers must not hang us; one that dies mid-query is noticed by
        # TCP keepalives within about a minute (libpq ignores these on Unix sockets).
        kwargs["connect_timeout"] = str(self.connect_timeout)
        kwargs.setdefault("keepalives_idle", "30")
        kwargs.setdefault("keepalives_interval", "10")
        kwargs.setdefault("keepalives_count", "3")
        # The prototype died on a UnicodeDecodeError: never let the server's locale choose the encoding.
        kwargs["client_encoding"] = "UTF8"
        # SESSION_SETTINGS are not sent here as `options`: connect() sets them once connected (where they also beat
        # PGTZ and PGDATESTYLE), the user's PGOPTIONS keeps working (an `options` here would replace it), and a
        # connection pooler that refuses the `options` start-up parameter (PgBouncer's default) is still reachable.
        return kwargs

    def session_options(self) -> str:
        """libpq's ``options`` for a connection the project does not open through connect() (Great Expectations'
        SQLAlchemy engine): the user's own (a URL's or .env's ``options``, else PGOPTIONS), then
        :data:`SESSION_SETTINGS`, which therefore beat the user's and the server's (a setting sent at connection start
        beats ``ALTER ROLE``/``ALTER DATABASE ... SET`` and postgresql.conf)."""
        ours = " ".join(f"-c {name}={value}" for name, value in SESSION_SETTINGS.items())
        users = self.users_options()
        return f"{users} {ours}" if users.strip() else ours

    def users_options(self) -> str:
        """The user's own libpq ``options`` that connections send at connection start: a URL's, a service's or
        .env's ``options``/``PGOPTIONS``, else (as libpq reads it) the environment's ``PGOPTIONS``."""
        return self.options.get("options") or os.environ.get("PGOPTIONS", "")

    def libpq_env(self) -> dict[str, str]:
        """Variables for a child process (dbt, psql, another of our commands) that should reach the same server
        with the same logins: the standard PG* variables plus the WAREHOUSE_* login and timeout variables."""
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
        for option, name in LIBPQ_OPTION_VARIABLES.items():
            if self.options.get(option):
                env[name] = self.options[option]
        env["PGCONNECT_TIMEOUT"] = str(self.connect_timeout)
        env["PGCLIENTENCODING"] = "UTF8"
        env["WAREHOUSE_STATEMENT_TIMEOUT"] = str(self.statement_timeout)
        for role, login in self.logins.items():
            user_variable, password_variable = login_variables(role)
            env[user_variable] = login.user
            if login.password:
                env[password_variable] = login.password
        return env

    def sqlalchemy_url(self, role: str | None = None) -> str:
        """A SQLAlchemy URL (psycopg 3 driver) for ``role``'s login, for Great Expectations."""
        from sqlalchemy.engine import URL

        settings = self.for_role(role)
        query = {
            "fallback_application_name": application_name(),  # as connect_kwargs()
            **settings.options,
            "connect_timeout": str(settings.connect_timeout),
            "client_encoding": "UTF8",  # as connect_kwargs(): PGCLIENTENCODING=LATIN1 would be libpq's choice
            "options": settings.session_options(),
        }
        if settings.host and settings.host.startswith("/"):
            # A socket directory travels as the `host` query parameter.
            query["host"] = settings.host
            host = None
        else:
            host = settings.host
        url = URL.create(
            "postgresql+psycopg",
            username=settings.user,
            password=settings.password or None,
            host=host,
            port=settings.port,
            database=settings.dbname,
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
    """The effective configuration: ``.env`` values overlaid by the process environment.

    Raises ConfigFileError, naming the file and line, for a ``.env`` that is not UTF-8 or holds a line that is not
    ``NAME=value`` (python-dotenv would only warn and skip it, so a typo would silently fall back to a default).
    """
    values: dict[str, str] = {}
    if dotenv_path is not None and dotenv_path.exists():
        values.update(_read_dotenv(dotenv_path))
    values.update(os.environ if env is None else env)
    return values


def _read_dotenv(path: Path) -> dict[str, str]:
    try:
        data = read_user_file(path)
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ConfigFileError(f"{path}:{line}: not UTF-8 (byte 0x{data[error.start]:02x})") from None
    except OSError as error:
        raise ConfigFileError(f"{path}: cannot read it ({error.strerror})") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise ConfigFileError(f"{path}:{binding.original.line}: not a NAME=value line (a comment starts with #)")
    return {k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None}


def uses_external_server(config: Mapping[str, str]) -> bool:
    return bool(config.get("DATABASE_URL")) or any(config.get(name) for name in (*LIBPQ_VARIABLES, "PGSERVICE"))


SYSTEM_SERVICE_DIR = Path("/etc/postgresql-common")
"""Where libpq looks for the system-wide ``pg_service.conf`` when ``PGSYSCONFDIR`` is unset: the directory it was built
with, this one for the libpq that psycopg bundles (the project's connections) and for Debian's and Ubuntu's psql."""


def service_parameters(config: Mapping[str, str]) -> dict[str, str]:
    """The parameters of libpq's connection service ``PGSERVICE``, found and read as libpq (18) does, so that the
    project, psql and libpq itself agree: ``PGSERVICEFILE`` (which must exist; default ``~/.pg_service.conf``), and
    if the service is not there ``$PGSYSCONFDIR/pg_service.conf`` (default :data:`SYSTEM_SERVICE_DIR`). Empty without
    PGSERVICE.

    Errors name the file and line, never a value (a service may hold a password)."""
    name = config.get("PGSERVICE")
    if not name:
        return {}
    try:
        user_file = user_path(config.get("PGSERVICEFILE") or "~/.pg_service.conf")
        system_file = user_path(config.get("PGSYSCONFDIR") or SYSTEM_SERVICE_DIR) / "pg_service.conf"
    except ValueError as error:  # ~user of no user here, or no HOME
        raise WarehouseConfigError(f"PGSERVICE={name}: {error}") from None
    if config.get("PGSERVICEFILE") and not path_exists(
        user_file
    ):  # libpq does not look further for a file it was given
        raise WarehouseConfigError(f"PGSERVICE={name}: the service file {user_file} (PGSERVICEFILE) does not exist")
    for path in (user_file, system_file):
        try:
            text = read_user_file(path).decode("utf-8")  # a device such as /dev/zero is refused: it never ends
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8"
            raise WarehouseConfigError(f"PGSERVICE={name}: cannot read {path} ({reason})") from None
        parameters = _service_in_file(path, text, name)
        if parameters is not None:
            return parameters
    raise WarehouseConfigError(f"PGSERVICE={name}: no service [{name}] in {user_file} or {system_file}")


def _service_in_file(path: Path, text: str, name: str) -> dict[str, str] | None:
    """Service ``name``'s parameters in this service file, None if it has no such section. As libpq reads it: each
    line stripped of surrounding white space; # comments; from the line ``[name]`` on to the next section, each line
    ``keyword=value`` (nothing stripped around ``=``), a keyword given twice keeps its first value; lines outside that
    section are not looked at."""
    parameters: dict[str, str] | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.strip(" \t\n\v\f\r")
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            if parameters is not None:
                break  # the end of the service's section
            if line[1:].startswith(f"{name}]"):
                parameters = {}
            continue
        if parameters is None:
            continue
        keyword, equals, value = line.partition("=")
        if not equals or keyword in ("service", "servicefile") or keyword not in _libpq_keywords():
            raise WarehouseConfigError(
                f"{path}:{number}: not a line of a libpq service file's section (keyword=value, no spaces around '=', "
                "with a connection parameter libpq knows; # comments)"
            )
        parameters.setdefault(keyword, value)
    return parameters


def warehouse_dir(config: Mapping[str, str]) -> Path:
    """Where the embedded warehouse keeps its data (``WAREHOUSE_DIR``, ``~`` expanded: .env has no shell; relative
    paths start at the repository)."""
    configured = config.get("WAREHOUSE_DIR")
    if not configured:
        return DEFAULT_WAREHOUSE_DIR
    if not configured.strip():  # " " is a folder named by a space: a warehouse nobody meant, which pg_ctl cannot start
        raise WarehouseConfigError("WAREHOUSE_DIR is blank: give a folder, or leave it unset for .warehouse/")
    try:
        path = REPO_ROOT / user_path(configured)
    except ValueError as error:
        raise WarehouseConfigError(f"WAREHOUSE_DIR={error}") from None
    try:
        path.exists()  # a name the file system cannot hold raises here, not in `status` or `down` as a traceback
    except OSError as error:
        raise WarehouseConfigError(f"WAREHOUSE_DIR is no usable path ({error.strerror}): give a shorter one") from None
    return path


def create_warehouse_dir(path: Path) -> None:
    """Create ``path`` (the WAREHOUSE_DIR) if it is missing, with a ``.gitignore`` of ``*`` in it: what it holds (a
    database, a password file) must stay out of git wherever it is, not only at the ``.warehouse/`` the repository's
    .gitignore names. A directory that already exists is left as it is."""
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        if not path.is_dir():
            raise WarehouseConfigError(f"the warehouse directory {path} (WAREHOUSE_DIR) is a file") from None
        return
    except OSError as error:  # a file where a parent directory should be, a read-only file system, ...
        raise WarehouseConfigError(
            f"cannot create the warehouse directory {path} (WAREHOUSE_DIR): {error.strerror}: {error.filename}"
        ) from None
    (path / ".gitignore").write_text(
        "# the warehouse's data and password file: never commit them\n*\n", encoding="utf-8"
    )


def _seconds(config: Mapping[str, str], name: str, default: int) -> int:
    text = (config.get(name) or "").strip()
    if not text:
        return default
    if not text.isdigit():
        raise WarehouseConfigError(f"{name} must be a whole number of seconds (0: no limit), got {text!r}")
    return int(text)


def _port(text: str, setting: str, *, quote: bool) -> int:
    text = text.strip()
    if text.isdigit() and 1 <= int(text) <= 65535:
        return int(text)
    got = f", got {text!r}" if quote else ""
    raise WarehouseConfigError(f"{setting}: the port must be a number from 1 to 65535{got}")


def component_logins(config: Mapping[str, str]) -> dict[str, Login]:
    """The configured per-component logins (``WAREHOUSE_<ROLE>_USER`` and ``_PASSWORD``), by role."""
    logins: dict[str, Login] = {}
    for role in COMPONENT_ROLES:
        user_variable, password_variable = login_variables(role)
        user, password = config.get(user_variable), config.get(password_variable)
        if user:
            logins[role] = Login(user, password or None)
        elif password:
            raise WarehouseConfigError(f"{password_variable} is set but {user_variable} is not")
    return logins


DEFAULT_SOCKET_DIR = "/var/run/postgresql"
"""The socket directory psycopg's bundled libpq uses without a host (and that its passfile lookup calls
``localhost``)."""


def passfile_password(
    passfile: str | None, host: str | None, port: int | None, dbname: str | None, user: str
) -> str | None:
    """``user``'s password in the libpq password file, found as libpq (18) finds it; None if none matches.

    Why we look ourselves: a component's own login with no password configured is meant to get it from the passfile
    (as dbt and psql do), but in this process libpq would first take ``PGPASSWORD`` or the ``PGSERVICE`` service's
    password, both the admin's, and fail with "password authentication failed".

    As libpq: the file as :func:`read_passfile` reads it; lines ``hostname:port:database:username:password``, ``#``
    comments, ``*`` matches any value, ``\\:`` and ``\\\\`` are escapes; no host (or libpq's default socket
    directory) is matched as ``localhost``, another socket directory as itself; the first matching line wins, an empty
    password there is none.
    """
    text = read_passfile(passfile)
    if text is None:
        return None
    if not host or host == DEFAULT_SOCKET_DIR:
        host = "localhost"
    wanted = [host, str(port or 5432), dbname or user, user]
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if line.startswith("#"):
            continue
        fields = _passfile_fields(line)
        if len(fields) >= 5 and all(
            wild or field == value for (field, wild), value in zip(fields[:4], wanted, strict=True)
        ):
            return fields[4][0] or None
    return None


def read_passfile(passfile: str | Path | None) -> str | None:
    """The libpq password file's text, as libpq (18) reads it: ``passfile`` (``PGPASSFILE``), else ``~/.pgpass``; None
    where there is none, or it is not a plain file without group or world access (libpq ignores such a file). Bytes
    that are not UTF-8 are kept as surrogates (``surrogateescape``), so that the text can be written back as it was."""
    try:
        path = Path(passfile) if passfile else Path.home() / ".pgpass"
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077:
            return None
        return path.read_bytes().decode("utf-8", "surrogateescape")
    except (OSError, RuntimeError):  # no such file, unreadable, no home directory
        return None


def _passfile_fields(line: str) -> list[tuple[str, bool]]:
    """A passfile line's fields, split at each ``:`` that no backslash escapes, escapes removed, each with whether
    it is the wildcard (a bare ``*``, not ``\\*``)."""
    fields, current, raw, escaped = [], "", "", False
    for char in line:
        raw += char
        if escaped or char not in "\\:":
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        else:
            fields.append((current, raw == "*:"))
            current, raw = "", ""
    return [*fields, (current + ("\\" if escaped else ""), False)]


def client_limits(config: Mapping[str, str]) -> dict[str, int]:
    """connect_timeout and statement_timeout (seconds) from PGCONNECT_TIMEOUT and WAREHOUSE_STATEMENT_TIMEOUT."""
    return {
        "connect_timeout": _seconds(config, "PGCONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT),
        "statement_timeout": _seconds(config, "WAREHOUSE_STATEMENT_TIMEOUT", DEFAULT_STATEMENT_TIMEOUT),
    }


def _query_pairs(query: str) -> Iterator[tuple[str, str]]:
    # Not urllib's parse_qsl: libpq does not read '+' as a space, and neither do we.
    for pair in query.split("&"):
        if pair:
            key, _, value = pair.partition("=")
            yield unquote(key), unquote(value)


def settings_from_url(url: str, *, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT) -> ConnectionSettings:
    """Parse ``postgresql://user:password@host:port/db?sslmode=require`` (also ``postgres://``).

    The login part ends at the *last* ``@`` before the host, so a password may contain ``#``, ``/``, ``?``,
    ``:`` and even ``@`` without percent-encoding (percent-encoded characters are decoded as usual); an ``@``
    in a query value must be written ``%40``. Query parameters win over the URL's parts, as in libpq.
    Errors never quote the URL: any part of it may be a password.
    """
    scheme, separator, rest = url.strip().partition("://")
    if not separator or scheme.lower().split("+")[0] not in ("postgresql", "postgres"):
        raise WarehouseConfigError("DATABASE_URL must start with postgresql:// or postgres://")
    userinfo, _, rest = rest.rpartition("@")
    ends = [i for i in (rest.find("/"), rest.find("?")) if i >= 0]
    authority, rest = rest[: min(ends, default=len(rest))], rest[min(ends, default=len(rest)) :]
    path, _, query = rest.partition("?")

    if "," in authority:
        raise WarehouseConfigError("DATABASE_URL: several hosts in one URL are not supported")
    if authority.startswith("["):
        host, bracket, after = authority[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise WarehouseConfigError("DATABASE_URL: an IPv6 host must be written [address] or [address]:port")
        port_text = after[1:]
    else:
        host, _, port_text = authority.partition(":")
    user, _, password = userinfo.partition(":")
    fields: dict[str, str | int | None] = {
        "host": unquote(host) or None,
        "port": _port(port_text, "DATABASE_URL", quote=False) if port_text else None,
        "user": unquote(user) or None,
        "password": unquote(password) or None,
        "dbname": unquote(path.removeprefix("/")) or None,
    }
    options: dict[str, str] = {}
    for key, value in _query_pairs(query):
        if key == "port":
            fields["port"] = _port(value, "DATABASE_URL's port parameter", quote=False)
        elif key in fields:
            fields[key] = value or None
        elif key == "connect_timeout":
            if not value.strip().isdigit():
                raise WarehouseConfigError("DATABASE_URL: connect_timeout must be a whole number of seconds")
            connect_timeout = int(value)
        elif key == "ssl" and value.lower() == "true":
            options["sslmode"] = "require"  # libpq reads the JDBC-style ssl=true so
        elif key in _libpq_keywords():
            options[key] = value
        else:
            # Not even the name is shown: an unencoded '&' in a password would make its tail a "parameter name".
            raise WarehouseConfigError(
                "DATABASE_URL: a query parameter is not a libpq connection parameter (sslmode, application_name, "
                "connect_timeout, ...); percent-encode '&' and '=' inside a password"
            )
    return ConnectionSettings(**fields, embedded=False, options=options, connect_timeout=connect_timeout)


@functools.cache
def _libpq_keywords() -> frozenset[str]:
    """The connection parameters this libpq knows (sslmode, application_name, ...)."""
    return frozenset(option.keyword.decode() for option in psycopg.pq.Conninfo.get_defaults())


def libpq_option_variables(config: Mapping[str, str]) -> dict[str, str]:
    """The libpq parameters the configuration sets by their standard variables (PGSSLMODE: sslmode, ...)."""
    return {option: config[name] for option, name in LIBPQ_OPTION_VARIABLES.items() if config.get(name)}


def external_settings(config: Mapping[str, str]) -> ConnectionSettings:
    """Settings for a server chosen by DATABASE_URL or the PG* variables, with logins and timeouts."""
    limits = client_limits(config)
    logins = component_logins(config)
    if config.get("DATABASE_URL"):
        settings = settings_from_url(config["DATABASE_URL"], connect_timeout=limits["connect_timeout"])
        # PGSSLMODE, PGAPPNAME and the like apply beside a URL too, as libpq reads them from the environment; libpq
        # never sees .env, so a URL's own parameter wins here as it does there.
        options = {**libpq_option_variables(config), **settings.options}
        settings = replace(settings, logins=logins, statement_timeout=limits["statement_timeout"], options=options)
        # A PGPASSWORD beside the URL would be libpq's password for every login without its own. Without the URL's
        # passfile parameter libpq reads PGPASSFILE's file, so the lookup does too.
        passfile = config.get("PGPASSFILE") or None
        return with_passfile_passwords(settings, passfile) if config.get("PGPASSWORD") else settings
    # A service's parameters beat the PG* variables, as in libpq (and so in psql).
    service = service_parameters(config)
    variables = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD", "dbname": "PGDATABASE"}
    # A service's empty value is a value too, as in libpq: it leaves the variable unread.
    value = {
        keyword: (service[keyword] if keyword in service else config.get(name)) or None
        for keyword, name in variables.items()
    }
    host = value["host"] or ""
    # A leading / is a socket directory (a home may be /home/john@corp.example) and a leading @ libpq's abstract
    # socket; elsewhere an @ is a URL's user:password@.
    if not host.startswith("/") and ("://" in host or "@" in host[1:]):
        # A URL put in PGHOST would be echoed as the host by every error, its password with it.
        raise WarehouseConfigError(
            "PGHOST (or the service's host) holds a URL, not a host name or socket directory: put a URL in "
            "DATABASE_URL instead (the value is not shown: it may hold a password)"
        )
    port = value["port"]
    if "connect_timeout" in service:
        limits["connect_timeout"] = _seconds(service, "connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    options = libpq_option_variables(config)
    options.update({key: item for key, item in service.items() if key not in (*variables, "connect_timeout")})
    settings = ConnectionSettings(
        host=value["host"],
        port=_port(port, "PGPORT" if "port" not in service else "the service's port", quote=True) if port else None,
        user=value["user"],
        password=value["password"],
        dbname=value["dbname"],
        embedded=False,
        options=options,
        logins=logins,
        **limits,
    )
    # libpq would send the admin's password (PGPASSWORD's or the service's) for every login without its own.
    return with_passfile_passwords(settings) if settings.password else settings


def with_passfile_passwords(settings: ConnectionSettings, passfile: str | None = None) -> ConnectionSettings:
    """These settings with each component login that has no password of its own given its password from the
    passfile (the settings' ``passfile`` option, else ``passfile``, else ``~/.pgpass``), where a line there matches
    it (see :func:`passfile_password`)."""
    logins = {
        role: login
        if login.password
        else replace(
            login,
            password=passfile_password(
                settings.options.get("passfile") or passfile,
                settings.host or settings.options.get("hostaddr"),
                settings.port,
                settings.dbname,
                login.user,
            ),
        )
        for role, login in settings.logins.items()
    }
    return replace(settings, logins=logins)
