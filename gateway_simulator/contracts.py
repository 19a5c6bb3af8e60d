"""US stock contracts: request parsing, stable conIds and the contractData reply.

The simulator knows every plausible US stock symbol (except those configured as
unknown) so that tests and new users can use any watchlist.  conIds are a pure
function of the symbol, so a loader that caches them across runs, seeds or
simulator restarts keeps working — as it would against IBKR, where conIds never
change.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass

from market_calendar import EXCHANGE_TZ as NY

from .protocol import MIN_VERSION_SIZE_RULES, Out
from .sessions import SessionCalendar

#: Symbols whose primary listing is NASDAQ; everything else is reported as NYSE.
NASDAQ_SYMBOLS = frozenset(
    {
        "AAPL",
        "ADBE",
        "ADP",
        "AMD",
        "AMGN",
        "AMZN",
        "AVGO",
        "BKNG",
        "CMCSA",
        "COST",
        "CSCO",
        "GILD",
        "GOOG",
        "GOOGL",
        "INTC",
        "INTU",
        "ISRG",
        "MDLZ",
        "META",
        "MSFT",
        "MU",
        "NFLX",
        "NVDA",
        "PEP",
        "PYPL",
        "QCOM",
        "QQQ",
        "REGN",
        "SBUX",
        "TSLA",
        "TXN",
        "VRTX",
    }
)
VALID_EXCHANGES = (
    "SMART,AMEX,NYSE,CBOE,PHLX,ISE,CHX,ARCA,NASDAQ,DRCTEDGE,BEX,BATS,EDGEA,BYX,IEX,LTSE,PEARL,MEMX,IBEOS,OVERNIGHT"
)
ORDER_TYPES = "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AVGCOST,BASKET,COND,DARKPOLL,DAY,DEACT,GTC,LMT,MKT,MOC,MOO,REL,STP,STPLMT,TRAIL,VWAP"


def con_id_for(symbol: str) -> int:
    """Stable positive conId for a symbol (CRC-32 of the upper-cased symbol)."""
    return (zlib.crc32(symbol.upper().encode()) & 0x7FFFFFFF) or 1


@dataclass(frozen=True)
class ContractRequest:
    """The 12 contract fields every request carries, in wire order."""

    con_id: int
    symbol: str
    sec_type: str
    last_trade_date: str
    strike: str
    right: str
    multiplier: str
    exchange: str
    primary_exchange: str
    currency: str
    local_symbol: str
    trading_class: str

    WIDTH = 12

    @classmethod
    def from_fields(cls, fields: list[str], start: int) -> ContractRequest:
        """Read the contract starting at ``fields[start]`` (IndexError if truncated)."""
        f = fields[start : start + cls.WIDTH]
        if len(f) < cls.WIDTH:
            raise IndexError("truncated contract")
        return cls(
            int(f[0] or 0),
            f[1].strip(),
            f[2].strip().upper(),
            f[3],
            f[4],
            f[5],
            f[6],
            f[7].strip().upper(),
            f[8].strip().upper(),
            f[9].strip().upper(),
            f[10].strip(),
            f[11],
        )

    def describe(self) -> str:
        """Short text for logs and IBKR-style messages."""
        return f"{self.symbol or self.local_symbol or self.con_id}@{self.exchange or 'SMART'}"


def resolve_symbol(req: ContractRequest, unknown: frozenset[str], known_by_con_id: dict[int, str]) -> str | None:
    """Which stock the request means, or ``None`` when IBKR would answer error 200.

    Accepts STK (or unspecified type) in USD (or unspecified), identified by
    symbol, local symbol or a conId the simulator has handed out.
    """
    if req.sec_type not in ("", "STK") or req.currency not in ("", "USD"):
        return None
    symbol = (req.symbol or req.local_symbol).upper()
    if not symbol and req.con_id:
        symbol = known_by_con_id.get(req.con_id, "")
    if not symbol or symbol in unknown:
        return None
    if req.con_id and req.con_id != con_id_for(symbol):
        return None
    return symbol


def primary_exchange_for(req: ContractRequest, symbol: str) -> str:
    """The request's primary exchange if given, else NASDAQ/NYSE from the built-in set."""
    if req.primary_exchange:
        return req.primary_exchange
    return "NASDAQ" if symbol in NASDAQ_SYMBOLS else "NYSE"


def _hours(calendar: SessionCalendar, today: dt.date, liquid: bool) -> str:
    """tradingHours/liquidHours strings for the coming week, in IBKR's layout."""
    parts = []
    for offset in range(7):
        day = today + dt.timedelta(days=offset)
        idx = calendar.index_on_or_before(day)
        if idx < 0 or calendar.dates[idx] != day:
            parts.append(f"{day:%Y%m%d}:CLOSED")
            continue
        open_ = calendar.open_at(idx).astimezone(NY)
        close = calendar.close_at(idx).astimezone(NY)
        if not liquid:
            open_ = open_.replace(hour=4, minute=0)
            close = close + dt.timedelta(hours=4)
        parts.append(f"{day:%Y%m%d}:{open_:%H%M}-{day:%Y%m%d}:{close:%H%M}")
    return ";".join(parts)


def contract_data_fields(
    server_version: int, req_id: int, req: ContractRequest, symbol: str, calendar: SessionCalendar, today: dt.date
) -> list[object]:
    """The contractData (id 10) message for a US common stock."""
    exchange = req.exchange or "SMART"
    fields: list[object] = [Out.CONTRACT_DATA]
    if server_version < MIN_VERSION_SIZE_RULES:
        fields.append(8)  # message version, dropped at 164
    fields += [req_id, symbol, "STK", "", 0, "", exchange, "USD", symbol, symbol, symbol, con_id_for(symbol), 0.01]
    if server_version < MIN_VERSION_SIZE_RULES:
        fields.append(1)  # obsolete mdSizeMultiplier
    fields += [
        "",  # multiplier
        ORDER_TYPES,
        VALID_EXCHANGES,
        1,  # priceMagnifier
        0,  # underConId
        f"{symbol} INC",  # longName
        primary_exchange_for(req, symbol),
        "",  # contractMonth
        "Simulated",
        "Simulated",
        "Simulated",  # industry, category, subcategory
        "US/Eastern",
        _hours(calendar, today, liquid=False),
        _hours(calendar, today, liquid=True),
        "",
        "",  # evRule, evMultiplier
        0,  # secIdList count
        1,  # aggGroup
        "",
        "",  # underSymbol, underSecType
        "26",  # marketRuleIds
        "",  # realExpirationDate
        "COMMON",  # stockType
    ]
    if server_version == 163:
        fields.append("100")
    elif server_version >= MIN_VERSION_SIZE_RULES:
        fields += ["0.0001", "0.0001", "100"]  # minSize, sizeIncrement, suggestedSizeIncrement
    return fields
