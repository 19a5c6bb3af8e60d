"""What the gateway session (:class:`ingest.ibkr.fetcher.IbkrSession`) is given and hands back: the contract, the
bars, a request's outcome, the retry policy, the session's counters, and the errors it raises.

Plain values: the loader, the options and the tests use them without the session. Imports only the standard library
and :mod:`ingest.ibkr.gateway_errors` (the ib_insync compat check runs it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from ingest.ibkr.gateway_errors import MarketDataRefusal

OutcomeStatus = Literal["ok", "no_data", "failed"]


class GatewayUnavailableError(ConnectionError):
    """No IB Gateway / TWS answers at the configured address, or the connection was lost for good."""


class InvalidRequestError(RuntimeError):
    """IBKR rejected a bar request as invalid (error 321): a bug or a bad setting, never worth retrying."""

    def __init__(self, code: int, message: str, symbol: str) -> None:
        super().__init__(f"IBKR rejected the request for {symbol} as invalid (error {code}): {message}")
        self.code = code
        self.message = message
        self.symbol = symbol


class MarketDataRefusedError(RuntimeError):
    """IBKR refuses this login market data altogether (a competing live session, a session from another IP
    address): every later request would be refused the same way, so none is sent."""

    def __init__(self, refusal: MarketDataRefusal, symbol: str) -> None:
        super().__init__(
            f"IBKR refused market data to this login (error {refusal.code} for {symbol}: {refusal.message}): "
            f"{refusal.advice()}"
        )
        self.refusal = refusal
        self.code = refusal.code
        self.message = refusal.message
        self.symbol = symbol


@dataclass(frozen=True)
class ContractRef:
    """A stock as the loader knows it: symbol, and conId once qualified."""

    symbol: str
    con_id: int | None = None
    primary_exchange: str = ""
    currency: str = "USD"
    exchange: str = "SMART"

    @property
    def pacing_id(self) -> str:
        return str(self.con_id) if self.con_id else self.symbol


@dataclass(frozen=True)
class SourceBar:
    """One bar exactly as the client library handed it over."""

    date: date | datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float
    bar_count: int


@dataclass
class Outcome:
    """What one historical request came to, after retries."""

    status: OutcomeStatus
    bars: list[SourceBar] = field(default_factory=list)
    error_code: int | None = None
    error_message: str | None = None
    attempts: int = 1


@dataclass
class QualifyOutcome:
    contract: ContractRef | None
    error_code: int | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    pacing_give_up_s: float = 900.0
    """A request still refused for pacing this long after its first violation fails (IBKR's window is 10 min)."""
    pacing_backoff_s: float = 2.0
    """First back-off after a pacing violation, doubled each time up to ``pacing_backoff_max_s``."""
    pacing_backoff_max_s: float = 60.0
    pacing_cooldown_s: float = 5.0
    """After a violation no new request goes out for this long: IBKR's limits were tighter than ours."""
    timeout_retries: int = 2
    connection_retries: int = 5
    """How many dropped connections one request survives (each followed by a reconnect)."""


@dataclass
class SessionStats:
    connects: int = 0
    reconnects: int = 0
    pacing_violations: int = 0
    timeouts: int = 0
    dropped_requests: int = 0
    contract_requests: int = 0
    historical_requests: int = 0
