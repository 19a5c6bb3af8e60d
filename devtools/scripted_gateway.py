"""A TWS-protocol peer that each test scripts: the other implementations of the protocol a loader meets.

The gateway simulator (``gateway_simulator``) answers as IBKR does. Real gateways of other builds and third-party
servers of the TWS protocol differ in ways it never shows: another server version, zero bars where IBKR sends
error 162, a warning before an answer that never comes, pacing reported as 420 or 322, dates the client library
cannot parse. A test gives this peer one such variant and runs the loader's own ``IbkrSession`` against it over a
real socket, through the real client library.

It speaks only what a loader needs: the handshake, the start-up messages (managed accounts, next valid id, farm
notices, the end of the positions download), later notices (``after_start_up``: a farm that breaks or recovers
while the loader runs), contract details (``contracts`` scripts them: one stock per symbol by
default) and historical data, which ``answer`` scripts. ``running_in_thread`` serves it to a loader run as a
subprocess (``python -m ingest``).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

from gateway_simulator import protocol
from gateway_simulator.contracts import ContractRequest, con_id_for
from gateway_simulator.protocol import In, Out

Message = list[object]
Answer = Callable[[int, int], Sequence[Message | float]]
"""(request id, 1-based number of the historical request) -> the messages to send back, in order (none: stay
silent); a number among them is a pause of that many seconds (other requests are served meanwhile)."""


ContractAnswer = Callable[[int, ContractRequest], Sequence[Message | float]]
"""(request id, the contract asked for) -> the contract-details messages to send back, as for ``Answer``."""

CLOSE = "close"
"""Among an answer's messages: close the connection there (a gateway that goes away mid-answer)."""


def bars(req_id: int, dates: Sequence[str], closes: Mapping[str, object] | None = None) -> Message:
    """A historical-data message (server versions below 196) with one bar per date, as the server writes it.

    ``closes`` gives some dates another close, written as given (``"nan"``, ``0``): a server's odd values."""
    fields: Message = [Out.HISTORICAL_DATA, req_id, "", "", len(dates)]
    for day in dates:
        fields += [day, 10.0, 11.0, 9.0, (closes or {}).get(day, 10.5), 1000, 10.2, 5]
    return fields


def error(req_id: int, code: int, text: str, server_version: int = protocol.MAX_SERVER_VERSION) -> Message:
    return protocol.error_fields(server_version, req_id, code, text)


def notice(code: int, text: str) -> Message:
    """A notice for no request in particular (request id -1): IBKR's connectivity and farm notices."""
    return error(-1, code, text)


def silent(req_id: int, nth: int) -> Sequence[Message]:
    return []


def stock(req_id: int, symbol: str, con_id: int, primary_exchange: str = "NASDAQ", currency: str = "USD") -> Message:
    """A contractData message for a common stock, in the shape of server versions 164 and later (a peer that claims
    an older version sends it in that version's shape: :func:`in_version`)."""
    return [
        Out.CONTRACT_DATA, req_id, symbol, "STK", "", 0, "", "SMART", currency, symbol, symbol, symbol, con_id, 0.01,
        "", "LMT,MKT", "SMART,NYSE,NASDAQ", 1, 0, f"{symbol} INC", primary_exchange, "", "", "", "", "US/Eastern",
        "", "", "", "", 0, 1, "", "", "26", "", "COMMON", "0.0001", "0.0001", "100",
    ]  # fmt: skip


def in_version(message: Message, server_version: int) -> Message:
    """``message`` (written in the shape of the highest version) as a server of ``server_version`` writes it: before
    164 contractData has a version field and mdSizeMultiplier and no size increments (163 has one), and before 166 an
    error has no advancedOrderRejectJson. Every other message this peer sends has one shape from 157 to 178."""
    if message[0] == Out.CONTRACT_DATA and server_version < protocol.MIN_VERSION_SIZE_RULES:
        min_tick = 13  # Out.CONTRACT_DATA, reqId, symbol ... conId, minTick
        size_increments = ["100"] if server_version == 163 else []
        return [message[0], 8, *message[1 : min_tick + 1], 1, *message[min_tick + 1 : -3], *size_increments]
    if message[0] == Out.ERR_MSG and server_version < protocol.MIN_VERSION_ADVANCED_REJECT:
        return message[:5]
    return message


def contract_end(req_id: int) -> Message:
    return [Out.CONTRACT_DATA_END, 1, req_id]


def one_stock(req_id: int, request: ContractRequest) -> Sequence[Message]:
    """Every symbol is one stock, with a conId that is a function of the symbol (as the simulator's)."""
    symbol = request.symbol.upper()
    return [stock(req_id, symbol, con_id_for(symbol), request.primary_exchange or "NASDAQ"), contract_end(req_id)]


@dataclass
class ScriptedGateway:
    server_version: int = protocol.MAX_SERVER_VERSION
    """The version the peer claims in the handshake, whatever the client offered."""
    accounts: str = "DU1234567"
    """The managed accounts sent at the start of the API (empty: a server of the protocol with no account to name)."""
    sends_next_valid_id: bool = True
    """Send the next valid order id at the start of the API (a gateway still starting up may not, for a while)."""
    client_id_in_use: bool = False
    """Answer the start of the API with error 326 and close the connection, as a gateway does."""
    start_up_notices: Sequence[tuple[int, str]] = protocol.FARM_OK_NOTICES
    """The errors/notices (code, text) sent after the next valid id, as IBKR's farm notices are."""
    after_start_up: Sequence[Message | float] = ()
    """Messages (and pauses, as in an answer) sent after the start-up notices while requests are served: IBKR's
    farm notices come whenever a farm's state changes, e.g. ``[1.0, notice(2106, "HMDS ...OK:ushmds")]``."""
    answers_greeting_with: bytes | None = None
    """Answer the client's greeting with these bytes instead of the handshake, and nothing more: another service
    than the API on the port (a web server says ``HTTP/1.1 400 Bad Request``)."""
    closes_before_handshake: bool = False
    """Close each connection once the client's greeting has come, without a handshake: IB Gateway refusing a host, or a
    tunnel or proxy (ssh -L, socat, a container's published port) with no gateway behind it."""
    resets_before_handshake: bool = False
    """Close each connection at once without reading a byte, so that it is reset: what most peers that hang up at once
    do (socat or a container's proxy with no gateway behind it): the kernel answers data left unread with a reset."""
    close_after_start: bool = False
    """Close the connection right after the start-up messages (a gateway that drops every new client)."""
    answer: Answer = silent
    contracts: ContractAnswer = one_stock
    historical_requests: list[list[str]] = field(default_factory=list)
    """The fields of every historical request received, in order."""
    contract_requests: list[ContractRequest] = field(default_factory=list)
    sent: list[tuple[float, Message]] = field(default_factory=list)
    """(``time.monotonic()``, message) of every scripted message sent: start-up notices, answers, later notices.
    A test that scripts a message can tell when (or whether) it went out with :meth:`sent_at`."""

    def sent_at(self, message: Message) -> float | None:
        """When this very message (the same object) went out, or None if it has not."""
        return next((at for at, sent in self.sent if sent is message), None)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(fields: Message) -> None:
            writer.write(protocol.encode(in_version(fields, self.server_version)))

        answering: set[asyncio.Task] = set()  # this connection's answers still being sent

        try:
            if self.resets_before_handshake:
                # Linger 0: the close resets the connection whether or not the client's greeting has come yet.
                writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            if await reader.readexactly(len(protocol.API_MAGIC)) != protocol.API_MAGIC:
                return
            await self._read(reader)  # the client's version offer: this peer claims its own version regardless
            if self.closes_before_handshake:
                return
            if self.answers_greeting_with is not None:
                writer.write(self.answers_greeting_with)
                await writer.drain()
                await reader.read()  # until the client gives up
                return
            send([self.server_version, "20240105 12:00:00 EST"])
            while True:
                fields = await self._read(reader)
                message_id = int(fields[0])
                if message_id == In.START_API:
                    if self.client_id_in_use:
                        send(error(-1, protocol.ERR_CLIENT_ID_IN_USE, protocol.TEXT_CLIENT_ID_IN_USE))
                        await writer.drain()
                        return
                    send([Out.MANAGED_ACCTS, 1, self.accounts])
                    if self.sends_next_valid_id:
                        send([Out.NEXT_VALID_ID, 1, 1])
                    for code, text in self.start_up_notices:
                        send(start_up_notice := notice(code, text))
                        self.sent.append((time.monotonic(), start_up_notice))
                    if self.close_after_start:
                        await writer.drain()
                        return
                    answering.add(asyncio.create_task(self._send_in_order(writer, self.after_start_up)))
                elif message_id == In.REQ_CONTRACT_DETAILS:
                    request = ContractRequest.from_fields(fields, 3)
                    self.contract_requests.append(request)
                    answers = self.contracts(int(fields[2]), request)
                    answering.add(asyncio.create_task(self._send_in_order(writer, answers)))
                elif message_id == In.REQ_POSITIONS:
                    send([Out.POSITION_END, 1])
                elif message_id == In.REQ_HISTORICAL_DATA:
                    self.historical_requests.append(fields)
                    answers = self.answer(int(fields[1]), len(self.historical_requests))
                    answering.add(asyncio.create_task(self._send_in_order(writer, answers)))
                elif message_id == In.CANCEL_HISTORICAL_DATA:
                    req_id = int(fields[2])
                    send(error(req_id, protocol.ERR_HMDS, protocol.text_query_cancelled(req_id)))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for task in answering:
                task.cancel()
            writer.close()

    async def _send_in_order(self, writer: asyncio.StreamWriter, answers: Sequence[Message | float]) -> None:
        for answer in answers:
            if isinstance(answer, int | float):
                await asyncio.sleep(answer)
            elif answer == CLOSE:
                writer.close()
                return
            elif not writer.is_closing():
                writer.write(protocol.encode(in_version(answer, self.server_version)))
                await writer.drain()
                self.sent.append((time.monotonic(), answer))

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> list[str]:
        (size,) = struct.unpack(">I", await reader.readexactly(4))
        return protocol.decode_payload(await reader.readexactly(size))

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[int]:
        """Listen on an ephemeral loopback port (yielded) in the running event loop."""
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            server.close()

    @contextmanager
    def running_in_thread(self) -> Iterator[int]:
        """Serve on an ephemeral loopback port (yielded) from an event loop of its own, for a loader in a subprocess."""
        loop = asyncio.new_event_loop()
        started: asyncio.Future[int] = loop.create_future()
        stop = asyncio.Event()

        async def serve() -> None:
            async with self.serving() as port:
                started.set_result(port)
                await stop.wait()

        thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
        thread.start()
        port = asyncio.run_coroutine_threadsafe(asyncio.wait_for(asyncio.shield(started), 10), loop).result()
        try:
            yield port
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(10)
            loop.close()
