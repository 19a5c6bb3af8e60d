"""The CSV path as it was before streaming (commit ed6c468): the benchmark's in-run baseline, kept verbatim in spirit.

It reads a whole file into memory, decodes it, parses every row into a tuple held in a dict of lists, then lands
each symbol as a batch: a temporary table per batch, binary COPY, INSERT into raw, the batch row, all files'
batches of one file in one transaction. ``bench/bench_csv.py`` runs it beside today's streaming path on the same
file to print the memory and speed ratios. Not used by the product.
"""

from __future__ import annotations

import csv
import io
import math
import uuid
from collections import defaultdict
from datetime import date, datetime, time
from pathlib import Path

import psycopg

from ingest.symbols import normalize_symbol
from market_calendar import EXCHANGE_TZ

_COLUMNS = ("symbol", "con_id", "exchange", "currency", "bar_time", "session_date", "open", "high", "low", "close",
            "volume", "wap", "bar_count")  # fmt: skip
_TYPES = ("text", "int8", "text", "text", "timestamptz", "date", "float8", "float8", "float8", "float8", "float8",
          "float8", "int4")  # fmt: skip


def _price(row: dict[str, str], column: str) -> float:
    value = float(row[column].strip())
    if not math.isfinite(value) or value <= 0:
        raise ValueError(column)
    return value


def _optional(row: dict[str, str], column: str, convert) -> object | None:
    text = (row.get(column) or "").strip()
    return convert(text) if text else None


def _parse_row(row: dict[str, str], today: date) -> tuple:
    symbol = normalize_symbol(row["symbol"])
    session_date = date.fromisoformat(row["date"].strip())
    if session_date > today:
        raise ValueError("future")
    open_, high, low, close = (_price(row, c) for c in ("open", "high", "low", "close"))
    if high < low or not (low <= open_ <= high and low <= close <= high):
        raise ValueError("ohlc")
    volume = _optional(row, "volume", float)
    wap = _optional(row, "wap", float)
    bar_count = _optional(row, "bar_count", int)
    con_id = _optional(row, "con_id", int)
    bar_time = datetime.combine(session_date, time(0), tzinfo=EXCHANGE_TZ)
    return (symbol, con_id, None, None, bar_time, session_date, open_, high, low, close, volume, wap, bar_count)


def parse_file(path: Path) -> dict[str, list[tuple]]:
    text = path.read_bytes().decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    reader.fieldnames = [name.strip().lower() for name in reader.fieldnames or []]
    today = datetime.now(EXCHANGE_TZ).date()
    rows: dict[str, list[tuple]] = defaultdict(list)
    first_seen: dict[tuple[str, date], int] = {}
    for row in reader:
        values = _parse_row(row, today)
        key = (values[0], values[5])
        if key in first_seen:
            raise ValueError(f"duplicate {key}")
        first_seen[key] = reader.line_num
        rows[values[0]].append(values)
    return rows


def load(conn: psycopg.Connection, path: Path) -> int:
    """Parse the whole file, then land one batch per symbol in one transaction; returns rows landed."""
    rows_by_symbol = parse_file(path)
    load_id, landed = uuid.uuid4(), 0
    with conn.transaction():
        conn.execute("set local role loader")
        definition = ", ".join(f"{n} {t}" for n, t in zip(_COLUMNS, _TYPES, strict=True))
        conn.execute(f"create temporary table if not exists baseline_bars ({definition}) on commit delete rows")
        with conn.cursor() as cur:
            for symbol, rows in rows_by_symbol.items():
                batch_id = uuid.uuid4()
                cur.execute("truncate baseline_bars")
                with cur.copy(f"copy baseline_bars ({', '.join(_COLUMNS)}) from stdin (format binary)") as copy:
                    copy.set_types(_TYPES)
                    for row in rows:
                        copy.write_row(row)
                now = datetime.now(EXCHANGE_TZ)
                cur.execute(
                    f"insert into raw.ibkr_bars ({', '.join(_COLUMNS)}, bar_size, what_to_show, use_rth, source, "
                    f"load_id, batch_id, ingested_at) select {', '.join(_COLUMNS)}, '1 day', 'TRADES', true, "
                    "'csv', %s, %s, %s from baseline_bars",
                    (load_id, batch_id, now),
                )
                count = cur.rowcount
                cur.execute(
                    "insert into raw.load_batches (batch_id, load_id, source, symbol, bar_size, what_to_show, use_rth,"
                    " requested_start, requested_end, status, row_count, started_at, finished_at) values "
                    "(%s, %s, 'csv', %s, '1 day', 'TRADES', true, %s, %s, 'ok', %s, %s, %s)",
                    (batch_id, load_id, symbol, rows[0][4], rows[-1][4], count, now, now),
                )
                landed += count
    return landed
