"""From mart rows to what an environment consumes: the rows a task may use (``MarketData``), then one
``SymbolSeries`` per symbol and split of a fold.

Features are standardised with statistics of the fold's **train split only** (a fitted parameter of the agent, like
its weights, stored in the run folder) and clipped, so observations have finite bounds. The target column never
enters a series: only the feature columns named by the mart YAML do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from training.features import KEY_COLUMNS, TRADED_PRICE_COLUMNS


@dataclass(frozen=True)
class MarketData:
    """The mart rows a task may use: keys, open, close and the features, sorted by symbol and session date.

    The target column is never part of it, so no task can observe the future return it describes.
    """

    frame: pd.DataFrame
    feature_names: tuple[str, ...]

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, feature_names: Sequence[str]) -> MarketData:
        columns = [*KEY_COLUMNS, *TRADED_PRICE_COLUMNS, *feature_names]
        rows = frame[columns].sort_values(list(KEY_COLUMNS), kind="mergesort").reset_index(drop=True)
        return cls(rows, tuple(feature_names))

    def until(self, last_session: date) -> MarketData:
        """Only the rows of sessions up to and including ``last_session``."""
        dates = pd.to_datetime(self.frame["session_date"]).dt.date
        return MarketData(self.frame[dates <= last_session].reset_index(drop=True), self.feature_names)


@dataclass(frozen=True)
class SymbolSeries:
    """The sessions of one symbol in one split, in date order, as arrays an environment indexes by session."""

    symbol: str
    split: str
    dates: np.ndarray
    """datetime64[D] session dates."""
    open: np.ndarray
    """float64 opens: the fill prices (see envs/fill_rule.py)."""
    close: np.ndarray
    """float64 closes: the marking prices."""
    features: np.ndarray
    """float32 (sessions, features): standardised, clipped feature rows; row t uses only bars <= t."""

    def __len__(self) -> int:
        return len(self.dates)


@dataclass(frozen=True)
class FeatureScaler:
    """Per-feature standardisation fitted on a fold's train rows: ``clip((x - mean) / std, -clip, clip)``."""

    feature_names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    clip: float

    @classmethod
    def fit(cls, train_rows: pd.DataFrame, feature_names: list[str], clip: float) -> FeatureScaler:
        if train_rows.empty:
            raise ValueError("cannot fit the feature scaler: the fold's train split has no rows")
        values = train_rows[feature_names].to_numpy(dtype=np.float64)
        mean = values.mean(axis=0)
        std = values.std(axis=0)
        # A constant feature carries no information; dividing by 1 keeps it finite instead of NaN.
        std = np.where(std > 1e-12, std, 1.0)
        return cls(tuple(feature_names), mean, std, float(clip))

    def transform(self, values: np.ndarray) -> np.ndarray:
        scaled = (np.asarray(values, dtype=np.float64) - self.mean) / self.std
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def to_dict(self) -> dict:
        return {
            "feature_names": list(self.feature_names),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "clip": self.clip,
        }


def build_series(rows: pd.DataFrame, split: str, scaler: FeatureScaler) -> list[SymbolSeries]:
    """One series per symbol of ``rows`` (the rows of one split of a fold), sorted by symbol then session date."""
    rows = rows.sort_values(["symbol", "session_date"], kind="mergesort")
    feature_names = list(scaler.feature_names)
    series = []
    for symbol, group in rows.groupby("symbol", sort=True):
        series.append(
            SymbolSeries(
                symbol=str(symbol),
                split=split,
                dates=pd.to_datetime(group["session_date"]).to_numpy(dtype="datetime64[D]"),
                open=group["open"].to_numpy(dtype=np.float64),
                close=group["close"].to_numpy(dtype=np.float64),
                features=scaler.transform(group[feature_names].to_numpy(dtype=np.float64)),
            )
        )
    return series
