"""NYSE trading sessions (XNYS from ``exchange_calendars``) as plain arrays.

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
import warnings
from dataclasses import dataclass
from zoneinfo import ZoneInfo

NY = ZoneInfo("America/New_York")
UTC = dt.timezone.utc

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

    def open_at(self, idx: int) -> dt.datetime:
        """Session open as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.opens[idx], UTC)

    def close_at(self, idx: int) -> dt.datetime:
        """Session close as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.closes[idx], UTC)


@functools.lru_cache(maxsize=1)
def nyse_calendar() -> SessionCalendar:
    """Build (once) the XNYS calendar from :data:`HISTORY_START` to its default end."""
    import exchange_calendars as xcals  # slow import (~0.5 s): only when first needed

    with warnings.catch_warnings():
        # exchange_calendars 4.13 trips a pandas 3.1 deprecation internally; not ours to fix.
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        cal = xcals.get_calendar("XNYS", start=HISTORY_START.isoformat())
    dates = tuple(ts.date() for ts in cal.sessions)
    opens = tuple(int(ts.timestamp()) for ts in cal.opens)
    closes = tuple(int(ts.timestamp()) for ts in cal.closes)
    return SessionCalendar(dates=dates, opens=opens, closes=closes)
