"""When a session ends, and so when a bar is final: the exchange calendar as ingest needs it.

A daily request ends "now", and during trading hours IBKR answers with today's bar *so far*; an intraday
request's newest bar may still be forming, and so may a weekly or monthly bar until the last session of its week or
month. Such a bar is not final: it must never land as if it were. Every source asks here (:class:`FinalBars`) which
bars it may land.

A session ends at its regular close (13:00 New York time on half days) for regular-trading-hours bars, and at
the end of after-hours trading when it is included. Sessions and both moments come from :mod:`market_calendar`.
"""

from __future__ import annotations

import calendar
import logging
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Literal

from market_calendar import (
    EXCHANGE_TZ,
    EXTENDED_HOURS_END,
    FIRST_DAY,
    PRE_MARKET_START,
    non_session_weekdays,
    schedule,
    session_closes,
)

log = logging.getLogger(__name__)

Period = Literal["day", "week", "month"]
"""What a bar of a day or longer covers: one session, the sessions of a week or those of a month."""


def session_end(close: datetime, session: date, use_rth: bool) -> datetime:
    """When a session with this regular ``close`` ends for bars with or without after-hours trading."""
    return close if use_rth else datetime.combine(session, EXTENDED_HOURS_END, EXCHANGE_TZ)


def session_ends(first: date, last: date, use_rth: bool = True) -> list[tuple[date, datetime]]:
    """(session, end) for the NYSE sessions from ``first`` to ``last`` (both included), in order."""
    try:
        closes = session_closes(first, last)
    except Exception as error:  # noqa: BLE001 - e.g. a date beyond the calendar's known range
        log.warning("NYSE calendar unavailable (%s); assuming weekdays closing at 16:00 New York time", error)
        weekdays = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        closes = [(d, datetime.combine(d, time(16, 0), EXCHANGE_TZ)) for d in weekdays if d.weekday() < 5]
    return [(session, session_end(close, session, use_rth)) for session, close in closes]


@cache
def _holidays() -> frozenset[str]:
    return frozenset(non_session_weekdays())


def why_not_a_session(day: date) -> str | None:
    """Why no daily bar can be dated ``day`` (a weekend, a holiday, before the calendar), or None for a session.

    The warehouse checks every daily and intraday bar against the same calendar, and a bar that lands on a day
    without a session fails that check on every build after: raw is append-only, so no later load can take it back.
    """
    if day < FIRST_DAY:
        return f"{day} is before {FIRST_DAY}, where the exchange calendar of the warehouse starts"
    if day.weekday() >= 5:
        return f"{day} is a {day:%A}: the exchange has no session then"
    if day.isoformat() in _holidays():
        return f"{day} is an exchange holiday: there was no session that day"
    return None


def recent_session_ends(now: datetime, use_rth: bool = True, days: int = 20) -> list[tuple[date, datetime]]:
    """(session, end) for the NYSE sessions from ``days`` before ``now`` to the day after it, in order."""
    now_utc = now.astimezone(UTC)
    return session_ends((now_utc - timedelta(days=days)).date(), (now_utc + timedelta(days=1)).date(), use_rth)


def period_days(day: date, period: Period) -> tuple[date, date]:
    """The first and last calendar day of the period a bar dated ``day`` covers: that day, its week (Monday to
    Sunday) or its month. Gateways differ in which day of its week or month they date such a bar by (its first
    session, its last, the request's end), so the bar's date only says which period it is."""
    if period == "week":
        monday = day - timedelta(days=day.weekday())
        return monday, monday + timedelta(days=6)
    if period == "month":
        return day.replace(day=1), day.replace(day=calendar.monthrange(day.year, day.month)[1])
    return day, day


def last_completed_close(now: datetime, use_rth: bool = True) -> datetime:
    """The end of the last NYSE session that has finished by ``now`` (UTC)."""
    now_utc = now.astimezone(UTC)
    ended = [end for _, end in recent_session_ends(now_utc, use_rth) if end <= now_utc]
    if not ended:  # pragma: no cover - there is always a session in 20 days
        raise RuntimeError(f"no completed NYSE session in the 20 days before {now_utc}")
    return ended[-1].astimezone(UTC)


def last_bar_end(now: datetime, bar_seconds: int, use_rth: bool = True) -> datetime:
    """The latest moment by ``now`` (UTC) at which an intraday bar of ``bar_seconds`` became final as
    :meth:`FinalBars.intraday` counts it, bars labelled as IBKR's are: while a session trades (from its open, or from
    04:00 New York time with pre- and after-hours trading), the first bar's (labelled at the session's start) its
    length later, a later bar's (labelled at a multiple of the bar's length from New York midnight) at the next
    multiple; every bar's at the session's end at the latest; otherwise the last session's end.

    A symbol checked after this moment holds every bar that has become final since (the loader plans no request for
    it); one checked before it lacks a bar: with the last close alone, a load during the session after last evening's
    found the symbol current and landed none of the bars that had ended that day. Taken at the multiples alone, an
    hourly 09:30 bar (final at 10:30) waited for the 11:00 one, and a session's last bar longer than what was left of
    the session (a 3-hour bar labelled 15:00) for the next day."""
    ended = last_completed_close(now, use_rth)
    local = now.astimezone(EXCHANGE_TZ)
    today = next((session for session in session_closes(local.date(), local.date())), None)
    if today is None:
        return ended
    session, close = today
    opens = _session_open(session) if use_rth else datetime.combine(session, PRE_MARKET_START, EXCHANGE_TZ)
    end = session_end(close, session, use_rth)
    length = timedelta(seconds=bar_seconds)
    midnight = datetime.combine(session, time(0), EXCHANGE_TZ)
    boundary = midnight + timedelta(seconds=int((now - midnight).total_seconds()) // bar_seconds * bar_seconds)
    final_at = [min(opens + length, end)]  # the first bar's
    if boundary - length > opens:  # the bar labelled at the multiple before, after the session's start
        final_at.append(min(boundary, end))
    passed = [moment for moment in final_at if moment <= now]
    return max(ended, max(passed).astimezone(UTC)) if passed else ended


def _session_open(session: date) -> datetime:
    return schedule(session, session)["open"].iloc[0].to_pydatetime()


@cache
def _session_end_of(session: date, use_rth: bool) -> datetime | None:
    """When ``session`` ends for bars with or without after-hours trading; None for a day without a session."""
    return next((end for day, end in session_ends(session, session, use_rth) if day == session), None)


class FinalBars:
    """Which bars are final at ``now``: a daily bar once its session has ended, a weekly or monthly bar once the last
    session of its week or month has, an intraday bar once it has ended itself."""

    def __init__(self, now: datetime, use_rth: bool = True) -> None:
        if now.tzinfo is None:
            raise ValueError("FinalBars needs a timezone-aware now")
        self.now = now
        self.use_rth = use_rth
        self.today = now.astimezone(EXCHANGE_TZ).date()
        """Today in New York."""
        end_today = next((end for session, end in recent_session_ends(now, use_rth, 1) if session == self.today), None)
        self._today_ended = end_today is None or end_today <= now

    def daily(self, session: date, period: Period = "day") -> bool:
        """A bar dated ``session`` covering that day (or its week, its month) is final: the period lies before today,
        or it includes today and its sessions from today on have all ended (none left: a weekend, a holiday)."""
        first, last = period_days(session, period)
        if last < self.today:
            return True
        if first > self.today:
            return False
        if period == "day":
            return self._today_ended
        return all(end <= self.now for _, end in session_ends(self.today, last, self.use_rth))

    def intraday(self, bar_start: datetime, bar_seconds: int, session: date | None = None) -> bool:
        """An intraday bar is final once it has ended: its length after it began, or at its ``session``'s end where
        that comes first. A session's last bar may be longer than what is left of the session (a 3-hour bar labelled
        15:00, the 12:00 4-hour bar of a half day): it ends at the close (20:00 with after-hours trading), and was
        taken to end hours later, so the load after the close left it out and the next session's brought it."""
        end = bar_start + timedelta(seconds=bar_seconds)
        if session is not None and end > self.now:
            end = min(end, _session_end_of(session, self.use_rth) or end)
        return end <= self.now

    def ahead(self, bar_time: datetime, session: date, intraday: bool, period: Period = "day") -> bool:
        """Whether a bar lies after ``now`` altogether (a session, week or month after today's, an intraday bar not
        yet begun): no gateway should send one, so its clock or its data is wrong, and the bar is not merely
        unfinished. A weekly bar dated by the Friday of this week is this week's, not ahead."""
        return bar_time > self.now if intraday else period_days(session, period)[0] > self.today

    def why_not_daily(self, session: date) -> str:
        """Why a daily bar of ``session`` is not final, in words."""
        if session > self.today:
            return f"{session} is in the future"
        return f"the session of {session} has not ended yet (its bar is not final until the close)"
