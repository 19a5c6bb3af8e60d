"""Walk-forward folds as the training side sees them: date ranges laid out by dbt in ``marts.walk_forward_folds``.

A fold trains on its ``train`` split, selects a model on its ``validation`` split and is scored once on its ``test``
split. Each split is an inclusive range of exchange-session dates that applies to every symbol; between them lie
``purge_sessions + embargo_sessions`` sessions that belong to no split. How they are laid out (and why) is the dbt
model's business: warehouse/models/marts/walk_forward_folds.yml. This module only carries them and selects rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import numpy as np
import pandas as pd

from warehouse_db import schemas

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
"""The splits of a fold, in time order."""

FOLDS_TABLE = "walk_forward_folds"
FOLD_COLUMNS = (
    "fold_id",
    "train_start",
    "train_end",
    "validation_start",
    "validation_end",
    "test_start",
    "test_end",
    "purge_sessions",
    "embargo_sessions",
)
"""The columns of ``marts.walk_forward_folds`` a :class:`Fold` is built from (the table has a few more)."""


def _as_days(dates: Any) -> np.ndarray:
    """Dates (datetime.date objects, strings, Timestamps or datetime64) as a datetime64[D] array."""
    return pd.to_datetime(pd.Series(dates, copy=False)).to_numpy(dtype="datetime64[D]")


@dataclass(frozen=True)
class DateRange:
    """An inclusive range of session dates."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise ValueError(f"a date range must not end ({self.end}) before it starts ({self.start})")

    def contains(self, dates: Any) -> np.ndarray:
        """Boolean mask: which of ``dates`` lie in the range (start and end included)."""
        days = _as_days(dates)
        return (days >= np.datetime64(self.start, "D")) & (days <= np.datetime64(self.end, "D"))

    def __str__(self) -> str:
        return f"{self.start} … {self.end}"


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: three splits (date ranges) in time order, with the gaps dbt left between them."""

    fold_id: int
    train: DateRange
    validation: DateRange
    test: DateRange
    purge_sessions: int
    """Sessions after train and after validation that no split holds: at least the target's horizon."""
    embargo_sessions: int
    """Further sessions left out after each purge, against serial correlation."""

    def dates(self, split: Split) -> DateRange:
        if split not in SPLITS:
            raise ValueError(f"a fold's splits are {SPLITS}, not {split!r}")
        return getattr(self, split)

    def rows(self, frame: pd.DataFrame, split: Split) -> pd.DataFrame:
        """The rows of ``frame`` whose ``session_date`` lies in this fold's ``split`` (order kept)."""
        return frame[self.dates(split).contains(frame["session_date"])]

    def labelled_rows(self, frame: pd.DataFrame, column: str = "split") -> pd.DataFrame:
        """The rows of ``frame`` in any of the three splits, with ``column`` naming the split (order kept).

        Rows in the purge and embargo gaps, and rows outside the fold, are not returned.
        """
        labels = pd.Series(pd.NA, index=frame.index, dtype="object")
        for split in SPLITS:
            labels[self.dates(split).contains(frame["session_date"])] = split
        labelled = frame.assign(**{column: labels})
        return labelled[labelled[column].notna()]

    def to_dict(self) -> dict[str, Any]:
        """Plain values (ISO dates), in the column order of ``marts.walk_forward_folds``."""
        return {
            "fold_id": self.fold_id,
            **{
                f"{split}_{edge}": getattr(self.dates(split), edge).isoformat()
                for split in SPLITS
                for edge in ("start", "end")
            },
            "purge_sessions": self.purge_sessions,
            "embargo_sessions": self.embargo_sessions,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Fold:
        """A fold from a row of ``marts.walk_forward_folds`` (a mapping with at least :data:`FOLD_COLUMNS`)."""
        return cls(
            fold_id=int(row["fold_id"]),
            **{split: DateRange(_as_date(row[f"{split}_start"]), _as_date(row[f"{split}_end"])) for split in SPLITS},
            purge_sessions=int(row["purge_sessions"]),
            embargo_sessions=int(row["embargo_sessions"]),
        )


def _as_date(value: Any) -> date:
    return pd.Timestamp(value).date()


class FoldSelectionError(ValueError):
    """The configured fold is not in ``marts.walk_forward_folds``."""


def select_folds(folds: Iterable[Fold], wanted: Iterable[int] = (), flag: str = "--folds") -> list[Fold]:
    """The folds with the ``wanted`` ids (every fold when none are wanted), oldest first.

    An empty fold table or an id it lacks is an error that names ``flag``, the option that chose the ids.
    """
    by_id = {fold.fold_id: fold for fold in folds}
    if not by_id:
        raise FoldSelectionError(
            f"{schemas.MARTS}.{FOLDS_TABLE} has no fold: build the warehouse first (make dbt-build)"
        )
    wanted = set(wanted)
    if missing := sorted(wanted - set(by_id)):
        raise FoldSelectionError(
            f"{schemas.MARTS}.{FOLDS_TABLE} has no fold {', '.join(map(str, missing))} (its folds: {sorted(by_id)}): "
            f"choose {flag}"
        )
    return [by_id[fold_id] for fold_id in sorted(wanted or by_id)]


__all__ = ["FOLDS_TABLE", "FOLD_COLUMNS", "SPLITS", "DateRange", "Fold", "FoldSelectionError", "Split", "select_folds"]
