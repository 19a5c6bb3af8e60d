"""What to ask IBKR for, per symbol, and why: a pure function of what the warehouse already holds.

Inputs per symbol (:class:`Coverage`, read from ``raw`` by the loader):

* ``last_bar_time``  -- the watermark: the latest landed bar for these bar settings;
* ``covered_from``   -- the earliest start any successful IBKR batch asked for (so a longer ``--months``
  is noticed and backfilled, while a stock listed since then is not asked for again every run);
* ``checked_at``     -- when the latest successful IBKR batch finished.

A symbol is *current*, and costs no request, when it was checked after the close of the last completed
session and its covered window reaches back far enough. Otherwise the plan asks for what is missing: from
the watermark minus a short overlap (to pick up corrections of recent bars) up to now, or the whole window
when nothing usable is there. Daily and longer bars fit one request (``N D`` up to 365 days, whole years
beyond); intraday windows are cut into pages that IBKR accepts.
"""

from __future__ import annotations

import math
from calendar import monthrange
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from ingest.ibkr.bar_sizes import BarSize, daily_duration
from market_calendar import EXCHANGE_TZ as NY
from market_calendar import session_closes

UTC = UTC

DEFAULT_MONTHS = 12
DAILY_OVERLAP = timedelta(days=7)
"""Daily bars: re-ask the last week (about five sessions) so that late corrections are picked up."""
INTRADAY_OVERLAP_BARS = 30
COVERAGE_SLACK = timedelta(days=1)


@dataclass(frozen=True)
class Coverage:
    """What the warehouse holds for one symbol and one set of bar settings."""

    last_bar_time: datetime | None = None
    covered_from: datetime | None = None
    checked_at: datetime | None = None

    @property
    def empty(self) -> bool:
        return self.last_bar_time is None and self.checked_at is None


@dataclass(frozen=True)
class PlanContext:
    """What is the same for every symbol of a run."""

    now: datetime
    """Aware; the moment the run plans for."""
    last_close: datetime
    """Aware; the end of the last completed session (its close, or 20:00 New York time outside RTH)."""
    bar_size: BarSize
    months: int = DEFAULT_MONTHS
    full_refresh: bool = False
    rewrites_history: bool = False
    """ADJUSTED_LAST: each new dividend re-adjusts every earlier bar, so an update re-fetches the whole window
    (one adjustment basis per load) instead of the recent sessions only."""

    def __post_init__(self) -> None:
        if self.now.tzinfo is None or self.last_close.tzinfo is None:
            raise ValueError("PlanContext needs timezone-aware datetimes")
        if self.months < 1:
            raise ValueError(f"months must be at least 1 (got {self.months})")

    @property
    def window_start(self) -> datetime:
        """Midnight New York time, ``months`` calendar months before today (New York)."""
        today = self.now.astimezone(NY).date()
        return datetime.combine(months_before(today, self.months), time(0), NY)

    @property
    def overlap(self) -> timedelta:
        if self.bar_size.intraday:
            return timedelta(seconds=self.bar_size.seconds * INTRADAY_OVERLAP_BARS)
        return max(DAILY_OVERLAP, timedelta(seconds=2 * self.bar_size.seconds))


@dataclass(frozen=True)
class PlannedRequest:
    """One reqHistoricalData call: ``duration`` reaching back from ``end`` (None: now, the gateway's clock)."""

    end: datetime | None
    duration: str
    start: datetime
    """The earliest instant the request is meant to cover (for the record and the dry run)."""
    until: datetime
    """``end``, or the planning moment when ``end`` is None."""

    @property
    def end_text(self) -> str:
        """endDateTime as it goes on the wire: empty for now, else ``yyyymmdd hh:mm:ss UTC``."""
        if self.end is None:
            return ""
        return self.end.astimezone(UTC).strftime("%Y%m%d %H:%M:%S UTC")

    def describe(self) -> str:
        end = "now" if self.end is None else self.end.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return f"endDateTime={end!s} duration={self.duration}"


@dataclass(frozen=True)
class SymbolPlan:
    """The requests for one symbol (none when current) and the reason, in words."""

    symbol: str
    reason: str
    requests: tuple[PlannedRequest, ...] = field(default_factory=tuple)

    @property
    def current(self) -> bool:
        return not self.requests

    @property
    def requested_start(self) -> datetime | None:
        return min((r.start for r in self.requests), default=None)

    @property
    def requested_end(self) -> datetime | None:
        return max((r.until for r in self.requests), default=None)


def months_before(day: date, months: int) -> date:
    """The same day ``months`` calendar months earlier (clamped to the month's last day)."""
    index = day.year * 12 + (day.month - 1) - months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, monthrange(year, month)[1]))


def plan_symbol(symbol: str, coverage: Coverage, ctx: PlanContext) -> SymbolPlan:
    """The requests that bring ``symbol`` up to date, or none when it is current."""
    window_start = ctx.window_start
    if ctx.full_refresh:
        return _plan(
            symbol, ctx, window_start, f"full refresh: the whole {ctx.months}-month window from {_day(window_start)}"
        )
    if coverage.empty:
        return _plan(
            symbol,
            ctx,
            window_start,
            f"nothing in the warehouse: the whole {ctx.months}-month window from {_day(window_start)}",
        )

    backfill = coverage.covered_from is None or coverage.covered_from > window_start + COVERAGE_SLACK
    fresh = coverage.checked_at is not None and coverage.checked_at >= ctx.last_close
    last = coverage.last_bar_time
    if fresh and not backfill:
        last_text = _moment(last, ctx.bar_size) if last else "none (no data)"
        return SymbolPlan(
            symbol,
            f"current: last bar {last_text}, checked {_moment(coverage.checked_at, ctx.bar_size, exact=True)} "
            f"after the last close ({_moment(ctx.last_close, ctx.bar_size, exact=True)})",
        )
    if ctx.rewrites_history:
        return _plan(
            symbol,
            ctx,
            window_start,
            f"adjusted bars change with every dividend: the whole {ctx.months}-month window from {_day(window_start)}",
        )
    if backfill:
        covered = _day(coverage.covered_from) if coverage.covered_from else "no IBKR request on record"
        return _plan(
            symbol,
            ctx,
            window_start,
            f"backfill: the {ctx.months}-month window starts {_day(window_start)}, covered from {covered}",
        )
    if last is None:
        start = window_start
        why = "no bars yet (last answer had no data)"
    else:
        start = max(window_start, last - ctx.overlap)
        why = f"new sessions after the last bar {_moment(last, ctx.bar_size)}"
    return _plan(symbol, ctx, start, f"{why}; from {_moment(start, ctx.bar_size)} (overlap {_span(ctx.overlap)})")


def _plan(symbol: str, ctx: PlanContext, start: datetime, reason: str) -> SymbolPlan:
    return SymbolPlan(symbol, reason, tuple(page_requests(start, ctx.now, ctx.bar_size)))


def page_requests(start: datetime, now: datetime, bar_size: BarSize) -> list[PlannedRequest]:
    """Requests covering ``start`` .. ``now``, newest first.

    Daily and longer: one request ending now (``endDateTime`` empty, which ADJUSTED_LAST requires).
    Intraday: pages of the largest span IBKR accepts, each with an explicit end so that pages meet exactly
    however long the limiter holds them back.
    """
    if start >= now:
        start = now - timedelta(seconds=bar_size.seconds)
    page = bar_size.page_seconds
    if page is None:
        return [PlannedRequest(end=None, duration=daily_duration(start, now), start=start, until=now)]
    duration = bar_size.page_duration()
    count = max(1, math.ceil((now - start).total_seconds() / page))
    requests = []
    for k in range(count):
        end = now - timedelta(seconds=page * k)
        requests.append(
            PlannedRequest(end=end, duration=duration, start=max(start, end - timedelta(seconds=page)), until=end)
        )
    return requests


def _day(moment: datetime) -> str:
    return moment.astimezone(NY).date().isoformat()


def _moment(moment: datetime, bar_size: BarSize, exact: bool = False) -> str:
    if bar_size.intraday or exact:
        return moment.astimezone(NY).strftime("%Y-%m-%d %H:%M %Z")
    return _day(moment)


def _span(delta: timedelta) -> str:
    if delta >= timedelta(days=1) and delta % timedelta(days=1) == timedelta(0):
        return f"{delta.days} days"
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes / 60:g} h"


# --- the trading calendar: when did the last session end? --------------------------------------------


def last_completed_close(now: datetime, use_rth: bool = True) -> datetime:
    """The end of the last NYSE session that has finished by ``now`` (regular close, or 20:00 ET outside RTH).

    Uses the XNYS calendar of :mod:`market_calendar` (holidays and half days included).
    """
    now_utc = now.astimezone(UTC)
    closes = _session_closes(now_utc)
    last: datetime | None = None
    for session, close in closes:
        if not use_rth:
            close = datetime.combine(session, time(20, 0), NY)
        if close <= now_utc:
            last = close
    if last is None:  # pragma: no cover - there is always a session in 20 days
        raise RuntimeError(f"no completed NYSE session in the 20 days before {now_utc}")
    return last.astimezone(UTC)


def _session_closes(now_utc: datetime) -> list[tuple[date, datetime]]:
    """(session date, close) for the NYSE sessions of the last 20 days up to tomorrow."""
    first, last = (now_utc - timedelta(days=20)).date(), (now_utc + timedelta(days=1)).date()
    try:
        return session_closes(first, last)
    except Exception as error:  # noqa: BLE001 - e.g. a date beyond the calendar's known range
        import logging

        logging.getLogger(__name__).warning(
            "NYSE calendar unavailable (%s); assuming weekdays closing at 16:00 New York time", error
        )
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        return [(d, datetime.combine(d, time(16, 0), NY)) for d in days if d.weekday() < 5]
