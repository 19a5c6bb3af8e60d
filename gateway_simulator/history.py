"""Validate a reqHistoricalData request and work out which bars answer it.

Validation mirrors IBKR's (error 321 with IBKR's wording) because a loader's
retry logic keys on those codes: a 321 is a bug in the request and must never be
retried, unlike a 162.  Planning is split from generation so that the cheap part
(validation, session selection) runs on arrival and the bars are only built once
the simulated latency has passed and the request was not cancelled.

Duration semantics (documented here because IBKR's are only loosely specified):

* ``N D`` — the last N trading sessions up to the end (so "1 D" on a weekend or
  before today's close still returns the last completed session, as IBKR does);
* ``N W`` / ``N M`` / ``N Y`` — sessions dated in ``(end - span, end]``;
* ``N S`` — daily bars of sessions dated after ``end - N s``; intraday bars that
  start in ``[end - N s, end)``.

Sessions after the simulator's as-of date are never returned.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from market_calendar import EXCHANGE_TZ as NY

from . import protocol
from .bars import WHAT_TO_SHOW, Bar, BarGenerator, view
from .sessions import UTC, SessionCalendar
from .wire_bar_sizes import wire_bar_seconds

DAILY = 0  # bar_minutes value meaning "1 day"
#: Above this many bars a request is refused like IBKR's "Time length exceed max."
MAX_BARS = 100_000

_DURATION = re.compile(r"^\s*(\d+)\s+([SDWMY])\s*$")
_END = re.compile(r"^\s*(\d{8})(?:([ -])\s*(\d{1,2}):(\d{2}):(\d{2}))?(?:\s+(\S+))?\s*$")
_DURATION_LIMITS = {"S": 86400, "D": 365, "W": 52, "M": 12}
_DURATION_LIMIT_TEXT = {
    "S": "Historical data request for greater than 86400 seconds rejected.",
    "D": "Historical data requests for durations longer than 365 days must be made in years.",
    "W": "Historical data request for durations longer than 52 weeks must be made in years.",
    "M": "Historical data request for durations longer than 12 months must be made in years.",
}


class QueryError(Exception):
    """A request IBKR would refuse: carries the error code and IBKR-style text."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text


@dataclass(frozen=True)
class HistoricalQuery:
    """The request fields that determine the answer."""

    symbol: str
    exchange: str
    end_date_time: str
    duration: str
    bar_size: str
    what_to_show: str
    use_rth: bool
    format_date: int


def simulated_bar_minutes(text: str) -> int:
    """The length in minutes of the bars the simulator builds for this barSizeSetting, or :data:`DAILY`.

    The setting must be spelled as IBKR spells it (:mod:`gateway_simulator.wire_bar_sizes`, the simulator's own
    reading, independent of the loader's); bars of seconds, weeks and months are not simulated. Anything else
    is answered with 321, as IBKR answers a bar size it does not know.
    """
    seconds = wire_bar_seconds(text)
    if seconds == 86400:
        return DAILY
    if seconds is not None and seconds % 60 == 0 and seconds < 86400:
        return seconds // 60
    raise QueryError(protocol.ERR_VALIDATION, protocol.text_validation("Historical data bar size setting is invalid."))


def parse_duration(text: str) -> tuple[int, str]:
    """``"N U"`` → (N, U); 321 for bad syntax or day/week/month spans over a year."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) < 1:
        raise QueryError(
            protocol.ERR_VALIDATION, protocol.text_validation("Historical data requested duration is invalid.")
        )
    n, unit = int(match.group(1)), match.group(2)
    limit = _DURATION_LIMITS.get(unit)
    if limit is not None and n > limit:
        raise QueryError(protocol.ERR_VALIDATION, protocol.text_validation(_DURATION_LIMIT_TEXT[unit]))
    return n, unit


def parse_end(text: str, default: dt.datetime) -> dt.datetime:
    """Parse endDateTime as IBKR accepts it; empty means ``default`` ("now").

    Accepted: ``yyyymmdd hh:mm:ss TZ`` (what ib_async sends, TZ usually UTC),
    ``yyyymmdd-hh:mm:ss`` (UTC), ``yyyymmdd hh:mm:ss`` (the gateway's zone, New
    York here) and a bare ``yyyymmdd`` (end of that day, New York).
    """
    if not text.strip():
        return default
    match = _END.match(text)
    bad = QueryError(
        protocol.ERR_VALIDATION,
        protocol.text_validation(
            f"Historical data query end date/time string [{text}] is invalid. "
            "Format is 'YYYYMMDD{SPACE}hh:mm:ss[{SPACE}TMZ]'."
        ),
    )
    if not match:
        raise bad
    day_s, sep, hh, mm, ss, tz_name = match.groups()
    try:
        day = dt.datetime.strptime(day_s, "%Y%m%d").date()
        clock = dt.time(int(hh), int(mm), int(ss)) if hh is not None else dt.time(23, 59, 59)
        if tz_name:
            tz: dt.tzinfo = UTC if tz_name.upper() in ("UTC", "GMT") else ZoneInfo(tz_name)
        else:
            tz = UTC if sep == "-" else NY
    except (ValueError, ZoneInfoNotFoundError):
        raise bad from None
    return dt.datetime.combine(day, clock, tz)


def _subtract_span(day: dt.date, n: int, unit: str) -> dt.date:
    """``day`` minus N weeks/months/years (month ends clamp, Feb 29 → Feb 28)."""
    if unit == "W":
        return day - dt.timedelta(weeks=n)
    months = n * (12 if unit == "Y" else 1)
    total = day.year * 12 + (day.month - 1) - months
    year, month = divmod(total, 12)
    month += 1
    for d in (day.day, 30, 29, 28):
        try:
            return dt.date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class HistoryPlan:
    """Which sessions (and, intraday, which instants) answer a validated query."""

    query: HistoricalQuery
    bar_minutes: int
    sessions: tuple[int, ...]  # calendar indices, ascending
    start: dt.datetime
    end: dt.datetime
    intraday_from: dt.datetime | None  # "N S" lower bound for intraday bars
    as_of: dt.date

    @property
    def estimated_bars(self) -> int:
        """Upper bound on bars, to refuse or offload big requests before building them."""
        if self.bar_minutes == DAILY:
            return len(self.sessions)
        per_session = (16 * 60 if not self.query.use_rth else 390) // self.bar_minutes + 2
        return len(self.sessions) * per_session

    def generate(self, gen: BarGenerator) -> list[Bar]:
        """Build the bars (TRADES first, then the requested view)."""
        q = self.query
        dates = gen.calendar.dates
        if self.bar_minutes == DAILY:
            if not self.sessions:
                return []
            bars = gen.daily(q.symbol, self.sessions[0], self.sessions[-1])
            days = [b.time for b in bars]
        else:
            bars, days = [], []
            for idx in self.sessions:
                for bar in gen.intraday(q.symbol, idx, self.bar_minutes, q.use_rth):
                    if bar.time >= self.end:
                        break
                    if self.intraday_from is not None and bar.time < self.intraday_from:
                        continue
                    bars.append(bar)
                    days.append(dates[idx])
        return view(bars, q.what_to_show, gen, q.symbol, days, self.as_of)  # type: ignore[arg-type]


def plan(query: HistoricalQuery, calendar: SessionCalendar, *, default_end: dt.datetime, as_of: dt.date) -> HistoryPlan:
    """Validate ``query`` (raising :class:`QueryError`) and select its sessions.

    ``default_end`` is what an empty endDateTime means; ``as_of`` is the last
    session the simulator may emit.
    """
    what = query.what_to_show.upper()
    if what not in WHAT_TO_SHOW:
        raise QueryError(
            protocol.ERR_VALIDATION, protocol.text_validation(f"Invalid what to show: {query.what_to_show}")
        )
    bar_minutes = simulated_bar_minutes(query.bar_size)
    n, unit = parse_duration(query.duration)
    if what == "ADJUSTED_LAST" and query.end_date_time.strip():
        raise QueryError(protocol.ERR_VALIDATION, protocol.text_validation("End date not supported with adjusted last"))
    end = parse_end(query.end_date_time, default_end)
    end_day = end.astimezone(NY).date()
    cap = calendar.index_on_or_before(min(end_day, as_of))
    intraday_from = None
    if unit == "D":
        first = cap - n + 1
        start = calendar.open_at(max(first, 0)) if cap >= 0 else end
    elif unit == "S":
        start = end - dt.timedelta(seconds=n)
        start_day = start.astimezone(NY).date()
        if bar_minutes == DAILY:
            first = calendar.index_after(start_day)
        else:
            first = calendar.index_on_or_before(start_day)
            first = first if first >= 0 and calendar.dates[first] == start_day else first + 1
            intraday_from = start
    else:
        start_day = _subtract_span(end_day, n, unit)
        first = calendar.index_after(start_day)
        start = dt.datetime.combine(start_day, dt.time(23, 59, 59), NY)
    first = max(first, 0)
    sessions = tuple(range(first, cap + 1)) if cap >= first else ()
    result = HistoryPlan(
        query=query,
        bar_minutes=bar_minutes,
        sessions=sessions,
        start=start,
        end=end,
        intraday_from=intraday_from,
        as_of=as_of,
    )
    if result.estimated_bars > MAX_BARS:
        raise QueryError(protocol.ERR_HMDS, protocol.HMDS_PREFIX + "Time length exceed max.")
    return result
