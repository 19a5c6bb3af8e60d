"""The asyncio gateway: accepts TWS API clients on 127.0.0.1 and serves each one.

Each TCP connection is an independent :class:`ClientSession`; anything a client
sends that the simulator cannot parse is logged and skipped, and a session that
dies (disconnect, injected drop, bug) never affects the listener or the others.
Simulator-wide state — fault counters, pacing history, clientIds in use, stats —
lives on :class:`GatewaySimulator`, because IBKR's limits and the fault plan are
per gateway, not per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import struct
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from market_calendar import EXCHANGE_TZ as NY

from . import protocol
from .bars import Bar, BarGenerator
from .contracts import ContractRequest, con_id_for, contract_data_fields, primary_exchange_for, resolve_symbol
from .history import DAILY, HistoricalQuery, HistoryPlan, QueryError, plan
from .pacing import PacingLimits, PacingRequest, PacingRules
from .protocol import In, Out
from .sessions import UTC, SessionCalendar, nyse_calendar

log = logging.getLogger(__name__)

ACCOUNT = "DU0000001"
#: Requests estimated above this many bars are built in a worker thread so a big
#: intraday request does not stall every other client's replies.
_OFFLOAD_BARS = 20_000


@dataclass(frozen=True)
class SimulatorConfig:
    """How the simulator behaves; every field has a harmless default.

    ``pacing_nth`` / ``drop_nth`` are 1-based positions of historical requests in
    arrival order over the simulator's lifetime.  ``end_date`` pins the
    simulator's "today": no later session is ever emitted and an empty
    endDateTime means the end of that day.  Without it the simulator follows
    its clock (``now``: pinned, or the wall clock): a session that is trading
    right now is served with its bars so far, as IBKR serves them.  ``splits``
    re-adjust a symbol's whole history from its ex-date on, as IBKR does for
    TRADES bars.
    """

    seed: int = 7
    latency_s: float = 0.0
    unknown_symbols: frozenset[str] = frozenset()
    pacing_nth: frozenset[int] = frozenset()
    drop_nth: frozenset[int] = frozenset()
    enforce_pacing: bool = False
    strict_pacing: bool = False
    """With enforce_pacing: apply the 60-per-10-minutes rule to every bar size, not just bars of 30 s or less."""
    end_date: dt.date | None = None
    now: dt.datetime | None = None
    """The simulator's clock, pinned (a test's "market is open now"); None: the wall clock."""
    splits: tuple[Split, ...] = ()
    no_permissions: frozenset[str] = frozenset()
    """Primary exchanges (NYSE, NASDAQ, ...) the login has no market-data subscription for: their stocks' historical
    requests get IBKR's 162 "No market data permissions for <exchange> STK" (NASDAQ named ISLAND, as IBKR does)."""
    competing_session: bool = False
    """The username is live elsewhere: every historical request gets IBKR's 10197 "No market data during competing
    live session"."""

    def __post_init__(self) -> None:
        """Accept any iterables for the sets and an ISO string for ``end_date``."""
        set_ = object.__setattr__
        set_(self, "unknown_symbols", frozenset(s.strip().upper() for s in self.unknown_symbols))
        set_(self, "no_permissions", frozenset(s.strip().upper() for s in self.no_permissions))
        set_(self, "pacing_nth", frozenset(int(n) for n in self.pacing_nth))
        set_(self, "drop_nth", frozenset(int(n) for n in self.drop_nth))
        if isinstance(self.end_date, str):
            set_(self, "end_date", dt.date.fromisoformat(self.end_date))
        if self.latency_s < 0:
            raise ValueError("latency_s must be >= 0")
        if self.now is not None and self.now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        set_(self, "splits", tuple(self.splits))

    def price_factor(self, symbol: str, as_of: dt.date) -> float:
        """Split adjustment of ``symbol``'s history as served on ``as_of``: the product of 1 / ratio of its splits."""
        factor = 1.0
        for split in self.splits:
            if split.symbol == symbol and split.ex_date <= as_of:
                factor /= split.ratio
        return factor


@dataclass(frozen=True)
class Split:
    """A split (ratio > 1: new shares per old share) or reverse split (ratio < 1) of ``symbol`` on ``ex_date``.

    From the ex-date on, the simulator serves the symbol's whole history in the new units: prices divided by
    ``ratio``, volumes multiplied by it, as IBKR's TRADES bars are re-adjusted after a split.
    """

    symbol: str
    ex_date: dt.date
    ratio: float

    def __post_init__(self) -> None:
        if not self.ratio > 0 or self.ratio == 1:
            raise ValueError(f"split ratio must be positive and not 1 (got {self.ratio})")


class HistoricalRequestRecord(NamedTuple):
    """One arrived reqHistoricalData, as logged in :attr:`SimulatorStats.requests_log`."""

    time: float  # time.monotonic() at arrival
    symbol: str
    end_date_time: str
    duration: str
    bar_size: str
    what_to_show: str
    use_rth: bool


@dataclass
class SimulatorStats:
    """Counters for tests and the CLI summary (read them from any thread)."""

    historical_requests: int = 0
    contract_requests: int = 0
    pacing_violations: int = 0
    max_open_historical: int = 0
    requests_log: list[HistoricalRequestRecord] = field(default_factory=list)
    open_historical: int = 0
    connections: int = 0
    open_connections: int = 0
    """Connections still served: one whose client has gone is served until everything it sent has been read."""
    dropped_connections: int = 0


class GatewaySimulator:
    """A fake IB Gateway speaking the real TWS socket protocol.

    ``clock`` (monotonic seconds) drives pacing and the request log; ``now``
    (aware UTC datetime) drives "today" — both injectable for tests.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.config = config or SimulatorConfig()
        self.stats = SimulatorStats()
        self.clock = clock
        pinned = self.config.now
        self.now = now or ((lambda: pinned) if pinned is not None else (lambda: dt.datetime.now(UTC)))
        self.pacing = PacingRules(clock=clock, limits=PacingLimits(rolling_for_all_bar_sizes=self.config.strict_pacing))
        self.unknown_symbols = self.config.unknown_symbols
        self.known_con_ids: dict[int, str] = {}
        self.client_ids_in_use: set[int] = set()
        self._calendar: SessionCalendar | None = None
        self._generator: BarGenerator | None = None
        self._server: asyncio.Server | None = None
        self._sessions: set[ClientSession] = set()
        self._connection_tasks: set[asyncio.Task[object]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._port = 0
        self._stopping = False

    # lifecycle --------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Load the calendar and start listening (port 0 picks a free port)."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._calendar = await asyncio.to_thread(nyse_calendar)
        self._generator = BarGenerator(self.config.seed, self._calendar)
        self._server = await asyncio.start_server(self._accept, host, port)
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("simulator listening on %s:%d (seed=%d)", host, self._port, self.config.seed)

    async def stop(self) -> None:
        """Stop listening and close every client connection."""
        self._stopping = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for session in list(self._sessions):
            session.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._connection_tasks:  # let each session's cleanup run before the loop goes away
            await asyncio.wait(list(self._connection_tasks), timeout=2.0)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    @property
    def port(self) -> int:
        """The port actually bound."""
        return self._port

    @property
    def calendar(self) -> SessionCalendar:
        """The NYSE calendar (available once started)."""
        assert self._calendar is not None, "start() the simulator first"
        return self._calendar

    @property
    def generator(self) -> BarGenerator:
        """The bar generator for this simulator's seed (available once started)."""
        assert self._generator is not None, "start() the simulator first"
        return self._generator

    # shared state used by sessions -----------------------------------------------------

    def as_of(self) -> dt.date:
        """Last session that may be emitted: the configured end date, or the last one that has opened by now."""
        cal = self.calendar
        if self.config.end_date is not None:
            idx = cal.index_on_or_before(min(self.config.end_date, cal.last_session))
            return cal.dates[max(idx, 0)]
        return cal.last_opened_session(self.now())

    def trading_now(self) -> dt.datetime | None:
        """The moment a session may be in progress at: the clock, unless an end date pins a finished day."""
        return None if self.config.end_date is not None else self.now()

    def default_end(self) -> dt.datetime:
        """What an empty endDateTime means: now, or the end of the pinned end date."""
        if self.config.end_date is not None:
            return dt.datetime.combine(self.config.end_date, dt.time(23, 59, 59), NY)
        return self.now()

    def today(self) -> dt.date:
        """The simulator's notion of today in New York."""
        if self.config.end_date is not None:
            return self.config.end_date
        return self.now().astimezone(NY).date()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a reply coroutine, keeping a reference so stop() can cancel it."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = ClientSession(self, reader, writer)
        if self._stopping:  # raced with stop()
            session.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._connection_tasks.add(task)
        self._sessions.add(session)
        self.stats.connections += 1
        self.stats.open_connections += 1
        try:
            await session.run()
        finally:
            self.stats.open_connections -= 1
            self._sessions.discard(session)
            if task is not None:
                self._connection_tasks.discard(task)


class _HistoricalRequest(NamedTuple):
    """A reqHistoricalData message's fields, by name."""

    req_id: int
    contract: ContractRequest
    end: str
    bar_size: str
    duration: str
    use_rth: bool
    what: str
    format_date: int

    @classmethod
    def from_fields(cls, fields: list[str]) -> _HistoricalRequest:
        return cls(
            req_id=int(fields[1]),
            contract=ContractRequest.from_fields(fields, 2),
            end=fields[15],
            bar_size=fields[16],
            duration=fields[17],
            use_rth=fields[18] not in ("0", "", "false", "False"),
            what=fields[19],
            format_date=int(fields[20] or 1),
        )


class _Dropped(Exception):
    """Raised inside a session after an injected drop, to stop reading at once."""


class ClientSession:
    """One client connection: handshake, then request/response until it closes."""

    def __init__(self, sim: GatewaySimulator, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sim = sim
        self.reader = reader
        self.writer = writer
        self.server_version = protocol.MAX_SERVER_VERSION
        self.client_id: int | None = None
        self.peer = writer.get_extra_info("peername")
        self._pending: dict[int, asyncio.Task[None]] = {}
        self._closed = False
        self._handlers: dict[int, Callable[[list[str]], None]] = {
            In.START_API: self._on_start_api,
            In.REQ_POSITIONS: lambda f: self.send(Out.POSITION_END, 1),
            In.REQ_OPEN_ORDERS: lambda f: self.send(Out.OPEN_ORDER_END, 1),
            In.REQ_ALL_OPEN_ORDERS: lambda f: self.send(Out.OPEN_ORDER_END, 1),
            In.REQ_COMPLETED_ORDERS: lambda f: self.send(Out.COMPLETED_ORDERS_END),
            In.REQ_ACCOUNT_UPDATES: self._on_account_updates,
            In.REQ_ACCOUNT_UPDATES_MULTI: lambda f: self.send(Out.ACCOUNT_UPDATE_MULTI_END, 1, int(f[2])),
            In.REQ_EXECUTIONS: lambda f: self.send(Out.EXECUTION_DATA_END, 1, int(f[2])),
            In.REQ_IDS: lambda f: self.send(Out.NEXT_VALID_ID, 1, 1),
            In.REQ_MANAGED_ACCTS: lambda f: self.send(Out.MANAGED_ACCTS, 1, ACCOUNT),
            In.REQ_CURRENT_TIME: lambda f: self.send(Out.CURRENT_TIME, 1, int(self.sim.now().timestamp())),
            In.REQ_CONTRACT_DETAILS: self._on_contract_details,
            In.REQ_HISTORICAL_DATA: self._on_historical_data,
            In.CANCEL_HISTORICAL_DATA: self._on_cancel_historical,
            In.REQ_HEAD_TIMESTAMP: self._on_head_timestamp,
            In.CANCEL_HEAD_TIMESTAMP: lambda f: None,  # replies are immediate: nothing to cancel
            In.REQ_AUTO_OPEN_ORDERS: lambda f: None,
            In.CANCEL_POSITIONS: lambda f: None,
            In.CANCEL_ACCOUNT_UPDATES_MULTI: lambda f: None,
        }

    # plumbing ---------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until the peer leaves, a drop is injected or stop()."""
        try:
            if await self._handshake():
                while not self._closed:
                    fields = await self._read_frame()
                    self._dispatch(fields)
        except (asyncio.IncompleteReadError, ConnectionError, _Dropped):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must cost one connection, never the server
            log.exception("session %s failed", self.peer)
        finally:
            self.close()
            log.debug("session %s (clientId %s) closed", self.peer, self.client_id)

    async def _handshake(self) -> bool:
        magic = await self.reader.readexactly(len(protocol.API_MAGIC))
        if magic != protocol.API_MAGIC:
            log.warning("peer %s is not a TWS API client (got %r)", self.peer, magic)
            return False
        offer = protocol.decode_payload(await self._read_payload())
        try:
            _low, high = protocol.parse_version_range(offer[0] if offer else "")
        except ValueError:
            log.warning("peer %s sent a bad version offer %r", self.peer, offer)
            return False
        self.server_version = protocol.negotiate_version(high)
        if self.server_version < protocol.MIN_SERVER_VERSION:
            log.warning("peer %s only speaks up to version %d", self.peer, high)
            return False
        stamp = self.sim.now().astimezone(NY)
        self.send(self.server_version, f"{stamp:%Y%m%d %H:%M:%S} {stamp.tzname()}")
        return True

    async def _read_payload(self) -> bytes:
        (length,) = struct.unpack(">I", await self.reader.readexactly(4))
        if length > protocol.MAX_FRAME_BYTES:
            raise ConnectionError(f"frame of {length} bytes refused")
        return await self.reader.readexactly(length)

    async def _read_frame(self) -> list[str]:
        return protocol.decode_payload(await self._read_payload())

    def _dispatch(self, fields: list[str]) -> None:
        try:
            msg_id = int(fields[0])
        except (IndexError, ValueError):
            log.warning("session %s: malformed message %r ignored", self.peer, fields[:4])
            return
        handler = self._handlers.get(msg_id)
        if handler is None:
            log.debug("session %s: message id %d not simulated, ignored", self.peer, msg_id)
            return
        try:
            handler(fields)
        except _Dropped:
            raise
        except (IndexError, ValueError) as exc:
            log.warning("session %s: malformed message %d ignored (%s)", self.peer, msg_id, exc)

    def send(self, *fields: object) -> None:
        """Write one message unless the connection is already going away."""
        if self._closed or self.writer.is_closing():
            return
        self.writer.write(protocol.encode(fields))

    def send_error(self, req_id: int, code: int, text: str) -> None:
        """Send an error message shaped for the negotiated version."""
        self.send(*protocol.error_fields(self.server_version, req_id, code, text))

    def close(self, abort: bool = False) -> None:
        """Release the clientId, cancel pending replies and close the socket."""
        if self._closed:
            return
        self._closed = True
        if self.client_id is not None:
            self.sim.client_ids_in_use.discard(self.client_id)
        for task in self._pending.values():
            task.cancel()
        self._pending.clear()
        if abort:
            self.writer.transport.abort()
        else:
            self.writer.close()

    # connection setup -------------------------------------------------------------------

    def _on_start_api(self, fields: list[str]) -> None:
        client_id = int(fields[2])
        if self.client_id is not None:
            log.debug("session %s: repeated startApi ignored", self.peer)
            return
        if client_id in self.sim.client_ids_in_use:
            log.info("clientId %d already in use: refusing %s", client_id, self.peer)
            self.send_error(-1, protocol.ERR_CLIENT_ID_IN_USE, protocol.TEXT_CLIENT_ID_IN_USE)
            self.close()
            raise _Dropped
        self.client_id = client_id
        self.sim.client_ids_in_use.add(client_id)
        self.send(Out.MANAGED_ACCTS, 1, ACCOUNT)
        self.send(Out.NEXT_VALID_ID, 1, 1)
        for code, text in protocol.FARM_OK_NOTICES:
            self.send_error(-1, code, text)
        log.info("client %d connected from %s (server version %d)", client_id, self.peer, self.server_version)

    def _on_account_updates(self, fields: list[str]) -> None:
        if fields[2] in ("1", "true", "True"):
            self.send(Out.ACCT_DOWNLOAD_END, 1, fields[3] or ACCOUNT)

    # contracts --------------------------------------------------------------------------

    def _on_contract_details(self, fields: list[str]) -> None:
        req_id = int(fields[2])
        self.sim.stats.contract_requests += 1
        req = ContractRequest.from_fields(fields, 3)
        symbol = resolve_symbol(req, self.sim.unknown_symbols, self.sim.known_con_ids)
        if symbol is None:
            log.info("contract details %s: no security definition", req.describe())
            self.send_error(req_id, protocol.ERR_NO_SECURITY, protocol.TEXT_NO_SECURITY)
            return
        self.sim.known_con_ids[con_id_for(symbol)] = symbol
        self.send(*contract_data_fields(self.server_version, req_id, req, symbol, self.sim.calendar, self.sim.today()))
        self.send(Out.CONTRACT_DATA_END, 1, req_id)

    def _on_head_timestamp(self, fields: list[str]) -> None:
        req_id = int(fields[1])
        req = ContractRequest.from_fields(fields, 2)
        if resolve_symbol(req, self.sim.unknown_symbols, self.sim.known_con_ids) is None:
            self.send_error(req_id, protocol.ERR_NO_SECURITY, protocol.TEXT_NO_SECURITY)
            return
        first_open = self.sim.calendar.open_at(0)
        format_date = int(fields[17] or 1) if len(fields) > 17 else 1
        stamp = str(int(first_open.timestamp())) if format_date == 2 else f"{first_open:%Y%m%d-%H:%M:%S}"
        self.send(Out.HEAD_TIMESTAMP, req_id, stamp)

    # historical data --------------------------------------------------------------------

    def _on_historical_data(self, fields: list[str]) -> None:
        request = _HistoricalRequest.from_fields(fields)
        nth = self._count_historical(request)
        if self._inject_historical_fault(nth, request.req_id):
            return
        symbol = self._servable_symbol(request)
        if symbol is None:
            return
        query = HistoricalQuery(
            symbol,
            request.contract.exchange or "SMART",
            request.end,
            request.duration,
            request.bar_size,
            request.what,
            request.use_rth,
            request.format_date,
        )
        history = self._plan_history(nth, request.req_id, query)
        if history is None or self._paced_out(nth, request.req_id, query):
            return
        self._start_historical_reply(request.req_id, history)

    def _count_historical(self, request: _HistoricalRequest) -> int:
        """Record the request in the stats and the debug log: its 1-based position over the simulator's lifetime."""
        sim = self.sim
        req = request.contract
        sim.stats.historical_requests += 1
        nth = sim.stats.historical_requests
        sim.stats.requests_log.append(
            HistoricalRequestRecord(
                sim.clock(),
                req.symbol or req.local_symbol or str(req.con_id),
                request.end,
                request.duration,
                request.bar_size,
                request.what,
                request.use_rth,
            )
        )
        log.debug(
            "historical #%d reqId %d: %s %r %s %s %s rth=%s",
            nth,
            request.req_id,
            req.describe(),
            request.end,
            request.duration,
            request.bar_size,
            request.what,
            request.use_rth,
        )
        return nth

    def _inject_historical_fault(self, nth: int, req_id: int) -> bool:
        """The fault plan's drop (raises :class:`_Dropped`) or pacing violation for the nth request; True if sent."""
        sim = self.sim
        if nth in sim.config.drop_nth:
            log.info("historical request #%d: dropping client %s (injected)", nth, self.client_id)
            sim.stats.dropped_connections += 1
            self.close(abort=True)
            raise _Dropped
        if nth in sim.config.pacing_nth:
            log.info("historical request #%d: pacing violation (injected)", nth)
            sim.stats.pacing_violations += 1
            self.send_error(req_id, protocol.ERR_HMDS, protocol.TEXT_PACING_VIOLATION)
            return True
        return False

    def _servable_symbol(self, request: _HistoricalRequest) -> str | None:
        """The symbol to serve, or None after sending IBKR's refusal (no such security, a competing live session,
        no market-data permissions for its primary exchange), checked in the order IBKR answers them."""
        sim, req_id = self.sim, request.req_id
        symbol = resolve_symbol(request.contract, sim.unknown_symbols, sim.known_con_ids)
        if symbol is None:
            self.send_error(req_id, protocol.ERR_NO_SECURITY, protocol.TEXT_NO_SECURITY)
            return None
        if sim.config.competing_session:
            self.send_error(req_id, protocol.ERR_COMPETING_SESSION, protocol.TEXT_COMPETING_SESSION)
            return None
        exchange = primary_exchange_for(request.contract, symbol).upper()
        if exchange in sim.config.no_permissions:
            named = "ISLAND" if exchange == "NASDAQ" else exchange  # IBKR's own code for NASDAQ
            self.send_error(req_id, protocol.ERR_HMDS, protocol.text_no_permissions(named))
            return None
        return symbol

    def _plan_history(self, nth: int, req_id: int, query: HistoricalQuery) -> HistoryPlan | None:
        """The bars to send, or None after sending the error of a query IBKR would refuse."""
        sim = self.sim
        try:
            as_of = sim.as_of()
            return plan(
                query,
                sim.calendar,
                default_end=sim.default_end(),
                as_of=as_of,
                now=sim.trading_now(),
                price_factor=sim.config.price_factor(query.symbol, as_of),
            )
        except QueryError as err:
            log.info("historical request #%d refused: %s", nth, err)
            self.send_error(req_id, err.code, err.text)
            return None

    def _paced_out(self, nth: int, req_id: int, query: HistoricalQuery) -> bool:
        """With enforce_pacing: True after sending a pacing violation if this request breaks IBKR's rules."""
        sim = self.sim
        if not sim.config.enforce_pacing:
            return False
        broken = sim.pacing.check(
            PacingRequest(
                f"{query.symbol}|STK|USD",
                query.exchange,
                query.what_to_show,
                query.end_date_time,
                query.duration,
                query.bar_size,
                query.use_rth,
            ),
            open_requests=sim.stats.open_historical,
        )
        if not broken:
            return False
        log.info("historical request #%d: pacing violation (%s)", nth, broken)
        sim.stats.pacing_violations += 1
        self.send_error(req_id, protocol.ERR_HMDS, protocol.TEXT_PACING_VIOLATION)
        return True

    def _start_historical_reply(self, req_id: int, history: HistoryPlan) -> None:
        """Send the bars in their own task; a reqId asked again replaces its earlier reply."""
        sim = self.sim
        if req_id in self._pending:
            self._pending.pop(req_id).cancel()
        sim.stats.open_historical += 1
        sim.stats.max_open_historical = max(sim.stats.max_open_historical, sim.stats.open_historical)
        task = sim.spawn(self._reply_historical(req_id, history))
        self._pending[req_id] = task
        # A done-callback (not a finally) because a task cancelled before its first
        # step never enters its body.
        task.add_done_callback(lambda t, rid=req_id: self._historical_done(rid, t))

    def _historical_done(self, req_id: int, task: asyncio.Task[None]) -> None:
        self.sim.stats.open_historical -= 1
        if self._pending.get(req_id) is task:
            del self._pending[req_id]

    async def _reply_historical(self, req_id: int, history: HistoryPlan) -> None:
        """Wait out the latency, then send the bars (or IBKR's "no data")."""
        sim = self.sim
        try:
            if sim.config.latency_s > 0:
                await asyncio.sleep(sim.config.latency_s)
            if history.estimated_bars > _OFFLOAD_BARS:
                bars = await asyncio.to_thread(history.generate, sim.generator)
            else:
                bars = history.generate(sim.generator)
            q = history.query
            if not bars:
                self.send_error(req_id, protocol.ERR_HMDS, protocol.text_no_data(q.symbol, q.exchange, q.what_to_show))
                return
            self.send(*self._historical_fields(req_id, history, bars))
            if not self.writer.is_closing():
                await self.writer.drain()
        except ConnectionError:
            pass

    def _historical_fields(self, req_id: int, history: HistoryPlan, bars: list[Bar]) -> list[object]:
        daily = history.bar_minutes == DAILY
        fmt = history.query.format_date
        out: list[object] = [Out.HISTORICAL_DATA, req_id, _ib_time(history.start), _ib_time(history.end), len(bars)]
        for b in bars:
            if daily:
                label = f"{b.time:%Y%m%d}"
            elif fmt == 2:
                label = str(int(b.time.timestamp()))  # type: ignore[union-attr]
            else:
                label = _ib_time(b.time)  # type: ignore[arg-type]
            out += [
                label,
                f"{b.open:.2f}",
                f"{b.high:.2f}",
                f"{b.low:.2f}",
                f"{b.close:.2f}",
                b.volume,
                f"{b.wap:.2f}" if b.wap >= 0 else "-1",
                b.bar_count,
            ]
        return out

    def _on_cancel_historical(self, fields: list[str]) -> None:
        req_id = int(fields[2])
        task = self._pending.pop(req_id, None)
        if task is not None and not task.done():
            task.cancel()
            log.info("historical reqId %d cancelled by client %s", req_id, self.client_id)
            self.send_error(req_id, protocol.ERR_HMDS, protocol.text_query_cancelled(req_id))


def _ib_time(t: dt.datetime) -> str:
    """``yyyymmdd hh:mm:ss US/Eastern``: what ib_async/ib_insync parse as aware datetimes."""
    return f"{t.astimezone(NY):%Y%m%d %H:%M:%S} US/Eastern"


@contextlib.contextmanager
def run_simulator_in_thread(
    config: SimulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 15.0
) -> Iterator[GatewaySimulator]:
    """Run a simulator on its own event loop in a daemon thread (for synchronous code).

    Yields the started simulator; on exit it is stopped and the thread joined.
    """
    loop = asyncio.new_event_loop()
    sim = GatewaySimulator(config)
    thread = threading.Thread(target=loop.run_forever, name="gateway-simulator", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(sim.start(host, port), loop).result(timeout_s)
        yield sim
    finally:
        try:
            asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(timeout_s)
            asyncio.run_coroutine_threadsafe(loop.shutdown_default_executor(), loop).result(timeout_s)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout_s)
            loop.close()
