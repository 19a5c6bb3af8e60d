"""The sweep's objective and the variance its deflated Sharpe ratio charges for (unit tests: no Ray, no database),
and how an undefined fold score lands in ml.sweep_trials."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from training.metrics import TRADING_DAYS_PER_YEAR
from training.sweep_choice import best_trial, choose_trial, passed_over_text, trial_sharpe_variance
from training.sweep_store import TrialRecord
from training.sweep_trial import WORST_SCORE, objective


def trial(number: int, fold_scores: list[float], state: str = "completed", window: int = 10) -> TrialRecord:
    return TrialRecord(
        sweep_id="s", trial_number=number, tune_trial_id=str(number), state=state, params={"window": window},
        config={"window": window},
        config_hash="h", started_at=datetime.now(UTC), objective=objective(fold_scores),
        folds_done=len(fold_scores), fold_ids=list(range(1, len(fold_scores) + 1)), fold_scores=fold_scores,
    )  # fmt: skip


def test_an_undefined_fold_ranks_a_trial_last() -> None:
    assert objective([0.5, math.nan]) == pytest.approx((0.5 + WORST_SCORE) / 2)
    assert objective([0.5, math.nan]) < objective([-3.0, -3.0])


def test_the_best_trial_is_the_completed_one_with_the_highest_validation_objective() -> None:
    """Only a trial that scored every search fold may be chosen: a pruned trial's mean covers its first folds only,
    and a failed or interrupted one has no objective to compare; on a tie the earlier trial wins."""
    trials = [
        trial(1, [0.2, 0.4]),
        trial(2, [0.9, 0.7]),
        trial(3, [2.0], state="pruned"),
        trial(4, [3.0, 3.0], state="failed"),
        trial(5, [5.0, 5.0], state="interrupted"),
        trial(6, [0.7, 0.9]),
    ]
    assert best_trial(trials, folds=2).trial_number == 2
    assert best_trial(trials[2:5], folds=2) is None


def test_the_chosen_trial_is_the_best_one_every_report_fold_can_trade() -> None:
    """The final walk-forward refused a report fold after the whole search when the best trial drew a window the fold
    cannot trade (and --resume chose it again): the choice passes over such trials, best first, saying why, and chooses
    none when every completed trial is refused. The refusal is the walk-forward's own rule (training.fold_task)."""
    from devtools.synthetic_mart import FEATURE_LOOKBACKS, lay_out_folds, synthetic_mart
    from training.config import TrainConfig
    from training.market_data import MarketData
    from training.tradability import untradable_split

    frame = synthetic_mart(n_symbols=2, n_sessions=340, seed=5)
    folds = lay_out_folds(frame["session_date"], folds=3, test_sessions=40, validation_sessions=40)
    test = sorted(set(folds[-1].rows(frame, "test")["session_date"]))
    cut = frame[~(frame["session_date"].isin(test[10:]))].reset_index(drop=True)  # 10 test sessions, window <= 5
    data = MarketData.from_frame(cut, list(FEATURE_LOOKBACKS))

    def refusal(record: TrialRecord):
        return untradable_split(data, folds[1:], TrainConfig(window=record.config["window"], min_episode_steps=5))

    trials = [
        trial(1, [0.2, 0.4], window=3),
        trial(2, [0.9, 0.7], window=8),
        trial(3, [2.0], state="pruned", window=3),
        trial(4, [0.7, 0.9], window=6),
        trial(5, [0.3, 0.4], window=5),
    ]
    choice = choose_trial(trials, 2, refusal)
    assert choice.trial.trial_number == 5
    assert [(t.trial_number, refused.needed, refused.most) for t, refused in choice.passed_over] == [(2, 13, 10),
                                                                                                       (4, 11, 10)]  # fmt: skip
    where = f"fold 3's test split {folds[-1].test.start} .. {folds[-1].test.end}, where no symbol has more than 10"
    assert passed_over_text(choice.passed_over) == (
        f"trial 2 (objective 0.800): window 8 needs 13 sessions (window + min_episode_steps) in {where}; "
        f"trial 4 (objective 0.800): window 6 needs 11 sessions (window + min_episode_steps) in {where}"
    )
    assert choose_trial(trials, 2).trial.trial_number == 2  # no final walk-forward: nothing to pass over
    none = choose_trial([trials[1], trials[3]], 2, refusal)
    assert none.trial is None and [t.trial_number for t, _ in none.passed_over] == [2, 4]


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


def test_an_undefined_fold_score_lands_as_null_never_nan(warehouse) -> None:
    """NaN in SQL sorts above every number and turns every avg() into NaN; NULL is what the other ml tables store."""
    from training import results_schema, sweep_store
    from training.sweep_report import fold_scores_plot
    from warehouse_db import connect
    from warehouse_db.schemas import TRAINER_ROLE

    results_schema.ensure_tables(warehouse)
    now = datetime.now(UTC)
    sweep = sweep_store.SweepRecord(
        sweep_id="s", status="running", started_at=now, updated_at=now, trials_requested=1, objective="mean",
        search_algorithm="tpe", scheduler="asha", space={}, base_config={}, search_folds=[1, 2], report_folds=[3],
        trial_seeds=[42], mart_hash="h", run_dir="runs/s",
    )  # fmt: skip
    with connect(warehouse, role=TRAINER_ROLE) as conn:
        sweep_store.save_sweep(conn, sweep)
        sweep_store.save_trial(conn, trial(1, [math.nan, 0.5], state="pruned"))
        conn.commit()
    with connect(warehouse, role="analyst") as conn:  # the documented per-fold query, averaged
        per_fold = conn.execute(
            "select count(*), count(score), avg(score) "
            "from ml.sweep_trials, unnest(fold_ids, fold_scores) as per_fold(fold_id, score) where sweep_id = 's'"
        ).fetchone()
        assert per_fold == (2, 1, 0.5)
    with connect(warehouse, role=TRAINER_ROLE) as conn:  # a resumed sweep reads it back
        [stored] = sweep_store.load_trials(conn, "s")
    assert (stored.fold_scores, stored.objective) == ([None, 0.5], pytest.approx((WORST_SCORE + 0.5) / 2))
    assert fold_scores_plot([stored], [1, 2])  # the report's plot takes the NULL


def test_no_run_exists_before_the_first_run_created_the_ml_tables(warehouse) -> None:
    """A sweep checks its final --run-id up front (run_exists): on a warehouse without ml tables yet that check must
    answer no, not fail on the missing table (nor be skipped, as it was when guarded by the sweep tables)."""
    from training import results_schema, results_store

    assert not results_store.run_exists(warehouse, "any-run")
    results_schema.ensure_tables(warehouse)
    assert not results_store.run_exists(warehouse, "any-run")
