"""Ray Tune's log lines that a sweep says better itself, filtered out while the search runs.

Used by the sweep's search (training/sweep_search.py) around ``Tuner.fit``. Three filters, each a context manager that
adds a ``logging.Filter`` to Tune's loggers and removes it when the search ends, so that Tune's other warnings still
reach the user: what Tune says on Ctrl+C (a ``Tuner.restore`` hint and checkpoint notices: a sweep resumes with
``--resume <sweep_id>``, its state is in SQL), and the traceback of a trial whose fold is too short for the window it
drew (the sweep logs that failure in one line with the reason), or whose worker Ray killed for memory (the sweep stops
with one line that says what to lower: training/sweep_search.py; the filter keeps the error for it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

TUNES_INTERRUPTION_LINES = (
    "Tuner.restore(",
    "Stop signal received (e.g. via SIGINT/Ctrl+C), ending Ray Tune run.",
    "Failed to fetch metrics for ",
)
"""What Tune logs on Ctrl+C that the sweep says better in its own one line."""
TUNES_INTERRUPTION_LOGGERS = ("ray.tune.tune", "ray.tune.analysis.experiment_analysis")


class _TunesRestoreHint(logging.Filter):
    """Drops what Tune says on Ctrl+C: "Experiment has been interrupted ... Resume experiment with: Tuner.restore(...)"
    (a sweep resumes with ``--resume <sweep_id>``, the line the sweep prints, never with Tuner.restore) and "Stop signal
    received ..., ending Ray Tune run. This will try to checkpoint the experiment state one last time. Press CTRL+C
    ... to skip" (the sweep's state is in SQL, not in Tune's checkpoint; Ctrl+C was one line only on SIGTERM), and, for
    a trial Ctrl+C stopped before its first result, "Failed to fetch metrics for 1 trial(s): ... FileNotFoundError(...
    result.json and progress.csv were not found ...)" (the sweep reads no metrics of Tune's: its trials are in SQL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(line in message for line in TUNES_INTERRUPTION_LINES)


@contextmanager
def without_tunes_restore_hint() -> Iterator[None]:
    loggers, hint = [logging.getLogger(name) for name in TUNES_INTERRUPTION_LOGGERS], _TunesRestoreHint()
    for tune_logger in loggers:
        tune_logger.addFilter(hint)
    try:
        yield
    finally:
        for tune_logger in loggers:
            tune_logger.removeFilter(hint)


class _UntradableTrialTraceback(logging.Filter):
    """Drops Tune's traceback of a trial that failed because a fold's split is too short for the window it drew
    (:class:`~training.tradability.NotEnoughData`): the sweep logs that trial's failure in one line with the reason, and
    warned before the search which windows each split is too short for. Other trial errors keep Tune's traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from training.tradability import NotEnoughData

        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(getattr(error, "cause", error), NotEnoughData)


TUNE_CONTROLLER_LOGGER = "ray.tune.execution.tune_controller"
"""The logger of Tune's "Trial task failed for trial ..." and the trial's traceback."""


@contextmanager
def without_untradable_tracebacks() -> Iterator[None]:
    controller_logger, untradable = logging.getLogger(TUNE_CONTROLLER_LOGGER), _UntradableTrialTraceback()
    controller_logger.addFilter(untradable)
    try:
        yield
    finally:
        controller_logger.removeFilter(untradable)


def killed_for_memory(error: BaseException | None) -> BaseException | None:
    """Ray's ``OutOfMemoryError`` (its memory monitor killed the worker: the node ran low on memory) when ``error`` is
    one or was raised from one, else None."""
    import ray.exceptions

    for candidate in (error, getattr(error, "cause", None), getattr(error, "__cause__", None)):
        if isinstance(candidate, ray.exceptions.OutOfMemoryError):
            return candidate
    return None


class MemoryKills(logging.Filter):
    """Drops Tune's traceback of a trial whose worker Ray's memory monitor killed, keeping the error in ``kills``.

    Tune logs every trial failure with its exception (TUNE_PRINT_ALL_TRIAL_ERRORS, which the search sets) just before it
    tells the callbacks, which get only the trial: the sweep's recorder reads ``kills`` to tell a trial killed for
    memory (it runs again on --resume) from one that failed (it does not)."""

    def __init__(self) -> None:
        super().__init__()
        self.kills: list[BaseException] = []

    def filter(self, record: logging.LogRecord) -> bool:
        killed = killed_for_memory(record.exc_info[1] if record.exc_info else None)
        if killed is not None:
            self.kills.append(killed)
        return killed is None


@contextmanager
def noting_memory_kills(kills: MemoryKills) -> Iterator[None]:
    controller_logger = logging.getLogger(TUNE_CONTROLLER_LOGGER)
    controller_logger.addFilter(kills)
    try:
        yield
    finally:
        controller_logger.removeFilter(kills)
