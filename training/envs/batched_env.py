"""The native environment, batched: many episodes stepped together in one NumPy call.

:class:`BatchedTrading` holds the state of N episodes (which symbol, which session, cash, shares, position) as
arrays and applies the fill rule of envs/fill_rule.py to all of them at once. Two things drive it:

* :class:`NativeVecEnv`, a stable-baselines3 ``VecEnv`` for training: N environments that each draw a symbol per
  episode from their own seeded generator, exactly as N :class:`NativeTradingEnv` copies in a ``DummyVecEnv``
  would (the parity tests hold it to the same observations, rewards and episodes), without N Python calls per step;
* the evaluation replays (training/evaluation.py), which trade every symbol of a split side by side, once per
  policy (and once per draw of the random baseline).

The observation of an episode at decision session t is the same flat vector the single environment builds
(layout in envs/spaces.py): every window of every series is laid out once, so a step gathers rows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium.utils.seeding import np_random
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from training.envs import fill_rule
from training.envs.fill_rule import Position
from training.envs.spaces import (
    EnvSettings,
    action_space,
    choose_series,
    observation_size,
    observation_space,
    validate_series,
)
from training.market_data import SymbolSeries

_DELAY = fill_rule.FILL_DELAY_SESSIONS


class MarketArrays:
    """Every series concatenated: prices by global row, and every observation window by global window row."""

    def __init__(self, series: Sequence[SymbolSeries], window: int) -> None:
        validate_series(series, window)
        self.series = list(series)
        self.window = window
        self.symbols = [s.symbol for s in self.series]
        self.lengths = np.array([len(s) for s in self.series], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        # Window row of (series i, decision session t) = window_starts[i] + t - (window - 1).
        self.window_starts = np.concatenate([[0], np.cumsum(self.lengths - window + 1)[:-1]]).astype(np.int64)
        self.open = np.concatenate([s.open for s in self.series]).astype(np.float64)
        self.close = np.concatenate([s.close for s in self.series]).astype(np.float64)
        self.n_features = self.series[0].features.shape[1]
        self.windows = np.concatenate([_flat_windows(s.features, window) for s in self.series])

    def __len__(self) -> int:
        return len(self.series)


def _flat_windows(features: np.ndarray, window: int) -> np.ndarray:
    """Row i: the feature rows i .. i+window-1, oldest first, flattened (float32)."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(features, (window, features.shape[1]))[:, 0]
    return windows.reshape(len(windows), -1)


class BatchedTrading:
    """N long/flat episodes of the native environment, stepped together."""

    def __init__(self, market: MarketArrays, settings: EnvSettings, n: int) -> None:
        self.market = market
        self.settings = settings
        self.n = n
        self.series_index = np.zeros(n, dtype=np.int64)
        self.t = np.full(n, settings.window - 1, dtype=np.int64)
        self.cash = np.full(n, settings.initial_cash, dtype=np.float64)
        self.shares = np.zeros(n, dtype=np.float64)
        self.position = np.zeros(n, dtype=np.int64)
        self.net_worth = np.full(n, settings.initial_cash, dtype=np.float64)
        self._obs_dim = observation_size(settings.window, market.n_features)

    def start(self, episodes: np.ndarray, series_index: np.ndarray) -> None:
        """(Re)start ``episodes`` (indices) on ``series_index``: flat, initial cash, at the first full window."""
        self.series_index[episodes] = series_index
        self.t[episodes] = self.settings.window - 1
        self.cash[episodes] = self.settings.initial_cash
        self.shares[episodes] = 0.0
        self.position[episodes] = int(Position.FLAT)
        self.net_worth[episodes] = self.settings.initial_cash

    def observe(self, episodes: np.ndarray | slice = slice(None)) -> np.ndarray:
        series_index, t = self.series_index[episodes], self.t[episodes]
        rows = self.market.window_starts[series_index] + t - (self.settings.window - 1)
        obs = np.empty((len(rows), self._obs_dim), dtype=np.float32)
        obs[:, :-1] = self.market.windows[rows]
        obs[:, -1] = self.position[episodes]
        return obs

    def last_decision(self) -> np.ndarray:
        """Per episode, the last session whose next open exists (N-1-delay)."""
        return self.market.lengths[self.series_index] - 1 - _DELAY

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Apply the fill rule to every episode (or to the ``active`` ones; the others stand still).

        Returns (rewards, truncated): the log change of net worth, and whether the episode's data has ended.
        """
        target = np.asarray(actions).reshape(self.n).astype(np.int64)
        if np.any((target != int(Position.FLAT)) & (target != int(Position.LONG))):
            raise ValueError(f"actions must be 0 (flat) or 1 (long), got {np.unique(target).tolist()}")
        moving = np.ones(self.n, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        fill = self.t + _DELAY * moving
        rows = self.market.starts[self.series_index] + fill
        commission, slippage = self.settings.commission, self.settings.slippage
        buy = moving & (target == int(Position.LONG)) & (self.position == int(Position.FLAT))
        sell = moving & (target == int(Position.FLAT)) & (self.position == int(Position.LONG))
        if buy.any():
            price = fill_rule.buy_price(self.market.open[rows[buy]], slippage)
            self.shares[buy] = fill_rule.shares_bought(self.cash[buy], price, commission)
            self.cash[buy] = 0.0
        if sell.any():
            price = fill_rule.sell_price(self.market.open[rows[sell]], slippage)
            self.cash[sell] = fill_rule.cash_from_sale(self.shares[sell], price, commission)
            self.shares[sell] = 0.0
        self.position = np.where(moving, target, self.position)
        self.t = fill
        previous = self.net_worth
        self.net_worth = self.cash + self.shares * self.market.close[rows]
        rewards = np.log(fill_rule.reward_net_worth(self.net_worth) / fill_rule.reward_net_worth(previous))
        return rewards, fill > self.last_decision()


class NativeVecEnv(VecEnv):
    """``n_envs`` native trading environments in one ``VecEnv``, stepped by one NumPy call.

    Behaves like ``DummyVecEnv`` over ``Monitor(NativeTradingEnv)`` copies: environment i is seeded with
    ``seed + i`` (``VecEnv.seed``, which PPO calls), draws its symbol per episode from that generator, resets
    itself when its episode ends, and reports ``terminal_observation``, ``TimeLimit.truncated`` and Monitor's
    ``episode`` statistics in its info dict.
    """

    def __init__(self, series: Sequence[SymbolSeries], settings: EnvSettings, n_envs: int) -> None:
        self.market = MarketArrays(series, settings.window)
        self.settings = settings
        self.render_mode = None
        self._trading = BatchedTrading(self.market, settings, n_envs)
        self._rngs: list[np.random.Generator | None] = [None] * n_envs
        self._actions = np.zeros(n_envs, dtype=np.int64)
        self._episode_return = np.zeros(n_envs, dtype=np.float64)
        self._episode_length = np.zeros(n_envs, dtype=np.int64)
        self._created = time.time()
        super().__init__(
            n_envs,
            observation_space(settings.window, self.market.n_features, settings.observation_clip),
            action_space(),
        )

    # --- episodes -------------------------------------------------------------------------------------------
    def _begin(self, index: int, options: dict[str, Any] | None) -> None:
        rng = self._rngs[index]
        if rng is None:
            rng, _ = np_random(None)  # as gymnasium does for an environment that was never seeded
            self._rngs[index] = rng
        series_index = choose_series(rng, self.market.series, options)
        self._trading.start(np.array([index]), np.array([series_index]))
        self._episode_return[index] = 0.0
        self._episode_length[index] = 0

    def _infos(self, envs: Sequence[int] | slice = slice(None)) -> list[dict[str, Any]]:
        """The info dicts of ``envs``, one array conversion each: per-environment scalars were most of a step."""
        trading = self._trading
        return [
            {"symbol": self.market.symbols[series_index], "session_index": t, "net_worth": worth, "position": held}
            for series_index, t, worth, held in zip(
                trading.series_index[envs].tolist(),
                trading.t[envs].tolist(),
                trading.net_worth[envs].tolist(),
                trading.position[envs].tolist(),
                strict=True,
            )
        ]

    def reset(self) -> VecEnvObs:
        for index in range(self.num_envs):
            if self._seeds[index] is not None:
                self._rngs[index], _ = np_random(self._seeds[index])
            self._begin(index, self._options[index] or None)
            self.reset_infos[index] = self._infos([index])[0]
        self._reset_seeds()
        self._reset_options()
        return self._trading.observe()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        rewards, truncated = self._trading.step(self._actions)
        self._episode_return += rewards
        self._episode_length += 1
        obs = self._trading.observe()
        infos = self._infos()
        for info, ended in zip(infos, truncated.tolist(), strict=True):
            info["TimeLimit.truncated"] = ended  # the data ends, the market does not
        for index in np.flatnonzero(truncated):
            info = infos[index]
            info["terminal_observation"] = obs[index].copy()
            info["episode"] = {
                "r": round(float(self._episode_return[index]), 6),
                "l": int(self._episode_length[index]),
                "t": round(time.time() - self._created, 6),
            }
            self._begin(int(index), None)
            self.reset_infos[index] = self._infos([index])[0]
            obs[index] = self._trading.observe(np.array([index]))[0]
        return obs, rewards.astype(np.float32), truncated.copy(), infos

    def close(self) -> None:
        pass

    # --- the rest of the VecEnv interface: there are no wrapped sub-environments to reach ----------------------
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if attr_name != "render_mode":
            raise AttributeError(f"NativeVecEnv has no per-environment attribute {attr_name!r}")

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        raise AttributeError(f"NativeVecEnv has no sub-environments to call {method_name!r} on")

    def env_is_wrapped(self, wrapper_class: type[gymnasium.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        # Monitor's statistics are built in (info['episode']), so SB3's evaluate_policy need not warn.
        from stable_baselines3.common.monitor import Monitor

        return [wrapper_class is Monitor for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]
