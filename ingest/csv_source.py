"""Bars from CSV files: streamed, validated row by row, and landed all together or not at all.

File format (UTF-8, a byte-order mark is accepted, comma-separated, one header line; blank lines are skipped):

    required columns: symbol, date, open, high, low, close, volume
    optional columns: wap, bar_count, con_id, exchange, currency

``date`` is the session date, written ``YYYY-MM-DD`` (nothing else: no ``20240104``, no week dates); the bar's
``bar_time`` is midnight of that date in New York, as for daily bars from IBKR. Rules: the symbol matches
:data:`ingest.symbols.SYMBOL_PATTERN`; prices are finite and within 1e-8 .. 1e15, low <= open, close <= high;
volume is finite and within 0 .. 1e18 (the bounds of dbt's staging tests: raw is append-only, so a bar beyond them would fail every
build); wap, when given, is finite and lies within [low, high]; bar_count, when given, is a whole number
0 .. 2^63-1; con_id, when given, a whole number 1 .. 2^63-1; the session has ended (not in the future, not
today's session before its close); and a (symbol, date) appears at most once per run, in one of its files.

All files of a run land in ONE transaction: rows stream through COPY into a temporary table while they are
checked, so memory stays flat whatever the file size. Any bad row in any file rolls the whole run back: a run
with a bad file lands nothing, and the error lists ``file:line: reason`` for the bad lines (the first
:data:`MAX_ERRORS_KEPT`). Each (file, symbol) becomes one ``raw.load_batches`` row.
"""

from __future__ import annotations

import csv
import functools
import math
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import BinaryIO

import psycopg
from tqdm import tqdm

from command_line import open_user_file
from ingest.landing import Batch, landing, new_load_id, utc_now
from ingest.raw_tables import BarSettings, RawBar, open_for_landing
from ingest.sessions import FinalBars, why_not_a_session
from ingest.symbols import InvalidSymbolError, normalize_symbol
from market_calendar import EXCHANGE_TZ
from warehouse_db.settings import ConnectionSettings

SOURCE = "csv"
REQUIRED_COLUMNS = ("symbol", "date", "open", "high", "low", "close", "volume")
OPTIONAL_COLUMNS = ("wap", "bar_count", "con_id", "exchange", "currency")
MAX_ERRORS_SHOWN = 10
MAX_ERRORS_KEPT = 100
"""Problems remembered per run (all are counted): a file that is wrong on every line cannot exhaust memory."""
PRICE_BOUNDS = (1e-8, 1e15)
"""The prices staging accepts (stg_ibkr__bars.yml, prices_positive_and_finite): a bar beyond them would land in
append-only raw and fail that test on every dbt build (and above about 1e154 overflow the features)."""
VOLUME_MAX = 1e18
"""The largest volume staging accepts (stg_ibkr__bars.yml, volume_finite_not_negative)."""
BIGINT_MAX = 2**63 - 1
"""Largest value raw's bigint columns (bar_count, con_id) hold."""
DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
BYTE_ORDER_MARK = b"\xef\xbb\xbf"
_PROGRESS_EVERY = 65536


class CsvValidationError(ValueError):
    """One or more files failed validation; ``errors`` holds the first ``file:line: reason`` found."""

    def __init__(self, errors: Sequence[str], total: int | None = None) -> None:
        self.errors = list(errors)
        self.total = max(total or 0, len(self.errors))
        shown = self.errors[:MAX_ERRORS_SHOWN]
        more = self.total - len(shown)
        super().__init__("\n".join(shown) + (f"\n... and {more} more" if more else ""))


@dataclass
class CsvLoadSummary:
    load_id: uuid.UUID
    files: int
    symbols: int
    rows: int


class Problems:
    """The problems found so far: all counted, the first :data:`MAX_ERRORS_KEPT` kept."""

    def __init__(self) -> None:
        self.kept: list[str] = []
        self.count = 0

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.kept) < MAX_ERRORS_KEPT:
            self.kept.append(message)

    def __bool__(self) -> bool:
        return self.count > 0

    def error(self) -> CsvValidationError:
        return CsvValidationError(self.kept, self.count)


class _RowError(ValueError):
    pass


def display_path(path: Path | str, limit: int = 160) -> str:
    """The path as a message shows it: a path too long for a terminal keeps its start and its end."""
    text = str(path)
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]}...({len(text)} characters)...{text[-(limit // 4) :]}"


# --- one row ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _symbol(text: str) -> str:
    try:
        return normalize_symbol(text)
    except InvalidSymbolError as error:
        raise _RowError(str(error)) from None


@functools.lru_cache(maxsize=8192)
def _session_date(text: str) -> date:
    text = text.strip()
    if not DATE_PATTERN.fullmatch(text):
        raise _RowError(f"date {text!r} is not a YYYY-MM-DD date")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _RowError(f"date {text!r} is not a valid YYYY-MM-DD date") from None


def _number(text: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _RowError(f"{column} {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise _RowError(f"{column} is {text.strip()!r}; must be finite")
    return value


def _price(text: str, column: str) -> float:
    value = _number(text, column)
    if value <= 0:
        raise _RowError(f"{column} is {text.strip()!r}; prices must be > 0")
    low, high = PRICE_BOUNDS
    if not low <= value <= high:
        raise _RowError(f"{column} is {text.strip()!r}; prices must lie within 1e-8 .. 1e15 (dbt's staging bounds)")
    return value


def _whole(text: str, column: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _RowError(f"{column} {text.strip()!r} is not a whole number") from None
    if not low <= value <= BIGINT_MAX:
        raise _RowError(f"{column} {value} is out of range {low}..2^63-1")
    return value


class _RowParser:
    """Turns one CSV record into a :class:`RawBar`, or raises _RowError saying what is wrong."""

    def __init__(self, header: list[str], final: FinalBars) -> None:
        self.width = len(header)
        self.index = {name: header.index(name) for name in header}
        self.final = final

    def __call__(self, fields: list[str]) -> RawBar:
        if len(fields) != self.width:
            raise _RowError(f"wrong number of fields ({len(fields)}, the header has {self.width})")
        i = self.index
        symbol = _symbol(fields[i["symbol"]])
        session = _session_date(fields[i["date"]])
        if not self.final.daily(session):
            raise _RowError(self.final.why_not_daily(session))
        if reason := why_not_a_session(session):
            raise _RowError(reason)
        open_ = _price(fields[i["open"]], "open")
        high = _price(fields[i["high"]], "high")
        low = _price(fields[i["low"]], "low")
        close = _price(fields[i["close"]], "close")
        if high < low:
            raise _RowError(f"high {high} < low {low}")
        if not (low <= open_ <= high and low <= close <= high):
            raise _RowError(f"open {open_} and close {close} must lie within [low {low}, high {high}]")
        text = fields[i["volume"]].strip()
        if not text:
            raise _RowError("volume is empty")
        volume = _number(text, "volume")
        if volume < 0:
            raise _RowError(f"volume {volume} < 0")
        if volume > VOLUME_MAX:
            raise _RowError(f"volume {text!r} is above 1e18 (dbt's staging bound)")
        wap = bar_count = con_id = exchange = currency = None
        if "wap" in i and (text := fields[i["wap"]].strip()):
            wap = _number(text, "wap")
            if not low <= wap <= high:
                raise _RowError(f"wap {wap} must lie within [low {low}, high {high}]")
        if "bar_count" in i and (text := fields[i["bar_count"]].strip()):
            bar_count = _whole(text, "bar_count", 0)
        if "con_id" in i and (text := fields[i["con_id"]].strip()):
            con_id = _whole(text, "con_id", 1)
        if "exchange" in i:
            exchange = fields[i["exchange"]].strip() or None
        if "currency" in i:
            currency = fields[i["currency"]].strip() or None
        return RawBar(
            symbol=symbol,
            bar_time=datetime.combine(session, time(0), EXCHANGE_TZ),
            session_date=session,
            open=open_,
            high=high,
            low=low,
            close=close,
            volume=volume,
            wap=wap,
            bar_count=bar_count,
            con_id=con_id,
            exchange=exchange,
            currency=currency,
        )


# --- one file ---------------------------------------------------------------------------------------------


class _FileError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _decoded_lines(file: BinaryIO, progress: tqdm) -> Iterator[str]:
    """The file's lines as text, checked for UTF-8 and NUL bytes one line at a time."""
    offset = 0
    for number, raw in enumerate(file, start=1):
        data = raw[len(BYTE_ORDER_MARK) :] if number == 1 and raw.startswith(BYTE_ORDER_MARK) else raw
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            at = offset + (len(raw) - len(data)) + error.start
            raise _FileError(
                number, f"not UTF-8 (byte 0x{data[error.start]:02x} at offset {at}); save the file as UTF-8"
            ) from None
        if "\x00" in text:
            raise _FileError(number, "contains a NUL byte")
        offset += len(raw)
        if number % _PROGRESS_EVERY == 0:
            progress.update(offset - progress.n)
        yield text
    progress.update(offset - progress.n)


def read_csv_bars(
    path: Path, problems: Problems, final: FinalBars, progress: tqdm | None = None
) -> Iterator[tuple[int, RawBar]]:
    """Yield (line, bar) for every good row of ``path``; every problem goes to ``problems`` as ``file:line: ...``."""
    shown = display_path(path)
    try:
        with open_user_file(path) as file:
            yield from _read_bars(file, shown, problems, final, progress or tqdm(disable=True))
    except IsADirectoryError:
        problems.add(f"{shown}: is a directory, not a CSV file")
    except FileNotFoundError:
        problems.add(f"{shown}: file not found")
    except OSError as error:  # permission denied, a name too long, an I/O error, a device (/dev/zero never ends)
        problems.add(f"{shown}: cannot read it: {error.strerror or error}")


def _read_bars(
    file: BinaryIO, shown: str, problems: Problems, final: FinalBars, progress: tqdm
) -> Iterator[tuple[int, RawBar]]:
    reader = csv.reader(_decoded_lines(file, progress), strict=True)
    problems_before, rows = problems.count, 0
    try:
        header_fields = next(reader, None)
        if header_fields is None or not any(f.strip() for f in header_fields):
            problems.add(f"{shown}:1: the file is empty; expected a header line: {','.join(REQUIRED_COLUMNS)}")
            return
        header = [name.strip().lower() for name in header_fields]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
        if missing or unknown or len(set(header)) != len(header):
            described = []
            if missing:
                described.append(f"missing column(s) {', '.join(missing)}")
            if unknown:
                described.append(f"unknown column(s) {', '.join(unknown)}")
            if len(set(header)) != len(header):
                described.append("a column appears twice")
            problems.add(f"{shown}:1: {'; '.join(described)} (required: {', '.join(REQUIRED_COLUMNS)})")
            return
        parse = _RowParser(header, final)
        for fields in reader:
            if not fields:
                continue  # a blank line (one at the end of a file, two files joined with one between): no bar
            try:
                bar = parse(fields)
            except _RowError as error:
                problems.add(f"{shown}:{reader.line_num}: {error}")
                continue
            rows += 1
            yield reader.line_num, bar
    except _FileError as error:
        problems.add(f"{shown}:{error.line}: {error}")
    except csv.Error as error:
        problems.add(f"{shown}:{reader.line_num}: malformed CSV ({error})")
    else:
        if rows == 0 and problems.count == problems_before:
            problems.add(f"{shown}:2: the file has a header but no bars")


# --- a run ------------------------------------------------------------------------------------------------


def load_csv_files(
    conn: psycopg.Connection,
    paths: Sequence[Path],
    load_id: uuid.UUID,
    settings: BarSettings = BarSettings(),
    *,
    progress: bool = True,
    now: datetime | None = None,
) -> CsvLoadSummary:
    """Stream every file into one landing transaction; commit only if every row of every file is good.

    ``now`` decides which sessions have ended (default: the wall clock).
    """
    final = FinalBars(now or utc_now(), use_rth=settings.use_rth)
    problems = Problems()
    first_named: dict[Path, Path] = {}
    for path in map(Path, paths):
        first = first_named.setdefault(path.resolve(), path)
        if first is not path:
            problems.add(
                f"{display_path(path)}: given twice (also as {display_path(first)}); its rows would land twice"
            )
    if problems:
        raise problems.error()
    batches: dict[int, Batch] = {}
    keys: dict[tuple[int, str], int] = {}
    started_at = utc_now()
    total_bytes = sum(_size(Path(p)) for p in paths)
    with (
        tqdm(total=total_bytes, desc="csv", unit="B", unit_scale=True, disable=not progress) as bar,
        landing(conn, load_id=load_id, source=SOURCE) as transaction,
    ):
        with transaction.copy() as writer:
            for file_index, path in enumerate(paths):
                for line, raw_bar in read_csv_bars(Path(path), problems, final, bar):
                    if problems:
                        continue  # keep checking the rest, but nothing will land
                    key = keys.get((file_index, raw_bar.symbol))
                    if key is None:
                        key = keys[(file_index, raw_bar.symbol)] = len(keys)
                        batches[key] = Batch(
                            symbol=raw_bar.symbol, settings=settings, status="ok", started_at=started_at
                        )
                    writer.write(key, raw_bar, line)
        if not problems:
            files = {key: file_index for (file_index, _), key in keys.items()}

            def place(key: int, line: int) -> str:
                return f"{display_path(paths[files[key]])}:{line}"

            # Within a file, or across two files of the run (one of them would win at random: see duplicates).
            for symbol, session, ((first_key, first_line), *others) in transaction.duplicates(MAX_ERRORS_KEPT):
                for key, line in others:
                    first = f"line {first_line}" if key == first_key else place(first_key, first_line)
                    problems.add(f"{place(key, line)}: duplicate bar for {symbol} on {session} (first on {first})")
        if problems:
            raise problems.error()  # leaves the transaction: PostgreSQL discards every row streamed so far
        landed = transaction.finish(batches, requested_range_from_bars=True)
    return CsvLoadSummary(
        load_id=load_id,
        files=len(paths),
        symbols=len({symbol for _, symbol in keys}),
        rows=sum(batch.row.row_count for batch in landed.values()),
    )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def load_csv(
    settings: ConnectionSettings | None, paths: Sequence[Path], *, progress: bool = True, now: datetime | None = None
) -> CsvLoadSummary:
    """The CSV source's whole run: open the warehouse for landing, land every file or none, close."""
    conn = open_for_landing(settings)
    try:
        return load_csv_files(conn, paths, new_load_id(), progress=progress, now=now)
    finally:
        conn.close()
