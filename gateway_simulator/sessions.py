"""NYSE trading sessions (XNYS, from :mod:`market_calendar`) as plain arrays.

Bars must land exactly on real sessions — holidays skipped, half days closing at
13:00 — because the loader and its checks compare against the same calendar.
The calendar is built once per process from a *fixed* first session, so that the
random walk anchored there (see :mod:`bars`) does not shift as the wall clock moves.
``exchange_calendars`` only knows sessions up to about a year ahead; callers clamp
to :attr:`SessionCalendar.last_session`.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
from dataclasses import dataclass

from market_calendar import exchange_calendar

UTC = dt.UTC

#: First session the simulator has history for (the head timestamp of every symbol).
HISTORY_START = dt.date(2005, 1, 3)


@dataclass(frozen=True, eq=False)
class SessionCalendar:
    """Sessions in ascending order with their open and close instants (UTC epochs).

    Compared and hashed by identity: it is a per-process singleton used as a cache
    key, and hashing its 5,000-element tuples on every lookup would be wasteful.
    """

    dates: tuple[dt.date, ...]
    opens: tuple[int, ...]
    closes: tuple[int, ...]

    @property
    def first_session(self) -> dt.date:
        """Earliest session with data."""
        return self.dates[0]

    @property
    def last_session(self) -> dt.date:
        """Latest session the calendar knows (about a year ahead of today)."""
        return self.dates[-1]

    def index_on_or_before(self, day: dt.date) -> int:
        """Index of the last session dated ``<= day`` (``-1`` if none)."""
        return bisect.bisect_right(self.dates, day) - 1

    def index_after(self, day: dt.date) -> int:
        """Index of the first session dated ``> day``."""
        return bisect.bisect_right(self.dates, day)

    def last_closed_session(self, now: dt.datetime) -> dt.date:
        """Last session whose close is at or before ``now`` (today excluded until 16:00 ET)."""
        ts = int(now.timestamp())
        idx = bisect.bisect_right(self.closes, ts) - 1
        return self.dates[max(idx, 0)]

    def last_opened_session(self, now: dt.datetime) -> dt.date:
        """Last session whose open is at or before ``now`` (today included once it has opened)."""
        idx = bisect.bisect_right(self.opens, int(now.timestamp())) - 1
        return self.dates[max(idx, 0)]

    def open_at(self, idx: int) -> dt.datetime:
        """Session open as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.opens[idx], UTC)

    def close_at(self, idx: int) -> dt.datetime:
        """Session close as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.closes[idx], UTC)


@functools.lru_cache(maxsize=1)
def nyse_calendar() -> SessionCalendar:
    """Build (once) the XNYS sessions from :data:`HISTORY_START` to about a year ahead of today."""
    schedule = exchange_calendar().schedule
    last = dt.date.today() + dt.timedelta(days=365)
    schedule = schedule.loc[HISTORY_START.isoformat() : last.isoformat()]
    dates = tuple(ts.date() for ts in schedule.index)
    opens = tuple(int(ts.timestamp()) for ts in schedule["open"])
    closes = tuple(int(ts.timestamp()) for ts in schedule["close"])
    return SessionCalendar(dates=dates, opens=opens, closes=closes)
