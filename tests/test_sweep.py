"""A sweep of a few tiny trials on a local Ray: interrupted with Ctrl+C after two trials, resumed, completed. Every
trial lands in SQL, no evaluation ever touches a test session (recorded in the workers, asserted here), the resume
repeats no finished trial, and the winner's walk-forward carries the deflated Sharpe ratio of the trials run."""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import os
import re
import shlex
import signal
import urllib.parse
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from ray import tune

from devtools.synthetic_mart import (
    FEATURE_LOOKBACKS,
    TARGET,
    lay_out_folds,
    mart_database,
    synthetic_mart,
    write_mart_yaml,
)
from training import sweep, sweep_store
from training.cli import user_error_status
from training.config import TrainConfig, configuration_hash
from training.exit_codes import ExitCode
from training.features import read_mart_schema
from training.fold_task import run_fold_seed, validate_configuration
from training.market_data import MarketData
from training.mart import read_mart
from training.policies import BUY_AND_HOLD, FLAT, POLICIES
from training.statistics import agent_track_record, deflated_sharpe_ratio, fold_sample
from training.sweep import (
    NoTradableTrial,
    NoTrialCompleted,
    SweepConfig,
    SweepError,
    SweepResult,
    _free_run_id,
    main,
    run_sweep,
)
from training.sweep_space import SearchSpace
from training.sweep_trial import EvaluatedOutsideValidation, check_validation_only, run_trial
from training.tradability import NotEnoughData
from warehouse_db import connect
from warehouse_db.settings import REPO_ROOT, ConnectionSettings

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ray")]  # Ray, PPO and the warehouse

TRIALS, FOLDS, SEARCH_FOLDS = 4, 3, 2  # search on folds 1-2; the walk-forward reports folds 2-3
SPACE = "learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}\nnet_arch: {choices: [[16], [32, 32]]}\nwindow: {low: 3, high: 8}\n"


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray for the module with two CPUs: two trials at a time."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def sweep_warehouse(embedded_cluster: ConnectionSettings) -> Iterator[tuple[ConnectionSettings, tuple]]:
    frame = synthetic_mart(n_symbols=4, n_sessions=340, seed=61)
    folds = lay_out_folds(frame["session_date"], folds=FOLDS, test_sessions=40, validation_sessions=40)
    with mart_database("test_sweep", frame, folds, embedded_cluster) as settings:
        yield settings, folds


def sweep_config(tmp_path: Path, **overrides) -> SweepConfig:
    (tmp_path / "space.yaml").write_text(SPACE, encoding="utf-8")
    values = {
        "timesteps": 512, "eval_freq": 256, "n_envs": 4, "n_steps": 64, "batch_size": 128, "n_epochs": 1,
        "random_draws": 10, "bootstrap_samples": 200, "seeds": 1, "trials": TRIALS, "max_concurrent": 2,
        "space": tmp_path / "space.yaml", "runs_dir": tmp_path / "runs", "progress_bar": False,
        "mart_yaml": write_mart_yaml(tmp_path / "training_bars.yml"),
    }  # fmt: skip
    return SweepConfig(**{**values, **overrides})


def recording(log: Path, run: str):
    """validate_configuration, recording in the worker every session the evaluation could see or was scored on."""

    def evaluate(config, data, fold, seed):
        result = validate_configuration(config, data, fold, seed)
        scored = sorted({str(d) for replay in result.validation.values() for d in replay.dates.astype("datetime64[D]")})
        entry = {
            "run": run, "config_hash": configuration_hash(config), "fold_id": fold.fold_id, "seed": seed,
            "last_row_seen": str(max(data.frame["session_date"])), "scored_sessions": scored,
            "features": list(data.feature_names), "columns": list(data.frame.columns),
        }  # fmt: skip
        with open(log, "a", encoding="utf-8") as file:
            file.write(json.dumps(entry) + "\n")
        return result

    return evaluate


class InterruptAfter(tune.Callback):
    """Presses Ctrl+C (SIGINT to this process) once ``trials`` trials have finished, as a user would."""

    def __init__(self, trials: int) -> None:
        self.trials, self.finished = trials, 0

    def _finished(self) -> None:
        self.finished += 1
        if self.finished == self.trials:
            os.kill(os.getpid(), signal.SIGINT)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._finished()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._finished()


def trial_rows(settings: ConnectionSettings, sweep_id: str) -> list[dict]:
    with connect(settings, role="analyst") as conn:
        cursor = conn.execute(
            "select trial_number, state, objective, folds_done, fold_ids, fold_scores, params, config, config_hash, "
            "node, started_at, wall_seconds, trial_steps from ml.sweep_trials where sweep_id = %s order by trial_number",
            (sweep_id,),
        )
        columns = [column.name for column in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


@pytest.fixture(scope="module")
def interrupted_then_resumed(local_ray, sweep_warehouse, tmp_path_factory) -> dict:
    settings, _ = sweep_warehouse
    tmp_path = tmp_path_factory.mktemp("sweep")
    log = tmp_path / "evaluations.jsonl"
    # Quote, '#', '%' and spaces: the report's link to the walk-forward and its SQL must stay whole.
    config = sweep_config(tmp_path, sweep_id="sweep under test #1 'q' 100%")
    first = run_sweep(config, settings, evaluate=recording(log, "first"), callbacks=[InterruptAfter(2)])
    after_first = trial_rows(settings, first.sweep_id)
    # The resumed run reads the mart without the contract check (the first run did it; it takes seconds).
    snapshot = read_mart(settings, read_mart_schema(config.mart_yaml))
    on_ctrl_c = signal.getsignal(signal.SIGINT)
    resumed = run_sweep(
        dataclasses.replace(config, resume=first.sweep_id),
        settings,
        evaluate=recording(log, "resumed"),
        snapshot=snapshot,
    )
    ctrl_c_after = signal.getsignal(signal.SIGINT)
    evaluations = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    return {"first": first, "after_first": after_first, "resumed": resumed, "evaluations": evaluations, "log": log,
            "ctrl_c": (on_ctrl_c, ctrl_c_after)}  # fmt: skip


def test_ctrl_c_after_the_search_is_the_sweeps_again(interrupted_then_resumed) -> None:
    """Tune's fit leaves its SIGINT handler behind: the first Ctrl+C of the final walk-forward only printed Tune's
    "ending Ray Tune run" (a second one was needed)."""
    before, after = interrupted_then_resumed["ctrl_c"]
    assert after is before


def test_an_interrupted_sweep_resumes_without_repeating_a_finished_trial(interrupted_then_resumed, sweep_warehouse):
    settings, _ = sweep_warehouse
    first: SweepResult = interrupted_then_resumed["first"]
    resumed: SweepResult = interrupted_then_resumed["resumed"]
    assert first.interrupted and first.sweep.status == "interrupted" and first.walk_forward is None
    finished_first = [r for r in interrupted_then_resumed["after_first"] if r["state"] in ("completed", "pruned")]
    assert len(finished_first) == 2
    assert {r["state"] for r in interrupted_then_resumed["after_first"]} <= {"completed", "pruned", "interrupted"}

    rows = trial_rows(settings, resumed.sweep_id)
    finished = [r for r in rows if r["state"] in ("completed", "pruned")]
    assert len(finished) == TRIALS and not resumed.interrupted and resumed.sweep.status == "finished"
    by_number = {r["trial_number"]: r for r in rows}
    for before in finished_first:  # untouched by the resume
        assert by_number[before["trial_number"]] == before
    evaluations = interrupted_then_resumed["evaluations"]
    for before in finished_first:  # and never evaluated again
        runs = {e["run"] for e in evaluations if e["config_hash"] == before["config_hash"]}
        assert runs == {"first"}
        assert sum(e["config_hash"] == before["config_hash"] for e in evaluations) == before["folds_done"]
    for row in finished:  # every finished trial was evaluated exactly once per fold it reached
        assert sum(e["config_hash"] == row["config_hash"] for e in evaluations) >= row["folds_done"]


def test_every_trial_lands_in_sql_with_its_scores_node_and_duration(interrupted_then_resumed, sweep_warehouse):
    settings, _ = sweep_warehouse
    resumed: SweepResult = interrupted_then_resumed["resumed"]
    rows = trial_rows(settings, resumed.sweep_id)
    assert [r["trial_number"] for r in rows] == list(range(1, len(rows) + 1))
    for row in rows:
        assert set(row["params"]) == {"learning_rate", "net_arch", "window"}
        assert row["config"]["learning_rate"] == row["params"]["learning_rate"] and row["config"]["timesteps"] == 512
        assert row["config_hash"].startswith("sha256:")
        if row["state"] in ("completed", "pruned"):
            assert row["folds_done"] == len(row["fold_scores"]) == len(row["fold_ids"]) >= 1
            assert row["fold_ids"] == [1, 2][: row["folds_done"]]
            assert row["objective"] == pytest.approx(np.mean(row["fold_scores"]))
            assert row["node"] and row["wall_seconds"] > 0 and row["trial_steps"] >= 512 * row["folds_done"]
            assert (row["state"] == "completed") == (row["folds_done"] == SEARCH_FOLDS)
    with connect(settings, role="analyst") as conn:
        sweep = conn.execute(
            "select status, trials_requested, trials_completed, trials_pruned, configurations_tried, best_trial, "
            "final_run_id, trial_steps_run, trial_steps_without_early_stopping from ml.sweeps where sweep_id = %s",
            (resumed.sweep_id,),
        ).fetchone()
    completed = [r for r in rows if r["state"] == "completed"]
    pruned = [r for r in rows if r["state"] == "pruned"]
    best = max(completed, key=lambda r: r["objective"])
    assert sweep[:7] == ("finished", TRIALS, len(completed), len(pruned), TRIALS, best["trial_number"],
                         resumed.walk_forward.run_id)  # fmt: skip
    assert sweep[7] == sum(r["trial_steps"] for r in completed + pruned)
    assert sweep[8] == sum(
        r["trial_steps"] * (SEARCH_FOLDS if r["state"] == "pruned" else 1) for r in completed + pruned
    )


def test_no_trial_ever_evaluates_on_test(interrupted_then_resumed, sweep_warehouse):
    """Every session an evaluation received or was scored on precedes every test session the walk-forward reports."""
    settings, folds = sweep_warehouse
    resumed: SweepResult = interrupted_then_resumed["resumed"]
    by_id = {fold.fold_id: fold for fold in folds}
    reported = [by_id[fold_id] for fold_id in resumed.sweep.report_folds]
    assert resumed.sweep.search_folds == [1, 2] and resumed.sweep.report_folds == [2, 3]
    first_reported_test = min(fold.test.start for fold in reported)
    evaluations = interrupted_then_resumed["evaluations"]
    assert len(evaluations) >= TRIALS + 1  # every trial ran fold 1; the recording saw them all
    for entry in evaluations:
        fold = by_id[entry["fold_id"]]
        assert entry["fold_id"] in (1, 2)
        assert date.fromisoformat(entry["last_row_seen"]) <= fold.validation.end < first_reported_test
        scored = [date.fromisoformat(day) for day in entry["scored_sessions"]]
        assert scored and all(fold.validation.start <= day <= fold.validation.end for day in scored)
        assert not any(other.test.start <= day <= other.test.end for day in scored for other in reported + [fold])


def test_every_trial_observes_the_yaml_features_and_never_the_target(interrupted_then_resumed) -> None:
    """What the sweep hands each trial holds the YAML's features, keys, open and close, and not the target (the sweep
    handing it on as a feature passed every other test: the trials' scores do not show it)."""
    for entry in interrupted_then_resumed["evaluations"]:
        assert entry["features"] == list(FEATURE_LOOKBACKS)
        assert entry["columns"] == ["symbol", "session_date", "open", "close", *FEATURE_LOOKBACKS]
        assert TARGET not in entry["columns"]


def test_the_guard_refuses_a_score_from_outside_validation(local_ray, sweep_warehouse) -> None:
    """Break the rule on purpose: an evaluation that replays test sessions is refused, and a trial puts every
    evaluation through the guard before it reports a score."""
    _, folds = sweep_warehouse
    frame = synthetic_mart(n_symbols=4, n_sessions=340, seed=61)
    data = MarketData.from_frame(frame, list(FEATURE_LOOKBACKS))
    tiny = TrainConfig(timesteps=256, eval_freq=256, n_envs=2, n_steps=64, batch_size=64, n_epochs=1, random_draws=2)
    honest = validate_configuration(tiny, data, folds[0], 42)
    check_validation_only(honest, folds[0])
    tested = run_fold_seed(tiny, data, folds[0], 42)
    scored_on_test = dataclasses.replace(honest, validation=tested.replays["test"])
    with pytest.raises(EvaluatedOutsideValidation, match="outside the validation split"):
        check_validation_only(scored_on_test, folds[0])
    with pytest.raises(EvaluatedOutsideValidation, match="outside the validation split"):
        run_trial(
            {},
            base=tiny,
            space=SearchSpace((), "nothing searched"),
            data=data,
            folds=[folds[0]],
            seeds=[42],
            evaluate=lambda *_: scored_on_test,
        )


def test_the_winner_walks_forward_once_charged_for_the_trials_run(interrupted_then_resumed, sweep_warehouse):
    settings, _ = sweep_warehouse
    resumed: SweepResult = interrupted_then_resumed["resumed"]
    walk_forward = resumed.walk_forward
    rows = trial_rows(settings, resumed.sweep_id)
    scored = [r for r in rows if r["state"] in ("completed", "pruned")]
    best = resumed.best
    assert walk_forward is not None and not walk_forward.failures
    assert sorted((r.fold_id, r.seed) for r in walk_forward.results) == [(2, 42), (3, 42)]  # test included, once
    dsr = walk_forward.statistics.deflated_sharpe
    assert dsr.trials == len(scored) == TRIALS
    # The same number from the pieces: the agent's test track record, N = trials scored, V = their variance.
    samples = [
        fold_sample(f, {r.seed: r.replays["test"] for r in walk_forward.results if r.fold_id == f}) for f in (2, 3)
    ]
    variance = np.var([r["objective"] for r in scored], ddof=1) / 252
    expected = deflated_sharpe_ratio(agent_track_record(samples, POLICIES), TRIALS, variance)
    assert dsr.value == pytest.approx(expected.value)
    assert dsr.benchmark_sharpe == pytest.approx(expected.benchmark_sharpe) and dsr.benchmark_sharpe > 0
    with connect(settings, role="analyst") as conn:
        run = conn.execute(
            "select runs.configurations_tried, runs.deflated_sharpe, runs.config_hash, runs.config, sweeps.deflated_sharpe "
            "from ml.sweeps join ml.walk_forward_runs as runs on runs.run_id = sweeps.final_run_id "
            "where sweeps.sweep_id = %s",
            (resumed.sweep_id,),
        ).fetchone()
    assert run[0] == TRIALS and run[1] == pytest.approx(dsr.value) == pytest.approx(run[4])
    chosen = next(r for r in rows if r["trial_number"] == best.trial_number)
    assert run[2] == chosen["config_hash"]  # the walk-forward ran exactly the chosen trial's configuration
    assert {k: run[3][k] for k in chosen["params"]} == chosen["params"]


def test_the_report_page_and_the_analysis(interrupted_then_resumed, sweep_warehouse):
    settings, _ = sweep_warehouse
    resumed: SweepResult = interrupted_then_resumed["resumed"]
    page = resumed.report_path.read_text(encoding="utf-8")
    assert "The chosen configuration" in page and f"<b>{resumed.best.trial_number} (chosen)</b>" in page
    assert "Parameter importance (Optuna" in page or "Not computed" in page
    assert page.count("data:image/png;base64,") >= 2 and resumed.walk_forward.statistics.verdict.split(":")[0] in page
    query = (REPO_ROOT / "warehouse" / "analyses" / "sweep_trials.sql").read_text(encoding="utf-8")
    with connect(settings, role="analyst") as conn:
        cursor = conn.execute(query)
        columns = [column.name for column in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall() if row[0] == resumed.sweep_id]
    assert [row["trial_number"] for row in rows if row["chosen"]] == [resumed.best.trial_number]
    assert all(row["verdict"] == resumed.walk_forward.statistics.verdict for row in rows)
    # The link to the walk-forward's report is a URL: '#' would end its path, '%' begin an escape.
    (href,) = re.findall(r"<a href='([^']*)'>The walk-forward's report</a>", page)
    linked = resumed.report_path.parent / urllib.parse.unquote(urllib.parse.urlsplit(html.unescape(href)).path)
    assert linked.resolve() == resumed.walk_forward.report_path.resolve()
    # The SQL the page shows runs as it is, the quote in the sweep id included.
    (shown,) = re.findall(r"In SQL: <code>(.*?)</code>", page, flags=re.DOTALL)
    with connect(settings, role="analyst") as conn:
        assert len(conn.execute(html.unescape(shown)).fetchall()) == len(resumed.trials) == TRIALS


def test_a_new_sweep_never_writes_into_another_runs_folder(sweep_warehouse, tmp_path: Path) -> None:
    """--sweep-id naming another run's folder overwrote that run's report.html (and mixed Tune's files into it)."""
    settings, _ = sweep_warehouse
    taken = tmp_path / "runs" / "taken"
    taken.mkdir(parents=True)
    (taken / "report.html").write_text("another run's report", encoding="utf-8")
    with pytest.raises(FileExistsError, match="already exists and is not empty: choose another --sweep-id") as error:
        run_sweep(sweep_config(tmp_path, sweep_id="taken"), settings)
    assert user_error_status(error.value) == ExitCode.CONFIG
    assert [p.name for p in taken.iterdir()] == ["report.html"]
    assert (taken / "report.html").read_text(encoding="utf-8") == "another run's report"
    with connect(settings) as conn:  # the sweep's tables may not exist yet when this test runs alone
        assert not sweep_store.sweep_tables_exist(conn) or sweep_store.load_sweep(conn, "taken") is None


def test_resuming_a_sweep_the_warehouse_does_not_have_is_one_line_and_status_2(sweep_warehouse, tmp_path) -> None:
    settings, _ = sweep_warehouse
    with pytest.raises(SweepError) as error:
        run_sweep(sweep_config(tmp_path, resume="never-started"), settings)
    assert str(error.value) == "no sweep 'never-started' in ml.sweeps to resume"
    assert user_error_status(error.value) == ExitCode.CONFIG


def test_a_new_sweep_under_a_stored_sweeps_id_is_told_to_resume_it(
    interrupted_then_resumed, sweep_warehouse, tmp_path
) -> None:
    settings, _ = sweep_warehouse
    sweep_id = interrupted_then_resumed["first"].sweep_id
    with pytest.raises(SweepError) as error:
        run_sweep(sweep_config(tmp_path, sweep_id=sweep_id), settings)
    assert str(error.value) == f"a sweep {sweep_id!r} exists already: --resume {shlex.quote(sweep_id)} continues it"
    assert not (tmp_path / "runs").exists()


def test_a_generated_sweep_id_that_is_taken_is_generated_again(
    interrupted_then_resumed, sweep_warehouse, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generated id that a stored sweep (or a folder) has was refused as if the user had chosen it ("exists
    already", status 2): now another is generated; after FRESH_ID_ATTEMPTS taken ones, one line asks for --sweep-id."""
    settings, _ = sweep_warehouse
    stored = interrupted_then_resumed["first"].sweep_id
    (tmp_path / "runs" / "sweep-in-a-folder").mkdir(parents=True)
    drawn = iter([stored, "sweep-in-a-folder", "sweep-fresh"])
    monkeypatch.setattr("training.sweep.new_sweep_id", lambda: next(drawn))
    # A final --run-id another run has stops the sweep right after its id is chosen, before the mart is read.
    taken_run = interrupted_then_resumed["resumed"].walk_forward.run_id
    config = sweep_config(tmp_path, run_id=taken_run)
    with pytest.raises(SweepError, match=re.escape(f"ml.walk_forward_runs already has a run {taken_run!r}")):
        run_sweep(config, settings)
    assert config.sweep_id == "sweep-fresh"  # what main's Ctrl+C line names
    assert next(drawn, None) is None

    monkeypatch.setattr("training.sweep.new_sweep_id", lambda: stored)
    with pytest.raises(SweepError) as error:
        run_sweep(sweep_config(tmp_path), settings)
    assert str(error.value) == "5 generated sweep ids in a row were taken: give one with --sweep-id"
    assert user_error_status(error.value) == ExitCode.CONFIG


def test_a_resume_that_changes_what_a_trial_is_is_refused_naming_each_setting(
    interrupted_then_resumed, sweep_warehouse, tmp_path
) -> None:
    """Trials scored with other settings would be compared with these: the refusal names each one, was and now."""
    settings, _ = sweep_warehouse
    sweep_id = interrupted_then_resumed["first"].sweep_id
    with connect(settings) as conn:
        stored = sweep_store.load_sweep(conn, sweep_id)
    config = SweepConfig(**{**stored.base_config, "resume": sweep_id, "timesteps": 1024, "gamma": 0.9,
                            "trials": TRIALS + 3, "runs_dir": tmp_path / "runs"})  # fmt: skip
    with pytest.raises(SweepError) as error:
        run_sweep(config, settings)
    assert str(error.value) == (
        f"sweep {sweep_id} keeps the settings it started with; these differ: gamma 0.9 (it started with 0.99), "
        "timesteps 1024 (it started with 512); start a new sweep to search with other settings"
    )
    with connect(settings) as conn:
        assert sweep_store.load_sweep(conn, sweep_id).trials_requested == TRIALS  # trials is changeable, yet unchanged


def test_a_final_run_id_another_run_has_is_refused_before_the_search(
    interrupted_then_resumed, sweep_warehouse, tmp_path
):
    """--run-id of a run in ml.walk_forward_runs (its folder elsewhere, or gone) failed only after every trial ran."""
    settings, _ = sweep_warehouse
    taken = interrupted_then_resumed["resumed"].walk_forward.run_id
    with pytest.raises(SweepError, match=f"ml.walk_forward_runs already has a run {re.escape(repr(taken))}: choose"):
        run_sweep(sweep_config(tmp_path, sweep_id="another", run_id=taken), settings)
    with connect(settings) as conn:
        assert sweep_store.load_sweep(conn, "another") is None


def test_a_sweep_resumed_with_more_trials_refuses_its_own_final_run_id_before_the_search(
    interrupted_then_resumed, sweep_warehouse, tmp_path
):
    """More trials walk forward anew: the --run-id of the stored walk-forward (kept from the first start, or given
    again) was let through, and the new walk-forward failed on it after every added trial ran."""
    settings, _ = sweep_warehouse
    resumed: SweepResult = interrupted_then_resumed["resumed"]
    with connect(settings) as conn:
        stored = sweep_store.load_sweep(conn, resumed.sweep_id)
    assert stored.final_run_id == resumed.walk_forward.run_id
    config = SweepConfig(**{**stored.base_config, "resume": resumed.sweep_id, "trials": TRIALS + 1,
                            "run_id": stored.final_run_id, "runs_dir": tmp_path / "runs"})  # fmt: skip
    with pytest.raises(SweepError, match=f"already has a run {re.escape(repr(stored.final_run_id))}: choose another"):
        run_sweep(config, settings)
    with connect(settings) as conn:
        assert sweep_store.load_sweep(conn, resumed.sweep_id).trials_requested == TRIALS  # nothing ran


def test_the_default_final_run_id_skips_one_that_only_the_warehouse_still_has(
    interrupted_then_resumed, sweep_warehouse, tmp_path
):
    """A sweep resumed with more trials after `make clean` named its new walk-forward <sweep_id>-best again: the old
    run's folder was gone, its row was not, and the walk-forward failed after the whole search."""
    settings, _ = sweep_warehouse
    resumed: SweepResult = interrupted_then_resumed["resumed"]
    assert resumed.walk_forward.run_id == f"{resumed.sweep_id}-best"
    assert _free_run_id(tmp_path / "cleaned-runs", f"{resumed.sweep_id}-best", settings) == f"{resumed.sweep_id}-best-2"


def fold_one_short_of_history(kept: int, seed: int) -> tuple:
    """A mart of two symbols whose fold 1 train split no symbol covers whole: SYM000 was delisted after the split's
    first ``kept`` sessions, SYM001 listed ``kept`` sessions before its end (together 2 x ``kept`` sessions of the mart,
    enough for the contract at the space's largest window). Returns (frame, folds, fold 1's train sessions)."""
    frame = synthetic_mart(n_symbols=2, n_sessions=340, seed=seed)
    folds = lay_out_folds(frame["session_date"], folds=FOLDS, test_sessions=40, validation_sessions=40)
    train = sorted(set(folds[0].rows(frame, "train")["session_date"]))
    delisted = (frame["symbol"] == "SYM000") & (frame["session_date"] > train[kept - 1])
    listed_late = (frame["symbol"] == "SYM001") & (frame["session_date"] < train[-kept])
    return frame[~(delisted | listed_late)].reset_index(drop=True), folds, train


def test_a_fold_no_symbol_can_trade_at_any_window_is_refused_before_any_trial(
    local_ray, embedded_cluster, tmp_path: Path
) -> None:
    """Fold 1's train split: no symbol has more than 7 sessions, and the smallest window the space allows (3) needs 8
    with min_episode_steps 5. The sweep refuses it with the walk-forward's line and status before any trial runs
    (before: every trial trained, failed on fold 1 with Tune's traceback, and the sweep ended with status 6)."""
    frame, folds, train = fold_one_short_of_history(7, seed=63)
    with mart_database("test_sweep_untradable", frame, folds, embedded_cluster) as settings:
        config = sweep_config(tmp_path, sweep_id="untradable", trials=2)
        with pytest.raises(NotEnoughData) as raised:
            run_sweep(config, settings)
        assert str(raised.value) == (
            f"fold 1: no symbol has 8 sessions (window + min_episode_steps) in its train split {train[0]} .. "
            f"{train[-1]} (the most: SYM000 7, SYM001 7): lower the smallest window of the search space "
            f"{tmp_path / 'space.yaml'} or --min-episode-steps, leave the fold out (--folds), or fetch more history"
        )
        assert user_error_status(raised.value) == ExitCode.CONTRACT
        with connect(settings) as conn:
            assert not sweep_store.sweep_tables_exist(conn) or sweep_store.load_sweep(conn, "untradable") is None
        assert not (tmp_path / "runs" / "untradable").exists()
        # A window the space does not search: the walk-forward's own remedy, --window.
        (tmp_path / "space.yaml").write_text("gamma: {low: 0.9, high: 0.99}\n", encoding="utf-8")
        fixed = dataclasses.replace(config, window=4)
        with pytest.raises(NotEnoughData, match=r"no symbol has 9 sessions .*\(the most: SYM000 7, SYM001 7\): lower "
                           r"--window or --min-episode-steps, leave the fold out \(--folds\)"):  # fmt: skip
            run_sweep(fixed, settings)


def test_trials_whose_window_a_fold_cannot_trade_fail_saying_why_the_others_run(
    local_ray, embedded_cluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Fold 1's train split: the most any symbol has is 10 sessions, enough for window 3, not 8 (min_episode_steps 5).
    The sweep warns before the search, runs every trial, and those that drew 8 fail in one line that says why (before:
    Tune's traceback for each, and no word before the search)."""
    frame, folds, train = fold_one_short_of_history(10, seed=64)
    with mart_database("test_sweep_smaller_windows", frame, folds, embedded_cluster) as settings:
        # Two trials: seed 42 draws window 8, then 3 (TPE's random start-up draws), one that fails and one that runs.
        config = sweep_config(tmp_path, sweep_id="smaller-windows", trials=2, final_walk_forward=False,
                              early_stopping=False)  # fmt: skip
        (tmp_path / "space.yaml").write_text("window: {choices: [3, 8]}\n", encoding="utf-8")
        with caplog.at_level(logging.INFO):
            result = run_sweep(config, settings)
        with connect(settings, role="analyst") as conn:
            trials = conn.execute(
                "select (params->>'window')::int, state, error from ml.sweep_trials where sweep_id = %s",
                (result.sweep_id,),
            ).fetchall()
    assert {window for window, _, _ in trials} == {3, 8}, trials  # the seed draws both
    reason = (
        f"NotEnoughData: fold 1: no symbol has 13 sessions (window + min_episode_steps) in its train split {train[0]} "
        f".. {train[-1]} (the most: SYM000 10, SYM001 10)"
    )
    for window, state, error in trials:
        assert (state, error and error.split(": lower")[0]) == (
            ("completed", None) if window == 3 else ("failed", reason)
        )
    said = [record.getMessage() for record in caplog.records]
    warning = (
        f"fold 1: no symbol has more than 10 sessions in its train split {train[0]} .. {train[-1]}, enough for a window "
        "of up to 5 (with min_episode_steps 5); the search space allows up to 8: a trial that draws a longer one fails "
        "there"
    )
    assert warning in said
    failed = [line for line in said if re.match(r"trial \d+ failed after 0 of 2 folds", line)]
    assert len(failed) == sum(state == "failed" for _, state, _ in trials) and all(reason in line for line in failed)
    assert not any(record.exc_info for record in caplog.records), "a traceback reached the log"


def report_fold_short_of_history(kept: int, seed: int) -> tuple:
    """A mart of two symbols whose last fold's test split (a report fold's, which no trial sees) no symbol covers
    whole: SYM000 was delisted after the split's first ``kept`` sessions, SYM001 halted until ``kept`` sessions before
    its end. The search folds' splits are whole. Returns (frame, folds, that test split's sessions)."""
    frame = synthetic_mart(n_symbols=2, n_sessions=340, seed=seed)
    folds = lay_out_folds(frame["session_date"], folds=FOLDS, test_sessions=40, validation_sessions=40)
    test = sorted(set(folds[-1].rows(frame, "test")["session_date"]))
    delisted = (frame["symbol"] == "SYM000") & (frame["session_date"] > test[kept - 1])
    halted = (frame["symbol"] == "SYM001") & (frame["session_date"] >= test[0]) & (frame["session_date"] < test[-kept])
    return frame[~(delisted | halted)].reset_index(drop=True), folds, test


def favouring_window_8():
    """validate_configuration, with the agent's validation replay replaced by the better of two real baselines' (flat,
    buy-and-hold) for window 8 and the worse for any other: a trial that draws window 8 scores at least as well as one
    that draws 3, whatever a few hundred PPO steps learned (the choice is what is under test, not PPO). A closure, so
    that Ray ships it by value (a worker cannot import this test module)."""

    def evaluate(config, data, fold, seed):
        result = validate_configuration(config, data, fold, seed)
        ranked = sorted((FLAT, BUY_AND_HOLD), key=lambda policy: result.validation[policy].metrics()["sharpe"])
        replay = result.validation[ranked[-1] if config.window == 8 else ranked[0]]
        return dataclasses.replace(result, validation={**result.validation, "agent": replay})

    return evaluate


def test_the_final_walk_forward_passes_over_trials_whose_window_a_report_fold_cannot_trade(
    local_ray, embedded_cluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Fold 3 (reported, never searched): no symbol has more than 10 sessions in its test split, enough for window 3,
    not 8 (min_episode_steps 5). Before: the best trial drew 8, the final walk-forward refused fold 3 after the whole
    search, and every --resume chose the same trial again. Now the sweep walks forward the best trial every report
    fold can trade, naming the better ones it passed over, and says in one line (status 3) when there is none, its
    trials kept. Seed 43 draws window 8 for trial 1, then window 3 for the trial a resume adds."""
    frame, folds, test = report_fold_short_of_history(10, seed=65)
    with mart_database("test_sweep_report_windows", frame, folds, embedded_cluster) as settings:
        config = sweep_config(tmp_path, sweep_id="report-windows", trials=1, seed=43, early_stopping=False)
        (tmp_path / "space.yaml").write_text("window: {choices: [3, 8]}\n", encoding="utf-8")
        with caplog.at_level(logging.INFO), pytest.raises(NoTradableTrial) as raised:
            run_sweep(config, settings, evaluate=favouring_window_8())
        (first,) = trial_rows(settings, "report-windows")
        assert (first["state"], first["params"]) == ("completed", {"window": 8})
        refused = (
            f"window 8 needs 13 sessions (window + min_episode_steps) in fold 3's test split {test[0]} .. {test[-1]}, "
            "where no symbol has more than 10"
        )
        assert str(raised.value) == (
            "sweep report-windows: no completed trial can be walked forward, a report fold cannot trade the window it "
            f"drew: trial 1 (objective {first['objective']:.3f}): {refused}; the trials stay in ml.sweep_trials. Resume "
            "with more trials (python -m training.sweep --resume report-windows --trials 2), or start a sweep whose "
            "search space allows windows of at most 5, or one that leaves the fold out (--folds)"
        )
        assert user_error_status(raised.value) == ExitCode.CONTRACT
        said = [record.getMessage() for record in caplog.records]
        assert (
            f"fold 3: no symbol has more than 10 sessions in its test split {test[0]} .. {test[-1]}, enough for a window "
            "of up to 5 (with min_episode_steps 5); the search space allows up to 8: the final walk-forward passes over "
            "the trials that draw a longer one"
        ) in said
        with connect(settings) as conn:
            stored = sweep_store.load_sweep(conn, "report-windows")
        assert (stored.status, stored.error, stored.best_trial, stored.final_run_id) == (
            "failed", f"NoTradableTrial: {raised.value}", None, None
        )  # fmt: skip
        assert not (tmp_path / "runs" / "report-windows-best").exists()  # no walk-forward started
        page = (tmp_path / "runs" / "report-windows" / "report.html").read_text(encoding="utf-8")
        assert "No completed trial can be walked forward: a report fold cannot trade the window each drew" in page

        caplog.clear()
        with caplog.at_level(logging.INFO):
            resumed = run_sweep(
                dataclasses.replace(config, resume="report-windows", trials=2), settings, evaluate=favouring_window_8()
            )
        rows = trial_rows(settings, "report-windows")
        with connect(settings, role="analyst") as conn:
            walked = conn.execute(
                "select runs.config ->> 'window' from ml.sweeps join ml.walk_forward_runs as runs "
                "on runs.run_id = sweeps.final_run_id where sweeps.sweep_id = 'report-windows'"
            ).fetchall()
    assert walked == [("3",)]  # the chosen trial's configuration
    assert [(r["state"], r["params"]) for r in rows] == [("completed", {"window": 8}), ("completed", {"window": 3})]
    assert rows[0]["objective"] >= rows[1]["objective"]  # the better trial, passed over
    assert resumed.best.trial_number == resumed.sweep.best_trial == 2 and resumed.sweep.status == "finished"
    walk_forward = resumed.walk_forward
    assert walk_forward is not None and not walk_forward.failures
    assert sorted((r.fold_id, r.seed) for r in walk_forward.results) == [(2, 43), (3, 43)]
    assert resumed.sweep.final_run_id == walk_forward.run_id
    said = [record.getMessage() for record in caplog.records]
    assert (
        f"sweep report-windows: walking forward trial 2 (objective {rows[1]['objective']:.3f}), the best that every "
        f"report fold can trade; passed over: trial 1 (objective {rows[0]['objective']:.3f}): {refused}"
    ) in said


# --- refusals and the command line's --resume, on the stored sweep (these run last: the CLI resume rewrites its page) -


def load_stored(settings: ConnectionSettings, sweep_id: str) -> sweep_store.SweepRecord:
    with connect(settings) as conn:
        return sweep_store.load_sweep(conn, sweep_id)


def stored_resume(settings: ConnectionSettings, sweep_id: str, tmp_path: Path) -> tuple[SweepConfig, object]:
    """The stored sweep's own settings with --resume, and the mart as it is (read without the contract check)."""
    stored = load_stored(settings, sweep_id)
    config = SweepConfig(**{**stored.base_config, "resume": sweep_id, "runs_dir": tmp_path / "runs"})
    snapshot = read_mart(settings, read_mart_schema(config.mart_yaml))
    assert snapshot.content_hash == stored.mart_hash
    return config, snapshot


def test_a_resume_on_a_mart_that_changed_since_the_sweep_started_is_refused_and_nothing_is_recorded(
    interrupted_then_resumed, sweep_warehouse, tmp_path
) -> None:
    settings, _ = sweep_warehouse
    sweep_id = interrupted_then_resumed["resumed"].sweep_id
    before, rows = load_stored(settings, sweep_id), trial_rows(settings, sweep_id)
    config, snapshot = stored_resume(settings, sweep_id, tmp_path)
    with pytest.raises(SweepError) as error:
        run_sweep(config, settings, snapshot=dataclasses.replace(snapshot, content_hash="f" * 64))
    assert str(error.value) == (
        f"the mart changed since sweep {sweep_id} started (its trials were scored on {before.mart_hash[:19]}…, the "
        f"mart is now {'f' * 19}…): start a new sweep"
    )
    assert user_error_status(error.value) == ExitCode.CONFIG
    assert load_stored(settings, sweep_id) == before and trial_rows(settings, sweep_id) == rows
    assert not (tmp_path / "runs").exists()


def test_a_sweep_another_process_drives_is_refused_and_nothing_is_recorded(
    interrupted_then_resumed, sweep_warehouse, tmp_path
) -> None:
    settings, _ = sweep_warehouse
    sweep_id = interrupted_then_resumed["resumed"].sweep_id
    before, rows = load_stored(settings, sweep_id), trial_rows(settings, sweep_id)
    config, snapshot = stored_resume(settings, sweep_id, tmp_path)
    with connect(settings) as other_driver:
        assert sweep_store.try_lock_sweep(other_driver, sweep_id)
        with pytest.raises(SweepError) as error:
            run_sweep(config, settings, snapshot=snapshot)
    assert str(error.value) == f"sweep {sweep_id} is running in another process"
    assert user_error_status(error.value) == ExitCode.CONFIG
    assert load_stored(settings, sweep_id) == before and trial_rows(settings, sweep_id) == rows


def test_a_sweep_whose_every_trial_fails_ends_in_one_line_and_walks_nothing_forward(
    local_ray, sweep_warehouse, tmp_path
) -> None:
    settings, _ = sweep_warehouse

    def evaluate(config, data, fold, seed):  # nested: Ray pickles it by value
        raise ValueError("broken on purpose")

    with pytest.raises(NoTrialCompleted) as error:
        run_sweep(sweep_config(tmp_path, sweep_id="every-trial-fails", trials=2), settings, evaluate=evaluate)
    message = "no trial of sweep every-trial-fails scored every fold (2 failed, 0 pruned): nothing to walk forward"
    assert str(error.value) == message
    assert user_error_status(error.value) == ExitCode.FAILED
    stored = load_stored(settings, "every-trial-fails")
    assert (stored.status, stored.error, stored.final_run_id) == ("failed", f"NoTrialCompleted: {message}", None)
    assert [row["state"] for row in trial_rows(settings, "every-trial-fails")] == ["failed", "failed"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["every-trial-fails"]  # no walk-forward's folder


def test_resume_on_the_command_line_reads_the_stored_settings_and_a_finished_sweep_prints_its_verdict_again(
    interrupted_then_resumed, sweep_warehouse, monkeypatch: pytest.MonkeyPatch, capsys, caplog
) -> None:
    """`python -m training.sweep --resume ID` alone: every other setting is the stored sweep's (its space, mart YAML,
    runs folder); a sweep with its trials and its walk-forward runs nothing more, rewrites its page and prints the lines
    it printed when it finished (the verdict and the walk-forward's report were missing: nothing had run)."""
    settings, _ = sweep_warehouse
    resumed: SweepResult = interrupted_then_resumed["resumed"]
    sweep_id = resumed.sweep_id
    for name, value in settings.libpq_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    before, rows = load_stored(settings, sweep_id), trial_rows(settings, sweep_id)
    with caplog.at_level(logging.INFO):
        status = main(["--resume", sweep_id])
    assert status == ExitCode.OK
    best = resumed.best
    # The closing lines the finished sweep printed, the verdict and the walk-forward's report read from the ml tables.
    assert capsys.readouterr().out.splitlines() == [
        f"sweep {sweep_id}: report {resumed.report_path.resolve()}",
        f"best trial {best.trial_number}: objective {best.objective:.3f} with {json.dumps(best.params)}",
        resumed.walk_forward.statistics.verdict,
        f"walk-forward report: {resumed.walk_forward.report_path.resolve()}",
    ]
    said = [record.getMessage() for record in caplog.records]
    assert (
        f"sweep {sweep_id} has its {TRIALS} trials and its walk-forward ({resumed.walk_forward.run_id}): nothing to run"
    ) in said
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING], said
    after = load_stored(settings, sweep_id)
    assert (after.status, after.final_run_id, after.trials_requested) == ("finished", before.final_run_id, TRIALS)
    assert trial_rows(settings, sweep_id) == rows


@pytest.mark.parametrize("named", [True, False])
def test_a_sweep_interrupted_before_it_is_recorded_says_there_is_nothing_to_resume(
    warehouse: ConnectionSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    named: bool,
) -> None:
    """Ctrl+C while a new sweep read the mart (its contract check takes a while), before ml.sweeps had its row: the
    line said "continue with: training.sweep --resume <its id>", and that resume failed with "no sweep ... to
    resume". It now says nothing was recorded, and to run the command again."""
    import warehouse_db
    from training import walk_forward

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(walk_forward, "read_checked_mart", interrupted)
    monkeypatch.setattr(warehouse_db, "resolve_settings", lambda: warehouse)
    arguments = ["--runs-dir", str(tmp_path / "runs"), *(["--sweep-id", "cut-short"] if named else [])]
    with caplog.at_level(logging.ERROR, logger="training.sweep"):
        assert sweep.main(arguments) == ExitCode.INTERRUPTED
    (line,) = [record.getMessage() for record in caplog.records if record.name == "training.sweep"]
    assert line == "interrupted before the sweep was recorded: nothing to resume; run the command again", line
    with connect(warehouse) as conn:  # nothing was claimed: the sweep tables are made only then
        assert conn.execute("select to_regclass('ml.sweeps') is null").fetchone()[0]
