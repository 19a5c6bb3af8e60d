"""A realistic stand-in for ``marts.training_bars``, for tests and benchmarks that must not depend on dbt.

Prices are a seeded geometric random walk per symbol on real exchange sessions (XNYS); the 13 features follow the
mart contract's definitions (point in time: rolling windows that end at the row's own session); splits are
contiguous date ranges with ``embargo_sessions`` removed between them, as the dbt model does. ``write_mart`` creates
the table the way dbt would (schema ``marts`` owned by transformer, SELECT granted to trainer and analyst) and
``write_mart_yaml`` writes a dbt schema YAML listing the feature columns in the format training/features.py reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import yaml
from psycopg import sql

from market_calendar import sessions_until
from warehouse_db import schemas

MART_TABLE = "training_bars"
WARMUP_SESSIONS = 50
"""Sessions generated before the first mart row so that every feature has its full lookback (sma_50)."""

FEATURE_LOOKBACKS: dict[str, int] = {
    "log_return_1": 2,
    "log_return_5": 6,
    "log_return_20": 21,
    "realized_vol_20": 21,
    "close_to_sma_10": 10,
    "close_to_sma_50": 50,
    "rsi_14": 15,
    "macd_to_close": 26,
    "macd_signal_to_close": 34,
    "macd_hist_to_close": 34,
    "atr_14_to_close": 15,
    "volume_zscore_20": 20,
    "high_low_range": 1,
}
TARGET = "target_log_return_next"
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
MART_COLUMNS = ("symbol", "session_date", *PRICE_COLUMNS, *FEATURE_LOOKBACKS, TARGET, "split")


def session_dates(count: int, end: str = "2025-06-30") -> pd.DatetimeIndex:
    """The last ``count`` XNYS sessions up to ``end``."""
    return sessions_until(end, count)


def symbol_names(count: int) -> list[str]:
    """Distinct ticker-like names: SYM000, SYM001, ... (sorted order = creation order)."""
    return [f"SYM{index:03d}" for index in range(count)]


def _features(bars: pd.DataFrame) -> pd.DataFrame:
    close, high, low, volume = bars["close"], bars["high"], bars["low"], bars["volume"]
    log_close = np.log(close)
    one_day = log_close.diff()
    ema_12 = close.ewm(span=12, adjust=False).mean()
    ema_26 = close.ewm(span=26, adjust=False).mean()
    macd = ema_12 - ema_26
    signal = macd.ewm(span=9, adjust=False).mean()
    gain = one_day.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    loss = (-one_day.clip(upper=0)).ewm(alpha=1 / 14, adjust=False).mean()
    true_range = pd.concat([high - low, (high - close.shift()).abs(), (low - close.shift()).abs()], axis=1).max(axis=1)
    volume_mean = volume.rolling(20).mean()
    volume_std = volume.rolling(20).std()
    return pd.DataFrame(
        {
            "log_return_1": one_day,
            "log_return_5": log_close.diff(5),
            "log_return_20": log_close.diff(20),
            "realized_vol_20": one_day.rolling(20).std(),
            "close_to_sma_10": close / close.rolling(10).mean() - 1.0,
            "close_to_sma_50": close / close.rolling(50).mean() - 1.0,
            "rsi_14": 100.0 - 100.0 / (1.0 + gain / loss.where(loss > 0, 1e-12)),
            "macd_to_close": macd / close,
            "macd_signal_to_close": signal / close,
            "macd_hist_to_close": (macd - signal) / close,
            "atr_14_to_close": true_range.ewm(alpha=1 / 14, adjust=False).mean() / close,
            "volume_zscore_20": (volume - volume_mean) / volume_std.where(volume_std > 0, 1.0),
            "high_low_range": (high - low) / close,
        },
        index=bars.index,
    )


def synthetic_mart(
    n_symbols: int = 5,
    n_sessions: int = 300,
    *,
    seed: int = 0,
    embargo_sessions: int = 50,
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    end: str = "2025-06-30",
) -> pd.DataFrame:
    """Rows of a mart with ``n_symbols`` symbols over ``n_sessions`` sessions (embargo sessions included, removed).

    Sorted by symbol then session_date, columns in ``MART_COLUMNS`` order.
    """
    usable = n_sessions - 2 * embargo_sessions
    if usable < 30:
        raise ValueError("n_sessions leaves fewer than 30 sessions after removing two embargoes")
    rng = np.random.default_rng(seed)
    dates = session_dates(WARMUP_SESSIONS + n_sessions + 1, end=end)  # +1: the target of the last row
    frames = []
    for symbol in symbol_names(n_symbols):
        drift = rng.normal(0.0003, 0.0004)
        volatility = rng.uniform(0.01, 0.03)
        log_returns = rng.normal(drift, volatility, len(dates))
        close = 20.0 * np.exp(rng.uniform(0, 2)) * np.exp(np.cumsum(log_returns))
        gap = rng.normal(0.0, volatility / 3, len(dates))
        open_ = np.concatenate([[close[0]], close[:-1]]) * np.exp(gap)
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, volatility / 2, len(dates))))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, volatility / 2, len(dates))))
        volume = np.round(rng.lognormal(13.0, 0.4, len(dates)))
        bars = pd.DataFrame(
            {"open": open_, "high": high, "low": low, "close": close, "volume": volume},
            index=pd.Index(dates, name="session_date"),
        )
        frame = pd.concat([bars, _features(bars)], axis=1)
        frame[TARGET] = np.log(frame["close"].shift(-1) / frame["close"])
        frame = frame.iloc[WARMUP_SESSIONS:-1].reset_index()
        frame.insert(0, "symbol", symbol)
        frames.append(frame)
    mart = pd.concat(frames, ignore_index=True)

    # Contiguous splits by date, with the embargo sessions between them removed.
    mart_dates = dates[WARMUP_SESSIONS:-1]
    n_train = int(round(usable * split_fractions[0]))
    n_validation = int(round(usable * split_fractions[1]))
    train_end = n_train
    validation_start = train_end + embargo_sessions
    validation_end = validation_start + n_validation
    test_start = validation_end + embargo_sessions
    position = pd.Series(np.arange(len(mart_dates)), index=mart_dates)
    index = position.loc[mart["session_date"]].to_numpy()
    split = np.full(len(mart), "", dtype=object)
    split[index < train_end] = "train"
    split[(index >= validation_start) & (index < validation_end)] = "validation"
    split[index >= test_start] = "test"
    mart["split"] = split
    mart = mart[mart["split"] != ""].copy()
    mart["session_date"] = pd.to_datetime(mart["session_date"]).dt.date
    return mart[list(MART_COLUMNS)].sort_values(["symbol", "session_date"], kind="mergesort").reset_index(drop=True)


_SQL_TYPES = {"symbol": "text", "session_date": "date", "split": "text"}


def write_mart(conn: psycopg.Connection, mart: pd.DataFrame, *, table: str = MART_TABLE) -> None:
    """(Re)create ``marts.<table>`` from ``mart`` the way dbt would, and commit.

    ``conn`` must be a provisioned database's owner connection (member of transformer).
    """
    columns = list(mart.columns)
    definitions = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(_SQL_TYPES.get(name, "double precision")))
        for name in columns
    )
    target = sql.Identifier(schemas.MARTS, table)
    marts = sql.Identifier(schemas.MARTS)
    readers = sql.SQL("{}, {}").format(sql.Identifier(schemas.TRAINER_ROLE), sql.Identifier(schemas.ANALYST_ROLE))
    transformer = sql.Identifier(schemas.TRANSFORMER_ROLE)
    with conn.transaction():
        conn.execute(sql.SQL("create schema if not exists {} authorization {}").format(marts, transformer))
        conn.execute(sql.SQL("grant usage on schema {} to {}").format(marts, readers))
        conn.execute(sql.SQL("set local role {}").format(transformer))
        conn.execute(sql.SQL("drop table if exists {}").format(target))
        conn.execute(sql.SQL("create table {} ({})").format(target, definitions))
        copy_statement = sql.SQL("copy {} ({}) from stdin").format(
            target, sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        with conn.cursor().copy(copy_statement) as copy:
            for row in mart.itertuples(index=False, name=None):
                copy.write_row([None if isinstance(value, float) and np.isnan(value) else value for value in row])
        conn.execute(sql.SQL("grant select on {} to {}").format(target, readers))


def write_mart_yaml(path: Path, feature_lookbacks: dict[str, int] = FEATURE_LOOKBACKS) -> Path:
    """A dbt schema YAML for the synthetic mart, in the format of warehouse/models/marts/training_bars.yml."""
    columns = [
        {"name": "symbol", "description": "Ticker."},
        {"name": "session_date", "description": "Exchange session date."},
        *({"name": name, "description": f"Session {name}."} for name in PRICE_COLUMNS),
        *(
            {
                "name": name,
                "description": f"Feature {name}.",
                "meta": {"role": "feature", "lookback_sessions": lookback},
            }
            for name, lookback in feature_lookbacks.items()
        ),
        {"name": TARGET, "description": "ln(close[t+1] / close[t]).", "meta": {"role": "target"}},
        {"name": "split", "description": "train, validation or test."},
    ]
    document = {"version": 2, "models": [{"name": MART_TABLE, "description": "Synthetic mart.", "columns": columns}]}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path
