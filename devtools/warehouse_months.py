"""Months of IBKR loads in random order against the real warehouse and real dbt: is every incremental build what a
full refresh of the same raw data gives, and are the marts what the bars say?

One *sequence* is a seeded list of load events on a few symbols over about a year and a half of NYSE sessions,
with incremental ``dbt build`` runs between them:

- ``advance n [overlap]``: n sessions pass (n = 5: nobody loaded for a week) and the daily load runs as ingest
  does: for every watchlist symbol the new sessions plus a week of overlap (re-delivered, identical or revised;
  ``overlap`` 0: only the new sessions, as a CSV file of new days brings them), a new symbol
  its whole window, a symbol whose history the source re-adjusted (a split) its whole stored history again;
- ``skip_over kind``: nobody loads until two sessions after the next ``holiday`` (a weekday the exchange is
  closed) or ``half_day`` (an early close), then the daily load runs: a skipped week around it;
- ``partial``: a load during the next session lands that session's bar so far (not final);
- ``hole SYM``: the next load's answer for SYM lacks one session (the following load's overlap brings it);
- ``revise SYM k``: the source revises the close of the session k sessions back, and that bar lands again;
- ``split SYM r [k]``: a split of ratio r takes effect k sessions after the next one (default 0: with the next
  session; IBKR re-adjusts the history). Two splits before one load, or a split inside a skipped week, are a
  load re-adjusting by their product;
- ``delist SYM``: SYM stops trading after the last session that has ended; while still on the watchlist, every
  later load of it fails (error 200, as IBKR answers for a delisted contract) and lands nothing;
- ``csv SYM n``: a session passes, and instead of the daily load a CSV file through ingest's own CSV path
  (source ``csv``, prices rounded to cents, no wap, bar count or contract id) brings SYM's last n held sessions
  and every newer one (the other symbols get theirs with the next load's overlap);
- ``csv_backfill SYM n``: such a CSV file with n sessions of SYM older than anything held;
- ``rename OLD NEW``: OLD's ticker changes to NEW with the next session (as FB became META): the source serves
  the same contract id, and its whole history, under NEW only, and the user puts NEW in OLD's place on the
  watchlist; later events that name OLD mean NEW. The next build must fail
  ``int_bars_deduplicated_one_symbol_per_contract`` while raw holds both tickers on shared sessions; the admin
  then deletes OLD's bars and rebuilds with ``--full-refresh``, as docs/ingest.md says;
- ``csv_bad_day SYM``: a CSV file of SYM's held sessions that also holds a bar on the next day without a session
  (a weekend or a holiday): ingest must refuse the whole file, and nothing lands;
- ``halt SYM``: SYM is halted all day on the next session: the source never serves that session for it, and the
  administrator records it in ``warehouse/seeds/known_missing_sessions.csv`` (of the sequence's copy of the dbt
  project) under every ticker of the contract, so the next dbt command reloads the seed first (``dbt build`` with
  the seeds, or ``dbt seed`` before ``dbt run``), and ``no_missing_sessions`` passes across the gap;
- ``backfill SYM n``: n sessions older than anything held for SYM land (a longer window, or a CSV file);
- ``add SYM`` / ``remove SYM``: the watchlist changes;
- ``duplicate``: the last batch lands again, unchanged;
- ``late``: the next load committed after the previous build had read raw, with an ingested_at from before that
  build started (a load transaction still open during the build; var raw_lookback covers that);
- ``build``: ``dbt build`` (incremental).

After every green build, each incremental model and mart is compared with an independent pandas computation from
raw (latest final version per bar, :func:`devtools.reference_features.reference_features`, the warm-up rule);
the final build, after every session a load left out has landed, must pass every data test; at checkpoints and at
the end of the sequence a copy of the database is rebuilt with ``--full-refresh`` and every
model's rows must be identical (md5 of the ordered rows). A failing sequence is shrunk to the fewest events that
still fail and printed as a Python list, ready to paste into a regression test.

    .venv/bin/python -m devtools.warehouse_months --sequences 20 --seed 1  # about 1-3 minutes per sequence on 2 cores
    .venv/bin/python -m devtools.warehouse_months --replay "[('advance', 1), ('build',)]"

Exit status 0: every sequence held; 1: a sequence failed (its shrunk event list is printed). Runs against the
embedded warehouse (or PG* / DATABASE_URL), in scratch databases it drops afterwards.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import math
import random
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pandas as pd

from command_line import positive_int  # 0 or -1 sequences ran nothing and said "0 of 0 failed"
from devtools import dbt_harness, synthetic_bars
from devtools.external_server import external_server
from devtools.reference_features import reference_features
from ingest.csv_source import CsvValidationError, load_csv
from ingest.raw_tables import IBKR_BARS, LoadBatch
from market_calendar import EXCHANGE_TZ, non_session_weekdays, schedule, session_closes, sessions_in_range
from training.features import read_mart_schema
from warehouse_db import connect, embedded
from warehouse_db.settings import ConnectionSettings

logger = logging.getLogger("warehouse_months")

Event = tuple
"""One load event: ``(kind, *arguments)``, e.g. ``('advance', 5)`` or ``('split', 'SB', 2.0)``."""

EVENT_KINDS = frozenset({
    "add", "advance", "backfill", "build", "build_full", "csv", "csv_backfill", "csv_bad_day", "delist", "duplicate",
    "halt", "hole", "late", "partial", "remove", "rename", "revise", "run", "skip_over", "split",
})  # fmt: skip
"""Every event kind a sequence may hold (builds, then what :meth:`Loader.apply` knows): ``--replay`` is checked
against them before anything starts."""

UNIVERSE = ("SA", "SB", "SC", "SD")
FIRST_SESSION = "2023-01-03"
LAST_SESSION = "2024-06-28"
WINDOW = 120
"""Sessions a new symbol gets at its first load (the first load ends on session WINDOW of the range)."""
OVERLAP = 5
"""Sessions re-delivered before a symbol's latest bar by every daily load (ingest's week of overlap)."""
WARMUP = int(dbt_harness.dbt_project_var("warmup_sessions"))
TOLERANCE = 1e-9
FOLD_VARS = {
    "walk_forward_folds": 2,
    "walk_forward_test_sessions": 20,
    "walk_forward_validation_sessions": 10,
    "walk_forward_min_train_sessions": 30,
}
"""Folds small enough for a year of bars, so that the fold models hold rows to compare."""
KNOWN_MISSING_SEED = "known_missing_sessions.csv"
"""The seed in which the administrator records a session a symbol did not trade (a ``halt``)."""
ONE_SYMBOL_PER_CONTRACT = "int_bars_deduplicated_one_symbol_per_contract"
"""The data test that fails after a ticker change until the old ticker's bars are deleted."""


RAW_LOOKBACK_SECONDS = 2
"""var raw_lookback for the sequences. Its default (an hour) would make every build of a sequence, which runs in
minutes, re-read every key landed so far: the incremental paths would never be taken."""
LATE_BY = timedelta(seconds=RAW_LOOKBACK_SECONDS / 2)
"""How long before the previous build started a ``late`` load's ingested_at lies (within var raw_lookback)."""


def dbt_vars(missing_sessions_threshold: int) -> tuple[str, str]:
    """``--vars`` for every dbt command of a sequence (JSON is YAML)."""
    variables = {
        **FOLD_VARS,
        "missing_sessions_threshold": missing_sessions_threshold,
        "raw_lookback": f"{RAW_LOOKBACK_SECONDS} seconds",
    }
    return ("--vars", json.dumps(variables))


@dataclass(frozen=True)
class Market:
    """What the source serves: a seeded economic price path per symbol, the splits so far, revised closes."""

    seed: int
    sessions: tuple[date, ...]
    splits: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    """symbol -> [(ex-session index, ratio new shares per old share)]."""
    revisions: dict[tuple[str, int], float] = field(default_factory=dict)
    """(symbol, session index) -> factor applied to the close IBKR now serves."""
    delisted: dict[str, int] = field(default_factory=dict)
    """symbol -> its last session index: no bar after it, and the source serves nothing for it after delisting."""
    renamed: dict[str, str] = field(default_factory=dict)
    """old ticker -> the ticker the source serves its contract under now."""
    halted: set[tuple[str, int]] = field(default_factory=set)
    """(company, session index) pairs the source never serves: the symbol was halted all day."""

    def tickers(self, symbol: str) -> list[str]:
        """Every ticker ``symbol``'s contract has traded under, first to current."""
        tickers = [self.company(symbol)]
        while tickers[-1] in self.renamed:
            tickers.append(self.renamed[tickers[-1]])
        return tickers

    def is_halted(self, symbol: str, session: date) -> bool:
        company = self.company(symbol)  # ``session`` may be no session at all (a CSV file's weekend bar)
        return any(halted == company and self.sessions[index] == session for halted, index in self.halted)

    def known_missing(self) -> frozenset[tuple[str, date]]:
        """The (symbol, session) pairs of the seed."""
        return frozenset(
            (ticker, self.sessions[index]) for company, index in self.halted for ticker in self.tickers(company)
        )

    def known_missing_csv(self) -> str:
        """warehouse/seeds/known_missing_sessions.csv as the administrator keeps it: every halt under every ticker."""
        lines = ["symbol,session_date,reason"]
        for company, index in sorted(self.halted):
            for ticker in self.tickers(company):
                lines.append(f"{ticker},{self.sessions[index].isoformat()},halted all day: news pending")
        return "\n".join(lines) + "\n"

    def current(self, symbol: str) -> str:
        """The ticker ``symbol``'s contract trades under now."""
        while symbol in self.renamed:
            symbol = self.renamed[symbol]
        return symbol

    def company(self, symbol: str) -> str:
        """The first ticker of ``symbol``'s contract: what its price path, splits, revisions and con_id follow."""
        earlier = {new: old for old, new in self.renamed.items()}
        while symbol in earlier:
            symbol = earlier[symbol]
        return symbol

    def con_id(self, symbol: str) -> int:
        return 100_000 + UNIVERSE.index(self.company(symbol))

    def path(self, symbol: str) -> pd.DataFrame:
        """The economic (split-free) bars of ``symbol`` on every session: a geometric random walk."""
        return _economic_path(self.seed, self.company(symbol), len(self.sessions))

    def units(self, symbol: str, as_of: int) -> float:
        """Product of the ratios of the splits effective on or before session ``as_of``."""
        return math.prod(ratio for ex, ratio in self.splits.get(self.company(symbol), []) if ex <= as_of)

    def bar(self, symbol: str, index: int, as_of: int) -> dict:
        """Session ``index``'s bar as the source serves it on session ``as_of`` (split-adjusted as of then)."""
        row = self.path(symbol).iloc[index]
        factor = self.units(symbol, as_of)
        close = row["close"] * self.revisions.get((self.company(symbol), index), 1.0)
        prices = {"open": row["open"], "high": max(row["high"], close), "low": min(row["low"], close), "close": close}
        prices = {name: value / factor for name, value in prices.items()}
        return {
            **prices,
            "volume": round(row["volume"] * factor),
            "wap": (prices["open"] + prices["high"] + prices["low"] + prices["close"]) / 4,
            "bar_count": int(row["bar_count"]),
        }


_PATHS: dict[tuple[int, str, int], pd.DataFrame] = {}


def _economic_path(seed: int, symbol: str, length: int) -> pd.DataFrame:
    key = (seed, symbol, length)
    if key not in _PATHS:
        rng = np.random.default_rng([seed, sum(ord(c) << (8 * i) for i, c in enumerate(symbol))])
        close = rng.uniform(20, 300) * np.exp(np.cumsum(rng.normal(0.0003, 0.02, length)))
        previous = np.concatenate([[close[0]], close[:-1]])
        open_ = previous * np.exp(rng.normal(0, 0.005, length))
        _PATHS[key] = pd.DataFrame(
            {
                "open": open_,
                "high": np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, length)),
                "low": np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, length)),
                "close": close,
                "volume": np.round(rng.lognormal(13, 0.5, length)),
                "bar_count": rng.integers(1_000, 50_000, length),
            }
        )
    return _PATHS[key]


@dataclass
class Loader:
    """Lands what ingest would land for each event (COPY into raw, one load_batches row per batch)."""

    settings: ConnectionSettings
    market: Market
    watchlist: list[str]
    clock: int = WINDOW - 1
    """Index of the last session that has ended."""
    held: dict[str, tuple[int, int, float]] = field(default_factory=dict)
    """symbol -> (first, last session index landed, the units of its last load)."""
    holes: dict[str, int] = field(default_factory=dict)
    """symbol -> the session the next load leaves out."""
    missing: set[tuple[str, date]] = field(default_factory=set)
    """Sessions a hole left out that have not landed since."""
    late_next: bool = False
    seed_changed: bool = False
    """The known_missing_sessions seed changed since the last dbt command (a halt was recorded)."""
    last_batch: pd.DataFrame | None = None
    complaints: list[str] = field(default_factory=list)
    """What went wrong in a load itself (not in the warehouse): the sequence reports these as failures."""

    def land(
        self,
        rows: list[dict],
        *,
        readjustment: dict[str, float] | None = None,
        not_final: bool = False,
        failed: Sequence[LoadBatch] = (),
    ) -> None:
        rows = self._served(rows)
        if not rows:
            if failed:
                with connect(self.settings) as conn:
                    synthetic_bars.copy_bars(conn, pd.DataFrame(columns=IBKR_BARS.column_names), failed_batches=failed)
            return
        with connect(self.settings) as conn:
            landed_at = conn.execute("select clock_timestamp()").fetchone()[0]
        if self.late_next:
            landed_at = self._late_landing_time(landed_at)
            self.late_next = False
        self._land_frame(_raw_frame(rows, landed_at, not_final=not_final), readjustment or {}, failed)
        if not not_final:
            for row in rows:
                self.missing.discard((row["symbol"], row["session"]))

    def _served(self, rows: list[dict]) -> list[dict]:
        """``rows`` less the sessions a halt left without a bar: no source has them."""
        return [row for row in rows if not self.market.is_halted(row["symbol"], row["session"])]

    def _late_landing_time(self, now: datetime) -> datetime:
        """Shortly before the previous build started, but after every earlier load: loads land one after another,
        so a load stamped before another one committed before it too."""
        with connect(self.settings) as conn:
            exists = conn.execute("select to_regclass('intermediate.int_bars_deduplicated') is not null").fetchone()[0]
            if not exists:
                return now
            build_started = conn.execute("select max(dbt_loaded_at) from intermediate.int_bars_deduplicated").fetchone()
            last_landed = conn.execute("select max(ingested_at) from raw.ibkr_bars").fetchone()
        return min(now, max(build_started[0] - LATE_BY, last_landed[0] + timedelta(microseconds=1)))

    def _land_frame(
        self, frame: pd.DataFrame, readjustment: dict[str, float], failed: Sequence[LoadBatch] = ()
    ) -> None:
        with connect(self.settings) as conn:
            synthetic_bars.copy_bars(conn, frame, readjustment_factors=readjustment, failed_batches=failed)
        self.last_batch = frame

    def land_csv(self, rows: list[dict]) -> None:
        """Land ``rows`` as a user's CSV file through ingest's CSV path: cents, no wap, bar count or contract id."""
        rows = self._served(rows)
        if not rows:
            return
        frame = pd.DataFrame(rows)
        frame.insert(1, "date", frame.pop("session").map(date.isoformat))
        with TemporaryDirectory(prefix="warehouse_months_csv_") as tmp:
            path = Path(tmp) / "bars.csv"
            frame[["symbol", "date", "open", "high", "low", "close", "volume"]].to_csv(
                path, index=False, float_format="%.2f"
            )
            load_csv(self.settings, [path], progress=False)
        for row in rows:
            self.missing.discard((row["symbol"], row["session"]))

    def daily_load(self, overlap: int = OVERLAP) -> None:
        rows: list[dict] = []
        readjusted: dict[str, float] = {}
        failed: list[LoadBatch] = []
        for symbol in self.watchlist:
            if symbol in self.market.delisted:
                failed.append(_delisted_batch(symbol))
                continue
            units = self.market.units(symbol, self.clock)
            if symbol not in self.held:
                first, reason = max(0, self.clock - WINDOW + 1), "new symbol"
            elif self.held[symbol][2] != units:
                first, reason = self.held[symbol][0], "re-adjusted"
                readjusted[symbol] = self.held[symbol][2] / units
            else:
                first, reason = max(self.held[symbol][0], self.held[symbol][1] + 1 - overlap), "new sessions"
            hole = self.holes.pop(symbol, None)
            indices = [i for i in range(first, self.clock + 1) if i != hole or i == self.clock]
            if hole is not None and first <= hole < self.clock:
                self.missing.add((symbol, self.market.sessions[hole]))
            rows += [self._row(symbol, i) for i in indices]
            low = min(first, self.held.get(symbol, (first,))[0])
            self.held[symbol] = (low, self.clock, units)
            logger.debug("load %s %s: %d sessions", symbol, reason, len(indices))
        self.land(rows, readjustment=readjusted, failed=failed)

    def _row(self, symbol: str, index: int, as_of: int | None = None) -> dict:
        """Session ``index``'s bar as served now (or on session ``as_of``: a symbol's units as of its last load)."""
        as_of = self.clock if as_of is None else as_of
        bar = self.market.bar(symbol, index, as_of)
        return {"symbol": symbol, "session": self.market.sessions[index], "con_id": self.market.con_id(symbol), **bar}

    def apply(self, event: Event) -> None:
        kind, *args = event
        if args and args[0] in self.market.renamed:  # an event for a renamed ticker is for the contract's new one
            args[0] = self.market.current(args[0])
        if kind == "advance":
            self.clock = min(self.clock + int(args[0]), len(self.market.sessions) - 2)
            self.daily_load(*(int(overlap) for overlap in args[1:]))
        elif kind == "skip_over":
            after = [i for i in _calendar_days(self.market.sessions)[args[0]] if i > self.clock]
            if after:
                self.clock = min(after[0] + 2, len(self.market.sessions) - 2)
                self.daily_load()
        elif kind == "partial":
            session = self.clock + 1
            rows = []
            for symbol in (symbol for symbol in self.watchlist if symbol not in self.market.delisted):
                row = self._row(symbol, session)
                row["close"] = (row["open"] + row["close"]) / 2  # the session so far
                row["high"], row["low"] = max(row["open"], row["close"]), min(row["open"], row["close"])
                row["volume"] = round(row["volume"] / 3)
                row["wap"] = (row["open"] + row["close"]) / 2
                rows.append(row)
            self.land(rows, not_final=True)
        elif kind == "hole":
            if args[0] in self.watchlist:
                self.holes[args[0]] = self.clock + 1
        elif kind == "halt":
            session = self.clock + 1
            if args[0] not in self.market.delisted and session < len(self.market.sessions) - 1:
                self.market.halted.add((self.market.company(args[0]), session))
                self.seed_changed = True
        elif kind == "revise":
            symbol, back = args[0], int(args[1])
            if symbol in self.held and self.held[symbol][0] <= self.clock - back <= self.held[symbol][1]:
                key = (self.market.company(symbol), self.clock - back)
                index = self.clock - back
                self.market.revisions[key] = self.market.revisions.get(key, 1.0) * 1.01
                self.land([self._row(symbol, index, as_of=self.held[symbol][1])])
        elif kind == "split":
            symbol, ratio, later = args[0], float(args[1]), int(args[2]) if len(args) > 2 else 0
            if symbol not in self.market.delisted:
                self.market.splits.setdefault(self.market.company(symbol), []).append((self.clock + 1 + later, ratio))
        elif kind == "delist":
            # Its last session is the last that has ended; a split announced for later never happens.
            symbol, company = args[0], self.market.company(args[0])
            self.market.delisted.setdefault(symbol, self.clock)
            self.market.splits[company] = [(ex, r) for ex, r in self.market.splits.get(company, []) if ex <= self.clock]
        elif kind == "rename":
            old, new = args
            if old != new and old not in self.market.delisted and new not in UNIVERSE and new not in self.held:
                self.market.renamed[old] = new
                self.seed_changed = self.seed_changed or any(company == self.market.company(old)
                                                             for company, _ in self.market.halted)  # fmt: skip
                self.watchlist = [new if symbol == old else symbol for symbol in self.watchlist]
        elif kind == "csv":
            # A session passes; this evening SYM's bars come from a CSV file instead of the gateway.
            self.clock = min(self.clock + 1, len(self.market.sessions) - 2)
            symbol, count = args[0], int(args[1])
            if symbol in self.held and self.held[symbol][2] == self.market.units(symbol, self.clock):
                first, last, units = self.held[symbol]
                through = self.market.delisted.get(symbol, self.clock)
                self.land_csv([self._row(symbol, i) for i in range(max(first, last + 1 - count), through + 1)])
                self.held[symbol] = (first, max(last, through), units)
        elif kind == "csv_bad_day":
            symbol = args[0]
            if symbol in self.held:
                first, last, _ = self.held[symbol]
                rows = [self._row(symbol, i, as_of=last) for i in range(max(first, last - 2), last + 1)]
                sessions = set(self.market.sessions)
                day = next(d for n in range(1, 9) if (d := rows[-1]["session"] + timedelta(days=n)) not in sessions)
                try:
                    self.land_csv([*rows, {**rows[-1], "session": day}])
                except CsvValidationError:
                    pass  # refused whole, as it must be
                else:
                    self.complaints.append(f"a CSV file with a bar on {day} (no session) landed")
        elif kind in ("backfill", "csv_backfill"):  # older sessions, from the gateway or from a CSV file
            symbol, count = args[0], int(args[1])
            if symbol in self.held and self.held[symbol][0] > 0:
                first, last, units = self.held[symbol]
                start = max(0, first - count)
                land = self.land_csv if kind == "csv_backfill" else self.land
                land([self._row(symbol, i, as_of=last) for i in range(start, first)])
                self.held[symbol] = (start, last, units)
        elif kind == "add":
            if args[0] not in self.watchlist:
                self.watchlist.append(args[0])
        elif kind == "remove":
            if args[0] in self.watchlist:
                self.watchlist.remove(args[0])
        elif kind == "duplicate":
            if self.last_batch is not None:
                again = self.last_batch.copy()
                if not bool(again["not_final"].iloc[0]):
                    with connect(self.settings) as conn:
                        again["ingested_at"] = conn.execute("select clock_timestamp()").fetchone()[0]
                again["load_id"] = uuid.uuid4()
                again["batch_id"] = again["symbol"].map({s: uuid.uuid4() for s in again["symbol"].unique()})
                self._land_frame(again, {})
        elif kind == "late":
            self.late_next = True
        else:
            raise ValueError(f"unknown event {event!r}")

    def clean_up_ticker_changes(self) -> None:
        """What docs/ingest.md tells the admin to do after a ticker change: delete the old ticker's bars of the
        contract (the next build runs with --full-refresh)."""
        with connect(self.settings) as conn:
            for old in self.market.renamed:
                conn.execute("delete from raw.ibkr_bars where symbol = %s and (con_id = %s or con_id is null)",
                             (old, self.market.con_id(old)))  # fmt: skip
        for old in self.market.renamed:
            self.held.pop(old, None)
            self.holes.pop(old, None)
        self.missing = {(symbol, session) for symbol, session in self.missing if symbol not in self.market.renamed}

    def settle(self) -> None:
        """Land every session a hole left out that no later load brought (a backfill would)."""
        self.holes.clear()
        index = {session: i for i, session in enumerate(self.market.sessions)}
        rows = [
            self._row(symbol, index[session], as_of=self.held[symbol][1]) for symbol, session in sorted(self.missing)
        ]
        self.land(rows)


def _calendar_days(sessions: tuple[date, ...]) -> dict[str, list[int]]:
    """Indices of the sessions right after a holiday (``holiday``) and of the early closes (``half_day``)."""
    holidays = {date.fromisoformat(day) for day in non_session_weekdays()}
    early = set(schedule(sessions[0], sessions[-1]).query("is_half_day").index.date)
    return {
        "holiday": [i for i in range(1, len(sessions)) if any(sessions[i - 1] < day < sessions[i] for day in holidays)],
        "half_day": [i for i, session in enumerate(sessions) if session in early],
    }


def _delisted_batch(symbol: str) -> LoadBatch:
    """The batch row of a request for a delisted symbol: IBKR no longer knows the contract (error 200)."""
    now = datetime.now(UTC)
    return LoadBatch(batch_id=uuid.uuid4(), load_id=uuid.uuid4(), source="ibkr", symbol=symbol, bar_size="1 day",
                     what_to_show="TRADES", use_rth=True, status="failed", row_count=0, started_at=now,
                     finished_at=now, error_code=200, error_message="No security definition has been found for the "
                     "request", request_reason="new sessions")  # fmt: skip


def _raw_frame(rows: list[dict], landed_at: datetime, *, not_final: bool) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    sessions = pd.to_datetime(frame.pop("session"))
    frame["bar_time"] = sessions.dt.tz_localize(EXCHANGE_TZ)
    frame["session_date"] = sessions.dt.date
    if not_final:  # landed at 11:00 New York time of the session, before any close (half days close at 13:00)
        ingested = (sessions + pd.Timedelta(hours=11)).dt.tz_localize(EXCHANGE_TZ)
    else:
        ingested = pd.Series([landed_at] * len(frame))
    load_id = uuid.uuid4()
    batch_ids = {symbol: uuid.uuid4() for symbol in frame["symbol"].unique()}
    frame = frame.assign(
        exchange="NASDAQ",
        currency="USD",
        bar_size="1 day",
        what_to_show="TRADES",
        use_rth=True,
        source="ibkr",
        load_id=load_id,
        batch_id=frame["symbol"].map(batch_ids),
        ingested_at=ingested.to_numpy(),
        not_final=not_final,
    )
    return frame


def random_events(rng: random.Random, count: int) -> list[Event]:
    """A random load history: mostly days passing, with every other kind of event now and then."""
    choices: list[tuple[float, object]] = [
        (20, lambda: ("advance", 1)),
        (10, lambda: ("advance", 1, 0)),
        (3, lambda: ("advance", 5, rng.choice([0, OVERLAP]))),
        (11, lambda: ("build",)),
        (3, lambda: ("run",)),
        (1, lambda: ("build_full",)),
        (4, lambda: ("partial",)),
        (3, lambda: ("hole", rng.choice(UNIVERSE))),
        (5, lambda: ("revise", rng.choice(UNIVERSE), rng.choice([0, 1, 3, 5, 30]))),
        (3, lambda: ("split", rng.choice(UNIVERSE), rng.choice([2.0, 3.0, 0.1, 1.5]))),
        (2, lambda: ("split", rng.choice(UNIVERSE), rng.choice([2.0, 0.2, 4.0]), rng.choice([1, 2, 4]))),
        (1, lambda: ("delist", rng.choice(UNIVERSE))),
        (3, lambda: ("csv", rng.choice(UNIVERSE), rng.choice([0, 3, 10]))),
        (1, lambda: ("csv_backfill", rng.choice(UNIVERSE), rng.choice([1, 20]))),
        (1, lambda: ("csv_bad_day", rng.choice(UNIVERSE))),
        (3, lambda: ("backfill", rng.choice(UNIVERSE), rng.choice([1, 10, 60]))),
        (3, lambda: ("add", rng.choice(UNIVERSE))),
        (2, lambda: ("remove", rng.choice(UNIVERSE))),
        (4, lambda: ("duplicate",)),
        (3, lambda: ("late",)),
        (1, lambda: ("rename", (symbol := rng.choice(UNIVERSE)), f"{symbol}R")),
        (1, lambda: ("halt", rng.choice(UNIVERSE))),
    ]
    weights = [weight for weight, _ in choices]
    events: list[Event] = []
    while len(events) < count:
        if rng.random() < 0.1:
            events += rng.choice(SCENARIOS)(rng.choice(UNIVERSE))
        else:
            events.append(rng.choices(choices, weights)[0][1]())
    return events[:count]


SCENARIOS = (
    # A symbol stops trading while on the watchlist (its loads fail), and is taken off it a week later.
    lambda symbol: [("delist", symbol), ("advance", 1), ("build",), ("advance", 5), ("remove", symbol)],
    # A reverse split and a split between two loads, the second on a skipped day.
    lambda symbol: [("split", symbol, 0.2), ("split", symbol, 3.0, 2), ("advance", 5)],
    # A bar landed during its session, whose final bar never comes until a later load's overlap (or never).
    lambda symbol: [("partial",), ("hole", symbol), ("advance", 5, 0), ("build",)],
    # Off the watchlist for a week and back: its old rows are still in raw.
    lambda symbol: [("remove", symbol), ("advance", 5), ("build",), ("add", symbol), ("advance", 1)],
    # A revised bar inside a history re-adjusted for a split.
    lambda symbol: [("split", symbol, 2.0), ("advance", 1), ("revise", symbol, 3), ("advance", 1)],
    # CSV files and gateway loads for the same symbol, both ways round.
    lambda symbol: [("csv", symbol, 5), ("build",), ("advance", 1), ("csv_backfill", symbol, 10)],
    # A ticker change (as FB became META), the next load lands the new ticker's whole history, and a build.
    lambda symbol: [("rename", symbol, f"{symbol}R"), ("advance", 1), ("build",)],
    # A skipped week around a holiday and around an early close.
    lambda symbol: [("skip_over", "holiday"), ("build",), ("skip_over", "half_day")],
)
"""Short event lists for situations that random events seldom line up, each for one symbol."""


# --- comparing -----------------------------------------------------------------------------------------------------


def query(settings: ConnectionSettings, statement: str) -> pd.DataFrame:
    with connect(settings) as conn:
        cursor = conn.execute(statement)
        return pd.DataFrame(cursor.fetchall(), columns=[column.name for column in cursor.description])


def _is_final(raw: pd.DataFrame) -> pd.Series:
    """A daily regular-hours bar is final when it landed at or after its session's close."""
    closes = dict(session_closes(raw["session_date"].min(), raw["session_date"].max()))
    return pd.Series(
        [
            ingested >= closes[session]
            for ingested, session in zip(raw["ingested_at"], raw["session_date"], strict=True)
        ],
        index=raw.index,
    )


def _final_rows(raw: pd.DataFrame) -> pd.DataFrame:
    return raw[_is_final(raw)]


def reference_bars(raw: pd.DataFrame) -> pd.DataFrame:
    """The latest final version of each bar in raw."""
    ordered = _final_rows(raw).sort_values(["ingested_at", "load_id", "batch_id"], ascending=False)
    return ordered.drop_duplicates(["symbol", "session_date"]).sort_values(["symbol", "session_date"])


def shared_contracts(settings: ConnectionSettings) -> set[int]:
    """Contract ids that two symbols hold on one session in the latest final bars (after a ticker change)."""
    bars = reference_bars(query(settings, "select * from raw.ibkr_bars"))
    symbols = bars.dropna(subset=["con_id"]).groupby(["con_id", "session_date"])["symbol"].nunique()
    return {int(con_id) for con_id, _ in symbols[symbols > 1].index}


def reference_marts(raw: pd.DataFrame, features: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(deduplicated bars, mart rows) from raw alone: latest final version per bar, features, warm-up rule."""
    bars = reference_bars(raw)
    mart = []
    for symbol, symbol_bars in bars.groupby("symbol"):
        symbol_bars = symbol_bars.reset_index(drop=True)
        computed = reference_features(symbol_bars.astype({"volume": float}))
        computed.insert(0, "session_number", np.arange(1, len(symbol_bars) + 1))
        computed.insert(0, "session_date", symbol_bars["session_date"])
        computed.insert(0, "symbol", symbol)
        for column in ("open", "high", "low", "close", "volume"):
            computed[column] = symbol_bars[column]
        keep = (computed["session_number"] > WARMUP) & computed[features].notna().all(axis=1)
        mart.append(computed[keep])
    return bars.reset_index(drop=True), pd.concat(mart, ignore_index=True) if mart else pd.DataFrame()


def compare_with_reference(
    settings: ConnectionSettings, features: list[str], known_missing: frozenset[tuple[str, date]] = frozenset()
) -> list[str]:
    """Differences between the built marts and the pandas reference computed from raw and the (symbol, session)
    pairs recorded in the known_missing_sessions seed (empty: none)."""
    raw = query(settings, "select * from raw.ibkr_bars")
    bars, mart = reference_marts(raw, features)
    problems = []
    stored = query(settings, "select * from intermediate.int_bars_deduplicated order by symbol, session_date")
    keys = ["symbol", "session_date"]
    if stored[keys].values.tolist() != bars[keys].values.tolist():
        problems.append(f"int_bars_deduplicated keys differ: {len(stored)} rows, reference {len(bars)}")
    else:
        for column in ("open", "high", "low", "close", "volume", "load_id", "batch_id"):
            if not (stored[column].to_numpy() == bars[column].to_numpy()).all():
                problems.append(f"int_bars_deduplicated.{column} is not the latest final version's")
    built = query(settings, "select * from marts.training_bars order by symbol, session_date")
    if built[keys].values.tolist() != mart[keys].values.tolist():
        extra = set(map(tuple, built[keys].values.tolist())) - set(map(tuple, mart[keys].values.tolist()))
        missing = set(map(tuple, mart[keys].values.tolist())) - set(map(tuple, built[keys].values.tolist()))
        problems.append(
            f"training_bars rows differ: {len(built)} rows, reference {len(mart)}; "
            f"extra {sorted(extra)[:5]}, missing {sorted(missing)[:5]}"
        )
    else:
        for column in ["open", "high", "low", "close", "volume", *features, "target_log_return_next"]:
            got, want = built[column].astype(float).to_numpy(), mart[column].astype(float).to_numpy()
            if not np.array_equal(np.isnan(got), np.isnan(want)) or not np.allclose(
                got, want, rtol=0, atol=TOLERANCE, equal_nan=True
            ):
                worst = int(np.nanargmax(np.abs(got - want))) if len(got) else 0
                problems.append(
                    f"training_bars.{column} differs from the reference (e.g. {tuple(built.loc[worst, keys])}: "
                    f"{got[worst]!r} vs {want[worst]!r})"
                )
    problems += _compare_coverage(settings, raw, bars, mart, known_missing)
    return problems


def _compare_coverage(
    settings: ConnectionSettings,
    raw: pd.DataFrame,
    bars: pd.DataFrame,
    mart: pd.DataFrame,
    known_missing: frozenset[tuple[str, date]],
):
    """marts.symbol_coverage against counts from raw, the reference bars and the reference mart."""
    coverage = query(settings, "select * from marts.symbol_coverage").set_index("symbol")
    readjusted = query(
        settings, "select symbol, count(*) as n from raw.load_batches where readjustment_factor is not null group by 1"
    ).set_index("symbol")["n"]
    sessions = [day.date() for day in sessions_in_range(FIRST_SESSION, LAST_SESSION)]
    expected = pd.DataFrame(
        index=pd.Index(sorted(raw["symbol"].unique()), name="symbol"),
        data={
            "sessions_present": bars.groupby("symbol").size(),
            "rows_landed": _final_rows(raw).groupby("symbol").size(),
            "training_rows": mart.groupby("symbol").size() if len(mart) else pd.Series(dtype=int),
            "readjustments": readjusted,
            "corrected_sessions": _corrected_sessions(_final_rows(raw)),
            "sessions_expected": bars.groupby("symbol")["session_date"].agg(
                lambda dates: sum(dates.min() <= day <= dates.max() for day in sessions)
            ),
            "sessions_known_missing": pd.Series(
                {
                    symbol: sum(
                        known == symbol and dates.min() <= day <= dates.max() and day not in set(dates)
                        for known, day in known_missing
                    )
                    for symbol, dates in bars.groupby("symbol")["session_date"]
                },
                dtype=int,
            ),
        },
    )
    expected["excluded_rows_not_final"] = (~_is_final(raw)).groupby(raw["symbol"]).sum()
    expected = expected.fillna(0).astype(int).sort_index()
    got = coverage.reindex(expected.index)[expected.columns].fillna(-1).astype(int)
    if set(coverage.index) != set(expected.index) or not got.equals(expected):
        return [
            f"symbol_coverage differs from the counts:\n{got.compare(expected, result_names=('built', 'reference'))}"
        ]
    return []


def _corrected_sessions(final: pd.DataFrame) -> pd.Series:
    """Per symbol, the sessions whose final versions disagree on a value (a null and a number disagree too)."""
    values = ["open", "high", "low", "close", "volume", "wap", "bar_count"]
    versions = final[["symbol", "session_date", *values]].astype({"bar_count": float}).drop_duplicates()
    per_session = versions.groupby(["symbol", "session_date"]).size()
    return (per_session > 1).groupby(level="symbol").sum()


def compare_with_full_refresh(
    settings: ConnectionSettings,
    series: dbt_harness.ScratchSeries,
    variables: tuple[str, str],
    project_dir: Path = dbt_harness.REPO_ROOT,
) -> list[str]:
    """Digests of every incremental model and mart, here (a database of ``series``) and in a copy rebuilt with
    --full-refresh (the series' ``_full`` database: every copy has one name, so dbt parses the project once)."""
    incremental = dbt_harness.warehouse_digests(settings)
    with series.database(template=settings.dbname, suffix="_full") as copy:
        project = series.project(copy, project_dir=project_dir)
        result = project.run("build", "--full-refresh", *variables, *dbt_harness.SKIP_FIXED_INPUTS)
        if result.returncode != 0:
            return [f"dbt build --full-refresh failed: {sorted(result.failed())}\n{result.output[-3000:]}"]
        full = dbt_harness.warehouse_digests(copy)
    return [
        f"{name}: incremental {incremental[name]} != full refresh {full[name]}"
        for name in incremental
        if incremental[name] != full[name]
    ]


# --- running -------------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    problems: list[str]
    builds: int
    seconds: float
    bars_rebuilt: list[int] = field(default_factory=list)
    """Rows int_bars_deduplicated rebuilt in each dbt command after the first (small: the incremental path)."""
    ticker_change_clean_ups: int = 0
    """Builds that failed ONE_SYMBOL_PER_CONTRACT after a ticker change, each followed by the admin's clean-up."""

    @property
    def failed(self) -> bool:
        return bool(self.problems)


def run_sequence(
    events: Sequence[Event],
    *,
    cluster: ConnectionSettings,
    seed: int,
    missing_sessions_threshold: int = 0,
    full_refresh_every_build: bool = False,
    initial_watchlist: Sequence[str] = ("SA", "SB"),
    series: dbt_harness.ScratchSeries | None = None,
) -> Outcome:
    """Apply ``events`` to a fresh warehouse; compare after every green build and at the end.

    Besides the load events, ``('build',)`` runs ``dbt build``, ``('run',)`` runs ``dbt run`` alone (no data test
    holds the mart back, so a hole reaches it and is filled in later), ``('build_full',)`` runs
    ``dbt build --full-refresh`` in the middle of the history.

    ``series``: where the warehouse and its full-refresh copies are made (on its cluster; ``cluster`` is then
    ignored), shared by sequences run one after another so that dbt parses the project once for them all; by
    default one of the sequence's own.
    """
    if series is None:
        with TemporaryDirectory(prefix="warehouse_months_") as tmp:
            series = dbt_harness.ScratchSeries.new(cluster, Path(tmp), "months")
            return run_sequence(
                events,
                cluster=cluster,
                seed=seed,
                missing_sessions_threshold=missing_sessions_threshold,
                full_refresh_every_build=full_refresh_every_build,
                initial_watchlist=initial_watchlist,
                series=series,
            )
    started = time.perf_counter()
    clean_ups = 0
    sessions = tuple(day.date() for day in sessions_in_range(FIRST_SESSION, LAST_SESSION))
    features = list(read_mart_schema().feature_names)
    variables = dbt_vars(missing_sessions_threshold)
    problems: list[str] = []
    bars_rebuilt: list[int] = []
    builds = 0
    with series.database() as settings:
        dbt_harness.prepare_raw(settings)
        loader = Loader(settings, Market(seed, sessions), list(initial_watchlist))
        loader.daily_load()
        # The same copy for every sequence of the series (its seeds as in the repository again): dbt's partial
        # parsing notices what a sequence changed in it.
        project_dir = dbt_harness.copy_project(series.work_dir / "project", {})
        project = series.project(settings, project_dir=project_dir)

        def build(label: str, *command: str, check_full: bool, cleaned_up: bool = False) -> None:
            nonlocal builds, clean_ups
            builds += 1
            skipped = dbt_harness.SKIP_FIXED_INPUTS if builds > 1 else dbt_harness.SKIP_UNIT_TESTS
            if loader.seed_changed:  # the admin recorded a halt: the next command loads the seed again
                loader.seed_changed = False
                dbt_harness.copy_project(project_dir, {KNOWN_MISSING_SEED: loader.market.known_missing_csv()})
                if command[0] == "build":  # make dbt-build: dbt build with the seeds
                    skipped = dbt_harness.SKIP_UNIT_TESTS
                else:  # docs/warehouse.md: after dbt run && dbt test, run dbt seed first
                    seeded = project.run("seed", "--select", KNOWN_MISSING_SEED.removesuffix(".csv"), *variables)
                    if seeded.returncode != 0:
                        problems.append(f"{label}: dbt seed failed: {sorted(seeded.failed())}\n"
                                        f"{seeded.output[-3000:]}")  # fmt: skip
                        return
            result = project.run(*command, *variables, *skipped)
            if builds > 1 and "int_bars_deduplicated" in result.by_name():
                bars_rebuilt.append(result.by_name()["int_bars_deduplicated"]["adapter_response"].get("rows_affected"))
            failed = result.failed()
            shared = shared_contracts(settings)
            unexpected = {name for name in failed if "no_missing_sessions" not in name} - (
                {ONE_SYMBOL_PER_CONTRACT} if shared else set()
            )
            if result.returncode != 0 and (unexpected or not failed):
                problems.append(f"{label}: dbt {command[0]} failed: {sorted(failed)}\n{result.output[-3000:]}")
                return
            if shared and command[0] == "build" and ONE_SYMBOL_PER_CONTRACT not in failed:
                problems.append(f"{label}: {ONE_SYMBOL_PER_CONTRACT} did not fail, and raw has con_ids "
                                f"{sorted(shared)} under two symbols on one session")  # fmt: skip
                return
            if ONE_SYMBOL_PER_CONTRACT in failed and cleaned_up:
                problems.append(f"{label}: {ONE_SYMBOL_PER_CONTRACT} still fails")
                return
            if ONE_SYMBOL_PER_CONTRACT in failed:  # a ticker change: the admin's clean-up, and a full refresh
                clean_ups += 1
                loader.clean_up_ticker_changes()
                label = f"{label}, after the ticker change's clean-up"
                build(label, "build", "--full-refresh", check_full=check_full, cleaned_up=True)
                return
            if failed and label == "final build":  # settle() landed every session a hole left out
                problems.append(f"{label}: {sorted(failed)} failed after every missing bar landed")
                return
            if failed:  # a hole: the models after the failing test wait for the missing session, as they should
                return
            recorded = loader.market.known_missing()
            problems.extend(f"{label}: {p}" for p in compare_with_reference(settings, features, recorded))
            if check_full:
                found = compare_with_full_refresh(settings, series, variables, project_dir)
                problems.extend(f"{label}: {p}" for p in found)

        build("first build", "build", check_full=False)
        for position, event in enumerate(events):
            if problems:
                break
            label = f"{event[0]} (event {position})"
            if event[0] == "build":
                build(label, "build", check_full=full_refresh_every_build)
            elif event[0] == "run":
                build(label, "run", check_full=full_refresh_every_build)
            elif event[0] == "build_full":
                build(label, "build", "--full-refresh", check_full=False)
            else:
                loader.apply(event)
                problems.extend(f"{label}: {complaint}" for complaint in loader.complaints)
                loader.complaints.clear()
        if not problems:
            loader.settle()
            build("final build", "build", check_full=True)
    return Outcome(problems, builds, time.perf_counter() - started, bars_rebuilt, clean_ups)


def shrink(events: list[Event], fails, budget_seconds: float) -> list[Event]:
    """A shorter sublist of ``events`` that still fails: delta debugging by chunks, then single events, until the
    list cannot shrink further or ``budget_seconds`` have passed (each try replays a whole sequence)."""
    deadline = time.monotonic() + budget_seconds
    chunk = max(1, len(events) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        position, shrunk = 0, False
        while position < len(events) and time.monotonic() < deadline:
            candidate = events[:position] + events[position + chunk :]
            if candidate and fails(candidate):
                events, shrunk = candidate, True
            else:
                position += chunk
        if not shrunk:
            chunk //= 2
    return events


def _event_list(text: str) -> list[Event]:
    """``--replay``'s event list, a Python literal such as ``"[('advance', 5), ('build',)]"``, checked before anything
    starts: a string that is no literal, or an unknown event, ended a replay in a traceback (the latter mid-sequence)."""
    try:
        events = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise argparse.ArgumentTypeError(
            f"expected a Python list of events such as \"[('advance', 5), ('build',)]\", got {text!r}"
        ) from None
    if not isinstance(events, list | tuple) or not events:
        raise argparse.ArgumentTypeError(f"expected a non-empty list of events, got {text!r}")
    for event in events:
        if not isinstance(event, list | tuple) or not event or event[0] not in EVENT_KINDS:
            raise argparse.ArgumentTypeError(
                f"unknown event {event!r}: an event is a tuple (kind, *arguments), kind one of {sorted(EVENT_KINDS)}"
            )
    return [tuple(event) for event in events]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=positive_int, default=10, help="random sequences to run (default 10)")
    parser.add_argument("--events", type=positive_int, default=40, help="events per sequence (default 40)")
    parser.add_argument("--seed", type=int, default=1, help="first seed; sequence k uses seed + k")
    parser.add_argument(
        "--replay", type=_event_list, help="run this event list (a Python literal) with --seed instead of random ones"
    )
    parser.add_argument(
        "--missing-sessions-threshold",
        type=int,
        help="dbt var missing_sessions_threshold (default: 0 for two sequences in three, 3 for the others, so that "
        "holes reach the mart)",
    )
    parser.add_argument("--full-refresh-every-build", action="store_true", help="compare after every build")
    parser.add_argument("--shrink-minutes", type=float, default=20, help="time for shrinking a failure (0: none)")
    parser.add_argument(
        "--postgres-bin",
        type=Path,
        help="run on a throw-away server from this PostgreSQL's programs (e.g. /usr/lib/postgresql/15/bin) "
        "instead of the embedded warehouse",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if args.postgres_bin:
        with external_server(args.postgres_bin) as server:
            with connect(server.superuser()) as conn:
                logger.info("on %s", conn.execute("select version()").fetchone()[0])
            return run_sequences(args, server.superuser())
    return run_sequences(args, embedded.start())


def run_sequences(args: argparse.Namespace, cluster: ConnectionSettings) -> int:
    """Run (and shrink) the sequences ``args`` ask for against the server ``cluster`` (a superuser's settings)."""
    seeds = [args.seed] if args.replay else range(args.seed, args.seed + args.sequences)
    with TemporaryDirectory(prefix="warehouse_months_") as tmp:
        # Every sequence (and every replay while shrinking) in databases of one name: dbt parses the project once.
        series = dbt_harness.ScratchSeries.new(cluster, Path(tmp), "months")
        failures = _run_sequences(args, seeds, series)
    logger.info("%d of %d sequences failed%s", len(failures), len(seeds), f": seeds {failures}" if failures else "")
    return 1 if failures else 0


def _run_sequences(args: argparse.Namespace, seeds: Sequence[int], series: dbt_harness.ScratchSeries) -> list[int]:
    """The seeds of the sequences that failed."""
    failures = []
    for seed in seeds:
        rng = random.Random(seed)
        threshold = (
            rng.choice([0, 0, 3]) if args.missing_sessions_threshold is None else args.missing_sessions_threshold
        )
        events = list(args.replay) if args.replay else random_events(rng, args.events)

        def replay(candidate: list[Event], seed: int = seed, threshold: int = threshold) -> Outcome:
            return run_sequence(
                candidate,
                cluster=series.cluster,
                seed=seed,
                missing_sessions_threshold=threshold,
                full_refresh_every_build=args.full_refresh_every_build,
                series=series,
            )

        outcome = replay(events)
        logger.info("seed %d (missing_sessions_threshold %d): %d events, %d builds (%d after a ticker change's "
                    "clean-up), %.0f s: %s", seed, threshold, len(events), outcome.builds,
                    outcome.ticker_change_clean_ups, outcome.seconds, "FAILED" if outcome.failed else "ok")  # fmt: skip
        if outcome.failed:
            failures.append(seed)
            for problem in outcome.problems:
                logger.info("  %s", problem)
            if args.shrink_minutes > 0:
                shrunk = shrink(events, lambda candidate: replay(candidate).failed, args.shrink_minutes * 60)
                logger.info("seed %d shrunk to %d events (--seed %d --missing-sessions-threshold %d --replay):\n%r",
                            seed, len(shrunk), seed, threshold, shrunk)  # fmt: skip
                for problem in replay(shrunk).problems:
                    logger.info("  %s", problem)
    return failures


if __name__ == "__main__":
    sys.exit(main())
