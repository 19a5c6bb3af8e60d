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

The verdict as it is claims evidence in 4% of these runs and never from one seed.
"""

from __future__ import annotations

import pytest

from devtools.verdict_calibration import CalibrationConfig, Market, Shape, calibrate_cell, main

SEEDS_DOMINATE = Market(seed_sharpe_sd=3.0, correlation=0.99)


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
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].endswith("--tail-dof must exceed 2 (the variance is infinite otherwise)")
