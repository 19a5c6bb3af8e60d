"""One sweep trial, as it runs on a Ray worker: a configuration trained fold after fold and scored on validation only.

Tune's trainable (:func:`run_trial`) and what it needs: the score of a fold and the objective, the guard that refuses a
score computed outside the fold's validation split, and what a trial asks of Ray (:func:`trial_resources`). Ray pickles
the trainable by its module and name (``training.sweep_trial.run_trial``): every worker imports this module, which
loads torch and Stable-Baselines3 only inside the trial. The driver's side of the sweep is training/sweep.py.

**The objective** is the mean over the search folds of the agent's annualised Sharpe ratio on each fold's validation
sessions (pooled over symbols; with ``--trial-seeds`` above 1, the mean over those seeds first), for the checkpoint
selected on those sessions. The mean, not a lower confidence bound: ASHA compares trials after each fold, where the
mean of the folds so far is defined from the first fold on while a bound from one or two folds is mostly noise;
every trial sees the same folds and seeds, so comparisons are paired. The level is optimistic (the checkpoint was
chosen on the same sessions), equally so for every trial; the honest number is the final walk-forward's test
statistics, whose deflated Sharpe ratio charges for every trial tried. A fold whose Sharpe ratio is undefined
counts as ``WORST_SCORE``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from training.config import TrainConfig
from training.folds import Fold
from training.market_data import MarketData
from training.sweep_space import SearchSpace

if TYPE_CHECKING:  # torch and SB3 load only when a trial runs
    from ray.tune import PlacementGroupFactory

    from training.fold_task import ValidationResult

OBJECTIVE = "objective"
OBJECTIVE_TEXT = (
    "mean over folds of the agent's annualised validation Sharpe ratio (pooled symbols, mean over trial seeds)"
)
WORST_SCORE = -100.0
"""The score of a fold whose validation Sharpe ratio is undefined: below anything a real agent reaches."""
SCORE_METRIC = "sharpe"

Evaluate = Callable[[TrainConfig, "MarketData", Fold, int], "ValidationResult"]


class EvaluatedOutsideValidation(AssertionError):
    """A trial's score came from sessions outside its fold's validation split (the guard against tuning on test)."""


def fold_score(results: Sequence[ValidationResult]) -> float:
    """The agent's validation Sharpe ratio, mean over the trial's seeds (NaN when undefined for any seed)."""
    scores = [result.validation["agent"].metrics()[SCORE_METRIC] for result in results]
    return float(np.mean(scores)) if all(math.isfinite(score) for score in scores) else float("nan")


def objective(fold_scores: Sequence[float]) -> float:
    """Mean of the fold scores so far, an undefined fold counting as WORST_SCORE."""
    return float(np.mean([score if math.isfinite(score) else WORST_SCORE for score in fold_scores]))


def check_validation_only(result: ValidationResult, fold: Fold) -> None:
    """Raise unless every session every policy was scored on lies in ``fold``'s validation split."""
    for policy, replay in result.validation.items():
        dates = np.asarray(replay.dates, dtype="datetime64[D]")
        outside = dates[~fold.validation.contains(dates)] if len(dates) else dates
        if len(outside):
            raise EvaluatedOutsideValidation(
                f"fold {fold.fold_id}: the {policy} score used {len(outside)} session(s) outside the validation split "
                f"{fold.validation} (first {outside[0]}); a sweep may only score on validation sessions"
            )


def trial_resources(
    params: dict[str, Any], *, base: TrainConfig, space: SearchSpace, n_features: int, memory_offer: int
) -> PlacementGroupFactory:
    """What a trial asks of Ray: one CPU, and PPO's memory estimate for its drawn settings (training/ppo.py), so that
    trials whose settings would together need more than a node offers do not run side by side. The estimate is capped
    at the largest node's offer (``memory_offer``; none declared where nodes offer no memory resource): a trial that
    asked for more would wait for ever; started, it checks its settings against its machine and fails alone."""
    from ray.tune import PlacementGroupFactory

    from training.envs.spaces import observation_size
    from training.ppo import memory_needed

    if not memory_offer:
        return PlacementGroupFactory([{"CPU": 1}])
    config = space.apply(base, params)
    needed = memory_needed(config, observation_size(config.window, n_features=n_features))
    return PlacementGroupFactory([{"CPU": 1, "memory": min(needed, memory_offer)}])


def run_trial(
    params: dict[str, Any],
    *,
    base: TrainConfig,
    space: SearchSpace,
    data: MarketData,
    folds: Sequence[Fold],
    seeds: Sequence[int],
    evaluate: Evaluate | None = None,
) -> None:
    """Tune's trainable: train and score ``params`` on each fold's validation split, reporting after each fold."""
    import ray
    from ray import tune

    from training.fold_task import validate_configuration

    evaluate = evaluate or validate_configuration

    config = space.apply(base, params)
    node = f"{os.uname().nodename}/{ray.get_runtime_context().get_node_id()[:12]}"
    scores: list[float] = []
    steps = 0
    for fold in folds:
        visible = data.until(fold.validation.end)  # the trial never receives a row of this fold's test split
        results = [evaluate(config, visible, fold, seed) for seed in seeds]
        for result in results:
            check_validation_only(result, fold)
        steps += sum(result.training.steps for result in results)
        scores.append(fold_score(results))
        tune.report(
            {
                OBJECTIVE: objective(scores),
                "fold_id": fold.fold_id,
                "fold_score": scores[-1],
                "trial_steps": steps,
                "node": node,
            }
        )
