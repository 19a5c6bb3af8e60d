"""``make train``: the walk-forward job on one fold with one seed, in this process (read training/walk_forward.py).

The quick single run: the latest fold by default (``--fold`` picks another), the seed ``--seed``, with a progress bar,
TensorBoard logs, optional checkpoints and ``--resume``. It writes the same run folder, report and ml.walk_forward_*
rows as the walk-forward, so one query reads both; its statistics say that they rest on one fold and one seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from training.config import SingleRunConfig, TrainConfig
from training.folds import Fold, select_folds
from training.task_runners import InProcessRunner
from training.walk_forward import KIND_TRAIN, WalkForwardResult, execute
from warehouse_db.settings import ConnectionSettings

if TYPE_CHECKING:
    from training.fold_task import TaskResult
    from training.market_data import MarketData


def latest_or(fold_id: int | None):
    """Picks the fold with ``fold_id``, or the latest one (the most recent test split)."""

    def pick(folds: Sequence[Fold]) -> list[Fold]:
        return select_folds(folds, () if fold_id is None else (fold_id,), flag="--fold")[-1:]

    return pick


def run_training(config: SingleRunConfig, settings: ConnectionSettings) -> WalkForwardResult:
    """Train on one fold with one seed, select on its validation split, test once; raises before training when the
    mart breaks its contract."""

    def runner(run_dir: Path) -> InProcessRunner:
        return InProcessRunner(task=partial(_task_with_extras, run_dir=run_dir, run=config))

    return execute(
        KIND_TRAIN,
        config,
        settings,
        fold_ids=(),
        seeds=(config.seed,),
        make_runner=runner,
        pick_folds=latest_or(config.fold),
        fold_flag="--fold",
    )


def _task_with_extras(
    config: TrainConfig, data: MarketData, fold: Fold, seed: int, *, run_dir: Path, run: SingleRunConfig
) -> TaskResult:
    """The fold x seed task with what a run in this process adds: checkpoints, TensorBoard logs, resume, a progress
    bar. training.fold_task (torch, stable-baselines3: seconds) is imported when the task starts, not with the run:
    a warehouse that does not answer, or a taken --run-id, is said in one line at once."""
    from training.fold_task import RunExtras, run_fold_seed

    extras = RunExtras(
        checkpoint_dir=run_dir / "checkpoints",
        checkpoint_freq=run.checkpoint_freq,
        tensorboard_dir=run_dir / "tb",
        resume=run.resume,
        progress_bar=run.progress_bar,
    )
    return run_fold_seed(config, data, fold, seed, extras=extras)
