"""What to ask IBKR for, per symbol, and why: a pure function of what the warehouse already holds.

Inputs per symbol (:class:`Coverage`, read from ``raw`` by the loader):

* ``last_bar_time``  -- the watermark: the latest landed bar for these bar settings;
* ``covered_from``   -- the earliest start any successful IBKR batch asked for (so a longer ``--months``
  is noticed and backfilled, while a stock listed since then is not asked for again every run);
* ``checked_at``     -- the moment the latest successful IBKR batch asked for data up to (its
  ``requested_end``: the planning moment of that run);
* ``held_from``      -- the earliest bar held or asked for: where a plan that replaces the whole history
  (``--full-refresh``, a re-adjusted split, ADJUSTED_LAST) must start.

A symbol is *current*, and costs no request, when it was checked up to a moment after the close of the last
completed session (a request made during the session only got the session so far, which was not landed) and its
covered window reaches back far enough. Otherwise the plan asks for what is missing: from the watermark minus a
short overlap (to pick up corrections of recent bars) up to now, or the whole window when nothing usable is there.
A longer window than the one covered (a larger ``--months``) adds the older part only, up to where the held bars
begin plus the same overlap, so that the bars already held are not asked for again (see :func:`plan_backfill`).
Daily and longer bars fit one request (``N D`` up to 365 days, whole years beyond); intraday windows are cut into
pages that IBKR accepts.
"""

from __future__ import annotations

import functools
import math
from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from ingest.ibkr.bar_sizes import BarSize, daily_duration
from ingest.raw_reads import Coverage
from market_calendar import EXCHANGE_TZ as NY

DEFAULT_MONTHS = 60
"""Five years of history: IBKR serves that in one request per symbol for daily bars (``5 Y``)."""
MAX_MONTHS = 1200
"""A hundred years: more than any IBKR history, and a window whose start is still a date."""
DAILY_OVERLAP = timedelta(days=7)
"""Daily bars: re-ask the last week (about five sessions) so that late corrections are picked up."""
INTRADAY_OVERLAP_BARS = 30
"""Intraday bars: re-ask the last 30 bars, for the same reasons as the daily week (late corrections, and enough
re-delivered bars for ingest/ibkr/readjustment.py to tell a re-based history, every bar off by one factor, from a
corrected bar or two). No measurement chose 30 (git log -S and the tests give none); what holds it is that the
overlap stays inside one page for every intraday bar size (the shortest page, 30 days of 8-hour bars, holds 90),
so it never costs more than one extra request per symbol, and a test checks that."""


@dataclass(frozen=True)
class PlanContext:
    """What is the same for every symbol of a run."""

    now: datetime
    """Aware; the moment the run plans for."""
    final_until: datetime
    """Aware; every bar that ends by this moment is final: for daily and longer bars the end of the last completed
    session (its close, or 20:00 New York time outside RTH); for intraday bars the moment the last bar became final
    (during a session, the session so far: see :func:`ingest.sessions.last_bar_end`). A symbol checked after it is
    current."""
    bar_size: BarSize
    months: int = DEFAULT_MONTHS
    full_refresh: bool = False
    rewrites_history: bool = False
    """ADJUSTED_LAST: each new dividend re-adjusts every earlier bar, so an update re-fetches the whole window
    (one adjustment basis per load) instead of the recent sessions only."""

    def __post_init__(self) -> None:
        if self.now.tzinfo is None or self.final_until.tzinfo is None:
            raise ValueError("PlanContext needs timezone-aware datetimes")
        if not 1 <= self.months <= MAX_MONTHS:
            raise ValueError(f"months must be 1..{MAX_MONTHS} (got {self.months})")

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
    """What to request for one symbol (nothing when current) and the reason, in words.

    The requests cover ``start`` .. ``until`` and are built only when asked for: a ``1 secs`` plan over years
    is hundreds of thousands of pages, and :attr:`request_count` tells so without building them.
    """

    symbol: str
    reason: str
    start: datetime | None = None
    """None: current, nothing to request."""
    until: datetime | None = None
    bar_size: BarSize | None = None
    held: tuple[datetime, datetime] | None = None
    """A stretch of ``start`` .. ``until`` that is not asked for because the warehouse holds it (a backfill of a
    longer window): the *older part* ``start`` .. ``held[0]`` ends there with an explicit endDateTime, and the
    *recent part* ``held[1]`` .. ``until`` is asked for only when ``held[1] < until``. None: all of it."""
    replaces_history: bool = False
    """The plan re-delivers every bar the warehouse holds (a re-adjusted history, or ADJUSTED_LAST): it starts at
    the earliest stored bar, and bars older than ``start`` are not landed. IBKR answers a duration in whole years
    (``2 Y``) with up to a year more than asked; landing that would push the next such plan a year further back
    every run."""

    @property
    def current(self) -> bool:
        return self.start is None

    @property
    def parts(self) -> tuple[tuple[datetime, datetime], ...]:
        """The stretches asked for, newest first: ``start`` .. ``until``, or the recent and the older part."""
        if self.start is None:
            return ()
        if self.held is None:
            return ((self.start, self.until),)
        older = (self.start, self.held[0])
        return ((self.held[1], self.until), older) if self.held[1] < self.until else (older,)

    @property
    def partial(self) -> bool:
        """Whether the plan leaves out bars the warehouse holds in the middle of its span (see ``held``)."""
        return self.held is not None

    @property
    def request_count(self) -> int:
        return sum(page_count(start, until, self.bar_size) for start, until in self.parts)

    @functools.cached_property
    def requests(self) -> tuple[PlannedRequest, ...]:
        """Newest first."""
        return tuple(self.request(k) for k in range(self.request_count))

    def request(self, k: int) -> PlannedRequest:
        """The k-th request, newest first (negative k counts from the oldest), without building the others."""
        count = self.request_count
        if not -count <= k < count:
            raise IndexError(k)
        k %= count
        for start, until in self.parts:
            pages = page_count(start, until, self.bar_size)
            if k < pages:
                # Only a part that ends at the planning moment may leave endDateTime empty ("now").
                return page_request(start, until, self.bar_size, k, explicit_end=until != self.until)
            k -= pages
        raise AssertionError("unreachable: k was checked against request_count")

    @property
    def requested_start(self) -> datetime | None:
        return None if self.start is None else self.request(-1).start

    @property
    def requested_end(self) -> datetime | None:
        """The newest moment asked for: ``until``, or the older part's end when that is all a backfill asks for.
        Coverage.checked_at is the largest of these, so an older part alone never makes a symbol look stale."""
        return None if self.start is None else self.parts[0][1]


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
        # Every stored bar too: a refresh is the remedy for a history that mixes units (a split IBKR re-adjusted
        # late, and dbt's no_unadjusted_splits says so), and a bar older than the window would keep the old ones.
        return plan_whole_window(
            symbol, coverage, ctx, f"full refresh: every stored bar and the {ctx.months}-month window"
        )
    if coverage.empty:
        return _plan(
            symbol,
            ctx,
            window_start,
            f"nothing in the warehouse: the whole {ctx.months}-month window from {_day(window_start)}",
        )

    # Windows start at a New York midnight, and covered_from is an earlier run's window start (or an older stored
    # bar): whether the window is covered is a question of New York days, not of hours.
    backfill = coverage.covered_from is None or coverage.covered_from.astimezone(NY).date() > window_start.date()
    fresh = coverage.checked_at is not None and coverage.checked_at >= ctx.final_until
    last = coverage.last_bar_time
    if fresh and not backfill:
        last_text = _moment(last, ctx.bar_size) if last else "none (no data)"
        return SymbolPlan(
            symbol,
            f"current: last bar {last_text}, checked {_moment(coverage.checked_at, ctx.bar_size, exact=True)} "
            f"after the last {'bar ended' if ctx.bar_size.intraday else 'close'} "
            f"({_moment(ctx.final_until, ctx.bar_size, exact=True)})",
        )
    if ctx.rewrites_history:
        return plan_whole_window(
            symbol, coverage, ctx, "adjusted bars change with every dividend: every stored bar and the window"
        )
    if backfill:
        return plan_backfill(symbol, coverage, ctx, fresh)
    if last is None:
        start = window_start
        why = "no bars yet (last answer had no data)"
    else:
        start = max(window_start, last - ctx.overlap)
        why = f"new sessions after the last bar {_moment(last, ctx.bar_size)}"
    return _plan(symbol, ctx, start, f"{why}; from {_moment(start, ctx.bar_size)} (overlap {_span(ctx.overlap)})")


def plan_backfill(symbol: str, coverage: Coverage, ctx: PlanContext, fresh: bool) -> SymbolPlan:
    """A window longer than the one covered (a larger ``--months``): only what is missing, in the fewest requests.

    * The older part: from the window's start up to where the held bars begin, plus the usual overlap. The
      overlap re-delivers a few stored bars so that ingest/ibkr/readjustment.py still notices a split that IBKR
      applied since they landed (and the loader then re-fetches the whole history, as for an incremental load).
    * The recent part, only when the symbol is not current: from the watermark minus the overlap up to now.

    When both parts are missing, daily and longer bars get one request over the whole window instead (one request
    is fewer than two, and under the pacing rules requests cost more than duplicate rows, which dbt dedupes);
    intraday bars get the pages of the two parts only.
    """
    window_start = ctx.window_start
    covered = _day(coverage.covered_from) if coverage.covered_from else "no IBKR request on record"
    reason = f"backfill: the {ctx.months}-month window starts {_day(window_start)}, covered from {covered}"
    last = coverage.last_bar_time
    if coverage.covered_from is None or last is None:
        # No IBKR request, or no bar, to stand on (bars from CSV files only, or an earlier answer without data).
        return _plan(symbol, ctx, window_start, f"{reason}: the whole window")
    # Where the held bars begin: the earliest start asked for, or the first bar when that came later (intraday
    # windows start at midnight; the overlap must reach bars that exist). A first bar older than any request (a
    # CSV file, a whole-years answer) does not count: only what IBKR was asked for is known to be there without gaps.
    held_since = max(coverage.covered_from, coverage.first_bar_time or coverage.covered_from)
    older_until = held_since + ctx.overlap
    recent_from = ctx.now if fresh else max(window_start, last - ctx.overlap)
    if not fresh and not ctx.bar_size.intraday:
        return _plan(
            symbol, ctx, window_start, f"{reason}; not current: the whole window in one request (fewer than two parts)"
        )
    if older_until >= recent_from:
        return _plan(symbol, ctx, window_start, f"{reason}; the held bars lie within the overlaps: the whole window")
    older = f"the older part {_day(window_start)}..{_moment(older_until, ctx.bar_size)} (overlap {_span(ctx.overlap)})"
    if fresh:
        reason = f"{reason}; current: only {older}"
    else:
        reason = f"{reason}; {older} and the new bars from {_moment(recent_from, ctx.bar_size)}"
    return SymbolPlan(
        symbol, reason, start=window_start, until=ctx.now, bar_size=ctx.bar_size, held=(older_until, recent_from)
    )


def plan_whole_window(symbol: str, coverage: Coverage, ctx: PlanContext, reason: str) -> SymbolPlan:
    """Everything again: the run's window, and further back if the warehouse already holds older bars.

    Used when the source re-adjusts the history (a split; ADJUSTED_LAST after every dividend): every stored bar
    of the symbol must be replaced, or the series would mix units (a jump at the oldest bar not re-delivered).
    """
    start = ctx.window_start
    if coverage.held_from is not None:
        start = min(start, coverage.held_from)
    return _plan(symbol, ctx, start, f"{reason}, from {_day(start)}", replaces_history=True)


def _plan(symbol: str, ctx: PlanContext, start: datetime, reason: str, replaces_history: bool = False) -> SymbolPlan:
    return SymbolPlan(
        symbol, reason, start=start, until=ctx.now, bar_size=ctx.bar_size, replaces_history=replaces_history
    )


def _first_instant(start: datetime, now: datetime, bar_size: BarSize) -> datetime:
    """A window that starts at or after ``now`` still asks for the latest bar."""
    return now - timedelta(seconds=bar_size.seconds) if start >= now else start


def page_count(start: datetime, now: datetime, bar_size: BarSize) -> int:
    """How many requests cover ``start`` .. ``now``: one for daily and longer bars, else one per page."""
    page = bar_size.page_seconds
    if page is None:
        return 1
    return max(1, math.ceil((now - _first_instant(start, now, bar_size)).total_seconds() / page))


def page_request(
    start: datetime, now: datetime, bar_size: BarSize, k: int, *, explicit_end: bool = False
) -> PlannedRequest:
    """The k-th (newest first) of the requests covering ``start`` .. ``now``.

    Daily and longer: one request ending now (``endDateTime`` empty, which ADJUSTED_LAST requires), or at ``now``
    given explicitly (``explicit_end``: the older part of a backfill, which ends in the past).
    Intraday: pages of the largest span IBKR accepts, each with an explicit end so that pages meet exactly
    however long the limiter holds them back; the oldest page asks only back to ``start`` (see
    :meth:`BarSize.page_duration`), so an update re-delivers its overlap, not a whole page.
    """
    start = _first_instant(start, now, bar_size)
    page = bar_size.page_seconds
    if page is None:
        end = now if explicit_end else None
        return PlannedRequest(end=end, duration=daily_duration(start, now), start=start, until=now)
    end = now - timedelta(seconds=page * k)
    page_start = max(start, end - timedelta(seconds=page))
    return PlannedRequest(end=end, duration=bar_size.page_duration(page_start, end), start=page_start, until=end)


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
