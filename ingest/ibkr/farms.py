"""IBKR's outages as the gateway reports them: which farm a notice names, and which outages are in effect.

IB Gateway / TWS report IBKR's own connectivity and each data farm's through notices (errorEvent, request id -1),
right after the API handshake and whenever a state changes (IBKR restarts its servers every night). The farm's
name ends the text: after the ``:`` of a broken/OK notice, after the sentence's ``.`` of an "inactive" one (or
its ``:``; names may hold dots themselves: ``usfarm.nj``), compared in lower case::

    2105  HMDS data farm connection is broken:ushmds
    2107  HMDS data farm connection is inactive but should be available upon demand.ushmds
    2108  Market data farm connection is inactive but should be available upon demand.usfarm.nj

=====  ======================================  ======================================================
code   notice                                  here
=====  ======================================  ======================================================
1100   connectivity between IBKR and the       IBKR-wide outage (one more "farm": every request
       gateway lost                            needs it)
2110   connectivity between TWS and the        IBKR-wide outage
       server broken
1101   restored, data lost                     IBKR-wide outage over
1102   restored, data maintained               IBKR-wide outage over
2105   HMDS (historical data) farm broken      that farm's outage: historical requests may need it
2106   HMDS farm OK                            that farm's outage over (no other farm's)
2107   HMDS farm inactive, available on        not an outage; ends one of that farm's, if any (the
       demand                                  gateway connects to it when a request needs it)
2157   sec-def farm broken                     that farm's outage: contract lookups may need it
2158   sec-def farm OK                         that farm's outage over
2103,  market data farm broken / OK /          not tracked: historical bars and contract details do
2104,  inactive                                not come from market data farms
2108
=====  ======================================  ======================================================

A notice that names no farm (a server that leaves the name out) is an outage of an unnamed farm of its kind; an
OK notice without a name ends every outage of its kind, since it cannot say which one it means.

Which farm serves a request is not known in advance (ushmds serves US stocks, typically, but IBKR does not say),
so a request counts every farm of the kinds it may use: historical requests :data:`HISTORY`, contract lookups
:data:`CONTRACT_DETAILS`. Pure bookkeeping; the waiting is :class:`ingest.ibkr.fetcher.IbkrSession`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum


class FarmKind(StrEnum):
    IBKR = "IBKR connectivity"
    HMDS = "HMDS (historical data) farm"
    SEC_DEF = "sec-def farm"


HISTORY = frozenset({FarmKind.IBKR, FarmKind.HMDS})
"""What a historical-data request may need."""
CONTRACT_DETAILS = frozenset({FarmKind.IBKR, FarmKind.SEC_DEF})
"""What a contract lookup may need."""

_DOWN, _UP = True, False
_NOTICES: dict[int, tuple[FarmKind, bool]] = {
    1100: (FarmKind.IBKR, _DOWN),
    2110: (FarmKind.IBKR, _DOWN),
    1101: (FarmKind.IBKR, _UP),
    1102: (FarmKind.IBKR, _UP),
    2105: (FarmKind.HMDS, _DOWN),
    2106: (FarmKind.HMDS, _UP),
    2107: (FarmKind.HMDS, _UP),
    2157: (FarmKind.SEC_DEF, _DOWN),
    2158: (FarmKind.SEC_DEF, _UP),
}
_INACTIVE = frozenset({2107})
"""Notices whose farm name follows the sentence's full stop instead of a colon."""


@dataclass(frozen=True)
class FarmNotice:
    kind: FarmKind
    farm: str
    """The farm's name (``ushmds``); "" for IBKR-wide notices and for a notice that names none."""
    down: bool


def parse_notice(code: int, message: str) -> FarmNotice | None:
    """The farm state a notice reports, or None for any other code."""
    known = _NOTICES.get(code)
    if known is None:
        return None
    kind, down = known
    if kind is FarmKind.IBKR:
        farm = ""
    elif ":" in message:  # also an "inactive" notice written with a colon, as other builds may
        farm = message.partition(":")[2]
    elif code in _INACTIVE:
        farm = message.partition(".")[2]
    else:
        farm = ""
    # One farm, however a build capitalises it: a 2106 for "USHMDS" ends the outage of "ushmds".
    return FarmNotice(kind, farm.strip().lower(), down)


@dataclass
class Outage:
    kind: FarmKind
    farm: str
    code: int
    message: str
    reported_at: float
    waited_out: bool = False
    """Not restored within the patience: requests no longer wait for it (a farm the load never uses may never be
    reported OK again)."""

    def describe(self) -> str:
        if self.kind is FarmKind.IBKR:
            return str(self.kind)
        return f"{self.kind} {self.farm}" if self.farm else f"an unnamed {self.kind}"


@dataclass(frozen=True)
class Change:
    """What a notice changed: an outage began (``down``) or ended."""

    outage: Outage
    down: bool


class FarmStatus:
    """The outages in effect on one API connection, kept per farm from the start-up on."""

    def __init__(self, patience_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.patience_s = patience_s
        """How long requests wait for one outage to end (IBKR_RECONNECT_TIMEOUT), counted from its notice."""
        self._clock = clock
        self._outages: dict[tuple[FarmKind, str], Outage] = {}
        self._reported: dict[FarmKind, int] = dict.fromkeys(FarmKind, 0)

    def reset(self) -> None:
        """A new API connection: the gateway reports every farm afresh."""
        self._outages.clear()

    def note(self, code: int, message: str) -> list[Change]:
        """Take in one notice; what it changed (nothing for a repeated notice or another code)."""
        notice = parse_notice(code, message)
        if notice is None:
            return []
        key = (notice.kind, notice.farm)
        if notice.down:
            if key in self._outages:  # already down (and maybe waited out): a repeat starts no new wait
                return []
            outage = self._outages[key] = Outage(notice.kind, notice.farm, code, message, self._clock())
            self._reported[notice.kind] += 1
            return [Change(outage, down=True)]
        if notice.farm:
            ended = [key] if key in self._outages else []
        else:  # cannot say which farm it means: every outage of its kind
            ended = [k for k in self._outages if k[0] is notice.kind]
        return [Change(self._outages.pop(k), down=False) for k in ended]

    def holding(self, kinds: Iterable[FarmKind]) -> list[Outage]:
        """The outages of these kinds that requests still wait for, oldest first."""
        wanted = frozenset(kinds)
        held = [o for o in self._outages.values() if o.kind in wanted and not o.waited_out]
        return sorted(held, key=lambda o: o.reported_at)

    def seconds_left(self, outage: Outage) -> float:
        return max(0.0, outage.reported_at + self.patience_s - self._clock())

    def wait_out(self, kinds: Iterable[FarmKind]) -> list[Outage]:
        """Stop waiting for the outages of these kinds whose patience has run out; those newly given up."""
        over = [o for o in self.holding(kinds) if self.seconds_left(o) <= 0]
        for outage in over:
            outage.waited_out = True
        return over

    def reported(self, kinds: Iterable[FarmKind]) -> int:
        """How many outages of these kinds were reported so far: a rise during a request means it met one."""
        return sum(self._reported[kind] for kind in frozenset(kinds))
