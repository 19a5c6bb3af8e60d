"""Bars from CSV files, validated completely before anything lands.

File format (UTF-8, a byte-order mark is accepted, comma-separated, one header line):

    required columns: symbol, date, open, high, low, close, volume
    optional columns: wap, bar_count, con_id, exchange, currency

``date`` is the session date (YYYY-MM-DD) of a daily bar; the bar's ``bar_time`` is midnight of that date
in New York, as for daily bars from IBKR. Rules: the symbol matches :data:`ingest.symbols.SYMBOL_PATTERN`,
prices are finite and > 0, low <= open, close <= high, volume >= 0, the date is a real calendar date and
not in the future, and a (symbol, date) appears at most once per file.

A file with any bad row is rejected with ``file:line: reason``; all files are checked before the first
one lands, so a run with a bad file lands nothing. Each file then lands in one transaction.
"""

from __future__ import annotations

import csv
import io
import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path

import psycopg
from tqdm import tqdm

from ingest.landing import BarSettings, Batch, land_batches, utc_now
from ingest.symbols import InvalidSymbolError, normalize_symbol
from market_calendar import EXCHANGE_TZ

REQUIRED_COLUMNS = ("symbol", "date", "open", "high", "low", "close", "volume")
OPTIONAL_COLUMNS = ("wap", "bar_count", "con_id", "exchange", "currency")
MAX_ERRORS_SHOWN = 10


class CsvValidationError(ValueError):
    """One or more files failed validation; ``errors`` holds every ``file:line: reason`` found."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        shown = self.errors[:MAX_ERRORS_SHOWN]
        more = len(self.errors) - len(shown)
        super().__init__("\n".join(shown) + (f"\n... and {more} more" if more else ""))


@dataclass
class ParsedFile:
    path: Path
    rows_by_symbol: dict[str, list[tuple]] = field(default_factory=lambda: defaultdict(list))

    @property
    def row_count(self) -> int:
        return sum(len(rows) for rows in self.rows_by_symbol.values())


@dataclass
class CsvLoadSummary:
    load_id: uuid.UUID
    files: int
    symbols: int
    rows: int


class _RowError(ValueError):
    pass


def _price(row: dict[str, str], column: str) -> float:
    text = row[column].strip()
    try:
        value = float(text)
    except ValueError:
        raise _RowError(f"{column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise _RowError(f"{column} is {text!r}; prices must be finite")
    if value <= 0:
        raise _RowError(f"{column} is {text!r}; prices must be > 0")
    return value


def _optional(row: dict[str, str], column: str, convert: Callable[[str], object]) -> object | None:
    text = (row.get(column) or "").strip()
    if not text:
        return None
    try:
        value = convert(text)
    except ValueError:
        raise _RowError(f"{column} {text!r} is not valid") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise _RowError(f"{column} is {text!r}; must be finite")
    return value


def _parse_row(row: dict[str, str], today: date) -> tuple:
    if None in row or any(value is None for value in row.values()):
        raise _RowError("wrong number of fields")
    try:
        symbol = normalize_symbol(row["symbol"])
    except InvalidSymbolError as error:
        raise _RowError(str(error)) from None
    text = row["date"].strip()
    try:
        session_date = date.fromisoformat(text)
    except ValueError:
        raise _RowError(f"date {text!r} is not a valid YYYY-MM-DD date") from None
    if session_date > today:
        raise _RowError(f"date {text} is in the future")
    open_, high, low, close = (_price(row, c) for c in ("open", "high", "low", "close"))
    if high < low:
        raise _RowError(f"high {high} < low {low}")
    if not (low <= open_ <= high and low <= close <= high):
        raise _RowError(f"open {open_} and close {close} must lie within [low {low}, high {high}]")
    volume = _optional(row, "volume", float)
    if volume is None:
        raise _RowError("volume is empty")
    if volume < 0:
        raise _RowError(f"volume {volume} < 0")
    wap = _optional(row, "wap", float)
    bar_count = _optional(row, "bar_count", int)
    con_id = _optional(row, "con_id", int)
    exchange = (row.get("exchange") or "").strip() or None
    currency = (row.get("currency") or "").strip() or None
    bar_time = datetime.combine(session_date, time(0), tzinfo=EXCHANGE_TZ)
    return (symbol, con_id, exchange, currency, bar_time, session_date, open_, high, low, close, volume, wap, bar_count)


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise CsvValidationError(
            [
                f"{path}:{line}: not UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start}); save the file as UTF-8"
            ]
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise CsvValidationError([f"{path}:{line}: contains a NUL byte"])
    return text


def parse_csv_file(path: Path, today: date | None = None) -> ParsedFile:
    """Validate one file completely; raise CsvValidationError listing every bad line."""
    today = today or datetime.now(EXCHANGE_TZ).date()
    if not path.is_file():
        raise CsvValidationError([f"{path}: file not found"])
    text = _decode(path)
    if not text.strip():
        raise CsvValidationError([f"{path}:1: the file is empty; expected a header line: {','.join(REQUIRED_COLUMNS)}"])
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    header = [name.strip().lower() for name in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown or len(set(header)) != len(header):
        problems = []
        if missing:
            problems.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown column(s) {', '.join(unknown)}")
        if len(set(header)) != len(header):
            problems.append("a column appears twice")
        raise CsvValidationError([f"{path}:1: {'; '.join(problems)} (required: {', '.join(REQUIRED_COLUMNS)})"])
    reader.fieldnames = header
    parsed = ParsedFile(path)
    errors: list[str] = []
    first_seen: dict[tuple[str, date], int] = {}
    try:
        for row in reader:
            line = reader.line_num
            try:
                values = _parse_row(row, today)
            except _RowError as error:
                errors.append(f"{path}:{line}: {error}")
                continue
            key = (values[0], values[5])
            if key in first_seen:
                errors.append(
                    f"{path}:{line}: duplicate bar for {key[0]} on {key[1]} (first on line {first_seen[key]})"
                )
                continue
            first_seen[key] = line
            parsed.rows_by_symbol[values[0]].append(values)
    except csv.Error as error:
        errors.append(f"{path}:{reader.line_num}: malformed CSV ({error})")
    if errors:
        raise CsvValidationError(errors)
    if not parsed.rows_by_symbol:
        raise CsvValidationError([f"{path}:2: the file has a header but no bars"])
    return parsed


def load_csv_files(
    conn: psycopg.Connection,
    paths: Sequence[Path],
    load_id: uuid.UUID,
    settings: BarSettings = BarSettings(),
    progress: bool = True,
) -> CsvLoadSummary:
    """Validate every file, then land each file in one transaction (one batch per symbol)."""
    parsed_files: list[ParsedFile] = []
    errors: list[str] = []
    for path in tqdm(paths, desc="validating", unit="file", disable=not progress or len(paths) < 2):
        try:
            parsed_files.append(parse_csv_file(Path(path)))
        except CsvValidationError as error:
            errors.extend(error.errors)
    if errors:
        raise CsvValidationError(errors)

    symbols: set[str] = set()
    rows = 0
    total = sum(p.row_count for p in parsed_files)
    with tqdm(total=total, desc="landing", unit="bar", disable=not progress) as bar:
        for parsed in parsed_files:
            started_at = utc_now()
            batches = [
                (
                    Batch(
                        symbol=symbol,
                        settings=settings,
                        status="ok",
                        started_at=started_at,
                        requested_start=min(row[4] for row in symbol_rows),
                        requested_end=max(row[4] for row in symbol_rows),
                    ),
                    symbol_rows,
                )
                for symbol, symbol_rows in parsed.rows_by_symbol.items()
            ]
            counts = land_batches(conn, load_id=load_id, source="csv", batches=batches)
            rows += sum(counts)
            symbols.update(parsed.rows_by_symbol)
            bar.update(parsed.row_count)
    return CsvLoadSummary(load_id=load_id, files=len(parsed_files), symbols=len(symbols), rows=rows)
