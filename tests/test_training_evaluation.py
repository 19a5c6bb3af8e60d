"""Metrics by hand, and replays: batched = one environment at a time, baselines pay the agent's costs."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from devtools.synthetic_mart import FEATURE_LOOKBACKS, lay_out_folds, synthetic_mart
from training.baselines import (
    ConstantPolicy,
    MatchedRandomPolicy,
    SmaCrossoverPolicy,
    buy_and_hold,
    flat,
    matched_random,
    sma_signals,
)
from training.envs import EnvSettings, make_env
from training.envs.fill_rule import Position
from training.evaluation import ReplayStep, replay, replay_episode
from training.market_data import FeatureScaler, SymbolSeries, build_series
from training.metrics import METRICS, TRADING_DAYS_PER_YEAR, drawdown, equity_metrics, sharpe

FEATURES = list(FEATURE_LOOKBACKS)
SETTINGS = EnvSettings.from_bps(window=5, initial_cash=10_000.0, commission_bps=10.0, slippage_bps=5.0,
                                observation_clip=10.0)  # fmt: skip


def test_trading_metrics_by_hand() -> None:
    net_worth = np.array([100.0, 100.0, 110.0, 99.0, 99.0, 108.9])
    positions = np.array([0, 1, 1, 1, 0, 1])  # held during each session
    metrics = equity_metrics(net_worth, positions)
    assert metrics["total_return"] == pytest.approx(0.089)
    assert metrics["trades"] == 3  # 0->1, 1->0, 0->1
    assert metrics["turnover"] == pytest.approx(3 / 5)
    assert metrics["exposure"] == pytest.approx(4 / 5)
    assert metrics["hit_rate"] == pytest.approx(2 / 4)  # +10%, +10% won; 0% and -10% did not
    assert metrics["max_drawdown"] == pytest.approx(-0.1)
    np.testing.assert_allclose(drawdown(net_worth), [0, 0, 0, -0.1, -0.1, -0.01], atol=1e-12)
    returns = net_worth[1:] / net_worth[:-1] - 1
    assert metrics["sharpe"] == pytest.approx(returns.mean() / returns.std(ddof=1) * np.sqrt(252))
    # Sortino: mean over the root mean square of the negative returns (zeros for the others), annualised.
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / len(returns))
    assert metrics["sortino"] == pytest.approx(returns.mean() / downside * math.sqrt(252))
    # Under a year of sessions, CAGR and Calmar are not reported (no extrapolating five sessions to a year).
    assert np.isnan(metrics["cagr"]) and np.isnan(metrics["calmar"])
    assert set(metrics) == set(METRICS)


def test_cagr_and_calmar_by_hand_over_more_than_a_year() -> None:
    sessions = 300
    returns = np.full(sessions, 0.001)
    returns[100:110] = -0.01  # a drawdown of 1 - 0.99**10
    net_worth = 100.0 * np.concatenate([[1.0], np.cumprod(1 + returns)])
    metrics = equity_metrics(net_worth, np.ones(sessions + 1))
    growth = 1.001**290 * 0.99**10
    cagr = growth ** (252 / 300) - 1
    assert metrics["total_return"] == pytest.approx(growth - 1, rel=1e-12)
    assert metrics["cagr"] == pytest.approx(cagr, rel=1e-12)
    assert metrics["max_drawdown"] == pytest.approx(0.99**10 - 1, rel=1e-12)
    assert metrics["calmar"] == pytest.approx(cagr / (1 - 0.99**10), rel=1e-12)


def test_an_all_cash_curve_has_sharpe_zero_and_undefined_hit_rate() -> None:
    metrics = equity_metrics(np.full(10, 100.0), np.zeros(10))
    assert metrics["total_return"] == 0 and metrics["exposure"] == 0
    assert metrics["sharpe"] == 0 and metrics["sortino"] == 0
    assert np.isnan(metrics["hit_rate"]) and np.isnan(metrics["calmar"])


def test_metrics_of_a_stack_equal_metrics_of_each_curve() -> None:
    rng = np.random.default_rng(3)
    net_worth = 100 * np.cumprod(1 + rng.normal(0, 0.01, size=(4, 300)), axis=1)
    positions = rng.integers(0, 2, size=(4, 300))
    stacked = equity_metrics(net_worth, positions)
    for row in range(4):
        single = equity_metrics(net_worth[row], positions[row])
        for metric in METRICS:
            np.testing.assert_allclose(stacked[metric][row], single[metric], rtol=1e-12, equal_nan=True)
    assert TRADING_DAYS_PER_YEAR == 252


def test_a_total_loss_by_hand() -> None:
    """A book that reaches 0 (a long position through a -100% day) was NaN on every metric: 0/0 after the ruin. It has
    lost everything: -100% total return, drawdown and CAGR (whatever the window), Calmar -1, and Sharpe and Sortino of
    the whole window, the sessions after the ruin returning 0 (+10%, -50%, -100%, 0, 0)."""
    net_worth = np.array([100.0, 110.0, 55.0, 0.0, 0.0, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0 on the way either
        metrics = equity_metrics(net_worth, np.ones(6))
    assert metrics["total_return"] == -1.0 and metrics["max_drawdown"] == -1.0
    assert metrics["cagr"] == -1.0 and metrics["calmar"] == -1.0  # 5 sessions: -100% a year is no extrapolation
    mean = (0.1 - 0.5 - 1.0) / 5
    std = math.sqrt(((0.1 - mean) ** 2 + (-0.5 - mean) ** 2 + (-1.0 - mean) ** 2 + 2 * mean**2) / 4)
    assert metrics["sharpe"] == pytest.approx(mean / std * math.sqrt(252), rel=1e-12)
    assert metrics["sortino"] == pytest.approx(mean / math.sqrt((0.5**2 + 1.0**2) / 5) * math.sqrt(252), rel=1e-12)
    assert metrics["hit_rate"] == pytest.approx(1 / 5) and metrics["exposure"] == 1.0
    np.testing.assert_array_equal(drawdown(net_worth), [0, 0, -0.5, -1, -1, -1])
    # Over more than a year the same; and one curve of a stack ruined leaves the others' metrics as they were.
    growing = 100.0 * 1.001 ** np.arange(301)
    ruined = growing.copy()
    ruined[101:] = 0.0
    stacked = equity_metrics(np.stack([growing, ruined]), np.ones((2, 301)))
    assert [stacked[name][1] for name in ("total_return", "max_drawdown", "cagr", "calmar")] == [-1, -1, -1, -1]
    after_the_ruin = np.zeros(199)  # 300 sessions: 100 of growth, the ruin, 199 at 0
    window = np.concatenate([growing[1:101] / growing[:100] - 1, [-1.0], after_the_ruin])
    assert stacked["sharpe"][1] == pytest.approx(sharpe(window), rel=1e-12)
    for name, value in equity_metrics(growing, np.ones(301)).items():
        assert stacked[name][0] == pytest.approx(value, rel=1e-12, nan_ok=True)
    assert all(np.isfinite(stacked[name][1]) for name in METRICS)


def test_a_book_ruined_on_its_first_session_has_a_sharpe_ratio() -> None:
    """A seed that loses everything on the test split's first session: Sharpe was computed from its one return up to
    the ruin, so it was NaN, and the means over seeds left the worst seed out. Over the whole window (-100%, then 0
    for 3 sessions), by hand: mean -1/4, standard deviation sqrt(((3/4)^2 + 3 (1/4)^2) / 3) = 1/2, downside deviation
    sqrt(1/4) = 1/2, so Sharpe = Sortino = -1/2 sqrt(252)."""
    metrics = equity_metrics(np.array([100.0, 0.0, 0.0, 0.0, 0.0]), np.ones(5))
    assert metrics["sharpe"] == pytest.approx(-0.5 * math.sqrt(252), rel=1e-12)
    assert metrics["sortino"] == pytest.approx(-0.5 * math.sqrt(252), rel=1e-12)
    # A bootstrap resample that puts sessions after the ruin reads them as 0: the book has nothing left to earn with.
    np.testing.assert_array_equal(sharpe(np.array([-1.0, 0.2, -0.1, 0.0])), sharpe(np.array([-1.0, 0.0, 0.0, 0.0])))


def test_a_book_that_loses_everything_replays_without_nan(test_series: list[SymbolSeries]) -> None:
    """The environments cannot go below 0 (long/flat, prices > 0, commission and slippage under 100%), but a commission
    a hair under 100% (--commission-bps 9999.99...) takes the book to exactly 0 within some twenty trades. The pooled book, each symbol's
    metrics (the ml.* rows) and the statistics then read -100%, not NaN."""
    ruinous = dataclasses.replace(SETTINGS, commission=1.0 - 2.0**-52)  # every trade keeps 2e-16 of the book

    class EveryOtherSession:
        name, draws = "alternating", 1

        def actions(self, step: ReplayStep) -> np.ndarray:
            return (step.sessions % 2).astype(np.int64)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0 or log(0) on the way
        played = replay("test", test_series, ruinous, EveryOtherSession())
    assert played.net_worth[-1] == 0.0
    metrics = played.metrics()
    assert metrics["total_return"] == metrics["max_drawdown"] == -1.0
    assert all(np.isfinite(value) for name, value in metrics.items() if name not in ("cagr", "calmar"))
    for symbol_metrics in played.symbol_metrics.values():
        assert symbol_metrics["total_return"] == -1.0 and np.isfinite(symbol_metrics["sharpe"])


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_mart(n_symbols=4, n_sessions=320, seed=51)


@pytest.fixture(scope="module")
def test_series(frame: pd.DataFrame) -> list[SymbolSeries]:
    """One fold's test split, with one symbol cut short (listed late), so replays end at different sessions."""
    (fold,) = lay_out_folds(frame["session_date"], folds=1, test_sessions=60, validation_sessions=40)
    scaler = FeatureScaler.fit(fold.rows(frame, "train"), FEATURES, clip=10.0)
    series = build_series(fold.rows(frame, "test"), "test", scaler)
    late = series[2]
    series[2] = SymbolSeries(late.symbol, "test", late.dates[15:], late.open[15:], late.close[15:], late.features[15:])
    return series


class FirstFeaturePolicy:
    """A stand-in for the agent: long when the newest row's first feature is positive (acts on observations)."""

    name = "agent"
    draws = 1

    def __init__(self, window: int, n_features: int) -> None:
        self._column = (window - 1) * n_features

    def actions(self, step: ReplayStep) -> np.ndarray:
        return (step.observations[:, self._column] > 0).astype(np.int64)


def _policies(frame: pd.DataFrame, series: list[SymbolSeries]) -> list:
    return [
        FirstFeaturePolicy(SETTINGS.window, len(FEATURES)),
        buy_and_hold(),
        flat(),
        SmaCrossoverPolicy(sma_signals(frame, series, 10, 50)),
        MatchedRandomPolicy(np.full(len(series), 0.4), np.full(len(series), 0.2), draws=1, seed=(1, 2, 3)),
    ]


@pytest.mark.parametrize("kind", ["native", "tensortrade"])
def test_the_batched_replay_is_the_single_environment_replay(
    frame: pd.DataFrame, test_series: list[SymbolSeries], kind: str
) -> None:
    """Each symbol's episode, re-run action by action in a single environment, gives the same net worth path."""
    for policy in _policies(frame, test_series):
        result, positions_by_symbol = _replay_recording(test_series, policy)
        env = make_env(kind, test_series, SETTINGS)
        pooled = 0.0
        for series in test_series:
            planned = positions_by_symbol[series.symbol]
            sessions, net_worth, positions = replay_episode(env, series, lambda obs, t, p=planned: int(p[t]))
            np.testing.assert_array_equal(series.dates[sessions], series.dates[SETTINGS.window - 1 :])
            symbol_metrics = equity_metrics(net_worth, positions)
            for metric in METRICS:
                np.testing.assert_allclose(
                    result.symbol_metrics[series.symbol][metric], symbol_metrics[metric], rtol=1e-9, equal_nan=True
                )
            pooled += net_worth[-1]
        # The pooled book ends at the sum of the symbols' last net worths.
        assert result.net_worth[-1] == pytest.approx(pooled, rel=1e-9)


def _replay_recording(series: list[SymbolSeries], policy):
    """The batched replay, and per symbol and decision session index the action the policy took in it."""
    recorded: dict[str, np.ndarray] = {s.symbol: np.zeros(len(s), dtype=np.int64) for s in series}

    class Recorder:
        name, draws = policy.name, 1

        def actions(self, step: ReplayStep) -> np.ndarray:
            actions = policy.actions(step)
            for index, session, action in zip(step.series_index, step.sessions, actions, strict=True):
                recorded[series[index].symbol][session] = action
            return actions

    return replay("test", series, SETTINGS, Recorder()), recorded


def test_baselines_pay_the_same_commission_and_slippage_as_the_agent(test_series: list[SymbolSeries]) -> None:
    """Buy-and-hold by hand: one buy at the first fill's open with slippage and commission, marked at the close."""
    result = replay("test", test_series, SETTINGS, buy_and_hold())
    for series in test_series:
        first_fill = SETTINGS.window  # decided at window-1, filled at the next open
        shares = SETTINGS.initial_cash * (1 - SETTINGS.commission) / (series.open[first_fill] * (1 + SETTINGS.slippage))
        expected = shares * series.close[-1] / SETTINGS.initial_cash - 1
        assert result.symbol_metrics[series.symbol]["total_return"] == pytest.approx(expected, rel=1e-12)
    free = dataclasses.replace(SETTINGS, commission=0.0, slippage=0.0)
    for policy in (buy_and_hold(), MatchedRandomPolicy(np.full(4, 0.5), np.full(4, 0.3), 20, (7,))):
        with_costs = replay("test", test_series, SETTINGS, policy).metrics()["total_return"]
        policy = (
            buy_and_hold()
            if policy.name == "buy_and_hold"
            else MatchedRandomPolicy(np.full(4, 0.5), np.full(4, 0.3), 20, (7,))
        )
        without = replay("test", test_series, free, policy).metrics()["total_return"]
        assert with_costs < without


def test_a_symbol_listed_late_holds_cash_until_its_first_session(test_series: list[SymbolSeries]) -> None:
    result = replay("test", test_series, SETTINGS, buy_and_hold())
    late = test_series[2]
    before = result.dates < late.dates[SETTINGS.window - 1]
    assert before.sum() == 15
    others = [replay("test", [s], SETTINGS, buy_and_hold()) for s in test_series if s is not late]
    expected = sum(o.net_worth[: before.sum()] for o in others) + SETTINGS.initial_cash
    np.testing.assert_allclose(result.net_worth[before], expected, rtol=1e-12)
    assert result.symbols == 4 and len(result.exposure) == len(result.dates) - 1
    # While the late symbol has not started, three of three trading symbols are long; then four of four.
    assert result.exposure.min() == pytest.approx(1.0)


def test_a_symbol_halted_for_a_session_keeps_its_position_through_it(test_series: list[SymbolSeries]) -> None:
    """A symbol halted all day has no row that session (its gap recorded in warehouse/seeds/known_missing_sessions.csv)
    while the others trade. Held long through the halt, it made no trade when it reopened: buying and holding is one
    trade per symbol, and on the halt the book carries the halted symbol's last value."""
    series = list(test_series)
    halted = series[1]
    halt = SETTINGS.window + 25  # a session after every symbol's first fill (one is listed late)
    kept = np.arange(len(halted)) != halt
    series[1] = SymbolSeries(halted.symbol, "test", halted.dates[kept], halted.open[kept], halted.close[kept],
                             halted.features[kept])  # fmt: skip
    result = replay("test", series, SETTINGS, buy_and_hold())
    assert result.metrics()["trades"] == len(series)
    assert result.exposure.min() == pytest.approx(1.0)
    on_halt = int(np.flatnonzero(result.dates == halted.dates[halt])[0])
    alone = replay("test", [series[1]], SETTINGS, buy_and_hold())
    others = [replay("test", [s], SETTINGS, buy_and_hold()) for s in series if s is not series[1]]
    before_halt = int(np.flatnonzero(alone.dates == halted.dates[halt - 1])[0])
    expected = alone.net_worth[before_halt] + sum(
        o.net_worth[int(np.flatnonzero(o.dates == halted.dates[halt])[0])] for o in others
    )
    assert result.net_worth[on_halt] == pytest.approx(expected, rel=1e-12)


def test_the_matched_random_baseline_trades_like_the_agent(test_series: list[SymbolSeries]) -> None:
    exposure, turnover = np.array([0.2, 0.5, 0.8, 0.5]), np.array([0.05, 0.3, 0.1, 0.0])
    symbols = [series.symbol for series in test_series]
    # The agent's metrics per symbol, as a task's replay reports them (listed in another order than the series).
    rows = reversed([*zip(symbols, exposure, turnover, strict=True)])
    agent = {symbol: {"exposure": e, "turnover": q} for symbol, e, q in rows}
    policy = matched_random(agent, symbols, 400, seed=42, fold_id=1, split="test")
    result = replay("test", test_series, SETTINGS, policy)
    for index, series in enumerate(test_series):
        realised = result.symbol_metrics[series.symbol]
        assert realised["exposure"] == pytest.approx(exposure[index], abs=0.05)
        assert realised["turnover"] == pytest.approx(turnover[index], abs=0.03)
    again = replay("test", test_series, SETTINGS, matched_random(agent, symbols, 400, seed=42, fold_id=1, split="test"))
    other = replay("test", test_series, SETTINGS, matched_random(agent, symbols, 400, seed=43, fold_id=1, split="test"))
    np.testing.assert_array_equal(result.net_worth, again.net_worth)
    assert not np.array_equal(result.net_worth, other.net_worth)


def test_sma_crossover_by_hand_uses_no_later_close(frame: pd.DataFrame, test_series: list[SymbolSeries]) -> None:
    series = test_series[0]
    history = frame[frame["symbol"] == series.symbol].reset_index(drop=True)
    signal = sma_signals(history, [series], 10, 50)[0]
    dates = pd.to_datetime(history["session_date"]).to_numpy(dtype="datetime64[D]")
    for t in (0, 17, len(series) - 1):
        upto = history["close"].to_numpy()[: np.searchsorted(dates, series.dates[t]) + 1]
        assert signal[t] == int(upto[-10:].mean() > upto[-50:].mean())
    # Changing every close after session t leaves the signals up to t alone.
    t = 20
    later = pd.to_datetime(history["session_date"]).to_numpy(dtype="datetime64[D]") > series.dates[t]
    changed = history.assign(close=np.where(later, history["close"] * 3.0, history["close"]))
    changed_signal = sma_signals(changed, [series], 10, 50)[0]
    np.testing.assert_array_equal(changed_signal[: t + 1], signal[: t + 1])
    assert not np.array_equal(changed_signal, signal)


def test_constant_policies_are_what_they_say(test_series: list[SymbolSeries]) -> None:
    held = replay("test", test_series, SETTINGS, ConstantPolicy(Position.LONG, "long")).metrics()
    cash = replay("test", test_series, SETTINGS, flat()).metrics()
    assert held["exposure"] == pytest.approx(1.0) and held["trades"] == len(test_series)
    assert cash["total_return"] == 0 and cash["exposure"] == 0 and cash["sharpe"] == 0


def test_a_constant_return_has_no_sharpe_ratio() -> None:
    """+0.1% every session has no variance: Sharpe is undefined, not the ~1e14 that rounding noise would give."""
    net_worth = 100.0 * np.cumprod(np.r_[1.0, np.full(20, 1.001)])
    metrics = equity_metrics(net_worth, np.ones(21))
    assert np.isnan(metrics["sharpe"]) and np.isnan(metrics["sortino"])  # no loss either: no downside deviation
    assert metrics["total_return"] == pytest.approx(1.001**20 - 1)
