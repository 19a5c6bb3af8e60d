"""The exchange calendar: the one place that knows the exchange, its time zone and its trading sessions.

Every bar in this project belongs to an NYSE (XNYS) session, and a session's date is its date in New York.
Ingest, the gateway simulator, the dev tools and training all ask here instead of opening
``exchange_calendars`` themselves; dbt's var ``exchange_timezone`` and the calendar seed
(``warehouse/seeds/xnys_sessions.csv``, written by ``devtools/generate_calendar.py`` from this module) are
checked against it by tests.
"""

from __future__ import annotations

import warnings
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    import pandas as pd
    from exchange_calendars import ExchangeCalendar

# pandas and exchange_calendars are imported inside the functions that need them: importing this module must
# stay cheap and dependency-free (the ib_insync compatibility check runs in a venv that has neither).

EXCHANGE = "XNYS"
"""exchange_calendars' name of the New York Stock Exchange."""
EXCHANGE_TIMEZONE = "America/New_York"
"""Session dates are dates in this time zone (daily bars land at 00:00 of it)."""
EXCHANGE_TZ = ZoneInfo(EXCHANGE_TIMEZONE)
EXTENDED_HOURS_END = time(20, 0)
"""End of after-hours trading (exchange time): when a session ends for bars that include it."""
PRE_MARKET_START = time(4, 0)
"""Start of pre-market trading (exchange time): when a session begins for intraday bars that include it."""

FIRST_DAY = date(2000, 1, 1)
"""The calendar reaches back this far (the seed's range starts here)."""
LAST_DAY_AT_LEAST = date(2030, 12, 31)
"""...and forward at least this far, or two years past today, whichever is later."""


@cache
def exchange_calendar() -> ExchangeCalendar:
    """The XNYS calendar from :data:`FIRST_DAY`, built once per process (about 0.1 s after a 0.5 s import)."""
    last = max(LAST_DAY_AT_LEAST, date.today() + timedelta(days=730))
    with warnings.catch_warnings():
        # exchange_calendars 4.13 reads Series.values of tz-aware data, which pandas 3.1 deprecates: not ours to fix.
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        import exchange_calendars  # slow import: only when a caller needs sessions

        return exchange_calendars.get_calendar(EXCHANGE, start=FIRST_DAY.isoformat(), end=last.isoformat())


def sessions_in_range(start: date | str, end: date | str) -> pd.DatetimeIndex:
    """Session dates from ``start`` to ``end``, both inclusive, as tz-naive midnight timestamps."""
    import pandas as pd

    sessions = exchange_calendar().sessions_in_range(pd.Timestamp(start), pd.Timestamp(end))
    return pd.DatetimeIndex(sessions).tz_localize(None)


def sessions_until(end: date | str, count: int) -> pd.DatetimeIndex:
    """The last ``count`` sessions on or before ``end``."""
    sessions = sessions_in_range(exchange_calendar().first_session, end)
    if len(sessions) < count:
        raise ValueError(f"the {EXCHANGE} calendar has only {len(sessions)} sessions up to {end}")
    return sessions[-count:]


@cache
def non_session_weekdays() -> tuple[str, ...]:
    """Weekdays on which the exchange was closed (holidays), over the calendar's whole range, as ISO dates."""
    import pandas as pd

    calendar = exchange_calendar()
    weekdays = pd.bdate_range(calendar.first_session, calendar.last_session)
    sessions = pd.DatetimeIndex(calendar.sessions).tz_localize(None)
    return tuple(day.strftime("%Y-%m-%d") for day in weekdays.difference(sessions))


def session_closes(first: date, last: date) -> list[tuple[date, datetime]]:
    """(session date, regular close as an aware datetime) for every session from ``first`` to ``last``."""
    import pandas as pd

    calendar = exchange_calendar()
    return [
        (session.date(), calendar.session_close(session).to_pydatetime())
        for session in calendar.sessions_in_range(pd.Timestamp(first), pd.Timestamp(last))
    ]


def schedule(start: date | str, end: date | str) -> pd.DataFrame:
    """One row per session from ``start`` to ``end``: open and close (UTC) and whether it closes early."""
    import pandas as pd

    calendar = exchange_calendar()
    rows = calendar.schedule.loc[pd.Timestamp(start) : pd.Timestamp(end), ["open", "close"]].copy()
    early_closes = set(calendar.early_closes)
    rows["is_half_day"] = [session in early_closes for session in rows.index]
    return rows
