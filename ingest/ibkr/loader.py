"""The IBKR load: read what the warehouse holds, plan, fetch concurrently within the pacing rules, land each
symbol atomically, and report.

``load(db_settings, ibkr_settings, options)`` is the whole run (``asyncio.run`` inside); the CLI only parses
and prints. Tests point both settings anywhere (a test database, a simulator port).

Per symbol, all pages of its plan are fetched first and then landed as ONE batch in one transaction
(:func:`ingest.landing.land_batch`): a run killed at any moment leaves every symbol either complete for that
batch or untouched, and the next run's plan sees exactly what is missing. Failures are landed too, as a
``raw.load_batches`` row with status 'failed', the IBKR error code and message, and no bars.

Three checks stand between a fetch and the warehouse:

* daily and intraday bars dated on a day without an exchange session (a weekend, a holiday, before the calendar: a
  server writing dates in another time zone, say) are left out, counted and named
  (:func:`ingest.sessions.why_not_a_session`): dbt's exchange-session test would fail on such a bar on every build
  after, and raw, append-only, keeps it (a weekly or monthly bar's date only names its period);
* bars that are not final yet -- today's daily bar while the session is still trading, this week's or month's
  bar until the last session of its week or month has ended, an intraday bar that has not ended -- are left out
  (:class:`ingest.sessions.FinalBars`); the next run after the close gets them;
* re-delivered bars that differ from the stored ones by one consistent price factor mean IBKR re-adjusted the
  history (a split, :mod:`ingest.ibkr.readjustment`): the symbol's whole window is fetched again in the same
  run and lands instead, with the reason and the factor in ``raw.load_batches``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

import psycopg

from ingest.ibkr.bar_sizes import BarSize
from ingest.ibkr.config import IbkrSettings
from ingest.ibkr.fetcher import IbkrSession
from ingest.ibkr.gateway_errors import ERR_NO_SECURITY, MarketDataRefusal, market_data_refusal
from ingest.ibkr.options import LARGE_PLAN_REQUESTS, LARGE_PLAN_SECONDS, LoadOptions
from ingest.ibkr.pacing import PacingLimiter, PacingPolicy, estimate_seconds
from ingest.ibkr.planner import PlanContext, SymbolPlan, plan_symbol, plan_whole_window
from ingest.ibkr.readjustment import Readjustment, detect_readjustment
from ingest.ibkr.session_types import (
    ContractRef,
    GatewayUnavailableError,
    InvalidRequestError,
    MarketDataRefusedError,
    Outcome,
    SessionStats,
    SourceBar,
)
from ingest.landing import Batch, land_batch, new_load_id, utc_now
from ingest.raw_reads import (
    Coverage,
    StoredBar,
    read_contract_holders,
    read_coverage,
    read_known_contracts,
    read_stored_bars,
)
from ingest.raw_tables import BarSettings, RawBar, claim_load, open_for_landing
from ingest.report import describe_duration
from ingest.sessions import FinalBars, last_bar_end, last_completed_close, why_not_a_session
from ingest.watchlist import WatchlistEntry
from market_calendar import EXCHANGE_TZ as NY
from warehouse_db.errors import WarehouseError, server_error_line
from warehouse_db.settings import ConnectionSettings

log = logging.getLogger(__name__)

SOURCE = "ibkr"
TICKER_CHANGE_DOC = 'docs/ingest.md "A ticker change"'
GATEWAY_LOST = "connection to the gateway lost and not restored; the run stopped"

SymbolStatus = Literal["landed", "no_data", "current", "failed", "planned", "not_attempted"]


@dataclass(frozen=True)
class PlanEstimate:
    """How big a plan is: historical requests, and the least time IBKR's pacing rules allow for them."""

    requests: int
    seconds: float

    @property
    def large(self) -> bool:
        return self.requests > LARGE_PLAN_REQUESTS or self.seconds > LARGE_PLAN_SECONDS


class PlanTooLargeError(ValueError):
    """The plan is above the size a run may start without ``confirm_large_plan``."""

    def __init__(self, estimate: PlanEstimate, policy: PacingPolicy) -> None:
        super().__init__(
            f"the plan needs {estimate.requests:,} historical requests, at least {describe_duration(estimate.seconds)} "
            f"under IBKR's pacing rules ({policy.describe()}); pass --confirm-large-plan to run it anyway, "
            "or ask for fewer months, fewer symbols or a larger bar size (--dry-run shows the plan)"
        )
        self.estimate = estimate


@dataclass(frozen=True)
class NotASession:
    """Bars a gateway dated on one day without an exchange session (see :func:`ingest.sessions.why_not_a_session`)."""

    session_date: date
    reason: str
    """Why that day has no session, in words (a holiday, a weekend, before the calendar)."""
    bars: int


@dataclass(frozen=True)
class SortedBars:
    """A fetch's bars sorted by what becomes of them: only ``final`` lands."""

    final: list[RawBar]
    unfinished: int
    """Not final yet (a session or bar still in progress): the next run after the close gets them."""
    ahead: int
    """Dated after the run's moment altogether (see ``FinalBars.ahead``)."""
    not_sessions: list[NotASession]
    """Dated on days without a session: no later run lands them."""


@dataclass(frozen=True)
class SharedContract:
    """One IBKR contract id under more than one symbol in raw (a ticker change: FB became META, same conId)."""

    con_id: int
    symbols: tuple[str, ...]
    """Sorted; at least two."""
    this_run: tuple[str, ...]
    """Those of ``symbols`` this run loaded or looked up (the new ticker, as a rule)."""

    def describe(self) -> str:
        mine = ", ".join(self.this_run)
        others = [s for s in self.symbols if s not in self.this_run]
        where = f"is already in raw.ibkr_bars under {', '.join(others)}" if others else "is held by each of them"
        return (
            f"{mine}: conId {self.con_id} {where} (same bar settings): one company under two symbols, as after a "
            "ticker change; dbt build fails int_bars_deduplicated_one_symbol_per_contract on the sessions they share "
            f"until the old ticker's bars are deleted, see {TICKER_CHANGE_DOC}"
        )


@dataclass
class SymbolResult:
    symbol: str
    status: SymbolStatus
    reason: str = ""
    plan: SymbolPlan | None = None
    rows: int = 0
    requests: int = 0
    """Historical requests this symbol needed (planned pages; retries not counted)."""
    error_code: int | None = None
    error_message: str | None = None
    unfinished: int = 0
    """Bars the gateway sent that were not final yet (a session or bar still in progress): not landed."""
    ahead: int = 0
    """Bars the gateway sent dated after the run's moment (its clock or its data is wrong): not landed."""
    not_sessions: list[NotASession] = field(default_factory=list)
    """Bars the gateway dated on days without an exchange session, by day: never landed."""
    readjustment: Readjustment | None = None


@dataclass
class LoadSummary:
    load_id: uuid.UUID
    results: list[SymbolResult]
    elapsed_s: float = 0.0
    aborted: str | None = None
    """Why the run stopped early (gateway lost, invalid request, market data refused to the login), if it did."""
    invalid_request: bool = False
    market_data_refused: MarketDataRefusal | None = None
    """Set when IBKR refused this login market data altogether (a competing live session, another IP address): the run
    stopped, since every later request would have been refused alike."""
    gateway_stats: SessionStats | None = None
    pacing: PacingPolicy | None = None
    estimate: PlanEstimate | None = None
    shared_contracts: list[SharedContract] = field(default_factory=list)
    """Contract ids of this run's symbols that raw also holds under another symbol (a ticker change)."""

    def count(self, *statuses: SymbolStatus) -> int:
        return sum(1 for r in self.results if r.status in statuses)

    @property
    def requested(self) -> int:
        """Symbols that needed at least one request."""
        return sum(1 for r in self.results if r.status not in ("current",))

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self.results)

    @property
    def unfinished(self) -> int:
        return sum(r.unfinished for r in self.results)

    @property
    def ahead(self) -> int:
        return sum(r.ahead for r in self.results)

    @property
    def not_sessions(self) -> list[tuple[str, NotASession]]:
        """(symbol, day) of every day without a session that some bars were dated on."""
        return [(r.symbol, day) for r in self.results for day in r.not_sessions]

    @property
    def readjusted(self) -> list[SymbolResult]:
        return [r for r in self.results if r.readjustment is not None]

    @property
    def refusals(self) -> dict[str, tuple[MarketDataRefusal, list[str]]]:
        """The failures that IBKR's market-data entitlements caused, by what the login lacks (see
        :attr:`MarketDataRefusal.what`): the first refusal of each kind, and every symbol it failed."""
        grouped: dict[str, tuple[MarketDataRefusal, list[str]]] = {}
        for r in self.results:
            refusal = market_data_refusal(r.error_code, r.error_message) if r.status == "failed" else None
            if refusal is not None:
                grouped.setdefault(refusal.what, (refusal, []))[1].append(r.symbol)
        return grouped

    @property
    def refused_everything(self) -> bool:
        """Every symbol that needed a request failed, and IBKR's market-data entitlements failed each of them: the
        run's one cause, which no retry mends."""
        refused = sum(len(symbols) for _, symbols in self.refusals.values())
        return refused > 0 and refused == self.count("failed") and not self.count("landed", "no_data")

    @property
    def ok(self) -> bool:
        """The run was not aborted and every symbol landed, was current or had no data (or, in a dry run, was
        planned)."""
        return self.aborted is None and all(
            r.status in ("landed", "no_data", "current", "planned") for r in self.results
        )


def load(db_settings: ConnectionSettings | None, ibkr_settings: IbkrSettings, options: LoadOptions) -> LoadSummary:
    """Run one load to completion (its own event loop).

    Raises :class:`warehouse_db.errors.WarehouseError` (warehouse), :class:`GatewayUnavailableError` (no
    gateway) and :class:`PlanTooLargeError`; per-symbol faults are results, not exceptions.
    """
    return asyncio.run(run_load(db_settings, ibkr_settings, options))


async def run_load(
    db_settings: ConnectionSettings | None, ibkr_settings: IbkrSettings, options: LoadOptions
) -> LoadSummary:
    started = time.monotonic()
    settings = options.bar
    entries = list(options.entries)
    conn = await asyncio.to_thread(open_for_landing, db_settings)
    landing = threading.Lock()  # held by the lander's thread for the whole of a batch's transaction
    try:
        if not options.dry_run:  # a dry run requests and lands nothing: it may plan beside a running load
            claim_load(conn, settings, SOURCE)
        held = _read_and_plan(conn, options, entries)
        policy = options.pacing_policy()
        summary, results, todo = _planned_summary(options, entries, held.plans, policy)
        contracts = {symbol: ref.con_id for symbol, ref in held.known.items()}
        if options.dry_run or not todo:
            summary.shared_contracts = check_shared_contracts(conn, settings, contracts)
            summary.elapsed_s = time.monotonic() - started
            if not todo and not options.dry_run:
                log.info("all %d symbols are current: nothing to request, gateway not contacted", len(entries))
            return summary

        run = _new_run(conn, landing, ibkr_settings, options, policy, held, summary)
        try:
            await run.session.connect()
            await run.load_all(todo, held.plans, results, progress=options.progress)
        finally:
            await run.session.close()
        with landing:
            summary.shared_contracts = check_shared_contracts(conn, settings, contracts | run.resolved)
        summary.elapsed_s = time.monotonic() - started
        return summary
    finally:
        # Interrupted (Ctrl+C, SIGTERM) while the lander's thread is in a batch's transaction: that batch commits
        # first. Closing the connection under the thread would abort it, and psycopg connections must not be closed
        # while another thread uses them.
        with landing:
            conn.close()


@dataclass(frozen=True)
class _Held:
    """What the warehouse holds of the watchlist, and each symbol's plan from it."""

    ctx: PlanContext
    coverage: dict[str, Coverage]
    known: dict[str, ContractRef]
    plans: dict[str, SymbolPlan]
    stored: dict[str, dict[datetime, StoredBar]]


def _read_and_plan(conn: psycopg.Connection, options: LoadOptions, entries: Sequence[WatchlistEntry]) -> _Held:
    """Each symbol's coverage and known contract in raw, its plan, and the stored bars the plan re-delivers (one
    transaction, committed)."""
    settings = options.bar
    symbols = [e.symbol for e in entries]
    now = options.now or utc_now()
    ctx = PlanContext(
        now=now,
        final_until=(
            last_bar_end(now, options.bar_size.seconds, settings.use_rth)
            if options.bar_size.intraday
            else last_completed_close(now, settings.use_rth)
        ),
        bar_size=options.bar_size,
        months=options.months,
        full_refresh=options.full_refresh,
        rewrites_history=settings.what_to_show == "ADJUSTED_LAST",
    )
    coverage = read_coverage(conn, settings, symbols, source=SOURCE)
    # A listing in another currency is not reused: only a server that ignores the currency asked for answered with
    # one (another company's listing of the ticker, landed before the lookup took USD listings only), and its bars
    # must not keep landing as the stock: the symbol is looked up again.
    known = {
        symbol: ContractRef(symbol, k.con_id, k.exchange or "", k.currency or "USD")
        for symbol, k in read_known_contracts(conn, settings, symbols, source=SOURCE).items()
        if (k.currency or "USD").upper() == "USD"
    }
    plans = {e.symbol: plan_symbol(e.symbol, coverage[e.symbol], ctx) for e in entries}
    # The stored bars each plan will re-deliver: what a re-adjusted history is noticed by.
    stored = read_stored_bars(
        conn,
        settings,
        {
            symbol: redelivered_spans(plan, coverage[symbol].last_bar_time - ctx.overlap)
            for symbol, plan in plans.items()
            if not plan.current and coverage[symbol].last_bar_time is not None
        },
    )
    conn.commit()
    return _Held(ctx, coverage, known, plans, stored)


def _planned_summary(
    options: LoadOptions, entries: Sequence[WatchlistEntry], plans: dict[str, SymbolPlan], policy: PacingPolicy
) -> tuple[LoadSummary, dict[str, SymbolResult], list[WatchlistEntry]]:
    """The summary as planned: (it, each symbol's result in it, the entries to request). Raises
    :class:`PlanTooLargeError` for a large plan that was not confirmed."""
    summary = LoadSummary(load_id=new_load_id(), results=[])
    results: dict[str, SymbolResult] = {}
    for e in entries:
        p = plans[e.symbol]
        status: SymbolStatus = "current" if p.current else "planned"
        results[e.symbol] = SymbolResult(e.symbol, status, reason=p.reason, plan=p, requests=p.request_count)
    summary.results = [results[e.symbol] for e in entries]
    todo = [e for e in entries if not plans[e.symbol].current]
    summary.pacing = policy
    counts = [plans[e.symbol].request_count for e in todo]
    summary.estimate = PlanEstimate(sum(counts), estimate_seconds(policy, counts, options.bar.what_to_show))
    if summary.estimate.large and not options.dry_run and not options.confirm_large_plan:
        raise PlanTooLargeError(summary.estimate, policy)
    return summary, results, todo


def _new_run(
    conn: psycopg.Connection,
    landing: threading.Lock,
    ibkr_settings: IbkrSettings,
    options: LoadOptions,
    policy: PacingPolicy,
    held: _Held,
    summary: LoadSummary,
) -> _Run:
    """The gateway session (not connected yet), within the pacing policy, and the run that fetches and lands."""
    session = IbkrSession(ibkr_settings, PacingLimiter(policy), options.retry)
    summary.gateway_stats = session.stats
    return _Run(
        session=session,
        lander=_Lander(conn, summary.load_id, landing),
        settings=options.bar,
        bar_size=options.bar_size,
        ctx=held.ctx,
        coverage=held.coverage,
        stored=held.stored,
        final=FinalBars(held.ctx.now, options.bar.use_rth),
        known=held.known,
        summary=summary,
    )


@dataclass
class _Run:
    session: IbkrSession
    lander: _Lander
    settings: BarSettings
    bar_size: BarSize
    ctx: PlanContext
    coverage: dict[str, Coverage]
    stored: dict[str, dict[datetime, StoredBar]]
    final: FinalBars
    known: dict[str, ContractRef]
    summary: LoadSummary
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    resolved: dict[str, int] = field(default_factory=dict)
    """The contract id each symbol was fetched with (from raw or a lookup), for :func:`check_shared_contracts`."""
    refusals_told: set[str] = field(default_factory=set)
    """The market-data refusals (:attr:`MarketDataRefusal.what`) already logged with their advice."""

    async def load_all(
        self,
        todo: list[WatchlistEntry],
        plans: dict[str, SymbolPlan],
        results: dict[str, SymbolResult],
        *,
        progress: bool,
    ) -> None:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="ibkr", unit="symbol", file=sys.stderr, disable=not progress, leave=True)
        try:

            async def one(entry: WatchlistEntry) -> None:
                result = results[entry.symbol]
                await self.load_symbol(entry, plans[entry.symbol], result)
                bar.set_postfix_str(
                    f"landed {self.summary.count('landed')} failed {self.summary.count('failed')} "
                    f"rows {self.summary.rows}",
                    refresh=False,
                )
                bar.update(1)

            await asyncio.gather(*(one(e) for e in todo))
        finally:
            bar.close()

    async def load_symbol(self, entry: WatchlistEntry, plan: SymbolPlan, result: SymbolResult) -> None:
        symbol = entry.symbol
        if self.stop.is_set():
            result.status = "not_attempted"
            return
        started_at = utc_now()
        try:
            ref = await self._contract(entry, plan, result, started_at)
            if ref is None:  # no contract: a failure, recorded
                return
            ref, outcomes = await self._fetch_with_current_con_id(entry, ref, plan)
            if outcomes is None:
                result.status = "not_attempted"
                return
            fetched = self.sort_bars(ref, outcomes, plan)
            readjustment = detect_readjustment(fetched.final, self.stored.get(symbol, {}))
            if readjustment is not None and self._stored_bars_left_out(symbol, plan):
                plan = self._replan_whole_window(symbol, readjustment, result)
                outcomes = await self._fetch(ref, plan)
                if outcomes is None:
                    result.status = "not_attempted"
                    return
                fetched = self.sort_bars(ref, outcomes, plan)
        except InvalidRequestError as error:
            self.summary.invalid_request = True
            self._abort(str(error))
            await self._record_failure(result, plan, started_at, error.code, error.message)
            return
        except MarketDataRefusedError as error:
            if error.symbol != symbol:  # IBKR refused another symbol's request, and this one was not sent
                result.status = "not_attempted"
                return
            self.summary.market_data_refused = self.summary.market_data_refused or error.refusal
            self._abort(str(error))
            await self._record_failure(result, plan, started_at, error.code, error.message)
            return
        except GatewayUnavailableError as error:
            self._abort(str(error))
            await self._record_failure(result, plan, started_at, None, GATEWAY_LOST)
            return
        failed = next((o for o in outcomes if o.status == "failed"), None)
        if failed is not None:
            await self._record_failure(result, plan, started_at, failed.error_code, failed.error_message)
            return
        await self._land_fetched(result, plan, started_at, outcomes, fetched, readjustment)

    async def _contract(
        self, entry: WatchlistEntry, plan: SymbolPlan, result: SymbolResult, started_at: datetime
    ) -> ContractRef | None:
        """The contract to fetch with: raw's, or IBKR's answer to a lookup; None (the failure recorded) without one."""
        ref = self.known.get(entry.symbol)
        if ref is not None:
            return ref
        qualified = await self.session.qualify(entry.symbol, entry.primary_exchange)
        if qualified.contract is None:
            await self._record_failure(result, plan, started_at, qualified.error_code, qualified.error_message)
        return qualified.contract

    async def _fetch_with_current_con_id(
        self, entry: WatchlistEntry, ref: ContractRef, plan: SymbolPlan
    ) -> tuple[ContractRef, list[Outcome] | None]:
        """The plan's fetch, again with IBKR's conId when raw's no longer names a security; the conId that served
        is noted for :func:`check_shared_contracts`. The outcomes are None when the run stopped meanwhile."""
        outcomes = await self._fetch(ref, plan)
        if outcomes is not None and entry.symbol in self.known and _no_security_definition(outcomes):
            ref, outcomes = await self._refetch_with_new_con_id(entry, ref, plan, outcomes)
        self.resolved[entry.symbol] = ref.con_id
        return ref, outcomes

    def _replan_whole_window(self, symbol: str, readjustment: Readjustment, result: SymbolResult) -> SymbolPlan:
        """IBKR re-adjusted the history: the plan that fetches the symbol's whole window again, counted in its
        result's requests."""
        log.warning("%s: %s; fetching its whole window again", symbol, readjustment.describe())
        plan = plan_whole_window(symbol, self.coverage[symbol], self.ctx, readjustment.describe())
        result.requests += plan.request_count
        return plan

    async def _land_fetched(
        self,
        result: SymbolResult,
        plan: SymbolPlan,
        started_at: datetime,
        outcomes: Sequence[Outcome],
        fetched: SortedBars,
        readjustment: Readjustment | None,
    ) -> None:
        """The final bars land as one batch ('no_data' when there are none), and the result says what landed and
        what was left out."""
        for day in fetched.not_sessions:  # of the fetch that lands (a re-adjusted history's refetch, if any)
            log.warning("%s: %d bar(s) not landed: %s", result.symbol, day.bars, day.reason)
        bars = fetched.final
        no_data = next((o for o in outcomes if o.status == "no_data"), None) if not bars else None
        batch = Batch(
            symbol=result.symbol,
            settings=self.settings,
            status="ok" if bars else "no_data",
            started_at=started_at,
            requested_start=plan.requested_start,
            requested_end=plan.requested_end,
            error_code=no_data.error_code if no_data else None,
            error_message=no_data.error_message if no_data else None,
            finished_at=utc_now(),
            request_reason=plan.reason,
            readjustment_factor=readjustment.factor if readjustment else None,
        )
        result.rows = await self.lander.land(batch, bars)
        result.status = "landed" if result.rows else "no_data"
        result.error_code, result.error_message = batch.error_code, batch.error_message
        result.unfinished, result.ahead, result.not_sessions = fetched.unfinished, fetched.ahead, fetched.not_sessions
        result.readjustment, result.plan = readjustment, plan

    async def _fetch(self, ref: ContractRef, plan: SymbolPlan) -> list[Outcome] | None:
        """Every request of the plan (concurrently, within the limiter); None when the run stopped meanwhile."""
        if self.stop.is_set():
            return None
        return await asyncio.gather(
            *(
                self.session.fetch(
                    ref,
                    end=r.end_text,
                    duration=r.duration,
                    bar_size=self.settings.bar_size,
                    what_to_show=self.settings.what_to_show,
                    use_rth=self.settings.use_rth,
                    intraday=self.bar_size.intraday,
                )
                for r in plan.requests
            )
        )

    async def _refetch_with_new_con_id(
        self, entry: WatchlistEntry, stale: ContractRef, plan: SymbolPlan, outcomes: list[Outcome]
    ) -> tuple[ContractRef, list[Outcome] | None]:
        """The conId from raw no longer names a security: look the symbol up again and, if IBKR's conId changed,
        fetch with the new one.

        IBKR issues a new conId after some corporate actions (a reverse split with a new CUSIP, a reorganisation);
        asking with the old one gets error 200 on every run, even with --full-refresh.
        """
        qualified = await self.session.qualify(entry.symbol, entry.primary_exchange)
        fresh = qualified.contract
        if fresh is None or fresh.con_id == stale.con_id:
            return stale, outcomes
        log.warning(
            "%s: IBKR no longer knows conId %s (error 200); its conId is now %s",
            entry.symbol,
            stale.con_id,
            fresh.con_id,
        )
        return fresh, await self._fetch(fresh, plan)

    def _stored_bars_left_out(self, symbol: str, plan: SymbolPlan) -> bool:
        """Whether stored bars exist that this plan does not re-deliver (they would keep the old units): older than
        its start, or between the two parts of a backfill."""
        held_from = self.coverage[symbol].held_from
        return plan.partial or held_from is None or plan.requested_start is None or held_from < plan.requested_start

    def sort_bars(self, ref: ContractRef, outcomes: Sequence[Outcome], plan: SymbolPlan) -> SortedBars:
        """The bars of all pages as raw rows, sorted into the final ones (which land) and those left out: dated on a
        day without a session, dated after the run's moment altogether (see ``FinalBars.ahead``), or still in
        progress.

        A plan that replaces the history, or the older part of a backfill, keeps only bars from its start on (see
        ``SymbolPlan.replaces_history``; a backfill lands the window it was asked for, as one load of the longer
        window would).
        """
        intraday = self.bar_size.intraday
        bars = to_raw_bars(ref, outcomes, intraday=intraday)
        if (plan.replaces_history or plan.partial) and plan.start is not None:
            bars = [b for b in bars if b.bar_time >= plan.start]
        period = self.bar_size.period
        # A weekly or monthly bar's date only names its period (gateways date them by different days, a Saturday or
        # the 1st among them): dbt checks the session dates of daily and intraday bars only.
        not_sessions = days_without_a_session(bars) if period == "day" else []
        if not_sessions:
            skipped = {day.session_date for day in not_sessions}
            bars = [b for b in bars if b.session_date not in skipped]
        if intraday:
            final = [b for b in bars if self.final.intraday(b.bar_time, self.bar_size.seconds, b.session_date)]
        else:
            final = [b for b in bars if self.final.daily(b.session_date, period)]
        ahead = sum(1 for b in bars if self.final.ahead(b.bar_time, b.session_date, intraday, period))
        unfinished = len(bars) - len(final) - ahead
        if unfinished:
            log.info("%s: %d bar(s) not final yet (still in progress); not landed", ref.symbol, unfinished)
        if ahead:
            log.warning("%s: %d bar(s) dated after this run's moment; not landed", ref.symbol, ahead)
        return SortedBars(final, unfinished, ahead, not_sessions)

    async def _record_failure(
        self, result: SymbolResult, plan: SymbolPlan, started_at: datetime, code: int | None, message: str | None
    ) -> None:
        result.status = "failed"
        result.error_code, result.error_message = code, message
        batch = Batch(
            symbol=result.symbol,
            settings=self.settings,
            status="failed",
            started_at=started_at,
            requested_start=plan.requested_start,
            requested_end=plan.requested_end,
            error_code=code,
            error_message=message,
            finished_at=utc_now(),
            request_reason=plan.reason,
        )
        await self.lander.land(batch, [])
        if message == GATEWAY_LOST:
            return
        refusal = market_data_refusal(code, message)
        if refusal is not None and refusal.what in self.refusals_told:
            # Said once per cause: the summary counts them, raw.load_batches has each.
            log.info("%s failed: error %s: %s", result.symbol, code, message)
            return
        log.warning("%s failed: %s%s", result.symbol, f"error {code}: " if code is not None else "", message)
        if refusal is not None:
            self.refusals_told.add(refusal.what)
            if not refusal.account_wide:
                log.warning(
                    "IBKR refused %s: %s: %s; every symbol that needs it fails the same way",
                    result.symbol,
                    refusal.what,
                    refusal.advice(),
                )

    def _abort(self, reason: str) -> None:
        if not self.stop.is_set():
            self.summary.aborted = reason
            self.stop.set()
            log.error("stopping the run: %s", reason)


class _Lander:
    """Lands batches from the event loop without blocking it: one worker thread at a time on one connection."""

    def __init__(self, conn: psycopg.Connection, load_id: uuid.UUID, lock: threading.Lock) -> None:
        self._conn = conn
        self._load_id = load_id
        self._lock = lock
        """Held for each batch's transaction; whoever closes the connection takes it first."""

    async def land(self, batch: Batch, bars: list[RawBar]) -> int:
        # Shielded: once a batch is handed over, its transaction finishes even if the run is cancelled.
        return await asyncio.shield(asyncio.to_thread(self._land, batch, bars))

    def _land(self, batch: Batch, bars: list[RawBar]) -> int:
        with self._lock:
            try:
                return land_batch(self._conn, load_id=self._load_id, source=SOURCE, batch=batch, bars=bars)
            except psycopg.Error as error:
                raise WarehouseError(f"landing {batch.symbol} failed: {server_error_line(error)}") from None


def check_shared_contracts(
    conn: psycopg.Connection, settings: BarSettings, contracts: dict[str, int]
) -> list[SharedContract]:
    """The contract ids of ``contracts`` (symbol: conId, this run's) that raw also holds under another symbol, each
    logged as a warning.

    IBKR keeps a contract id across a ticker change (FB became META), so the new ticker's bars land under the id the
    old one's bars carry, and dbt's ``one_symbol_per_contract`` test fails the next build until the old ticker's bars
    are deleted. Nothing is refused here: raw lands what the source sent, and dbt's test guards the mart. One query
    for the whole run (:func:`ingest.raw_reads.read_contract_holders`).
    """
    contracts = {symbol: con_id for symbol, con_id in contracts.items() if con_id}  # 0 or None: no id to share
    if not contracts:
        return []
    try:
        holders = read_contract_holders(conn, settings, contracts.values())
        conn.commit()
    except psycopg.Error as error:
        raise WarehouseError(f"reading the contract ids held in raw failed: {server_error_line(error)}") from None
    by_con_id: dict[int, set[str]] = {}
    for symbol, con_id in contracts.items():
        by_con_id.setdefault(con_id, set()).add(symbol)
    shared = []
    for con_id, mine in sorted(by_con_id.items()):
        symbols = mine | holders.get(con_id, set())
        if len(symbols) > 1:
            shared.append(SharedContract(con_id, tuple(sorted(symbols)), tuple(sorted(mine))))
    for contract in shared:
        log.warning("%s", contract.describe())
    return shared


def redelivered_spans(plan: SymbolPlan, recent_from: datetime) -> list[tuple[datetime, datetime | None]]:
    """Where the stored bars lie that ``plan`` asks for again: each part's span, the newest part's from
    ``recent_from`` on only (the overlap past the watermark; a whole window's older bars are many, and the overlap
    tells a split as well). An open end (None) takes every later bar."""
    spans: list[tuple[datetime, datetime | None]] = []
    for k, (start, until) in enumerate(plan.parts):
        spans.append((max(start, recent_from), None) if k == 0 and until == plan.until else (start, until))
    return spans


def days_without_a_session(bars: Sequence[RawBar]) -> list[NotASession]:
    """The days without an exchange session that some of ``bars`` are dated on, in order.

    A bar's ``session_date`` is the date dbt's exchange-session test checks (the New York date of ``bar_time``), for
    daily and intraday bars (a weekly or monthly bar's date only names its period: not checked, not asked here).
    """
    counts: dict[date, int] = {}
    for bar in bars:
        counts[bar.session_date] = counts.get(bar.session_date, 0) + 1
    reasons = {day: why_not_a_session(day) for day in counts}
    return [NotASession(day, reason, counts[day]) for day, reason in sorted(reasons.items()) if reason]


def _no_security_definition(outcomes: Sequence[Outcome]) -> bool:
    return any(o.status == "failed" and o.error_code == ERR_NO_SECURITY for o in outcomes)


def to_raw_bars(ref: ContractRef, outcomes: Sequence[Outcome], *, intraday: bool) -> list[RawBar]:
    """Bars of all pages as raw rows, exactly as sent; a bar repeated by overlapping pages is kept once.

    Daily (and longer) bars arrive as ``date``: ``bar_time`` is 00:00 New York time of that session date.
    Intraday bars arrive as aware datetimes (formatDate=2, epoch seconds): ``session_date`` is their
    New York date.
    """
    seen: set[datetime] = set()
    rows: list[RawBar] = []
    for outcome in outcomes:
        for bar in outcome.bars:
            bar_time, session_date = _bar_times(bar, intraday)
            if bar_time in seen:
                continue
            seen.add(bar_time)
            rows.append(
                RawBar(
                    symbol=ref.symbol,
                    bar_time=bar_time,
                    session_date=session_date,
                    open=bar.open,
                    high=bar.high,
                    low=bar.low,
                    close=bar.close,
                    volume=bar.volume,
                    wap=bar.wap,
                    bar_count=bar.bar_count,
                    con_id=ref.con_id,
                    exchange=ref.primary_exchange or ref.exchange,
                    currency=ref.currency,
                )
            )
    rows.sort(key=lambda r: r.bar_time)
    return rows


def _bar_times(bar: SourceBar, intraday: bool) -> tuple[datetime, date]:
    value = bar.date
    if isinstance(value, datetime) and not intraday:
        # IBKR sends daily bars as yyyyMMdd; other servers may add a time ("20240104 16:00:00 US/Eastern") or send
        # epoch seconds (often 00:00 UTC of the day). The session is the date as the server wrote it, in the zone it
        # wrote it in: its New York date would put a 00:00 UTC bar on the session before.
        value = value.date()
    if isinstance(value, datetime):
        # Intraday bars are asked for with formatDate=2 (epoch seconds, aware). A server that sends local times anyway
        # sends them in its login time zone, which the client cannot know: read them as exchange time.
        if value.tzinfo is None:
            value = value.replace(tzinfo=NY)
        return value, value.astimezone(NY).date()
    return datetime.combine(value, datetime.min.time(), NY), value
