"""The watchlist: which symbols to fetch, with their primary exchange (``data/tensorwatchlist.csv``)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ingest.symbols import InvalidSymbolError, normalize_symbol

DEFAULT_WATCHLIST = Path(__file__).resolve().parent.parent / "data" / "tensorwatchlist.csv"
REQUIRED_COLUMNS = ("symbol", "primary_exchange")


class WatchlistError(ValueError):
    """The watchlist file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class WatchlistEntry:
    symbol: str
    """Normalised ticker (see ingest.symbols)."""
    primary_exchange: str
    """The listing exchange (NYSE, NASDAQ, ARCA, ...); IBKR needs it to tell apart same-named stocks."""


def load_watchlist(path: Path = DEFAULT_WATCHLIST) -> list[WatchlistEntry]:
    """Read and validate the watchlist; duplicates and bad symbols are errors, not silently dropped."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise WatchlistError(f"{path}: watchlist file not found") from None
    except UnicodeDecodeError as error:
        raise WatchlistError(f"{path}: not UTF-8 ({error.reason} at byte {error.start})") from None
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise WatchlistError(
            f"{path}:1: missing column(s) {', '.join(missing)}; expected {', '.join(REQUIRED_COLUMNS)}"
        )
    entries: list[WatchlistEntry] = []
    seen: dict[str, int] = {}
    for line_number, row in enumerate(reader, start=2):
        try:
            symbol = normalize_symbol(row["symbol"] or "")
        except InvalidSymbolError as error:
            raise WatchlistError(f"{path}:{line_number}: {error}") from None
        if symbol in seen:
            raise WatchlistError(f"{path}:{line_number}: duplicate symbol {symbol} (first on line {seen[symbol]})")
        seen[symbol] = line_number
        exchange = (row["primary_exchange"] or "").strip().upper()
        if not exchange:
            raise WatchlistError(f"{path}:{line_number}: symbol {symbol} has no primary_exchange")
        entries.append(WatchlistEntry(symbol=symbol, primary_exchange=exchange))
    if not entries:
        raise WatchlistError(f"{path}: the watchlist has no symbols")
    return entries
