"""Which trial a sweep chooses, and how much its trials' scores vary: read from the trial rows (ml.sweep_trials).

The driver (training/sweep.py) ranks the completed trials (every search fold scored) by objective, and chooses the best
one whose configuration the final walk-forward can run: a better one whose window a report fold is too short for is
passed over, and named with the reason (:func:`choose_trial`, :func:`passed_over_text`). The variance of the scored
trials' objectives (:func:`trial_sharpe_variance`) is what the final walk-forward's deflated Sharpe ratio charges
for. Plain functions of the records: no Ray, no database.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from training.tradability import NotEnoughData


def ranked_trials(trials: Sequence[Any], folds: int) -> list[Any]:
    """The completed trials (every fold scored), the highest objective first; the earlier one first on a tie."""
    completed = [t for t in trials if t.state == "completed" and t.folds_done == folds and t.objective is not None]
    return sorted(completed, key=lambda t: (-t.objective, t.trial_number))


def best_trial(trials: Sequence[Any], folds: int) -> Any | None:
    """The completed trial (every fold scored) with the highest objective; the earlier one on a tie."""
    return next(iter(ranked_trials(trials, folds)), None)


@dataclass(frozen=True)
class Choice:
    """The trial the sweep chooses (the final walk-forward runs its configuration), and the better-scoring completed
    trials it passed over because a report fold cannot trade their configuration, each with the refusal."""

    trial: Any | None
    passed_over: list[tuple[Any, NotEnoughData]]


def choose_trial(
    trials: Sequence[Any], folds: int, refusal: Callable[[Any], NotEnoughData | None] | None = None
) -> Choice:
    """The best completed trial whose configuration the final walk-forward can run. ``refusal``: a report fold's refusal
    of a trial's configuration (a split no symbol can trade with the window it drew), None when it can trade every
    one; without it (no final walk-forward) the best completed trial. A trial whose window a report fold cannot trade
    was chosen before, and the walk-forward refused the fold after the whole search, on every --resume too."""
    passed_over: list[tuple[Any, NotEnoughData]] = []
    for trial in ranked_trials(trials, folds):
        refused = refusal(trial) if refusal is not None else None
        if refused is None:
            return Choice(trial, passed_over)
        passed_over.append((trial, refused))
    return Choice(None, passed_over)


def passed_over_text(passed_over: Sequence[tuple[Any, NotEnoughData]]) -> str:
    """The passed-over trials for one line, grouped by what refused them: "trial 1 (objective 0.732), trial 4 (objective
    0.500): window 8 needs 13 sessions (window + min_episode_steps) in fold 3's test split ..., where no symbol has more
    than 10"."""
    groups: dict[str, list[Any]] = {}
    for trial, refused in passed_over:
        why = (
            f"window {trial.config.get('window')} needs {refused.needed} sessions (window + min_episode_steps) in "
            f"{refused.split_text}, where no symbol has more than {refused.most}"
        )
        groups.setdefault(why, []).append(trial)
    return "; ".join(
        ", ".join(f"trial {t.trial_number} (objective {t.objective:.3f})" for t in group) + f": {why}"
        for why, group in groups.items()
    )


def trial_sharpe_variance(trials: Sequence[Any]) -> float | None:
    """Variance across the scored trials of their objective, per session (the DSR's V); None with fewer than 2.

    Only trials whose every fold score is defined count: one undefined fold enters the objective as WORST_SCORE,
    which ranks the trial last but is not a Sharpe ratio, and would blow V (and so the DSR's hurdle) up."""
    scores = [
        t.objective
        for t in trials
        if t.scored
        and t.objective is not None
        and t.fold_scores
        and all(score is not None and math.isfinite(score) for score in t.fold_scores)
    ]
    if len(scores) < 2:
        return None
    from training.metrics import TRADING_DAYS_PER_YEAR

    return float(np.var(scores, ddof=1) / TRADING_DAYS_PER_YEAR)
