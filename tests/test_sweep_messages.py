"""What a sweep prints on Ctrl+C (unit tests: no Ray, no database)."""

from __future__ import annotations

import logging

import pytest

from training.sweep_tune_logs import without_tunes_restore_hint

TUNES_HINT = (
    "Experiment has been interrupted, but the most recent state was saved.\n"
    'Resume experiment with: Tuner.restore(path="runs/sweep-x/tune/search-y", trainable=...)'
)
TUNES_STOP = (  # ray/tune/tune.py, on the first Ctrl+C of a search
    "Stop signal received (e.g. via SIGINT/Ctrl+C), ending Ray Tune run. This will try to checkpoint the experiment "
    "state one last time. Press CTRL+C (or send SIGINT/SIGKILL/SIGTERM) to skip. "
)
TUNES_ANALYSIS = "ray.tune.analysis.experiment_analysis"
TUNES_NO_METRICS = (  # for a trial that Ctrl+C stopped before its first result
    "Failed to fetch metrics for 1 trial(s):\n- run_trial_3fa34a89: FileNotFoundError('Could not fetch metrics for "
    "run_trial_3fa34a89: both result.json and progress.csv were not found at runs/sweep-x/tune/search-y/run_trial_3')"
)


def test_tunes_restore_hint_is_hidden_the_sweeps_own_resume_line_is_the_one(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tune's hint names Tuner.restore, which does not resume a sweep (``--resume <sweep_id>`` does); on a Ctrl+C it
    also said it was checkpointing (press Ctrl+C to skip) and, for a trial stopped before its first result, that it
    found no metrics: lines beside the sweep's own one. Its other warnings still reach the user, and the filter goes
    when the search ends."""
    # Once Ray has started in this worker (another module's test), its "ray" logger stops propagating to the root
    # logger, where caplog listens.
    monkeypatch.setattr(logging.getLogger("ray"), "propagate", True)
    tune_logger, analysis_logger = (logging.getLogger(name) for name in ("ray.tune.tune", TUNES_ANALYSIS))
    with caplog.at_level(logging.WARNING, logger="ray.tune.tune"), caplog.at_level(logging.WARNING, TUNES_ANALYSIS):
        with without_tunes_restore_hint():
            tune_logger.warning(TUNES_STOP)
            analysis_logger.warning(TUNES_NO_METRICS)
            tune_logger.warning(TUNES_HINT)
            tune_logger.warning("Tune's other warnings still show")
        tune_logger.warning(TUNES_HINT)
    assert [record.getMessage() for record in caplog.records] == ["Tune's other warnings still show", TUNES_HINT]
