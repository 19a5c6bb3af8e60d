"""The sweep's objective and the variance its deflated Sharpe ratio charges for (unit tests: no Ray, no database)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from training.metrics import TRADING_DAYS_PER_YEAR
from training.results_store import TrialRecord
from training.sweep import WORST_SCORE, objective, trial_sharpe_variance


def trial(number: int, fold_scores: list[float], state: str = "completed") -> TrialRecord:
    return TrialRecord(
        sweep_id="s", trial_number=number, tune_trial_id=str(number), state=state, params={}, config={},
        config_hash="h", started_at=datetime.now(UTC), objective=objective(fold_scores),
        folds_done=len(fold_scores), fold_ids=list(range(1, len(fold_scores) + 1)), fold_scores=fold_scores,
    )  # fmt: skip


def test_an_undefined_fold_ranks_a_trial_last() -> None:
    assert objective([0.5, math.nan]) == pytest.approx((0.5 + WORST_SCORE) / 2)
    assert objective([0.5, math.nan]) < objective([-3.0, -3.0])


def test_the_variance_counts_only_trials_whose_every_fold_is_a_sharpe_ratio() -> None:
    """A fold with an undefined Sharpe ratio enters the objective as -100: counted in V, it would raise the expected
    best-of-N Sharpe ratio so far that no configuration could ever look deflated-significant."""
    trials = [
        trial(0, [0.5, 1.5]),
        trial(1, [1.0, 2.0]),
        trial(2, [-0.5], state="pruned"),
        trial(3, [math.nan, 0.5]),  # scored, ranked last, but no Sharpe ratio to take a variance of
        trial(4, [9.0, 9.0], state="failed"),
    ]
    expected = np.var([1.0, 1.5, -0.5], ddof=1) / TRADING_DAYS_PER_YEAR
    assert trial_sharpe_variance(trials) == pytest.approx(expected)
    assert trial_sharpe_variance(trials[2:]) is None  # fewer than two Sharpe ratios
