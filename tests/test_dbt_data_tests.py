"""Each dbt data test fails on the bad data it exists to catch, and passes without it.

A clean database is built once per module; every case copies it (CREATE DATABASE ... TEMPLATE), lands a
few bad raw rows the way ingest would (raw has no CHECK constraints: the dbt tests are the guard), runs
`dbt build` (every data test; the seeds the copy holds as loaded and dbt's unit tests left out) and checks which
tests failed in run_results.json, and what their failure rows say. Every case's copy has the same name and the
cases share dbt's target directory, so dbt parses the project once (its partial parsing starts over when the
profile's database changes).
"""

from __future__ import annotations

import re
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from devtools import dbt_harness, scratch_database, synthetic_bars
from ingest.raw_tables import LoadBatch
from warehouse_db import connect
from warehouse_db.settings import ConnectionSettings

# About 140 s: a dbt build per case. `make test-fast` leaves this module out.
pytestmark = pytest.mark.slow

START, END = "2024-01-01", "2024-06-28"
SYMBOLS = ["SA", "SB", "SC"]

NO_MISSING_SESSIONS = "int_bars_deduplicated_no_missing_sessions"
ANALYSES = Path(__file__).parents[1] / "warehouse" / "analyses"
KNOWN_MISSING_SEED = "known_missing_sessions.csv"
KNOWN_MISSING_HEADER = "symbol,session_date,reason\n"
KNOWN_MISSING_TESTS = {
    "known_missing_sessions_one_row_per_symbol_and_session",
    "known_missing_sessions_session_date_is_exchange_session",
    "known_missing_sessions_reason_says_why",
    "known_missing_sessions_symbol_as_the_warehouse_spells_it",
    "not_null_known_missing_sessions_symbol",
    "not_null_known_missing_sessions_session_date",
    "not_null_known_missing_sessions_reason",
}
VERIFIED_SEED = "verified_price_moves.csv"
VERIFIED_HEADER = "symbol,session_date,reason\n"
VERIFIED_TESTS = {
    "verified_price_moves_one_row_per_symbol_and_session",
    "verified_price_moves_session_date_is_exchange_session",
    "verified_price_moves_reason_says_why",
    "verified_price_moves_symbol_as_the_warehouse_spells_it",
    "not_null_verified_price_moves_symbol",
    "not_null_verified_price_moves_session_date",
    "not_null_verified_price_moves_reason",
}
EXCHANGE_SESSION = "stg_ibkr__bars_session_date_is_exchange_session"
SYMBOL_CLEAN = "stg_ibkr__bars_symbol_is_clean_text"
SYMBOL_PATTERN = "stg_ibkr__bars_symbol_matches_pattern"
LOW_NOT_ABOVE_HIGH = "stg_ibkr__bars_low_not_above_high"
OPEN_WITHIN_LOW_HIGH = "stg_ibkr__bars_open_within_low_high"
CLOSE_WITHIN_LOW_HIGH = "stg_ibkr__bars_close_within_low_high"
OHLC_TESTS = {LOW_NOT_ABOVE_HIGH, OPEN_WITHIN_LOW_HIGH, CLOSE_WITHIN_LOW_HIGH}
NO_FUTURE_SESSION = "stg_ibkr__bars_no_future_session"
DEDUPED_UNIQUE = "int_bars_deduplicated_one_row_per_bar"
UNADJUSTED_SPLIT = "int_bars_deduplicated_no_unadjusted_splits"
BAD_TICKS = "int_bars_deduplicated_no_bad_ticks"
BAD_INTRADAY = "int_bars_deduplicated_no_bad_intraday_prices"
ONE_SYMBOL_PER_CONTRACT = "int_bars_deduplicated_one_symbol_per_contract"
BAR_COUNT_NOT_NEGATIVE = "stg_ibkr__bars_bar_count_not_negative"
WAP_WITHIN_LOW_HIGH = "stg_ibkr__bars_wap_within_low_high"
PRICES_POSITIVE = "stg_ibkr__bars_prices_positive_and_finite"
VOLUME_NOT_NEGATIVE = "stg_ibkr__bars_volume_finite_not_negative"
OTHER_TEXT_TESTS = {
    *(
        f"stg_ibkr__bars_{column}_is_clean_text"
        for column in ("exchange", "currency", "source", "bar_size", "what_to_show")
    ),
    *(f"stg_ibkr__load_batches_{column}_is_clean_text" for column in ("source", "bar_size", "what_to_show")),
}
# The batch manifest (raw.load_batches) carries the same symbol, and the same test guards it there.
BATCH_SYMBOL_CLEAN = "stg_ibkr__load_batches_symbol_is_clean_text"
# Two tests only warn: the build goes on, and `dbt build` says what it saw.
SESSION_DATE_MATCHES_SOURCE = "stg_ibkr__bars_session_date_matches_source"
ERROR_MESSAGE_CLEAN = "stg_ibkr__load_batches_error_message_is_clean_text"
ENCODING_TESTS = {SYMBOL_CLEAN, SYMBOL_PATTERN, BATCH_SYMBOL_CLEAN}
MART_MODELS = ("int_bars_featurized", "training_bars", "walk_forward_folds")


@pytest.fixture(scope="module")
def base(embedded_cluster: ConnectionSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    cluster = embedded_cluster
    settings = scratch_database.create_database(cluster, "test_dbt_data")
    dbt_harness.prepare_raw(settings)
    frame = synthetic_bars.generate_bars(synthetic_bars.SyntheticConfig(SYMBOLS, START, END, seed=3))
    with connect(settings) as conn:
        synthetic_bars.copy_bars(conn, frame)
    result = dbt_harness.DbtProject(settings, tmp_path_factory.mktemp("dbt_data_base")).run("build")
    case_dir = tmp_path_factory.mktemp("dbt_data_cases")
    case_database = f"test_dbt_case_{uuid.uuid4().hex[:10]}"
    yield {"cluster": cluster, "settings": settings, "frame": frame, "result": result, "case_dir": case_dir,
           "case_database": case_database}  # fmt: skip
    scratch_database.drop_database(settings)


@dataclass
class Case:
    name: str
    rows: Callable[[pd.DataFrame], pd.DataFrame]
    """Bad raw rows to land, built from the clean frame."""
    fails: set[str]
    """Tests that must fail."""
    may_also_fail: set[str] = field(default_factory=set)
    warns: set[str] = field(default_factory=set)
    """Tests of severity warn that must warn (they never fail the build)."""
    failed_batches: Callable[[], list[LoadBatch]] = list
    """raw.load_batches rows of requests that failed (they land no bar)."""


def relanded(frame: pd.DataFrame, of_symbol: str, session: str, **changes: object) -> pd.DataFrame:
    """A re-delivery (new load and batch, landed now) of one clean bar, with some values changed."""
    row = frame[(frame["symbol"] == of_symbol) & (frame["session_date"] == date.fromisoformat(session))].copy()
    assert len(row) == 1
    for column, value in changes.items():
        row[column] = value(row) if callable(value) else value
    row["load_id"] = row["batch_id"] = uuid.uuid4()
    row["ingested_at"] = datetime.now(UTC)
    return row


def on_day(frame: pd.DataFrame, symbol: str, day: str, template_session: str = "2024-03-15") -> pd.DataFrame:
    """A bar dated ``day`` (00:00 New York), values copied from a clean bar."""
    row = relanded(frame, SYMBOLS[0], template_session, symbol=symbol)
    row["session_date"] = date.fromisoformat(day)
    row["bar_time"] = pd.Timestamp(day).tz_localize("America/New_York")
    return row


def saturday_bar_and_a_source_date_that_disagrees(frame: pd.DataFrame) -> pd.DataFrame:
    """A bar dated on a Saturday (fails); SB's bar of a Friday re-delivered with the source's session_date one day
    earlier than its bar_time's (warns: dbt dates a bar by its bar_time in the exchange's time zone); and a weekly
    bar dated by its Saturday and a monthly one by the 1st, a Saturday (pass: their dates only name their period)."""
    disagreeing = relanded(frame, "SB", "2024-03-15", session_date=date(2024, 3, 14))
    week = on_day(frame, "SB", "2024-03-16").assign(bar_size="1 week")
    month = on_day(frame, "SC", "2024-06-01").assign(bar_size="1 month")
    return pd.concat([on_day(frame, "SA", "2024-03-16"), disagreeing, week, month])


def failed_batch(symbol: str, error_message: str) -> LoadBatch:
    now = datetime.now(UTC)
    return LoadBatch(batch_id=uuid.uuid4(), load_id=uuid.uuid4(), source="ibkr", symbol=symbol, bar_size="1 day",
                     what_to_show="TRADES", use_rth=True, status="failed", row_count=0, started_at=now,
                     finished_at=now, error_code=162, error_message=error_message)  # fmt: skip


HALT, OTHER_SESSION = date(2024, 2, 15), date(2024, 3, 5)
"""The session new_symbol_with_gap leaves out (a Thursday), and another one."""


def new_symbol_with_gap(frame: pd.DataFrame, symbol: str = "SGAP", missing: tuple[date, ...] = (HALT,)) -> pd.DataFrame:
    config = synthetic_bars.SyntheticConfig([symbol], "2024-01-02", "2024-03-28", seed=5, ingested_at=datetime.now(UTC))
    bars = synthetic_bars.generate_bars(config)
    return bars[~bars["session_date"].isin(missing)]


SPLIT_SESSION, REVERSE_SPLIT_SESSION = "2024-04-15", "2024-05-15"


def split_not_readjusted(frame: pd.DataFrame) -> pd.DataFrame:
    """SB's bars from SPLIT_SESSION on, re-delivered after a 2-for-1 split, and SC's from REVERSE_SPLIT_SESSION on,
    after a 1-for-4 reverse split; the earlier ones stay in the old units."""

    def redelivered(symbol: str, session: str, price_factor: float) -> pd.DataFrame:
        rows = frame[(frame["symbol"] == symbol) & (frame["session_date"] >= date.fromisoformat(session))].copy()
        for column in ("open", "high", "low", "close", "wap"):
            rows[column] = rows[column] * price_factor
        rows["volume"] = rows["volume"] / price_factor
        rows["load_id"] = rows["batch_id"] = uuid.uuid4()
        rows["ingested_at"] = datetime.now(UTC)
        return rows

    return pd.concat([redelivered("SB", SPLIT_SESSION, 1 / 2), redelivered("SC", REVERSE_SPLIT_SESSION, 4)])


SESSION_LEFT_OUT = "2024-03-15"
"""The session IBKR's re-adjusted history of SA left out in split_history_gaps."""


def split_history_gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """Two ways a big split leaves old units behind. SA: a 10-for-1 split, whose re-adjusted history (prices a tenth,
    volumes 10x) lacks SESSION_LEFT_OUT, which keeps its old bar: 10x off for one session and back. SC: a 1-for-20
    reverse split from REVERSE_SPLIT_SESSION on, the earlier bars not re-adjusted, and the stock falls 70% over the
    next three sessions and stays there (still 6x the old units)."""
    sa = [day for day in sessions_from(frame, "SA", START) if day != SESSION_LEFT_OUT]
    sc = sessions_from(frame, "SC", REVERSE_SPLIT_SESSION)
    fall = [1.0, 0.7, 0.45, 0.3]
    return pd.concat([scaled(frame, "SA", sa, 0.1, 10),
                      *(scaled(frame, "SC", [day], 20 * f, 0.05) for day, f in zip(sc[:4], fall, strict=True)),
                      scaled(frame, "SC", sc[4:], 20 * fall[-1], 0.05)])  # fmt: skip


PRICE_COLUMNS = ("open", "high", "low", "close", "wap")


def scaled(
    frame: pd.DataFrame, symbol: str, sessions: list[str], price_factor: float, volume_factor: float = 1.0
) -> pd.DataFrame:
    """``symbol``'s bars of ``sessions`` re-delivered with every price times ``price_factor``."""
    days = [date.fromisoformat(session) for session in sessions]
    rows = frame[(frame["symbol"] == symbol) & frame["session_date"].isin(days)].copy()
    assert len(rows) == len(days)
    for column in PRICE_COLUMNS:
        rows[column] = rows[column] * price_factor
    rows["volume"] = rows["volume"] * volume_factor
    rows["load_id"] = rows["batch_id"] = uuid.uuid4()
    rows["ingested_at"] = datetime.now(UTC)
    return rows


def sessions_from(frame: pd.DataFrame, symbol: str, first: str) -> list[str]:
    days = frame.loc[(frame["symbol"] == symbol) & (frame["session_date"] >= date.fromisoformat(first)), "session_date"]
    return [str(day) for day in sorted(days)]


SPIKE, ALTERNATING, DIP = "2024-03-15", ("2024-04-01", "2024-04-03"), "2024-05-15"


def bad_ticks(frame: pd.DataFrame) -> pd.DataFrame:
    """Bad ticks, volume as it was: SA's close 1000x on SPIKE and back the next session; SB 1000x every other
    session (ALTERNATING, the session between them as it was) and, later, 1/1000 on DIP and back."""
    return pd.concat([scaled(frame, "SA", [SPIKE], 1000), scaled(frame, "SB", list(ALTERNATING), 1000),
                      scaled(frame, "SB", [DIP], 1e-3)])  # fmt: skip


LASTING = ("2024-04-16", "2024-05-14")
"""The first session of SA's 2-session spike and of SB's 3-session dip."""


def spikes_lasting_sessions(frame: pd.DataFrame) -> pd.DataFrame:
    """A vendor's bad batch, volume as it was: SA's bars 1000x for two sessions from LASTING[0], SB's 1/1000 for
    three from LASTING[1]; each session after them as it was."""
    return pd.concat([scaled(frame, "SA", sessions_from(frame, "SA", LASTING[0])[:2], 1000),
                      scaled(frame, "SB", sessions_from(frame, "SB", LASTING[1])[:3], 1e-3)])  # fmt: skip


INTRADAY = "2024-04-16"


def bad_intraday_prices(frame: pd.DataFrame) -> pd.DataFrame:
    """Bad prints beside good closes on INTRADAY: SA's high 1000x its close, SB's low 1/1000 of its close (above
    staging's 1e-8), SC's open and high 1000x its close (a bad opening print drags the high along)."""
    return pd.concat([relanded(frame, "SA", INTRADAY, high=lambda r: r["close"] * 1000),
                      relanded(frame, "SB", INTRADAY, low=lambda r: r["close"] / 1000),
                      relanded(frame, "SC", INTRADAY, open=lambda r: r["close"] * 1000,
                               high=lambda r: r["close"] * 1000)])  # fmt: skip


def real_extreme_moves(frame: pd.DataFrame) -> pd.DataFrame:
    """Moves a real stock makes, on heavy volume (10x): SA triples on 2024-03-15 and stays there; SB gains 300% on
    2024-04-01 and loses 70% the next session, 20% above where it started, and stays; SC jumps 6x on 2024-05-15 and
    stays (a buyout)."""
    sb = sessions_from(frame, "SB", "2024-04-02")
    return pd.concat([scaled(frame, "SA", ["2024-03-15"], 3, 10), scaled(frame, "SA", sessions_from(frame, "SA", "2024-03-18"), 3),
                      scaled(frame, "SB", ["2024-04-01"], 4, 10), scaled(frame, "SB", sb[:1], 1.2, 10),
                      scaled(frame, "SB", sb[1:], 1.2),
                      scaled(frame, "SC", ["2024-05-15"], 6, 10), scaled(frame, "SC", sessions_from(frame, "SC", "2024-05-16"), 6)])  # fmt: skip


SQUEEZE, FADE = "2024-04-16", [4.1, 3.1, 1.65]


def real_squeezes_and_splits(frame: pd.DataFrame) -> pd.DataFrame:
    """Real moves near both rules' thresholds, on heavy volume where the price moves. SA: a spike and fade inside
    one session (2024-03-15: high 4.5x the open and the close); a penny squeeze on SQUEEZE (open 10% up, high 6.6x
    and close 5.5x the previous close) that gives back 70% of its peak over three sessions (FADE) and stays 65% up.
    SB: a biotech's +300% then -70%. SC: a flush inside one session (2024-03-15: low 1/4.5 of the open and the
    close), and a 1:10 reverse split on 2024-05-15 served as IBKR serves it, the whole history re-adjusted
    (earlier prices 10x, volumes a tenth), the stock 40% lower from the split session on."""
    sa = sessions_from(frame, "SA", SQUEEZE)
    squeeze = relanded(frame, "SA", SQUEEZE, open=lambda r: r["open"] * 1.1,
                       high=lambda r: r["close"] * 5.5 * 1.2, close=lambda r: r["close"] * 5.5,
                       volume=lambda r: r["volume"] * 10)  # fmt: skip
    squeeze["low"] = squeeze[["low", "open"]].min(axis=1)
    # Volume falls as it fades, and no step looks like a split nobody re-adjusted (a 3-for-2 is a fall of a third).
    fade = [
        scaled(frame, "SA", [day], price, volume) for day, price, volume in zip(sa[1:4], FADE, [8, 4, 2], strict=True)
    ]
    sb = sessions_from(frame, "SB", "2024-04-02")
    sc = sessions_from(frame, "SC", START)
    split = sc.index(sessions_from(frame, "SC", "2024-05-15")[0])
    return pd.concat([relanded(frame, "SA", "2024-03-15", high=lambda r: max(r["open"].iloc[0], r["close"].iloc[0]) * 4.5),
                      squeeze, *fade, scaled(frame, "SA", sa[4:], FADE[-1]),
                      scaled(frame, "SB", ["2024-04-01"], 4, 10), scaled(frame, "SB", sb[:1], 1.2, 10),
                      scaled(frame, "SB", sb[1:], 1.2),
                      scaled(frame, "SC", [s for s in sc[:split] if s != "2024-03-15"], 10, 0.1),
                      relanded(frame, "SC", "2024-03-15", open=lambda r: r["open"] * 10, high=lambda r: r["high"] * 10,
                               close=lambda r: r["close"] * 10, wap=lambda r: r["wap"] * 10,
                               low=lambda r: min(r["open"].iloc[0], r["close"].iloc[0]) / 4.5,
                               volume=lambda r: r["volume"] / 10),
                      scaled(frame, "SC", sc[split:], 6, 0.1)])  # fmt: skip


PENNY_FLUSH, PENNY_DIP = "2024-04-16", "2024-05-15"


def in_cents_at_five_cents(frame: pd.DataFrame, symbol: str, bars: dict[str, tuple[float, ...]]) -> pd.DataFrame:
    """``symbol``'s whole history as a user's CSV file from a vendor that gives cents: the stock at about 5 cents
    (an OTC name), prices rounded to cents (never below 0.01), no wap, bar count or contract id; ``bars`` sets the
    true open, high, low, close (and a volume factor) of some sessions before the rounding."""
    rows = frame[frame["symbol"] == symbol].copy()
    factor = 0.05 / rows["close"].mean()
    for column in ("open", "high", "low", "close"):
        rows[column] = rows[column] * factor
    rows["volume"] = (rows["volume"] / factor).round()
    for session, (open_, high, low, close, volume) in bars.items():
        at = rows["session_date"] == date.fromisoformat(session)
        rows.loc[at, ["open", "high", "low", "close"]] = [open_, high, low, close]
        rows.loc[at, "volume"] *= volume
    for column in ("open", "high", "low", "close"):
        rows[column] = rows[column].round(2).clip(lower=0.01)
    rows = rows.assign(wap=None, bar_count=None, con_id=None, source="csv", ingested_at=datetime.now(UTC))
    rows["load_id"] = rows["batch_id"] = uuid.uuid4()
    return rows


def real_penny_moves_in_cents_and_a_halt(frame: pd.DataFrame) -> pd.DataFrame:
    """Real moves whose ratios only the rounding to cents takes past 5x. SA: a flush inside PENNY_FLUSH (true open
    0.056, low 0.0149, close 0.056: 3.8x) stated as 0.06 and 0.01 (6x). SB: a close of 0.055 that falls to 0.0149
    on PENNY_DIP (3.7x) and is back at 0.05 two sessions later, stated as 0.06, 0.01 and 0.05 (6x and back). SGAP
    (new): halted all day on HALT (recorded in the seed), it resumes 6x up on 10x the volume and stays (a buyout)."""
    sb = sessions_from(frame, "SB", PENNY_DIP)
    dip = {sb[0]: (0.056, 0.056, 0.014, 0.0149, 10), sb[1]: (0.015, 0.04, 0.015, 0.035, 5),
           sb[2]: (0.035, 0.051, 0.035, 0.05, 3)}  # fmt: skip
    day_before = str(frame.loc[(frame["symbol"] == "SB") & (frame["session_date"] < date.fromisoformat(sb[0])),
                               "session_date"].max())  # fmt: skip
    gap = new_symbol_with_gap(frame)
    after = gap["session_date"] > HALT
    gap.loc[after, list(PRICE_COLUMNS)] *= 6
    gap.loc[gap["session_date"] == gap.loc[after, "session_date"].min(), "volume"] *= 10
    return pd.concat([in_cents_at_five_cents(frame, "SA", {PENNY_FLUSH: (0.056, 0.058, 0.0149, 0.056, 10)}),
                      in_cents_at_five_cents(frame, "SB", {day_before: (0.0555, 0.056, 0.054, 0.0555, 1), **dip}),
                      gap])  # fmt: skip


def below_a_cent(frame: pd.DataFrame, symbol: str, bad: dict[str, float]) -> pd.DataFrame:
    """``symbol``'s whole history as IBKR states an OTC stock at about 0.4 cents: four decimals, never a whole
    number of cents; the closes of the sessions in ``bad`` (and the whole bar) times its factor."""
    rows = frame[frame["symbol"] == symbol].copy()
    factor = 0.004 / rows["close"].mean()
    for column in PRICE_COLUMNS:
        rows[column] = rows[column] * factor
    for session, times in bad.items():
        at = rows["session_date"] == date.fromisoformat(session)
        rows.loc[at, list(PRICE_COLUMNS)] *= times
    for column in PRICE_COLUMNS:
        rows[column] = rows[column].round(4)
    rows["ingested_at"] = datetime.now(UTC)
    rows["load_id"] = rows["batch_id"] = uuid.uuid4()
    return rows


def bad_prices_below_a_cent(frame: pd.DataFrame) -> pd.DataFrame:
    """Bad prices of stocks at 0.4 cents, which half a cent of rounding for every price hid: SA's bar 1/10 on SPIKE
    (0.0004: 0.004 less half a cent is below 0, so no fall was ever judged) and SB's 10x on DIP (about 0.04 from
    0.004: 0.035 is not 5x 0.009), each back the next session; SC's low 1/10 of its open and close on INTRADAY.
    Prices with four decimals were not rounded to cents."""
    sc = below_a_cent(frame, "SC", {})
    at = sc["session_date"] == date.fromisoformat(INTRADAY)
    sc.loc[at, "low"] = (sc.loc[at, ["open", "close"]].min(axis=1) / 10).round(4)
    return pd.concat([below_a_cent(frame, "SA", {SPIKE: 0.1}), below_a_cent(frame, "SB", {DIP: 10}), sc])


def ticker_changed(frame: pd.DataFrame) -> pd.DataFrame:
    """SA's ticker changed to SAN (as FB became META): IBKR serves the same contract id under the new symbol, with
    its whole history, and the watchlist now names SAN. SA's bars stay in raw."""
    rows = frame[frame["symbol"] == "SA"].assign(symbol="SAN", load_id=uuid.uuid4(), ingested_at=datetime.now(UTC))
    return rows.assign(batch_id=rows["load_id"])


def trade_fields_out_of_range(frame: pd.DataFrame) -> pd.DataFrame:
    """A negative trade count and a WAP above the high fail; IBKR's -1 ("not sent") does not: in a TRADES bar's WAP
    and trade count (SB), and in a MIDPOINT bar's volume, WAP and trade count (SC)."""
    return pd.concat([relanded(frame, "SA", "2024-03-15", bar_count=-5),
                      relanded(frame, "SC", "2024-03-18", wap=lambda r: r["high"] * 1.1),
                      relanded(frame, "SB", "2024-03-19", wap=-1.0, bar_count=-1),
                      relanded(frame, "SC", "2024-03-19", what_to_show="MIDPOINT", volume=-1.0, wap=-1.0,
                               bar_count=-1)])  # fmt: skip


def prices_out_of_range(frame: pd.DataFrame) -> pd.DataFrame:
    """One bad value per bar, each caught by its own test: open above the high, close below the low, a zero low,
    a negative volume."""
    return pd.concat([relanded(frame, "SA", "2024-03-19", open=lambda r: r["high"] * 1.01),
                      relanded(frame, "SB", "2024-03-20", close=lambda r: r["low"] * 0.99),
                      relanded(frame, "SC", "2024-03-21", low=0.0),
                      relanded(frame, "SA", "2024-03-22", volume=-100.0)])  # fmt: skip


def prices_not_finite(frame: pd.DataFrame) -> pd.DataFrame:
    """Values a server may send and raw keeps, that pass every comparison (PostgreSQL orders NaN above every number,
    equal to itself): a bar of NaN prices, one of infinite prices, a NaN volume and an infinite one."""
    nan, inf = "NaN", float("inf")  # the text PostgreSQL reads as NaN: a float NaN would land as null
    return pd.concat([relanded(frame, "SA", "2024-03-25", open=nan, high=nan, low=nan, close=nan, wap=nan),
                      relanded(frame, "SB", "2024-03-25", open=inf, high=inf, low=inf, close=inf, wap=inf),
                      relanded(frame, "SC", "2024-03-25", volume=nan),
                      relanded(frame, "SC", "2024-03-26", volume=inf)])  # fmt: skip


def prices_beyond_what_the_features_survive(frame: pd.DataFrame) -> pd.DataFrame:
    """Finite values that pass every comparison with 0 and infinity: a bar at 1e200 times its price (PostgreSQL's avg
    over the SMA window sums squares, and the build stopped with "value out of range: overflow", naming no bar), one
    at 1e-250 times its price (the mart then held features of 1e252, which the training job's scaler squares to
    infinity), and a volume of 1e200 (stddev_samp of the volume window overflowed)."""
    prices = ["open", "high", "low", "close", "wap"]
    return pd.concat([relanded(frame, "SA", "2024-03-27", **{c: (lambda r, c=c: r[c] * 1e200) for c in prices}),
                      relanded(frame, "SB", "2024-03-27", **{c: (lambda r, c=c: r[c] * 1e-250) for c in prices}),
                      relanded(frame, "SC", "2024-03-27", volume=1e200)])  # fmt: skip


def other_text_not_clean(frame: pd.DataFrame) -> pd.DataFrame:
    """The text columns besides the symbol (bars and batch manifest): a control character, a surrounding space, a
    U+FFFD, a text that is not NFC."""
    return pd.concat([relanded(frame, "SB", "2024-03-15", exchange="SMART\x07", currency="USD ", source="ibkr\ufffd"),
                      relanded(frame, "SC", "2024-03-15", bar_size="1 day\u0301", what_to_show=" TRADES")])  # fmt: skip


def next_session_after_today() -> str:
    today = datetime.now(UTC).date()
    sessions = synthetic_bars.nyse_sessions(str(today + pd.Timedelta(days=1)), str(today + pd.Timedelta(days=15)))
    return str(sessions[0].date())


CASES = [
    Case("missing_session", new_symbol_with_gap, {NO_MISSING_SESSIONS}),
    Case(
        "bar_on_saturday",
        saturday_bar_and_a_source_date_that_disagrees,
        {EXCHANGE_SESSION},
        warns={SESSION_DATE_MATCHES_SOURCE},
    ),
    Case("bar_on_holiday", lambda f: on_day(f, "SA", "2024-05-27"), {EXCHANGE_SESSION}),  # Memorial Day
    Case("control_character", lambda f: relanded(f, "SA", "2024-03-15", symbol="S\x07X"), ENCODING_TESTS),
    Case("replacement_character", lambda f: relanded(f, "SA", "2024-03-15", symbol="S\ufffdX"), ENCODING_TESTS),
    Case("not_nfc", lambda f: relanded(f, "SA", "2024-03-15", symbol="SE\u0301"), ENCODING_TESTS),
    Case(
        "high_below_low",
        lambda f: relanded(f, "SC", "2024-04-02", high=lambda r: r["low"] * 0.9),
        {LOW_NOT_ABOVE_HIGH},
        OHLC_TESTS | {WAP_WITHIN_LOW_HIGH},
    ),  # fmt: skip
    Case("future_session", lambda f: on_day(f, "SFUT", next_session_after_today()), {NO_FUTURE_SESSION}),
    Case("split_not_readjusted", split_not_readjusted, {UNADJUSTED_SPLIT}),
    # The same cause, two tests: for a split of more than 5, a session left out of the re-adjusted history is also a
    # bad tick. docs/warehouse.md gives both the same remedy.
    Case("split_history_gaps", split_history_gaps, {UNADJUSTED_SPLIT, BAD_TICKS}),
    Case("ticker_changed", ticker_changed, {ONE_SYMBOL_PER_CONTRACT}),
    Case("bad_ticks", bad_ticks, {BAD_TICKS}),
    Case("bad_prices_below_a_cent", bad_prices_below_a_cent, {BAD_TICKS, BAD_INTRADAY}),
    Case("spikes_lasting_sessions", spikes_lasting_sessions, {BAD_TICKS}),
    Case("bad_intraday_prices", bad_intraday_prices, {BAD_INTRADAY}),
    Case("trade_fields_out_of_range", trade_fields_out_of_range, {BAR_COUNT_NOT_NEGATIVE, WAP_WITHIN_LOW_HIGH}),
    Case(
        "prices_out_of_range",
        prices_out_of_range,
        {OPEN_WITHIN_LOW_HIGH, CLOSE_WITHIN_LOW_HIGH, PRICES_POSITIVE, VOLUME_NOT_NEGATIVE},
    ),
    Case("prices_not_finite", prices_not_finite, {PRICES_POSITIVE, VOLUME_NOT_NEGATIVE}),
    Case("prices_beyond_float_safety", prices_beyond_what_the_features_survive, {PRICES_POSITIVE, VOLUME_NOT_NEGATIVE}),
    Case(
        "other_text_not_clean",
        other_text_not_clean,
        OTHER_TEXT_TESTS,
        {"accepted_values_stg_ibkr__bars_source__ibkr__csv"},
        warns={ERROR_MESSAGE_CLEAN},
        failed_batches=lambda: [failed_batch("SA", "HMDS query returned no data:\nSA@SMART Historical_Data")],
    ),
]


def build_with(
    base: dict,
    rows: pd.DataFrame,
    failed_batches: list[LoadBatch] | None = None,
    known_missing: str | None = None,
    verified: str | None = None,
    store_failures: bool = False,
) -> tuple[dbt_harness.DbtResult, ConnectionSettings]:
    """A copy of the clean database with ``rows`` (and ``failed_batches``) landed, built; the caller drops the copy.
    ``known_missing`` and ``verified``: the lines after the header of warehouse/seeds/known_missing_sessions.csv and
    verified_price_moves.csv, as an administrator wrote them (in a copy of the dbt project). ``store_failures``: keep
    each test's failing rows for :func:`failure_rows` (a table per test: about a tenth of a small build's CPU)."""
    scratch_database.drop_database(base["cluster"].with_database(base["case_database"]))  # a failed case's, if any
    settings = scratch_database.clone_database(base["cluster"], base["settings"].dbname, name=base["case_database"])
    with connect(settings) as conn:
        synthetic_bars.copy_bars(conn, rows, failed_batches=failed_batches or [])
    if known_missing is None and verified is None:
        project = dbt_harness.DbtProject(settings, base["case_dir"])
        left_out = dbt_harness.SKIP_FIXED_INPUTS  # the copy holds the seeds as loaded
    else:  # both seeds written each time: the copy is shared, and a seed left from the previous case must not stay
        seeds = {KNOWN_MISSING_SEED: KNOWN_MISSING_HEADER + (known_missing or ""),
                 VERIFIED_SEED: VERIFIED_HEADER + (verified or "")}  # fmt: skip
        copy = dbt_harness.copy_project(base["case_dir"] / "project", seeds)
        project = dbt_harness.DbtProject(settings, base["case_dir"] / "copied", project_dir=copy)
        left_out = dbt_harness.skip_loaded_seeds("xnys_sessions")  # the calendar is loaded and unchanged
    return project.run("build", *left_out, *(["--store-failures"] if store_failures else [])), settings


def failure_rows(settings: ConnectionSettings, test_name: str) -> pd.DataFrame:
    with connect(settings) as conn:
        cursor = conn.execute(f'select * from dbt_test__audit."{test_name}"')
        return pd.DataFrame(cursor.fetchall(), columns=[c.name for c in cursor.description])


def test_clean_build_passes_every_test(base: dict) -> None:
    result: dbt_harness.DbtResult = base["result"]
    assert result.returncode == 0, result.output[-4000:]
    statuses = result.statuses()
    for test in (
        {
            NO_MISSING_SESSIONS,
            EXCHANGE_SESSION,
            SYMBOL_CLEAN,
            SYMBOL_PATTERN,
            NO_FUTURE_SESSION,
            DEDUPED_UNIQUE,
            UNADJUSTED_SPLIT,
            BAD_TICKS,
            BAD_INTRADAY,
            ONE_SYMBOL_PER_CONTRACT,
            BAR_COUNT_NOT_NEGATIVE,
            WAP_WITHIN_LOW_HIGH,
            SESSION_DATE_MATCHES_SOURCE,
            ERROR_MESSAGE_CLEAN,
        }
        | OHLC_TESTS
        | KNOWN_MISSING_TESTS
        | VERIFIED_TESTS
    ):
        assert statuses[test] == "pass", (test, statuses[test])


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_data_test_fails_on_its_bad_data(base: dict, case: Case) -> None:
    result, settings = build_with(base, case.rows(base["frame"]), case.failed_batches(), store_failures=True)
    try:
        assert result.returncode != 0
        failed = result.failed()
        assert case.fails <= failed, (case.name, failed)
        assert failed <= case.fails | case.may_also_fail, f"{case.name}: unexpected failures {failed - case.fails}"
        for test in case.fails | case.warns:
            assert result.by_name()[test]["failures"] >= 1, test
        assert {test: result.statuses()[test] for test in case.warns} == dict.fromkeys(case.warns, "warn")
        # The mart waits for the data to be fixed: a failing test on the bars skips every model built from them.
        # no_missing_sessions, whose seed was not upstream of the bars, let the series with a gap into the mart.
        assert {model: result.statuses()[model] for model in MART_MODELS} == dict.fromkeys(MART_MODELS, "skipped")

        if case.name == "missing_session":
            rows = failure_rows(settings, NO_MISSING_SESSIONS)
            assert rows[["symbol", "missing_sessions", "missing_session_dates"]].values.tolist() == [
                ["SGAP", 1, "2024-02-15"]
            ]
        if case.name == "bar_on_saturday":
            assert len(failure_rows(settings, EXCHANGE_SESSION)) == 1, "only the daily bar is held to sessions"
            rows = failure_rows(settings, SESSION_DATE_MATCHES_SOURCE)
            assert rows[["symbol", "session_date", "source_session_date"]].values.tolist() == [
                ["SB", date(2024, 3, 15), date(2024, 3, 14)]
            ]
        if case.name == "control_character":
            rows = failure_rows(settings, SYMBOL_CLEAN)
            assert rows[["value", "problem"]].values.tolist() == [["S\x07X", "control character"]]
            with connect(settings) as conn:  # flagged, so int_bars_excluded lists it once the data is fixed
                flagged = conn.execute("select symbol from staging.stg_ibkr__bars where not is_valid_symbol").fetchall()
            assert flagged == [("S\x07X",)]
        if case.name == "replacement_character":
            assert failure_rows(settings, SYMBOL_CLEAN)["problem"].tolist() == ["U+FFFD replacement character"]
        if case.name == "not_nfc":
            assert failure_rows(settings, SYMBOL_CLEAN)["problem"].tolist() == ["not NFC-normalised"]
        if case.name == "split_not_readjusted":
            rows = failure_rows(settings, UNADJUSTED_SPLIT).sort_values("symbol")
            assert rows[["symbol", "session_date", "looks_like_split_ratio"]].values.tolist() == [
                ["SB", date.fromisoformat(SPLIT_SESSION), 2.0],
                ["SC", date.fromisoformat(REVERSE_SPLIT_SESSION), 0.25],
            ]
        if case.name == "split_history_gaps":
            rows = failure_rows(settings, UNADJUSTED_SPLIT).sort_values(["symbol", "session_date"])
            left_out = date.fromisoformat(SESSION_LEFT_OUT)
            assert rows[["symbol", "session_date", "looks_like_split_ratio"]].values.tolist() == [
                ["SA", left_out, 0.1],  # the old bar, 10x the re-adjusted ones around it, and back
                ["SA", min(d for d in base["frame"]["session_date"] if d > left_out), 10.0],
                ["SC", date.fromisoformat(REVERSE_SPLIT_SESSION), 0.05],
            ]
            ticks = failure_rows(settings, BAD_TICKS)  # the reverse split's fall does not come back: only SA
            assert ticks[["symbol", "session_date", "sessions_off"]].values.tolist() == [["SA", left_out, 1]]
        if case.name == "bad_prices_below_a_cent":
            ticks = failure_rows(settings, BAD_TICKS).sort_values(["symbol", "session_date"])
            assert ticks[["symbol", "session_date", "sessions_off"]].values.tolist() == [
                ["SA", date.fromisoformat(SPIKE), 1],
                ["SB", date.fromisoformat(DIP), 1],
            ]
            prints = failure_rows(settings, BAD_INTRADAY)
            assert prints[["symbol", "session_date", "problem"]].values.tolist() == [
                ["SC", date.fromisoformat(INTRADAY), "low below 1/5 of the open and the close"]
            ]
        if case.name == "bad_ticks":
            rows = failure_rows(settings, BAD_TICKS).sort_values(["symbol", "session_date"])
            clean = base["frame"].set_index(["symbol", "session_date"])["close"]
            landed = {("SA", SPIKE): 1000, **{("SB", s): 1000 for s in ALTERNATING}, ("SB", DIP): 1e-3}

            def row(symbol: str, session: str) -> list:
                """The failure row of SESSION: the sessions around it and their closes, as landed."""
                days = list(clean[symbol].index)
                at = days.index(date.fromisoformat(session))
                around = days[at - 1 : at + 2]
                closes = [float(clean[symbol, day] * landed.get((symbol, str(day)), 1)) for day in around]
                return [symbol, *around, *closes]

            columns = ["symbol", "previous_session", "session_date", "next_session", "previous_close", "close",
                       "next_close"]  # fmt: skip
            # In the alternating run the good session between the two bad ones fails too: between two closes
            # 1000x up, it is the one that dipped 1000x and came back.
            expected = [row("SA", SPIKE), row("SB", ALTERNATING[0]), row("SB", "2024-04-02"), row("SB", ALTERNATING[1]),
                        row("SB", DIP)]  # fmt: skip
            assert rows[columns].values.tolist() == expected, rows.to_string()  # the same float8s: equal to the bit
            # docs/warehouse.md: the one-off way through, without recording the move: that build excludes the test.
            excluded = dbt_harness.DbtProject(settings, base["case_dir"]).run("build", "--exclude", BAD_TICKS)
            assert excluded.returncode == 0, excluded.output[-4000:]
            assert BAD_TICKS not in excluded.statuses()
            assert {model: excluded.statuses()[model] for model in MART_MODELS} == dict.fromkeys(MART_MODELS, "success")
        if case.name == "spikes_lasting_sessions":
            rows = failure_rows(settings, BAD_TICKS).sort_values("symbol")
            clean = base["frame"].set_index(["symbol", "session_date"])["close"]

            def spike(symbol: str, first: str, off: int, factor: float) -> list:
                days = list(clean[symbol].index)
                at = days.index(date.fromisoformat(first))
                before, jump, after, back = days[at - 1], days[at], days[at + 1], days[at + off]
                return [symbol, before, jump, after, back, off, float(clean[symbol, before]),
                        float(clean[symbol, jump] * factor), float(clean[symbol, after] * factor),
                        float(clean[symbol, back])]  # fmt: skip

            columns = ["symbol", "previous_session", "session_date", "next_session", "back_session", "sessions_off",
                       "previous_close", "close", "next_close", "back_close"]  # fmt: skip
            expected = [spike("SA", LASTING[0], 2, 1000), spike("SB", LASTING[1], 3, 1e-3)]
            assert rows[columns].values.tolist() == expected, rows.to_string()
        if case.name == "bad_intraday_prices":
            rows = failure_rows(settings, BAD_INTRADAY).sort_values("symbol")
            assert rows[["symbol", "session_date", "problem"]].values.tolist() == [
                ["SA", date.fromisoformat(INTRADAY), "high more than 5x the open and the close"],
                ["SB", date.fromisoformat(INTRADAY), "low below 1/5 of the open and the close"],
                ["SC", date.fromisoformat(INTRADAY), "open more than 5x off both the previous close and the close"],
            ]
            landed = bad_intraday_prices(base["frame"]).set_index("symbol")
            for column in ("open", "high", "low", "close"):
                assert rows[column].tolist() == landed.loc[["SA", "SB", "SC"], column].tolist(), column
            # docs/warehouse.md: the one-off way through, without recording the bar: that build excludes the test.
            excluded = dbt_harness.DbtProject(settings, base["case_dir"]).run("build", "--exclude", BAD_INTRADAY)
            assert excluded.returncode == 0, excluded.output[-4000:]
            assert {model: excluded.statuses()[model] for model in MART_MODELS} == dict.fromkeys(MART_MODELS, "success")
        if case.name == "ticker_changed":
            rows = failure_rows(settings, ONE_SYMBOL_PER_CONTRACT)
            sessions = base["frame"].query("symbol == 'SA'")["session_date"]
            assert rows[["contract_id", "symbols", "shared_sessions", "first_shared_session",
                         "last_shared_session"]].values.tolist() == [
                [synthetic_bars.con_id_for("SA"), "SA, SAN", len(sessions), sessions.min(), sessions.max()]
            ]  # fmt: skip
        if case.name == "trade_fields_out_of_range":
            assert failure_rows(settings, BAR_COUNT_NOT_NEGATIVE)[["symbol", "bar_count"]].values.tolist() == [
                ["SA", -5]
            ]
            assert failure_rows(settings, WAP_WITHIN_LOW_HIGH)["symbol"].tolist() == ["SC"]
            with connect(settings) as conn:  # IBKR's -1 "not sent" is null in staging, the TRADES volume kept
                not_sent = conn.execute(
                    "select symbol, what_to_show, volume is null, bar_count from staging.stg_ibkr__bars "
                    "where session_date = '2024-03-19' and wap is null order by symbol"
                ).fetchall()
            assert not_sent == [("SB", "TRADES", False, None), ("SC", "MIDPOINT", True, None)]
        if case.name == "prices_out_of_range":
            for test, symbol in [(OPEN_WITHIN_LOW_HIGH, "SA"), (CLOSE_WITHIN_LOW_HIGH, "SB"), (PRICES_POSITIVE, "SC"),
                                 (VOLUME_NOT_NEGATIVE, "SA")]:  # fmt: skip
                assert failure_rows(settings, test)["symbol"].tolist() == [symbol], test
        if case.name == "prices_beyond_float_safety":
            assert sorted(failure_rows(settings, PRICES_POSITIVE)["symbol"]) == ["SA", "SB"]
            assert failure_rows(settings, VOLUME_NOT_NEGATIVE)["symbol"].tolist() == ["SC"]
        if case.name == "prices_not_finite":
            assert sorted(failure_rows(settings, PRICES_POSITIVE)["symbol"]) == ["SA", "SB"]
            assert sorted(failure_rows(settings, VOLUME_NOT_NEGATIVE)["symbol"]) == ["SC", "SC"]
        if case.name == "other_text_not_clean":
            problems = {test: failure_rows(settings, test)["problem"].tolist() for test in OTHER_TEXT_TESTS}
            source, bar_size, what_to_show = (
                ["U+FFFD replacement character"],
                ["not NFC-normalised"],
                ["leading or trailing whitespace"],
            )
            assert problems == {
                "stg_ibkr__bars_exchange_is_clean_text": ["control character"],
                "stg_ibkr__bars_currency_is_clean_text": ["leading or trailing whitespace"],
                "stg_ibkr__bars_source_is_clean_text": source,
                "stg_ibkr__bars_bar_size_is_clean_text": bar_size,
                "stg_ibkr__bars_what_to_show_is_clean_text": what_to_show,
                "stg_ibkr__load_batches_source_is_clean_text": source,
                "stg_ibkr__load_batches_bar_size_is_clean_text": bar_size,
                "stg_ibkr__load_batches_what_to_show_is_clean_text": what_to_show,
            }
            assert failure_rows(settings, ERROR_MESSAGE_CLEAN)["problem"].tolist() == ["control character"]
    finally:
        scratch_database.drop_database(settings)


def documented_warehouse_sql(containing: str) -> str:
    """The SQL block of docs/warehouse.md that contains ``containing``: what an administrator is told to run."""
    text = (Path(__file__).parents[1] / "docs" / "warehouse.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```sql\n(.*?)```", text, re.DOTALL) if containing in b]
    return textwrap.dedent(block)


def documented_ticker_change_clean_up(old_symbol: str, con_id: int) -> str:
    """docs/ingest.md's statement for FB -> META, for ``old_symbol`` and its contract id."""
    text = (Path(__file__).parents[1] / "docs" / "ingest.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```sql\n(.*?)```", text, re.DOTALL) if "con_id = 107113386" in b]
    return block.replace("'FB'", f"'{old_symbol}'").replace("107113386", str(con_id))


def test_a_ticker_change_builds_again_after_the_documented_clean_up(base: dict) -> None:
    """SA became SAN. The statement docs/ingest.md gives deletes SA's bars, those from a CSV file (no contract id)
    too; an incremental build does not see a deletion, so the test still fails until the --full-refresh the docs ask
    for. Then the mart holds the company once, as SAN, and SB as before."""
    csv_bar = relanded(base["frame"], "SA", "2024-03-15", con_id=None, source="csv")
    result, settings = build_with(base, pd.concat([ticker_changed(base["frame"]), csv_bar]))
    try:
        assert result.failed() == {ONE_SYMBOL_PER_CONTRACT}
        with connect(settings) as conn:
            conn.execute(documented_ticker_change_clean_up("SA", synthetic_bars.con_id_for("SA")))
            assert conn.execute("select count(*) from raw.ibkr_bars where symbol = 'SA'").fetchone() == (0,)
        project = dbt_harness.DbtProject(settings, base["case_dir"])
        assert project.run("build").failed() == {ONE_SYMBOL_PER_CONTRACT}
        rebuilt = project.run("build", "--full-refresh")
        assert rebuilt.returncode == 0, rebuilt.output[-4000:]
        with connect(settings) as conn:
            symbols = conn.execute("select symbol, count(*) from marts.training_bars group by 1 order by 1").fetchall()
        per_symbol = dict(symbols)
        assert sorted(per_symbol) == ["SAN", "SB", "SC"] and per_symbol["SAN"] == per_symbol["SB"]
    finally:
        scratch_database.drop_database(settings)


def test_a_real_extreme_move_is_not_a_bad_tick(base: dict) -> None:
    """A stock that triples and stays, one that gains 300% and gives most of it back the next day, one that jumps 6x
    and stays: real moves, not bad ticks. The build is green and the mart holds them."""
    result, settings = build_with(base, real_extreme_moves(base["frame"]))
    try:
        assert result.returncode == 0, result.output[-4000:]
        assert result.statuses()[BAD_TICKS] == "pass"
        assert result.statuses()[UNADJUSTED_SPLIT] == "pass"
        with connect(settings) as conn:
            (jumps,) = conn.execute(
                "select count(*) from marts.training_bars where abs(log_return_1) > ln(2.5)"
                " and (symbol, session_date) in (('SA', '2024-03-15'), ('SB', '2024-04-01'), ('SC', '2024-05-15'))"
            ).fetchone()
        assert jumps == 3
    finally:
        scratch_database.drop_database(settings)


def test_real_squeezes_and_splits_are_not_bad_prices(base: dict) -> None:
    """Real moves near the thresholds of both rules: a spike and fade and a flush inside one session, a squeeze of
    5.5x that fades 70% over three sessions and stays up, a biotech's +300% then -70%, a 1:10 reverse split with the
    slump after it. The build is green and the mart holds the squeeze."""
    result, settings = build_with(base, real_squeezes_and_splits(base["frame"]))
    try:
        assert result.returncode == 0, result.output[-4000:]
        statuses = result.statuses()
        assert [statuses[test] for test in (BAD_TICKS, BAD_INTRADAY, UNADJUSTED_SPLIT)] == ["pass"] * 3
        with connect(settings) as conn:
            (log_return,) = conn.execute(
                "select log_return_1 from marts.training_bars where symbol = 'SA' and session_date = %s", (SQUEEZE,)
            ).fetchone()
        assert log_return == pytest.approx(np.log(5.5), abs=0.2)  # and the session's own small move
    finally:
        scratch_database.drop_database(settings)


def test_real_penny_moves_in_cents_and_a_halt_are_not_bad_prices(base: dict) -> None:
    """A CSV file in cents states a 5-cent stock's 3.8x flush inside a session and its 3.7x fall and recovery as 6x:
    both tests take each price half a cent in its favour, and pass them. A symbol halted for a session (recorded)
    that resumes 6x up and stays passes too. The build is green."""
    rows = real_penny_moves_in_cents_and_a_halt(base["frame"])
    stated = rows.set_index(["symbol", rows["session_date"].astype(str)])
    assert stated.loc[("SA", PENNY_FLUSH), ["open", "low", "close"]].tolist() == [0.06, 0.01, 0.06]
    sb = sessions_from(base["frame"], "SB", PENNY_DIP)
    assert [stated.loc[("SB", day), "close"] for day in sb[:3]] == [0.01, 0.04, 0.05]
    result, settings = build_with(base, rows, known_missing=f"SGAP,{HALT},halted all day: news pending\n")
    try:
        assert result.returncode == 0, result.output[-4000:]
        statuses = result.statuses()
        assert [statuses[test] for test in (BAD_TICKS, BAD_INTRADAY, UNADJUSTED_SPLIT)] == ["pass"] * 3
    finally:
        scratch_database.drop_database(settings)


def test_disagreeing_redelivery_is_a_correction_not_a_duplicate(base: dict) -> None:
    rows = relanded(
        base["frame"], "SB", "2024-03-15", close=lambda r: r["close"] * 1.01, high=lambda r: r["high"] * 1.01
    )
    result, settings = build_with(base, rows)
    try:
        assert result.returncode == 0, result.output[-4000:]
        assert result.statuses()[DEDUPED_UNIQUE] == "pass"
        with connect(settings) as conn:
            versions = conn.execute(
                "select close, is_current, distinct_version_count from marts.bar_corrections"
                " where symbol = 'SB' and session_date = '2024-03-15' order by is_current"
            ).fetchall()
            kept = conn.execute(
                "select close, versions_landed, has_corrections from intermediate.int_bars_deduplicated"
                " where symbol = 'SB' and session_date = '2024-03-15'"
            ).fetchone()
            corrected = conn.execute(
                "select corrected_sessions from marts.symbol_coverage where symbol = 'SB'"
            ).fetchone()
        new_close = float(rows["close"].iloc[0])
        assert [(is_current, count) for _, is_current, count in versions] == [(False, 2), (True, 2)]
        assert versions[1][0] == pytest.approx(new_close, abs=0) and kept == (versions[1][0], 2, True)
        assert corrected == (1,)
    finally:
        scratch_database.drop_database(settings)


def test_lowercase_and_padded_symbols_are_normalised(base: dict) -> None:
    """What normalisation can fix never reaches the tests: 'sa ' and 'sb' are SA and SB re-delivered."""
    rows = pd.concat([relanded(base["frame"], "SA", "2024-03-15", symbol="sa "),
                      relanded(base["frame"], "SB", "2024-03-18", symbol=" sb")])  # fmt: skip
    result, settings = build_with(base, rows)
    try:
        assert result.returncode == 0, result.output[-4000:]
        assert not result.failed()
        with connect(settings) as conn:
            symbols = {s for (s,) in conn.execute("select distinct symbol from staging.stg_ibkr__bars")}
            merged = conn.execute(
                "select symbol, versions_landed, has_corrections from intermediate.int_bars_deduplicated"
                " where versions_landed > 1 order by symbol"
            ).fetchall()
        assert symbols == set(SYMBOLS)
        assert merged == [("SA", 2, False), ("SB", 2, False)]
    finally:
        scratch_database.drop_database(settings)


def test_rows_left_out_are_listed_and_counted(base: dict) -> None:
    """Nothing is dropped silently: a 5-minute bar and a bar landed while its session was still trading are not
    modelled, but listed with their reason and counted; the mart keeps the final bar of that session. With
    after-hours trading (use_rth false) a session ends at var extended_hours_end (20:00), not at the close."""
    five_minutes = relanded(base["frame"], "SA", "2024-03-15", bar_size="5 mins")
    five_minutes["bar_time"] = pd.Timestamp("2024-03-15 09:30").tz_localize("America/New_York")
    # SB's bar of 2024-03-15 as it looked at 11:00 that day (a later landing than the final one, but not final).
    in_progress = relanded(base["frame"], "SB", "2024-03-15", close=lambda r: r["close"] * 1.01)
    in_progress["ingested_at"] = pd.Timestamp("2024-03-15 11:00").tz_localize("America/New_York")
    after_hours = relanded(base["frame"], "SC", "2024-03-15", use_rth=False)  # landed after the close, before 20:00
    after_hours["ingested_at"] = pd.Timestamp("2024-03-15 17:00").tz_localize("America/New_York")
    result, settings = build_with(base, pd.concat([five_minutes, in_progress, after_hours]))
    try:
        assert result.returncode == 0, result.output[-4000:]
        with connect(settings) as conn:
            listed = conn.execute(
                "select symbol, bar_size, exclusion_reason from intermediate.int_bars_excluded"
            ).fetchall()
            counted = conn.execute(
                "select excluded_rows, excluded_rows_not_daily, sessions_present from marts.symbol_coverage"
                " where symbol = 'SA' and bar_size = '5 mins'"
            ).fetchone()
            not_final = conn.execute(
                "select excluded_rows, excluded_rows_not_final from marts.symbol_coverage where symbol = 'SB'"
                " and bar_size = '1 day'"
            ).fetchone()
            kept = conn.execute(
                "select close, versions_landed from intermediate.int_bars_deduplicated"
                " where symbol = 'SB' and session_date = '2024-03-15'"
            ).fetchone()
        assert sorted(listed) == [("SA", "5 mins", "bar size is not daily"),
                                  ("SB", "1 day", "landed before its session ended (not final)"),
                                  ("SC", "1 day", "landed before its session ended (not final)")]  # fmt: skip
        assert counted == (1, 1, 0)
        assert not_final == (1, 1)
        frame = base["frame"]
        clean = frame[(frame["symbol"] == "SB") & (frame["session_date"] == date(2024, 3, 15))]
        assert kept == (pytest.approx(float(clean["close"].iloc[0]), abs=0), 1)
    finally:
        scratch_database.drop_database(settings)


RECORDED_HALT = f"SGAP,{HALT},halted all day (news pending)\n"


def test_a_recorded_session_is_not_a_gap(base: dict) -> None:
    """SGAP was halted all day on HALT and the administrator recorded it in the seed: the build passes, the mart
    holds SGAP, symbol_coverage counts the gap as recorded, and nothing fills it: the next session's log_return_1
    spans both sessions."""
    result, settings = build_with(base, new_symbol_with_gap(base["frame"]), known_missing=RECORDED_HALT)
    try:
        assert result.returncode == 0, result.output[-4000:]
        assert result.statuses()[NO_MISSING_SESSIONS] == "pass"
        assert {test: result.statuses()[test] for test in KNOWN_MISSING_TESTS} == dict.fromkeys(
            KNOWN_MISSING_TESTS, "pass"
        )
        with connect(settings) as conn:
            (recorded,) = conn.execute("select count(*) from seeds.known_missing_sessions").fetchone()
            closes = dict(conn.execute(
                "select session_date, close from intermediate.int_bars_deduplicated where symbol = 'SGAP'"
                " and session_date between %s and %s", (HALT - pd.Timedelta(days=1), HALT + pd.Timedelta(days=1))
            ).fetchall())  # fmt: skip
            after = conn.execute(
                "select log_return_1 from intermediate.int_bars_featurized where symbol = 'SGAP' and session_date = %s",
                (HALT + pd.Timedelta(days=1),),
            ).fetchone()
            (mart_rows,) = conn.execute("select count(*) from marts.training_bars where symbol = 'SGAP'").fetchone()
            coverage = conn.execute(
                "select sessions_missing, sessions_known_missing from marts.symbol_coverage where symbol = 'SGAP'"
            ).fetchone()
        with connect(settings, role="analyst") as conn:
            gaps = conn.execute(ANALYSES.joinpath("coverage_gaps.sql").read_text(encoding="utf-8")).fetchall()
        assert recorded == 1
        assert sorted(closes) == [HALT - pd.Timedelta(days=1), HALT + pd.Timedelta(days=1)]  # no bar invented
        before, next_session = (closes[day] for day in sorted(closes))
        assert after is not None and after[0] == pytest.approx(np.log(next_session / before), abs=1e-12)
        assert coverage == (1, 1)
        assert [row[:9] for row in gaps] == [
            ("SGAP", "1 day", "TRADES", True, date(2024, 1, 2), date(2024, 3, 28), 61, 1, 1)
        ]
        assert mart_rows == 10  # 60 bars from 2024-01-02 to 2024-03-28, less the 50-session warm-up
    finally:
        scratch_database.drop_database(settings)


def test_only_the_recorded_symbol_and_session_are_exempt(base: dict) -> None:
    """The halt recorded for SGAP exempts nothing else: SGAP's other missing session fails, and so does SGAQ's bar
    missing on HALT. A recorded session that has a bar after all (SGAQ on OTHER_SESSION) excuses no other gap. The
    failure rows say what to do: fetch the session again, or record it in the seed; the threshold is for everyone."""
    rows = pd.concat([new_symbol_with_gap(base["frame"], "SGAP", (HALT, OTHER_SESSION)),
                      new_symbol_with_gap(base["frame"], "SGAQ", (HALT,))])  # fmt: skip
    recorded = RECORDED_HALT + f"SGAQ,{OTHER_SESSION},halted all day (a mistake: it traded)\n"
    result, settings = build_with(base, rows, known_missing=recorded, store_failures=True)
    try:
        assert result.returncode != 0
        assert result.failed() == {NO_MISSING_SESSIONS}
        failures = failure_rows(settings, NO_MISSING_SESSIONS).sort_values("symbol")
        columns = ["symbol", "missing_sessions", "missing_session_dates", "known_missing_sessions"]
        assert failures[columns].values.tolist() == [["SGAP", 1, str(OTHER_SESSION), 1], ["SGAQ", 1, str(HALT), 0]]
        (advice,) = set(failures["what_to_do"])
        for needed in ("warehouse/seeds/known_missing_sessions.csv", "missing_sessions_threshold", "--full-refresh"):
            assert needed in advice, needed
        # docs/warehouse.md's query for the gaps not recorded, as transformer runs it (make psql ROLE=transformer).
        with connect(settings, role="transformer") as conn:
            gaps = conn.execute(documented_warehouse_sql("does not record")).fetchall()
        daily = ("1 day", "TRADES", True)
        assert gaps == [("SGAP", *daily, OTHER_SESSION, 4), ("SGAQ", *daily, HALT, 3)]  # SGAP misses HALT too
    finally:
        scratch_database.drop_database(settings)


def test_a_seed_row_that_records_no_real_session_fails_its_test(base: dict) -> None:
    """Mistakes in the seed: a Saturday (nothing is missing on a day without a session), the same halt twice, no
    reason (empty or blank: dbt reads both as null) or one without a word, a symbol not spelled as the warehouse
    spells it. Each fails its own test, and so the build."""
    recorded = (
        RECORDED_HALT
        + f"SGAP,{HALT},halted again\n"
        + "SGAP,2024-02-17,a Saturday\n"
        + "SB,2024-03-15,\n"
        + 'SC,2024-03-15,"  "\n'
        + "SC,2024-03-18,-\n"
        + "brk.b,2024-03-15,halted all day\n"
    )
    result, settings = build_with(base, new_symbol_with_gap(base["frame"]), known_missing=recorded, store_failures=True)
    try:
        assert result.returncode != 0
        assert result.failed() == {
            "known_missing_sessions_one_row_per_symbol_and_session",
            "known_missing_sessions_session_date_is_exchange_session",
            "not_null_known_missing_sessions_reason",
            "known_missing_sessions_reason_says_why",
            "known_missing_sessions_symbol_as_the_warehouse_spells_it",
        }, result.output[-4000:]
        unknown = failure_rows(settings, "known_missing_sessions_session_date_is_exchange_session")
        assert unknown["from_field"].tolist() == [date(2024, 2, 17)]
        twice = failure_rows(settings, "known_missing_sessions_one_row_per_symbol_and_session")
        assert twice[["symbol", "session_date", "occurrences"]].values.tolist() == [["SGAP", HALT, 2]]
        assert failure_rows(settings, "known_missing_sessions_reason_says_why")["reason"].tolist() == ["-"]
        assert len(failure_rows(settings, "not_null_known_missing_sessions_reason")) == 2
        spelled = failure_rows(settings, "known_missing_sessions_symbol_as_the_warehouse_spells_it")
        assert spelled["symbol"].tolist() == ["brk.b"]
    finally:
        scratch_database.drop_database(settings)


def one_spike(frame: pd.DataFrame) -> pd.DataFrame:
    """SA's close 6x on SPIKE and back the next session, volume as it was: a bad tick to no_bad_ticks."""
    return scaled(frame, "SA", [SPIKE], 6)


def test_a_move_recorded_as_verified_passes_and_reaches_the_mart(base: dict) -> None:
    """A spike checked against another source and found real, recorded in verified_price_moves.csv under the
    session the close jumped on (the failure row's session_date): no_bad_ticks passes, and so does
    no_bad_intraday_prices with SA's, SB's and SC's bars of INTRADAY recorded. Every later build is green (no
    --exclude), the mart holds the bars as they landed, and symbol_coverage counts each symbol's verified bars."""
    rows = pd.concat([one_spike(base["frame"]), bad_intraday_prices(base["frame"])])
    verified = f"SA,{SPIKE},close confirmed by the exchange's official close\n" + "".join(
        f"{symbol},{INTRADAY},print confirmed by the consolidated tape\n" for symbol in ("SA", "SB", "SC")
    )
    result, settings = build_with(base, rows, verified=verified)
    try:
        assert result.returncode == 0, result.output[-4000:]
        statuses = result.statuses()
        assert [statuses[BAD_TICKS], statuses[BAD_INTRADAY]] == ["pass", "pass"]
        assert {test: statuses[test] for test in VERIFIED_TESTS} == dict.fromkeys(VERIFIED_TESTS, "pass")
        assert {model: statuses[model] for model in MART_MODELS} == dict.fromkeys(MART_MODELS, "success")
        with connect(settings) as conn:
            (recorded,) = conn.execute("select count(*) from seeds.verified_price_moves").fetchone()
            (close,) = conn.execute(
                "select close from marts.training_bars where symbol = 'SA' and session_date = %s", (SPIKE,)
            ).fetchone()
            (high,) = conn.execute(
                "select high from marts.training_bars where symbol = 'SA' and session_date = %s", (INTRADAY,)
            ).fetchone()
            verified_by_symbol = dict(
                conn.execute(
                    "select symbol, sessions_verified_moves from marts.symbol_coverage where symbol in ('SA', 'SB', 'SC')"
                ).fetchall()
            )
        landed = rows.set_index(["symbol", rows["session_date"].astype(str)])
        assert recorded == 4
        assert verified_by_symbol == {"SA": 2, "SB": 1, "SC": 1}
        assert close == landed.loc[("SA", SPIKE), "close"]
        assert high == landed.loc[("SA", INTRADAY), "high"]
    finally:
        scratch_database.drop_database(settings)


def test_a_verified_row_hides_only_its_own_symbol_and_session(base: dict) -> None:
    """Rows recorded for the session before SA's jump, the session it was back, SB on the jump's session, and SB's
    bar of INTRADAY: SA's jump still fails no_bad_ticks, and SA's and SC's bars of INTRADAY still fail
    no_bad_intraday_prices (SB's passes). The mart waits."""
    rows = pd.concat([one_spike(base["frame"]), bad_intraday_prices(base["frame"])])
    sa = sessions_from(base["frame"], "SA", "2024-03-01")
    before, after = sa[sa.index(SPIKE) - 1], sa[sa.index(SPIKE) + 1]
    verified = (
        f"SA,{before},checked: the session before the jump\n"
        f"SA,{after},checked: the session it was back\n"
        f"SB,{SPIKE},checked: another symbol that session\n"
        f"SB,{INTRADAY},print confirmed by the consolidated tape\n"
    )
    result, settings = build_with(base, rows, verified=verified, store_failures=True)
    try:
        assert result.returncode != 0
        assert result.failed() == {BAD_TICKS, BAD_INTRADAY}, result.output[-4000:]
        ticks = failure_rows(settings, BAD_TICKS)
        assert ticks[["symbol", "previous_session", "session_date", "back_session"]].values.tolist() == [
            ["SA", date.fromisoformat(before), date.fromisoformat(SPIKE), date.fromisoformat(after)]
        ]
        intraday = failure_rows(settings, BAD_INTRADAY).sort_values("symbol")
        assert intraday[["symbol", "session_date"]].values.tolist() == [
            ["SA", date.fromisoformat(INTRADAY)],
            ["SC", date.fromisoformat(INTRADAY)],
        ]
        assert {model: result.statuses()[model] for model in MART_MODELS} == dict.fromkeys(MART_MODELS, "skipped")
    finally:
        scratch_database.drop_database(settings)


def test_a_verified_row_that_records_no_real_session_fails_its_test(base: dict) -> None:
    """Mistakes in verified_price_moves.csv: a Saturday (no bar is dated so), the same bar twice, no reason or one
    without a word, a symbol not spelled as the warehouse spells it. Each fails its own test, and so the build."""
    verified = (
        f"SA,{SPIKE},close confirmed by the exchange\n"
        f"SA,{SPIKE},confirmed again\n"
        "SA,2024-02-17,a Saturday\n"
        "SB,2024-03-15,\n"
        "SC,2024-03-18,-\n"
        "brk.b,2024-03-15,confirmed by the exchange\n"
    )
    result, settings = build_with(base, one_spike(base["frame"]), verified=verified, store_failures=True)
    try:
        assert result.returncode != 0
        assert result.failed() == {
            "verified_price_moves_one_row_per_symbol_and_session",
            "verified_price_moves_session_date_is_exchange_session",
            "not_null_verified_price_moves_reason",
            "verified_price_moves_reason_says_why",
            "verified_price_moves_symbol_as_the_warehouse_spells_it",
        }, result.output[-4000:]
        unknown = failure_rows(settings, "verified_price_moves_session_date_is_exchange_session")
        assert unknown["from_field"].tolist() == [date(2024, 2, 17)]
        twice = failure_rows(settings, "verified_price_moves_one_row_per_symbol_and_session")
        assert twice[["symbol", "session_date", "occurrences"]].values.tolist() == [
            ["SA", date.fromisoformat(SPIKE), 2]
        ]
        assert failure_rows(settings, "verified_price_moves_reason_says_why")["reason"].tolist() == ["-"]
        spelled = failure_rows(settings, "verified_price_moves_symbol_as_the_warehouse_spells_it")
        assert spelled["symbol"].tolist() == ["brk.b"]
    finally:
        scratch_database.drop_database(settings)
