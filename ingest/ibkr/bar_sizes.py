"""IBKR bar sizes and what one historical request may cover for each.

IBKR accepts a fixed set of bar-size strings, and each bar size has a largest duration one request may
ask for (the "valid duration and bar size" table of the TWS API docs); asking for more is error 321.
Durations over 365 days must be given in years (``2 Y``). Bars of a day or longer fit into one request
of any number of years; intraday histories are paged.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from market_calendar import EXCHANGE_TZ

if TYPE_CHECKING:
    from ingest.sessions import Period

# canonical spelling -> bar length in seconds (a month counts as 31 days for paging purposes)
_BAR_SECONDS: dict[str, int] = {
    "1 secs": 1,
    "5 secs": 5,
    "10 secs": 10,
    "15 secs": 15,
    "30 secs": 30,
    "1 min": 60,
    "2 mins": 120,
    "3 mins": 180,
    "5 mins": 300,
    "10 mins": 600,
    "15 mins": 900,
    "20 mins": 1200,
    "30 mins": 1800,
    "1 hour": 3600,
    "2 hours": 7200,
    "3 hours": 10800,
    "4 hours": 14400,
    "8 hours": 28800,
    "1 day": 86400,
    "1 week": 7 * 86400,
    "1 month": 31 * 86400,
}
VALID_BAR_SIZES: tuple[str, ...] = tuple(_BAR_SECONDS)

# Largest duration per request for intraday bars, conservative reading of IBKR's table:
# (largest bar length in seconds, page length in seconds, unit the duration is written in)
_PAGES: tuple[tuple[int, int, str], ...] = (
    (1, 1800, "S"),
    (5, 3600, "S"),
    (15, 14400, "S"),
    (30, 28800, "S"),
    (60, 86400, "D"),
    (120, 2 * 86400, "D"),
    (1200, 7 * 86400, "D"),
    (28800, 30 * 86400, "D"),
)

SHORTEST_SECONDS_DURATION = 60
"""The shortest duration in IBKR's table of valid durations and bar sizes (``60 S``: bars of 1 sec to 1 min): an
oldest page of seconds asks no less, never fewer seconds than its bar lasts (``10 S`` of 30-second bars is in no row
of the table)."""

STRICT_PACING_MAX_SECONDS = 30
"""IBKR applies the 60-requests-in-10-minutes rule to bars of 30 seconds or less."""

_UNITS = {
    "sec": "secs",
    "secs": "secs",
    "second": "secs",
    "seconds": "secs",
    "s": "secs",
    "min": "min",
    "mins": "min",
    "minute": "min",
    "minutes": "min",
    "m": "min",
    "hour": "hour",
    "hours": "hour",
    "h": "hour",
    "day": "day",
    "days": "day",
    "d": "day",
    "week": "week",
    "weeks": "week",
    "w": "week",
    "month": "month",
    "months": "month",
}


class BarSizeError(ValueError):
    """Not one of IBKR's bar sizes."""


@dataclass(frozen=True)
class BarSize:
    """One of IBKR's bar sizes, with what a request for it may cover."""

    text: str
    """IBKR's spelling, e.g. ``1 day`` or ``5 mins``: what goes on the wire."""
    seconds: int

    @property
    def intraday(self) -> bool:
        return self.seconds < 86400

    @property
    def period(self) -> Period:
        """What one bar of a day or longer covers (whether it is final depends on it); "day" for intraday too."""
        return {"1 week": "week", "1 month": "month"}.get(self.text, "day")

    @property
    def strict_pacing(self) -> bool:
        """Whether IBKR's 60-in-10-minutes rule applies to this bar size."""
        return self.seconds <= STRICT_PACING_MAX_SECONDS

    @property
    def page_seconds(self) -> int | None:
        """The span one request covers for intraday bars; None for daily and longer (no paging)."""
        if not self.intraday:
            return None
        for max_bar, page, _unit in _PAGES:
            if self.seconds <= max_bar:
                return page
        raise AssertionError(self.text)  # pragma: no cover - every intraday size is in _PAGES

    def page_duration(self, start: datetime | None = None, end: datetime | None = None) -> str:
        """The duration string of one full intraday page, e.g. ``1800 S`` or ``7 D``; given ``start`` and ``end``,
        that of a page reaching back only to ``start`` (the oldest page of a window seldom needs a whole one).

        A short page in days counts the New York calendar days from ``start``'s to ``end``'s, both included, as
        :func:`daily_duration` does: enough however a server counts ``N D`` (seconds, calendar days or sessions
        back from ``end``). Asking a whole page instead re-delivers up to a page of bars the warehouse holds: an
        hourly update after one new session asked ``30 D`` and landed 30 sessions' bars again."""
        for max_bar, page, unit in _PAGES:
            if self.seconds <= max_bar:
                if start is not None and end is not None and end - start < timedelta(seconds=page):
                    if unit == "S":
                        seconds = math.ceil((end - start).total_seconds())
                        return f"{max(SHORTEST_SECONDS_DURATION, seconds)} S"
                    first, last = start.astimezone(EXCHANGE_TZ).date(), end.astimezone(EXCHANGE_TZ).date()
                    return f"{min(max(1, (last - first).days + 1), page // 86400)} D"
                return f"{page} S" if unit == "S" else f"{page // 86400} D"
        raise ValueError(f"{self.text} bars are not paged")


def parse_bar_size(text: str) -> BarSize:
    """``'1 day'``, ``'1 days'``, ``'5 mins'``, ``'1h'`` -> the canonical :class:`BarSize`."""
    match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]+)\s*", text or "")
    unit = _UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise BarSizeError(f"unknown bar size {text!r}; IBKR's bar sizes are: {', '.join(VALID_BAR_SIZES)}")
    n = int(match.group(1))
    if unit == "secs":
        canonical = f"{n} secs"
    elif unit in ("min", "hour"):
        canonical = f"{n} {unit}{'s' if n > 1 else ''}"
    else:
        canonical = f"{n} {unit}"
    if canonical not in _BAR_SECONDS:
        raise BarSizeError(f"unknown bar size {text!r}; IBKR's bar sizes are: {', '.join(VALID_BAR_SIZES)}")
    return BarSize(canonical, _BAR_SECONDS[canonical])


def years_between(first: date, last: date) -> int:
    """The fewest whole years K such that ``last`` minus K years is on or before ``first``."""
    k = max(1, last.year - first.year - 1)
    while _minus_years(last, k) > first:
        k += 1
    return k


def daily_duration(start: datetime, end: datetime) -> str:
    """Duration string reaching back from ``end`` to ``start`` for bars of a day or longer.

    Counted in New York calendar days, the dates the exchange gives its sessions: from 19:00 New York time
    the UTC date is already tomorrow's, and counting in it would ask for a year too many. Up to 365 days it
    is ``N D`` (both end days included, so the first session is inside); beyond, IBKR wants years, so it is
    the fewest whole years that reach ``start`` (``2 Y``).
    """
    first, last = start.astimezone(EXCHANGE_TZ).date(), end.astimezone(EXCHANGE_TZ).date()
    days = (last - first).days + 1
    if days <= 365:
        return f"{max(days, 1)} D"
    return f"{years_between(first, last)} Y"


def _minus_years(moment: date, years: int) -> date:
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year - years, day=28)
