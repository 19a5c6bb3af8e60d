"""Replay every symbol of a split with a policy, all symbols side by side, and measure the result.

A replay trades each symbol of the split from its first full window to its last session, with the same starting
cash, through the batched native environment (envs/batched_env.py: the fill rule and costs of envs/fill_rule.py,
parity-tested against both single environments). The symbols together form one pooled book: its net worth is the
sum of the symbols' net worths (a symbol's sleeve is cash before its first session and keeps its last value after
its last), and its daily returns are what the statistics resample.

Policies act on a whole batch of episodes at once (:class:`BatchPolicy`); the agent and every baseline
(training/baselines.py) go through the same replay, so they pay the same costs on the same sessions.
:func:`replay_episode` is the one-environment reference the batched replay is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from training.envs.batched_env import BatchedTrading, MarketArrays
from training.envs.spaces import EnvSettings
from training.market_data import SymbolSeries
from training.metrics import METRICS, RETURN_METRICS, daily_returns, equity_metrics


@dataclass(frozen=True)
class ReplayStep:
    """What a policy may look at when it decides, for every episode of the batch."""

    observations: np.ndarray | None
    """(episodes, observation size): the environment's observations (window of features + position); None for a
    policy that says it does not look at them (``observes = False``)."""
    sessions: np.ndarray
    """(episodes,) the decision session's index in its series."""
    series_index: np.ndarray
    """(episodes,) which series each episode trades."""
    draw: np.ndarray
    """(episodes,) which draw of a multi-draw policy the episode belongs to (0 for the others)."""
    positions: np.ndarray
    """(episodes,) the position held now (0 flat, 1 long)."""


class BatchPolicy(Protocol):
    name: str
    draws: int
    """How many independent copies of each episode to replay (the random baseline averages over draws)."""
    observes: bool
    """Whether the policy reads the observations (building them for thousands of episodes costs time)."""

    def actions(self, step: ReplayStep) -> np.ndarray: ...


@dataclass(frozen=True)
class PolicyReplay:
    """One policy over one split: the pooled book and each symbol's own metrics."""

    policy: str
    split: str
    dates: np.ndarray
    """datetime64[D], the sessions of the pooled curve (the first is the close before the first fill)."""
    net_worth: np.ndarray
    """Pooled net worth at each date (for several draws: the growth of the draws' mean daily return)."""
    exposure: np.ndarray
    """(sessions - 1,) fraction of the symbols trading that session that were long during it."""
    turnover: np.ndarray
    """(sessions - 1,) fraction of the symbols trading that session whose position changed at its open."""
    hit_rate: float
    trades: float
    symbols: int
    symbol_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    """symbol -> metric -> value (averaged over draws)."""

    @property
    def returns(self) -> np.ndarray:
        return daily_returns(self.net_worth)

    @property
    def sessions(self) -> int:
        """Sessions with a return (one fewer than the curve's points)."""
        return len(self.net_worth) - 1

    def metrics(self) -> dict[str, float]:
        returns = self.returns
        values = {name: float(metric(returns)) for name, metric in RETURN_METRICS.items()}
        values["turnover"] = float(self.turnover.mean()) if len(self.turnover) else float("nan")
        values["exposure"] = float(self.exposure.mean()) if len(self.exposure) else float("nan")
        values["hit_rate"] = self.hit_rate
        values["trades"] = self.trades
        return {name: values[name] for name in METRICS}


def replay(
    split: str, series: Sequence[SymbolSeries], settings: EnvSettings, policy: BatchPolicy, market=None
) -> PolicyReplay:
    """Trade every symbol of ``series`` with ``policy`` (``policy.draws`` times each), all in one batch."""
    market = market or MarketArrays(series, settings.window)
    k, draws = len(market), max(int(policy.draws), 1)
    n = k * draws
    series_index = np.tile(np.arange(k), draws)
    draw = np.repeat(np.arange(draws), k)
    trading = BatchedTrading(market, settings, n)
    trading.start(np.arange(n), series_index)
    steps = market.lengths[series_index] - settings.window  # each episode has N - window steps
    worth = np.empty((int(steps.max()) + 1, n))
    held = np.zeros((int(steps.max()) + 1, n), dtype=np.int8)
    worth[0] = trading.net_worth
    for j in range(int(steps.max())):
        active = steps > j
        observations = trading.observe() if getattr(policy, "observes", True) else None
        decision = ReplayStep(observations, trading.t.copy(), series_index, draw, trading.position.copy())
        actions = np.where(active, np.asarray(policy.actions(decision)).reshape(n), trading.position)
        trading.step(actions, active)  # a finished episode stands still on its last session
        worth[j + 1] = np.where(active, trading.net_worth, worth[j])
        held[j + 1] = np.where(active, trading.position, held[j])
    return _pool(split, policy.name, market, settings, worth, held, steps, draws)


def _pool(
    split: str,
    policy: str,
    market: MarketArrays,
    settings: EnvSettings,
    worth: np.ndarray,
    held: np.ndarray,
    steps: np.ndarray,
    draws: int,
) -> PolicyReplay:
    """Align the episodes on the union of their dates and pool the symbols of each draw into one book."""
    k = len(market)
    first = settings.window - 1
    per_series_dates = [s.dates[first:] for s in market.series]
    dates = np.unique(np.concatenate(per_series_dates))
    n_dates = len(dates)
    positions = [np.searchsorted(dates, d) for d in per_series_dates]

    values = np.full((n_dates, k * draws), np.nan)
    position = np.full((n_dates, k * draws), np.nan)
    active = np.zeros((n_dates, k * draws), dtype=bool)  # the symbol trades during that session
    for episode in range(k * draws):
        where = positions[episode % k]
        length = int(steps[episode]) + 1
        values[where, episode] = worth[:length, episode]
        position[where, episode] = held[:length, episode]
        active[where[1:], episode] = True
    # Before its first session a sleeve is cash; after its last it keeps its last value and position. So does it on
    # a session its symbol has no row for (halted all day: warehouse/seeds/known_missing_sessions.csv), so that a
    # position held through the halt is no trade when it reopens.
    values = pd.DataFrame(values).ffill().fillna(settings.initial_cash).to_numpy()
    position = pd.DataFrame(position).ffill().fillna(0).to_numpy(dtype=np.int8)

    pooled = values.reshape(n_dates, draws, k).sum(axis=2)  # (dates, draws)
    pooled_returns = daily_returns(pooled.T).T  # (dates - 1, draws); 0 after a draw's total loss, not 0/0
    mean_returns = pooled_returns.mean(axis=1)
    net_worth = k * settings.initial_cash * np.concatenate([[1.0], np.cumprod(1.0 + mean_returns)])

    trading_now = active[1:].reshape(n_dates - 1, draws, k)
    long_now = (position[1:] == 1).reshape(n_dates - 1, draws, k) & trading_now
    changed = (np.abs(np.diff(position.astype(np.int16), axis=0)) > 0).reshape(n_dates - 1, draws, k) & trading_now
    counted = np.maximum(trading_now.sum(axis=2), 1)
    exposure = (long_now.sum(axis=2) / counted).mean(axis=1)
    turnover = (changed.sum(axis=2) / counted).mean(axis=1)

    symbol_returns = daily_returns(values.T).T.reshape(n_dates - 1, draws, k)
    wins = (long_now & (symbol_returns > 0)).sum()
    long_total = long_now.sum()
    hit_rate = float(wins / long_total) if long_total else float("nan")
    trades = float(changed.sum() / draws)

    symbol_metrics: dict[str, dict[str, float]] = {}
    for index, symbol in enumerate(market.symbols):
        length = len(positions[index])
        columns = np.arange(draws) * k + index
        per_draw = equity_metrics(worth[:length, columns].T, held[:length, columns].T)
        symbol_metrics[symbol] = {name: _mean_of_defined(per_draw[name]) for name in METRICS}
    return PolicyReplay(
        policy=policy,
        split=split,
        dates=dates.astype("datetime64[D]"),
        net_worth=net_worth,
        exposure=exposure,
        turnover=turnover,
        hit_rate=hit_rate,
        trades=trades,
        symbols=k,
        symbol_metrics=symbol_metrics,
    )


def _mean_of_defined(values: np.ndarray) -> float:
    defined = values[np.isfinite(values)]
    return float(defined.mean()) if len(defined) else float("nan")


def replay_episode(env, series: SymbolSeries, act) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference replay of one symbol in a single environment: (session indices, net worth, positions).

    ``act(observation, session_index)`` returns the action. Used to test the batched replay against the
    native and TensorTrade environments.
    """
    obs, info = env.reset(options={"symbol": series.symbol})
    sessions, net_worth, positions = [info["session_index"]], [info["net_worth"]], [info["position"]]
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(act(obs, sessions[-1]))
        sessions.append(info["session_index"])
        net_worth.append(info["net_worth"])
        positions.append(info["position"])
        done = terminated or truncated
    return np.asarray(sessions), np.asarray(net_worth, dtype=np.float64), np.asarray(positions, dtype=np.int8)
