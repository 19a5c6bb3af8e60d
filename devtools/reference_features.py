"""Every feature of ``marts.training_bars`` (and its target) computed independently with pandas.

The SQL in warehouse/models/intermediate/int_bars_featurized.sql is the product; this is its cross-check
(tests/test_dbt_build.py compares the two within 1e-9 on every row) and the feature computation of the synthetic
mart (devtools/synthetic_mart.py), so the test double computes exactly what the warehouse does. The definitions
are in warehouse/models/marts/training_bars.yml; a test checks that this module computes exactly its features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TARGET = "target_log_return_next"


def reference_features(bars: pd.DataFrame) -> pd.DataFrame:
    """The features and the target of one symbol's bars (open, high, low, close, volume), sorted by session.

    Returns a frame with the same index, one column per feature in the mart's order, then the target.
    """
    close, high, low, volume = bars["close"], bars["high"], bars["low"], bars["volume"]
    previous = close.shift(1)
    out = pd.DataFrame(index=bars.index)
    out["log_return_1"] = np.log(close / previous)
    out["log_return_5"] = np.log(close / close.shift(5))
    out["log_return_20"] = np.log(close / close.shift(20))
    out["realized_vol_20"] = out["log_return_1"].rolling(20).std(ddof=1)
    out["close_to_sma_10"] = close / close.rolling(10).mean() - 1
    out["close_to_sma_50"] = close / close.rolling(50).mean() - 1
    change = close.diff()
    avg_gain = change.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    avg_loss = (-change).clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    rs = avg_gain / avg_loss
    out["rsi_14"] = np.where(avg_loss == 0, np.where(avg_gain == 0, 50.0, 100.0), 100 - 100 / (1 + rs))
    out.loc[change.isna(), "rsi_14"] = np.nan
    macd = close.ewm(span=12, adjust=False).mean() - close.ewm(span=26, adjust=False).mean()
    signal = macd.ewm(span=9, adjust=False).mean()
    out["macd_to_close"] = macd / close
    out["macd_signal_to_close"] = signal / close
    out["macd_hist_to_close"] = (macd - signal) / close
    true_range = pd.concat([high - low, (high - previous).abs(), (low - previous).abs()], axis=1).max(axis=1)
    true_range.iloc[0] = high.iloc[0] - low.iloc[0]
    out["atr_14_to_close"] = true_range.ewm(alpha=1 / 14, adjust=False).mean() / close
    volume_std = volume.rolling(20).std(ddof=1)
    zscore = (volume - volume.rolling(20).mean()) / volume_std.where(volume_std > 0)
    out["volume_zscore_20"] = zscore.where(volume_std != 0, 0.0)  # 20 equal volumes: the volume is its mean
    out["high_low_range"] = (high - low) / close
    out[TARGET] = np.log(close.shift(-1) / close)
    return out
