"""Exchange sessions from exchange_calendars (its deprecation noise under pandas 3 silenced in one place)."""

from __future__ import annotations

import warnings
from functools import cache

import pandas as pd


@cache
def exchange_calendar(name: str = "XNYS"):  # noqa: ANN201 - exchange_calendars.ExchangeCalendar
    with warnings.catch_warnings():
        # exchange_calendars 4.13 reads Series.values of tz-aware data, which pandas 3.1 deprecates.
        warnings.simplefilter("ignore")
        import exchange_calendars

        return exchange_calendars.get_calendar(name)


def sessions_until(end: str, count: int, name: str = "XNYS") -> pd.DatetimeIndex:
    """The last ``count`` sessions up to ``end`` (naive dates)."""
    calendar = exchange_calendar(name)
    sessions = calendar.sessions_in_range(calendar.first_session, pd.Timestamp(end))
    if len(sessions) < count:
        raise ValueError(f"the {name} calendar has only {len(sessions)} sessions before {end}")
    return pd.DatetimeIndex(sessions[-count:]).tz_localize(None)


@cache
def non_session_weekdays(name: str = "XNYS") -> tuple[str, ...]:
    """Weekdays on which the exchange was closed, over the calendar's whole range, as ISO dates."""
    calendar = exchange_calendar(name)
    weekdays = pd.bdate_range(calendar.first_session, calendar.last_session)
    sessions = pd.DatetimeIndex(calendar.sessions).tz_localize(None)
    return tuple(day.strftime("%Y-%m-%d") for day in weekdays.difference(sessions))
