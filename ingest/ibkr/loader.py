"""The IBKR load: read what the warehouse holds, plan, fetch concurrently within the pacing rules, land
each symbol atomically, and report.

``load(db_settings, ibkr_settings, options)`` is the whole run (``asyncio.run`` inside); the CLI only
resolves settings and prints. Tests point both settings anywhere (a test database, a simulator port).

Per symbol, all pages of its plan are fetched first and then landed as ONE batch in one transaction
(``ingest.landing.land_batch``): a run killed at any moment leaves every symbol either complete for that
batch or untouched, and the next run's plan sees exactly what is missing. Failures are landed too, as a
``raw.load_batches`` row with status 'failed', the IBKR error code and message, and no bars.
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

import warehouse_db
from ingest.ibkr.bar_sizes import parse_bar_size
from ingest.ibkr.config import IbkrSettings
from ingest.ibkr.fetcher import (
    ContractRef,
    GatewayUnavailableError,
    IbkrSession,
    InvalidRequestError,
    Outcome,
    RetryPolicy,
    SessionStats,
    SourceBar,
)
from ingest.ibkr.pacing import DEFAULT_MAX_OPEN, LimiterStats, PacingLimiter, PacingPolicy
from ingest.ibkr.planner import Coverage, PlanContext, SymbolPlan, last_completed_close, plan_symbol
from ingest.landing import (
    BarSettings,
    Batch,
    RawBar,
    ensure_landing_tables,
    land_batch,
    new_load_id,
    read_watermarks,
    utc_now,
)
from ingest.watchlist import WatchlistEntry
from market_calendar import EXCHANGE_TZ as NY
from warehouse_db import schemas
from warehouse_db.settings import ConnectionSettings

log = logging.getLogger(__name__)

SOURCE = "ibkr"
GATEWAY_LOST = "connection to the gateway lost and not restored; the run stopped"

SymbolStatus = Literal["landed", "no_data", "current", "failed", "planned", "not_attempted"]


class WarehouseUnavailableError(ConnectionError):
    """The warehouse could not be reached or prepared."""


@dataclass(frozen=True)
class LoadOptions:
    """What to load and how; everything the CLI flags decide."""

    entries: Sequence[WatchlistEntry]
    bar: BarSettings = BarSettings()
    months: int = 12
    full_refresh: bool = False
    dry_run: bool = False
    strict_pacing: bool = False
    """Apply IBKR's 60-requests-per-10-minutes rule whatever the bar size (it always applies to <= 30 s)."""
    max_open: int = DEFAULT_MAX_OPEN
    pacing: PacingPolicy | None = None
    """Overrides the policy derived from the bar size (tests, the benchmark)."""
    retry: RetryPolicy | None = None
    progress: bool = False
    now: datetime | None = None
    """The planning moment (default: the wall clock)."""


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


@dataclass
class LoadSummary:
    load_id: uuid.UUID
    results: list[SymbolResult]
    elapsed_s: float = 0.0
    aborted: str | None = None
    """Why the run stopped early (gateway lost, invalid request), if it did."""
    invalid_request: bool = False
    gateway_stats: SessionStats | None = None
    limiter_stats: LimiterStats | None = None
    pacing: PacingPolicy | None = None

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
    def ok(self) -> bool:
        """Every symbol landed, was current or had no data."""
        return self.aborted is None and all(
            r.status in ("landed", "no_data", "current", "planned") for r in self.results
        )


def load(db_settings: ConnectionSettings, ibkr_settings: IbkrSettings, options: LoadOptions) -> LoadSummary:
    """Run one load to completion (its own event loop)."""
    return asyncio.run(run_load(db_settings, ibkr_settings, options))


async def run_load(db_settings: ConnectionSettings, ibkr_settings: IbkrSettings, options: LoadOptions) -> LoadSummary:
    started = time.monotonic()
    bar_size = parse_bar_size(options.bar.bar_size)
    settings = BarSettings(bar_size.text, options.bar.what_to_show.upper(), options.bar.use_rth)
    entries = list(options.entries)
    symbols = [e.symbol for e in entries]
    try:
        warehouse_db.ensure_provisioned(db_settings, schemas.LOADER_ROLE)
        conn = warehouse_db.connect(db_settings, role=schemas.LOADER_ROLE)
    except ConnectionError as error:
        raise WarehouseUnavailableError(str(error)) from None
    try:
        ensure_landing_tables(conn)
        coverage = read_coverage(conn, settings, symbols)
        known = read_known_contracts(conn, settings, symbols)
        conn.commit()

        now = options.now or utc_now()
        ctx = PlanContext(
            now=now,
            last_close=last_completed_close(now, settings.use_rth),
            bar_size=bar_size,
            months=options.months,
            full_refresh=options.full_refresh,
            rewrites_history=settings.what_to_show == "ADJUSTED_LAST",
        )
        plans = {e.symbol: plan_symbol(e.symbol, coverage.get(e.symbol, Coverage()), ctx) for e in entries}
        summary = LoadSummary(load_id=new_load_id(), results=[])
        results: dict[str, SymbolResult] = {}
        for e in entries:
            p = plans[e.symbol]
            status: SymbolStatus = "current" if p.current else "planned"
            results[e.symbol] = SymbolResult(e.symbol, status, reason=p.reason, plan=p, requests=len(p.requests))
        summary.results = [results[s] for s in symbols]
        todo = [e for e in entries if not plans[e.symbol].current]
        policy = options.pacing or PacingPolicy.for_bar_size(
            bar_size, strict=options.strict_pacing, max_open=options.max_open
        )
        summary.pacing = policy
        if options.dry_run or not todo:
            summary.elapsed_s = time.monotonic() - started
            if not todo and not options.dry_run:
                log.info("all %d symbols are current: nothing to request, gateway not contacted", len(entries))
            return summary

        limiter = PacingLimiter(policy)
        session = IbkrSession(ibkr_settings, limiter, options.retry)
        summary.gateway_stats, summary.limiter_stats = session.stats, limiter.stats
        run = _Run(
            session=session,
            lander=_Lander(conn, summary.load_id),
            settings=settings,
            intraday=bar_size.intraday,
            known=known,
            summary=summary,
        )
        await session.connect()
        try:
            await run.load_all(todo, plans, results, progress=options.progress)
        finally:
            await session.close()
        summary.elapsed_s = time.monotonic() - started
        return summary
    finally:
        conn.close()


@dataclass
class _Run:
    session: IbkrSession
    lander: _Lander
    settings: BarSettings
    intraday: bool
    known: dict[str, ContractRef]
    summary: LoadSummary
    stop: asyncio.Event = field(default_factory=asyncio.Event)

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
            ref = self.known.get(symbol)
            if ref is None:
                qualified = await self.session.qualify(symbol, entry.primary_exchange)
                if qualified.contract is None:
                    await self._record_failure(result, plan, started_at, qualified.error_code, qualified.error_message)
                    return
                ref = qualified.contract
            if self.stop.is_set():
                result.status = "not_attempted"
                return
            outcomes = await asyncio.gather(
                *(
                    self.session.fetch(
                        ref,
                        end=r.end_text,
                        duration=r.duration,
                        bar_size=self.settings.bar_size,
                        what_to_show=self.settings.what_to_show,
                        use_rth=self.settings.use_rth,
                        intraday=self.intraday,
                    )
                    for r in plan.requests
                )
            )
        except InvalidRequestError as error:
            self.summary.invalid_request = True
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
        bars = to_raw_bars(ref, outcomes)
        status = "ok" if bars else "no_data"
        no_data = next((o for o in outcomes if o.status == "no_data"), None)
        batch = Batch(
            symbol=symbol,
            settings=self.settings,
            status=status,
            started_at=started_at,
            requested_start=plan.requested_start,
            requested_end=plan.requested_end,
            error_code=no_data.error_code if (no_data and not bars) else None,
            error_message=no_data.error_message if (no_data and not bars) else None,
            finished_at=utc_now(),
        )
        result.rows = await self.lander.land(batch, bars)
        result.status = "landed" if result.rows else "no_data"
        result.error_code, result.error_message = batch.error_code, batch.error_message

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
        )
        await self.lander.land(batch, [])
        if message != GATEWAY_LOST:
            log.warning("%s failed: %s%s", result.symbol, f"error {code}: " if code is not None else "", message)

    def _abort(self, reason: str) -> None:
        if not self.stop.is_set():
            self.summary.aborted = reason
            self.stop.set()
            log.error("stopping the run: %s", reason)


class _Lander:
    """Lands batches from the event loop without blocking it: one worker thread at a time on one connection."""

    def __init__(self, conn: psycopg.Connection, load_id: uuid.UUID) -> None:
        self._conn = conn
        self._load_id = load_id
        self._lock = threading.Lock()

    async def land(self, batch: Batch, bars: list[RawBar]) -> int:
        # Shielded: once a batch is handed over, its transaction finishes even if the run is cancelled.
        return await asyncio.shield(asyncio.to_thread(self._land, batch, bars))

    def _land(self, batch: Batch, bars: list[RawBar]) -> int:
        with self._lock:
            return land_batch(self._conn, load_id=self._load_id, source=SOURCE, batch=batch, bars=bars)


def to_raw_bars(ref: ContractRef, outcomes: Sequence[Outcome]) -> list[RawBar]:
    """Bars of all pages as raw rows, exactly as sent; a bar repeated by overlapping pages is kept once.

    Daily (and longer) bars arrive as ``date``: ``bar_time`` is 00:00 New York time of that session date.
    Intraday bars arrive as aware datetimes (formatDate=2, epoch seconds): ``session_date`` is their
    New York date.
    """
    seen: set[datetime] = set()
    rows: list[RawBar] = []
    for outcome in outcomes:
        for bar in outcome.bars:
            bar_time, session_date = _bar_times(bar)
            if bar_time in seen:
                continue
            seen.add(bar_time)
            rows.append(
                RawBar(
                    symbol=ref.symbol,
                    con_id=ref.con_id,
                    exchange=ref.primary_exchange or ref.exchange,
                    currency=ref.currency,
                    bar_time=bar_time,
                    session_date=session_date,
                    open=bar.open,
                    high=bar.high,
                    low=bar.low,
                    close=bar.close,
                    volume=bar.volume,
                    wap=bar.wap,
                    bar_count=bar.bar_count,
                )
            )
    rows.sort(key=lambda r: r.bar_time)
    return rows


def _bar_times(bar: SourceBar) -> tuple[datetime, date]:
    value = bar.date
    if isinstance(value, datetime):
        if value.tzinfo is None:  # only with formatDate=1 on intraday bars: the gateway's (New York) zone
            value = value.replace(tzinfo=NY)
        return value, value.astimezone(NY).date()
    return datetime.combine(value, datetime.min.time(), NY), value


# --- what the warehouse holds -----------------------------------------------------------------------


def read_coverage(conn: psycopg.Connection, settings: BarSettings, symbols: Sequence[str]) -> dict[str, Coverage]:
    """Watermark, covered window start and last successful check per symbol, for these bar settings."""
    watermarks = read_watermarks(conn, settings)
    rows = conn.execute(
        f"""
        select symbol, min(requested_start), max(finished_at)
        from {schemas.RAW}.load_batches
        where source = %s and bar_size = %s and what_to_show = %s and use_rth = %s
          and status in ('ok', 'no_data') and symbol = any(%s)
        group by symbol
        """,
        (SOURCE, settings.bar_size, settings.what_to_show, settings.use_rth, list(symbols)),
    ).fetchall()
    batches = {symbol: (covered_from, checked_at) for symbol, covered_from, checked_at in rows}
    coverage: dict[str, Coverage] = {}
    for symbol in symbols:
        covered_from, checked_at = batches.get(symbol, (None, None))
        coverage[symbol] = Coverage(
            last_bar_time=watermarks.get(symbol), covered_from=covered_from, checked_at=checked_at
        )
    return coverage


def read_known_contracts(
    conn: psycopg.Connection, settings: BarSettings, symbols: Sequence[str]
) -> dict[str, ContractRef]:
    """conIds already in raw (from IBKR loads): those symbols need no contract-details request.

    Looks at the latest bar of these settings first (an index scan), then at any IBKR bar of the symbol.
    """
    rows = conn.execute(
        f"""
        select s.symbol, k.con_id, k.exchange, k.currency
        from unnest(%s::text[]) as s(symbol)
        cross join lateral (
            (select b.con_id, b.exchange, b.currency, 0 as preference
             from {schemas.RAW}.ibkr_bars b
             where b.symbol = s.symbol and b.bar_size = %s and b.what_to_show = %s and b.use_rth = %s
               and b.source = %s and b.con_id is not null
             order by b.bar_time desc
             limit 1)
            union all
            (select b.con_id, b.exchange, b.currency, 1
             from {schemas.RAW}.ibkr_bars b
             where b.symbol = s.symbol and b.source = %s and b.con_id is not null
             limit 1)
            order by preference
            limit 1
        ) k
        """,
        (list(symbols), settings.bar_size, settings.what_to_show, settings.use_rth, SOURCE, SOURCE),
    ).fetchall()
    return {
        symbol: ContractRef(
            symbol=symbol, con_id=int(con_id), primary_exchange=exchange or "", currency=currency or "USD"
        )
        for symbol, con_id, exchange, currency in rows
    }
