"""The session's requests in flight: which errors belong to which request, and ending the wait for one whose fate is
known before the client library would end it.

A request is found by the identity of the Contract object it was sent with, which errorEvent hands back
(:class:`InFlight`); what the session makes of its errors is the table in :mod:`ingest.ibkr.fetcher`.

Imports only the standard library and :mod:`ingest.ibkr.gateway_errors` (the ib_insync compat check runs it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterator
from typing import Any

from ingest.ibkr.gateway_errors import is_notice


class Tracked:
    """Errors reported for one in-flight request (matched by the Contract object's identity)."""

    __slots__ = ("contract", "errors", "cut_short", "undecodable")

    def __init__(self, contract: Any) -> None:
        self.contract = contract
        self.errors: list[tuple[int, str]] = []
        self.undecodable: str | None = None
        """Why the client could not decode this request's answer (the library dropped it), if it could not."""
        self.cut_short = asyncio.Event()
        """Set when the request's fate is known before the client library would end it: a 321 (ib_async waits for
        its timeout) or an answer it could not decode (it drops the answer and waits for its timeout)."""

    def first(self, predicate) -> tuple[int, str] | None:
        return next((e for e in self.errors if predicate(*e)), None)

    @property
    def failures(self) -> list[tuple[int, str]]:
        return [(code, text) for code, text in self.errors if not is_notice(code)]


class InFlight:
    """The requests a session has sent and not yet given up on, by the identity of their Contract object."""

    def __init__(self) -> None:
        self._tracked: dict[int, Tracked] = {}

    @contextlib.contextmanager
    def track(self, contract: Any) -> Iterator[Tracked]:
        """Track the request made with ``contract`` for as long as the block runs."""
        tracked = Tracked(contract)
        self._tracked[id(contract)] = tracked
        try:
            yield tracked
        finally:
            self._tracked.pop(id(contract), None)

    def of(self, contract: Any) -> Tracked | None:
        """The request made with this very Contract object, or None: a late answer to a request already given up
        on (e.g. "query cancelled"), or another object that happens to reuse a finished one's id."""
        tracked = self._tracked.get(id(contract))
        if tracked is None or tracked.contract is not contract:
            return None
        return tracked


class Ended(Exception):
    """The event that :func:`first_of` raced against came first."""


async def first_of(awaitable: Awaitable[Any], event: asyncio.Event) -> Any:
    """The awaitable's result, unless ``event`` is set first: then the awaitable is cancelled and Ended raised."""
    task = asyncio.ensure_future(awaitable)
    ended = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({task, ended}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        ended.cancel()
        raise
    if task in done:
        ended.cancel()
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    raise Ended


async def as_awaitable(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
