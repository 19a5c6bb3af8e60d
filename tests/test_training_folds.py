"""Folds on the training side (unit tests, no database): splits as date ranges, the rows a fold selects, choosing a fold,
and the synthetic mart's fold double keeping the rules dbt keeps (by date, purge + embargo, test never trained on)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from devtools.synthetic_mart import FEATURE_LOOKBACKS, lay_out_folds, synthetic_mart, with_split
from market_calendar import sessions_in_range
from training.config import load_config
from training.fold_task import prepare_fold
from training.folds import SPLITS, DateRange, Fold, FoldSelectionError, select_folds
from training.market_data import MarketData
from training.single_run import latest_or


@pytest.fixture(scope="module")
def mart() -> pd.DataFrame:
    return synthetic_mart(n_symbols=3, n_sessions=300, seed=5)


def test_a_date_range_is_inclusive_and_takes_any_date_type() -> None:
    march = DateRange(date(2024, 3, 1), date(2024, 3, 28))
    days = ["2024-02-29", "2024-03-01", "2024-03-15", "2024-03-28", "2024-03-29"]
    expected = [False, True, True, True, False]
    assert march.contains(days).tolist() == expected
    assert march.contains(pd.Series(pd.to_datetime(days).date)).tolist() == expected
    assert march.contains(np.array(days, dtype="datetime64[D]")).tolist() == expected
    assert str(march) == "2024-03-01 … 2024-03-28"
    with pytest.raises(ValueError, match="before it starts"):
        DateRange(date(2024, 3, 2), date(2024, 3, 1))


def test_a_fold_selects_its_rows_by_date_and_leaves_the_gaps_out(mart: pd.DataFrame) -> None:
    (fold,) = lay_out_folds(mart["session_date"], purge_sessions=1, embargo_sessions=5)
    sessions = sorted(set(mart["session_date"]))
    labelled = fold.labelled_rows(mart)
    assert list(labelled.columns) == [*mart.columns, "split"] and labelled.index.is_monotonic_increasing
    for split in SPLITS:
        rows = fold.rows(mart, split)
        assert rows["session_date"].between(fold.dates(split).start, fold.dates(split).end).all()
        assert rows.equals(labelled[labelled["split"] == split].drop(columns="split"))
        assert set(rows["symbol"]) == set(mart["symbol"])
    # Every session is in at most one split; the 2 x 6 sessions in the purge + embargo gaps are in none.
    per_session = labelled.groupby("session_date")["split"].nunique()
    assert (per_session == 1).all()
    assert len(sessions) - labelled["session_date"].nunique() == 2 * (fold.purge_sessions + fold.embargo_sessions)
    assert with_split(mart).equals(labelled.reset_index(drop=True))
    with pytest.raises(ValueError, match="not 'holdout'"):
        fold.rows(mart, "holdout")  # type: ignore[arg-type]


def test_the_fold_double_keeps_the_rules_of_the_dbt_model(mart: pd.DataFrame) -> None:
    """By date, test splits tiling the last sessions, purge + embargo exchange sessions before validation and test,
    and no test session in its fold's train or validation rows: for both schemes."""
    sessions = list(sessions_in_range(min(mart["session_date"]), max(mart["session_date"])).date)
    index = {session: position for position, session in enumerate(sessions)}
    for train_sessions in (None, 80):
        folds = lay_out_folds(mart["session_date"], folds=3, test_sessions=25, validation_sessions=20,
                              purge_sessions=2, embargo_sessions=3, train_sessions=train_sessions)  # fmt: skip
        assert [fold.fold_id for fold in folds] == [1, 2, 3] and folds[-1].test.end == sessions[-1]
        for fold in folds:
            assert index[fold.validation.start] - index[fold.train.end] - 1 == 5
            assert index[fold.test.start] - index[fold.validation.end] - 1 == 5
            test_days = set(fold.rows(mart, "test")["session_date"])
            assert len(test_days) == 25
            assert not test_days & set(fold.rows(mart, "train")["session_date"])
            assert not test_days & set(fold.rows(mart, "validation")["session_date"])
            train_days = index[fold.train.end] - index[fold.train.start] + 1
            assert fold.train.start == sessions[0] if train_sessions is None else train_days == 80
        for earlier, later in zip(folds, folds[1:], strict=False):
            assert index[later.test.start] == index[earlier.test.end] + 1
    with pytest.raises(ValueError, match="too few"):
        lay_out_folds(mart["session_date"], folds=20, test_sessions=25)


def test_folds_round_trip_through_a_table_row() -> None:
    fold = Fold(1, DateRange(date(2024, 1, 2), date(2024, 6, 3)), DateRange(date(2024, 6, 12), date(2024, 7, 1)),
                DateRange(date(2024, 7, 10), date(2024, 8, 30)), purge_sessions=1, embargo_sessions=5)  # fmt: skip
    row = fold.to_dict()
    assert list(row)[:3] == ["fold_id", "train_start", "train_end"] and row["test_end"] == "2024-08-30"
    assert Fold.from_row(row) == fold
    assert Fold.from_row({**row, "train_start": pd.Timestamp("2024-01-02"), "scheme": "expanding"}) == fold


def test_select_folds_takes_every_fold_by_default_oldest_first(mart: pd.DataFrame) -> None:
    folds = lay_out_folds(mart["session_date"], folds=3, test_sessions=20, validation_sessions=20)
    assert select_folds(reversed(folds)) == list(folds) and select_folds(reversed(folds), [3, 2]) == list(folds[1:])
    with pytest.raises(FoldSelectionError, match=r"no fold 7, 9 \(its folds: \[1, 2, 3\]\): choose --folds$"):
        select_folds(folds, [9, 2, 7])
    with pytest.raises(FoldSelectionError, match="has no fold: build the warehouse first"):
        select_folds((), flag="--fold")


def test_the_single_run_trains_on_one_fold_and_drops_symbols_too_short_for_a_split(mart: pd.DataFrame) -> None:
    """`make train`: the latest fold by default (or --fold); a symbol listed late sits out the splits it barely
    reaches instead of breaking the episode length the contract promises."""
    folds = lay_out_folds(mart["session_date"], folds=2, test_sessions=30, validation_sessions=30)
    first_validation = folds[-1].validation.start
    late = mart[(mart["symbol"] != "SYM002") | (mart["session_date"] > first_validation)]  # SYM002: 1 day short
    config = load_config(None, {"window": 5, "min_episode_steps": 25})

    (fold,) = latest_or(config.fold)(folds)
    assert fold is folds[-1]
    series = prepare_fold(MarketData.from_frame(late, list(FEATURE_LOOKBACKS)), fold, config).series
    lengths = {split: {s.symbol: len(s) for s in series[split]} for split in SPLITS}
    assert "SYM002" not in lengths["train"] and "SYM002" not in lengths["validation"]
    assert lengths["test"]["SYM002"] == 30
    assert all(length >= 30 for split in SPLITS for length in lengths[split].values())
    assert all(fold.dates(split).contains(s.dates).all() for split in SPLITS for s in series[split])

    (chosen,) = latest_or(1)(folds)
    assert chosen is folds[0]
