"""The tradability rule, in one place: a symbol trades a fold's split when it has a full observation window plus
``min_episode_steps`` sessions there; a split no symbol can trade is refused (:class:`NotEnoughData`) before any task
trains.

Every check (a walk-forward's before it trains, a sweep's before its search and when it chooses the trial to walk
forward) and every task (training/fold_task.py) applies it. Counting sessions needs pandas only, not the training
stack (torch, stable-baselines3), so a command reaches its one-line errors at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from training.config import TrainConfig
from training.folds import SPLITS, Fold
from training.market_data import MarketData


class NotEnoughData(ValueError):
    """A fold's split holds no symbol with enough sessions to trade."""

    fold_id: int | None = None
    split: str | None = None
    split_text: str = ""
    """e.g. "fold 3's test split 2026-01-02 .. 2026-02-27"."""
    needed: int = 0
    """window + min_episode_steps: the sessions a symbol needs in the split."""
    most: int = 0
    """The most sessions any symbol has there."""


def sessions_needed(config: TrainConfig) -> int:
    """The sessions a symbol needs in a split to trade there: a full observation window, then min_episode_steps
    decisions. Every check (a walk-forward's before it trains, a sweep's before its search and when it chooses the
    trial to walk forward) and every task (:func:`training.fold_task.prepare_fold`) applies it."""
    return config.window + config.min_episode_steps


def largest_window(data: MarketData, fold: Fold, split: str, config: TrainConfig) -> int:
    """The largest window some symbol can trade ``fold``'s ``split`` with (the inverse of :func:`sessions_needed`)."""
    sessions = split_sessions(data, fold, split)
    return (int(sessions.max()) if len(sessions) else 0) - config.min_episode_steps


def not_enough_data(
    fold: Fold,
    split: str,
    minimum: int,
    sessions: pd.Series,
    flag: str = "--folds",
    window: str = "--window",
) -> NotEnoughData:
    """The refusal for a split in which no symbol has ``minimum`` sessions; ``sessions``: each symbol's count there,
    ``flag``: the option that chose the folds (``--fold`` for make train), ``window``: what sets the window (a sweep's
    search space, where it searches the window)."""
    if sessions.empty:
        closest = "no symbol has a row there"
    else:
        most = sessions.sort_values(ascending=False, kind="mergesort").head(3)
        closest = "the most: " + ", ".join(f"{symbol} {count}" for symbol, count in most.items())
    error = NotEnoughData(
        f"fold {fold.fold_id}: no symbol has {minimum} sessions (window + min_episode_steps) in its {split} "
        f"split {fold.dates(split).start} .. {fold.dates(split).end} ({closest}): lower {window} or "
        f"--min-episode-steps, {'train on another fold' if flag == '--fold' else 'leave the fold out'} ({flag}), or "
        "fetch more history"
    )
    error.fold_id, error.split, error.needed = fold.fold_id, split, minimum
    error.most = int(sessions.max()) if not sessions.empty else 0
    error.split_text = f"fold {fold.fold_id}'s {split} split {fold.dates(split).start} .. {fold.dates(split).end}"
    return error


def split_sessions(data: MarketData, fold: Fold, split: str) -> pd.Series:
    """Each symbol's sessions in ``fold``'s ``split``: a symbol can trade there with a window of up to this count less
    min_episode_steps."""
    return fold.rows(data.frame, split).groupby("symbol", sort=True).size()


def untradable_split(
    data: MarketData,
    folds: Sequence[Fold],
    config: TrainConfig,
    flag: str = "--folds",
    splits: Sequence[str] = SPLITS,
    window: str = "--window",
) -> NotEnoughData | None:
    """The refusal (:class:`NotEnoughData`) of the first fold whose split (of ``splits``) no symbol can trade with
    ``config``'s window (:func:`sessions_needed`), or None when every one can."""
    minimum = sessions_needed(config)
    for fold in folds:
        for split in splits:
            sessions = split_sessions(data, fold, split)
            if not (sessions >= minimum).any():
                return not_enough_data(fold, split, minimum, sessions, flag, window)
    return None


def check_enough_sessions(
    data: MarketData,
    folds: Sequence[Fold],
    config: TrainConfig,
    flag: str = "--folds",
    splits: Sequence[str] = SPLITS,
    window: str = "--window",
) -> None:
    """Raise :class:`NotEnoughData` for the first fold whose split (of ``splits``) no symbol can trade (the rule of
    :func:`training.fold_task.prepare_fold`), before any task trains: a walk-forward would otherwise train every
    other fold and then fail that fold's tasks, twice each. A sweep checks at the smallest window its search space
    allows."""
    if (refusal := untradable_split(data, folds, config, flag, splits, window)) is not None:
        raise refusal
