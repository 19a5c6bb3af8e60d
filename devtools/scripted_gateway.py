"""A TWS-protocol peer that each test scripts: the other implementations of the protocol a loader meets.

The gateway simulator (``gateway_simulator``) answers as IBKR does. Real gateways of other builds and third-party
servers of the TWS protocol differ in ways it never shows: another server version, zero bars where IBKR sends
error 162, a warning before an answer that never comes, pacing reported as 420 or 322, dates the client library
cannot parse. A test gives this peer one such variant and runs the loader's own ``IbkrSession`` against it over a
real socket, through the real client library.

It speaks only what a loader's session needs: the handshake, the start-up messages (managed accounts, next valid
id, farm notices, the end of the positions download) and historical data, which ``answer`` scripts.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from gateway_simulator import protocol
from gateway_simulator.protocol import In, Out

Message = list[object]
Answer = Callable[[int, int], Sequence[Message | float]]
"""(request id, 1-based number of the historical request) -> the messages to send back, in order (none: stay
silent); a number among them is a pause of that many seconds (other requests are served meanwhile)."""


def bars(req_id: int, dates: Sequence[str]) -> Message:
    """A historical-data message (server versions below 196) with one bar per date, as the server writes it."""
    fields: Message = [Out.HISTORICAL_DATA, req_id, "", "", len(dates)]
    for day in dates:
        fields += [day, 10.0, 11.0, 9.0, 10.5, 1000, 10.2, 5]
    return fields


def error(req_id: int, code: int, text: str, server_version: int = protocol.MAX_SERVER_VERSION) -> Message:
    return protocol.error_fields(server_version, req_id, code, text)


def silent(req_id: int, nth: int) -> Sequence[Message]:
    return []


@dataclass
class ScriptedGateway:
    server_version: int = protocol.MAX_SERVER_VERSION
    """The version the peer claims in the handshake, whatever the client offered."""
    accounts: str = "DU1234567"
    client_id_in_use: bool = False
    """Answer the start of the API with error 326 and close the connection, as a gateway does."""
    answer: Answer = silent
    historical_requests: list[list[str]] = field(default_factory=list)
    """The fields of every historical request received, in order."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(fields: Message) -> None:
            writer.write(protocol.encode(fields))

        answering: set[asyncio.Task] = set()  # this connection's answers still being sent

        try:
            if await reader.readexactly(len(protocol.API_MAGIC)) != protocol.API_MAGIC:
                return
            await self._read(reader)  # the client's version offer: this peer claims its own version regardless
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
                    send([Out.NEXT_VALID_ID, 1, 1])
                    for code, text in protocol.FARM_OK_NOTICES:
                        send(error(-1, code, text))
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

    @staticmethod
    async def _send_in_order(writer: asyncio.StreamWriter, answers: Sequence[Message | float]) -> None:
        for answer in answers:
            if isinstance(answer, int | float):
                await asyncio.sleep(answer)
            elif not writer.is_closing():
                writer.write(protocol.encode(answer))
                await writer.drain()

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
