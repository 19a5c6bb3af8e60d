"""Command lines of the training jobs: ``python -m training`` (make train) and ``python -m training.walk_forward``.

Flags come from the configuration dataclasses (training/config.py, help = field docstrings, via tyro) over an
optional ``--config file.yaml``. Every failure a user can cause ends in one line and an exit status of
training/exit_codes.py, which ``--help`` lists.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from command_line import outlives_its_reader, path_is_file, sigterm_interrupts, user_path
from training.config import ConfigT, SingleRunConfig, TrainConfig, WalkForwardConfig, load_config
from training.config_values import RETIRED_FIELDS
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


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def log_records_held(name: str = "training.config_values") -> Iterator[list[logging.LogRecord]]:
    """Hold every record ``name`` logs until :func:`set_up_logging` replays it: while the command line is read,
    logging is not set up yet (its level is a setting), and Python drops an info line logged then, such as the one
    that says a setting an earlier release wrote (a run folder's config.yaml, a resumed sweep's) is ignored."""
    handler = _Holder()
    held = handler.records
    source = logging.getLogger(name)
    level, propagate = source.level, source.propagate
    source.setLevel(logging.DEBUG)
    source.propagate = False
    source.addHandler(handler)
    try:
        yield held
    finally:
        source.removeHandler(handler)
        source.setLevel(level)
        source.propagate = propagate


class _Holder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def set_up_logging(level: str, held: Sequence[logging.LogRecord] = ()) -> None:
    """Log at ``level`` from here on, then say what was held while the command line was read."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)
    for record in held:
        if (source := logging.getLogger(record.name)).isEnabledFor(record.levelno):
            source.handle(record)


CONFIG_FLAG_HELP = "--config FILE.yaml: fields of this configuration (flags given as well override the file)."


def parse_command_line(
    cls: type[ConfigT],
    argv: Sequence[str] | None,
    prog: str,
    description: str,
    base: dict[str, Any] | None = None,
) -> ConfigT:
    """Flags from the dataclass ``cls`` (help = field docstrings) over ``--config`` YAML over the defaults (or over
    ``base``: a resumed sweep's stored configuration).

    Raises ``ValueError`` with one line for a bad flag, value, file or combination; ``--help`` exits 0.
    """
    import tyro  # here, not at the top: it takes a moment, and --help of other commands need not wait

    argv = list(sys.argv[1:] if argv is None else argv)
    config_path, rest = _take_config_flag(argv)
    if retired := _retired_flag(cls, rest):
        # A script written for an earlier release would read only 'Unrecognized option' and be sent to a --help that
        # does not list the flag.
        flag, why = retired
        raise ValueError(f"{flag} is no longer an option ({why}): leave it out")
    if flag := _empty_path_flag(cls, rest):
        # tyro makes Path("") of it, which is ".": --runs-dir "$DIR" with DIR unset would fill the working directory.
        raise ValueError(f"{flag} is empty: give a path")
    defaults = load_config(config_path, cls=cls, base=base)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return tyro.cli(cls, args=rest, default=defaults, prog=prog, description=description)
    except SystemExit as exit_:
        if exit_.code in (0, None):
            raise
    # tyro wraps its message at the terminal's width, inside words (a long path would read 'runs/fo lder'): parse
    # again, as wide as the message needs, for the one line.
    captured = io.StringIO()
    with _wide_terminal(), contextlib.redirect_stderr(captured), contextlib.suppress(SystemExit):
        tyro.cli(cls, args=rest, default=defaults, prog=prog, description=description)
    raise ValueError(_one_line(captured.getvalue(), prog))


@contextlib.contextmanager
def _wide_terminal():
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100000"
    try:
        yield
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


def _take_config_flag(argv: list[str]) -> tuple[Path | None, list[str]]:
    rest: list[str] = []
    config_path: Path | None = None
    iterator = iter(argv)
    for arg in iterator:
        if arg == "--config":
            value = next(iterator, None)
            if value is None:
                raise ValueError("--config needs a file name")
            config_path = user_path(value)
        elif arg.startswith("--config="):
            config_path = user_path(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    if config_path is not None and not path_is_file(config_path):
        raise ValueError(f"--config {config_path}: no such file")
    return config_path, rest


def _retired_flag(cls: type, argv: list[str]) -> tuple[str, str] | None:
    """The first flag of a setting an earlier release had (:data:`RETIRED_FIELDS`, not a field of ``cls``), with why
    it is gone, or None."""
    retired = {name: why for name, why in RETIRED_FIELDS.items() if name not in typing.get_type_hints(cls)}
    for arg in argv:
        flag = arg.partition("=")[0].replace("_", "-")
        for name, why in retired.items():
            if flag == f"--{name.replace('_', '-')}":
                return flag, why
    return None


def _empty_path_flag(cls: type, argv: list[str]) -> str | None:
    """The first path flag of ``cls`` given an empty (or blank) value, or None."""
    hints = typing.get_type_hints(cls)
    flags = {f"--{name.replace('_', '-')}" for name, hint in hints.items() if Path in (hint, *typing.get_args(hint))}
    for index, arg in enumerate(argv):
        flag, equals, value = arg.partition("=")
        flag = flag.replace("_", "-")
        if flag not in flags:
            continue
        given = value if equals else argv[index + 1] if index + 1 < len(argv) else None
        if given is not None and not given.strip():
            return flag
    return None


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CORNERS = "╭╮╰╯+"
_RULE = re.compile(r"^[\s│|├┤─+-]*$")


def _one_line(tyro_error: str, prog: str) -> str:
    """tyro's boxed error message as one line: 'Unrecognized options: --x (did you mean --y?)'.

    On a terminal the message is a box whose top edge carries the title; elsewhere the title is a line of its own.
    Either way, rules separate the message from the suggestions and the help hint.
    """
    blocks: list[list[str]] = [[]]
    title = ""
    for raw in tyro_error.splitlines():
        line = _ANSI.sub("", raw).strip()
        if not line:
            continue
        if line[0] in _CORNERS:  # the top edge carries the title, the bottom edge nothing
            title = title or line.strip(_CORNERS + "─- ")
            continue
        if _RULE.match(line):
            blocks.append([])
            continue
        blocks[-1].append(line.strip("│| "))
    blocks = [block for block in blocks if block]
    if not title and len(blocks) > 1 and len(blocks[0]) == 1:  # no box (not a terminal): the title is a line alone
        title = blocks.pop(0)[0]
    message = " ".join(blocks[0]) if blocks else title or "invalid command line"
    # "Missing value for argument '--seed'. Expected 1 values." says it twice, the second time ungrammatically.
    message = message.replace(". Expected 1 values.", "").rstrip(". ")
    message = _without_values(message)
    suggestions = [
        flag
        for block in blocks[1:]
        if block[0].startswith("Perhaps you meant")
        for line in block
        if line.startswith("--")
        for flag in _flag_names(line)
    ]
    hint = f" (did you mean {' or '.join(dict.fromkeys(suggestions))}?)" if suggestions else ""
    return f"{message}{hint}; see {prog} --help"


def _without_values(message: str) -> str:
    """tyro's 'Unrecognized options: --x, 3' names the unknown flag's value as if it were an option too: keep the flags.

    Words that are not flags stay when no flag is left (a stray positional word is the unrecognized one then).
    """
    label, separator, listed = message.partition("Unrecognized options: ")
    words = listed.split(", ")
    flags = [word for word in words if word.startswith("-") and not _is_number(word)]  # "--x -3": -3 is a value
    if not separator or not flags or len(flags) == len(words):
        return message
    return f"{label}Unrecognized option{'s' if len(flags) > 1 else ''}: {', '.join(flags)}"


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def _flag_names(line: str) -> list[str]:
    """The flags a line of tyro's suggestions names: '--seed INT ...' or a true/false pair '--a, --no-a ...'."""
    names = []
    for word in line.split():
        names.append(word.rstrip(","))
        if not word.endswith(","):
            break
    return names


def _help(description: str) -> str:
    return f"{description}\n\n{CONFIG_FLAG_HELP}\n\n{exit_status_table()}"


@outlives_its_reader
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training``: one fold, one seed, in this process."""
    return _run(SingleRunConfig, argv, TRAIN_PROG, TRAIN_DESCRIPTION, _run_training)


def _run_training(config: SingleRunConfig, settings: Any) -> Any:
    # Imported once the flags are read: the in-process task loads torch and stable-baselines3 (seconds), which --help
    # and a bad flag need not wait for.
    from training.single_run import run_training

    return run_training(config, settings)


@outlives_its_reader
def walk_forward_main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.walk_forward``: every fold x seed on Ray."""
    from training.walk_forward import run_walk_forward

    return _run(WalkForwardConfig, argv, WALK_FORWARD_PROG, WALK_FORWARD_DESCRIPTION, run_walk_forward)


def user_error_status(error: BaseException) -> ExitCode | None:
    """The exit status of a failure a user can cause (a bad mart, fold, warehouse or cluster), or None for a bug.

    Imported here, not at the top, so that --help and bad flags answer at once; none of these modules imports torch,
    stable-baselines3, Ray or GX (seconds), so neither does the one line of a failure before the tasks run.
    """
    import psycopg

    from training.contract import ContractViolation
    from training.features import MartSchemaError
    from training.folds import FoldSelectionError
    from training.mart import SymbolSelectionError
    from training.run_folder import RunFolderError
    from training.sweep import NoTradableTrial, NoTrialCompleted, SweepError
    from training.sweep_search import TrialKilledForMemory
    from training.sweep_space import SearchSpaceError
    from training.task_runners import BadRayAddress, RayUnavailable
    from training.tradability import NotEnoughData
    from training.walk_forward import AllTasksFailed, MartKeptChanging
    from warehouse_db.errors import WarehouseError

    # training.ppo loads stable-baselines3 and torch: only a run that loaded it can have raised its ModelFileError.
    ppo = sys.modules.get("training.ppo")
    model_file_errors = (ppo.ModelFileError,) if ppo is not None else ()

    statuses: list[tuple[tuple[type[BaseException], ...], ExitCode]] = [
        ((ContractViolation, NotEnoughData, NoTradableTrial, MartKeptChanging), ExitCode.CONTRACT),
        # psycopg's OperationalError: a statement cancelled (a statement_timeout), a connection the server ended.
        ((WarehouseError, psycopg.OperationalError), ExitCode.WAREHOUSE),
        ((RayUnavailable,), ExitCode.RAY),
        (
            (
                MartSchemaError,
                SymbolSelectionError,
                FoldSelectionError,
                SearchSpaceError,
                SweepError,
                FileExistsError,
                RunFolderError,
                BadRayAddress,
                *model_file_errors,
            ),
            ExitCode.CONFIG,
        ),
        ((AllTasksFailed, NoTrialCompleted), ExitCode.FAILED),
        # Settings sized past this machine's memory (e.g. --n-envs 100000000: a 6 TiB rollout buffer), or a sweep's
        # trials together past a Ray node's (its memory monitor killed one).
        ((MemoryError, TrialKilledForMemory), ExitCode.CONFIG),
    ]
    return next((status for kinds, status in statuses if isinstance(error, kinds)), None)


def report_user_error(error: Exception) -> ExitCode:
    """Log a failure the user can cause in one line and return its exit status; anything else (a bug) raises."""
    from warehouse_db.errors import WarehouseError, server_error_line

    status = user_error_status(error)
    if status is None:
        raise error
    if isinstance(error, MemoryError):
        logger.error(
            "out of memory (%s): lower --n-envs, --n-steps, --batch-size, --net-arch, --random-draws or "
            "--bootstrap-samples",
            error or "no detail",
        )
    elif status == ExitCode.WAREHOUSE and not isinstance(error, WarehouseError):
        logger.error("warehouse: %s", server_error_line(error))
    else:
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
        with log_records_held() as held:
            config = parse_command_line(cls, argv, prog, _help(description))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.CONFIG
    set_up_logging(config.log_level, held)

    try:
        from warehouse_db import resolve_settings

        with sigterm_interrupts():
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
