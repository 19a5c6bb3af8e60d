"""What both environments share: their settings, the observation layout and how an episode picks its symbol.

Observation layout (float32, flat): the feature rows of sessions t-window+1 .. t, oldest first, each row in the
mart YAML's feature order, then one element holding the current position (0 flat, 1 long). Features arrive already
standardised and clipped to [-clip, clip] (see training/market_data.py), so the bounds below are exact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from training.envs.fill_rule import Position, bps_to_fraction
from training.market_data import SymbolSeries


@dataclass(frozen=True)
class EnvSettings:
    """Trading settings common to both environment implementations.

    No defaults: the jobs build them from a TrainConfig (training.fold_task.env_settings), whose fields hold the
    defaults and say what each setting means.
    """

    window: int
    initial_cash: float
    commission: float
    """Fraction of the traded amount (1 bp = 0.0001)."""
    slippage: float
    """Fraction of the open price moved against the trader."""
    observation_clip: float

    @classmethod
    def from_bps(
        cls, window: int, initial_cash: float, commission_bps: float, slippage_bps: float, observation_clip: float
    ) -> EnvSettings:
        return cls(
            window=window,
            initial_cash=initial_cash,
            commission=bps_to_fraction(commission_bps),
            slippage=bps_to_fraction(slippage_bps),
            observation_clip=observation_clip,
        )


def action_space() -> spaces.Discrete:
    return spaces.Discrete(len(Position))


def observation_size(window: int, n_features: int) -> int:
    """Numbers in one observation: ``window`` sessions of features, then the position held (0 or 1)."""
    return window * n_features + 1


def observation_space(window: int, n_features: int, clip: float) -> spaces.Box:
    low = np.full(observation_size(window, n_features), -clip, dtype=np.float32)
    high = np.full(observation_size(window, n_features), clip, dtype=np.float32)
    low[-1], high[-1] = 0.0, 1.0
    return spaces.Box(low=low, high=high, dtype=np.float32)


def validate_series(series: Sequence[SymbolSeries], window: int) -> None:
    if not series:
        raise ValueError("an environment needs at least one symbol series")
    n_features = {s.features.shape[1] for s in series}
    if len(n_features) != 1:
        raise ValueError(f"all series must have the same number of features, got {sorted(n_features)}")
    too_short = [f"{s.symbol} ({len(s)} sessions)" for s in series if len(s) < window + 1]
    if too_short:
        raise ValueError(f"these series are shorter than window + 1 = {window + 1} sessions: {', '.join(too_short)}")


def choose_series(rng: np.random.Generator, series: Sequence[SymbolSeries], options: Mapping[str, Any] | None) -> int:
    """Index of the series an episode trades: ``options['symbol']`` if given, else drawn uniformly with ``rng``."""
    if options and options.get("symbol") is not None:
        symbol = options["symbol"]
        for index, candidate in enumerate(series):
            if candidate.symbol == symbol:
                return index
        raise KeyError(f"symbol {symbol!r} is not among this environment's series")
    return int(rng.integers(len(series)))
