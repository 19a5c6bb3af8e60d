"""Where the IB Gateway / TWS is and how long to wait for it: one dataclass, read from ``.env`` + environment."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4002
"""IB Gateway, paper account. Live IB Gateway: 4001; TWS paper: 7497; TWS live: 7496."""
DEFAULT_CLIENT_ID = 17
PORT_RANGE = (1, 65535)
CLIENT_ID_RANGE = (0, 2**31 - 1)
MAX_TIMEOUT_S = 24 * 3600.0
"""Longest wait any IBKR timeout may be set to: a day (beyond that, it is a typo)."""


class IbkrConfigError(ValueError):
    """An IBKR_* setting has a value that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class IbkrSettings:
    """How to reach the gateway and how patient to be with it."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    client_id: int = DEFAULT_CLIENT_ID
    connect_timeout_s: float = 10.0
    """How long the API handshake may take before the gateway counts as not answering."""
    request_timeout_s: float = 60.0
    """How long one historical request may stay unanswered before it counts as timed out (then retried)."""
    reconnect_timeout_s: float = 60.0
    """After a dropped connection, how long to keep trying to reconnect before giving up; after IBKR reports an
    outage (its own, or a farm's), how long requests wait for it to end before they go out again."""
    readonly: bool = True
    """Connect read-only: the loader never places orders (works with the gateway's 'Read-Only API' setting)."""

    def __post_init__(self) -> None:
        if not self.host.strip():
            raise IbkrConfigError("the gateway host (IBKR_HOST, --host) is empty")
        if any(mark in self.host for mark in ("/", "@")):
            # A URL, perhaps with a user and password in it: not echoed. The TWS API takes a bare host.
            raise IbkrConfigError(
                "the gateway host (IBKR_HOST, --host) is not a host name or address: give the host alone, e.g. "
                "127.0.0.1 (no scheme, user, password or path)"
            )
        try:
            self.host.encode("idna")  # what the connection does with it: a traceback there
        except UnicodeError:
            raise IbkrConfigError(
                "the gateway host (IBKR_HOST, --host) is not a host name: a part between dots is empty or longer "
                "than 63 characters"
            ) from None
        if not PORT_RANGE[0] <= self.port <= PORT_RANGE[1]:
            raise IbkrConfigError(
                f"the gateway port (IBKR_PORT, --port) {self.port} is out of range {PORT_RANGE[0]}..{PORT_RANGE[1]}"
            )
        if not CLIENT_ID_RANGE[0] <= self.client_id <= CLIENT_ID_RANGE[1]:
            raise IbkrConfigError(
                f"the client id (IBKR_CLIENT_ID, --client-id) {self.client_id} is out of range "
                f"{CLIENT_ID_RANGE[0]}..{CLIENT_ID_RANGE[1]}"
            )
        for name, setting in _TIMEOUTS.items():
            seconds = getattr(self, name)
            problem = timeout_problem(seconds)
            if problem:
                raise IbkrConfigError(f"{setting} {seconds:g} {problem}")

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, str],
        *,
        host: str | None = None,
        port: int | None = None,
        client_id: int | None = None,
        request_timeout_s: float | None = None,
    ) -> IbkrSettings:
        """Settings from ``warehouse_db.settings.read_config()`` (``.env`` overlaid by the environment).

        A value given here (a command-line flag: ``--host``, ``--port``, ``--client-id``, ``--timeout``) wins, and
        the variable it overrides is then not read at all: a bad ``IBKR_PORT`` in ``.env`` does not stop a run that
        names its port.
        """
        return cls(
            host=host if host is not None else (config.get("IBKR_HOST") or DEFAULT_HOST).strip(),
            port=port if port is not None else _int(config, "IBKR_PORT", DEFAULT_PORT, *PORT_RANGE),
            client_id=client_id
            if client_id is not None
            else _int(config, "IBKR_CLIENT_ID", DEFAULT_CLIENT_ID, *CLIENT_ID_RANGE),
            connect_timeout_s=_float(config, "IBKR_CONNECT_TIMEOUT", cls.connect_timeout_s),
            request_timeout_s=request_timeout_s
            if request_timeout_s is not None
            else _float(config, "IBKR_REQUEST_TIMEOUT", cls.request_timeout_s),
            reconnect_timeout_s=_float(config, "IBKR_RECONNECT_TIMEOUT", cls.reconnect_timeout_s),
        )

    def describe(self) -> str:
        return f"{self.host}:{self.port} (client id {self.client_id})"


_TIMEOUTS = {
    "connect_timeout_s": "the connect timeout (IBKR_CONNECT_TIMEOUT)",
    "request_timeout_s": "the request timeout (IBKR_REQUEST_TIMEOUT, --timeout)",
    "reconnect_timeout_s": "the reconnect timeout (IBKR_RECONNECT_TIMEOUT)",
}


def timeout_problem(seconds: float) -> str | None:
    """What is wrong with a timeout in seconds, or None."""
    if not math.isfinite(seconds) or seconds <= 0:
        return "must be a number of seconds above 0"
    if seconds > MAX_TIMEOUT_S:
        return f"is more than a day ({MAX_TIMEOUT_S:g} s)"
    return None


def _int(config: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = (config.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise IbkrConfigError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise IbkrConfigError(f"{name}={value} is out of range {low}..{high}")
    return value


def _float(config: Mapping[str, str], name: str, default: float) -> float:
    raw = (config.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise IbkrConfigError(f"{name}={raw!r} is not a number of seconds") from None
    problem = timeout_problem(value)
    if problem:
        raise IbkrConfigError(f"{name}={raw!r} {problem}")
    return value
