"""The loader's own limiter for IBKR's historical-data rules: it waits before a request would break one.

IBKR's rules (TWS API docs, "historical data limitations"; error 162 when broken):

1. at most 50 historical requests open at once;
2. no identical request (contract, endDateTime, duration, bar size, whatToShow, useRTH) within 15 s;
3. fewer than 6 requests for the same contract + exchange + tick type within 2 s;
4. at most 60 requests in any 10 minutes (BID_ASK counts twice).

IBKR applies 2-4 to bars of 30 s or less and says it lifted them for larger bars "but be careful". This
limiter therefore always keeps to 1-3, which cost a daily-bar load nothing (one request per contract),
and applies 4 -- which would stretch a 150-symbol daily load to 25 minutes -- only in *strict* mode:
bars of 30 s or less, when asked (``--strict-pacing``), or from the first pacing violation on (the
session calls :meth:`PacingLimiter.keep_rolling_rule`). Every window gets a small margin, because the
server's clock, not ours, decides.

It also spaces all outgoing requests (historical and contract details) below the client library's own
throttle of 45 messages per second, so that the library never queues a request behind our back: the
moment this limiter lets a request go is the moment it goes on the wire, which is what the windows above
are measured against.

Pure apart from ``asyncio.sleep``; the clock and the sleep function are injectable for tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ingest.ibkr.bar_sizes import BarSize

DEFAULT_MAX_OPEN = 40
"""Open historical requests at once; IBKR allows 50, we leave room for other clients of the same login."""


@dataclass(frozen=True)
class PacingPolicy:
    """The limits the limiter keeps to (defaults: IBKR's documented rules, a little stricter)."""

    max_open: int = DEFAULT_MAX_OPEN
    identical_window_s: float = 15.0
    burst_window_s: float = 2.0
    burst_max: int = 5
    """At most this many requests per contract/exchange/tick type in the burst window ("fewer than 6")."""
    strict: bool = False
    """Apply the rolling rule (IBKR: bars of 30 s or less)."""
    rolling_window_s: float = 600.0
    rolling_max: int = 60
    message_rate: int = 42
    """Requests per second we hand to the client library (its own throttle: 45 messages per second)."""
    margin_s: float = 0.25
    """Added to every window: the server measures with its own clock, after the network delay."""

    def __post_init__(self) -> None:
        if not 1 <= self.max_open <= 50:
            raise ValueError(f"max open: {self.max_open} is out of range 1..50 (IBKR allows at most 50 open requests)")
        if self.burst_max < 1 or self.rolling_max < 1 or self.message_rate < 1:
            raise ValueError("pacing limits must be positive")

    @classmethod
    def for_bar_size(cls, bar_size: BarSize, *, strict: bool = False, max_open: int = DEFAULT_MAX_OPEN) -> PacingPolicy:
        """IBKR's rule set for this bar size: strict for bars of 30 s or less, or when forced."""
        return cls(max_open=max_open, strict=strict or bar_size.strict_pacing)

    def describe(self) -> str:
        rules = [
            f"<= {self.max_open} open",
            f"no identical request within {self.identical_window_s:g} s",
            f"<= {self.burst_max} per contract in {self.burst_window_s:g} s",
            f"<= {self.message_rate} requests/s",
        ]
        if self.strict:
            rules.append(f"<= {self.rolling_max} per {self.rolling_window_s / 60:g} min (strict)")
        return ", ".join(rules)


@dataclass(frozen=True)
class RequestKey:
    """What the pacing rules look at in one historical request."""

    contract: str
    """conId when known, else the symbol."""
    exchange: str
    what_to_show: str
    end: str
    duration: str
    bar_size: str
    use_rth: bool

    @property
    def identical(self) -> tuple[object, ...]:
        return (
            self.contract,
            self.exchange,
            self.end,
            self.duration,
            self.bar_size,
            self.what_to_show.upper(),
            self.use_rth,
        )

    @property
    def burst(self) -> tuple[str, str, str]:
        return (self.contract, self.exchange, self.what_to_show.upper())

    @property
    def weight(self) -> int:
        """IBKR counts BID_ASK requests twice towards the rolling limit."""
        return 2 if self.what_to_show.upper() == "BID_ASK" else 1


class PacingLimiter:
    """Hands out permission to send, one request at a time, never breaking the policy.

    ``async with limiter.historical(key): ...`` holds one of the ``max_open`` slots for as long as the
    request is open and returns only once the request may go on the wire. ``await limiter.message()``
    paces any other request (contract details) to the message rate.
    """

    def __init__(
        self,
        policy: PacingPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._sleep = sleep
        self._slots = asyncio.Semaphore(policy.max_open)
        self._open = 0
        self._messages: deque[float] = deque()
        self._identical: dict[tuple[object, ...], float] = {}
        self._bursts: defaultdict[tuple[str, str, str], deque[float]] = defaultdict(deque)
        self._rolling: deque[float] = deque()
        self._paused_until = float("-inf")

    # --- pure part: when may this go? ------------------------------------------------------------

    def delay(self, key: RequestKey | None, now: float | None = None) -> float:
        """Seconds until a request with ``key`` (None: a non-historical message) may be sent; 0 = now."""
        now = self._clock() if now is None else now
        self._expire(now)
        p = self.policy
        waits = [0.0]
        if len(self._messages) >= p.message_rate:
            waits.append(self._messages[-p.message_rate] + 1.0 + p.margin_s / 5 - now)
        if key is not None:
            waits.append(self._paused_until - now)
            last = self._identical.get(key.identical)
            if last is not None:
                waits.append(last + p.identical_window_s + p.margin_s - now)
            burst = self._bursts.get(key.burst)
            if burst is not None and len(burst) >= p.burst_max:
                waits.append(burst[-p.burst_max] + p.burst_window_s + p.margin_s - now)
            if p.strict and len(self._rolling) + key.weight > p.rolling_max:
                oldest_to_expire = self._rolling[len(self._rolling) + key.weight - p.rolling_max - 1]
                waits.append(oldest_to_expire + p.rolling_window_s + p.margin_s - now)
        return max(waits)

    def record(self, key: RequestKey | None, now: float | None = None) -> None:
        """Remember that a request went out at ``now``."""
        now = self._clock() if now is None else now
        self._messages.append(now)
        if key is None:
            return
        self._identical[key.identical] = now
        self._bursts[key.burst].append(now)
        for _ in range(key.weight):
            self._rolling.append(now)

    def keep_rolling_rule(self) -> bool:
        """Apply the 60-per-10-minutes rule from now on; whether it was off until now.

        For after a pacing violation: the server enforces the rule although the bar size is exempt, or another
        client of the same login shares the budget. The requests of the last 10 minutes already count.
        """
        if self.policy.strict:
            return False
        self.policy = dataclasses.replace(self.policy, strict=True)
        return True

    def cooldown(self, seconds: float) -> None:
        """After a pacing violation: no new historical request for ``seconds`` (our model was too loose)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    # --- async part -------------------------------------------------------------------------------

    async def _wait_turn(self, key: RequestKey | None) -> None:
        while True:
            wait = self.delay(key)
            if wait <= 0:
                self.record(key)
                return
            await self._sleep(wait)

    async def message(self) -> None:
        """Wait until a non-historical request (contract details) may be sent, and count it."""
        await self._wait_turn(None)

    @asynccontextmanager
    async def historical(self, key: RequestKey) -> AsyncIterator[None]:
        """Hold an open-request slot; entered once ``key`` may go on the wire."""
        async with self._slots:
            await self._wait_turn(key)
            self._open += 1
            try:
                yield
            finally:
                self._open -= 1

    @property
    def open_requests(self) -> int:
        return self._open

    def _expire(self, now: float) -> None:
        p = self.policy
        while self._messages and now - self._messages[0] >= 1.0 + p.margin_s / 5:
            self._messages.popleft()
        while self._rolling and now - self._rolling[0] >= p.rolling_window_s + p.margin_s:
            self._rolling.popleft()
        if len(self._identical) > 4096:
            horizon = p.identical_window_s + p.margin_s
            self._identical = {k: t for k, t in self._identical.items() if now - t < horizon}
        for burst_key in [
            k for k, times in self._bursts.items() if not times or now - times[-1] >= p.burst_window_s + p.margin_s
        ]:
            del self._bursts[burst_key]
        for times in self._bursts.values():
            while times and now - times[0] >= p.burst_window_s + p.margin_s:
                times.popleft()


def estimate_seconds(policy: PacingPolicy, requests_per_contract: Sequence[int], what_to_show: str = "TRADES") -> float:
    """The least time these requests can take while keeping to ``policy``, gateway latency not counted.

    ``requests_per_contract`` holds each symbol's number of historical requests. The rules overlap in time, so
    the slowest one decides: the message rate over all requests, the burst rule within the busiest contract,
    and in strict mode the rolling 10-minute rule over all requests.
    """
    total = sum(requests_per_contract)
    if total == 0:
        return 0.0
    waits = [total / policy.message_rate]
    busiest = max(requests_per_contract)
    waits.append((math.ceil(busiest / policy.burst_max) - 1) * (policy.burst_window_s + policy.margin_s))
    if policy.strict:
        weight = 2 if what_to_show.upper() == "BID_ASK" else 1
        windows = math.ceil(total * weight / policy.rolling_max) - 1
        waits.append(windows * (policy.rolling_window_s + policy.margin_s))
    return max(waits)
