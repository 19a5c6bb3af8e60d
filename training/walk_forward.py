"""The walk-forward, start to finish, in the order it happens (read this file top to bottom).

contract check -> read the mart and its folds once, as trainer -> every fold x seed as an independent task (on Ray;
each one fits the scaler on its train split, trains PPO, selects a checkpoint on validation, and tests it once beside
the baselines: training/fold_task.py) -> statistics over folds x seeds with confidence intervals, and the verdict ->
run folder (models, statistics.json, report.html) -> ml.walk_forward_* tables in one transaction.

``python -m training.walk_forward`` (``make walk-forward``) runs it on every fold with ``--seeds`` seeds; ``make
train`` (training/single_run.py) runs the same job on one fold with one seed, in this process.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from training import results_schema, results_store
from training.config import TrainConfig, WalkForwardConfig, configuration_hash, dump_config
from training.contract import ContractTerms, check_mart_contract
from training.features import MartSchema, read_mart_schema
from training.folds import Fold, select_folds
from training.market_data import MarketData
from training.mart import MART_TABLE, MartSnapshot, read_build_marker, read_mart
from training.policies import POLICIES
from training.report import statistics_document, write_report_html, write_statistics_json
from training.run_folder import (
    RunFolderError,
    claim_run_folder,
    refuse_used_folder,
    remove_unfinished_run,
    writing_run_folder,
)
from training.statistics import RunStatistics, compute_statistics, fold_sample
from training.tradability import check_enough_sessions, sessions_needed
from warehouse_db import schemas
from warehouse_db.settings import ConnectionSettings

if TYPE_CHECKING:  # the tasks' modules import torch, stable-baselines3 and Ray: seconds that --help and the one-line
    # errors (a bad flag, a warehouse that does not answer) need not wait for; run_walk_forward imports them
    from training.fold_task import TaskResult
    from training.task_runners import RunnerOutcome, Task, TaskFailure

logger = logging.getLogger(__name__)

KIND_TRAIN = "train"
KIND_WALK_FORWARD = "walk_forward"


class TaskRunner(Protocol):
    def prepare(self) -> None:
        """Fail fast (before the mart is read) when the tasks could not run, e.g. the Ray cluster does not answer."""

    def run(self, config: TrainConfig, data: MarketData, tasks: Sequence[Task]) -> RunnerOutcome: ...


class AllTasksFailed(RuntimeError):
    """No fold x seed task succeeded: there is nothing to measure."""

    def __init__(self, failures: Sequence[TaskFailure], ray_address: str | None = None, resume: str = "") -> None:
        """``ray_address``: the cluster the tasks ran on (None: a local Ray, whose CPUs --ray-cpus sets). ``resume``:
        the command that runs the walk-forward again, for a sweep's final one (its settings are the chosen trial's:
        lowering them is a new sweep)."""
        self.failures = list(failures)
        self.ray_address = ray_address
        first = self.failures[0].error if self.failures else "no task ran"
        out_of_memory = self.failures and all(f.out_of_memory for f in self.failures)
        settings = "--n-envs, --n-steps, --batch-size or --net-arch"
        # --ray-cpus sizes only a local Ray: a cluster's nodes run what their CPUs and memory allow.
        hint = ""
        if out_of_memory and resume:
            again = (
                f"continue with fewer at once ({resume} --ray-cpus N)"
                if ray_address is None
                else f"free memory on the cluster's nodes and continue ({resume})"
            )
            hint = (
                f"; every task ran out of memory: {again}, which runs only the walk-forward, or start a new sweep with "
                "settings that need less memory (--n-envs, --n-steps, --batch-size, --net-arch, or their ranges in the "
                "search space)"
            )
        elif out_of_memory and ray_address is None:
            hint = f"; every task ran out of memory: run fewer at once (--ray-cpus) or lower {settings}"
        elif out_of_memory:
            hint = f"; every task ran out of memory: lower {settings}, or free memory on the cluster's nodes"
        elif resume:
            hint = f"; the sweep's trials are kept: {resume} runs only the walk-forward again"
        super().__init__(f"all {len(self.failures)} fold x seed tasks failed; the first: {first}{hint}")


@dataclass(frozen=True)
class WalkForwardResult:
    run_id: str
    run_dir: Path
    report_path: Path
    statistics: RunStatistics
    results: list[TaskResult]
    failures: list[TaskFailure]
    mart_hash: str


def new_run_id() -> str:
    # The suffix comes from the OS, not from a seeded generator: two runs with one seed still get two ids.
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def contract_terms(config: TrainConfig, schema: MartSchema) -> ContractTerms:
    return ContractTerms(
        feature_names=tuple(schema.feature_names),
        target=schema.target,
        price_columns=schema.price_columns,
        min_sessions_per_split=sessions_needed(config),
        min_purge_sessions=schema.target_horizon_sessions,
        min_embargo_sessions=config.embargo_sessions or 0,
    )


class MartKeptChanging(RuntimeError):
    """dbt wrote the mart during every contract check: no build could be read that was the one checked."""


CONTRACT_CHECKS = 3
"""Tries to read the build of the mart that the contract check saw, while dbt writes it."""


def read_checked_mart(
    config: TrainConfig, settings: ConnectionSettings, schema: MartSchema, terms: ContractTerms | None = None
) -> MartSnapshot:
    """The data contract first, then the rows and folds (as trainer both times) of the build the contract saw.

    The check and the read are separate transactions (Great Expectations opens its own connections), and a dbt run
    that lands between them would have the job train on rows nobody checked: the build is compared before the check
    and in the read's transaction, and checked again when it changed.
    """
    terms = terms or contract_terms(config, schema)
    for _ in range(CONTRACT_CHECKS):
        checked = read_build_marker(settings)
        check_mart_contract(settings, terms)
        snapshot = read_mart(settings, schema, config.symbols, config.symbols_limit)
        if snapshot.build == checked:
            return snapshot
        logger.warning("%s.%s changed while its contract was checked (a dbt run?): checking it again",
                       schemas.MARTS, MART_TABLE)  # fmt: skip
    raise MartKeptChanging(
        f"{schemas.MARTS}.{MART_TABLE} changed during each of {CONTRACT_CHECKS} contract checks (is dbt running?): "
        "run again when the dbt run is done"
    )


class _RunLogHandler(logging.FileHandler):
    """The run's log file. A disk that fills up stops the file, not the run: logging's own handler printed a traceback
    for every line from then on (the console has every line anyway, and the run folder's writes end the run with
    one line that says why)."""

    def handleError(self, record: logging.LogRecord) -> None:
        if not isinstance(sys.exc_info()[1], OSError):
            super().handleError(record)  # a bug (e.g. a message's arguments): logging's own report
        elif not getattr(self, "failed", False):
            self.failed = True
            print(f"warning: cannot write {self.baseFilename} any more; the log goes on here only", file=sys.stderr)

    def close(self) -> None:
        with suppress(OSError):
            super().close()


@contextmanager
def run_log(path: Path) -> Iterator[Callable[[str], None]]:
    """Every log line of the run also goes to ``path``. Yields a function that writes a line to ``path`` only: the
    verdict and the report, which the command prints once itself (on stdout), not again as a console log line."""
    with writing_run_folder(path.parent):
        handler = _RunLogHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)

    def to_run_log_only(message: str) -> None:
        handler.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, (), None))

    try:
        yield to_run_log_only
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def write_run_folder(
    run_dir: Path,
    summary: dict[str, Any],
    statistics: RunStatistics,
    folds: Sequence[Fold],
    results: Sequence[TaskResult],
    failures: Sequence[TaskFailure],
) -> Path:
    """Each task's model and its fold's scaler, statistics.json and report.html; returns the report's path."""
    with writing_run_folder(run_dir):
        for result in results:
            task_dir = run_dir / "folds" / f"fold-{result.fold_id}" / f"seed-{result.seed}"
            task_dir.mkdir(parents=True, exist_ok=True)
            (task_dir / "model.zip").write_bytes(result.model_zip)
            (task_dir.parent / "scaler.json").write_text(json.dumps(result.scaler, indent=2), encoding="utf-8")
        write_statistics_json(run_dir / "statistics.json", statistics_document(summary, statistics, results, failures))
        report_path = run_dir / "report.html"
        write_report_html(report_path, summary, statistics, folds, results, failures)
    return report_path


def run_walk_forward(
    config: WalkForwardConfig,
    settings: ConnectionSettings,
    *,
    runner: TaskRunner | None = None,
    snapshot: MartSnapshot | None = None,
    trial_sharpe_variance: float | None = None,
) -> WalkForwardResult:
    """Every fold (or ``config.folds``) x ``config.seeds`` seeds on Ray, then statistics, report and ml.* rows.

    A sweep passes the configuration it chose with ``configurations_tried`` set to its trial count (and, if it knows
    it, the variance of its trials' Sharpe ratios): the deflated Sharpe ratio charges for them. ``snapshot`` skips
    reading the mart again when the caller already holds it.
    """
    from training.task_runners import RayRunner  # torch, stable-baselines3 and Ray: see the imports at the top

    runner = runner or RayRunner(
        address=config.ray_address,
        cpus=config.ray_cpus,
        connect_timeout=config.ray_connect_timeout,
        retries=config.task_retries,
        progress_bar=config.progress_bar,
    )
    return execute(
        KIND_WALK_FORWARD,
        config,
        settings,
        fold_ids=config.folds,
        seeds=config.seed_list,
        make_runner=lambda run_dir: runner,
        snapshot=snapshot,
        trial_sharpe_variance=trial_sharpe_variance,
    )


def execute(
    kind: str,
    config: TrainConfig,
    settings: ConnectionSettings,
    *,
    fold_ids: Sequence[int],
    seeds: Sequence[int],
    make_runner: Callable[[Path], TaskRunner],
    snapshot: MartSnapshot | None = None,
    trial_sharpe_variance: float | None = None,
    pick_folds: Callable[[Sequence[Fold]], list[Fold]] | None = None,
    fold_flag: str = "--folds",
) -> WalkForwardResult:
    """The job: mart -> tasks -> statistics -> run folder -> warehouse (``make train`` and the walk-forward).

    ``fold_flag`` is the option that chose the folds, which a refusal of a fold names."""
    started_at = datetime.now(UTC)
    config, runner = _claim_run(config, make_runner)
    run_id = config.run_id
    run_dir = config.runs_dir / run_id
    tasks_ran = False
    try:
        with run_log(run_dir / "run.log") as to_run_log_only:
            _start_run(kind, config, settings, seeds, run_dir)

            # 1. The mart and its folds, read once as trainer (after the data contract).
            schema = read_mart_schema(config.mart_yaml)
            snapshot = snapshot or read_checked_mart(config, settings, schema)
            folds = pick_folds(snapshot.folds) if pick_folds else select_folds(snapshot.folds, fold_ids)
            _log_folds(folds)
            data = MarketData.from_frame(snapshot.frame, schema.feature_names)
            # A fold no symbol can trade is refused here, before any task trains.
            check_enough_sessions(data, folds, config, fold_flag)

            # 2. Every fold x seed, independently: train, select on validation, test once.
            outcome = runner.run(config.task_config(), data, [(f, s) for f in folds for s in seeds])
            tasks_ran = True
            if not outcome.results:
                raise AllTasksFailed(outcome.failures, outcome.ray_address)
            results = sorted(outcome.results, key=lambda r: (r.fold_id, r.seed))

            # 3. How sure we are.
            statistics = _statistics(config, folds, results, trial_sharpe_variance)

            # 4. The run folder: models, statistics.json, report.html.
            finished_at = datetime.now(UTC)
            summary = _summary(kind, config, seeds, folds, snapshot, outcome, statistics, started_at, finished_at)
            report_path = write_run_folder(run_dir, summary, statistics, folds, results, outcome.failures)

            # 5. The warehouse, all or nothing.
            if config.save_to_warehouse:
                record = _run_record(kind, config, run_dir, summary, seeds, folds, snapshot, outcome, statistics,
                                     results, started_at, finished_at)  # fmt: skip
                results_store.write_run(
                    settings, record, folds, results, outcome.failures, statistics, config.selection_metric
                )
            for failure in outcome.failures:
                logger.error("fold %d seed %d failed after %d attempts: %s", failure.fold_id, failure.seed,
                             failure.attempts, failure.error)  # fmt: skip
            to_run_log_only(f"verdict: {statistics.verdict}")
            to_run_log_only(f"report: {report_path.resolve()}")
    except BaseException as error:
        # Failed or interrupted before the tasks were done (bad mart, folds, warehouse, Ctrl+C): the folder would hold
        # only a log and a config that no result belongs to; or it could not be written whole (a full disk), and
        # nothing landed. The error itself is on stderr.
        if not tasks_ran or isinstance(error, RunFolderError):
            remove_unfinished_run(run_dir)
        raise
    return WalkForwardResult(
        run_id, run_dir, report_path, statistics, results, list(outcome.failures), snapshot.content_hash
    )


def _claim_run(config: TrainConfig, make_runner: Callable[[Path], TaskRunner]) -> tuple[TrainConfig, TaskRunner]:
    """The run's id and folder, and a runner that answers: (the configuration naming its run, the runner).

    A ``--run-id`` whose folder is taken is refused before the runner is asked; a generated one that is taken is
    replaced when the folder is claimed."""
    proposed = config.run_id or new_run_id()
    if config.run_id:  # a generated id that is taken is replaced below
        refuse_used_folder(config.runs_dir / proposed, "--run-id")
    runner = make_runner(config.runs_dir / proposed)
    runner.prepare()  # a Ray cluster that does not answer fails here, before any folder is made
    # Claimed only now, in one step: another run may have taken the folder since the check.
    run_id = claim_run_folder(config.runs_dir, proposed, "--run-id", None if config.run_id else new_run_id)
    if run_id != proposed:
        runner = make_runner(config.runs_dir / run_id)
    return dataclasses.replace(config, run_id=run_id), runner  # the run folder's config.yaml names its run


def _start_run(
    kind: str, config: TrainConfig, settings: ConnectionSettings, seeds: Sequence[int], run_dir: Path
) -> None:
    """The run's first log line, its config.yaml, and (when it saves there) the warehouse's tables, without a run of
    this id."""
    run_id = config.run_id
    # The trainer's login (where it has its own) is the one every read and write of the run uses.
    warehouse = settings.for_role(schemas.TRAINER_ROLE).describe()
    logger.info("run %s (%s): %s environment, seeds %s, %s", run_id, kind, config.env, list(seeds), warehouse)
    with writing_run_folder(run_dir):
        dump_config(config, run_dir / "config.yaml")
    if config.save_to_warehouse:
        results_schema.ensure_tables(settings)
        if results_store.run_exists(settings, run_id):
            raise FileExistsError(f"ml.walk_forward_runs already has a run {run_id!r}: choose another --run-id")


def _log_folds(folds: Sequence[Fold]) -> None:
    for fold in folds:
        logger.info("fold %d: train %s … %s, validation %s … %s, test %s … %s", fold.fold_id, fold.train.start,
                    fold.train.end, fold.validation.start, fold.validation.end, fold.test.start, fold.test.end)  # fmt: skip


def _statistics(
    config: TrainConfig, folds: Sequence[Fold], results: Sequence[TaskResult], trial_sharpe_variance: float | None
) -> RunStatistics:
    """Statistics over the folds that have a result: each fold's test replays of its seeds, every policy."""
    samples = [
        fold_sample(fold.fold_id, {r.seed: r.replays["test"] for r in results if r.fold_id == fold.fold_id})
        for fold in folds
        if any(r.fold_id == fold.fold_id for r in results)
    ]
    return compute_statistics(
        samples,
        POLICIES,
        resamples=config.bootstrap_samples,
        block_sessions=config.block_sessions,
        confidence=config.confidence,
        configurations_tried=config.configurations_tried,
        trial_sharpe_variance=trial_sharpe_variance,
        seed=config.seed,
    )


def _summary(
    kind: str,
    config: TrainConfig,
    seeds: Sequence[int],
    folds: Sequence[Fold],
    snapshot: MartSnapshot,
    outcome: RunnerOutcome,
    statistics: RunStatistics,
    started_at: datetime,
    finished_at: datetime,
) -> dict[str, Any]:
    """What the run was, for statistics.json and the report."""
    return {
        "run_id": config.run_id,
        "kind": kind,
        "config_hash": configuration_hash(config),
        "env": config.env,
        "timesteps_per_task": config.timesteps,
        "folds": [fold.fold_id for fold in folds],
        "seeds": list(seeds),
        "tasks_failed": len(outcome.failures),
        "configurations_tried": config.configurations_tried,
        # One meaning with the sample line and ml.walk_forward_runs.symbols: the symbols traded in the test
        # splits (the most of any fold). A symbol the mart holds that no test split trades (too few sessions
        # there) is only in symbols_read.
        "symbols": statistics.size.symbols,
        "symbols_read": len(snapshot.symbols),
        "mart_rows": snapshot.row_count,
        "mart_hash": snapshot.content_hash,
        "dbt_invocation_id": snapshot.dbt.invocation_id,
        "dbt_run_started_at": snapshot.dbt.run_started_at,
        "ray_address": outcome.ray_address,
        "ray_nodes": outcome.nodes,
        "window": config.window,
        "commission_bps": config.commission_bps,
        "slippage_bps": config.slippage_bps,
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "wall_seconds": round((finished_at - started_at).total_seconds(), 1),
    }


def _run_record(
    kind: str,
    config: TrainConfig,
    run_dir: Path,
    summary: dict[str, Any],
    seeds: Sequence[int],
    folds: Sequence[Fold],
    snapshot: MartSnapshot,
    outcome: RunnerOutcome,
    statistics: RunStatistics,
    results: Sequence[TaskResult],
    started_at: datetime,
    finished_at: datetime,
) -> results_store.RunRecord:
    """The run's row of ml.walk_forward_runs."""
    return results_store.RunRecord(
        run_id=config.run_id,
        kind=kind,
        status="partial" if outcome.failures else "succeeded",
        started_at=started_at,
        finished_at=finished_at,
        config_hash=summary["config_hash"],
        config=config.to_dict(),
        env=config.env,
        timesteps_per_task=config.timesteps,
        folds=len(folds),
        seeds=len(seeds),
        tasks_succeeded=len(results),
        tasks_failed=len(outcome.failures),
        test_sessions=statistics.size.sessions,
        symbols=statistics.size.symbols,
        configurations_tried=config.configurations_tried,
        deflated_sharpe=statistics.deflated_sharpe.value,
        verdict=statistics.verdict,
        mart_rows=snapshot.row_count,
        mart_hash=snapshot.content_hash,
        dbt_invocation_id=snapshot.dbt.invocation_id,
        dbt_generated_at=snapshot.dbt.run_started_at,
        ray_address=outcome.ray_address,
        ray_nodes=outcome.nodes,
        run_dir=str(run_dir.resolve()),
    )


if __name__ == "__main__":
    from training.cli import walk_forward_main

    sys.exit(walk_forward_main())
