"""What IBKR's error codes and messages mean for a request: a notice, a pacing violation, no data, or a refusal for
the login's market-data entitlements (and what the user can do about it).

Pure: codes and message text in, a verdict out. What the session does with each verdict (retry, fail, stop the run)
is the table in :mod:`ingest.ibkr.fetcher`. Imports only the standard library (the ib_insync compat check runs it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ERR_HMDS = 162
ERR_NO_SECURITY = 200
ERR_INVALID_REQUEST = 321
ERR_SIMULTANEOUS_OR_PACING = 322
ERR_CLIENT_ID_IN_USE = 326
ERR_PACING = 420
ERR_PORT_RESET = 1300
#: Codes that never fail a request by themselves: "HMDS query message" (165) and the delayed-data notice (10167),
#: which ib_async treats as warnings too; "No historical data query found" (366: after a cancel, its echo; else the
#: gateway lost the request, which is asked again: the table in :mod:`ingest.ibkr.fetcher`); connectivity
#: lost/restored (1100-1102). The 2100-2199 notices (farm status, the 2174 time-zone warning) are warnings as well.
NOTICE_CODES = frozenset({165, 366, 1100, 1101, 1102, 10167})
#: Of those, the ones ib_async nonetheless takes for the end of the request whose id they carry (it keeps waiting only
#: after 165, 10167 and 2100-2199): such a request was cut short, not answered, and is asked again. IB Gateway sends
#: 1100-1102 under id -1; other servers of the protocol may send them under the id of each request they cut short.
ENDS_REQUEST_NOTICES = frozenset({366, 1100, 1101, 1102})


def is_notice(code: int) -> bool:
    """A notice or warning: the request it names goes on (ib_async keeps waiting for its answer)."""
    return code in NOTICE_CODES or 2100 <= code < 2200


def is_pacing_violation(code: int, message: str) -> bool:
    """IBKR's ways of saying "too many requests": 162 "pacing violation", 420, and 322 "simultaneous"/"pacing"."""
    text = message.lower()
    if code == ERR_HMDS:
        return "pacing violation" in text
    if code == ERR_SIMULTANEOUS_OR_PACING:
        return "simultaneous" in text or "pacing" in text
    return code == ERR_PACING


def is_hmds_disconnect(code: int, message: str) -> bool:
    """162 "HMDS server disconnect occurred.  Attempting reconnection...": the gateway's link to the historical data
    server dropped while the request was out, and the gateway ended it. Lost, not refused: asked again."""
    return code == ERR_HMDS and "hmds server disconnect" in message.lower()


def is_no_data(code: int, message: str) -> bool:
    """162 "HMDS query returned no data": the range holds no bars (not an error)."""
    return code == ERR_HMDS and "query returned no data" in message.lower()


ERR_NOT_SUBSCRIBED = 354
ERR_NO_HISTORICAL_QUERY = 366
ERR_COMPETING_SESSION = 10197
#: IBKR's other ways of saying that the login's market-data subscriptions do not cover a request: "Requested market
#: data is not subscribed" (354), "... requires additional subscription for API" (10089), "Part of requested market
#: data is not subscribed" (10090), "... Delayed market data is not enabled" (10168).
NOT_SUBSCRIBED_CODES = frozenset({ERR_NOT_SUBSCRIBED, 10089, 10090, 10168})
_NO_PERMISSIONS = re.compile(r"no market data permissions for ([^\s.,]+)(?: ([A-Z]+))?", re.IGNORECASE)
SUBSCRIBE_ADVICE = (
    "subscribe to it in Client Portal (Settings > Market Data Subscriptions; a paper login uses its live login's "
    "subscriptions once they are shared with the paper account there). Delayed data does not help: IBKR's API serves "
    "historical bars only with live (Level 1) market data for every exchange the stock trades on"
)
SESSION_ADVICE = (
    "another session of this username holds its market data (TWS or IB Gateway on another machine, Client Portal, "
    "the mobile app): log that session out, or give the API a username of its own (Client Portal: Settings > Users & "
    "Access Rights), then run again"
)


@dataclass(frozen=True)
class MarketDataRefusal:
    """IBKR refused a historical request for the login's market-data entitlements, not for the request itself."""

    code: int
    message: str
    account_wide: bool
    """True: nothing this login asks for will be served until the user acts (a competing live session, a session
    from another IP address); False: a missing subscription, for the exchange in ``exchange`` if IBKR named one."""
    exchange: str | None = None
    """The exchange and security type IBKR named ("NYSE STK", "ISLAND STK": IBKR's code for NASDAQ), if it did."""

    @property
    def what(self) -> str:
        """What the login lacks, in a few words: the key a run's failures are grouped by."""
        if self.account_wide:
            return "another session of this username is live"
        if self.exchange:
            return f"no market-data permissions for {self.exchange}"
        return "no market-data subscription for the data asked for"

    def advice(self) -> str:
        return SESSION_ADVICE if self.account_wide else SUBSCRIBE_ADVICE


def market_data_refusal(code: int | None, message: str | None) -> MarketDataRefusal | None:
    """The entitlement behind a failed request, if that was why IBKR refused it (None for any other failure)."""
    if code is None:
        return None
    text = message or ""
    lowered = text.lower()
    if code == ERR_COMPETING_SESSION or (code == ERR_HMDS and "different ip address" in lowered):
        return MarketDataRefusal(code, text, account_wide=True)
    if code == ERR_HMDS and (named := _NO_PERMISSIONS.search(text)):
        exchange = " ".join(part for part in named.groups() if part).upper()
        return MarketDataRefusal(code, text, account_wide=False, exchange=exchange)
    if code in NOT_SUBSCRIBED_CODES:
        return MarketDataRefusal(code, text, account_wide=False)
    return None
