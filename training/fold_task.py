"""One fold x seed, start to finish: the unit of work of every training job (read top to bottom).

fit the feature scaler on the fold's train split -> PPO on train sessions -> every eval_freq steps score the policy
on validation and keep the best weights -> replay validation, then test (once, with the selected model) for the
agent and every baseline.

Nothing here touches the warehouse: a task gets the mart rows as a :class:`MarketData` (shipped through Ray's
object store by the walk-forward, or built in-process by ``make train``) and returns a :class:`TaskResult`.

Two entry points, both plain functions (a sweep's trial, training/sweep_trial.py, calls the first):

* :func:`validate_configuration`: train, select and score on validation; the rows after the fold's validation
  split are dropped before anything else, so test sessions cannot reach it;
* :func:`run_fold_seed`: the same, then the selected model is evaluated on test once, beside the baselines.
"""

from __future__ import annotations

import io
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback
from stable_baselines3.common.utils import set_random_seed

from training.baselines import (
    AgentPolicy,
    SmaCrossoverPolicy,
    buy_and_hold,
    flat,
    matched_random,
    sma_signals,
)
from training.callbacks import ValidationSelection
from training.config import TrainConfig
from training.envs import EnvSettings
from training.envs.batched_env import MarketArrays
from training.envs.spaces import observation_size
from training.evaluation import PolicyReplay, replay
from training.folds import SPLITS, Fold
from training.market_data import FeatureScaler, MarketData, SymbolSeries, build_series
from training.policies import AGENT, BUY_AND_HOLD, FLAT, RANDOM, SMA_CROSSOVER
from training.ppo import (
    TrainingStats,
    build_model,
    check_memory,
    check_unseen,
    learn,
    make_training_env,
    mark_seen,
)
from training.tradability import not_enough_data, sessions_needed

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "ppo"


@dataclass(frozen=True)
class FoldSeries:
    """One fold's symbol series per split, with features scaled by statistics of its train split."""

    fold: Fold
    scaler: FeatureScaler
    series: dict[str, list[SymbolSeries]]
    left_out: dict[str, list[str]]
    """Symbols with fewer than window + min_episode_steps sessions in a split, per split."""
    history: pd.DataFrame
    """Mart rows the SMA baseline computes its moving averages from (every row it was given: for a task, the whole
    mart; for a sweep trial, rows up to the validation end). Its averages use closes up to each session only."""

    @property
    def fold_id(self) -> int:
        return self.fold.fold_id


def env_settings(config: TrainConfig) -> EnvSettings:
    return EnvSettings.from_bps(
        config.window, config.initial_cash, config.commission_bps, config.slippage_bps, config.observation_clip
    )


def prepare_fold(data: MarketData, fold: Fold, config: TrainConfig, splits: Sequence[str] = SPLITS) -> FoldSeries:
    """Scale the features with the fold's train rows only, then cut one series per symbol and split."""
    scaler = FeatureScaler.fit(fold.rows(data.frame, "train"), list(data.feature_names), config.observation_clip)
    minimum = sessions_needed(config)
    series: dict[str, list[SymbolSeries]] = {}
    left_out: dict[str, list[str]] = {}
    for split in splits:
        cut = build_series(fold.rows(data.frame, split), split, scaler)
        series[split] = [s for s in cut if len(s) >= minimum]
        left_out[split] = [s.symbol for s in cut if len(s) < minimum]
        if not series[split]:
            raise not_enough_data(fold, split, minimum, pd.Series({s.symbol: len(s) for s in cut}, dtype=int))
    return FoldSeries(fold, scaler, series, left_out, data.frame)


def seed_everything(seed: int, torch_threads: int) -> None:
    """Python, NumPy and torch generators, and a fixed thread count (results are reproducible on CPU)."""
    random.seed(seed)
    np.random.seed(seed)
    set_random_seed(seed)
    torch.set_num_threads(torch_threads)


@dataclass(frozen=True)
class Selection:
    """The model chosen on validation, and how it was chosen."""

    model: PPO
    selected_step: int
    validation_score: float
    history: list[tuple[int, float]]
    """(environment steps, validation score) of every checkpoint scored."""
    training: TrainingStats


def validation_scorer(config: TrainConfig, series: Sequence[SymbolSeries]):
    """The selection score of a model: ``config.selection_metric`` of its pooled replay of ``series``."""
    settings = env_settings(config)
    market = MarketArrays(series, settings.window)  # laid out once, replayed at every checkpoint

    def score(model: PPO) -> float:
        result = replay("validation", series, settings, AgentPolicy(model, config.eval_deterministic), market)
        return result.metrics()[config.selection_metric]

    return score


@dataclass(frozen=True)
class RunExtras:
    """What a run in this process (make train) may add to a task: checkpoints, TensorBoard logs, resuming from a
    checkpoint and a progress bar. Tasks on Ray get none (a worker's files are not the driver's)."""

    checkpoint_dir: Path | None = None
    checkpoint_freq: int = 0
    tensorboard_dir: Path | None = None
    resume: Path | None = None
    progress_bar: bool = False


def train_and_select(
    config: TrainConfig, fold_series: FoldSeries, seed: int, extras: RunExtras = RunExtras()
) -> Selection:
    """PPO on the fold's train series; the checkpoint with the best validation score is the one returned."""
    settings = env_settings(config)
    check_memory(config, observation_size(settings.window, n_features=fold_series.series["train"][0].features.shape[1]))
    seed_everything(seed, config.torch_threads)
    env = make_training_env(config, fold_series.series["train"], settings)
    try:
        model = build_model(config, env, seed, extras.tensorboard_dir, extras.resume)
        fold = fold_series.fold
        if extras.resume is not None:
            check_unseen(model, fold, extras.resume)
        mark_seen(model, fold.train.end)  # the checkpoints saved while it learns say so
        selection = ValidationSelection(validation_scorer(config, fold_series.series["validation"]), config.eval_freq)
        callbacks: list[BaseCallback] = [selection]
        if extras.checkpoint_dir is not None and extras.checkpoint_freq > 0:
            callbacks.append(
                CheckpointCallback(
                    save_freq=max(extras.checkpoint_freq // config.n_envs, 1),
                    save_path=str(extras.checkpoint_dir),
                    name_prefix=CHECKPOINT_PREFIX,
                )
            )
        stats = learn(model, config.timesteps, callbacks, extras.progress_bar, resumed=extras.resume is not None)
        selection.restore_best(model)
        mark_seen(model, fold.validation.end)  # it was chosen on validation sessions
    finally:
        env.close()
    assert selection.best_step is not None
    # DEBUG: the finished-task line (training/task_runners.py) says the same to the user.
    logger.debug(
        "fold %d seed %d: selected the checkpoint at %d steps (validation %s %.3f)",
        fold_series.fold_id,
        seed,
        selection.best_step,
        config.selection_metric,
        selection.best_score,
    )
    return Selection(model, selection.best_step, selection.best_score, list(selection.history), stats)


def evaluate_policies(
    config: TrainConfig, fold_series: FoldSeries, model: PPO, seed: int, split: str
) -> dict[str, PolicyReplay]:
    """Replay one split with the agent and every baseline, through the same batched environment and costs."""
    settings = env_settings(config)
    series = fold_series.series[split]
    market = MarketArrays(series, settings.window)
    agent = replay(split, series, settings, AgentPolicy(model, config.eval_deterministic), market)
    signals = sma_signals(fold_series.history, series, config.sma_fast, config.sma_slow)
    random_policy = matched_random(
        agent.symbol_metrics, market.symbols, config.random_draws, seed, fold_series.fold_id, split
    )
    return {
        AGENT: agent,
        BUY_AND_HOLD: replay(split, series, settings, buy_and_hold(), market),
        FLAT: replay(split, series, settings, flat(), market),
        SMA_CROSSOVER: replay(split, series, settings, SmaCrossoverPolicy(signals), market),
        RANDOM: replay(split, series, settings, random_policy, market),
    }


def model_bytes(model: PPO) -> bytes:
    buffer = io.BytesIO()
    model.save(buffer)
    return buffer.getvalue()


@dataclass
class TaskResult:
    """What one fold x seed task sends back to the driver (no database access needed to produce it)."""

    fold_id: int
    seed: int
    selected_step: int
    validation_score: float
    selection_history: list[tuple[int, float]]
    training: TrainingStats
    replays: dict[str, dict[str, PolicyReplay]]
    """split ('validation', 'test') -> policy -> replay."""
    symbols: dict[str, int]
    """Symbols traded in each split."""
    left_out: dict[str, list[str]]
    scaler: dict
    model_zip: bytes = field(repr=False)
    wall_seconds: float = 0.0
    node: str = ""
    attempts: int = 1


@dataclass(frozen=True)
class ValidationResult:
    """What :func:`validate_configuration` returns: the validation side of a task, nothing about test."""

    fold_id: int
    seed: int
    score: float
    """``selection_metric`` of the selected model's pooled validation replay."""
    selected_step: int
    selection_history: list[tuple[int, float]]
    validation: dict[str, PolicyReplay]
    """'agent' and every baseline on the validation split."""
    training: TrainingStats
    wall_seconds: float


def validate_configuration(config: TrainConfig, data: MarketData, fold: Fold, seed: int) -> ValidationResult:
    """Train on ``fold``'s train split, select on its validation split and score it there; never touches test.

    The rows after the validation split are dropped before the scaler, the environments or the baselines see any
    row, so a sweep that calls this for every trial cannot choose on test sessions.
    """
    started = time.perf_counter()
    fold_series = prepare_fold(data.until(fold.validation.end), fold, config, splits=("train", "validation"))
    selection = train_and_select(config, fold_series, seed)
    validation = evaluate_policies(config, fold_series, selection.model, seed, "validation")
    return ValidationResult(
        fold_id=fold.fold_id,
        seed=seed,
        score=selection.validation_score,
        selected_step=selection.selected_step,
        selection_history=selection.history,
        validation=validation,
        training=selection.training,
        wall_seconds=time.perf_counter() - started,
    )


def run_fold_seed(
    config: TrainConfig, data: MarketData, fold: Fold, seed: int, extras: RunExtras = RunExtras()
) -> TaskResult:
    """Train, select on validation, then evaluate the selected model on test once, beside the baselines."""
    started = time.perf_counter()
    fold_series = prepare_fold(data, fold, config)
    selection = train_and_select(config, fold_series, seed, extras)
    replays = {
        split: evaluate_policies(config, fold_series, selection.model, seed, split) for split in ("validation", "test")
    }
    return TaskResult(
        fold_id=fold.fold_id,
        seed=seed,
        selected_step=selection.selected_step,
        validation_score=selection.validation_score,
        selection_history=selection.history,
        training=selection.training,
        replays=replays,
        symbols={split: len(fold_series.series[split]) for split in SPLITS},
        left_out=fold_series.left_out,
        scaler=fold_series.scaler.to_dict(),
        model_zip=model_bytes(selection.model),
        wall_seconds=time.perf_counter() - started,
    )
