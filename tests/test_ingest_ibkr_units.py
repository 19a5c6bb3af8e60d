"""Pure parts of the IBKR loader: bar sizes, the planner, the pacing limiter, settings, bar conversion, CLI."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import UTC, date, datetime, time, timedelta

import pytest

from ingest.cli import bar_settings, build_parser
from ingest.ibkr.bar_sizes import VALID_BAR_SIZES, BarSizeError, daily_duration, parse_bar_size
from ingest.ibkr.config import IbkrConfigError, IbkrSettings
from ingest.ibkr.loader import (
    LoadSummary,
    NotASession,
    SharedContract,
    SymbolResult,
    days_without_a_session,
    redelivered_spans,
    to_raw_bars,
)
from ingest.ibkr.options import LoadOptions
from ingest.ibkr.pacing import PacingLimiter, PacingPolicy, RequestKey, estimate_seconds
from ingest.ibkr.planner import (
    DAILY_OVERLAP,
    INTRADAY_OVERLAP_BARS,
    PlanContext,
    months_before,
    page_count,
    page_request,
    plan_symbol,
    plan_whole_window,
)
from ingest.ibkr.readjustment import detect_readjustment
from ingest.ibkr.session_types import ContractRef, Outcome, SourceBar
from ingest.raw_reads import Coverage, StoredBar
from ingest.raw_tables import BarSettings, RawBar
from ingest.report import describe_duration, format_summary
from ingest.sessions import FinalBars, last_bar_end, last_completed_close
from ingest.watchlist import DEFAULT_WATCHLIST, WatchlistEntry, select_entries
from market_calendar import EXCHANGE_TZ as NY

UTC = UTC
DAY = parse_bar_size("1 day")
# Tuesday 2026-11-24, 17:00 New York: after that day's close.
NOW = datetime(2026, 11, 24, 17, 0, tzinfo=NY)
LAST_CLOSE = datetime(2026, 11, 24, 16, 0, tzinfo=NY)


# --- bar sizes -----------------------------------------------------------------------------------------


def test_bar_sizes_are_normalised_to_ibkr_spelling_and_unknown_ones_rejected():
    assert parse_bar_size("1 day").text == "1 day"
    assert parse_bar_size("1 days").text == "1 day"
    assert parse_bar_size("5 min").text == "5 mins"
    assert parse_bar_size("1 mins").text == "1 min"
    assert parse_bar_size("1h").text == "1 hour"
    assert parse_bar_size("30 secs").strict_pacing and not parse_bar_size("1 min").strict_pacing
    with pytest.raises(BarSizeError, match="IBKR's bar sizes are"):
        parse_bar_size("7 mins")
    with pytest.raises(BarSizeError):
        parse_bar_size("daily")


def test_daily_durations_up_to_365_days_are_days_and_longer_ones_whole_years():
    end = datetime(2026, 11, 24, 17, 0, tzinfo=NY)
    assert daily_duration(end - timedelta(days=10), end) == "11 D"
    assert daily_duration(end - timedelta(days=363), end) == "364 D"
    start_12m = datetime.combine(months_before(end.date(), 12), time(0), NY)
    assert daily_duration(start_12m, end) == "1 Y"  # 366 days: must be years, and 1 Y reaches back 12 months
    start_24m = datetime.combine(months_before(end.date(), 24), time(0), NY)
    assert daily_duration(start_24m, end) == "2 Y"
    assert daily_duration(start_24m - timedelta(days=1), end) == "3 Y"


def test_daily_durations_count_new_york_days_after_the_utc_date_has_rolled_over():
    # 19:17 New York time on 24 November is already 25 November in UTC; the window is still 24 Nov .. 24 Nov.
    end = datetime(2026, 11, 24, 19, 17, tzinfo=NY).astimezone(UTC)
    assert end.date() == date(2026, 11, 25)
    assert daily_duration(datetime(2025, 11, 24, tzinfo=NY), end) == "1 Y"
    assert daily_duration(datetime(2024, 11, 24, tzinfo=NY), end) == "2 Y"
    assert daily_duration(datetime(2026, 11, 14, tzinfo=NY), end) == "11 D"


def test_months_before_clamps_to_the_end_of_the_month():
    assert months_before(date(2026, 3, 31), 1) == date(2026, 2, 28)
    assert months_before(date(2026, 11, 24), 12) == date(2025, 11, 24)
    assert months_before(date(2024, 2, 29), 12) == date(2023, 2, 28)


# --- planner -------------------------------------------------------------------------------------------


def ctx(**overrides) -> PlanContext:
    values = {"now": NOW, "final_until": LAST_CLOSE, "bar_size": DAY, "months": 12}
    values.update(overrides)
    return PlanContext(**values)


def test_an_empty_warehouse_asks_for_the_whole_window_in_one_request():
    plan = plan_symbol("AAPL", Coverage(), ctx())
    assert len(plan.requests) == 1
    request = plan.requests[0]
    assert request.end is None and request.end_text == "" and request.duration == "1 Y"
    assert plan.requested_start == datetime(2025, 11, 24, tzinfo=NY)
    assert "nothing in the warehouse" in plan.reason


def test_a_symbol_checked_after_the_last_close_costs_no_request():
    coverage = Coverage(
        last_bar_time=datetime(2026, 11, 24, tzinfo=NY),
        covered_from=datetime(2025, 11, 24, tzinfo=NY),
        checked_at=LAST_CLOSE + timedelta(minutes=30),
    )
    plan = plan_symbol("AAPL", coverage, ctx())
    assert plan.current and plan.requests == ()
    assert plan.reason.startswith("current")


def test_a_symbol_with_new_sessions_asks_only_for_them_plus_an_overlap():
    coverage = Coverage(
        last_bar_time=datetime(2026, 11, 20, tzinfo=NY),  # Friday
        covered_from=datetime(2025, 11, 1, tzinfo=NY),
        checked_at=datetime(2026, 11, 20, 18, 0, tzinfo=NY),
    )
    plan = plan_symbol("AAPL", coverage, ctx())
    assert len(plan.requests) == 1
    assert plan.requested_start == datetime(2026, 11, 13, tzinfo=NY)  # one week of overlap
    assert plan.requests[0].duration == "12 D"  # 13 through 24 November, both days included
    assert "overlap 7 days" in plan.reason


# The 12-month window held (a "1 Y" load on 24 November 2026), checked after the last close: current.
HELD_12_MONTHS = Coverage(
    last_bar_time=datetime(2026, 11, 24, tzinfo=NY),
    covered_from=datetime(2025, 11, 24, tzinfo=NY),
    checked_at=LAST_CLOSE + timedelta(hours=1),
    first_bar_time=datetime(2025, 11, 24, tzinfo=NY),
)


def test_a_longer_window_on_a_current_symbol_asks_for_the_older_part_only():
    """--months 12 -> 24: the year held is not asked for again, only the year before it plus a week of overlap (the
    re-delivered bars a split is noticed by), with an explicit end; full refresh still takes everything."""
    plan = plan_symbol("AAPL", HELD_12_MONTHS, ctx(months=24))
    (request,) = plan.requests
    assert request.end == datetime(2025, 12, 1, tzinfo=NY) and request.end_text == "20251201 05:00:00 UTC"
    assert request.duration == "2 Y"  # 373 days: whole years (the loader lands nothing older than the window)
    assert plan.requested_start == datetime(2024, 11, 24, tzinfo=NY) and plan.partial
    assert "current: only the older part 2024-11-24..2025-12-01 (overlap 7 days)" in plan.reason
    # What its batch records keeps the coverage right: requested_end is older than the last check, which stays the
    # latest one (a max), so the symbol is still current; covered from the window's start, the next run plans nothing.
    assert plan.requested_end == datetime(2025, 12, 1, tzinfo=NY)
    after = Coverage(
        last_bar_time=HELD_12_MONTHS.last_bar_time,
        covered_from=min(HELD_12_MONTHS.covered_from, plan.requested_start),
        checked_at=max(HELD_12_MONTHS.checked_at, plan.requested_end),
        first_bar_time=plan.requested_start,
    )
    assert after.checked_at == HELD_12_MONTHS.checked_at
    assert plan_symbol("AAPL", after, ctx(months=24)).current
    refresh = plan_symbol("AAPL", HELD_12_MONTHS, ctx(full_refresh=True))
    assert refresh.requests[0].duration == "1 Y" and "full refresh" in refresh.reason


def test_a_longer_window_on_a_symbol_with_new_sessions_is_one_daily_request_over_the_whole_window():
    """Both parts are missing: for daily bars one request over the whole window is fewer than two (requests cost
    more than duplicate rows under the pacing rules, and dbt dedupes rows)."""
    stale = Coverage(
        last_bar_time=datetime(2026, 11, 20, tzinfo=NY),
        covered_from=HELD_12_MONTHS.covered_from,
        checked_at=datetime(2026, 11, 20, 18, 0, tzinfo=NY),
        first_bar_time=HELD_12_MONTHS.first_bar_time,
    )
    plan = plan_symbol("AAPL", stale, ctx(months=24))
    (request,) = plan.requests
    assert request.end is None and request.duration == "2 Y" and not plan.partial
    assert plan.requested_start == datetime(2024, 11, 24, tzinfo=NY) and plan.requested_end == NOW
    assert "not current: the whole window in one request (fewer than two parts)" in plan.reason


def test_a_longer_intraday_window_asks_for_the_pages_of_the_older_and_the_recent_part_only():
    five = parse_bar_size("5 mins")
    older_until = datetime(2026, 10, 26, 12, 0, tzinfo=NY)  # the first held bar (Monday 09:30) + 30 bars
    recent_from = datetime(2026, 11, 20, 13, 25, tzinfo=NY)  # the last held bar (Friday 15:55) - 30 bars
    coverage = Coverage(
        last_bar_time=datetime(2026, 11, 20, 15, 55, tzinfo=NY),
        covered_from=datetime(2026, 10, 24, tzinfo=NY),  # a 1-month load's window starts at midnight, a Saturday
        checked_at=datetime(2026, 11, 20, 18, 0, tzinfo=NY),
        first_bar_time=datetime(2026, 10, 26, 9, 30, tzinfo=NY),
    )
    plan = plan_symbol("AAPL", coverage, ctx(bar_size=five, months=2))
    pages = plan.requests
    # 1 page for the recent 4 days, 5 for the older 32.5 days; the whole window would be 9.
    assert plan.request_count == len(pages) == 6
    assert all(p.end is not None for p in pages)
    # Each part's oldest page asks back to the part's start only (New York days, both ends included), not 7 days.
    assert [p.duration for p in pages] == ["5 D", "7 D", "7 D", "7 D", "7 D", "5 D"]
    assert pages[0].end == NOW and pages[0].start == recent_from
    assert pages[1].end == older_until and pages[-1].start == datetime(2026, 9, 24, tzinfo=NY)
    assert not any(p.start < recent_from and p.until > older_until for p in pages)  # the held month is not asked
    assert plan.requested_start == datetime(2026, 9, 24, tzinfo=NY) and plan.requested_end == NOW
    assert "the older part 2026-09-24..2026-10-26 12:00 EDT (overlap 2.5 h)" in plan.reason
    assert "new bars from 2026-11-20 13:25 EST" in plan.reason
    # The stored bars a split is noticed by: the overlaps of both parts.
    assert redelivered_spans(plan, coverage.last_bar_time - ctx(bar_size=five).overlap) == [
        (recent_from, None),
        (datetime(2026, 9, 24, tzinfo=NY), older_until),
    ]


def test_a_longer_intraday_window_over_a_few_held_bars_asks_for_the_whole_window():
    """Held bars that lie within the two overlaps (30 bars each way) leave no stretch to skip: one span of pages."""
    five = parse_bar_size("5 mins")
    coverage = Coverage(
        last_bar_time=datetime(2026, 11, 20, 12, 0, tzinfo=NY),  # 30 bars after the first
        covered_from=datetime(2026, 11, 20, 9, 30, tzinfo=NY),
        checked_at=datetime(2026, 11, 20, 18, 0, tzinfo=NY),
        first_bar_time=datetime(2026, 11, 20, 9, 30, tzinfo=NY),
    )
    plan = plan_symbol("AAPL", coverage, ctx(bar_size=five, months=2))
    assert not plan.partial and plan.parts == ((datetime(2026, 9, 24, tzinfo=NY), NOW),)
    assert plan.request_count == 9  # every page of the two months, each once
    assert "the held bars lie within the overlaps: the whole window" in plan.reason


def test_a_backfill_of_the_older_part_compares_its_overlap_and_re_fetches_the_whole_history_on_a_split():
    """A split between the two loads: the older part re-delivers the first held week in the new units. Those
    stored bars are read for the comparison, and a partial plan leaves stored bars out (the held year), so the loader
    fetches the whole history again (tests/test_ingest_ibkr.py runs this through the CLI)."""
    plan = plan_symbol("AAPL", HELD_12_MONTHS, ctx(months=24))
    spans = redelivered_spans(plan, HELD_12_MONTHS.last_bar_time - DAILY_OVERLAP)
    assert spans == [(datetime(2024, 11, 24, tzinfo=NY), datetime(2025, 12, 1, tzinfo=NY))]
    held = [RawBar("AAPL", datetime(2025, 11, d, tzinfo=NY), date(2025, 11, d), 200.0 + d, 201.0 + d, 199.0 + d,
                   200.0 + d, 1_000.0, None, None, 1, "NASDAQ", "USD") for d in (24, 25, 26, 28)]  # fmt: skip
    in_span = {b.bar_time: StoredBar(b.bar_time, b.open, b.high, b.low, b.close, b.volume) for b in held
               if any(start <= b.bar_time <= until for start, until in spans)}  # fmt: skip
    split = [
        b._replace(open=b.open / 4, high=b.high / 4, low=b.low / 4, close=b.close / 4, volume=4_000.0) for b in held
    ]
    assert detect_readjustment(split, in_span).factor == pytest.approx(0.25)
    assert plan.partial  # what makes the loader re-fetch the whole history rather than land the older part


def test_coverage_is_judged_in_new_york_days():
    """Covered from any hour of the window's first New York day is covered; from the next day on it is not."""
    window_start = ctx().window_start
    for covered_from, backfill in [
        (window_start, False),
        (window_start + timedelta(hours=23), False),
        (window_start + timedelta(days=1), True),
    ]:
        coverage = Coverage(
            window_start + timedelta(days=300), covered_from, checked_at=LAST_CLOSE + timedelta(hours=1)
        )
        assert ("backfill" in plan_symbol("AAPL", coverage, ctx()).reason) is backfill, covered_from


def test_the_intraday_overlap_fits_one_page_of_every_bar_size():
    """The overlap re-asks INTRADAY_OVERLAP_BARS bars and never more than one page's span (one extra request)."""
    for text in VALID_BAR_SIZES:
        bar_size = parse_bar_size(text)
        if bar_size.intraday:
            overlap = ctx(bar_size=bar_size).overlap
            assert overlap == timedelta(seconds=bar_size.seconds * INTRADAY_OVERLAP_BARS)
            assert overlap <= timedelta(seconds=bar_size.page_seconds), text


def test_adjusted_bars_are_fetched_whole_when_anything_is_new():
    stale = Coverage(
        last_bar_time=datetime(2026, 11, 20, tzinfo=NY),
        covered_from=datetime(2025, 11, 1, tzinfo=NY),
        checked_at=datetime(2026, 11, 20, 18, 0, tzinfo=NY),
    )
    plan = plan_symbol("AAPL", stale, ctx(rewrites_history=True))
    # Back to the oldest stored bar (1 November 2025), not only the 12-month window (24 November 2025): a bar left
    # out would keep the dividend adjustment of an earlier load.
    assert plan.requested_start == datetime(2025, 11, 1, tzinfo=NY) and plan.replaces_history
    assert plan.requests[0].duration == "2 Y" and "dividend" in plan.reason
    fresh = Coverage(stale.last_bar_time, stale.covered_from, checked_at=LAST_CLOSE + timedelta(minutes=1))
    assert plan_symbol("AAPL", fresh, ctx(rewrites_history=True)).current


def test_a_whole_history_re_fetch_reaches_the_oldest_stored_bar_even_before_the_oldest_request():
    # A "2 Y" answer landed bars from November 2024 although the batch asked from May 2025 on.
    coverage = Coverage(
        last_bar_time=datetime(2026, 11, 20, tzinfo=NY),
        first_bar_time=datetime(2024, 11, 20, tzinfo=NY),
        covered_from=datetime(2025, 5, 4, tzinfo=NY),
        checked_at=datetime(2026, 11, 20, 18, 0, tzinfo=NY),
    )
    assert coverage.held_from == datetime(2024, 11, 20, tzinfo=NY)
    plan = plan_whole_window("AAPL", coverage, ctx(), "history re-adjusted")
    assert plan.requested_start == datetime(2024, 11, 20, tzinfo=NY) and plan.replaces_history
    assert plan.requests[0].duration == "3 Y" and plan.reason.endswith("from 2024-11-20")
    assert plan_symbol("AAPL", coverage, ctx(full_refresh=True)).requested_start == datetime(2024, 11, 20, tzinfo=NY)
    # Nothing stored before the window: the window.
    recent = Coverage(coverage.last_bar_time, covered_from=datetime(2025, 12, 1, tzinfo=NY), checked_at=NOW)
    assert plan_whole_window("AAPL", recent, ctx(), "x").requested_start == datetime(2025, 11, 24, tzinfo=NY)
    # An ordinary incremental plan lands whatever comes back (its overlap is a correction, never harmful).
    assert not plan_symbol("AAPL", coverage, ctx()).replaces_history


def test_a_symbol_that_had_no_data_is_current_until_the_next_close():
    coverage = Coverage(covered_from=datetime(2025, 11, 24, tzinfo=NY), checked_at=LAST_CLOSE + timedelta(minutes=5))
    assert plan_symbol("NEWCO", coverage, ctx()).current
    stale = Coverage(covered_from=datetime(2025, 11, 24, tzinfo=NY), checked_at=LAST_CLOSE - timedelta(days=1))
    assert not plan_symbol("NEWCO", stale, ctx()).current


def test_intraday_windows_are_paged_with_explicit_ends_that_meet_exactly():
    five = parse_bar_size("5 mins")
    plan = plan_symbol("AAPL", Coverage(), ctx(bar_size=five, months=1))
    pages = plan.requests
    assert [p.duration for p in pages] == ["7 D"] * 4 + ["4 D"]  # the oldest reaches back to Saturday 24 October only
    assert all(p.end is not None for p in pages)
    assert len(pages) == 5  # 31 days in pages of 7
    for newer, older in zip(pages, pages[1:], strict=False):
        assert older.end == newer.end - timedelta(days=7)
    assert pages[0].end == NOW and pages[-1].start == datetime(2026, 10, 24, tzinfo=NY)
    assert pages[0].end_text == "20261124 22:00:00 UTC"
    seconds = plan_symbol("AAPL", Coverage(), ctx(bar_size=parse_bar_size("30 secs"), months=1)).requests
    assert seconds[0].duration == "28800 S" and len(seconds) == 96  # 31 days 17 hours in 8-hour pages
    assert seconds[-1].duration == "3600 S"  # the oldest page: 01:00 back to midnight


@pytest.mark.parametrize("bar", ["1 secs", "5 secs", "30 secs"])
def test_an_oldest_page_of_seconds_asks_at_least_the_shortest_duration_ibkr_lists(bar):
    """A window 10 seconds longer than whole 8-hour pages: its oldest page of 30-second bars asked `10 S`, less than
    one bar and in no row of IBKR's table of valid durations and bar sizes, whose shortest is `60 S` (bars of 1 sec
    to 1 min). It asks `60 S`: a bar or two the warehouse has, in a duration the table lists."""
    size = parse_bar_size(bar)
    now = datetime(2026, 11, 24, 10, 0, 10, tzinfo=NY)
    start = now - timedelta(seconds=size.page_seconds * 3 + 10)
    assert page_count(start, now, size) == 4
    assert [page_request(start, now, size, k).duration for k in range(3)] == [f"{size.page_seconds} S"] * 3
    oldest = page_request(start, now, size, 3)
    assert (oldest.duration, oldest.start, oldest.until) == ("60 S", start, start + timedelta(seconds=10))


def test_last_completed_close_uses_the_nyse_calendar():
    # Thanksgiving 2026 is Thursday 26 November; the Friday after is a half day (13:00).
    thanksgiving = datetime(2026, 11, 26, 12, 0, tzinfo=NY)
    assert last_completed_close(thanksgiving) == datetime(2026, 11, 25, 16, 0, tzinfo=NY)
    assert last_completed_close(datetime(2026, 11, 27, 14, 0, tzinfo=NY)) == datetime(2026, 11, 27, 13, 0, tzinfo=NY)
    assert last_completed_close(datetime(2026, 11, 24, 15, 0, tzinfo=NY), use_rth=False) == datetime(
        2026, 11, 23, 20, 0, tzinfo=NY
    )


@pytest.mark.parametrize(
    ("now", "bar_seconds", "use_rth", "ended"),
    [
        # The first Monday of daylight saving time, and a 30-minute bar: the 10:00 bar ended at 10:30.
        (datetime(2026, 3, 9, 10, 40), 1800, True, datetime(2026, 3, 9, 10, 30)),
        # Before the open (regular hours) no bar of today has ended: the last close.
        (datetime(2026, 3, 9, 9, 20), 300, True, datetime(2026, 3, 6, 16, 0)),
        (datetime(2026, 3, 9, 9, 35), 1800, True, datetime(2026, 3, 6, 16, 0)),
        # With pre-market trading the session began at 04:00.
        (datetime(2026, 11, 30, 8, 7), 3600, False, datetime(2026, 11, 30, 8, 0)),
        (datetime(2026, 11, 30, 3, 0), 300, False, datetime(2026, 11, 27, 20, 0)),
        # The half day after Thanksgiving: closed at 13:00; Thanksgiving itself has no session.
        (datetime(2026, 11, 27, 12, 10), 300, True, datetime(2026, 11, 27, 12, 10)),
        (datetime(2026, 11, 27, 15, 0), 3600, True, datetime(2026, 11, 27, 13, 0)),
        (datetime(2026, 11, 26, 12, 0), 300, True, datetime(2026, 11, 25, 16, 0)),
        (datetime(2026, 11, 28, 12, 0), 300, False, datetime(2026, 11, 27, 20, 0)),
        # The first hourly bar, labelled 09:30 at the open, is final at 10:30, the next at 11:00.
        (datetime(2026, 11, 24, 10, 5), 3600, True, datetime(2026, 11, 23, 16, 0)),
        (datetime(2026, 11, 24, 10, 35), 3600, True, datetime(2026, 11, 24, 10, 30)),
        (datetime(2026, 11, 24, 11, 5), 3600, True, datetime(2026, 11, 24, 11, 0)),
        # Bars whose length does not divide the session: the 3-hour 12:00 bar is final at 15:00, the last at the
        # close; the half day's 4-hour bars both at its 13:00 close; 8-hour bars at the close alone.
        (datetime(2026, 11, 24, 15, 30), 3 * 3600, True, datetime(2026, 11, 24, 15, 0)),
        (datetime(2026, 11, 27, 12, 30), 4 * 3600, True, datetime(2026, 11, 25, 16, 0)),
        (datetime(2026, 11, 27, 13, 5), 4 * 3600, True, datetime(2026, 11, 27, 13, 0)),
        (datetime(2026, 11, 24, 15, 55), 8 * 3600, True, datetime(2026, 11, 23, 16, 0)),
        (datetime(2026, 11, 24, 12, 5), 8 * 3600, False, datetime(2026, 11, 24, 12, 0)),
        # 30-second bars from the open.
        (datetime(2026, 11, 24, 9, 30, 45), 30, True, datetime(2026, 11, 24, 9, 30, 30)),
        (datetime(2026, 11, 24, 9, 30, 15), 30, True, datetime(2026, 11, 23, 16, 0)),
    ],
)
def test_the_last_intraday_bar_end_is_the_session_so_far_while_it_trades(now, bar_seconds, use_rth, ended):
    assert last_bar_end(now.replace(tzinfo=NY), bar_seconds, use_rth) == ended.replace(tzinfo=NY)


# --- pacing limiter ------------------------------------------------------------------------------------


def key(contract: str = "265598", end: str = "", duration: str = "1 Y", what: str = "TRADES") -> RequestKey:
    return RequestKey(contract, "SMART", what, end, duration, "1 day", True)


def send(limiter: PacingLimiter, keys: list[RequestKey], start: float = 0.0) -> list[float]:
    """Send requests one after another as early as the limiter allows; returns the send times."""
    now, times = start, []
    for k in keys:
        now += limiter.delay(k, now)
        limiter.record(k, now)
        times.append(now)
    return times


def test_identical_requests_are_15_seconds_apart():
    limiter = PacingLimiter(PacingPolicy(), clock=lambda: 0.0)
    times = send(limiter, [key(), key(), key(duration="2 Y")])
    assert times[1] - times[0] >= 15.0
    assert times[2] == times[1]  # a different request is not held back


def test_at_most_five_requests_per_contract_in_two_seconds():
    limiter = PacingLimiter(PacingPolicy(), clock=lambda: 0.0)
    times = send(limiter, [key(end=f"2026010{i} 00:00:00 UTC") for i in range(1, 10)])
    for i in range(5, len(times)):
        assert times[i] - times[i - 5] > 2.0, "6 requests for one contract within 2 s"
    assert times[4] < 0.5  # the first five go at once


def test_strict_mode_keeps_to_60_requests_in_ten_minutes_and_default_mode_does_not_apply_it():
    strict = PacingLimiter(PacingPolicy.for_bar_size(parse_bar_size("30 secs")), clock=lambda: 0.0)
    assert strict.policy.strict
    times = send(strict, [key(contract=str(i)) for i in range(130)])
    for i in range(60, len(times)):
        assert times[i] - times[i - 60] > 600.0
    assert times[-1] > 1200.0
    daily = PacingLimiter(PacingPolicy.for_bar_size(DAY), clock=lambda: 0.0)
    assert not daily.policy.strict
    assert send(daily, [key(contract=str(i)) for i in range(130)])[-1] < 5.0
    forced = PacingPolicy.for_bar_size(DAY, strict=True)
    assert forced.strict


def test_requests_are_spaced_below_the_client_throttle_of_45_per_second():
    limiter = PacingLimiter(PacingPolicy(), clock=lambda: 0.0)
    times = send(limiter, [key(contract=str(i)) for i in range(200)])
    for i in range(45, len(times)):
        assert times[i] - times[i - 45] > 1.0
    assert times[-1] < 200 / 42 + 1.5


def test_a_cooldown_holds_back_new_historical_requests():
    now = [100.0]
    limiter = PacingLimiter(PacingPolicy(), clock=lambda: now[0])
    limiter.cooldown(5.0)
    assert limiter.delay(key(), 100.0) == pytest.approx(5.0)
    assert limiter.delay(None, 100.0) == 0.0  # contract details are not historical requests


def test_no_more_than_max_open_requests_are_open_at_once():
    async def scenario() -> int:
        limiter = PacingLimiter(PacingPolicy(max_open=3, message_rate=1000))
        peak = 0

        async def request(i: int) -> None:
            nonlocal peak
            async with limiter.historical(key(contract=str(i))):
                peak = max(peak, limiter.open_requests)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(request(i) for i in range(12)))
        return peak

    assert asyncio.run(scenario()) == 3
    with pytest.raises(ValueError, match="at most 50"):
        PacingPolicy(max_open=51)


# --- settings ------------------------------------------------------------------------------------------


def test_ibkr_settings_from_config_with_defaults_and_clear_errors():
    assert IbkrSettings.from_config({}) == IbkrSettings(host="127.0.0.1", port=4002, client_id=17)
    settings = IbkrSettings.from_config({"IBKR_HOST": "10.0.0.5", "IBKR_PORT": "7497", "IBKR_CLIENT_ID": "3"})
    assert (settings.host, settings.port, settings.client_id) == ("10.0.0.5", 7497, 3)
    with pytest.raises(IbkrConfigError, match="IBKR_PORT"):
        IbkrSettings.from_config({"IBKR_PORT": "gateway"})
    with pytest.raises(IbkrConfigError, match="IBKR_REQUEST_TIMEOUT"):
        IbkrSettings.from_config({"IBKR_REQUEST_TIMEOUT": "0"})


# --- bars as landed ------------------------------------------------------------------------------------


def test_daily_bars_land_at_new_york_midnight_of_their_session_and_intraday_at_their_instant():
    ref = ContractRef("AAPL", 265598, "NASDAQ")
    daily = Outcome("ok", [SourceBar(date(2026, 11, 24), 1.0, 2.0, 0.5, 1.5, 100.0, 1.2, 7)])
    (bar,) = to_raw_bars(ref, [daily], intraday=False)
    assert bar.bar_time == datetime(2026, 11, 24, 0, 0, tzinfo=NY) and bar.session_date == date(2026, 11, 24)
    assert (bar.con_id, bar.exchange, bar.currency, bar.wap, bar.bar_count) == (265598, "NASDAQ", "USD", 1.2, 7)
    late = datetime(2026, 11, 25, 0, 30, tzinfo=UTC)  # 19:30 New York on the 24th (after hours)
    page1 = Outcome("ok", [SourceBar(late, 1, 1, 1, 1, 1, 1, 1)])
    page2 = Outcome(
        "ok", [SourceBar(late, 1, 1, 1, 1, 1, 1, 1), SourceBar(late - timedelta(hours=1), 2, 2, 2, 2, 2, 2, 2)]
    )
    rows = to_raw_bars(ref, [page1, page2], intraday=True)
    assert [r.session_date for r in rows] == [date(2026, 11, 24)] * 2  # the repeated bar is kept once
    assert rows[0].bar_time < rows[1].bar_time


def test_bars_on_days_without_a_session_are_told_apart_by_the_new_york_date_dbt_checks():
    """Intraday bars by their New York date (19:30 on the Friday after Thanksgiving is 00:30 UTC on Saturday: a
    session), daily and weekly bars by the date the gateway wrote, whatever its bar size."""
    ref = ContractRef("AAPL", 265598, "NASDAQ")
    intraday = [
        datetime(2026, 11, 26, 15, 0, tzinfo=UTC),  # Thanksgiving, 10:00 New York
        datetime(2026, 11, 26, 15, 5, tzinfo=UTC),
        datetime(2026, 11, 28, 0, 30, tzinfo=UTC),  # Friday 27th, 19:30 New York: a (half day) session
        datetime(2026, 11, 29, 15, 0, tzinfo=UTC),  # a Sunday
    ]
    rows = to_raw_bars(ref, [Outcome("ok", [SourceBar(t, 1, 1, 1, 1, 1, 1, 1) for t in intraday])], intraday=True)
    assert days_without_a_session(rows) == [
        NotASession(date(2026, 11, 26), "2026-11-26 is an exchange holiday: there was no session that day", 2),
        NotASession(date(2026, 11, 29), "2026-11-29 is a Sunday: the exchange has no session then", 1),
    ]
    daily = [date(1999, 12, 31), date(2026, 11, 27), date(2026, 11, 28)]  # also a week dated by its Saturday
    rows = to_raw_bars(ref, [Outcome("ok", [SourceBar(d, 1, 1, 1, 1, 1, 1, 1) for d in daily])], intraday=False)
    assert [(d.session_date, d.bars) for d in days_without_a_session(rows)] == [
        (date(1999, 12, 31), 1),
        (date(2026, 11, 28), 1),
    ]


# --- CLI -----------------------------------------------------------------------------------------------


def test_cli_symbols_override_the_watchlist_keep_its_exchanges_and_limit_applies():
    parser = build_parser()
    args = parser.parse_args(["--symbols", "aapl,brk.b", "NEWCO", "--limit", "2"])
    entries = select_entries(args.watchlist, args.symbols, args.limit)
    assert [(e.symbol, e.primary_exchange) for e in entries] == [("AAPL", "NASDAQ"), ("BRK B", "NYSE")]
    defaults = parser.parse_args([])
    assert (defaults.source, defaults.months, bar_settings(defaults, {})) == (
        "ibkr",
        60,
        BarSettings("1 day", "TRADES"),
    )
    assert parser.parse_args(["--no-rth", "--what-to-show", "adjusted_last"]).what_to_show == "ADJUSTED_LAST"
    with pytest.raises(ValueError, match="invalid symbol"):
        select_entries(DEFAULT_WATCHLIST, ["DROP;TABLE"])


# --- bars that are not final, re-adjusted histories, plan sizes ------------------------------------------


def test_a_session_in_progress_is_not_final_until_its_close():
    trading = FinalBars(datetime(2026, 11, 24, 11, 30, tzinfo=NY))  # Tuesday, market open
    assert trading.daily(date(2026, 11, 23)) and not trading.daily(date(2026, 11, 24))
    assert not trading.daily(date(2026, 11, 25))
    assert "has not ended yet" in trading.why_not_daily(date(2026, 11, 24))
    assert "future" in trading.why_not_daily(date(2026, 11, 25))
    after_close = FinalBars(datetime(2026, 11, 24, 16, 0, tzinfo=NY))
    assert after_close.daily(date(2026, 11, 24))
    extended = FinalBars(datetime(2026, 11, 24, 17, 0, tzinfo=NY), use_rth=False)  # after hours run to 20:00
    assert not extended.daily(date(2026, 11, 24))
    half_day = FinalBars(datetime(2026, 11, 27, 13, 5, tzinfo=NY))  # the Friday after Thanksgiving closes at 13:00
    assert half_day.daily(date(2026, 11, 27))
    saturday = FinalBars(datetime(2026, 11, 28, 12, 0, tzinfo=NY))  # no session today: every date up to today
    assert saturday.daily(date(2026, 11, 28))
    bar_start = datetime(2026, 11, 24, 11, 0, tzinfo=NY)
    assert trading.intraday(bar_start, 1800) and not trading.intraday(bar_start, 3600)
    # A session's last bar ends at the session's end at the latest: the 3-hour bar labelled 15:00, the half day's
    # 4-hour bar labelled 12:00 (with after-hours trading, 20:00).
    fifteen, tuesday = datetime(2026, 11, 24, 15, 0, tzinfo=NY), date(2026, 11, 24)
    assert after_close.intraday(fifteen, 3 * 3600, tuesday) and not after_close.intraday(fifteen, 3 * 3600)
    assert not extended.intraday(fifteen, 3 * 3600, tuesday)
    assert FinalBars(datetime(2026, 11, 24, 18, 0, tzinfo=NY), use_rth=False).intraday(fifteen, 3 * 3600, tuesday)
    assert half_day.intraday(datetime(2026, 11, 27, 12, 0, tzinfo=NY), 4 * 3600, date(2026, 11, 27))
    assert not trading.intraday(bar_start, 3600, tuesday)  # a bar that ends before the session's end: its length


@pytest.mark.parametrize(
    ("period", "dated", "last_close"),
    [
        # An ordinary week: IBKR dates a weekly bar by a day of its week (which one differs: both are this week's).
        ("week", [date(2026, 11, 16), date(2026, 11, 20)], datetime(2026, 11, 20, 16, 0, tzinfo=NY)),
        # Thanksgiving week: no session on Thursday, and Friday closes at 13:00.
        ("week", [date(2026, 11, 23), date(2026, 11, 27)], datetime(2026, 11, 27, 13, 0, tzinfo=NY)),
        # Good Friday: the week's last session is Thursday's.
        ("week", [date(2026, 3, 30), date(2026, 4, 2)], datetime(2026, 4, 2, 16, 0, tzinfo=NY)),
        # October 2026 ends on a Saturday: its last session is Friday the 30th.
        ("month", [date(2026, 10, 1), date(2026, 10, 30)], datetime(2026, 10, 30, 16, 0, tzinfo=NY)),
        # May 2027 ends on Memorial Day (Monday the 31st): its last session is Friday the 28th.
        ("month", [date(2027, 5, 3), date(2027, 5, 31)], datetime(2027, 5, 28, 16, 0, tzinfo=NY)),
    ],
)
def test_a_weekly_or_monthly_bar_is_final_once_the_last_session_of_its_period_has_closed(period, dated, last_close):
    before, at = FinalBars(last_close - timedelta(minutes=1)), FinalBars(last_close)
    midweek = FinalBars(last_close - timedelta(days=2))
    for day in dated:
        assert not before.daily(day, period) and at.daily(day, period), day
        assert not midweek.daily(day, period), day  # today's session over (most rows) is not the period's
        for moment in (before, midweek):  # a bar dated by a later day of its period is unfinished, not ahead
            assert not moment.ahead(datetime.combine(day, time(0), NY), day, False, period), day
    assert FinalBars(last_close + timedelta(days=2)).daily(dated[0], period)  # the weekend after
    first_day = dated[0] if period == "week" else dated[0].replace(day=1)  # each week's first date is its Monday
    previous = first_day - timedelta(days=1)  # the period before: final all along
    assert before.daily(previous, period)
    following = first_day + timedelta(days=7) if period == "week" else date(first_day.year, first_day.month + 1, 1)
    assert before.ahead(datetime.combine(following, time(0), NY), following, False, period)  # the next period


def test_a_weekly_bar_with_after_hours_is_final_only_when_after_hours_trading_has_ended():
    friday_close = datetime(2026, 11, 20, 16, 0, tzinfo=NY)
    assert not FinalBars(friday_close, use_rth=False).daily(date(2026, 11, 16), "week")
    assert FinalBars(friday_close + timedelta(hours=4), use_rth=False).daily(date(2026, 11, 16), "week")


def raw_bar(day: int, close: float, volume: float = 1000.0) -> RawBar:
    session = date(2026, 11, day)
    return RawBar(
        "AAPL", datetime.combine(session, time(0), NY), session, close, close * 1.01, close * 0.99, close, volume
    )


def stored(bars: list[RawBar]) -> dict:
    return {b.bar_time: StoredBar(b.bar_time, b.open, b.high, b.low, b.close, b.volume) for b in bars}


def test_a_history_re_adjusted_by_one_factor_is_told_apart_from_corrections():
    old = [raw_bar(d, 200.0 + d) for d in (16, 17, 18, 19, 20)]
    split = [raw_bar(d, round((200.0 + d) / 10, 2), 10_000.0) for d in (16, 17, 18, 19, 20)] + [raw_bar(23, 22.5)]
    found = detect_readjustment(split, stored(old))
    assert found is not None and found.factor == pytest.approx(0.1, rel=1e-3) and found.volume_inverse
    assert (found.sessions, found.first, found.last) == (5, date(2026, 11, 16), date(2026, 11, 20))
    assert "10-for-1 split" in found.describe()
    reverse = [raw_bar(d, (200.0 + d) * 5, 200.0) for d in (16, 17, 18)]
    assert "1-for-5 reverse split" in detect_readjustment(reverse, stored(old)).describe()
    # Unchanged bars, one corrected bar, or prices that moved by different factors: not a re-adjustment.
    assert detect_readjustment(old, stored(old)) is None
    corrected = [*old[:4], raw_bar(20, 190.0)]
    assert detect_readjustment(corrected, stored(old)) is None
    mixed = [raw_bar(16, 216.0 / 10), raw_bar(17, 217.0 / 2)]
    assert detect_readjustment(mixed, stored(old)) is None
    assert detect_readjustment([raw_bar(23, 22.5)], stored(old)) is None  # nothing re-delivered


@pytest.mark.parametrize(
    "new_per_old, event", [(1.25, "5-for-4 split"), (1.5, "3-for-2 split"), (0.8, "4-for-5 reverse")]
)
def test_the_smallest_usual_splits_are_noticed_too(new_per_old: float, event: str):
    """A 5-for-4 split moves prices by only 20% (factor 0.8) and a 4-for-5 reverse split by 25%: still far beyond the
    3% that cents rounding and a late correction stay within, and each must re-fetch the history like a 10-for-1."""
    old = [raw_bar(d, 200.0 + d) for d in (16, 17, 18, 19, 20)]
    split = [raw_bar(d, round((200.0 + d) / new_per_old, 2), 1_000.0 * new_per_old) for d in (16, 17, 18, 19, 20)]
    found = detect_readjustment(split, stored(old))
    assert found is not None and found.factor == pytest.approx(1 / new_per_old, rel=1e-3) and found.volume_inverse
    assert event in found.describe()


@pytest.mark.parametrize("bad_close", [0.0, -1.0, math.nan, math.inf])
def test_a_bar_without_usable_prices_neither_breaks_nor_fakes_a_re_adjustment(bad_close):
    """raw keeps what a server sent, a close of 0, -1, NaN or inf included: on either side such a bar says nothing
    about a factor (it divided by zero, or gave a NaN factor taken for a split on every run)."""
    old = [raw_bar(d, 200.0 + d) for d in (16, 17, 18)]
    held_bad, sent_bad = stored([*old[:2], raw_bar(18, bad_close)]), [*old[:2], raw_bar(18, bad_close)]
    assert detect_readjustment(old, held_bad) is None
    assert detect_readjustment(sent_bad, stored(old)) is None
    assert detect_readjustment([raw_bar(18, bad_close)], held_bad) is None
    split = [raw_bar(d, round((200.0 + d) / 10, 2), 10_000.0) for d in (16, 17)]
    assert detect_readjustment(split, held_bad).factor == pytest.approx(0.1, rel=1e-3)  # the usable bars still tell


def test_plans_count_their_requests_without_building_them_and_estimate_their_pacing_time():
    seconds = parse_bar_size("1 secs")
    plan = plan_symbol("AAPL", Coverage(), ctx(bar_size=seconds, months=600))
    assert plan.request_count > 800_000  # 600 months in pages of 1800 s
    assert plan.request(0).end == NOW and plan.request(-1).start == plan.requested_start
    assert "requests" not in plan.__dict__  # nothing built yet
    policy = PacingPolicy.for_bar_size(seconds)
    assert estimate_seconds(policy, [plan.request_count]) > 80 * 86400  # 60 requests per 10 minutes
    daily = PacingPolicy.for_bar_size(DAY)
    assert estimate_seconds(daily, [1] * 150) < 5  # 150 symbols x one request: the message rate decides
    assert estimate_seconds(daily, [300]) == pytest.approx(59 * 2.25)  # 5 per contract in 2 s (+ margin)


def test_docs_show_the_ticker_change_warning_as_the_loader_words_it():
    from warehouse_db.settings import REPO_ROOT

    line = f"ticker change? {SharedContract(107113386, ('FB', 'META'), ('META',)).describe()}"
    assert line in (REPO_ROOT / "docs" / "ingest.md").read_text(encoding="utf-8").splitlines()


def test_two_symbols_of_one_run_under_one_contract_id_are_named_together():
    text = SharedContract(7, ("BRK B", "BRK.B"), ("BRK B", "BRK.B")).describe()
    assert text.startswith("BRK B, BRK.B: conId 7 is held by each of them (same bar settings)")


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(42, "42 s"), (119.4, "119 s"), (210, "3.5 min"), (5400, "90.0 min"), (7560, "2.1 h"), (101 * 86400, "101 days")],
)
def test_a_plans_duration_is_said_in_the_unit_that_reads_best(seconds, shown):
    assert describe_duration(seconds) == shown


def test_the_summary_lists_the_first_25_problems_and_says_how_many_more_and_where_the_rest_are():
    """A run over the whole watchlist that fails for most symbols: 25 table rows, then one line for the rest."""
    failed = [SymbolResult(f"S{n:03d}", "failed", error_code=162, error_message="no permissions") for n in range(30)]
    summary = LoadSummary(load_id=uuid.UUID(int=1), results=[*failed, SymbolResult("AAPL", "landed", rows=5)])
    options = LoadOptions(entries=[WatchlistEntry("AAPL", "NASDAQ")], months=12)
    lines = format_summary(summary, options).splitlines()
    assert [line.split()[0] for line in lines if line.startswith("S0")] == [f"S{n:03d}" for n in range(25)]
    assert lines[-1] == "... and 5 more (--show-all lists them; raw.load_batches has every message)"
    everything = format_summary(summary, options, show_all=True).splitlines()
    assert len([line for line in everything if line.startswith(("S0", "AAPL "))]) == 31
    assert not any(line.startswith("... and") for line in everything)
