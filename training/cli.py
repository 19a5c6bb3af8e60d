"""Command lines of the training jobs: ``python -m training`` (make train) and ``python -m training.walk_forward``.

Flags come from the configuration dataclasses (training/config.py, help = field docstrings, via tyro) over an
optional ``--config file.yaml``. Every failure a user can cause ends in one line and an exit status of
training/exit_codes.py, which ``--help`` lists.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from training.config import CONFIG_FLAG_HELP, SingleRunConfig, TrainConfig, WalkForwardConfig, parse_command_line
from training.exit_codes import ExitCode, exit_status_table

logger = logging.getLogger("training")

TRAIN_PROG = "python -m training"
TRAIN_DESCRIPTION = (
    "Train PPO on one walk-forward fold of marts.training_bars with one seed, select the checkpoint on the fold's "
    "validation sessions, test it once against buy-and-hold, flat, SMA crossover and a matched random policy, and "
    "write runs/<run_id>/ and the ml.walk_forward_* tables. make walk-forward runs every fold x several seeds."
)
WALK_FORWARD_PROG = "python -m training.walk_forward"
WALK_FORWARD_DESCRIPTION = (
    "Train and test every walk-forward fold x --seeds seeds as independent tasks on Ray (a local Ray by default, "
    "--ray-address or RAY_ADDRESS for a cluster), then report the statistics over folds x seeds with confidence "
    "intervals and the verdict: runs/<run_id>/report.html and the ml.walk_forward_* tables."
)


def _help(description: str) -> str:
    return f"{description}\n\n{CONFIG_FLAG_HELP}\n\n{exit_status_table()}"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training``: one fold, one seed, in this process."""
    from training.job import run_training

    return _run(SingleRunConfig, argv, TRAIN_PROG, TRAIN_DESCRIPTION, run_training)


def walk_forward_main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.walk_forward``: every fold x seed on Ray."""
    from training.walk_forward import run_walk_forward

    return _run(WalkForwardConfig, argv, WALK_FORWARD_PROG, WALK_FORWARD_DESCRIPTION, run_walk_forward)


def user_error_status(error: BaseException) -> ExitCode | None:
    """The exit status of a failure a user can cause (a bad mart, fold, warehouse or cluster), or None for a bug.

    Imported here, not at the top, so that --help and bad flags answer at once (torch, SB3, Ray and GX take seconds).
    """
    from training.contract import ContractViolation
    from training.features import MartSchemaError
    from training.fold_task import NotEnoughData
    from training.folds import FoldSelectionError
    from training.mart import SymbolSelectionError
    from training.ppo import ModelFileError
    from training.sweep import NoTrialCompleted, SweepError
    from training.sweep_space import SearchSpaceError
    from training.task_runners import BadRayAddress, RayUnavailable
    from training.walk_forward import AllTasksFailed
    from warehouse_db.errors import WarehouseError

    statuses: list[tuple[tuple[type[BaseException], ...], ExitCode]] = [
        ((ContractViolation, NotEnoughData), ExitCode.CONTRACT),
        ((WarehouseError,), ExitCode.WAREHOUSE),
        ((RayUnavailable,), ExitCode.RAY),
        (
            (
                MartSchemaError,
                SymbolSelectionError,
                FoldSelectionError,
                SearchSpaceError,
                SweepError,
                FileExistsError,
                BadRayAddress,
                ModelFileError,
            ),
            ExitCode.CONFIG,
        ),
        ((AllTasksFailed, NoTrialCompleted), ExitCode.FAILED),
    ]
    return next((status for kinds, status in statuses if isinstance(error, kinds)), None)


def report_user_error(error: Exception) -> ExitCode:
    """Log a failure the user can cause in one line and return its exit status; anything else (a bug) raises."""
    status = user_error_status(error)
    if status is None:
        raise error
    logger.error("%s", error)
    return status


def _run(
    cls: type[TrainConfig],
    argv: Sequence[str] | None,
    prog: str,
    description: str,
    job: Callable[[Any, Any], Any],
) -> int:
    try:
        config = parse_command_line(cls, argv, prog, _help(description))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.CONFIG
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        from warehouse_db import resolve_settings

        result = job(config, resolve_settings())
    except KeyboardInterrupt:
        logger.error("interrupted: no row of this run was written (a run lands in one transaction, at the end)")
        return ExitCode.INTERRUPTED
    except Exception as error:  # noqa: BLE001 - report_user_error re-raises what a user cannot cause
        return report_user_error(error)
    print(result.statistics.verdict)
    print(f"report: {result.report_path.resolve()}")
    if result.failures:
        failed = ", ".join(f"fold {f.fold_id} seed {f.seed}" for f in result.failures)
        logger.error("%d task(s) failed after their retries: %s (the report lists why)", len(result.failures), failed)
        return ExitCode.PARTIAL
    return ExitCode.OK
