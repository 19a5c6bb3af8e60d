"""Hyperparameter sweep: Optuna's TPE on Ray Tune, scored on validation sessions only, then the winner's walk-forward.

``python -m training.sweep`` (``make sweep``), in the order it happens (read this file top to bottom):

1. check the search space (training/configs/sweep_space.yaml by default) and that the Ray cluster answers;
2. check the data contract, then read the mart and its folds once, as trainer (the driver alone touches the
   warehouse; trials get the rows through Ray's object store);
3. divide the folds: the trials are scored on the validation splits of the oldest ``--search-folds`` folds; the final
   walk-forward reports the folds whose test split starts after the last session any trial saw. Folds tile the
   history (fold k+1's validation split lies inside fold k's test split), so reporting every fold would measure the
   chosen configuration on sessions that helped choose it;
4. a Ray Tune experiment: Optuna's TPE sampler (``OptunaSearch``) draws a configuration; the trial trains it on
   each search fold's train split and scores it on that fold's validation split, oldest fold first, reporting
   after each so that ASHA stops the trials that trail. A trial only ever receives the rows up to its fold's
   validation end (``training.fold_task.validate_configuration``), and a guard refuses any score computed on
   another split: no trial evaluates on test;
5. every trial lands in ``ml.sweep_trials`` as it goes (started, each fold's score, completed / pruned / failed), so
   an interrupted sweep continues with ``--resume <sweep_id>`` and repeats no finished trial;
6. the best completed trial whose configuration every report fold can trade (training/sweep_choice.py: a better one
   whose window a report fold is too short for is passed over, saying so) runs the walk-forward once (the report
   folds x ``--seeds`` seeds, test included: training.walk_forward), its deflated Sharpe ratio charged for the number
   of trials actually scored;
7. ``ml.sweeps`` and ``runs/<sweep_id>/report.html`` (score by trial, Optuna's parameter importance, the choice).

This file is the job: its settings, :func:`run_sweep` as those steps and :func:`main`. What a step hands to a part with
one job lives beside it: a trial on a worker (training/sweep_trial.py), the search on Tune (training/sweep_search.py),
the record of the trials (training/sweep_recorder.py), the choice (training/sweep_choice.py) and Tune's log lines that
the sweep says better (training/sweep_tune_logs.py).

**The objective** (training/sweep_trial.py says why) is the mean over the search folds of the agent's annualised
Sharpe ratio on each fold's validation sessions, for the checkpoint selected on those sessions.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import secrets
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from command_line import outlives_its_reader
from training.cli import log_records_held, parse_command_line, set_up_logging
from training.config import (
    MAX_FOLDER_NAME_BYTES,
    TrainConfig,
    WalkForwardConfig,
    folder_name_problem,
    path_field,
)
from training.exit_codes import ExitCode, exit_status_table
from training.folds import Fold
from training.run_folder import (
    FRESH_ID_ATTEMPTS,
    claim_run_folder,
    folder_in_use,
    make_run_folder,
    refuse_used_folder,
    writing_run_folder,
)
from training.sweep_choice import Choice, choose_trial, passed_over_text, trial_sharpe_variance
from training.sweep_recorder import one_line
from training.sweep_search import parameter_importance, run_search
from training.sweep_space import DEFAULT_SPACE, SearchSpace, SearchSpaceError, load_space, space_from_dict
from training.sweep_trial import OBJECTIVE_TEXT, Evaluate

if TYPE_CHECKING:  # torch and SB3 load only when a sweep runs: --help and bad flags answer at once
    from training.tradability import NotEnoughData
from training.market_data import MarketData

logger = logging.getLogger(__name__)

# --- 1. the settings of a sweep, and the errors it stops with ---------------------------------------------------------

PROG = "python -m training.sweep"
FINAL_RUN_SUFFIX = "-best"
"""The final walk-forward's run id is <sweep_id>-best (-best-2, -best-3, ... when that one is taken: _free_run_id)."""
MAX_SWEEP_ID_BYTES = MAX_FOLDER_NAME_BYTES - len(f"{FINAL_RUN_SUFFIX}-999")
"""A sweep id leaves room for the final walk-forward's suffix within a run id's limit: a 200-byte sweep id passed, and
its run id <sweep_id>-best was refused after the whole search (a traceback, on every --resume too)."""


@dataclass
class SweepConfig(WalkForwardConfig):
    """``python -m training.sweep``: search the fields in --space on validation folds, then walk the best forward."""

    space: Path = DEFAULT_SPACE
    """Search space YAML: the TrainConfig fields to search and the range or choices of each (the default file documents the format)."""
    trials: int = 20
    """Trials in the sweep (configurations tried). A resumed sweep runs only those still missing."""
    max_concurrent: int | None = None
    """Trials running at once (one CPU each). None: one per CPU of the Ray cluster."""
    search_folds: int | None = None
    """How many of the oldest folds the trials are scored on (their validation splits). The final walk-forward reports the folds whose test split starts after every session a trial saw: the last search fold and all later ones. None: half the folds, rounded up (4 folds: search on 1-2, report 2-4)."""
    trial_seeds: int = 1
    """Seeds each trial trains on every fold (seed, seed+1, ...); the fold's score is their mean. The same seeds for every trial."""
    early_stopping: bool = True
    """ASHA: after each fold, stop the trials whose mean validation score so far trails (--no-early-stopping: every trial runs every fold)."""
    grace_folds: int = 1
    """ASHA's grace period: every trial runs at least this many folds before it can be stopped."""
    reduction_factor: int = 2
    """ASHA keeps about 1 in reduction_factor trials at each fold it compares them on."""
    resume: str | None = None
    """Sweep id to continue (its stored settings apply; flags may change only --trials, --max-concurrent, the final walk-forward's and Ray's settings). Finished trials are not run again; interrupted ones are, with the values they had."""
    sweep_id: str | None = None
    """Name of the sweep: its folder is <runs_dir>/<sweep_id>/ and ml.sweeps.sweep_id. Default: sweep-<UTC time>-<random>, generated again when a stored sweep or a folder has it."""
    final_walk_forward: bool = True
    """When the search ends, run the best configuration's walk-forward once: the report folds (see --search-folds) x --seeds seeds, test included (run id: --run-id or <sweep_id>-best)."""

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.trials < 1:
            problems.append("trials must be >= 1 (a sweep needs at least one trial)")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            problems.append("max_concurrent must be >= 1 (or None: one per CPU)")
        if self.trial_seeds < 1 or self.grace_folds < 1:
            problems.append("trial_seeds and grace_folds must be >= 1")
        if self.search_folds is not None and self.search_folds < 1:
            problems.append("search_folds must be >= 1 (or None: half the folds)")
        if self.reduction_factor < 2:
            problems.append("reduction_factor must be >= 2")
        if self.sweep_id and (problem := folder_name_problem(self.sweep_id, "sweep_id", MAX_SWEEP_ID_BYTES)):
            problems.append(problem)
        if self.resume is not None and (problem := resume_problem(self.resume)):
            problems.append(problem)
        if self.run_id and self.run_id == self.sweep_id:  # the walk-forward's report.html would be the sweep page's
            problems.append(
                f"run_id {self.run_id!r} names the sweep's own folder: give the final walk-forward another (or none: "
                f"<sweep_id>{FINAL_RUN_SUFFIX})"
            )
        if not self.save_to_warehouse:
            problems.append(
                "a sweep keeps its trials in the warehouse (that is how it resumes): drop --no-save-to-warehouse"
            )
        return problems

    def __post_init__(self) -> None:
        self.space = path_field("space", self.space)
        super().__post_init__()

    @property
    def trial_seed_list(self) -> tuple[int, ...]:
        return tuple(range(self.seed, self.seed + self.trial_seeds))


def resume_problem(sweep_id: str) -> str | None:
    """Why ``sweep_id`` (the value of --resume) cannot name a sweep, or None. An empty one (``--resume "$ID"`` with ID
    unset) started a new sweep instead; one PostgreSQL cannot take (bytes that are not UTF-8) was a codec's message."""
    if not sweep_id.strip():
        return "resume names no sweep: give the id of the sweep to continue (ml.sweeps.sweep_id)"
    return folder_name_problem(sweep_id, "resume")


CHANGEABLE_ON_RESUME = frozenset(
    {"trials", "max_concurrent", "resume", "sweep_id", "final_walk_forward", "seeds", "run_id", "task_retries",
     "ray_address", "ray_cpus", "ray_connect_timeout", "progress_bar", "log_level", "runs_dir",
     "mart_yaml", "save_to_warehouse"}
)  # fmt: skip
"""Settings a resumed sweep may change: how many trials, where they run, and the final walk-forward's; not what a
trial is (that would compare trials that were scored differently)."""


def frozen_settings(config: SweepConfig | dict[str, Any]) -> dict[str, Any]:
    """The settings that define what a trial is (everything a resume must keep)."""
    values = config.to_dict() if isinstance(config, TrainConfig) else dict(config)
    return {name: value for name, value in values.items() if name not in CHANGEABLE_ON_RESUME}


class SweepError(ValueError):
    """The sweep cannot start as asked (unknown or busy sweep id, changed settings on resume, a changed mart)."""


class NotRecorded(KeyboardInterrupt):
    """Interrupted (Ctrl+C, SIGTERM) before a new sweep had its row in ml.sweeps: there is nothing to resume."""


class NoTrialCompleted(RuntimeError):
    """No trial ran every fold: there is no configuration to walk forward."""


class NoTradableTrial(RuntimeError):
    """Trials completed, but a report fold cannot trade the window each drew: none can be walked forward (status 3,
    as the walk-forward's own refusal; the trials stay in ml.sweep_trials)."""


# --- 2. which folds the search may score, and which the final walk-forward reports ------------------------------------


def split_folds(folds: Sequence[Fold], search_folds: int | None) -> tuple[list[Fold], list[Fold]]:
    """(the folds the trials are scored on, the folds the chosen configuration's walk-forward reports).

    Folds tile the history: fold k+1's validation split lies inside fold k's test split. A configuration chosen on
    fold k+1's validation sessions would be measured on fold k's test split by the walk-forward, on sessions that
    helped choose it. So the search scores the oldest ``search_folds`` folds, and the walk-forward reports only the
    folds whose test split starts after the last session any trial saw (the last search fold's validation end):
    the last search fold and every later one.
    """
    folds = sorted(folds, key=lambda fold: fold.fold_id)
    count = search_folds if search_folds is not None else math.ceil(len(folds) / 2)
    if count > len(folds):
        raise SweepError(f"--search-folds {count}: the mart has only {len(folds)} fold(s) to search and report on")
    search = folds[:count]
    last_seen = max(fold.validation.end for fold in search)
    report = [fold for fold in folds[count - 1 :] if fold.test.start > last_seen]
    if not report:
        raise SweepError(
            f"no fold's test split starts after {last_seen}, the last validation session the search would score: "
            "use fewer --search-folds"
        )
    return search, report


TRIAL_SPLITS = ("train", "validation")
"""The splits of a search fold a trial trains and is scored on."""


def check_tradable_folds(
    config: SweepConfig, space: SearchSpace, data: MarketData, search: Sequence[Fold], report: Sequence[Fold]
) -> None:
    """Refuse (:class:`~training.tradability.NotEnoughData`, the walk-forward's refusal) a fold whose split no symbol can
    trade at the smallest window the search space allows, before any trial runs: the trials' splits of the search
    folds, and every split of the report folds when the final walk-forward is to run. A split that only the smaller
    windows can trade is named in a warning: the trials that draw a longer window fail there (each with that reason),
    or, in a report fold, are passed over when the trial to walk forward is chosen (:func:`choose_trial`).
    """
    from training.folds import SPLITS

    to_check = [(search, TRIAL_SPLITS)] + ([(report, SPLITS)] if config.final_walk_forward else [])
    _refuse_splits_the_smallest_window_cannot_trade(config, space, data, to_check)
    if "window" in space.names:
        trials_splits = {(fold.fold_id, split) for fold in search for split in TRIAL_SPLITS}
        _warn_of_splits_the_largest_window_cannot_trade(config, space, data, to_check, trials_splits)


def _refuse_splits_the_smallest_window_cannot_trade(
    config: SweepConfig, space: SearchSpace, data: MarketData, to_check
) -> None:
    from training.tradability import check_enough_sessions

    smallest = dataclasses.replace(config.task_config(), window=space.smallest("window", config.window))
    window = f"the smallest window of the search space {space.source}" if "window" in space.names else "--window"
    for folds, splits in to_check:
        check_enough_sessions(data, folds, smallest, splits=splits, window=window)


def _warn_of_splits_the_largest_window_cannot_trade(
    config: SweepConfig, space: SearchSpace, data: MarketData, to_check, trials_splits: set[tuple[int, str]]
) -> None:
    """One warning per split (a split in both lists once) too short for the largest window the space allows."""
    from training.tradability import largest_window

    largest = space.largest("window", config.window)
    for fold, split in _each_split_once(to_check):
        longest = largest_window(data, fold, split, config)
        if longest < largest:
            logger.warning(
                "fold %d: no symbol has more than %d sessions in its %s split %s .. %s, enough for a window of "
                "up to %d (with min_episode_steps %d); the search space allows up to %d: %s",
                fold.fold_id,
                longest + config.min_episode_steps,
                split,
                fold.dates(split).start,
                fold.dates(split).end,
                longest,
                config.min_episode_steps,
                largest,
                "a trial that draws a longer one fails there"
                if (fold.fold_id, split) in trials_splits
                else "the final walk-forward passes over the trials that draw a longer one",
            )


def _each_split_once(to_check):
    """(fold, split) of every (folds, splits) pair in order, skipping one seen before: the last search fold is also
    the first report fold."""
    seen: set[tuple[int, str]] = set()
    for folds, splits in to_check:
        for fold in folds:
            for split in splits:
                if (fold.fold_id, split) not in seen:
                    seen.add((fold.fold_id, split))
                    yield fold, split


# --- 3. the job: run_sweep, then its steps in their order -------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    sweep_id: str
    run_dir: Path
    report_path: Path
    sweep: Any
    """The ml.sweeps row (training.sweep_store.SweepRecord)."""
    trials: list[Any]
    """Every trial (training.sweep_store.TrialRecord), before and after any resume."""
    best: Any | None
    walk_forward: Any | None
    """The final walk-forward (training.walk_forward.WalkForwardResult), or None."""
    interrupted: bool
    stored_walk_forward: Any | None = None
    """A resume with nothing to run: the final walk-forward's row that an earlier start wrote
    (training.results_store.StoredRun), whose verdict and report the command prints again."""


def run_sweep(
    config: SweepConfig,
    settings,
    *,
    snapshot=None,
    evaluate: Evaluate | None = None,
    callbacks: Sequence[Any] = (),
) -> SweepResult:
    """The sweep, start to finish (or from where ``config.resume`` left off). See the module docstring.

    ``snapshot`` skips reading the mart when the caller holds it; ``evaluate`` replaces the validation of one
    (config, fold, seed) (tests record what it touches); ``callbacks`` are extra Tune callbacks.
    """
    import warehouse_db
    from training import results_store
    from training.task_runners import RayRunner
    from warehouse_db import schemas

    ray_runner = RayRunner(address=config.ray_address, cpus=config.ray_cpus, connect_timeout=config.ray_connect_timeout)
    ray_runner.prepare()  # an address that does not answer fails here, before anything is read or written
    with warehouse_db.connect(settings, role=schemas.TRAINER_ROLE, autocommit=True) as conn:
        stored, space, sweep_id, plan = _plan_the_sweep(config, settings, conn, snapshot)
        sweep, trials = _claim_sweep(config, settings, conn, stored, sweep_id, space, plan)
        run_dir = Path(sweep.run_dir)
        trials, report_path, walk_forward, interrupted = _search_on_ray(
            config, settings, conn, ray_runner, sweep, space, plan, trials, evaluate, callbacks
        )
    if interrupted:
        _log_how_to_continue(config, sweep, sweep_id)
    stored_walk_forward = None
    if walk_forward is None and sweep.final_run_id and not interrupted:
        stored_walk_forward = results_store.load_run(settings, sweep.final_run_id)
    return SweepResult(sweep_id, run_dir, report_path, sweep, trials, plan.choose(trials).trial, walk_forward,
                       interrupted, stored_walk_forward)  # fmt: skip


def _plan_the_sweep(config: SweepConfig, settings, conn, snapshot) -> tuple[Any | None, SearchSpace, str, _Plan]:
    """(the stored sweep or None, the search space, the sweep id, the plan), before anything is written."""
    try:
        stored, space, sweep_id = _start_or_resume(config, conn)
        _refuse_a_taken_run_id(config, settings, stored)
        return stored, space, sweep_id, _read_mart_and_folds(config, settings, space, stored, sweep_id, snapshot)
    except KeyboardInterrupt:
        if config.resume:
            raise  # the stored sweep is still there to resume
        raise NotRecorded from None


def _search_on_ray(
    config: SweepConfig, settings, conn, ray_runner, sweep, space: SearchSpace, plan: _Plan, trials, evaluate,
    callbacks: Sequence[Any],
) -> tuple[list[Any], Path, Any | None, bool]:  # fmt: skip
    """Search, walk the choice forward and record both: (trials, report path, walk-forward, interrupted).

    Whatever goes wrong, the sweep's row says so (failed, or interrupted on Ctrl+C) before the error goes on, and a
    Ray this started is shut down."""
    run_dir = Path(sweep.run_dir)
    started_ray = False
    walk_forward = None
    try:
        started_ray, address = ray_runner._connect()
        _note_the_cluster(sweep, address)
        walk_forward, interrupted = _search_and_walk_forward(
            config, settings, conn, sweep, space, plan, trials, evaluate, callbacks
        )
        trials, report_path = _settle(conn, sweep, space, plan, run_dir, walk_forward)
    except BaseException as error:
        _record_the_error(conn, sweep, space, plan, run_dir, walk_forward, error)
        raise
    finally:
        if started_ray:
            _shut_down_ray()
    return trials, report_path, walk_forward, interrupted


def _note_the_cluster(sweep, address: str) -> None:
    import ray

    sweep.ray_address = address
    sweep.ray_nodes = len([node for node in ray.nodes() if node.get("Alive")])


def _search_and_walk_forward(
    config: SweepConfig, settings, conn, sweep, space: SearchSpace, plan: _Plan, trials, evaluate,
    callbacks: Sequence[Any],
) -> tuple[Any | None, bool]:  # fmt: skip
    """Run the trials still missing, choose, and walk the choice forward unless trials are missing still:
    (the walk-forward or None, interrupted)."""
    from training import sweep_store

    _search_missing_trials(config, conn, sweep, space, plan, trials, evaluate, callbacks)
    trials = sweep_store.load_trials(conn, sweep.sweep_id)
    choice = plan.choose(trials)
    _recount(sweep, trials, len(plan.search_folds), choice.trial)
    interrupted = sweep.trials_completed + sweep.trials_pruned + sweep.trials_failed < config.trials
    walk_forward = None
    if not interrupted:
        walk_forward = _walk_forward_the_choice(config, settings, sweep, plan, choice, trials)
        sweep.finished_at = datetime.now(UTC)
    sweep.status = "interrupted" if interrupted else "finished"
    return walk_forward, interrupted


def _record_the_error(conn, sweep, space: SearchSpace, plan: _Plan, run_dir: Path, walk_forward, error) -> None:
    interrupted = isinstance(error, KeyboardInterrupt)
    sweep.status = "interrupted" if interrupted else "failed"
    sweep.error = None if interrupted else one_line(error)
    try:  # record what is known; the original error is the one to report
        _settle(conn, sweep, space, plan, run_dir, walk_forward)
    except Exception as secondary:  # noqa: BLE001 (any failure here must not hide the first)
        logger.warning("could not record the sweep's state after the error: %s", one_line(secondary))


def _shut_down_ray() -> None:
    import ray

    from training.task_runners import interruptions_held

    with interruptions_held():
        ray.shutdown()


def _log_how_to_continue(config: SweepConfig, sweep, sweep_id: str) -> None:
    logger.warning(
        "sweep %s interrupted with %d of %d trials finished; continue it with: %s --resume %s",
        sweep_id,
        sweep.trials_completed + sweep.trials_pruned + sweep.trials_failed,
        config.trials,
        PROG,
        shlex.quote(sweep_id),
    )


def _start_or_resume(config: SweepConfig, conn) -> tuple[Any | None, SearchSpace, str]:
    """What to search: (the stored sweep or None, its search space, its id). A resumed sweep must keep the settings
    that define a trial (:data:`CHANGEABLE_ON_RESUME` lists the others); a new one gets a free sweep id and folder."""
    if config.resume:
        stored = _stored_sweep(conn, config.resume)
        _refuse_changed_settings(config, stored)
        space = space_from_dict(stored.space, f"stored with sweep {stored.sweep_id}", config)
        return stored, space, stored.sweep_id
    space = load_space(config.space, config)
    return None, space, _id_for_a_new_sweep(config, conn)


def _stored_sweep(conn, sweep_id: str):
    """ml.sweeps' row of ``sweep_id`` (training.sweep_store.SweepRecord); SweepError when there is none."""
    from training import results_schema, sweep_store
    from warehouse_db import schemas

    stored = sweep_store.load_sweep(conn, sweep_id) if sweep_store.sweep_tables_exist(conn) else None
    if stored is None:
        raise SweepError(f"no sweep {sweep_id!r} in {schemas.ML}.{results_schema.SWEEPS} to resume")
    return stored


def _refuse_changed_settings(config: SweepConfig, stored) -> None:
    """A resume that changes what a trial is would rank trials that were scored differently: refused, naming each
    setting that differs."""
    now, was = frozen_settings(config), frozen_settings(stored.base_config)
    changed = sorted(name for name, value in now.items() if value != was.get(name))
    if changed:
        were = ", ".join(f"{n} {now[n]!r} (it started with {was.get(n)!r})" for n in changed)
        raise SweepError(
            f"sweep {config.resume} keeps the settings it started with; these differ: {were}; start a new sweep "
            "to search with other settings"
        )


def _id_for_a_new_sweep(config: SweepConfig, conn) -> str:
    """--sweep-id when no stored sweep and no folder has it; else a generated id that none has (set on ``config``)."""
    from training import sweep_store

    def stored_sweep(candidate: str) -> bool:
        return sweep_store.sweep_tables_exist(conn) and sweep_store.load_sweep(conn, candidate) is not None

    if config.sweep_id:
        sweep_id = config.sweep_id
        if stored_sweep(sweep_id):
            raise SweepError(f"a sweep {sweep_id!r} exists already: --resume {shlex.quote(sweep_id)} continues it")
        # Another run's or sweep's folder: its report.html would be overwritten, and its files mixed with these.
        refuse_used_folder(config.runs_dir / sweep_id, "--sweep-id")
        return sweep_id
    # A generated id another sweep or run has (the same second and random suffix) is generated again: the
    # user did not choose it, so there is nothing to resume or rename.
    sweep_id = _free_sweep_id(config.runs_dir, stored_sweep)
    config.sweep_id = sweep_id  # a caller's Ctrl+C line names it (--resume)
    return sweep_id


def new_sweep_id() -> str:
    return f"sweep-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _free_sweep_id(runs_dir: Path, stored_sweep: Callable[[str], bool]) -> str:
    """A generated sweep id that no sweep in ml.sweeps and no folder under ``runs_dir`` has; SweepError after
    FRESH_ID_ATTEMPTS taken ones in a row."""
    for _ in range(FRESH_ID_ATTEMPTS):
        candidate = new_sweep_id()
        if not stored_sweep(candidate) and not folder_in_use(runs_dir / candidate):
            return candidate
        logger.info("generated sweep id %s is taken (a stored sweep or a folder): generating another", candidate)
    raise SweepError(f"{FRESH_ID_ATTEMPTS} generated sweep ids in a row were taken: give one with --sweep-id")


def _refuse_a_taken_run_id(config: SweepConfig, settings, stored) -> None:
    """The final walk-forward's --run-id, when another run has it, failed only after the whole search. The stored
    sweep's own final run counts as another once more trials are to run: they walk forward anew."""
    from training import results_store

    finished = stored.trials_completed + stored.trials_pruned + stored.trials_failed if stored else 0
    keeps_its_final_run = stored is not None and stored.final_run_id == config.run_id and finished >= config.trials
    if config.run_id and config.final_walk_forward and not keeps_its_final_run:
        refuse_used_folder(config.runs_dir / config.run_id, "--run-id")
        if results_store.run_exists(settings, config.run_id):
            raise SweepError(
                f"ml.walk_forward_runs already has a run {config.run_id!r}: choose another --run-id for the final "
                "walk-forward"
            )


@dataclass(frozen=True)
class _Plan:
    """What the trials and the final walk-forward run on: the mart read once, its folds divided (:func:`split_folds`),
    and the rule that chooses the trial to walk forward."""

    snapshot: Any
    data: MarketData
    search_folds: list[Fold]
    report_folds: list[Fold]
    choose: Callable[[Sequence[Any]], Choice]


def _read_mart_and_folds(config: SweepConfig, settings, space: SearchSpace, stored, sweep_id: str, snapshot) -> _Plan:
    """The mart and its folds, read once (the contract asks for the longest window the space can draw); a resumed
    sweep's mart must be the one its trials were scored on, and every fold must be tradable at some window."""
    from training.features import read_mart_schema
    from training.folds import select_folds
    from training.tradability import untradable_split
    from training.walk_forward import contract_terms, read_checked_mart

    schema = read_mart_schema(config.mart_yaml)
    widest = dataclasses.replace(config.task_config(), window=space.largest("window", config.window))
    if snapshot is None:
        snapshot = read_checked_mart(config, settings, schema, contract_terms(widest, schema))
    if stored is not None and stored.mart_hash != snapshot.content_hash:
        raise SweepError(
            f"the mart changed since sweep {sweep_id} started (its trials were scored on {stored.mart_hash[:19]}…, "
            f"the mart is now {snapshot.content_hash[:19]}…): start a new sweep"
        )
    folds, report_folds = split_folds(select_folds(snapshot.folds, config.folds), config.search_folds)
    data = MarketData.from_frame(snapshot.frame, schema.feature_names)
    # A fold no symbol can trade at any window the space allows is refused here, before any trial runs.
    check_tradable_folds(config, space, data, folds, report_folds)
    task_config = config.task_config()

    def report_refusal(trial) -> NotEnoughData | None:
        """Why the final walk-forward cannot run ``trial``'s configuration (a report fold's split no symbol can
        trade with the window it drew), or None."""
        return untradable_split(data, report_folds, space.apply(task_config, space.encode(trial.params)))

    # The final walk-forward takes the best trial it can run: one a report fold cannot trade is passed over.
    choose = functools.partial(
        choose_trial, folds=len(folds), refusal=report_refusal if config.final_walk_forward else None
    )
    return _Plan(snapshot, data, folds, report_folds, choose)


def _claim_sweep(config: SweepConfig, settings, conn, stored, sweep_id: str, space: SearchSpace, plan: _Plan):
    """One driver per sweep (an advisory lock held as long as ``conn``), then its row in ml.sweeps and its folder:
    (the row, the trials so far). Trials a driver that died left running are interrupted: they run again."""
    from training import results_schema, sweep_store

    results_schema.ensure_tables(settings)
    if not sweep_store.try_lock_sweep(conn, sweep_id):
        raise SweepError(f"sweep {sweep_id} is running in another process")
    if stored is None:
        sweep = _new_sweep_row(config, sweep_id, space, plan)
        # Claimed in one step: another sweep or run may have taken the folder since _start_or_resume checked it.
        claim_run_folder(config.runs_dir, sweep_id, "--sweep-id")
    else:
        sweep = _running_again(stored, config)
        make_run_folder(Path(sweep.run_dir))
    sweep_store.save_sweep(conn, sweep)
    return sweep, _interrupt_orphaned_trials(conn, sweep_id)


def _new_sweep_row(config: SweepConfig, sweep_id: str, space: SearchSpace, plan: _Plan):
    """ml.sweeps' row for a new sweep: what a resume must keep (its settings, space, folds and mart) and how it
    searches."""
    from training import sweep_store

    now = datetime.now(UTC)
    return sweep_store.SweepRecord(
        sweep_id=sweep_id,
        status="running",
        started_at=now,
        updated_at=now,
        trials_requested=config.trials,
        objective=OBJECTIVE_TEXT,
        search_algorithm=f"Optuna TPE (seed {config.seed})",
        scheduler=_scheduler_text(config, len(plan.search_folds)),
        space=space.to_dict(),
        base_config={**config.to_dict(), "resume": None, "sweep_id": sweep_id},
        search_folds=[fold.fold_id for fold in plan.search_folds],
        report_folds=[fold.fold_id for fold in plan.report_folds],
        trial_seeds=list(config.trial_seed_list),
        mart_hash=plan.snapshot.content_hash,
        run_dir=str((config.runs_dir / sweep_id).resolve()),
    )


def _scheduler_text(config: SweepConfig, search_folds: int) -> str:
    if not config.early_stopping:
        return "none (every trial runs every fold)"
    return (
        f"ASHA (grace {min(config.grace_folds, search_folds)} fold(s), reduction factor {config.reduction_factor}, "
        "after each validation fold)"
    )


def _running_again(stored, config: SweepConfig):
    """The stored row of a resumed sweep, running again with this start's --trials (its last error cleared)."""
    stored.status = "running"
    stored.updated_at = datetime.now(UTC)
    stored.trials_requested = config.trials
    stored.error = None
    return stored


def _interrupt_orphaned_trials(conn, sweep_id: str) -> list[Any]:
    """The sweep's trials so far; those still 'running' were left by a driver that died (this one holds the lock, so
    nobody runs them now): they become 'interrupted' and run again."""
    from training import sweep_store

    trials = sweep_store.load_trials(conn, sweep_id)
    for record in trials:
        if record.state == "running":
            record.state = "interrupted"
            sweep_store.save_trial(conn, record)
    return trials


def _search_missing_trials(config: SweepConfig, conn, sweep, space, plan: _Plan, trials, evaluate, callbacks) -> None:
    """The search: the trials still missing of --trials (none when a resumed sweep has them all)."""
    finished = [t for t in trials if t.state in ("completed", "pruned", "failed")]
    to_run = config.trials - len(finished)
    if to_run <= 0 and sweep.final_run_id:
        logger.info("sweep %s has its %d trials and its walk-forward (%s): nothing to run", sweep.sweep_id,
                    len(finished), sweep.final_run_id)  # fmt: skip
    if to_run > 0:
        # More trials (a resume with a larger --trials) may change the choice: its walk-forward runs anew,
        # charged for every trial (the earlier run stays in ml.walk_forward_runs).
        sweep.final_run_id = sweep.deflated_sharpe = sweep.verdict = sweep.finished_at = None
        if finished:
            logger.info("sweep %s: %d trial(s) finished before; running %d more", sweep.sweep_id, len(finished), to_run)
        run_search(config, space, plan.data, plan.search_folds, sweep, conn, trials, to_run, evaluate, callbacks)


def _walk_forward_the_choice(config: SweepConfig, settings, sweep, plan: _Plan, choice: Choice, trials):
    """The chosen trial, walked forward once: the report folds x seeds, test included, charged for the trials
    (training.walk_forward.WalkForwardResult; None without --final-walk-forward or when a resume has it already).
    No trial to choose is an error: NoTrialCompleted, or NoTradableTrial when a report fold refused every one."""
    from training.folds import SPLITS
    from training.tradability import largest_window

    best = choice.trial
    if best is None and not choice.passed_over:
        raise NoTrialCompleted(
            f"no trial of sweep {sweep.sweep_id} scored every fold ({sweep.trials_failed} failed, "
            f"{sweep.trials_pruned} pruned): nothing to walk forward"
        )
    if best is None:
        task_config = config.task_config()
        fits = min(
            largest_window(plan.data, fold, split, task_config) for fold in plan.report_folds for split in SPLITS
        )
        raise NoTradableTrial(
            f"sweep {sweep.sweep_id}: no completed trial can be walked forward, a report fold cannot trade the "
            f"window it drew: {passed_over_text(choice.passed_over)}; the trials stay in ml.sweep_trials. "
            f"Resume with more trials ({PROG} --resume {shlex.quote(sweep.sweep_id)} --trials "
            f"{config.trials * 2}), or start a sweep whose search space allows windows of at most {fits}, "
            "or one that leaves the fold out (--folds)"
        )
    if not config.final_walk_forward or sweep.final_run_id:
        return None
    if choice.passed_over:
        logger.warning(
            "sweep %s: walking forward trial %d (objective %.3f), the best that every report fold can "
            "trade; passed over: %s",
            sweep.sweep_id,
            best.trial_number,
            best.objective,
            passed_over_text(choice.passed_over),
        )
    walk_forward = _final_walk_forward(config, settings, sweep, best, plan.snapshot, trials, plan.report_folds)
    sweep.final_run_id = walk_forward.run_id
    sweep.deflated_sharpe = walk_forward.statistics.deflated_sharpe.value
    sweep.verdict = walk_forward.statistics.verdict
    return walk_forward


def _settle(conn, sweep, space: SearchSpace, plan: _Plan, run_dir: Path, walk_forward) -> tuple[list[Any], Path]:
    """Counts, best trial, importance and state into ml.sweeps; the report page. Also after an error or Ctrl+C,
    to record what is known."""
    from training import sweep_store

    trials = sweep_store.load_trials(conn, sweep.sweep_id)
    _recount(sweep, trials, len(plan.search_folds), plan.choose(trials).trial)
    sweep.parameter_importance = parameter_importance(space, trials)
    sweep.updated_at = datetime.now(UTC)
    sweep_store.save_sweep(conn, sweep)
    return trials, _write_report(run_dir, sweep, trials, space, walk_forward)


def _recount(sweep, trials, folds: int, chosen) -> None:
    """The sweep row's counts, chosen trial (``chosen``: :func:`choose_trial`'s) and ASHA's saving, from the trial
    rows."""
    finished = [t for t in trials if t.state in ("completed", "pruned", "failed")]
    sweep.trials_completed = sum(t.state == "completed" for t in trials)
    sweep.trials_pruned = sum(t.state == "pruned" for t in trials)
    sweep.trials_failed = sum(t.state == "failed" for t in trials)
    sweep.configurations_tried = sum(t.scored for t in trials)
    sweep.trial_steps_run = sum(t.trial_steps for t in finished)
    # A pruned trial would have taken as many steps on each remaining fold as on each fold it ran.
    sweep.trial_steps_without_early_stopping = sum(
        t.trial_steps * folds // t.folds_done if t.state == "pruned" and t.folds_done else t.trial_steps
        for t in finished
    )
    sweep.best_trial = chosen.trial_number if chosen else None
    sweep.best_objective = chosen.objective if chosen else None
    sweep.best_params = chosen.params if chosen else None


def _final_walk_forward(config: SweepConfig, settings, sweep, best, snapshot, trials, report_folds):
    from training.walk_forward import AllTasksFailed, run_walk_forward

    names = {f.name for f in dataclasses.fields(WalkForwardConfig)}
    values = {name: getattr(config, name) for name in names}
    values.update(best.params)
    # Charge for every scored trial, plus any configurations tried before this sweep (--configurations-tried N
    # counts this one too).
    values["configurations_tried"] = sweep.configurations_tried + config.configurations_tried - 1
    values["run_id"] = config.run_id or _free_run_id(config.runs_dir, f"{sweep.sweep_id}{FINAL_RUN_SUFFIX}", settings)
    values["folds"] = tuple(fold.fold_id for fold in report_folds)  # test splits after every session a trial saw
    wf_config = WalkForwardConfig(**values)
    logger.info(
        "sweep %s: walking trial %d forward (%s): folds %s x %d seeds, test included, charged for %d configurations",
        sweep.sweep_id,
        best.trial_number,
        json.dumps(best.params),
        list(values["folds"]),
        config.seeds,
        wf_config.configurations_tried,
    )
    try:
        return run_walk_forward(
            wf_config, settings, snapshot=snapshot, trial_sharpe_variance=trial_sharpe_variance(trials)
        )
    except AllTasksFailed as error:  # its advice, as a sweep's: --resume runs the walk-forward again
        resume = f"{PROG} --resume {shlex.quote(sweep.sweep_id)}"
        raise AllTasksFailed(error.failures, error.ray_address, resume) from None


def _free_run_id(runs_dir: Path, name: str, settings) -> str:
    """``name``, or ``name-2``, ``name-3``, ... when a folder has it (an interrupted final walk-forward's) or a run in
    ml.walk_forward_runs does (the walk-forward of fewer trials, on a sweep resumed with more after ``make clean``
    removed runs/: that failed only after the whole search)."""
    from training import results_store

    candidate, attempt = name, 1
    while folder_in_use(runs_dir / candidate) or results_store.run_exists(settings, candidate):
        attempt += 1
        candidate = f"{name}-{attempt}"
    return candidate


def _write_report(run_dir: Path, sweep, trials, space, walk_forward) -> Path:
    from training.sweep_report import write_sweep_report

    path = run_dir / "report.html"
    remedy = (
        f"free some space; --resume {shlex.quote(sweep.sweep_id)} then writes it (the trials are in ml.sweep_trials)"
    )
    with writing_run_folder(run_dir, remedy):
        write_sweep_report(path, sweep, trials, space, walk_forward)
    return path


# --- 4. the command line ----------------------------------------------------------------------------------------------

DESCRIPTION = (
    "Search PPO's hyperparameters with Optuna's TPE on Ray Tune. Each trial trains on the train split of the oldest "
    "--search-folds folds and is scored on their validation splits only (ASHA stops trailing trials after each "
    "fold); every trial lands in ml.sweep_trials. The best configuration then runs the walk-forward once, on the "
    "folds whose test splits start after every session a trial saw (every such fold x --seeds seeds, test "
    "included), its deflated Sharpe ratio charged for the trials tried: ml.sweeps and runs/<sweep_id>/report.html. "
    "A local Ray by default; --ray-address or RAY_ADDRESS joins a cluster. --resume <sweep_id> continues an "
    "interrupted sweep (status 2 also covers an unknown sweep id or changed settings on resume)."
)


def _resume_id(argv: Sequence[str]) -> str | None:
    for index, arg in enumerate(argv):
        if arg == "--resume" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--resume="):
            return arg.split("=", 1)[1]
    return None


def _stored_config(sweep_id: str) -> dict[str, Any]:
    import warehouse_db
    from warehouse_db import schemas

    if problem := resume_problem(sweep_id):
        raise SweepError(problem)
    with warehouse_db.connect(role=schemas.TRAINER_ROLE, autocommit=True) as conn:
        stored = _stored_sweep(conn, sweep_id)
    return {name: value for name, value in stored.base_config.items() if name not in ("resume",)}


@outlives_its_reader
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from warehouse_db.errors import WarehouseError

    try:
        with log_records_held() as held:  # a retired setting of a resumed sweep's stored ones, said once logging is up
            config = _read_the_command_line(argv)
    except (ValueError, SearchSpaceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.CONFIG
    except WarehouseError as error:  # --resume's stored settings could not be read
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.WAREHOUSE
    set_up_logging(config.log_level, held)

    from training.cli import report_user_error

    try:
        result = _check_ray_then_sweep(config)
    except NotRecorded:
        logger.error("interrupted before the sweep was recorded: nothing to resume; run the command again")
        return ExitCode.INTERRUPTED
    except KeyboardInterrupt:
        logger.error(
            "interrupted; continue with: %s --resume %s",
            PROG,
            shlex.quote(config.resume or config.sweep_id) if config.resume or config.sweep_id else "<sweep_id>",
        )
        return ExitCode.INTERRUPTED
    except Exception as error:  # noqa: BLE001 - report_user_error re-raises what a user cannot cause
        return report_user_error(error)
    return _print_the_outcome(result)


def _read_the_command_line(argv: list[str]) -> SweepConfig:
    """The flags over the defaults, or over a resumed sweep's stored settings; a new sweep's --space is read here so
    that a bad space file fails before anything runs."""
    help_text = f"{DESCRIPTION}\n\n{exit_status_table()}"
    resume = _resume_id(argv)
    base = _stored_config(resume) if resume is not None and not {"-h", "--help"} & set(argv) else None
    config = parse_command_line(SweepConfig, argv, PROG, help_text, base=base)
    if not config.resume:
        load_space(config.space, config)
    return config


def _check_ray_then_sweep(config: SweepConfig) -> SweepResult:
    from training.cli import sigterm_interrupts
    from warehouse_db import resolve_settings

    try:
        from training.task_runners import RayRunner  # imports Ray: a second or two

        # A cluster that does not answer fails within --ray-connect-timeout, before the warehouse is touched.
        RayRunner(address=config.ray_address, connect_timeout=config.ray_connect_timeout).prepare()
    except KeyboardInterrupt:  # a Ctrl+C while Ray loads or the cluster is asked: a new sweep has no row yet
        if config.resume:
            raise
        raise NotRecorded from None
    with sigterm_interrupts():
        return run_sweep(config, resolve_settings())


def _print_the_outcome(result: SweepResult) -> int:
    """The report, the best trial and the final walk-forward's verdict; the exit status (interrupted, partial, ok)."""
    print(f"sweep {result.sweep_id}: report {result.report_path.resolve()}")
    if result.interrupted:
        return ExitCode.INTERRUPTED
    best = result.best
    print(f"best trial {best.trial_number}: objective {best.objective:.3f} with {json.dumps(best.params)}")
    if result.walk_forward is not None:
        print(result.walk_forward.statistics.verdict)
        print(f"walk-forward report: {result.walk_forward.report_path.resolve()}")
        if result.walk_forward.failures:
            return ExitCode.PARTIAL
    elif (stored := result.stored_walk_forward) is not None:  # nothing ran: the lines its finished start printed
        print(stored.verdict)
        print(f"walk-forward report: {Path(stored.run_dir) / 'report.html'}")
        if stored.status == "partial":
            return ExitCode.PARTIAL
    return ExitCode.OK


if __name__ == "__main__":
    # Run the importable module's main, not this __main__ copy's: the errors it raises are then training.sweep's, the
    # classes training/cli.py gives their exit statuses (a __main__.SweepError would be a traceback), and what Ray
    # pickles names importable modules (the trial: training.sweep_trial.run_trial).
    from training.sweep import main as sweep_main

    sys.exit(sweep_main())
