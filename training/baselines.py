"""The policies a replay can trade: the agent and the baselines it has to beat.

Every baseline goes through the same replay as the agent (training/evaluation.py), so it trades at the same fills
and pays the same commission and slippage:

* ``buy_and_hold``: long from the first fill to the end;
* ``flat``: cash only (the zero line; a policy that loses money is worse than doing nothing);
* ``sma_crossover``: long while the fast simple moving average of the close (10 sessions) is above the slow one
  (50), computed from closes up to the decision session only (earlier mart rows included, later ones never);
* ``random``: a random policy matched to the agent: for each symbol, a two-state Markov chain whose long share and
  switching rate equal the agent's exposure and turnover on that symbol in the same split, so it is charged for
  the same amount of trading; averaged over ``draws`` seeded draws. A coin flip per session trades far more
  than the agent and is too easy to beat.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.envs.fill_rule import Position
from training.evaluation import ReplayStep
from training.market_data import SymbolSeries
from training.policies import AGENT, BUY_AND_HOLD, FLAT, RANDOM, SMA_CROSSOVER


@dataclass
class AgentPolicy:
    """A stable-baselines3 model's actions on a batch of observations."""

    model: object
    deterministic: bool = True
    name: str = AGENT
    draws: int = 1
    observes: bool = True

    def actions(self, step: ReplayStep) -> np.ndarray:
        actions, _ = self.model.predict(step.observations, deterministic=self.deterministic)
        return np.asarray(actions).reshape(-1)


@dataclass
class ConstantPolicy:
    position: Position
    name: str
    draws: int = 1
    observes: bool = False

    def actions(self, step: ReplayStep) -> np.ndarray:
        return np.full(len(step.sessions), int(self.position), dtype=np.int64)


def buy_and_hold() -> ConstantPolicy:
    return ConstantPolicy(Position.LONG, BUY_AND_HOLD)


def flat() -> ConstantPolicy:
    return ConstantPolicy(Position.FLAT, FLAT)


class SmaCrossoverPolicy:
    """Long at session t iff SMA(fast) > SMA(slow) of the closes through t; flat while either is undefined."""

    name = SMA_CROSSOVER
    draws = 1
    observes = False

    def __init__(self, signals: Sequence[np.ndarray]) -> None:
        lengths = np.array([len(signal) for signal in signals], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        self._signal = np.concatenate(signals).astype(np.int64)

    def actions(self, step: ReplayStep) -> np.ndarray:
        return self._signal[self._starts[step.series_index] + step.sessions]


def sma_signals(history: pd.DataFrame, series: Sequence[SymbolSeries], fast: int, slow: int) -> list[np.ndarray]:
    """Per series, 1 where SMA(fast) > SMA(slow) of the close at that session, else 0.

    ``history`` holds mart rows (symbol, session_date, close) of each symbol up to at least the series' last
    session; a rolling mean at session t uses closes of sessions <= t only, so earlier rows (from train or the
    gaps between splits) serve as the lookback and later rows change nothing.
    """
    signals = []
    for s in series:
        rows = history[history["symbol"] == s.symbol].sort_values("session_date", kind="mergesort")
        close = rows["close"].astype(np.float64).reset_index(drop=True)
        long = (close.rolling(fast).mean() > close.rolling(slow).mean()).to_numpy()
        dates = pd.to_datetime(rows["session_date"]).to_numpy(dtype="datetime64[D]")
        where = np.searchsorted(dates, s.dates)
        if np.any(where >= len(dates)) or not np.array_equal(dates[np.minimum(where, len(dates) - 1)], s.dates):
            raise ValueError(f"the history of {s.symbol} does not cover its series' sessions")
        signals.append(long[where].astype(np.int64))
    return signals


class MatchedRandomPolicy:
    """Random long/flat timing per symbol with the agent's exposure and turnover, over ``draws`` draws.

    For a symbol where the agent was long a fraction p of the sessions and changed position at a fraction q of
    them, each draw is a Markov chain that starts long with probability p and then goes flat -> long with
    probability q / (2(1 - p)) and long -> flat with probability q / (2p): in the long run it is long a fraction p
    of the time and switches at rate q (probabilities capped at 1).
    """

    name = RANDOM
    observes = False

    def __init__(self, exposure: np.ndarray, turnover: np.ndarray, draws: int, seed: Sequence[int]) -> None:
        self.draws = draws
        p = np.clip(np.asarray(exposure, dtype=np.float64), 0.0, 1.0)
        q = np.clip(np.nan_to_num(np.asarray(turnover, dtype=np.float64)), 0.0, 1.0)
        p = np.nan_to_num(p)
        with np.errstate(divide="ignore", invalid="ignore"):
            self._enter = np.where(p < 1.0, np.minimum(q / (2.0 * (1.0 - p)), 1.0), 1.0)
            self._leave = np.where(p > 0.0, np.minimum(q / (2.0 * p), 1.0), 1.0)
        self._long_share = p
        self._rng = np.random.default_rng(list(seed))
        self._state: np.ndarray | None = None

    def actions(self, step: ReplayStep) -> np.ndarray:
        index = step.series_index
        draws = self._rng.random(len(index))
        if self._state is None:
            self._state = (draws < self._long_share[index]).astype(np.int64)
        else:
            enter = (self._state == 0) & (draws < self._enter[index])
            leave = (self._state == 1) & (draws < self._leave[index])
            self._state = np.where(enter, 1, np.where(leave, 0, self._state))
        return self._state


def matched_random(
    agent_symbol_metrics: Mapping[str, Mapping[str, float]],
    symbols: Sequence[str],
    draws: int,
    seed: int,
    fold_id: int,
    split: str,
) -> MatchedRandomPolicy:
    """The random baseline matched to the agent's per-symbol exposure and turnover on one split of one fold."""
    exposure = np.array([agent_symbol_metrics[symbol]["exposure"] for symbol in symbols])
    turnover = np.array([agent_symbol_metrics[symbol]["turnover"] for symbol in symbols])
    return MatchedRandomPolicy(exposure, turnover, draws, (seed, fold_id, zlib.crc32(split.encode())))
