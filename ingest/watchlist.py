"""The watchlist: which symbols to fetch, with their primary exchange (``data/tensorwatchlist.csv``)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from command_line import read_user_file
from ingest.symbols import InvalidSymbolError, normalize_symbol

DEFAULT_WATCHLIST = Path(__file__).resolve().parent.parent / "data" / "tensorwatchlist.csv"
REQUIRED_COLUMNS = ("symbol", "primary_exchange")
EXCHANGE_PATTERN = re.compile(r"[A-Z][A-Z0-9._-]{0,15}")
"""An IBKR exchange code (NYSE, NASDAQ, ARCA, BVME.ETF, ...): it travels to the gateway as a protocol field, where a
NUL byte or a line break would not be a name but a broken message."""


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
        text = read_user_file(path).decode("utf-8-sig")
    except FileNotFoundError:
        raise WatchlistError(f"{path}: watchlist file not found") from None
    except IsADirectoryError:
        raise WatchlistError(f"{path}: is a directory, not a watchlist file") from None
    except OSError as error:  # permission denied, a name too long, a device (/dev/zero never ends), ...
        raise WatchlistError(f"{path}: cannot read the watchlist: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        line = error.object[: error.start].count(b"\n") + 1
        raise WatchlistError(
            f"{path}:{line}: not UTF-8 (byte 0x{error.object[error.start]:02x}); save the file as UTF-8"
        ) from None
    # The reader's own line count, not a row count: blank lines (skipped) and quoted line breaks count as lines.
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise WatchlistError(
                f"{path}:1: missing column(s) {', '.join(missing)}; expected {', '.join(REQUIRED_COLUMNS)}"
            )
        entries = _read_entries(path, reader)
    except csv.Error as error:  # an unterminated quote, a field over the csv module's size limit
        raise WatchlistError(f"{path}:{reader.reader.line_num}: malformed CSV ({error})") from None
    if not entries:
        raise WatchlistError(f"{path}: the watchlist has no symbols")
    return entries


def _read_entries(path: Path, reader: csv.DictReader) -> list[WatchlistEntry]:
    entries: list[WatchlistEntry] = []
    seen: dict[str, int] = {}
    for row in reader:
        line_number = reader.line_num
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
        if not exchange.isascii() or not EXCHANGE_PATTERN.fullmatch(exchange):
            raise WatchlistError(
                f"{path}:{line_number}: primary_exchange {row['primary_exchange']!r} of {symbol} is not an "
                "exchange code like NYSE or NASDAQ"
            )
        entries.append(WatchlistEntry(symbol=symbol, primary_exchange=exchange))
    return entries


def select_entries(
    watchlist: Path, symbols: Sequence[str] | None = None, limit: int | None = None, *, watchlist_given: bool = False
) -> list[WatchlistEntry]:
    """What a run loads: the watchlist, or ``symbols`` (with their watchlist exchange when listed), first ``limit``.

    ``symbols`` items may hold several symbols separated by commas. Beside ``symbols`` the default watchlist is read
    only if it can be; one the user named (``watchlist_given``: --watchlist) must be readable, or its exchanges would
    be dropped without a word. Raises WatchlistError naming what is wrong.
    """
    if limit is not None and limit < 1:
        raise WatchlistError(f"limit: {limit} must be at least 1")
    if symbols:
        try:
            listed = {e.symbol: e for e in load_watchlist(watchlist)}
        except WatchlistError:
            if watchlist_given:
                raise
            listed = {}
        entries: list[WatchlistEntry] = []
        seen: set[str] = set()
        for raw in (part for item in symbols for part in item.split(",")):
            if not raw.strip():
                continue
            try:
                symbol = normalize_symbol(raw)
            except InvalidSymbolError as error:
                raise WatchlistError(f"--symbols: {error}") from None
            if symbol not in seen:
                seen.add(symbol)
                entries.append(listed.get(symbol) or WatchlistEntry(symbol=symbol, primary_exchange=""))
    else:
        entries = load_watchlist(watchlist)
    entries = entries[:limit] if limit else entries
    if not entries:
        raise WatchlistError("no symbols to load")
    return entries
