"""The sweep's search: Optuna's TPE sampler on Ray Tune, ASHA stopping the trials that trail, until ``to_run`` more
trials have run.

The driver (training/sweep.py) calls :func:`run_search` once per start. Optuna's study is in memory and warm-started
from the stored trials (ml.sweep_trials), so that a resumed sweep's sampler learns from every trial so far and runs
the interrupted ones again first, with the values they had; the same study gives the report's parameter importance.
Each trial is training/sweep_trial.py's trainable on a Ray worker; the driver's record of the trials is
training/sweep_recorder.py's callback, and what Tune logs that the sweep says better is filtered out
(training/sweep_tune_logs.py). A trial whose worker Ray's memory monitor kills stops the search: TrialKilledForMemory,
one line that says what to lower and how to continue (status 2).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training.sweep_recorder import make_recorder
from training.sweep_space import SearchSpace
from training.sweep_trial import OBJECTIVE, OBJECTIVE_TEXT, run_trial, trial_resources
from training.sweep_tune_logs import (
    MemoryKills,
    killed_for_memory,
    noting_memory_kills,
    without_tunes_restore_hint,
    without_untradable_tracebacks,
)

logger = logging.getLogger("training.sweep")  # the sweep's log lines keep one name, whichever module writes them


class TrialKilledForMemory(RuntimeError):
    """Ray's memory monitor killed a trial's worker: the node ran low on memory. The sweep stops (the trials recorded
    stay; the killed one and those in flight run again on --resume); status 2, as settings too large for memory."""


def optuna_study(space: SearchSpace, trials: Sequence[Any], seed: int, name: str):
    """An in-memory Optuna study holding the scored trials (TPE learns from them; importance is computed on them).

    Pruned trials enter as complete with the mean of the folds they reached, as Ray's OptunaSearch reports them
    while the sweep runs; failed ones as failed.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(
        storage=storage, study_name=name, direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed)
    )
    distributions = space.distributions()
    for record in trials:
        params = space.encode(record.params)
        if record.scored:
            study.add_trial(
                optuna.trial.create_trial(params=params, distributions=distributions, value=record.objective)
            )
        elif record.state == "failed":
            study.add_trial(
                optuna.trial.create_trial(
                    params=params, distributions=distributions, state=optuna.trial.TrialState.FAIL
                )
            )
    return study, storage


def parameter_importance(space: SearchSpace, trials: Sequence[Any]) -> dict[str, float] | None:
    """Optuna's parameter importance (PED-ANOVA, its default) over the scored trials; None with fewer than 3."""
    import optuna

    scored = [t for t in trials if t.scored]
    if len(scored) < 3:
        return None
    study, _ = optuna_study(space, scored, seed=0, name="importance")
    try:
        return {name: float(value) for name, value in optuna.importance.get_param_importances(study).items()}
    except (ValueError, RuntimeError, ZeroDivisionError) as error:  # e.g. every trial scored the same
        logger.warning("parameter importance not computed: %s", error)
        return None


def run_search(config, space, data, folds, sweep, conn, trials, to_run, evaluate, callbacks):
    """Run ``to_run`` more trials on Tune; each lands in ml.sweep_trials as it goes (the recorder)."""
    import ray

    from training.task_runners import signal_handlers_kept

    searcher = _optuna_searcher(config, space, sweep, trials)
    concurrent = config.max_concurrent or max(int(ray.cluster_resources().get("CPU", 1)), 1)
    scheduler = _scheduler(config, folds)
    memory_kills = MemoryKills()
    recorder = make_recorder(
        conn, sweep, space, config.task_config(), folds, trials, config.trials, config.progress_bar, memory_kills
    )
    trainable = _trainable(config, space, data, folds, evaluate)
    logger.info(
        "sweep %s: %d trial(s) to run, %d at a time, on %d fold(s) x %d seed(s); objective: %s",
        sweep.sweep_id,
        to_run,
        concurrent,
        len(folds),
        config.trial_seeds,
        OBJECTIVE_TEXT,
    )
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # with verbose=0 Tune prints nothing: the recorder's bar is the display
    os.environ["TUNE_PRINT_ALL_TRIAL_ERRORS"] = "1"  # Tune's log of a trial's error is how memory_kills sees it
    tuner = _tuner(trainable, searcher, concurrent, scheduler, to_run, sweep, [recorder, *callbacks])
    try:
        # Tune's fit leaves its SIGINT handler behind (it ends the search gracefully on a first Ctrl+C): the first
        # Ctrl+C of the final walk-forward only printed Tune's "ending Ray Tune run".
        with (
            without_tunes_restore_hint(),
            without_untradable_tracebacks(),
            noting_memory_kills(memory_kills),
            signal_handlers_kept(signal.SIGINT, signal.SIGUSR1),
        ):
            tuner.fit()
    except Exception as error:
        # Killed while its actor started, the trial fails in Tune and the recorder raises Ray's error; killed later,
        # Tune itself raises "Caught unexpected exception" from it (Ray Tune 2.60's actor manager expects only
        # RayActorError or RayTaskError there). Either way, running on would only have more trials killed.
        if (killed := killed_for_memory(error)) is None:
            raise
        # Fewer trials to run than --max-concurrent allows (--trials 1, say) run as many at once as there are.
        at_once = min(concurrent, to_run)
        raise TrialKilledForMemory(_killed_for_memory_text(sweep.sweep_id, at_once, killed)) from None
    finally:
        recorder.close()


def _killed_for_memory_text(sweep_id: str, concurrent: int, killed: BaseException) -> str:
    """The one line of a sweep stopped because Ray killed a trial's worker for memory: what happened, what to lower,
    how to continue."""
    import shlex

    from training.sweep import PROG

    ray_says = (str(killed).strip().splitlines() or ["no detail"])[0]
    resume = f"{PROG} --resume {shlex.quote(sweep_id)}"
    fewer = (
        f"continue with fewer trials at once: {resume} --max-concurrent {max(concurrent // 2, 1)}; if one trial alone "
        "needs more than the node has, "
        if concurrent > 1
        else f"one trial ran at a time: free memory on the node and continue with {resume}, or "
    )
    return (
        f"sweep {sweep_id}: Ray killed a trial's worker for memory, the node ran low on memory ({ray_says}); the "
        f"finished trials stay in ml.sweep_trials and the killed one runs again on resume: {fewer}start a new sweep "
        "with settings that need less memory (--n-envs, --n-steps, --batch-size, --net-arch, or their ranges in the "
        "search space)"
    )


def _optuna_searcher(config, space: SearchSpace, sweep, trials: Sequence[Any]):
    """Tune's searcher on a study warm-started from the stored trials, the interrupted ones queued to run first."""
    from ray.tune.search.optuna import OptunaSearch

    # A resumed sweep seeds TPE anew (seed + trials so far): with the first seed, its random start-up draws would
    # repeat the values the finished trials already had.
    study, storage = optuna_study(space, trials, config.seed + len(trials), sweep.sweep_id)
    for record in trials:  # interrupted trials run again first, with the values they had
        if record.state == "interrupted" and record.params not in [t.params for t in trials if t.scored]:
            study.enqueue_trial(space.encode(record.params), skip_if_exists=True)
    return OptunaSearch(
        space.distributions(),
        metric=OBJECTIVE,
        mode="max",
        sampler=study.sampler,
        storage=storage,
        study_name=sweep.sweep_id,
    )


def _scheduler(config, folds: Sequence[Any]):
    """ASHA, each fold a rung, when the sweep stops trailing trials early; otherwise every trial runs every fold."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if not config.early_stopping:
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="training_iteration",
        metric=OBJECTIVE,
        mode="max",
        max_t=len(folds),
        grace_period=min(config.grace_folds, len(folds)),
        reduction_factor=config.reduction_factor,
    )


def _trainable(config, space: SearchSpace, data, folds: Sequence[Any], evaluate):
    """The trial function with the data it reads bound, and the resources a trial of its drawn values asks for."""
    import ray
    from ray import tune

    from training.task_runners import largest_memory_offer

    return tune.with_resources(
        tune.with_parameters(
            run_trial,
            base=config.task_config(),
            space=space,
            data=data,
            folds=tuple(folds),
            seeds=config.trial_seed_list,
            evaluate=evaluate,
        ),
        functools.partial(
            trial_resources,
            base=config.task_config(),
            space=space,
            n_features=len(data.feature_names),
            memory_offer=largest_memory_offer(ray.nodes()),
        ),
    )


def _tuner(trainable, searcher, concurrent: int, scheduler, to_run: int, sweep, callbacks: list):
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrent),
            scheduler=scheduler,
            num_samples=to_run,
            # A fresh actor per trial. Reusing actors would save a trial's imports (a few seconds), but Tune then
            # cancels the actor it had requested for the trial, and on a busy machine that cancellation can reach the
            # trial as an error ("the actor never ran"): seen here with two test workers side by side.
            reuse_actors=False,
        ),
        run_config=tune.RunConfig(
            name=f"search-{datetime.now(UTC):%Y%m%dT%H%M%SZ}",
            storage_path=str((Path(sweep.run_dir) / "tune").resolve()),
            verbose=0,
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
