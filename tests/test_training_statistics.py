"""The statistics of a walk-forward: by hand where a formula exists, and the verdict on samples with a known answer."""

from __future__ import annotations

import math
from dataclasses import replace
from statistics import NormalDist

import numpy as np
import pytest

from training.metrics import daily_returns, sharpe
from training.policies import POLICIES
from training.statistics import (
    EULER_MASCHERONI,
    FoldSample,
    agent_track_record,
    block_indices,
    compute_statistics,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    interquartile_mean,
    interval_quantile,
    interval_tail,
    seed_indices,
    welch_degrees_of_freedom,
)

AGENT, BUY_AND_HOLD = POLICIES.index("agent"), POLICIES.index("buy_and_hold")


def _sample(fold_id: int, returns: np.ndarray, start: str = "2024-01-02") -> FoldSample:
    """A fold from (seeds, policies, sessions) returns; exposure and turnover constant."""
    seeds, policies, sessions = returns.shape
    return FoldSample(
        fold_id=fold_id,
        seeds=tuple(range(seeds)),
        dates=np.datetime64(start) + np.arange(sessions),
        returns=returns,
        exposure=np.full(returns.shape, 0.5),
        turnover=np.full(returns.shape, 0.1),
        symbols=10,
    )


def _market(seed: int, seeds: int = 3, sessions: int = 60) -> np.ndarray:
    """Every policy follows buy-and-hold's noisy returns (flat earns nothing)."""
    market = np.random.default_rng(seed).normal(0.0003, 0.01, sessions)
    returns = np.tile(market, (seeds, len(POLICIES), 1))
    returns[:, POLICIES.index("flat")] = 0.0
    return returns


def test_deflated_sharpe_ratio_by_hand() -> None:
    returns = np.array([0.011, -0.004, 0.007, 0.002, -0.012, 0.009, 0.004, -0.001, 0.015, -0.006, 0.003, 0.008])
    n = len(returns)
    mean = sum(returns) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / (n - 1))
    sr = mean / std
    m2 = sum((r - mean) ** 2 for r in returns) / n
    skew = sum((r - mean) ** 3 for r in returns) / n / m2**1.5
    kurt = sum((r - mean) ** 4 for r in returns) / n / m2**2  # not in excess
    normal = NormalDist()

    def dsr(sr0: float) -> float:
        return normal.cdf((sr - sr0) * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2))

    # One configuration: the probabilistic Sharpe ratio against zero.
    one = deflated_sharpe_ratio(returns, trials=1)
    assert one.value == pytest.approx(dsr(0.0), rel=1e-9)
    assert one.sharpe == pytest.approx(sr * math.sqrt(252), rel=1e-12)
    assert (one.skewness, one.kurtosis) == (pytest.approx(skew), pytest.approx(kurt))
    # Fifty configurations whose Sharpe ratios varied by 0.04 (per session): the bar rises to SR0.
    variance, trials = 0.04, 50
    sr0 = math.sqrt(variance) * (
        (1 - EULER_MASCHERONI) * normal.inv_cdf(1 - 1 / trials)
        + EULER_MASCHERONI * normal.inv_cdf(1 - 1 / (trials * math.e))
    )
    fifty = deflated_sharpe_ratio(returns, trials=trials, trial_sharpe_variance=variance)
    assert expected_max_sharpe(trials, variance) == pytest.approx(sr0, rel=1e-9)
    assert fifty.value == pytest.approx(dsr(sr0), rel=1e-9)
    assert fifty.value < one.value
    # Without the trials' variance, the sampling variance of a Sharpe ratio under the null stands in.
    default = deflated_sharpe_ratio(returns, trials=trials)
    assert default.benchmark_sharpe == pytest.approx(expected_max_sharpe(trials, 1 / (n - 1)) * math.sqrt(252))


def test_block_indices_are_runs_of_consecutive_sessions_wrapping_around() -> None:
    indices = block_indices(np.random.default_rng(0), resamples=50, sessions=23, block=5)
    assert indices.shape == (50, 23) and indices.min() >= 0 and indices.max() < 23
    steps = (np.diff(indices, axis=1) % 23).reshape(-1)
    # Inside a block the next session follows; between blocks anything may follow.
    within = np.ones(22, dtype=bool)
    within[4::5] = False
    assert np.all((np.diff(indices, axis=1) % 23)[:, within] == 1)
    assert steps.size


def test_interquartile_mean_by_hand() -> None:
    values = np.array([[8.0, 1.0, 7.0, 2.0, 6.0, 3.0, 5.0, 4.0], [1.0, 2.0, np.nan, 4.0, 100.0, -100.0, 3.0, 5.0]])
    np.testing.assert_allclose(interquartile_mean(values, axis=1), [4.5, (2.0 + 3.0 + 4.0) / 3])


def test_identical_agent_and_buy_and_hold_show_no_evidence() -> None:
    folds = [_sample(1, _market(1)), _sample(2, _market(2))]
    statistics = compute_statistics(folds, POLICIES, resamples=300, seed=1)
    comparison = statistics.comparison("buy_and_hold", "sharpe")
    assert (comparison.difference.estimate, comparison.difference.low, comparison.difference.high) == (0, 0, 0)
    assert comparison.p_agent_better.estimate == 0.5
    assert statistics.verdict.startswith("no evidence the agent beats buy-and-hold: 95% CI of the Sharpe difference")
    # P is spelled out as the share of test splits it is: a bare "P = 0.50" reads as a p-value.
    assert "the agent's Sharpe ratio beat buy-and-hold's in 50% of 6 fold × seed test splits" in statistics.verdict
    # The deflated Sharpe ratio takes the seeds that ran as given, and the sentence says so.
    assert "evidence that these seeds' Sharpe ratio is positive; other seeds' spread is not in it" in statistics.verdict
    flat = statistics.policy("flat", "total_return")
    assert (flat.mean.estimate, flat.mean.low, flat.mean.high) == (0, 0, 0)


@pytest.mark.parametrize(
    "edge, verdict", [(0.003, "evidence the agent beats"), (-0.003, "evidence the agent does worse")]
)
def test_a_clear_edge_is_evidence(edge: float, verdict: str) -> None:
    folds = []
    for fold_id in (1, 2, 3):
        returns = _market(fold_id)
        returns[:, AGENT] += edge + np.random.default_rng(fold_id).normal(0, 0.001, returns[:, AGENT].shape)
        folds.append(_sample(fold_id, returns, start=f"202{fold_id}-01-02"))
    statistics = compute_statistics(folds, POLICIES, resamples=400, seed=2)
    comparison = statistics.comparison("buy_and_hold", "sharpe")
    assert statistics.verdict.startswith(verdict)
    assert (comparison.difference.low > 0) == (edge > 0) and (comparison.difference.high < 0) == (edge < 0)
    assert comparison.p_agent_better.estimate == (1.0 if edge > 0 else 0.0)
    assert "3 folds × 3 seeds, 180 test sessions, 10 symbols" in statistics.verdict
    assert f"beat buy-and-hold's in {'100%' if edge > 0 else '0%'} of 9 fold × seed test splits" in statistics.verdict


def test_one_seed_per_fold_is_never_evidence() -> None:
    """With one seed the bootstrap can only resample sessions: the spread between seeds, PPO's largest source of
    variance, is not in the interval, so even an edge whose interval lies far above 0 is no evidence."""
    folds = []
    for fold_id in (1, 2):
        returns = _market(fold_id, seeds=1)
        returns[:, AGENT] += 0.004
        folds.append(_sample(fold_id, returns, start=f"202{fold_id}-01-02"))
    statistics = compute_statistics(folds, POLICIES, resamples=200, seed=6)
    assert statistics.comparison("buy_and_hold", "sharpe").difference.low > 0
    assert statistics.verdict.startswith("no evidence either way from one seed per fold")
    assert "2 folds × 1 seed," in statistics.verdict


@pytest.mark.parametrize(
    "folds, seeds, sessions, verdict",
    [
        (1, 2, 60, "no evidence either way from two seeds of one fold"),
        (2, 3, 8, "no evidence either way from 8-session test splits (under two blocks of 5 sessions"),
        (1, 5, 60, "no evidence either way from 5 fold × seed test splits (fewer than 6: all of them beat, or all"),
        (2, 2, 60, "no evidence either way from 4 fold × seed test splits (fewer than 6"),
        (2, 3, 60, "evidence the agent beats buy-and-hold"),  # the smallest sample that may be evidence
    ],
)
def test_too_small_a_sample_is_never_evidence(folds: int, seeds: int, sessions: int, verdict: str) -> None:
    """Two seeds of one fold cannot bound the spread between seeds, fewer than 6 test splits all land on one side of
    the truth by luck more than 5% of the time, and a split under two blocks resamples into itself; on a random walk
    each claimed evidence far more often than 5% (see docs/training.md)."""
    samples = []
    for fold_id in range(1, folds + 1):
        returns = _market(fold_id, seeds=seeds, sessions=sessions)
        returns[:, AGENT] += 0.004 + np.random.default_rng(fold_id).normal(0, 0.001, returns[:, AGENT].shape)
        samples.append(_sample(fold_id, returns, start=f"202{fold_id}-01-02"))
    statistics = compute_statistics(samples, POLICIES, resamples=300, seed=7)
    # The interval alone would be evidence; the guard is what says no. Except from two seeds of one fold: there the
    # difference's interval now spans t's 12.7 standard errors for one degree of freedom and reaches 0 by itself.
    assert (statistics.comparison("buy_and_hold", "sharpe").difference.low > 0) == ((folds, seeds) != (1, 2))
    assert statistics.verdict.startswith(verdict)


def test_two_seeds_of_one_fold_among_one_seed_folds_are_named_as_such() -> None:
    """Two folds whose tasks failed but for a second seed of one: still one difference between seeds, and the verdict
    says so without calling the run one fold (it said "from two seeds of one fold" of a two-fold run)."""
    one, two = _market(1, seeds=2), _market(2, seeds=1)
    for returns in (one, two):
        returns[:, AGENT] += 0.004
    statistics = compute_statistics([_sample(1, one), _sample(2, two, start="2025-01-02")], POLICIES, resamples=200)
    assert statistics.verdict.startswith(
        "no evidence either way from two seeds of one fold and one seed of each other fold (one difference"
    ), statistics.verdict
    # 3 test splits: "2 folds × 2 seeds" beside them would not add up.
    assert "of 3 fold × seed test splits (2 folds × 1–2 seeds, " in statistics.verdict


def test_the_mean_weighs_folds_equally_and_sizes_are_reported() -> None:
    """Fold 1 has three seeds, fold 2 one: the mean is the mean of the two fold means, not of four values."""
    one, two = _market(1, seeds=3), _market(2, seeds=1, sessions=40)
    one[:, AGENT] = np.array([0.001, 0.002, 0.003])[:, None] + np.random.default_rng(5).normal(0, 0.01, (3, 60))
    folds = [_sample(1, one), _sample(2, two, start="2025-01-02")]
    statistics = compute_statistics(folds, POLICIES, resamples=200, seed=3)
    per_task = [sharpe(one[s, AGENT]) for s in range(3)]
    expected = (np.mean(per_task) + sharpe(two[0, AGENT])) / 2
    agent = statistics.policy("agent", "sharpe")
    assert agent.mean.estimate == pytest.approx(expected, rel=1e-12)
    assert agent.mean.low <= agent.mean.estimate <= agent.mean.high
    assert (agent.size.folds, agent.size.seeds, agent.size.tasks, agent.size.sessions) == (2, 3, 4, 100)
    assert agent.annualised_from == 40  # the shortest test split the Sharpe ratios were annualised from
    assert statistics.policy("agent", "total_return").annualised_from is None
    per_fold = statistics.policy("agent", "sharpe", fold_id=1)
    assert per_fold.mean.estimate == pytest.approx(np.mean(per_task), rel=1e-12) and per_fold.size.tasks == 3
    assert {c.fold_id for c in statistics.comparisons} == {None, 1, 2}


def test_resamples_stay_inside_their_fold() -> None:
    """Stratified by fold: a fold whose agent always earns 1% a session keeps that mean in every resample."""
    quiet = _market(1)
    quiet[:, AGENT] = 0.01
    noisy = _market(2)
    noisy[:, AGENT] = np.random.default_rng(9).normal(0, 0.05, noisy[:, AGENT].shape)
    statistics = compute_statistics([_sample(1, quiet), _sample(2, noisy)], POLICIES, resamples=300, seed=4)
    quiet_return = statistics.policy("agent", "total_return", fold_id=1).mean
    assert quiet_return.low == pytest.approx(1.01**60 - 1) and quiet_return.high == pytest.approx(1.01**60 - 1)
    assert (
        statistics.policy("agent", "total_return", fold_id=2).mean.high
        > statistics.policy("agent", "total_return", fold_id=2).mean.low
    )


def test_the_all_folds_interval_resamples_each_fold_inside_itself() -> None:
    """Stratified by fold in the all-folds figures too: one fold's agent earns 1% every session, the other's loses
    0.5%. Each fold keeps its own total return in every resample, so the mean over folds is one point; a bootstrap
    that pooled the sessions of all folds would mix gains into the losing fold and spread the interval."""
    gaining, losing = _market(1), _market(2)
    gaining[:, AGENT], losing[:, AGENT] = 0.01, -0.005
    folds = [_sample(1, gaining), _sample(2, losing, start="2025-01-02")]
    mean = compute_statistics(folds, POLICIES, resamples=300, seed=4).policy("agent", "total_return").mean
    both = ((1.01**60 - 1) + (0.995**60 - 1)) / 2
    assert (mean.low, mean.estimate, mean.high) == pytest.approx((both, both, both))


def test_the_bootstrap_draws_the_seeds_of_each_fold() -> None:
    """Seeds are resampled with replacement: an agent earning a different constant per seed has an interval spanning
    the seeds' values (sessions alone would leave it at one point)."""
    returns = _market(1)
    returns[:, AGENT] = np.array([0.001, 0.002, 0.004])[:, None]
    noisy = _sample(2, _market(2), start="2025-01-02")  # keeps the agent's track record (DSR) from being constant
    statistics = compute_statistics([_sample(1, returns), noisy], POLICIES, resamples=300, seed=5)
    mean = statistics.policy("agent", "total_return", fold_id=1).mean
    per_seed = (1 + np.array([0.001, 0.002, 0.004])) ** 60 - 1
    assert mean.estimate == pytest.approx(per_seed.mean())
    assert per_seed.min() - 1e-12 <= mean.low < mean.estimate < mean.high <= per_seed.max() + 1e-12


def test_an_interval_over_few_seeds_is_as_wide_as_their_standard_error_says() -> None:
    """One fold, five seeds, each with its own constant exposure: the interval of the mean holds at least
    mean ± 1.96 s / sqrt(5). Drawing 5 of 5 seeds shrinks the spread to 4/5 of that variance, and a plain percentile
    interval forgets that a mean of 5 has t's wider tails: the interval was [0.18, 0.42] here, narrower than even
    the normal one, and on a random walk with PPO-like seed spread 4 folds x 2 seeds claimed evidence 13% of the time."""
    per_seed = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    returns = _market(1, seeds=5)[:, [AGENT, BUY_AND_HOLD]]
    fold = _sample(1, returns)
    exposure = np.broadcast_to(per_seed[:, None, None], returns.shape).copy()
    fold = FoldSample(fold.fold_id, fold.seeds, fold.dates, returns, exposure, fold.turnover, fold.symbols)
    statistics = compute_statistics([fold], ("agent", "buy_and_hold"), resamples=1000, seed=0)
    mean = statistics.policy("agent", "exposure").mean
    half_width = 1.96 * per_seed.std(ddof=1) / math.sqrt(5)
    assert mean.estimate == pytest.approx(0.3)
    assert mean.low <= 0.3 - half_width and mean.high >= 0.3 + half_width
    assert interval_tail(0.95, 4) == pytest.approx(NormalDist().cdf(-2.7764451051977987))  # t(4)'s 2.5% quantile
    assert interval_tail(0.95, 0) == pytest.approx(0.025)  # one seed per fold: no seed spread to widen for
    # Each resample draws n - 1 of a fold's n seeds (one of one): n draws shrink the seeds' spread by (n - 1) / n.
    draws = seed_indices(np.random.default_rng(0), 1000, 5)
    assert draws.shape == (1000, 4) and set(np.unique(draws)) == set(range(5))
    assert seed_indices(np.random.default_rng(0), 1000, 1).tolist() == [[0]] * 1000


def test_the_welch_degrees_of_freedom_follow_the_fold_whose_seeds_spread_most() -> None:
    """Equal spreads give the pooled sum of each fold's seeds - 1; one fold that carries the variance gives about its
    own n - 1; by hand for two folds of unequal seeds; the pooled sum when no spread is measurable."""
    even = [np.array([[0.0, 2.0]]), np.array([[5.0, 7.0]]), np.array([[1.0, -1.0]])]
    assert welch_degrees_of_freedom(even) == pytest.approx(3.0)
    one_fold = [np.array([[-6.0, 6.0]]), np.array([[0.0, 0.3]]), np.array([[0.0, 0.3]]), np.array([[0.0, 0.3]])]
    assert 1.0 <= welch_degrees_of_freedom(one_fold) < 1.01
    # a_1 = var(1, 3, 5) / 3 = 4/3 (2 df), a_2 = var(0, 4) / 2 = 4 (1 df): (16/3)^2 / ((4/3)^2 / 2 + 16) = 256/152
    assert welch_degrees_of_freedom([np.array([[1.0, 3.0, 5.0]]), np.array([[0.0, 4.0]])]) == pytest.approx(256 / 152)
    # no spread, undefined values, one seed per fold: the pooled sum
    assert welch_degrees_of_freedom([np.zeros((1, 2)), np.ones((1, 3))]) == 3.0
    assert welch_degrees_of_freedom([np.array([[np.nan, 1.0]]), np.array([[2.0]])]) == 1.0
    assert welch_degrees_of_freedom([np.array([[1.0]]), np.array([[2.0]])]) == 0.0
    # NaN seeds are left out of a fold's spread; a fold of one defined seed adds nothing
    assert welch_degrees_of_freedom([np.array([[0.0, 2.0, np.nan]]), np.array([[np.nan, 1.0]])]) == pytest.approx(1.0)


def test_one_fold_whose_seeds_spread_most_widens_the_differences_interval_to_its_own_degrees_of_freedom(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """4 folds x 2 seeds, the first fold's agent seeds far apart, the others' close: the Sharpe difference's interval
    is t(~1)'s quantile times the resamples' standard deviation wide, not t(4)'s (the pooled degrees of freedom, as
    before), about 12.7 / 2.78 = 4.6 times as wide; the agent's own interval keeps the pooled tails."""
    rng = np.random.default_rng(3)
    sessions = 60
    folds = []
    for fold in range(4):
        market = rng.normal(0.0003, 0.01, sessions)
        returns = np.empty((2, len(POLICIES), sessions))
        returns[:] = market
        luck = (0.003, 0.0015) if fold == 0 else (0.0005, 0.0005)
        for seed in range(2):
            returns[seed, AGENT] = market + luck[seed] + rng.normal(0, 0.0003, sessions)
        folds.append(_sample(fold + 1, returns, start=str(np.datetime64("2024-01-02") + fold * 100)))
    differences = [(sharpe(f.returns[:, AGENT, :]) - sharpe(f.returns[:, BUY_AND_HOLD, :]))[None] for f in folds]
    assert 1.0 <= welch_degrees_of_freedom(differences) < 1.1
    welch = compute_statistics(folds, resamples=400, seed=1)
    monkeypatch.setattr(
        "training.statistics.welch_degrees_of_freedom", lambda per_fold: float(sum(v.shape[-1] - 1 for v in per_fold))
    )
    pooled = compute_statistics(folds, resamples=400, seed=1)
    wide, narrow = (s.comparison("buy_and_hold", "sharpe").difference for s in (welch, pooled))
    assert wide.estimate == narrow.estimate
    assert (wide.high - wide.low) / (narrow.high - narrow.low) > 3.5
    assert wide.low < 0 < narrow.low  # the pooled interval claimed evidence from one fold's lucky seed
    assert welch.policy("agent", "sharpe") == pooled.policy("agent", "sharpe")


def test_a_difference_over_two_seeds_of_a_fold_keeps_a_finite_interval_at_99_percent() -> None:
    """Each fold's own comparison of a 2-seed walk-forward has one degree of freedom. At 99% t's quantile is 63.7,
    whose normal tail (under 1e-300) is 0 in a double: the floor taken back from that tail was infinite, so every
    fold's difference interval of ``--confidence 0.99`` with 2 seeds per fold read as undefined (null in
    statistics.json) instead of ±63.7 standard deviations of its resamples."""
    assert interval_quantile(0.99, 1) == pytest.approx(63.656741162871526)
    assert interval_quantile(0.95, 4) == pytest.approx(2.7764451051977987)
    assert interval_quantile(0.95, 0) == pytest.approx(1.959963984540054)
    returns = _market(1, seeds=2)
    returns[:, AGENT] += np.array([0.002, -0.001])[:, None]
    widths = {}
    for confidence in (0.95, 0.99):
        statistics = compute_statistics([_sample(1, returns)], POLICIES, resamples=300, confidence=confidence, seed=3)
        difference = statistics.comparison("buy_and_hold", "sharpe").difference
        assert math.isfinite(difference.low) and math.isfinite(difference.high), difference
        widths[confidence] = difference.high - difference.low
    # The same resamples (same seed) at both levels: both intervals are the floor, as far apart as t(1)'s quantiles.
    assert widths[0.99] / widths[0.95] == pytest.approx(interval_quantile(0.99, 1) / interval_quantile(0.95, 1))


@pytest.mark.parametrize("block_sessions, constant", [(2, True), (1, False)])
def test_resampled_blocks_keep_consecutive_sessions_together(block_sessions: int, constant: bool) -> None:
    """An agent that alternates +1% and -1% earns the same over every pair of sessions: blocks of 2 keep the pairs
    (every resample has the window's total return), single sessions break them."""
    returns = _market(1, sessions=60)
    returns[:, AGENT] = np.tile([0.01, -0.01], 30)
    statistics = compute_statistics([_sample(1, returns)], POLICIES, resamples=300, block_sessions=block_sessions)
    mean = statistics.policy("agent", "total_return").mean
    assert mean.estimate == pytest.approx(0.9999**30 - 1)
    assert (mean.high - mean.low < 1e-12) == constant


def test_the_deflated_sharpe_ratio_charges_for_the_configurations_tried() -> None:
    returns = _market(1)
    returns[:, AGENT] += 0.001
    folds = [_sample(1, returns), _sample(2, _market(2), start="2025-01-02")]
    track_record = agent_track_record(folds, POLICIES)
    for trials, variance in ((1, None), (40, None), (40, 0.01)):
        dsr = compute_statistics(
            folds, POLICIES, resamples=50, configurations_tried=trials, trial_sharpe_variance=variance
        ).deflated_sharpe
        assert dsr == deflated_sharpe_ratio(track_record, trials, variance)
        assert dsr.trials == trials and dsr.sessions == 120


def test_an_undefined_sharpe_difference_is_said_in_words() -> None:
    """A constant daily return has no Sharpe ratio: the verdict said "+nan … +nan"."""
    returns = _market(4, seeds=3)
    returns[:, AGENT] = 0.001  # the same every session: no deviation, so no Sharpe ratio
    samples = [_sample(1, returns), _sample(2, returns, start="2025-01-02")]
    statistics = compute_statistics(samples, POLICIES, resamples=100)
    assert statistics.verdict.startswith("no evidence either way (the Sharpe difference is undefined on this sample)")
    assert "CI of the Sharpe difference undefined … undefined (mean undefined)" in statistics.verdict
    assert "nan" not in statistics.verdict


def test_the_verdict_says_how_many_test_splits_lost_the_whole_book() -> None:
    """A total loss in a year-long split has a Sharpe ratio near -1, level with buy-and-hold in a bad year, and the
    verdict never said a book was lost. Here fold 1's seed 0 loses everything on its first session (its Sharpe was
    NaN from that one return, and the fold's mean left the seed out) and fold 2's seed 2 midway."""
    returns = [_market(7, seeds=3), _market(8, seeds=3)]
    intact = compute_statistics([_sample(1, returns[0]), _sample(2, returns[1], start="2025-01-02")], POLICIES)
    assert "lost the whole book" not in intact.verdict and intact.agent_total_losses == 0
    returns[0][0, AGENT, :] = 0.0
    returns[0][0, AGENT, 0] = -1.0  # ruined on the first session, 0 after it
    returns[1][2, AGENT, 30] = -1.0  # ruined midway (what follows is read as 0)
    statistics = compute_statistics([_sample(1, returns[0]), _sample(2, returns[1], start="2025-01-02")], POLICIES)
    assert statistics.agent_total_losses == 2
    assert (
        "test splits). The agent lost the whole book (total return −100%) in 2 of 6 fold × seed test splits. "
        "Deflated Sharpe ratio" in statistics.verdict
    )
    # -100% then 59 sessions at 0: Sharpe -sqrt(252 / 60), counted in the fold's mean over seeds, by hand.
    by_hand = (-math.sqrt(252 / 60) + sharpe(returns[0][1, AGENT]) + sharpe(returns[0][2, AGENT])) / 3
    assert statistics.policy("agent", "sharpe", fold_id=1).mean.estimate == pytest.approx(by_hand, rel=1e-9)
    assert np.isfinite(statistics.policy("agent", "sharpe", fold_id=1).mean.low)


def test_a_seed_that_loses_everything_counts_as_minus_100_percent_not_as_missing() -> None:
    """A test split on which one seed's agent lost the whole book: its returns after the ruin were 0/0 (NaN), its
    metrics NaN, and the means over seeds silently left that seed out, so a ruin raised the agent's mean. It counts as
    -100% total return and drawdown, and nothing in the statistics or the verdict is undefined."""
    returns = _market(5, seeds=3)
    net_worth = 100.0 * np.concatenate([np.ones((3, len(POLICIES), 1)), np.cumprod(1 + returns, axis=-1)], axis=-1)
    net_worth[0, AGENT, 21:] = 0.0  # seed 0's agent loses everything at session 21 and stays at 0
    ruined = daily_returns(net_worth)
    assert ruined[0, AGENT, 20] == -1.0 and not ruined[0, AGENT, 21:].any()  # 0 after the ruin, not 0/0
    folds = [_sample(1, ruined), _sample(2, _market(6, seeds=3), start="2025-01-02")]
    statistics = compute_statistics(folds, POLICIES, resamples=300, seed=3)
    others = np.prod(1 + returns[1:, AGENT], axis=-1) - 1  # seeds 1 and 2, by hand
    assert statistics.policy("agent", "total_return", fold_id=1).mean.estimate == pytest.approx((-1 + others.sum()) / 3)
    assert statistics.policy("agent", "max_drawdown", fold_id=1).mean.estimate < -1 / 3
    for statistic in statistics.policies:
        if statistic.metric in ("sharpe", "sortino", "total_return", "max_drawdown"):
            values = (statistic.mean.estimate, statistic.mean.low, statistic.mean.high, statistic.iqm.estimate)
            assert np.isfinite(values).all(), statistic
    for comparison in statistics.comparisons:
        assert np.isfinite([comparison.difference.low, comparison.difference.high, comparison.p_agent_better.low]).all()
    assert "undefined" not in statistics.verdict and "nan" not in statistics.verdict
    assert np.isfinite(statistics.deflated_sharpe.value)


def test_the_verdict_says_how_many_test_splits_the_agent_never_held_a_position() -> None:
    """PPO often learns to stay in cash. On symbols whose price never moved, buy-and-hold's only return is the cost of
    its first buy, so an agent that never traded had the better Sharpe ratio in every split, and the verdict read
    "evidence the agent beats buy-and-hold" without a word that the agent did nothing (as the flat baseline does)."""
    folds = []
    for fold_id, start in enumerate(["2024-01-02", "2024-04-02", "2024-07-02", "2024-10-02"], 1):
        returns = np.zeros((5, len(POLICIES), 60))
        returns[:, [BUY_AND_HOLD, POLICIES.index("sma_crossover"), POLICIES.index("random")], 0] = -0.0006
        sample = _sample(fold_id, returns, start=start)
        exposure = np.ones(returns.shape)
        exposure[:, [AGENT, POLICIES.index("flat")]] = 0.0
        folds.append(replace(sample, exposure=exposure))
    statistics = compute_statistics(folds, POLICIES, resamples=500)
    assert statistics.verdict.startswith("evidence the agent beats buy-and-hold")  # cash beat paying a cost
    assert statistics.agent_never_invested == 20
    assert (
        "test splits). The agent never held a position (it stayed in cash, as the flat baseline does) in 20 of 20 "
        "fold × seed test splits. Deflated Sharpe ratio undefined" in statistics.verdict
    )
    folds[0].exposure[0, AGENT, 30] = 0.5  # one seed of one fold held half its symbols for a session
    assert "in 19 of 20 fold × seed test splits" in compute_statistics(folds, POLICIES, resamples=100).verdict
    traded = compute_statistics([_sample(1, _market(7, seeds=3)), _sample(2, _market(8, seeds=3), "2025-01-02")])
    assert traded.agent_never_invested == 0 and "never held a position" not in traded.verdict
