"""The gateway session: connect, qualify contracts and fetch historical bars through ib_async's Async API.

Everything here runs inside one ``asyncio.run`` (no nest_asyncio). What the client library shows on each
fault (measured with ib_async 2.1.0 and ib_insync 0.9.86 against the gateway simulator, which answers as
IBKR does: ``gateway_simulator/protocol.py``), and what this module turns it into:

==========================================  ===================================================
what ib_async shows                          what the session does
==========================================  ===================================================
``[]`` + a pacing violation: 162 "pacing     keep IBKR's 60-per-10-minutes rule from then on (not
violation", 420, or 322 "simultaneous"       for 322), cool the limiter down, back off, retry for up
                                             to ``RetryPolicy.pacing_give_up_s`` (IBKR's window: 10 min)
``[]`` + errorEvent 162 "returned no data"   outcome ``no_data`` (not an error)
``[]`` before the timeout, no error code     outcome ``no_data`` (a server that sends zero bars);
                                             retried if the server cancelled the request itself
``[]`` + errorEvent 366 "No historical data  the gateway lost the request: retried like one it
query found" (ib_async ends the request)     cancelled; when every try ends so, ``failed`` with the
                                             code and "the gateway ended the request" (no timeout)
``[]`` + 1100/1101/1102 under the request's  the same, for a bar request or a contract lookup; a
id, not -1 (ib_async ends the request)       1100 is an IBKR-wide outage as under -1 (the retry
                                             waits for its end, and is not counted)
``[]`` + errorEvent 162 "HMDS server        lost, not refused: retried like a 366 (the gateway
disconnect occurred. Attempting              reconnects meanwhile: the limiter's 15 s between
reconnection..." (ib_async ends it)          identical requests gives it time)
``[]`` + errorEvent 200                      outcome ``failed``, code 200 (the other symbols go on)
``[]`` + a missing subscription: 162 "No     outcome ``failed`` at once with the code, not retried
market data permissions for NYSE STK", 354,  (:func:`gateway_errors.market_data_refusal` names
10089, 10090, 10168 (ib_async ends the       the exchange); the other symbols go on: a
request at once)                             subscription covers some exchanges only
``[]`` + 10197 "No market data during        :class:`MarketDataRefusedError`; no request (bars or
competing live session", or 162 "...         contract) is sent after it: every one would be refused
connected from a different IP address"       alike until the other session of the username ends
errorEvent 321 (request invalid)             a bar request: :class:`InvalidRequestError` at once
                                             (ib_async would only time out); the loader stops the
                                             run (its settings are every symbol's). A contract
                                             lookup: that symbol fails at once, code 321
an answer the client cannot decode (the      ``failed`` at once, with the library's reason; not
library logs it and drops it, and would      retried (the same answer would not decode again). The
wait for its timeout)                        request is found by the id in the logged fields
                                             (:mod:`ingest.ibkr.decode_errors`); when no request
                                             of this session has it, a timeout names the error
                                             instead
``[]`` at the timeout, no error code, or     a timeout: retried, then ``failed`` "timed out"
only 162 "query cancelled" (the answer to
the cancel ib_async sent at its timeout)
``ConnectionError`` / disconnectedEvent      reconnect (single flight, backoff), then retry
an outage notice (1100 and 2110 IBKR-wide,   a request waits while a farm it may use is down:
2105 an HMDS farm, 2157 a sec-def farm, a    historical requests for IBKR-wide and every HMDS
farm a 1102 lists as not connected;          farm (which one serves a symbol is not known),
:mod:`ingest.ibkr.farms`), kept per          contract lookups for IBKR-wide and every sec-def
farm from the start-up on                    farm; each outage ends with its own OK notice
                                             (1101/1102, for 2110 also a farm's OK; 2106 or
                                             2107 for that farm, or a 1102 listing it as
                                             connected; 2158), or after the reconnect timeout
                                             from its notice; a timeout of a request that met
                                             an outage (in effect when it went on the wire, or
                                             reported while it was out) is asked again, not
                                             counted; 2107/2108 never hold one
1300 "TWS socket port has been reset ...      the connection is not tried again on the old port:
reconnect on the new port - N", then the     :class:`GatewayUnavailableError` at once, naming the
connection drops                             new port for IBKR_PORT
apiError during the handshake                :class:`GatewayUnavailableError` at once, with its text
                                             (e.g. a server version older than the client's minimum)
a server version above the client's offer    :class:`GatewayUnavailableError`: the client would
                                             misread that version's messages
the connection closed before the handshake   :class:`GatewayUnavailableError` at once (the library
(a host the gateway refuses, a tunnel with   would wait out the connect timeout without a word)
no gateway behind it)
==========================================  ===================================================

Warnings never fail a request: ib_async keeps waiting after 165, 10167 and the 2100-2199 notices (the
2174 time-zone warning among them), and so does this module (:func:`gateway_errors.is_notice`).

An empty list alone cannot tell "no data", "error" and "timeout" apart; the codes that errorEvent
delivered for *this* request can. Each attempt sends its own Contract object, and errorEvent hands that
very object back, so every error lands with the request it belongs to (:mod:`ingest.ibkr.in_flight`).

What each code means is :mod:`ingest.ibkr.gateway_errors`; the values the session takes and hands back, and
the errors it raises, :mod:`ingest.ibkr.session_types`; which client library it speaks through,
:mod:`ingest.ibkr.client_library`; why a connect failed (the last rows above), :mod:`ingest.ibkr.handshake`.

Imports only the standard library, the client library and the pure modules beside it (its settings, the limiter,
farms, the ones named above), so that :mod:`ingest.ibkr.compat_check` can run this same code with ib_insync 0.9.86 in a venv of
its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, NamedTuple

from ingest.ibkr import farms, handshake, in_flight
from ingest.ibkr.client_library import client_library
from ingest.ibkr.config import IbkrSettings
from ingest.ibkr.decode_errors import DecodeErrors, undecodable_note
from ingest.ibkr.gateway_errors import (
    ENDS_REQUEST_NOTICES,
    ERR_CLIENT_ID_IN_USE,
    ERR_HMDS,
    ERR_INVALID_REQUEST,
    ERR_PORT_RESET,
    ERR_SIMULTANEOUS_OR_PACING,
    is_hmds_disconnect,
    is_no_data,
    is_notice,
    is_pacing_violation,
    market_data_refusal,
)
from ingest.ibkr.pacing import PacingLimiter, RequestKey
from ingest.ibkr.session_types import (
    ContractRef,
    GatewayUnavailableError,
    InvalidRequestError,
    MarketDataRefusedError,
    Outcome,
    QualifyOutcome,
    RetryPolicy,
    SessionStats,
    SourceBar,
)

log = logging.getLogger(__name__)


@dataclass
class _Tries:
    """How often one request (a bar request or a contract lookup) went out, and why it went out again: what its
    retry decisions count."""

    attempts: int = 0
    pacing: int = 0
    """Pacing violations: each backs off longer."""
    timeouts: int = 0
    drops: int = 0
    """Connections lost while it was out."""
    outage_timeouts: int = 0
    """Timeouts of a try that met an outage: asked again, not counted as timeouts."""
    first_violation: float | None = None
    """When IBKR first refused it for pacing (the event loop's clock)."""


class _Sent(NamedTuple):
    """What a bar request's verdict needs of the moment it went out."""

    outages: int
    """The farms' mark (:meth:`farms.FarmStatus.mark`): the outages it met are those in effect then or since."""
    at: float
    """The event loop's clock."""
    undecoded_before: int
    """How many answers no request could be found for had gone undecoded."""


class IbkrSession:
    """One API connection (reconnected as needed) shared by all of a run's requests."""

    def __init__(
        self,
        settings: IbkrSettings,
        limiter: PacingLimiter,
        retry: RetryPolicy | None = None,
        *,
        library: ModuleType | None = None,
    ) -> None:
        self.settings = settings
        self.limiter = limiter
        self.retry = retry or RetryPolicy()
        self.lib = library or client_library()
        self.ib = self.lib.IB()
        self.ib.RaiseRequestErrors = False
        self.ib.errorEvent += self._on_error
        self.ib.disconnectedEvent += self._on_disconnected
        self.stats = SessionStats()
        self._in_flight = in_flight.InFlight()
        self._connect_lock = asyncio.Lock()
        self._connection_notices: list[tuple[int, str]] = []
        self._closing = False
        self._lost: GatewayUnavailableError | None = None
        self._refused: MarketDataRefusedError | None = None
        """Set once IBKR refuses this login market data altogether: no request is sent after that."""
        self._port_reset: str | None = None
        """IBKR's 1300 "TWS socket port has been reset ... reconnect on the new port - N", once the gateway sent it."""
        self._handshake_ended: asyncio.Event | None = None
        """While a connect is under way: set to end its wait at once (by :class:`handshake.HandshakeWatch`, or by
        a 326 "client id is already in use" in :meth:`_on_error`)."""
        self._farms = farms.FarmStatus(settings.reconnect_timeout_s)
        self._farms_changed = asyncio.Event()  # set (and replaced) whenever an outage begins or ends
        self._decode_errors = DecodeErrors(self.lib.__name__, self._on_undecodable)

    # --- connection ---------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect once; a clear :class:`GatewayUnavailableError` when nothing answers."""
        async with self._connect_lock:
            if not self.ib.isConnected():
                await self._connect_once()
                self.stats.connects += 1

    async def close(self) -> None:
        self._closing = True
        if self.ib.isConnected():
            self.ib.disconnect()
        self._decode_errors.detach()

    async def __aenter__(self) -> IbkrSession:
        try:
            await self.connect()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _connect_once(self) -> None:
        """One connect and API start-up: a :class:`GatewayUnavailableError` that says why when it fails."""
        s = self.settings
        arguments = self._connect_arguments()
        self._connection_notices.clear()
        self._farms.reset()  # a new API session: the gateway reports every farm afresh, from its start-up on
        self._decode_errors.attach()
        where = f"{s.host}:{s.port}"
        ended = self._handshake_ended = asyncio.Event()
        await self._let_the_last_connection_close()
        connecting = asyncio.ensure_future(self.ib.connectAsync(**arguments))
        watch = handshake.HandshakeWatch(self.ib, connecting, ended)
        watch.attach()
        try:
            await in_flight.first_of(connecting, ended)
        except ConnectionRefusedError:
            raise GatewayUnavailableError(
                f"no IB Gateway or TWS answers at {where} (connection refused). Start IB Gateway or TWS and log "
                "in (its API port opens only once it is logged in, and closes at its daily restart or logoff), "
                "enable its API (Configure > Settings > API > Settings), and check IBKR_HOST / IBKR_PORT "
                "(IB Gateway 4002 paper / 4001 live, TWS 7497 paper / 7496 live)."
            ) from None
        except (TimeoutError, in_flight.Ended):
            reason = watch.why_not_started(s, self._connection_notices)
            raise GatewayUnavailableError(f"cannot connect to IB Gateway/TWS at {where}: {reason}") from None
        except OSError as error:
            # Closed after the handshake began: the start-up's next message found the connection gone.
            reason = watch.refused_during_start_up(s, self._connection_notices) or str(error)
            raise GatewayUnavailableError(f"cannot connect to IB Gateway/TWS at {where}: {reason}") from None
        finally:
            watch.detach()
            self._handshake_ended = None
        version = self._refuse_a_version_above_the_offer(where)
        for code, message in self._connection_notices:  # held back while a failed start-up would have named them
            if not is_notice(code) and code != ERR_CLIENT_ID_IN_USE:
                log.warning("gateway notice %s: %s", code, message)
        log.info("connected to %s (server version %s)", self.settings.describe(), version)
        # Requests held by an outage of the last session look again: it was forgotten with that session, and would
        # otherwise hold them for the rest of its patience although the new session's notices say nothing of it.
        self._farms_have_changed()

    def _connect_arguments(self) -> dict[str, Any]:
        s = self.settings
        kwargs: dict[str, Any] = {
            "host": s.host,
            "port": s.port,
            "clientId": s.client_id,
            "timeout": s.connect_timeout_s,
            "readonly": s.readonly,
        }
        # ib_async can skip the start-up downloads (orders, account, executions) a loader never needs.
        if "fetchFields" in inspect.signature(self.ib.connectAsync).parameters and hasattr(
            self.lib, "StartupFetchNONE"
        ):
            kwargs["fetchFields"] = self.lib.StartupFetchNONE
        return kwargs

    async def _let_the_last_connection_close(self) -> None:
        """A connection the client gave up on is still closing (the library waits for that close as it connects
        again): its close must not read as the new connection's, closed before its handshake."""
        conn = self.ib.client.conn
        if conn.transport is None:
            return
        old_closed = asyncio.get_running_loop().create_future()

        def on_old_closed(_message: object) -> None:
            if not old_closed.done():
                old_closed.set_result(None)

        conn.disconnected += on_old_closed  # before anything yields: the close may be due at once
        try:
            conn.disconnect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(old_closed, self.settings.connect_timeout_s)
        finally:
            conn.disconnected -= on_old_closed

    def _refuse_a_version_above_the_offer(self, where: str) -> int:
        """The API version the server chose, once the start-up is complete; refused above the client's offer."""
        if not self.ib.isConnected():  # pragma: no cover - defensive
            raise GatewayUnavailableError(
                f"cannot connect to IB Gateway/TWS at {where}: connection closed during start-up"
            )
        version, highest = self.ib.client.serverVersion(), getattr(self.ib.client, "MaxClientVersion", None)
        if highest is not None and version > highest:
            # The protocol has the server pick a version within the client's offer; the messages of a later
            # version have other shapes, which the client would misread without a word.
            self._disconnect_quietly()
            raise GatewayUnavailableError(
                f"cannot connect to IB Gateway/TWS at {where}: the server chose API version {version}, above the "
                f"highest this client offered ({highest}); its messages would be misread"
            )
        return version

    def _disconnect_quietly(self) -> None:
        closing, self._closing = self._closing, True
        try:
            self.ib.disconnect()
        finally:
            self._closing = closing

    async def _ensure_connected(self) -> None:
        """Reconnect after a drop: one coroutine reconnects, the others wait for it.

        Once reconnecting has failed for ``reconnect_timeout_s``, the gateway counts as lost for the rest of
        the run: every later call raises at once instead of trying again.
        """
        if self.ib.isConnected():
            return
        if self._lost is not None:
            raise self._lost
        if self._port_reset is not None:
            # The gateway moved its API to another port: reconnecting to this one cannot succeed.
            self._lost = self._port_reset_error(self._port_reset)
            raise self._lost
        async with self._connect_lock:
            if self.ib.isConnected():
                return
            if self._lost is not None:
                raise self._lost
            await self._reconnect()

    def _port_reset_error(self, notice: str) -> GatewayUnavailableError:
        """IBKR's 1300 ``notice`` as the run's end: which port to set."""
        new_port = re.search(r"new port\D*(\d+)", notice)
        return GatewayUnavailableError(
            f"the gateway at {self.settings.describe()} reset its API socket port and dropped the connection "
            f"(error {ERR_PORT_RESET}: {notice}): set IBKR_PORT (or --port) to "
            f"{new_port.group(1) if new_port else 'the new port'} and run again"
        )

    async def _reconnect(self) -> None:
        """Try to connect again with growing waits, until ``reconnect_timeout_s`` is up: then the gateway is lost."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.reconnect_timeout_s
        delay = 0.2
        while True:
            try:
                with contextlib.suppress(Exception):
                    self.ib.disconnect()  # reset the client's state before a fresh handshake
                await self._connect_once()
            except GatewayUnavailableError as error:
                if loop.time() + delay > deadline:
                    self._lost = GatewayUnavailableError(
                        f"the connection to {self.settings.describe()} was lost and not restored within "
                        f"{self.settings.reconnect_timeout_s:g} s: {error}"
                    )
                    raise self._lost from None
                log.warning("reconnect failed (%s); next try in %.1f s", error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.stats.reconnects += 1
            log.warning("reconnected to %s", self.settings.describe())
            return

    def _on_disconnected(self) -> None:
        # A handshake that fails reports itself (GatewayUnavailableError): nothing was connected that could resume.
        if not self._closing and self._handshake_ended is None:
            log.warning("connection to %s lost; requests will reconnect and resume", self.settings.describe())

    def _on_error(self, req_id: int, code: int, message: str, contract: Any = None, *_: Any) -> None:
        if req_id == -1 or contract is None:
            self._connection_notices.append((code, message))
            if code == ERR_PORT_RESET:
                self._port_reset = message
            if code == ERR_CLIENT_ID_IN_USE and self._handshake_ended is not None:
                self._handshake_ended.set()
            self._note_farm(code, message)
            # 326, and any error during the start-up, becomes the connection's error.
            if not is_notice(code) and code != ERR_CLIENT_ID_IN_USE and self._handshake_ended is None:
                log.warning("gateway notice %s: %s", code, message)
            return
        self._note_farm(code, message)  # a connectivity notice under a request's id is as much an outage
        tracked = self._in_flight.of(contract)
        if tracked is None:
            return  # a late answer to a request we already gave up on (e.g. "query cancelled")
        tracked.errors.append((code, message))
        if code == ERR_INVALID_REQUEST:
            tracked.cut_short.set()

    def _on_undecodable(self, req_id: int | None, reason: str) -> bool:
        """An answer the client library could not decode: the request it answers fails at once (the same answer
        would not decode on a retry either). False when it answers none of this session's requests in flight."""
        # ib_async keeps, per request id, the Contract a request was made with: errorEvent hands it over from there,
        # and so does this. The library's decoder logger is shared by every client of a process, so two sessions
        # running at once could each take the other's request id for their own; the loader runs one session.
        contract = getattr(self.ib.wrapper, "_reqId2Contract", {}).get(req_id) if req_id is not None else None
        tracked = self._in_flight.of(contract) if contract is not None else None
        if tracked is None:
            return False
        tracked.undecodable = tracked.undecodable or reason
        tracked.cut_short.set()
        return True

    def _stock(self, ref: ContractRef) -> Any:
        """A fresh Contract object for every attempt (errors are matched by identity)."""
        kwargs: dict[str, Any] = {}
        if ref.primary_exchange:
            kwargs["primaryExchange"] = ref.primary_exchange
        if ref.con_id:
            kwargs["conId"] = ref.con_id
        return self.lib.Stock(ref.symbol, ref.exchange, ref.currency, **kwargs)

    # --- contract qualification ---------------------------------------------------------------

    async def qualify(self, symbol: str, primary_exchange: str = "") -> QualifyOutcome:
        """Look up the stock's conId (SMART routing, USD, the watchlist's primary exchange)."""
        ref = ContractRef(symbol=symbol, primary_exchange=primary_exchange)
        tries = _Tries()
        while True:
            if self._refused is not None:  # its bars would be refused: the lookup is not worth a request
                raise self._refused
            await self._ensure_connected()
            await self._wait_for_farms(farms.CONTRACT_DETAILS)
            contract = self._stock(ref)
            with self._in_flight.track(contract) as tracked:
                try:
                    await self.limiter.message()
                    outages = self._farms.mark(farms.CONTRACT_DETAILS)  # as it goes out, after its turn
                    self.stats.contract_requests += 1
                    undecoded_before = self._decode_errors.count
                    details = await self._contract_details(contract, tracked)
                except ConnectionError as error:
                    if self._dropped_once_too_often(tries):
                        return QualifyOutcome(None, None, f"connection lost {tries.drops} times: {error}")
                    continue
                except TimeoutError:
                    if self._lost_in_an_outage(farms.CONTRACT_DETAILS, outages, tries):
                        continue  # IBKR or a sec-def farm was down meanwhile: lost, not refused
                    tries.timeouts += 1
                    self.stats.timeouts += 1
                    if tries.timeouts > self.retry.timeout_retries:
                        return QualifyOutcome(
                            None,
                            None,
                            f"timed out: no contract details within {self.settings.request_timeout_s:g} s "
                            f"({tries.timeouts} tries){self._unrestored(farms.CONTRACT_DETAILS)}",
                        )
                    continue
            ended = None if details else tracked.first(lambda c, m: c in ENDS_REQUEST_NOTICES)
            if ended is not None:  # the gateway cut the lookup short (a connectivity notice under its id)
                if self._lost_in_an_outage(farms.CONTRACT_DETAILS, outages, tries):
                    continue
                tries.timeouts += 1
                if tries.timeouts > self.retry.timeout_retries:
                    message = (
                        f"the gateway ended the lookup without an answer ({tries.timeouts} tries; the last: {ended[1]})"
                    )
                    return QualifyOutcome(None, ended[0], message)
                continue
            if tracked.undecodable is not None or not details:
                return self._no_contract_found(tracked, undecoded_before)
            return _the_match(symbol, primary_exchange, details, ref.currency)

    async def _contract_details(self, contract: Any, tracked: in_flight.Tracked) -> list[Any]:
        """The lookup's answer, within the request timeout (:class:`TimeoutError` after it); none, at once, when
        its fate is known first."""
        try:
            return await in_flight.first_of(
                asyncio.wait_for(
                    in_flight.as_awaitable(self.ib.reqContractDetailsAsync(contract)),
                    self.settings.request_timeout_s,
                ),
                tracked.cut_short,
            )
        except in_flight.Ended:  # a 321, or details the client could not decode: not asked again
            return []

    def _no_contract_found(self, tracked: in_flight.Tracked, undecoded_before: int) -> QualifyOutcome:
        """A lookup that found nothing: the gateway's error, if it sent one, or why there is none."""
        if tracked.undecodable is not None:
            return QualifyOutcome(
                None, None, f"no contract found (no error code){undecodable_note(tracked.undecodable)}"
            )
        failure = tracked.failures[0] if tracked.failures else None
        if failure is None:
            # The library may have dropped the details it got (an answer it could not attribute).
            message = "no contract found (no error code)" + self._decode_errors.since(undecoded_before)
            return QualifyOutcome(None, None, message)
        return QualifyOutcome(None, failure[0], failure[1])

    # --- historical bars ----------------------------------------------------------------------

    async def fetch(
        self,
        ref: ContractRef,
        *,
        end: str,
        duration: str,
        bar_size: str,
        what_to_show: str,
        use_rth: bool,
        intraday: bool,
    ) -> Outcome:
        """One reqHistoricalData with retries; never raises for per-symbol faults (only 321 and a lost gateway)."""
        key = RequestKey(ref.pacing_id, ref.exchange, what_to_show, end, duration, bar_size, use_rth)
        loop = asyncio.get_running_loop()
        tries = _Tries()
        while True:
            tries.attempts += 1
            await self._ensure_connected()
            await self._wait_for_farms(farms.HISTORY)
            contract = self._stock(ref)
            with self._in_flight.track(contract) as tracked:
                try:
                    async with self.limiter.historical(key):
                        if self._refused is not None:  # refused while this request waited for its turn
                            raise self._refused
                        if not self.ib.isConnected():  # dropped while this request waited for its turn
                            raise ConnectionError("not connected")
                        self.stats.historical_requests += 1
                        # As it goes out, after its turn and its slot: the outages it may meet, the clock, and how many
                        # answers went undecoded before it.
                        sent = _Sent(self._farms.mark(farms.HISTORY), loop.time(), self._decode_errors.count)
                        bars = await self._race_cut_short(
                            self.ib.reqHistoricalDataAsync(
                                contract,
                                end,
                                duration,
                                bar_size,
                                what_to_show,
                                use_rth,
                                formatDate=2 if intraday else 1,
                                timeout=self.settings.request_timeout_s,
                            ),
                            tracked,
                            ref.symbol,
                        )
                except ConnectionError as error:
                    if self._dropped_once_too_often(tries):
                        message = f"connection lost {tries.drops} times: {error}"
                        return Outcome("failed", error_message=message, attempts=tries.attempts)
                    log.info("%s: connection lost during the request; retrying after reconnect", ref.symbol)
                    continue
            outcome = await self._what_the_answer_means(ref, tracked, bars, sent, tries)
            if outcome is not None:
                return outcome

    async def _what_the_answer_means(
        self, ref: ContractRef, tracked: in_flight.Tracked, bars: list[Any], sent: _Sent, tries: _Tries
    ) -> Outcome | None:
        """The bar request's outcome, from its answer and the errors reported for it; None: ask again."""
        if tracked.undecodable is not None:
            # Deterministic: the same answer would not decode on a retry, so it is not asked again.
            message = f"the client could not decode the gateway's answer ({tracked.undecodable}); not asked again"
            return Outcome("failed", error_message=message, attempts=tries.attempts)
        if bars:
            return Outcome("ok", [_source_bar(b) for b in bars], attempts=tries.attempts)
        violation = tracked.first(is_pacing_violation)
        if violation is not None:
            return await self._after_a_pacing_violation(ref, violation, tries)
        no_data = tracked.first(is_no_data)
        if no_data is not None:
            return Outcome("no_data", error_code=no_data[0], error_message=no_data[1], attempts=tries.attempts)
        failures = [
            (c, m)
            for c, m in tracked.failures
            if not (c == ERR_HMDS and "cancelled" in m.lower()) and not is_hmds_disconnect(c, m)
        ]
        if failures:
            return self._failed(ref, failures[0], tries)
        return self._empty_answer(ref, tracked, sent, tries)

    async def _after_a_pacing_violation(
        self, ref: ContractRef, violation: tuple[int, str], tries: _Tries
    ) -> Outcome | None:
        """Slow down and back off before asking again (None), or fail once IBKR has refused the request for
        ``RetryPolicy.pacing_give_up_s``."""
        self.stats.pacing_violations += 1
        now = asyncio.get_running_loop().time()
        tries.first_violation = now if tries.first_violation is None else tries.first_violation
        if now - tries.first_violation >= self.retry.pacing_give_up_s:
            return Outcome(
                "failed",
                error_code=violation[0],
                error_message=f"{violation[1]} (still refused {now - tries.first_violation:.0f} s after the first)",
                attempts=tries.attempts,
            )
        tries.pacing += 1
        # 322 "only 50 simultaneous requests" is about requests open at once, not about the 10-minute rule.
        if violation[0] != ERR_SIMULTANEOUS_OR_PACING and self.limiter.keep_rolling_rule():
            log.warning(
                "IBKR reported a pacing violation (%s: %s); keeping to %s for the rest of this run",
                *violation,
                self.limiter.policy.describe(),
            )
        self.limiter.cooldown(self.retry.pacing_cooldown_s)
        backoff = min(self.retry.pacing_backoff_s * 2 ** (tries.pacing - 1), self.retry.pacing_backoff_max_s)
        log.info("%s: pacing violation (%s); retry %d in %.0f s", ref.symbol, violation[0], tries.pacing, backoff)
        await asyncio.sleep(backoff)
        return None

    def _failed(self, ref: ContractRef, failure: tuple[int, str], tries: _Tries) -> Outcome:
        """A request the gateway refused with ``failure``; a refusal for the whole login stops every request."""
        refusal = market_data_refusal(*failure)
        if refusal is not None and refusal.account_wide:
            # Every other request of this login would be refused alike: none is sent from now on.
            self._refused = self._refused or MarketDataRefusedError(refusal, ref.symbol)
            raise MarketDataRefusedError(refusal, ref.symbol)
        return Outcome("failed", error_code=failure[0], error_message=failure[1], attempts=tries.attempts)

    def _empty_answer(self, ref: ContractRef, tracked: in_flight.Tracked, sent: _Sent, tries: _Tries) -> Outcome | None:
        """No bars and no error that fails the request: no data (the server answered in time), or a request that was
        lost or timed out, asked again (None) until the retries are spent."""
        # A "query cancelled" before ib_async's timeout came from the server (ib_async ends the request at once);
        # one after it answers the cancel ib_async sent at its timeout (it reaches us when this loop was too busy
        # to resume the request first): that request timed out. A 366 "No historical data query found" means the
        # gateway lost the request (ib_async ends it empty), whenever it comes; so do a 162 "HMDS server
        # disconnect occurred" (the gateway reconnects to the HMDS meanwhile) and a 1100-1102 under its id.
        answered_in_time = asyncio.get_running_loop().time() - sent.at < self.settings.request_timeout_s
        disconnect = tracked.first(is_hmds_disconnect)
        cancels = [e for e in tracked.failures if e != disconnect]  # the failures left: a "query cancelled"
        server_cancel = next(iter(cancels), None) if answered_in_time else None
        dropped = tracked.first(lambda c, m: c in ENDS_REQUEST_NOTICES) or disconnect or server_cancel
        cancelled = dropped is not None
        if answered_in_time and not cancelled:
            # ib_async hands back an empty list at its timeout; before it, the server answered with no bars.
            return Outcome("no_data", error_message="the gateway answered with no bars", attempts=tries.attempts)
        # Empty, and no code said why: ib_async's own timeout fired (it has already sent the cancel).
        if self._lost_in_an_outage(farms.HISTORY, sent.outages, tries):
            # IBKR or an HMDS farm was down meanwhile: the request was lost, not refused
            log.info("%s: request timed out during an IBKR outage; retrying when it is over", ref.symbol)
            return None
        tries.timeouts += 1
        self.stats.timeouts += 1
        if tries.timeouts > self.retry.timeout_retries:
            if dropped is not None:  # the last try was ended by the gateway, not by a timeout: say which
                message = (
                    f"the gateway ended the request without an answer ({tries.timeouts} tries; the last: {dropped[1]})"
                )
                return Outcome("failed", error_code=dropped[0], error_message=message, attempts=tries.attempts)
            message = f"timed out: no answer within {self.settings.request_timeout_s:g} s ({tries.timeouts} tries)"
            message += self._unrestored(farms.HISTORY) + self._decode_errors.since(sent.undecoded_before)
            return Outcome("failed", error_message=message, attempts=tries.attempts)
        log.info("%s: request timed out; retrying", ref.symbol)
        return None

    async def _wait_for_farms(self, uses: frozenset[farms.FarmKind]) -> None:
        """While IBKR reports a farm down that a request may use (``uses``), hold the request back.

        For at most the reconnect timeout per outage, counted from its notice: a farm the load does not use may never
        be reported restored, so after that the outage no longer holds requests (their own timeouts decide).
        """
        while held := self._farms.holding(uses):
            changed = self._farms_changed
            try:
                await asyncio.wait_for(changed.wait(), min(self._farms.seconds_left(o) for o in held))
            except TimeoutError:
                for outage in self._farms.wait_out(uses):
                    log.warning(
                        "IBKR has not reported %s restored within %g s (IBKR_RECONNECT_TIMEOUT); sending %s again",
                        outage.describe(),
                        self._farms.patience_s,
                        _WHO_WAITS[outage.kind],
                    )

    def _note_farm(self, code: int, message: str) -> None:
        """An outage notice (1100, 2110, 2105, 2157, a farm a 1102 lists) or its end: logged, and waiters woken."""
        changes = self._farms.note(code, message)
        for change in changes:
            outage = change.outage
            if change.down:
                log.warning(
                    "IBKR reports %s down (%s: %s): %s wait for it, at most %g s (IBKR_RECONNECT_TIMEOUT)",
                    outage.describe(),
                    code,
                    message,
                    _WHO_WAITS[outage.kind],
                    self._farms.patience_s,
                )
            else:
                log.warning("IBKR reports %s restored (%s: %s)", outage.describe(), code, message)
        if changes:
            self._farms_have_changed()

    def _farms_have_changed(self) -> None:
        """Wake the requests waiting for an outage to end (:meth:`_wait_for_farms`): they look at the farms again."""
        self._farms_changed.set()
        self._farms_changed = asyncio.Event()

    def _unrestored(self, uses: frozenset[farms.FarmKind]) -> str:
        """What a timeout's failure adds when IBKR still reports down a farm the request may use (e.g. its own
        connectivity, lost over a night's or a weekend's maintenance): the likely cause, which the log alone named."""
        outages = self._farms.unrestored(uses)
        if not outages:
            return ""
        named = ", ".join(f"{outage.describe()} ({outage.code})" for outage in outages)
        return f"; IBKR reported {named} down and not restored since"

    def _lost_in_an_outage(self, uses: frozenset[farms.FarmKind], mark: int, tries: _Tries) -> bool:
        """Whether a request that timed out met an outage of a farm it may use (in effect when it went on the wire,
        or reported while it was out: :meth:`farms.FarmStatus.mark`), and may still be asked again without counting
        the timeout (as often as a dropped connection). If so, it is counted as such a try."""
        if self._farms.met_since(uses, mark) and tries.outage_timeouts < self.retry.connection_retries:
            tries.outage_timeouts += 1
            return True
        return False

    def _dropped_once_too_often(self, tries: _Tries) -> bool:
        """Count a connection lost while the request was out; True once that happened more often than retried."""
        tries.drops += 1
        self.stats.dropped_requests += 1
        return tries.drops > self.retry.connection_retries

    async def _race_cut_short(self, request: Awaitable[Any], tracked: in_flight.Tracked, symbol: str) -> Any:
        """Await the request, unless its fate is known first (ib_async would wait for its timeout): a 321 raises
        :class:`InvalidRequestError`; an answer the client could not decode gives no bars (``tracked.undecodable``
        says why)."""
        try:
            return await in_flight.first_of(request, tracked.cut_short)
        except in_flight.Ended:
            invalid = tracked.first(lambda c, m: c == ERR_INVALID_REQUEST)
            if invalid is None and tracked.undecodable is not None:
                return []
            code, message = invalid or (ERR_INVALID_REQUEST, "")
            raise InvalidRequestError(code, message, symbol) from None


_WHO_WAITS = {
    farms.FarmKind.IBKR: "historical requests and contract lookups",
    farms.FarmKind.IBKR_SERVER: "historical requests and contract lookups",
    farms.FarmKind.HMDS: "historical requests",
    farms.FarmKind.SEC_DEF: "contract lookups",
}


def _the_match(symbol: str, primary_exchange: str, details: list[Any], currency: str = "USD") -> QualifyOutcome:
    """The one contract among a lookup's matches in the ``currency`` asked for (those on the watchlist's primary
    exchange, when it found several), or why there is none to choose.

    IBKR answers only listings in the currency asked for; a server of the protocol that does not narrow the lookup
    by it may answer with another listing of the ticker (a Canadian company's, in CAD): another company's bars, which
    must not land as the stock asked for. One contract answered several times (IBKR answers a lookup without an
    exchange once per exchange the contract trades on, and a server may do so for SMART too) is one match.
    """
    details = _one_per_contract(details)
    in_currency = [d for d in details if (d.contract.currency or currency).upper() == currency.upper()]
    if not in_currency:
        listed = ", ".join(
            f"conId {d.contract.conId} on {d.contract.primaryExchange or 'no primary exchange'} in {d.contract.currency}"
            for d in details[:5]
        )
        listed += f" and {len(details) - 5} more" if len(details) > 5 else ""
        return QualifyOutcome(
            None,
            None,
            f"no {currency} listing matches {symbol}: the gateway answered with {listed}; the loader loads US "
            f"listings in {currency}: check the symbol",
        )
    details = in_currency
    same = details
    if len(details) > 1 and primary_exchange:
        same = [d for d in details if (d.contract.primaryExchange or "").upper() == primary_exchange.upper()]
    if len(same) == 1:
        details = same
    elif len(details) > 1:
        return QualifyOutcome(None, None, _ambiguous(symbol, primary_exchange, details, same))
    found = details[0].contract
    return QualifyOutcome(
        ContractRef(
            symbol=symbol,
            con_id=int(found.conId or 0) or None,  # a server may send 0: no id, not a contract every such one shares
            primary_exchange=found.primaryExchange or primary_exchange,
            currency=found.currency or currency,
        )
    )


def _one_per_contract(details: list[Any]) -> list[Any]:
    """The lookup's matches, each contract id once (the first answer for it); matches without one are all kept."""
    seen: set[int] = set()
    unique = []
    for d in details:
        con_id = int(d.contract.conId or 0)
        if con_id and con_id in seen:
            continue
        seen.add(con_id)
        unique.append(d)
    return unique


def _ambiguous(symbol: str, primary_exchange: str, details: list[Any], same: list[Any]) -> str:
    """Why a lookup with several matches chose none, naming each (a server need not narrow the lookup by the primary
    exchange asked for) and what the watchlist can do about it."""
    shown = same if len(same) > 1 else details
    listed = ", ".join(
        f"conId {d.contract.conId} on {d.contract.primaryExchange or 'no primary exchange'}" for d in shown[:5]
    )
    listed += f" and {len(shown) - 5} more" if len(shown) > 5 else ""
    if not primary_exchange:
        return (
            f"ambiguous: {len(shown)} contracts match {symbol} ({listed}); add {symbol} to the watchlist with its "
            "primary_exchange"
        )
    if len(same) > 1:
        return (
            f"ambiguous: {len(shown)} contracts on {primary_exchange} match {symbol} ({listed}); its primary_exchange "
            "in the watchlist cannot tell them apart"
        )
    return (
        f"ambiguous: {len(shown)} contracts match {symbol} ({listed}), none on {primary_exchange}, its "
        "primary_exchange in the watchlist: correct it there"
    )


def _source_bar(bar: Any) -> SourceBar:
    return SourceBar(
        date=bar.date,
        open=bar.open,
        high=bar.high,
        low=bar.low,
        close=bar.close,
        volume=bar.volume,
        wap=bar.average,
        bar_count=bar.barCount,
    )
