"""What raw already holds, read back for the IBKR loader's plan: coverage, bar spans, known contracts, the
symbols that hold a contract, and the stored version of bars."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import psycopg
from psycopg import sql

from ingest.raw_tables import IBKR_BARS, LOAD_BATCHES, BarSettings


@dataclass(frozen=True)
class Coverage:
    """What the warehouse holds for one symbol and one set of bar settings (the planner's input)."""

    last_bar_time: datetime | None = None
    """The watermark: the latest landed bar."""
    covered_from: datetime | None = None
    """The earliest start any successful batch of the source asked for."""
    checked_at: datetime | None = None
    """The latest moment a successful batch of the source asked for data up to (its ``requested_end``).

    Not when it finished: a request sent at 15:59 and answered at 16:01 saw the session still trading."""
    first_bar_time: datetime | None = None
    """The earliest landed bar. It may be older than ``covered_from``: a duration in whole years (``2 Y``) can
    return more than was asked for, and all of it lands."""

    @property
    def empty(self) -> bool:
        return self.last_bar_time is None and self.checked_at is None

    @property
    def held_from(self) -> datetime | None:
        """The earliest moment the warehouse holds bars for, or asked for them from: what a re-fetch of the whole
        history must reach back to, so that no stored bar keeps an older adjustment."""
        known = [moment for moment in (self.first_bar_time, self.covered_from) if moment is not None]
        return min(known, default=None)


def read_bar_spans(conn: psycopg.Connection, settings: BarSettings) -> dict[str, tuple[datetime, datetime]]:
    """The earliest and the latest landed bar_time per symbol for these bar settings: where a history re-fetch
    must reach back to, and where an incremental fetch resumes (the watermark)."""
    rows = conn.execute(
        sql.SQL(
            "select symbol, min(bar_time), max(bar_time) from {} "
            "where bar_size = %s and what_to_show = %s and use_rth = %s group by symbol"
        ).format(IBKR_BARS.identifier),
        (settings.bar_size, settings.what_to_show, settings.use_rth),
    ).fetchall()
    return {symbol: (first, last) for symbol, first, last in rows}


def read_coverage(
    conn: psycopg.Connection, settings: BarSettings, symbols: Sequence[str], *, source: str
) -> dict[str, Coverage]:
    """Watermark, covered window start and last successful check per symbol, for these bar settings."""
    spans = read_bar_spans(conn, settings)
    rows = conn.execute(
        sql.SQL(
            "select symbol, min(requested_start), max(requested_end) from {} "
            "where source = %s and bar_size = %s and what_to_show = %s and use_rth = %s "
            "and status in ('ok', 'no_data') and symbol = any(%s) group by symbol"
        ).format(LOAD_BATCHES.identifier),
        (source, settings.bar_size, settings.what_to_show, settings.use_rth, list(symbols)),
    ).fetchall()
    batches = {symbol: (covered_from, checked_at) for symbol, covered_from, checked_at in rows}
    coverage: dict[str, Coverage] = {}
    for symbol in symbols:
        covered_from, checked_at = batches.get(symbol, (None, None))
        first_bar_time, last_bar_time = spans.get(symbol, (None, None))
        coverage[symbol] = Coverage(
            last_bar_time=last_bar_time, first_bar_time=first_bar_time, covered_from=covered_from, checked_at=checked_at
        )
    return coverage


@dataclass(frozen=True)
class KnownContract:
    """A contract id already in raw, with the listing it was landed with."""

    con_id: int
    exchange: str | None
    currency: str | None


def read_known_contracts(
    conn: psycopg.Connection, settings: BarSettings, symbols: Sequence[str], *, source: str
) -> dict[str, KnownContract]:
    """conIds already in raw (from loads of ``source``): those symbols need no contract-details request.

    Looks at the latest bar of these settings first (an index scan), then at any bar of the symbol.
    """
    rows = conn.execute(
        sql.SQL(
            """
            select s.symbol, k.con_id, k.exchange, k.currency
            from unnest(%s::text[]) as s(symbol)
            cross join lateral (
                (select b.con_id, b.exchange, b.currency, 0 as preference
                 from {bars} b
                 where b.symbol = s.symbol and b.bar_size = %s and b.what_to_show = %s and b.use_rth = %s
                   and b.source = %s and b.con_id is not null
                 order by b.bar_time desc
                 limit 1)
                union all
                (select b.con_id, b.exchange, b.currency, 1
                 from {bars} b
                 where b.symbol = s.symbol and b.source = %s and b.con_id is not null
                 limit 1)
                order by preference
                limit 1
            ) k
            """
        ).format(bars=IBKR_BARS.identifier),
        (list(symbols), settings.bar_size, settings.what_to_show, settings.use_rth, source, source),
    ).fetchall()
    return {
        symbol: KnownContract(con_id=int(con_id), exchange=exchange, currency=currency)
        for symbol, con_id, exchange, currency in rows
    }


CONTRACT_HOLDERS_SQL = sql.SQL(
    """
    with recursive symbols(symbol) as (
        (select b.symbol from {bars} b order by b.symbol limit 1)
        union all
        select (select b.symbol from {bars} b where b.symbol > s.symbol order by b.symbol limit 1)
        from symbols s
        where s.symbol is not null
    )
    select s.symbol, latest.con_id
    from symbols s
    cross join lateral (
        select b.con_id
        from {bars} b
        where b.symbol = s.symbol and b.bar_size = %s and b.what_to_show = %s and b.use_rth = %s
        order by b.bar_time desc
        limit 1
    ) latest
    where latest.con_id = any(%s)
    """
).format(bars=IBKR_BARS.identifier)
"""Parameters: bar_size, what_to_show, use_rth, the contract ids (a list). See :func:`read_contract_holders`."""


def read_contract_holders(
    conn: psycopg.Connection, settings: BarSettings, con_ids: Iterable[int]
) -> dict[int, set[str]]:
    """Per contract id of ``con_ids``, the symbols in ``raw.ibkr_bars`` whose latest bar of these settings carries it.

    A symbol is judged by its latest bar only: a skip scan over the watermark index finds the symbols and a second
    probe their latest bar, so the cost grows with the number of symbols, not of bars (raw.ibkr_bars has no index on
    con_id, and a scan of it grows with every load: on 5,000 symbols of 1,260 daily bars this takes 0.08 s, a scan
    by con_id 1.3 s, and the planner's own coverage read 0.7 s). A latest bar with a null con_id (a CSV file's)
    names no contract.
    """
    wanted = sorted(set(con_ids))
    if not wanted:
        return {}
    rows = conn.execute(
        CONTRACT_HOLDERS_SQL, (settings.bar_size, settings.what_to_show, settings.use_rth, wanted)
    ).fetchall()
    holders: dict[int, set[str]] = {}
    for symbol, con_id in rows:
        holders.setdefault(int(con_id), set()).add(symbol)
    return holders


class StoredBar(NamedTuple):
    """The version of a bar the warehouse currently holds (the latest landed), as far as prices and volume go."""

    bar_time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float | None


def read_stored_bars(
    conn: psycopg.Connection,
    settings: BarSettings,
    spans: Mapping[str, Sequence[tuple[datetime, datetime | None]]],
) -> dict[str, dict[datetime, StoredBar]]:
    """Per symbol, the latest landed version of every bar within its ``spans`` (from, until; until None: no end),
    an index range scan each.

    The IBKR loader compares re-delivered bars against these to notice a re-adjusted history (a split).
    """
    ranges = [(symbol, since, until) for symbol, symbol_spans in spans.items() for since, until in symbol_spans]
    if not ranges:
        return {}
    symbols, starts, ends = (list(column) for column in zip(*ranges, strict=True))
    rows = conn.execute(
        sql.SQL(
            """
            select distinct on (b.symbol, b.bar_time)
                   b.symbol, b.bar_time, b.open, b.high, b.low, b.close, b.volume
            from unnest(%s::text[], %s::timestamptz[], %s::timestamptz[]) as s(symbol, since, until)
            join {bars} b
              on b.symbol = s.symbol and b.bar_time >= s.since and (s.until is null or b.bar_time <= s.until)
             and b.bar_size = %s and b.what_to_show = %s and b.use_rth = %s
            order by b.symbol, b.bar_time, b.ingested_at desc, b.load_id desc, b.batch_id desc
            """
        ).format(bars=IBKR_BARS.identifier),
        (symbols, starts, ends, settings.bar_size, settings.what_to_show, settings.use_rth),
    ).fetchall()
    stored: dict[str, dict[datetime, StoredBar]] = {}
    for symbol, *values in rows:
        stored.setdefault(symbol, {})[values[0]] = StoredBar(*values)
    return stored
