"""TWS socket protocol: framing, message ids and the exact texts IBKR sends.

The wire format is deliberately tiny: every message is a 4-byte big-endian length
followed by NUL-terminated text fields.  The one irregularity is the client's
opening ``API\\0`` magic, which carries no length prefix.  Keeping the encoding
here (and nothing else) lets the session code deal purely in lists of strings.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable

#: Highest server version the simulator claims.  From 196 on the historical-bar
#: messages change shape and from 201 the protocol becomes protobuf, so we stay
#: at the last version whose shapes ib_async 2.1.0 and ib_insync 0.9.86 share.
MAX_SERVER_VERSION = 178
#: Lowest version we agree to talk: ib_async and ib_insync both start at 157.
MIN_SERVER_VERSION = 157
#: Error messages carry ``advancedOrderRejectJson`` from this version on.
MIN_VERSION_ADVANCED_REJECT = 166
#: contractData drops its version field (and mdSizeMultiplier) from this version.
MIN_VERSION_SIZE_RULES = 164

API_MAGIC = b"API\0"
#: Refuse absurd frames instead of buffering them: real requests are < 1 KiB.
MAX_FRAME_BYTES = 1 << 20


class In:
    """Client → server message ids (the subset the simulator understands)."""

    REQ_HISTORICAL_DATA = 20
    CANCEL_HISTORICAL_DATA = 25
    REQ_OPEN_ORDERS = 5
    REQ_ACCOUNT_UPDATES = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DETAILS = 9
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_ALL_OPEN_ORDERS = 16
    REQ_MANAGED_ACCTS = 17
    REQ_CURRENT_TIME = 49
    REQ_POSITIONS = 61
    CANCEL_POSITIONS = 64
    START_API = 71
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_HEAD_TIMESTAMP = 87
    CANCEL_HEAD_TIMESTAMP = 90
    REQ_COMPLETED_ORDERS = 99


class Out:
    """Server → client message ids."""

    ERR_MSG = 4
    NEXT_VALID_ID = 9
    CONTRACT_DATA = 10
    MANAGED_ACCTS = 15
    HISTORICAL_DATA = 17
    CURRENT_TIME = 49
    CONTRACT_DATA_END = 52
    OPEN_ORDER_END = 53
    ACCT_DOWNLOAD_END = 54
    EXECUTION_DATA_END = 55
    POSITION_END = 62
    ACCOUNT_UPDATE_MULTI_END = 74
    HEAD_TIMESTAMP = 88
    COMPLETED_ORDERS_END = 102


# --- error codes and texts, worded as IBKR words them -------------------------------
# A loader tells "no data", "pacing" and "cancelled" apart only through these, so the
# simulator reproduces IBKR's wording rather than inventing its own.

ERR_HMDS = 162
ERR_NO_SECURITY = 200
ERR_VALIDATION = 321
ERR_CLIENT_ID_IN_USE = 326

HMDS_PREFIX = "Historical Market Data Service error message:"
TEXT_PACING_VIOLATION = HMDS_PREFIX + "Historical data request pacing violation"
TEXT_NO_SECURITY = "No security definition has been found for the request"
TEXT_CLIENT_ID_IN_USE = "Unable to connect as the client id is already in use. Retry with a unique client id."
VALIDATION_PREFIX = "Error validating request.-'bS' : cause - "

#: Informational notices a freshly connected real gateway sends (reqId -1).
FARM_OK_NOTICES: tuple[tuple[int, str], ...] = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
)


def text_no_data(symbol: str, exchange: str, what_to_show: str) -> str:
    """IBKR's 162 text for a query with no bars, e.g. ``...: AAPL@SMART Trades``."""
    return f"{HMDS_PREFIX}HMDS query returned no data: {symbol}@{exchange} {what_to_show.capitalize()}"


def text_query_cancelled(req_id: int) -> str:
    """IBKR's 162 text when the client cancels a pending historical query."""
    return f"{HMDS_PREFIX}API historical data query cancelled: {req_id}"


def text_no_permissions(exchange: str, sec_type: str = "STK") -> str:
    """IBKR's 162 text for a historical request the login has no market-data subscription for, as recent gateways word
    it (older ones stop after ``... for NYSE STK``). IBKR names the exchange in its own codes: ISLAND for NASDAQ."""
    return (
        f"{HMDS_PREFIX}No market data permissions for {exchange} {sec_type}. Requested market data requires additional "
        "subscription for API. See link in 'Market Data Connections' dialog for more details."
    )


ERR_COMPETING_SESSION = 10197
TEXT_COMPETING_SESSION = "No market data during competing live session"
"""What IBKR answers while the same username runs a live session elsewhere (TWS, Client Portal, the mobile app)."""
TEXT_OTHER_IP = HMDS_PREFIX + "Trading TWS session is connected from a different IP address"
"""IBKR's 162 text while the login's trading session runs on another machine (a paper login sharing a live login's
data, say)."""


def text_validation(cause: str) -> str:
    """IBKR's 321 text shape: ``Error validating request.-'bS' : cause - <cause>``."""
    return VALIDATION_PREFIX + cause


def encode(fields: Iterable[object]) -> bytes:
    """Frame one message: length prefix, then every field NUL-terminated.

    ``None`` becomes an empty field and ``bool`` becomes ``1``/``0``, the same
    conventions the official clients use, so callers can pass natural values.
    """
    parts: list[str] = []
    for field in fields:
        if field is None:
            parts.append("")
        elif isinstance(field, bool):
            parts.append("1" if field else "0")
        else:
            parts.append(str(field))
    payload = "".join(p + "\0" for p in parts).encode()
    return struct.pack(">I", len(payload)) + payload


def decode_payload(payload: bytes) -> list[str]:
    """Split one frame's payload into its fields (dropping the final terminator)."""
    fields = payload.decode(errors="backslashreplace").split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    return fields


_VERSION_RANGE = re.compile(r"^v(\d+)(?:\.\.(\d+))?")


def parse_version_range(text: str) -> tuple[int, int]:
    """Parse the client's ``v157..178[ +OPTIONS]`` offer into (min, max).

    Raises ``ValueError`` when the offer is not in that shape, so the session can
    drop a peer that is not speaking the TWS protocol at all.
    """
    match = _VERSION_RANGE.match(text.strip())
    if not match:
        raise ValueError(f"bad version offer {text!r}")
    low = int(match.group(1))
    high = int(match.group(2) or low)
    return low, high


def negotiate_version(client_max: int) -> int:
    """Claim the highest version both sides speak, as a real gateway does."""
    return min(client_max, MAX_SERVER_VERSION)


def error_fields(server_version: int, req_id: int, code: int, text: str) -> list[object]:
    """Fields of an error message (id 4, version 2) for the negotiated version."""
    fields: list[object] = [Out.ERR_MSG, 2, req_id, code, text]
    if server_version >= MIN_VERSION_ADVANCED_REJECT:
        fields.append("")  # advancedOrderRejectJson
    return fields
