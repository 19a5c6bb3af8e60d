"""PROVISIONAL test double of the walk-forward fold interface (/work/notes/folds-interface.md).

Helper "a1-folds" builds the real ``Fold`` / ``DateRange`` (training/mart.py) and the fold layout (dbt model
``marts.walk_forward_folds``). Until that lands, the runner's tests and benchmarks build folds here, with the
agreed shape; this module is deleted when the real one is merged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd

Role = Literal["train", "validation", "test"]


@dataclass(frozen=True)
class DateRange:
    start: date
    end: date

    def contains(self, dates) -> np.ndarray:
        values = pd.to_datetime(pd.Series(dates)).dt.date.to_numpy()
        return (values >= self.start) & (values <= self.end)


@dataclass(frozen=True)
class Fold:
    fold_id: int
    train: DateRange
    validation: DateRange
    test: DateRange
    purge_sessions: int
    embargo_sessions: int

    def rows(self, frame: pd.DataFrame, role: Role) -> pd.DataFrame:
        return frame[getattr(self, role).contains(frame["session_date"])]


def lay_out_folds(
    sessions,
    *,
    folds: int = 1,
    test_sessions: int | None = None,
    validation_sessions: int | None = None,
    purge_sessions: int = 1,
    embargo_sessions: int = 5,
    train_sessions: int | None = None,
) -> tuple[Fold, ...]:
    """Folds whose test windows tile the last ``sessions`` (same signature as a1-folds' devtools helper)."""
    days = sorted(set(pd.to_datetime(pd.Series(sessions)).dt.date))
    test_sessions = test_sessions or len(days) // (folds + 4)
    validation_sessions = validation_sessions or len(days) // (folds + 4)
    gap = purge_sessions + embargo_sessions
    laid_out = []
    for position in range(folds, 0, -1):  # oldest first
        test_end = len(days) - 1 - (position - 1) * test_sessions
        test_start = test_end - test_sessions + 1
        validation_end = test_start - gap - 1
        validation_start = validation_end - validation_sessions + 1
        train_end = validation_start - gap - 1
        train_start = 0 if train_sessions is None else max(0, train_end - train_sessions + 1)
        if train_end < train_start:
            raise ValueError(f"{len(days)} sessions are too few for {folds} folds of {test_sessions} test sessions")
        laid_out.append(
            Fold(
                fold_id=folds - position + 1,
                train=DateRange(days[train_start], days[train_end]),
                validation=DateRange(days[validation_start], days[validation_end]),
                test=DateRange(days[test_start], days[test_end]),
                purge_sessions=purge_sessions,
                embargo_sessions=embargo_sessions,
            )
        )
    return tuple(laid_out)


def synthetic_mart_rows(n_symbols: int = 5, n_sessions: int = 300, *, seed: int = 0) -> pd.DataFrame:
    """The synthetic mart in the new shape (every session, no split column), from today's devtools.synthetic_mart."""
    from devtools.synthetic_mart import synthetic_mart

    return synthetic_mart(n_symbols, n_sessions, seed=seed, embargo_sessions=0).drop(columns="split")
