"""Replay every symbol's whole split with the agent and three baselines, and measure each equity curve.

Replays are deterministic: each symbol's episode is chosen by name (not sampled), the agent acts on its most likely
action (``deterministic=True``, configurable), and the random baseline draws from a generator seeded by the run's
seed, the split and the symbol. Aggregates ('__all__') trade all symbols of a split side by side, each with the same
starting cash (see metrics.pooled_metrics).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.envs import EnvSettings, make_env
from training.envs.fill_rule import Position
from training.market_data import SymbolSeries
from training.metrics import METRICS, drawdown, equity_metrics, pooled_metrics

logger = logging.getLogger(__name__)

AGENT = "agent"
BASELINES = ("buy_and_hold", "flat", "random")
POLICIES = (AGENT, *BASELINES)
AGGREGATE_SYMBOL = "__all__"

Policy = Callable[[np.ndarray], int]
PolicyFactory = Callable[[str, str], Policy]
"""Given (split, symbol), a fresh policy for that episode."""


@dataclass(frozen=True)
class EquityCurve:
    """Net worth at each session's close over one replayed episode, and the position held during the session."""

    split: str
    symbol: str
    policy: str
    dates: np.ndarray
    net_worth: np.ndarray
    positions: np.ndarray

    @property
    def drawdown(self) -> np.ndarray:
        return drawdown(self.net_worth)


@dataclass(frozen=True)
class Evaluation:
    curves: list[EquityCurve]
    metrics: pd.DataFrame
    """Long format: split, symbol, policy, metric, value (NaN where undefined)."""
    initial_cash: float

    def combined_curve(self, split: str, policy: str) -> pd.Series:
        """Sum of the symbols' net worths per session (each starts with the same cash), indexed by date."""
        curves = [c for c in self.curves if c.split == split and c.policy == policy]
        return combined_net_worth(curves, self.initial_cash)

    def wide(self, split: str, symbol: str = AGGREGATE_SYMBOL) -> pd.DataFrame:
        """Metrics of one split and symbol as a policy x metric table."""
        rows = self.metrics[(self.metrics["split"] == split) & (self.metrics["symbol"] == symbol)]
        table = rows.pivot(index="policy", columns="metric", values="value")
        return table.reindex(index=[p for p in POLICIES if p in table.index], columns=list(METRICS))


def combined_net_worth(curves: Sequence[EquityCurve], initial_cash: float) -> pd.Series:
    """Before a symbol's first session its sleeve is still cash; after its last, it keeps its last value."""
    if not curves:
        return pd.Series(dtype=np.float64)
    frame = pd.concat(
        [pd.Series(c.net_worth, index=pd.DatetimeIndex(c.dates), name=c.symbol) for c in curves], axis=1
    ).sort_index()
    return frame.ffill().fillna(initial_cash).sum(axis=1)


def constant_policy(position: Position) -> PolicyFactory:
    return lambda split, symbol: lambda obs: int(position)


def random_policy(seed: int) -> PolicyFactory:
    """Long or flat with probability 1/2 each session, from a generator seeded by (seed, split, symbol)."""

    def factory(split: str, symbol: str) -> Policy:
        rng = np.random.default_rng([seed, zlib.crc32(f"{split}/{symbol}".encode())])
        return lambda obs: int(rng.integers(2))

    return factory


def agent_policy(model, deterministic: bool = True) -> PolicyFactory:
    def factory(split: str, symbol: str) -> Policy:
        def act(obs: np.ndarray) -> int:
            action, _ = model.predict(obs, deterministic=deterministic)
            return int(action)

        return act

    return factory


def baseline_policies(seed: int) -> dict[str, PolicyFactory]:
    return {
        "buy_and_hold": constant_policy(Position.LONG),
        "flat": constant_policy(Position.FLAT),
        "random": random_policy(seed),
    }


def replay(env, series: SymbolSeries, policy_name: str, policy: Policy) -> EquityCurve:
    """Run one whole episode of ``series`` in ``env`` and record its equity curve."""
    obs, info = env.reset(options={"symbol": series.symbol})
    indices, net_worth, positions = [info["session_index"]], [info["net_worth"]], [info["position"]]
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(policy(obs))
        indices.append(info["session_index"])
        net_worth.append(info["net_worth"])
        positions.append(info["position"])
        done = terminated or truncated
    return EquityCurve(
        split=series.split,
        symbol=series.symbol,
        policy=policy_name,
        dates=series.dates[np.asarray(indices)],
        net_worth=np.asarray(net_worth, dtype=np.float64),
        positions=np.asarray(positions, dtype=np.int8),
    )


def evaluate(
    env_kind: str,
    series_by_split: dict[str, list[SymbolSeries]],
    settings: EnvSettings,
    policies: dict[str, PolicyFactory],
) -> Evaluation:
    """Replay every symbol of every split with every policy; metrics per symbol and for all symbols together."""
    curves: list[EquityCurve] = []
    rows: list[tuple[str, str, str, str, float]] = []
    for split, series in series_by_split.items():
        env = make_env(env_kind, series, settings)
        try:
            for policy_name, factory in policies.items():
                split_curves = [replay(env, s, policy_name, factory(split, s.symbol)) for s in series]
                for curve in split_curves:
                    for metric, value in equity_metrics(curve.net_worth, curve.positions).items():
                        rows.append((split, curve.symbol, policy_name, metric, value))
                combined = combined_net_worth(split_curves, settings.initial_cash)
                pooled = pooled_metrics(combined.to_numpy(), [(c.net_worth, c.positions) for c in split_curves])
                for metric, value in pooled.items():
                    rows.append((split, AGGREGATE_SYMBOL, policy_name, metric, value))
                curves += split_curves
        finally:
            env.close()
        logger.info("evaluated %d symbols x %d policies on %s", len(series), len(policies), split)
    metrics = pd.DataFrame(rows, columns=["split", "symbol", "policy", "metric", "value"])
    return Evaluation(curves=curves, metrics=metrics, initial_cash=settings.initial_cash)
