"""Where the IB Gateway / TWS is and how long to wait for it: one dataclass, read from ``.env`` + environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4002
"""IB Gateway, paper account. Live IB Gateway: 4001; TWS paper: 7497; TWS live: 7496."""
DEFAULT_CLIENT_ID = 17


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
    """After a dropped connection, how long to keep trying to reconnect before giving up."""
    readonly: bool = True
    """Connect read-only: the loader never places orders (works with the gateway's 'Read-Only API' setting)."""

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> IbkrSettings:
        """Settings from ``warehouse_db.settings.read_config()`` (``.env`` overlaid by the environment)."""
        return cls(
            host=(config.get("IBKR_HOST") or DEFAULT_HOST).strip(),
            port=_int(config, "IBKR_PORT", DEFAULT_PORT, low=1, high=65535),
            client_id=_int(config, "IBKR_CLIENT_ID", DEFAULT_CLIENT_ID, low=0, high=2**31 - 1),
            connect_timeout_s=_float(config, "IBKR_CONNECT_TIMEOUT", cls.connect_timeout_s),
            request_timeout_s=_float(config, "IBKR_REQUEST_TIMEOUT", cls.request_timeout_s),
            reconnect_timeout_s=_float(config, "IBKR_RECONNECT_TIMEOUT", cls.reconnect_timeout_s),
        )

    def describe(self) -> str:
        return f"{self.host}:{self.port} (client id {self.client_id})"


def _int(config: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
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
    if value <= 0:
        raise IbkrConfigError(f"{name}={raw!r} must be more than 0 seconds")
    return value
