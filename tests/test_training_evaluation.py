"""Metrics by hand, and replays that cover each symbol's whole split deterministically."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from devtools.synthetic_mart import FEATURE_LOOKBACKS, synthetic_mart, with_split
from training.envs import EnvSettings
from training.evaluation import AGGREGATE_SYMBOL, baseline_policies, combined_net_worth, evaluate
from training.market_data import FeatureScaler, build_series
from training.metrics import METRICS, drawdown, equity_metrics


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
    assert set(metrics) == set(METRICS)


def test_undefined_metrics_are_nan_not_errors() -> None:
    metrics = equity_metrics(np.full(10, 100.0), np.zeros(10))
    assert metrics["total_return"] == 0 and metrics["exposure"] == 0
    assert np.isnan(metrics["sharpe"]) and np.isnan(metrics["hit_rate"]) and np.isnan(metrics["calmar"])


def test_combined_curve_keeps_cash_for_symbols_that_start_late() -> None:
    from training.evaluation import EquityCurve

    dates = np.array(["2024-01-02", "2024-01-03", "2024-01-04"], dtype="datetime64[D]")
    early = EquityCurve("test", "A", "flat", dates, np.array([100.0, 101.0, 102.0]), np.zeros(3, np.int8))
    late = EquityCurve("test", "B", "flat", dates[1:], np.array([100.0, 90.0]), np.zeros(2, np.int8))
    combined = combined_net_worth([early, late], initial_cash=100.0)
    assert combined.tolist() == [200.0, 201.0, 192.0]


@pytest.fixture(scope="module")
def series_by_split() -> dict:
    mart = with_split(synthetic_mart(n_symbols=3, n_sessions=240, seed=51))
    scaler = FeatureScaler.fit(mart[mart["split"] == "train"], list(FEATURE_LOOKBACKS), clip=10.0)
    return {split: build_series(mart, split, scaler) for split in ("validation", "test")}


@pytest.mark.parametrize("kind", ["native", "tensortrade"])
def test_replays_cover_every_session_of_every_symbol(series_by_split: dict, kind: str) -> None:
    settings = EnvSettings.from_bps(10, 10_000.0, 1.0, 5.0, 10.0)
    evaluation = evaluate(kind, series_by_split, settings, baseline_policies(seed=1))
    for split, series in series_by_split.items():
        for s in series:
            for policy in ("buy_and_hold", "flat", "random"):
                (curve,) = [c for c in evaluation.curves if (c.split, c.symbol, c.policy) == (split, s.symbol, policy)]
                np.testing.assert_array_equal(curve.dates, s.dates[settings.window - 1 :])
                assert curve.net_worth[0] == settings.initial_cash
    flat = evaluation.metrics.query("policy == 'flat' and metric == 'total_return'")
    assert (flat["value"] == 0).all()
    buy_and_hold = evaluation.wide("test", AGGREGATE_SYMBOL).loc["buy_and_hold"]
    assert buy_and_hold["exposure"] == pytest.approx(1.0) and buy_and_hold["trades"] == 3  # one entry per symbol


def test_the_random_baseline_is_seeded(series_by_split: dict) -> None:
    settings = EnvSettings(window=10)
    runs = [
        evaluate("native", series_by_split, settings, {"random": baseline_policies(seed)["random"]})
        for seed in (1, 1, 2)
    ]
    pd.testing.assert_frame_equal(runs[0].metrics, runs[1].metrics, check_exact=True)
    assert not runs[0].metrics["value"].equals(runs[2].metrics["value"])
