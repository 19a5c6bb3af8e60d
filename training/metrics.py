"""Performance metrics of daily returns, written once and vectorised over any leading axes.

The same functions score one equity curve, a fold's pooled curve, and thousands of bootstrap resamples at once
(``training/statistics.py``): ``returns`` has shape (..., sessions) and every metric reduces the last axis.

Conventions (the hand-computed tests in tests/test_training_evaluation.py pin each one):

* a daily return is ``net_worth[t] / net_worth[t-1] - 1``; an equity curve of N closes has N - 1 returns;
* Sharpe and Sortino are annualised with sqrt(252) and a zero risk-free rate; a series of zero returns (all cash)
  has Sharpe and Sortino 0, any other series without variance (or without losses, for Sortino) has NaN;
* CAGR and Calmar extrapolate to a year, so they are NaN when the window is shorter than one year (252 sessions):
  "−99.9% a year" from a two-day loss is not a result. Sharpe and Sortino are still reported from shorter
  windows, and every report marks them as annualised from that many sessions (``annualised_from``);
* max drawdown is the largest peak-to-trough fall of net worth (the starting value counts as a peak), as a
  negative fraction;
* a **total loss** (net worth reaching 0: a return of -100%) ends the curve: a ruined book stays at 0 and earns
  nothing (its returns after the ruin are 0, not 0/0), and nothing compounds back from zero. Total return, max
  drawdown and CAGR are -100% (CAGR whatever the window: -100% a year is exact, not an extrapolation), Calmar is -1,
  and Sharpe and Sortino are computed over the whole window like any curve's, the sessions after the ruin earning
  0: so a ruined curve's ratios are defined whenever a curve of that window's length has them, even after a ruin
  on the first session (returns -100%, 0, 0, ...). A bootstrap resample that puts other sessions after a ruin
  reads them as 0 too (:func:`after_ruin`). A return below -100% (a negative net worth, which the long/flat
  environments cannot reach) counts as -100%.
"""

from __future__ import annotations

import numpy as np

TRADING_DAYS_PER_YEAR = 252
"""Sessions in a year; annualisation factor of Sharpe/Sortino (sqrt) and CAGR, and the shortest CAGR window."""

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
"""Every metric of one equity curve, in report order."""

METRIC_DEFINITIONS = {
    "total_return": "net worth at the end / at the start - 1 (-100% after a total loss)",
    "cagr": "compound annual growth rate, (1 + total return)^(252 / sessions) - 1; not reported under 252 sessions "
    "(except a total loss: -100%)",
    "sharpe": "mean / standard deviation of daily returns x sqrt(252), risk-free rate 0 (0 for an all-cash curve; after "
    "a total loss the sessions to the end of the window return 0)",
    "sortino": "mean daily return / downside deviation (root mean square of the negative returns) x sqrt(252)",
    "max_drawdown": "largest peak-to-trough fall of net worth, as a negative fraction",
    "calmar": "CAGR / |max drawdown|; not reported under 252 sessions",
    "turnover": "fraction of net worth traded per session, on average (long/flat: position changes / sessions)",
    "exposure": "fraction of sessions spent long",
    "hit_rate": "fraction of the sessions spent long whose return was positive",
    "trades": "number of position changes (each one trades the whole net worth)",
}


def daily_returns(net_worth: np.ndarray) -> np.ndarray:
    """``net_worth[t] / net_worth[t-1] - 1`` along the last axis; 0 after a total loss (from a net worth of 0)."""
    net_worth = np.asarray(net_worth, dtype=np.float64)
    before, after = net_worth[..., :-1], net_worth[..., 1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(before == 0.0, 0.0, after / before - 1.0)


def after_ruin(returns: np.ndarray) -> np.ndarray:
    """``returns`` with the first total loss (-100% or worse) -100% exactly and every return after it 0: a ruined book
    holds nothing and earns nothing to the end of the window. What Sharpe and Sortino read; a real curve's
    :func:`daily_returns` already are so, a bootstrap resample's need not be. The array itself when nothing was lost
    (the usual case, at no cost)."""
    returns = np.asarray(returns, dtype=np.float64)
    lost = returns <= -1.0
    if not lost.any():
        return returns
    after_the_ruin = np.cumsum(lost, axis=-1) - lost > 0
    return np.where(after_the_ruin, 0.0, np.maximum(returns, -1.0))


def drawdown(net_worth: np.ndarray) -> np.ndarray:
    """Net worth relative to its running peak, minus 1 (0 at a new high, negative below it)."""
    net_worth = np.asarray(net_worth, dtype=np.float64)
    return net_worth / np.maximum.accumulate(net_worth, axis=-1) - 1.0


def _growth(returns: np.ndarray) -> np.ndarray:
    """1 + each return, never below 0 (a total loss, or worse, leaves nothing)."""
    return np.maximum(1.0 + np.asarray(returns, dtype=np.float64), 0.0)


def total_return(returns: np.ndarray) -> np.ndarray:
    return np.prod(_growth(returns), axis=-1) - 1.0


def _mean_and_std(returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample standard deviation of the returns (NaN where fewer than two)."""
    mean = returns.mean(axis=-1)
    std = returns.std(axis=-1, ddof=1) if returns.shape[-1] > 1 else np.full(mean.shape, np.nan)
    return mean, std


def sharpe(returns: np.ndarray) -> np.ndarray:
    returns = after_ruin(returns)
    mean, std = _mean_and_std(returns)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = mean / std * np.sqrt(TRADING_DAYS_PER_YEAR)
    return _zero_for_all_cash(returns, np.where(varies(std, mean), ratio, np.nan))


def varies(std: np.ndarray | float, mean: np.ndarray | float) -> np.ndarray:
    """Whether returns with this standard deviation and mean vary at all. A constant return (+0.1% every session) has
    no variance, but rounding leaves its standard deviation near 1e-19 and a Sharpe ratio near 1e14: a deviation under
    1e-9 of the mean's size counts as none."""
    return np.asarray(std) > 1e-9 * np.abs(mean)


def sortino(returns: np.ndarray) -> np.ndarray:
    returns = after_ruin(returns)
    downside = np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2, axis=-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = returns.mean(axis=-1) / downside * np.sqrt(TRADING_DAYS_PER_YEAR)
    return _zero_for_all_cash(returns, np.where(downside > 0, ratio, np.nan))


def _zero_for_all_cash(returns: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """A curve that never moved (all cash) earned nothing for no risk: ratio 0, not undefined."""
    return np.where(np.all(returns == 0.0, axis=-1), 0.0, ratio)


def max_drawdown(returns: np.ndarray) -> np.ndarray:
    growth = np.cumprod(_growth(returns), axis=-1)
    peaks = np.maximum(np.maximum.accumulate(growth, axis=-1), 1.0)  # the starting value is the first peak
    return np.minimum((growth / peaks - 1.0).min(axis=-1, initial=0.0), 0.0)


def cagr(returns: np.ndarray) -> np.ndarray:
    returns = np.asarray(returns, dtype=np.float64)
    sessions = returns.shape[-1]
    total = total_return(returns)
    if sessions < TRADING_DAYS_PER_YEAR:  # not extrapolated, except a total loss: nothing compounds back from zero
        return np.where(total <= -1.0, -1.0, np.nan)
    with np.errstate(invalid="ignore"):
        return (1.0 + total) ** (TRADING_DAYS_PER_YEAR / sessions) - 1.0


def calmar(returns: np.ndarray) -> np.ndarray:
    drawdowns = max_drawdown(returns)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(drawdowns < 0, cagr(returns) / np.abs(drawdowns), np.nan)


RETURN_METRICS = {
    "total_return": total_return,
    "cagr": cagr,
    "sharpe": sharpe,
    "sortino": sortino,
    "max_drawdown": max_drawdown,
    "calmar": calmar,
}
"""The metrics that depend on the returns alone (and so can be recomputed on resampled sessions)."""


def equity_metrics(net_worth: np.ndarray, positions: np.ndarray) -> dict[str, float | np.ndarray]:
    """All of METRICS for equity curves of shape (..., closes); ``positions[..., i]`` is held during session i.

    One curve gives floats; a stack of curves gives arrays. NaN where a metric is undefined.
    """
    net_worth = np.asarray(net_worth, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.int64)
    returns = daily_returns(net_worth)
    sessions = returns.shape[-1]
    held_long = positions[..., 1:] == 1  # the position during each session after the first close
    changes = np.abs(np.diff(positions, axis=-1)).sum(axis=-1).astype(np.float64)
    long_sessions = held_long.sum(axis=-1)
    wins = (held_long & (returns > 0)).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = {
            **{name: metric(returns) for name, metric in RETURN_METRICS.items()},
            "turnover": changes / sessions if sessions else np.full(changes.shape, np.nan),
            "exposure": long_sessions / sessions if sessions else np.full(changes.shape, np.nan),
            "hit_rate": np.where(long_sessions > 0, wins / np.maximum(long_sessions, 1), np.nan),
            "trades": changes,
        }
    if net_worth.ndim == 1:
        return {name: _finite_or_nan(values[name]) for name in METRICS}
    return {name: np.asarray(values[name], dtype=np.float64) for name in METRICS}


def _finite_or_nan(value: np.ndarray) -> float:
    value = float(value)
    return value if np.isfinite(value) else float("nan")
