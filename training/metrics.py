"""Performance metrics of an equity curve: empyrical for the standard ratios, the trading statistics by hand.

An equity curve here is the net worth at the close of each session of an episode (the first value is the starting
cash, at the close of the first decision session) plus the position held *during* each session (0 flat, 1 long).
Metrics that are undefined (a Sharpe ratio without variance, a hit rate without exposure, a Sortino ratio
without losses) are NaN; they are stored as NULL.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

TRADING_DAYS_PER_YEAR = 252

METRICS = (
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "turnover",
    "exposure",
    "hit_rate",
    "trades",
)
"""Every metric this module computes, in report order."""

METRIC_DEFINITIONS = {
    "total_return": "net worth at the end / at the start - 1",
    "cagr": "compound annual growth rate (252 sessions a year; empyrical.cagr)",
    "sharpe": "annualised Sharpe ratio of daily returns, risk-free rate 0 (empyrical.sharpe_ratio)",
    "sortino": "annualised Sortino ratio, required return 0 (empyrical.sortino_ratio)",
    "max_drawdown": "largest peak-to-trough fall of net worth, as a negative fraction (empyrical.max_drawdown)",
    "calmar": "CAGR / |max drawdown| (empyrical.calmar_ratio)",
    "turnover": "fraction of net worth traded per session, on average (long/flat: position changes / sessions)",
    "exposure": "fraction of sessions spent long",
    "hit_rate": "fraction of the sessions spent long whose return was positive",
    "trades": "number of position changes (each one trades the whole net worth)",
}


def daily_returns(net_worth: np.ndarray) -> np.ndarray:
    net_worth = np.asarray(net_worth, dtype=np.float64)
    return net_worth[1:] / net_worth[:-1] - 1.0


def drawdown(net_worth: np.ndarray) -> np.ndarray:
    """Net worth relative to its running peak, minus 1 (0 at a new high, negative below it)."""
    net_worth = np.asarray(net_worth, dtype=np.float64)
    return net_worth / np.maximum.accumulate(net_worth) - 1.0


def _ratios(returns: np.ndarray) -> dict[str, float]:
    import empyrical

    if len(returns) == 0:
        return {name: float("nan") for name in ("cagr", "sharpe", "sortino", "max_drawdown", "calmar")}
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        values = {
            "cagr": empyrical.cagr(returns, annualization=TRADING_DAYS_PER_YEAR),
            "sharpe": empyrical.sharpe_ratio(returns, annualization=TRADING_DAYS_PER_YEAR),
            "sortino": empyrical.sortino_ratio(returns, annualization=TRADING_DAYS_PER_YEAR),
            "max_drawdown": empyrical.max_drawdown(returns),
            "calmar": empyrical.calmar_ratio(returns, annualization=TRADING_DAYS_PER_YEAR),
        }
    return {name: _finite_or_nan(value) for name, value in values.items()}


def _finite_or_nan(value: float) -> float:
    value = float(value)
    return value if np.isfinite(value) else float("nan")


def _trading_counts(returns: np.ndarray, positions: np.ndarray) -> tuple[int, int, int, int]:
    """(sessions, position changes, sessions long, long sessions with a positive return)."""
    held = np.asarray(positions[1:], dtype=np.int64)  # position during each session after the first close
    changes = int(np.abs(np.diff(np.asarray(positions, dtype=np.int64))).sum())
    long_sessions = held == 1
    return len(returns), changes, int(long_sessions.sum()), int((returns[long_sessions] > 0).sum())


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def equity_metrics(net_worth: np.ndarray, positions: np.ndarray) -> dict[str, float]:
    """All of METRICS for one equity curve; ``positions[i]`` is the position held during session i."""
    net_worth = np.asarray(net_worth, dtype=np.float64)
    returns = daily_returns(net_worth)
    sessions, changes, long_count, long_wins = _trading_counts(returns, np.asarray(positions))
    return {
        "total_return": float(net_worth[-1] / net_worth[0] - 1.0),
        **_ratios(returns),
        "turnover": _ratio(changes, sessions),
        "exposure": _ratio(long_count, sessions),
        "hit_rate": _ratio(long_wins, long_count),
        "trades": float(changes),
    }


def pooled_metrics(combined_net_worth: np.ndarray, curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Metrics of several symbols traded side by side with equal starting cash.

    Return and risk metrics come from ``combined_net_worth`` (the sum of the symbols' net worths per session);
    turnover, exposure and hit rate pool the sessions of all ``curves`` ((net_worth, positions) per symbol).
    """
    combined = np.asarray(combined_net_worth, dtype=np.float64)
    totals = np.zeros(4, dtype=np.int64)
    for net_worth, positions in curves:
        totals += _trading_counts(daily_returns(net_worth), np.asarray(positions))
    sessions, changes, long_count, long_wins = (int(value) for value in totals)
    return {
        "total_return": float(combined[-1] / combined[0] - 1.0),
        **_ratios(daily_returns(combined)),
        "turnover": _ratio(changes, sessions),
        "exposure": _ratio(long_count, sessions),
        "hit_rate": _ratio(long_wins, long_count),
        "trades": float(changes),
    }
