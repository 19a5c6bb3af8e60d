"""A second, independent TWS-protocol peer for the loader's tests, written from the protocol notes
(/work/shared/reference/ib-tws-protocol.md) and ib_async's own decoder and client, not from ``gateway_simulator`` or
``devtools.scripted_gateway``: it imports neither, and frames, encodes and parses every message itself.

It makes choices real IB Gateway / TWS builds and third-party servers of the protocol (broker proxies, gateways older
or newer than ours) may make and our simulator does not:

- ``delivery``: how its bytes reach the client over TCP: one message per segment (``"frames"``), one byte per segment
  (``"bytes"``), each frame's 4-byte length in one segment and its body in the next (``"split"``), or every message of
  an answer in one segment (``"coalesced"``);
- ``start_up``: the messages it sends once the client starts the API, in its own order (managed accounts, next valid
  id, current time, farm notices, 2119 "connecting", 2100 unsubscribes, ...), and ``between``: notices it sends
  before each answer;
- ``server_version``: any version the client accepts, with the fields that depend on it (a version field and
  mdSizeMultiplier in contract details before 164, one size increment at 163, advancedOrderRejectJson in errors from
  166 on);
- answers scripted per request (``contracts``, ``history``): several contract matches, empty optional fields, daily
  bars dated ``yyyymmdd`` with -1 counts and WAPs, zero volume, intraday bars in any of the time formats servers
  write, the error codes and texts real servers send, and a connection that ends mid-message (:class:`Cut`), as a
  gateway that goes away does;
- ``referee``: IBKR's own checks of each historical request, on this peer's clock (IBKR's "historical data
  limitations"): a 51st request open at once is refused (322); an identical request within 15 s and 6 or more for
  one contract, exchange and data type within 2 s are pacing violations (162), and so are more than 60 in 10 minutes
  of bars of 30 s or less; a duration over 365 days not given in years, ADJUSTED_LAST with an endDateTime, and an
  endDateTime, duration, bar size or formatDate not written as the protocol has them are refused as invalid (321).
  Each refusal is answered as IBKR does and kept in ``refused``.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

# Message ids (server to client), as ib_async's decoder reads them.
ERROR, NEXT_VALID_ID, CONTRACT_DATA, MANAGED_ACCOUNTS, HISTORICAL_DATA = 4, 9, 10, 15, 17
CURRENT_TIME, CONTRACT_DATA_END, POSITION_END = 49, 52, 62
# Message ids (client to server), as ib_async's client writes them.
REQ_CONTRACT_DETAILS, REQ_HISTORICAL_DATA, CANCEL_HISTORICAL_DATA = 9, 20, 25
REQ_POSITIONS, START_API = 61, 71
ERR_HMDS, ERR_INVALID, ERR_SIMULTANEOUS = 162, 321, 322

Message = list[object]


@dataclass(frozen=True)
class Cut:
    """Among an answer's messages: the first ``keep`` bytes of ``message``'s frame (by default half of it), then the
    connection closes, as when a gateway goes away (restarts, is logged out) in the middle of an answer; without a
    message, it closes there."""

    message: Message | None = None
    keep: int | None = None


CLOSE = Cut()


HMDS = "Historical Market Data Service error message:"
PACING_VIOLATION = HMDS + "Historical data request pacing violation"
# Validation of IBKR's historical requests (TWS API docs, "historical data"): what a request may look like.
BAR_SIZES = frozenset(
    ("1 secs", "5 secs", "10 secs", "15 secs", "30 secs", "1 min", "2 mins", "3 mins", "5 mins", "10 mins", "15 mins",
     "20 mins", "30 mins", "1 hour", "2 hours", "3 hours", "4 hours", "8 hours", "1 day", "1 week", "1 month")
)  # fmt: skip
ROLLING_RULE_BAR_SIZES = frozenset(("1 secs", "5 secs", "10 secs", "15 secs", "30 secs"))
"""IBKR applies its 60-in-10-minutes rule to these; the other two pacing rules the referee applies to every size."""
END_DATE_TIME = re.compile(r"(\d{8} \d\d:\d\d:\d\d( [A-Za-z_/+-]+)?|\d{8}-\d\d:\d\d:\d\d)?")
DURATION = re.compile(r"(\d+) ([SDWMY])")


def frame(fields: Sequence[object]) -> bytes:
    """Fields, each ended by a NUL, after a 4-byte big-endian length."""
    body = b"".join(str(f).encode() + b"\0" for f in fields)
    return struct.pack(">I", len(body)) + body


def error(req_id: int, code: int, text: str) -> Message:
    """Written in the shape of the peer's version when sent (advancedOrderRejectJson from 166 on)."""
    return [ERROR, 2, req_id, code, text]


def notice(code: int, text: str) -> Message:
    return error(-1, code, text)


def stock(
    req_id: int,
    symbol: str,
    con_id: int | str,
    primary_exchange: str = "NASDAQ",
    *,
    long_name: str = "",
    time_zone: str = "US/Eastern",
    min_tick: str = "0.01",
    currency: str = "USD",
    exchange: str = "SMART",
) -> Message:
    """contractData for a common stock in the shape of server version 164 and later (``send`` adapts it to older
    versions). Optional fields a server may leave empty are empty unless given."""
    return [
        CONTRACT_DATA, req_id, symbol, "STK", "", "0", "", exchange, currency, symbol, "NMS", symbol, con_id, min_tick,
        "", "", "", "1", "0", long_name, primary_exchange, "", "", "", "", time_zone, "", "", "", "", "0",
        "", "", "", "", "", "", "", "", "",
    ]  # fmt: skip


def contract_end(req_id: int) -> Message:
    return [CONTRACT_DATA_END, 1, req_id]


def daily_bars(req_id: int, rows: Sequence[Sequence[object]]) -> Message:
    """historicalData: each row is (date, open, high, low, close, volume, wap, count), written as given."""
    fields: Message = [HISTORICAL_DATA, req_id, "20231201  00:00:00", "20240110  00:00:00", len(rows)]
    for row in rows:
        fields += list(row)
    return fields


Script = Sequence[Message | float | Cut]
"""Messages to send in order; a number among them is a pause of that many seconds, a :class:`Cut` the end."""
ContractAnswer = Callable[[int, str, str], Script]
"""(request id, symbol, primary exchange asked for) -> messages (a number: a pause of that many seconds)."""
HistoryAnswer = Callable[[int, str, int], Script]
"""(request id, symbol, 1-based number of this symbol's historical requests) -> messages, as for contracts."""


def one_match(req_id: int, symbol: str, primary_exchange: str) -> Sequence[Message]:
    return [stock(req_id, symbol, 1000 + sum(map(ord, symbol))), contract_end(req_id)]


def no_history(req_id: int, symbol: str, nth: int) -> Sequence[Message]:
    return []


@dataclass
class TwsPeer:
    server_version: int = 178
    delivery: str = "frames"
    start_up: Callable[[], Script] = lambda: [[MANAGED_ACCOUNTS, 1, "DU111111"], [NEXT_VALID_ID, 1, 1]]
    between: Sequence[Message] = ()
    accepts: Callable[[int], bool] = lambda nth: True
    """Whether to serve the nth connection (1-based); if not, it is closed at once, before the handshake, as a proxy or
    tunnel in front of a gateway that is restarting or not logged in yet closes it (socat, a container's port)."""
    connections: int = 0
    contracts: ContractAnswer = one_match
    history: HistoryAnswer = no_history
    referee: bool = False
    """Check each historical request as IBKR does (this module's docstring) and refuse it as IBKR would."""
    received: list[list[str]] = field(default_factory=list)
    """Every message the client sent after its greeting, as fields."""
    received_at: list[float] = field(default_factory=list)
    """When each of them arrived (the monotonic clock)."""
    refused: list[tuple[int, str]] = field(default_factory=list)
    """The referee's refusals: (code, why)."""
    asked_at: list[tuple[float, list[str]]] = field(default_factory=list)
    open_requests: set[tuple[int, int]] = field(default_factory=set)
    """Historical requests asked and neither answered nor cancelled yet: (connection, request id)."""
    most_open: int = 0
    """Each historical request as it arrived: (this peer's monotonic clock, its fields)."""

    def busiest_second(self) -> int:
        """The most messages the client sent within one second: IBKR allows 50 (error 100 and a disconnect beyond)."""
        times = self.received_at
        return max((sum(1 for t in times[i:] if t - start < 1.0) for i, start in enumerate(times)), default=0)

    def history_requests(self) -> list[list[str]]:
        return [m for m in self.received if m[0] == str(REQ_HISTORICAL_DATA)]

    def adapt(self, message: Message) -> Message:
        """The message as a server of ``server_version`` writes it."""
        if message[0] == ERROR and self.server_version >= 166:
            return [*message, ""]
        if message[0] == CONTRACT_DATA and self.server_version < 164:
            con_id_at = 12  # id, reqId, symbol, secType, lastTrade, strike, right, exchange, currency, local, market,
            # tradingClass, conId, minTick: before 164 a version after the id, mdSizeMultiplier after minTick, and no
            # minSize/sizeIncrement/suggestedSizeIncrement (163 keeps the last).
            tail = ["1"] if self.server_version == 163 else []
            return [message[0], 8, *message[1 : con_id_at + 2], "1", *message[con_id_at + 2 : -3], *tail]
        return message

    async def send(self, writer: asyncio.StreamWriter, messages: Sequence[Message]) -> None:
        frames = [frame(self.adapt(m)) for m in messages]
        if self.delivery == "coalesced":
            chunks = [b"".join(frames)]
        elif self.delivery == "bytes":
            chunks = [bytes([b]) for f in frames for b in f]
        elif self.delivery == "split":
            chunks = [part for f in frames for part in (f[:4], f[4:])]
        else:
            chunks = frames
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            if len(chunks) > 1:
                await asyncio.sleep(0.0005)  # TCP_NODELAY and a pause: each chunk its own segment

    async def answer(
        self, writer: asyncio.StreamWriter, lock: asyncio.Lock, script: Script, *, notices: bool = True
    ) -> None:
        """Play ``script``, after the ``between`` notices unless ``notices`` is false."""
        batch: list[Message] = list(self.between) if notices else []
        for item in [*script, None]:
            if isinstance(item, list):
                batch.append(item)
                continue
            if batch:
                async with lock:  # one answer's bytes never interleave with another's
                    await self.send(writer, batch)
                batch = []
            if isinstance(item, Cut):
                async with lock:
                    whole = b"" if item.message is None else frame(self.adapt(item.message))
                    writer.write(whole[: len(whole) // 2 if item.keep is None else item.keep])
                    await writer.drain()
                    writer.close()
                return
            if item is not None:
                await asyncio.sleep(float(item))

    @staticmethod
    def tick_series(fields: list[str]) -> tuple[str, str, str]:
        """What IBKR's 2-second rule counts by: the contract (its id, else its symbol), exchange and data type."""
        return (fields[2] if fields[2] not in ("", "0") else fields[3], fields[9], fields[19].upper())

    def judge(self, fields: list[str]) -> tuple[int, str] | None:
        """What IBKR would refuse this historical request with, by its rules and this peer's clock (None: served).
        The request is counted either way, as IBKR counts refused requests too."""
        now = time.monotonic()
        earlier = [(at, f) for at, f in self.asked_at if now - at < 600]
        self.asked_at.append((now, fields))
        end, bar_size, duration = fields[15], fields[16], fields[17]
        spelled = DURATION.fullmatch(duration)
        if not (END_DATE_TIME.fullmatch(end) and spelled and bar_size in BAR_SIZES and fields[20] in ("1", "2")):
            why = f"Error validating request.-'bP' : cause - invalid request: {end!r} {duration!r} {bar_size!r}"
            return ERR_INVALID, why
        if spelled.group(2) == "D" and int(spelled.group(1)) > 365:
            return ERR_INVALID, "Historical data request for greater than 365 days rejected."
        if fields[19].upper() == "ADJUSTED_LAST" and end:
            return ERR_INVALID, "Error validating request.-'bW' : cause - End date not supported with adjusted last"
        same_contract = [f for at, f in earlier if now - at < 2 and self.tick_series(f) == self.tick_series(fields)]
        identical = [f for at, f in earlier if now - at < 15 and f[2:20] == fields[2:20]]
        if len(self.open_requests) >= 50:  # this one would be the 51st
            return (
                ERR_SIMULTANEOUS,
                "Error processing request.-'bc' : cause - Only 50 simultaneous API historical data requests allowed.",
            )
        rolling = bar_size in ROLLING_RULE_BAR_SIZES and len(earlier) >= 60
        if identical or len(same_contract) >= 5 or rolling:
            why = "identical within 15 s" if identical else "6 in 2 s" if len(same_contract) >= 5 else "61 in 10 min"
            return ERR_HMDS, f"{PACING_VIOLATION} ({why})"
        return None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections += 1
        if not self.accepts(self.connections):
            writer.close()
            return
        lock = asyncio.Lock()
        tasks: set[asyncio.Task] = set()
        try:
            assert await reader.readexactly(4) == b"API\0"
            await self.read(reader)  # "v157..178": this peer claims its own version
            await self.send(writer, [[self.server_version, "20240105 09:30:00 US/Eastern"]])
            while True:
                fields = await self.read(reader)
                self.received.append(fields)
                self.received_at.append(time.monotonic())
                kind = int(fields[0])
                if kind == START_API:
                    await self.answer(writer, lock, self.start_up(), notices=False)
                elif kind == REQ_POSITIONS:
                    async with lock:
                        await self.send(writer, [[POSITION_END, 1]])
                elif kind == REQ_CONTRACT_DETAILS:
                    req_id, symbol, primary = int(fields[2]), fields[4], fields[11]
                    tasks.add(asyncio.create_task(self.answer(writer, lock, self.contracts(req_id, symbol, primary))))
                elif kind == REQ_HISTORICAL_DATA:
                    req_id, symbol = int(fields[1]), fields[3]
                    nth = sum(1 for m in self.history_requests() if m[3] == symbol)
                    refusal = self.judge(fields) if self.referee else None
                    if refusal is not None:
                        self.refused.append(refusal)
                        script: Script = [error(req_id, *refusal)]
                    else:
                        script = self.history(req_id, symbol, nth)
                    request = (id(writer), req_id)
                    self.open_requests.add(request)
                    self.most_open = max(self.most_open, len(self.open_requests))
                    task = asyncio.create_task(self.answer(writer, lock, script))
                    task.add_done_callback(lambda _, request=request: self.open_requests.discard(request))
                    tasks.add(task)
                elif kind == CANCEL_HISTORICAL_DATA:
                    self.open_requests.discard((id(writer), int(fields[2])))
                    text = (
                        f"Historical Market Data Service error message:API historical data query cancelled: {fields[2]}"
                    )
                    async with lock:
                        await self.send(writer, [error(int(fields[2]), 162, text)])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            writer.close()

    @staticmethod
    async def read(reader: asyncio.StreamReader) -> list[str]:
        (size,) = struct.unpack(">I", await reader.readexactly(4))
        return (await reader.readexactly(size)).decode().split("\0")[:-1]

    @contextmanager
    def listening(self) -> Iterator[int]:
        """Serve on an ephemeral loopback port (yielded) from a thread of its own, for a loader in a subprocess."""
        loop = asyncio.new_event_loop()
        ready: list[int] = []
        started, stop = threading.Event(), asyncio.Event()

        async def main() -> None:
            server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
            ready.append(server.sockets[0].getsockname()[1])
            started.set()
            await stop.wait()
            server.close()

        thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
        thread.start()
        assert started.wait(10)
        try:
            yield ready[0]
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(10)
            loop.close()
