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
1100   connectivity between IBKR and the       IBKR-wide outage (every request needs IBKR)
       gateway lost
2110   connectivity between the gateway and    IBKR-wide outage of its own: the gateway's link to
       the server broken                       IBKR's server
1101   restored, data lost                     both IBKR-wide outages over; the farms it lists (as
1102   restored, data maintained               1102 does) as connected or not: see below
2105   HMDS (historical data) farm broken      that farm's outage: historical requests may need it
2106   HMDS farm OK                            that farm's outage over (no other farm's); a 2110
                                               outage over
2107   HMDS farm inactive, available on        not an outage; ends one of that farm's, if any (the
       demand                                  gateway connects to it when a request needs it)
2157   sec-def farm broken                     that farm's outage: contract lookups may need it
2158   sec-def farm OK                         that farm's outage over; a 2110 outage over
2104   market data farm OK                     a 2110 outage over (otherwise not tracked:
                                               historical bars and contract details do not come
2103,  market data farm broken / inactive      from market data farms)
2108
=====  ======================================  ======================================================

A notice that names no farm (a server that leaves the name out) is an outage of an unnamed farm of its kind; an
OK notice without a name ends every outage of its kind, since it cannot say which one it means.

A farm's OK notice ends a 2110 outage because the gateway reaches that farm through its link to IBKR's server; it
does not end a 1100 one: IBKR's primary server (1100/1101/1102) and its farms are separate connections, and real
gateways report farms OK while the primary one is still lost (2158, 2104 between a 1100 and its 1102).

The 1101/1102 that ends an IBKR-wide outage may list the farms (real gateways' wordings)::

    ... restored - data maintained. All data farms are connected: usfarm; ushmds; secdefnj.
    ... restored - data maintained. The following farms are connected: usfarm; secdefnj. The following farms are
    not connected: ushmds.

A farm named as connected ends its outage; "All data farms are connected" ends every farm's. A farm named as not
connected is in outage from then on, until its own OK notice, unless the last this connection heard of it was
"inactive" (2107/2108): inactive farms are listed as not connected, and the gateway connects to them on demand. The
lists count as notices of the farms they name: one listed as connected after its "inactive" is connected, and a
later list that names it not connected is an outage (the latest word on a farm wins). The
lists do not say a farm's kind: it is the kind of the farm's last notice, else what its name says (``...hmds...``:
HMDS, ``secdef...``: sec-def); a farm of neither kind (a market data farm) holds nothing. A 1101/1102 worded
otherwise ends the IBKR-wide outages only.

Which farm serves a request is not known in advance (ushmds serves US stocks, typically, but IBKR does not say),
so a request counts every farm of the kinds it may use: historical requests :data:`HISTORY`, contract lookups
:data:`CONTRACT_DETAILS`. Pure bookkeeping; the waiting is :class:`ingest.ibkr.fetcher.IbkrSession`'s.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class FarmKind(StrEnum):
    IBKR = "IBKR connectivity"
    IBKR_SERVER = "the gateway's link to IBKR's server"
    HMDS = "HMDS (historical data) farm"
    SEC_DEF = "sec-def farm"
    MARKET_DATA = "market data farm"


HISTORY = frozenset({FarmKind.IBKR, FarmKind.IBKR_SERVER, FarmKind.HMDS})
"""What a historical-data request may need."""
CONTRACT_DETAILS = frozenset({FarmKind.IBKR, FarmKind.IBKR_SERVER, FarmKind.SEC_DEF})
"""What a contract lookup may need."""
_IBKR_WIDE = frozenset({FarmKind.IBKR, FarmKind.IBKR_SERVER})
_HELD_BY_FARMS = frozenset({FarmKind.HMDS, FarmKind.SEC_DEF})
"""The farm kinds whose outages hold requests (market data farms serve neither kind of request)."""

_DOWN, _UP = True, False
_NOTICES: dict[int, tuple[FarmKind, bool]] = {
    1100: (FarmKind.IBKR, _DOWN),
    2110: (FarmKind.IBKR_SERVER, _DOWN),
    1101: (FarmKind.IBKR, _UP),
    1102: (FarmKind.IBKR, _UP),
    2105: (FarmKind.HMDS, _DOWN),
    2106: (FarmKind.HMDS, _UP),
    2107: (FarmKind.HMDS, _UP),
    2157: (FarmKind.SEC_DEF, _DOWN),
    2158: (FarmKind.SEC_DEF, _UP),
    2103: (FarmKind.MARKET_DATA, _DOWN),
    2104: (FarmKind.MARKET_DATA, _UP),
    2108: (FarmKind.MARKET_DATA, _UP),
}
_INACTIVE = frozenset({2107, 2108})
"""Notices of a farm that is "inactive but should be available upon demand": its name follows the sentence's full
stop instead of a colon."""
# Spaces as loose as the words' case: a build that breaks the line or doubles a space still lists its farms (a heading
# missed would read as part of the farm list before it).
_FARM_LIST = re.compile(
    r"(all\s+data\s+farms\s+are\s+connected|the\s+following\s+farms\s+are\s+(not\s+)?connected)\s*:", re.IGNORECASE
)


@dataclass(frozen=True)
class FarmNotice:
    kind: FarmKind
    farm: str
    """The farm's name (``ushmds``); "" for IBKR-wide notices and for a notice that names none."""
    down: bool
    inactive: bool = False
    """Not down, not connected either: the gateway connects to the farm when a request needs it (2107/2108)."""


def parse_notice(code: int, message: str) -> FarmNotice | None:
    """The farm state a notice reports, or None for any other code."""
    known = _NOTICES.get(code)
    if known is None:
        return None
    kind, down = known
    if kind in _IBKR_WIDE:
        farm = ""
    elif ":" in message:  # also an "inactive" notice written with a colon, as other builds may
        farm = message.partition(":")[2]
    elif code in _INACTIVE:
        farm = message.partition(".")[2]
    else:
        farm = ""
    # One farm, however a build capitalises it: a 2106 for "USHMDS" ends the outage of "ushmds".
    return FarmNotice(kind, farm.strip().lower(), down, inactive=code in _INACTIVE)


@dataclass
class FarmLists:
    """The farms a 1101/1102 names (the wordings are in the module's docstring)."""

    connected: list[str] = field(default_factory=list)
    not_connected: list[str] = field(default_factory=list)
    all_connected: bool = False


def parse_farm_lists(message: str) -> FarmLists | None:
    """The farms a restored-connectivity notice lists as connected or not; None when it lists none."""
    parts = _FARM_LIST.split(message)  # [before, heading, "not " or None, its list, heading, ...]
    if len(parts) == 1:
        return None
    lists = FarmLists(all_connected=any(h.lower().startswith("all") for h in parts[1::3]))
    for heading_not, names in zip(parts[2::3], parts[3::3], strict=True):
        farms = [name.strip().lower() for name in names.strip().rstrip(".").split(";")]
        (lists.not_connected if heading_not else lists.connected).extend(f for f in farms if f)
    return lists


def kind_by_name(farm: str) -> FarmKind | None:
    """What a farm's name says of its kind, for a farm known by name only: IBKR's HMDS farms are named ``...hmds...``
    (ushmds, euhmds, cashhmds), its sec-def farms ``secdef...`` (secdefnj, secdefil); None for any other."""
    if "hmds" in farm:
        return FarmKind.HMDS
    if farm.startswith("secdef"):
        return FarmKind.SEC_DEF
    return None


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
        if self.kind in _IBKR_WIDE:
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
        self._last_heard: dict[str, FarmNotice] = {}
        """The last notice naming each farm on this connection: its kind, and whether it was inactive."""

    def reset(self) -> None:
        """A new API connection: the gateway reports every farm afresh."""
        self._outages.clear()
        self._last_heard.clear()

    def note(self, code: int, message: str) -> list[Change]:
        """Take in one notice; what it changed (nothing for a repeated notice or another code)."""
        notice = parse_notice(code, message)
        if notice is None:
            return []
        if notice.kind in _IBKR_WIDE:
            if notice.down:
                return self._begin(notice.kind, "", code, message)
            # 1101/1102: the gateway is in touch with IBKR again, and may say which farms are not.
            return self._end(lambda o: o.kind in _IBKR_WIDE) + self._note_farm_lists(code, message)
        if notice.farm:
            self._last_heard[notice.farm] = notice
        changes = []
        if not (notice.down or notice.inactive):  # a farm connected, through the gateway's link to IBKR's server
            changes += self._end(lambda o: o.kind is FarmKind.IBKR_SERVER)
        if notice.kind not in _HELD_BY_FARMS:
            return changes
        if notice.down:
            return changes + self._begin(notice.kind, notice.farm, code, message)
        if notice.farm:
            return changes + self._end(lambda o: o.kind is notice.kind and o.farm == notice.farm)
        return changes + self._end(lambda o: o.kind is notice.kind)  # cannot say which farm it means: every one

    def _note_farm_lists(self, code: int, message: str) -> list[Change]:
        lists = parse_farm_lists(message)
        if lists is None:
            return []
        changes = []
        if lists.all_connected:
            changes += self._end(lambda o: o.kind not in _IBKR_WIDE)
            for farm in list(self._last_heard):
                self._heard_of(farm, down=False)
        for farm in lists.connected:
            changes += self._end(lambda o, farm=farm: o.farm == farm)
            self._heard_of(farm, down=False)
        for farm in lists.not_connected:
            last = self._last_heard.get(farm)
            kind = last.kind if last is not None else kind_by_name(farm)
            if kind in _HELD_BY_FARMS and not (last is not None and last.inactive):
                changes += self._begin(kind, farm, code, message)
                self._heard_of(farm, down=True)
        return changes

    def _heard_of(self, farm: str, down: bool) -> None:
        """A list of a 1101/1102 named ``farm`` connected or not: the last word on it, as a farm's own notice is. A
        farm listed as connected is no longer inactive, so a later list that names it not connected is an outage."""
        last = self._last_heard.get(farm)
        kind = last.kind if last is not None else kind_by_name(farm)
        if kind is not None:
            self._last_heard[farm] = FarmNotice(kind, farm, down)

    def _begin(self, kind: FarmKind, farm: str, code: int, message: str) -> list[Change]:
        key = (kind, farm)
        if key in self._outages:  # already down (and maybe waited out): a repeat starts no new wait
            return []
        outage = self._outages[key] = Outage(kind, farm, code, message, self._clock())
        self._reported[kind] += 1
        return [Change(outage, down=True)]

    def _end(self, ends: Callable[[Outage], bool]) -> list[Change]:
        ended = [key for key, outage in self._outages.items() if ends(outage)]
        return [Change(self._outages.pop(key), down=False) for key in ended]

    def holding(self, kinds: Iterable[FarmKind]) -> list[Outage]:
        """The outages of these kinds that requests still wait for, oldest first."""
        wanted = frozenset(kinds)
        held = [o for o in self._outages.values() if o.kind in wanted and not o.waited_out]
        return sorted(held, key=lambda o: o.reported_at)

    def unrestored(self, kinds: Iterable[FarmKind]) -> list[Outage]:
        """The outages of these kinds still in effect, waited out or not, oldest first: what a request that timed out
        meanwhile most likely owes its failure to."""
        wanted = frozenset(kinds)
        return sorted((o for o in self._outages.values() if o.kind in wanted), key=lambda o: o.reported_at)

    def seconds_left(self, outage: Outage) -> float:
        return max(0.0, outage.reported_at + self.patience_s - self._clock())

    def wait_out(self, kinds: Iterable[FarmKind]) -> list[Outage]:
        """Stop waiting for the outages of these kinds whose patience has run out; those newly given up."""
        over = [o for o in self.holding(kinds) if self.seconds_left(o) <= 0]
        for outage in over:
            outage.waited_out = True
        return over

    def reported(self, kinds: Iterable[FarmKind]) -> int:
        """How many outages of these kinds were reported so far."""
        return sum(self._reported[kind] for kind in frozenset(kinds))

    def mark(self, kinds: Iterable[FarmKind]) -> int:
        """Taken as a request goes on the wire: :meth:`met_since` then tells whether it met an outage of these kinds.

        A request meets the outages reported while it is out, and also those it goes out into (reported while it
        waited for its turn under the pacing rules): a farm that is down answers it no more than one that breaks
        later. One reported and over before it went out, it never met.
        """
        return self.reported(kinds) - len(self.holding(kinds))

    def met_since(self, kinds: Iterable[FarmKind], mark: int) -> bool:
        return self.reported(kinds) > mark
