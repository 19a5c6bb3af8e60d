"""The verdict is calibrated: simulated walk-forwards with a known answer (devtools/verdict_calibration.py).

Under the null the agent has no edge over buy-and-hold, and the seeds differ far more than sessions do (3 units of
Sharpe between seeds, the agent 0.99 correlated with buy-and-hold): the regime where an interval that leaves out or
understates the spread between seeds claims evidence first. Each break below was made by hand and raised the share of
runs claiming evidence well above the bound (300 runs of 3 folds x 2 seeds; 150 of 6 folds x 1 seed):

- the difference's interval a plain percentile interval again (``_difference_interval`` without its floor at t
  standard errors, as it was before this test): 17%;
- the tails left nominal (no Student-t widening in ``interval_tail``): 15%;
- n draws of a fold's n seeds instead of n - 1 (``seed_indices``): 11%;
- seeds not resampled at all, sessions only: 70%;
- the one-seed guard dropped together with the two-seeds-of-one-fold guard (6 folds x 1 seed): 77%. Dropped alone,
  the other guard still speaks (one seed per fold also leaves fewer than two differences between seeds).

The verdict as it is claims evidence in 0.7% of these runs (3.6% with the pooled degrees of freedom, before
``welch_degrees_of_freedom``) and never from one seed. The first two breaks were measured again with Welch's degrees
of freedom (17% and 15% again), the others before them.

When one fold's seeds spread far more than the others' (6 units of Sharpe against 0.3), nearly all the uncertainty is
that fold's two seeds, one degree of freedom: t's quantile for the pooled degrees of freedom (each fold's seeds - 1,
summed: 4) claimed evidence in 15% of 300 runs of 4 folds x 2 seeds x 60 sessions, and its interval held the truth in
85%; the difference's own Welch-Satterthwaite degrees of freedom (``welch_degrees_of_freedom``) in 5% and 95%.
"""

from __future__ import annotations

import pytest

from devtools.verdict_calibration import CalibrationConfig, Market, Shape, calibrate_cell, main, true_difference

SEEDS_DOMINATE = Market(seed_sharpe_sd=3.0, correlation=0.99)
ONE_FOLD_DOMINATES = Market(seed_sharpe_sd=0.3, first_fold_seed_sharpe_sd=6.0, correlation=0.99)


def _config(market: Market, runs: int) -> CalibrationConfig:
    return CalibrationConfig(market=market, runs=runs, resamples=200, truth_windows=2000)


@pytest.mark.parametrize("shape, runs", [(Shape(3, 2, 60), 300), (Shape(6, 1, 60), 150)])
def test_without_an_edge_the_verdict_seldom_claims_evidence(shape: Shape, runs: int) -> None:
    result = calibrate_cell(_config(SEEDS_DOMINATE, runs), shape, edge=0.0)
    claimed = (result.better.count + result.worse.count) / runs
    assert abs(result.true_difference) < 0.1  # the null: no edge, up to the Monte Carlo error of the truth
    assert claimed <= 0.08, f"{claimed:.1%} of {runs} runs without an edge claimed evidence"
    if shape.seeds > 1:
        assert result.covered.share >= 0.92, f"the 95% interval held the truth in {result.covered}"


def test_without_an_edge_one_fold_whose_seeds_spread_most_seldom_makes_evidence() -> None:
    """The first fold's seeds spread by 6 units of Sharpe, the others' by 0.3: the pooled degrees of freedom (the
    difference's tails at t(4)) claimed evidence in 15% of these runs and held the truth in 85%."""
    runs = 300
    result = calibrate_cell(_config(ONE_FOLD_DOMINATES, runs), Shape(4, 2, 60), edge=0.0)
    claimed = (result.better.count + result.worse.count) / runs
    assert abs(result.true_difference) < 0.05  # the truth leaves the seeds' luck out: standard error 0.007
    assert claimed <= 0.08, f"{claimed:.1%} of {runs} runs without an edge claimed evidence"
    assert result.covered.share >= 0.92, f"the 95% interval held the truth in {result.covered}"


def test_a_strong_edge_is_found_most_of_the_time() -> None:
    """An agent 3 units of Sharpe better than buy-and-hold (each seed's luck spread by 1 unit around that) is found in
    all 100 runs; tails widened for one degree of freedom whatever the seeds (``interval_tail(confidence, 1)``, an
    interval too cautious to find anything) found it in none."""
    runs = 100
    result = calibrate_cell(_config(Market(), runs), Shape(4, 3, 121), edge=3.0)
    assert result.true_difference == pytest.approx(3.0, abs=0.15)
    assert result.better.share >= 0.8, f"found in {result.better} of {runs} runs"
    assert result.worse.count == 0
    assert result.covered.share >= 0.9


def test_the_command_prints_a_table_and_refuses_bad_arguments_in_one_line(capsys: pytest.CaptureFixture) -> None:
    assert (
        main(["--runs", "2", "--folds", "2", "--seeds", "3", "--sessions", "30", "--edges", "0", "--resamples", "20"])
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| folds × seeds × sessions | true edge | true difference | runs |")
    assert out[2].startswith("| 2 × 3 × 30 | +0.00 |")
    with pytest.raises(SystemExit) as exit_info:
        main(["--tail-dof", "2"])
    assert exit_info.value.code == 2
    help_hint = "; see python -m devtools.verdict_calibration --help\n"
    assert capsys.readouterr().err == (
        "error: --tail-dof must exceed 2 (the variance is infinite otherwise)" + help_hint
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["--first-fold-seed-sharpe-sd", "-1"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: --first-fold-seed-sharpe-sd must not be negative" + help_hint


def test_the_first_fold_alone_takes_its_own_spread_between_seeds_and_the_truth_leaves_the_luck_out() -> None:
    market = Market(seed_sharpe_sd=0.5, first_fold_seed_sharpe_sd=4.0)
    assert market.seed_spreads(3).tolist() == [4.0, 0.5, 0.5]
    assert Market(seed_sharpe_sd=0.5).seed_spreads(2).tolist() == [0.5, 0.5]
    # The seeds' luck adds nothing to the expected Sharpe difference: the truth is the same whatever the spread.
    assert true_difference(market, 60, 1.0, 2000, 0) == true_difference(Market(seed_sharpe_sd=0.0), 60, 1.0, 2000, 0)
