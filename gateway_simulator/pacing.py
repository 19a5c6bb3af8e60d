"""IBKR's historical-data pacing rules as a small pure class with an injectable clock.

IBKR answers error 162 ("Historical data request pacing violation") when a client:

* repeats an identical request (same contract, endDateTime, duration, bar size,
  whatToShow, useRTH) within 15 s;
* makes 6 or more requests for the same contract + exchange + tick type within 2 s;
* makes more than 60 requests in any rolling 10 minutes;
* has more than 50 requests open at once.

IBKR files these rules under bars of 30 s or less and says they were lifted for
larger bars, "but be careful".  The simulator therefore always enforces the
open-request, identical-request and 2-second rules (cheap for any client to keep),
and the 60-per-10-minutes rule for bars of 30 s or less only, or for every bar size
when ``PacingLimits.rolling_for_all_bar_sizes`` is set (``--strict-pacing``).  The
loader's limiter (``ingest/ibkr/pacing.py``) keeps the same rule set.  Bar lengths come from the simulator's
own reading of IBKR's bar sizes (:mod:`gateway_simulator.wire_bar_sizes`, independent of the loader's on purpose).
Only *accepted* requests are remembered: a
rejected request fetched nothing, and this makes the simulator predictable — a
loader that waits out the window is guaranteed to get through.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

from .wire_bar_sizes import wire_bar_seconds


@dataclass(frozen=True)
class PacingLimits:
    """The thresholds, as IBKR documents them."""

    identical_window_s: float = 15.0
    burst_window_s: float = 2.0
    burst_count: int = 6  # this many in the window (including the new one) is a violation
    rolling_window_s: float = 600.0
    rolling_max: int = 60  # more than this many in the window is a violation
    max_open: int = 50  # more than this many open at once is a violation
    rolling_for_all_bar_sizes: bool = False  # True: the 10-minute rule also binds bars larger than 30 s
    small_bar_max_s: int = 30  # bars of at most this many seconds are "small" in IBKR's sense


@dataclass(frozen=True)
class PacingRequest:
    """What the rules need to know about one historical request."""

    contract: str  # identity of the instrument (symbol or conId, secType, currency)
    exchange: str
    what_to_show: str
    end_date_time: str
    duration: str
    bar_size: str
    use_rth: bool

    @property
    def identical_key(self) -> tuple[object, ...]:
        """Requests with equal keys are "identical" in IBKR's sense."""
        return (
            self.contract,
            self.exchange,
            self.end_date_time,
            self.duration,
            self.bar_size,
            self.what_to_show.upper(),
            self.use_rth,
        )

    @property
    def burst_key(self) -> tuple[str, str, str]:
        """Contract + exchange + tick type, the grouping of the 2-second rule."""
        return (self.contract, self.exchange, self.what_to_show.upper())


class PacingRules:
    """Decides whether a new historical request breaks a pacing rule.

    ``check`` is the only mutating entry point: it returns the violated rule's
    description (and remembers nothing), or ``None`` and records the request.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, limits: PacingLimits | None = None) -> None:
        self._clock = clock
        self.limits = limits or PacingLimits()
        self._accepted: deque[float] = deque()
        self._last_identical: dict[tuple[object, ...], float] = {}
        self._bursts: defaultdict[tuple[str, str, str], deque[float]] = defaultdict(deque)

    def check(self, request: PacingRequest, open_requests: int = 0) -> str | None:
        """Return why ``request`` is a pacing violation, or ``None`` if it may run.

        ``open_requests`` is how many historical requests are already open (not
        counting this one).
        """
        now = self._clock()
        lim = self.limits
        self._expire(now)
        if open_requests + 1 > lim.max_open:
            return f"more than {lim.max_open} simultaneous open historical requests"
        last = self._last_identical.get(request.identical_key)
        if last is not None and now - last < lim.identical_window_s:
            return f"identical request within {lim.identical_window_s:g} s"
        burst = self._bursts.get(request.burst_key)
        if burst is not None and len(burst) + 1 >= lim.burst_count:
            return (
                f"{lim.burst_count} or more requests for the same contract, exchange and "
                f"tick type within {lim.burst_window_s:g} s"
            )
        rolling_applies = self._rolling_rule_applies(request)
        if rolling_applies and len(self._accepted) + 1 > lim.rolling_max:
            return f"more than {lim.rolling_max} requests within {lim.rolling_window_s:g} s"
        if rolling_applies:
            self._accepted.append(now)
        self._last_identical[request.identical_key] = now
        self._bursts[request.burst_key].append(now)
        return None

    def _rolling_rule_applies(self, request: PacingRequest) -> bool:
        if self.limits.rolling_for_all_bar_sizes:
            return True
        seconds = wire_bar_seconds(request.bar_size)
        return seconds is not None and seconds <= self.limits.small_bar_max_s

    def _expire(self, now: float) -> None:
        """Forget requests that no longer fall inside any window."""
        lim = self.limits
        while self._accepted and now - self._accepted[0] >= lim.rolling_window_s:
            self._accepted.popleft()
        for key in [k for k, t in self._last_identical.items() if now - t >= lim.identical_window_s]:
            del self._last_identical[key]
        for key in list(self._bursts):
            times = self._bursts[key]
            while times and now - times[0] >= lim.burst_window_s:
                times.popleft()
            if not times:
                del self._bursts[key]
