"""What an IBKR load asks for, checked where it is defined: ``LoadOptions(...)`` refuses what IBKR would.

The CLI builds a :class:`LoadOptions` from its flags; a program calling :func:`ingest.ibkr.loader.load`
directly gets the same checks (:class:`InvalidLoadOptions`, whose message names the setting).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from ingest.ibkr.bar_sizes import BarSize, BarSizeError, parse_bar_size
from ingest.ibkr.pacing import DEFAULT_MAX_OPEN, PacingPolicy
from ingest.ibkr.planner import DEFAULT_MONTHS, MAX_MONTHS
from ingest.ibkr.session_types import RetryPolicy
from ingest.raw_tables import BarSettings
from ingest.watchlist import WatchlistEntry

WHAT_TO_SHOW = ("TRADES", "ADJUSTED_LAST", "MIDPOINT", "BID", "ASK", "BID_ASK")
"""IBKR's whatToShow values for stocks that this loader requests."""
LARGE_PLAN_REQUESTS = 10_000
"""A plan with more historical requests than this needs ``confirm_large_plan`` (``--confirm-large-plan``)."""
LARGE_PLAN_SECONDS = 3600.0
"""...and so does one that IBKR's pacing rules stretch beyond an hour."""


class InvalidLoadOptions(ValueError):
    """A setting IBKR would refuse, or that makes no sense; the message names the setting."""


@dataclass(frozen=True)
class LoadOptions:
    """What to load and how; everything the CLI flags decide. Checked on construction."""

    entries: Sequence[WatchlistEntry]
    bar: BarSettings = BarSettings()
    """Bar size, whatToShow and RTH; normalised to IBKR's spelling (``5 min`` becomes ``5 mins``)."""
    months: int = DEFAULT_MONTHS
    full_refresh: bool = False
    dry_run: bool = False
    strict_pacing: bool = False
    """Apply IBKR's 60-requests-per-10-minutes rule whatever the bar size (it always applies to <= 30 s)."""
    max_open: int = DEFAULT_MAX_OPEN
    confirm_large_plan: bool = False
    """Run a plan above :data:`LARGE_PLAN_REQUESTS` requests or :data:`LARGE_PLAN_SECONDS` (else refused)."""
    pacing: PacingPolicy | None = None
    """Overrides the policy derived from the bar size (tests, the benchmark)."""
    retry: RetryPolicy | None = None
    progress: bool = False
    now: datetime | None = None
    """The planning moment (default: the wall clock). Bars not final at this moment are never landed."""

    def __post_init__(self) -> None:
        if not self.entries:
            raise InvalidLoadOptions("no symbols to load")
        try:
            bar_size = parse_bar_size(self.bar.bar_size)
        except BarSizeError as error:
            raise InvalidLoadOptions(f"bar size: {error}") from None
        what_to_show = self.bar.what_to_show.strip().upper()
        if what_to_show not in WHAT_TO_SHOW:
            raise InvalidLoadOptions(f"what to show: {self.bar.what_to_show!r} is not one of {', '.join(WHAT_TO_SHOW)}")
        if what_to_show == "ADJUSTED_LAST" and bar_size.intraday:
            raise InvalidLoadOptions(
                "ADJUSTED_LAST needs an empty endDateTime, so it cannot be paged: use a bar size of '1 day' or longer"
            )
        if not 1 <= self.months <= MAX_MONTHS:
            raise InvalidLoadOptions(f"months: {self.months} is out of range 1..{MAX_MONTHS}")
        try:
            self.pacing_policy()
        except ValueError as error:
            raise InvalidLoadOptions(str(error)) from None
        if self.now is not None and self.now.tzinfo is None:
            raise InvalidLoadOptions("now must be timezone-aware")
        # Frozen: the normalised settings replace what was given (the usual way for a frozen dataclass).
        object.__setattr__(self, "bar", replace(self.bar, bar_size=bar_size.text, what_to_show=what_to_show))

    @property
    def bar_size(self) -> BarSize:
        return parse_bar_size(self.bar.bar_size)

    def pacing_policy(self) -> PacingPolicy:
        return self.pacing or PacingPolicy.for_bar_size(
            self.bar_size, strict=self.strict_pacing, max_open=self.max_open
        )
