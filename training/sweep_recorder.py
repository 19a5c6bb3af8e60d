"""The sweep driver's record of its trials: a Ray Tune callback that writes every trial event to ml.sweep_trials.

Tune calls it in the driver (never on a worker) when a trial starts, reports a fold's score, completes (all folds, or
fewer: ASHA pruned it) or fails; each event is saved at once (training/sweep_store.py), so that an interrupted sweep
resumes from the rows with ``--resume <sweep_id>``. It also draws the progress bar (running, completed, pruned and
failed trials, and the best objective so far) and logs each finished trial in one line.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from command_line import progress_disabled
from training.config import configuration_hash
from training.sweep_trial import OBJECTIVE

if TYPE_CHECKING:  # psycopg and the ml schema load when a sweep starts, not when the command imports this
    from training import sweep_store

logger = logging.getLogger("training.sweep")  # the sweep's log lines keep one name, whichever module writes them


def one_line(error: BaseException | None) -> str:
    """An error for a row's error column and a log line: its type and the first line of its message (a Ray error's
    cause's)."""
    cause = getattr(error, "cause", None) or error
    text = str(cause).strip().splitlines() if cause is not None else []
    return f"{type(cause).__name__}: {text[0] if text else ''}".strip() if cause is not None else "unknown error"


def _trial_error(trial) -> BaseException | None:
    """The error a failed trial raised. Tune writes it into the trial's local folder before it calls the callbacks,
    and copies it into the trial's storage only later: ``get_pickled_error`` (which reads the storage) found nothing
    there, and every failed trial was recorded as "unknown error"."""
    import cloudpickle

    local = trial.pickled_error_file
    if local and Path(local).is_file():
        try:
            return cloudpickle.loads(Path(local).read_bytes())
        except Exception:  # noqa: BLE001 (an error that cannot be unpickled here: the storage's copy, or none)
            pass
    return trial.get_pickled_error()


def _json_safe(values: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}, default=str))


def _not_restorable() -> None:
    return None


def make_recorder(conn, sweep, space, base, folds, trials, total, progress_bar, memory_kills=None):
    """A Tune callback (it runs in the driver) that writes every trial event to ml.sweep_trials. ``memory_kills``
    (training/sweep_tune_logs.py's ``MemoryKills``) tells it which failing trial Ray killed for memory."""
    from ray import tune

    # Tune takes only subclasses of its Callback, and Ray takes seconds to import: the class that is one is made here,
    # when a sweep starts, not when the command imports this module.
    class SweepRecorder(_TrialRecorder, tune.Callback):
        pass

    return SweepRecorder(conn, sweep, space, base, folds, trials, total, progress_bar, memory_kills)


class _TrialRecorder:
    """The callback's methods: ``trials`` are the rows of the sweep's earlier starts, ``total`` the trials the
    progress bar counts to."""

    def __init__(self, conn, sweep, space, base, folds, trials, total, progress_bar, memory_kills=None) -> None:
        from tqdm.auto import tqdm

        self.conn, self.sweep, self.space, self.base, self.folds = conn, sweep, space, base, folds
        self.memory_kills = memory_kills
        self.trials: dict[str, sweep_store.TrialRecord] = {}
        self.history = list(trials)
        self.next_number = max((t.trial_number for t in trials), default=0) + 1
        finished = sum(t.state in ("completed", "pruned", "failed") for t in trials)
        self.bar = tqdm(
            total=total, initial=finished, unit="trial", desc="trials", disable=progress_disabled(progress_bar)
        )
        self._show()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._record(trial)
        self._show()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        record = self._record(trial)
        record.folds_done = int(result["training_iteration"])
        record.fold_ids = [*record.fold_ids, int(result["fold_id"])]
        record.fold_scores = [*record.fold_scores, float(result["fold_score"])]
        record.objective = float(result[OBJECTIVE])
        record.trial_steps = int(result["trial_steps"])
        record.node = str(result["node"])
        record.wall_seconds = (datetime.now(UTC) - record.started_at).total_seconds()
        self._save(record)
        self._show()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        # ASHA stops a trial by completing it early: fewer folds than all of them means pruned.
        record = self._record(trial)
        self._finish(trial, "completed" if record.folds_done == len(self.folds) else "pruned")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        if self.memory_kills is not None and self.memory_kills.kills:
            # Ray killed the trial's worker for memory (the node ran low), which says nothing against its values: it
            # is interrupted, to run again on --resume, and the sweep stops here (training/sweep_search.py says why).
            killed = self.memory_kills.kills.pop()
            record = self._record(trial)
            record.state, record.error, record.finished_at = "interrupted", one_line(killed), datetime.now(UTC)
            self._save(record)
            raise killed
        self._finish(trial, "failed", one_line(_trial_error(trial)))

    def close(self) -> list[sweep_store.TrialRecord]:
        """Trials still running (the sweep was interrupted) are recorded as interrupted."""
        for record in self.trials.values():
            if record.state == "running":
                record.state = "interrupted"
                record.finished_at = datetime.now(UTC)
                self._save(record)
        self.bar.close()
        return list(self.trials.values())

    def __reduce__(self):
        # Tune pickles its callbacks so that Tuner.restore can rebuild them; a sweep resumes from
        # ml.sweep_trials instead, and a live database connection cannot be pickled.
        return (_not_restorable, ())

    def _record(self, trial) -> sweep_store.TrialRecord:
        """The trial's record, made (and saved as running) the first time Tune mentions the trial: a trial whose
        actor dies before it starts is reported as an error without ever having started."""
        from training import sweep_store

        if trial.trial_id not in self.trials:
            config = self.space.apply(self.base, trial.config)
            record = sweep_store.TrialRecord(
                sweep_id=self.sweep.sweep_id,
                trial_number=self.next_number,
                tune_trial_id=trial.trial_id,
                state="running",
                params=_json_safe(self.space.decode(trial.config)),
                config=config.to_dict(),
                config_hash=configuration_hash(config),
                started_at=datetime.now(UTC),
            )
            self.next_number += 1
            self.trials[trial.trial_id] = record
            self._save(record)
        return self.trials[trial.trial_id]

    def _finish(self, trial, state: str, error: str | None = None) -> None:
        record = self._record(trial)
        record.state, record.error = state, error
        record.finished_at = datetime.now(UTC)
        record.wall_seconds = (record.finished_at - record.started_at).total_seconds()
        self._save(record)
        self.bar.update(1)
        self._show()
        _log_finished(record, state, error, len(self.folds))

    def _save(self, record: sweep_store.TrialRecord) -> None:
        from training import sweep_store

        sweep_store.save_trial(self.conn, record)

    def _show(self) -> None:
        self.bar.set_postfix_str(_progress_text(self.history + list(self.trials.values())), refresh=True)


def _progress_text(records: list[sweep_store.TrialRecord]) -> str:
    """The progress bar's trials by state and the best objective so far (the earlier of two equal ones)."""
    from training import results_schema

    counts = {state: sum(r.state == state for r in records) for state in results_schema.TRIAL_STATES}
    completed = [r for r in records if r.state == "completed" and r.objective is not None]
    best = max(completed, key=lambda r: (r.objective, -r.trial_number), default=None)
    best_text = f"best {best.objective:.3f} (trial {best.trial_number})" if best else "best –"
    return (
        f"running {counts['running']}, completed {counts['completed']}, pruned {counts['pruned']}, "
        f"failed {counts['failed']}, {best_text}"
    )


def _log_finished(record: sweep_store.TrialRecord, state: str, error: str | None, folds: int) -> None:
    scores = ", ".join(f"fold {f}: {s:.2f}" for f, s in zip(record.fold_ids, record.fold_scores, strict=True))
    logger.log(
        logging.WARNING if state == "failed" else logging.INFO,
        "trial %d %s after %d of %d folds in %.0f s: objective %s (%s) %s",
        record.trial_number,
        state,
        record.folds_done,
        folds,
        record.wall_seconds,
        "–" if record.objective is None else f"{record.objective:.3f}",
        scores or "no fold scored",
        error or json.dumps(record.params),
    )
