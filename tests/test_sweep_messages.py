"""What a sweep prints on Ctrl+C (unit tests: no Ray, no database)."""

from __future__ import annotations

import logging

import pytest

from training.sweep import _without_tunes_restore_hint

TUNES_HINT = (
    "Experiment has been interrupted, but the most recent state was saved.\n"
    'Resume experiment with: Tuner.restore(path="runs/sweep-x/tune/search-y", trainable=...)'
)


def test_tunes_restore_hint_is_hidden_the_sweeps_own_resume_line_is_the_one(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tune's hint names Tuner.restore, which does not resume a sweep (``--resume <sweep_id>`` does); its other
    warnings still reach the user, and the filter goes when the search ends."""
    # Once Ray has started in this worker (another module's test), its "ray" logger stops propagating to the root
    # logger, where caplog listens.
    monkeypatch.setattr(logging.getLogger("ray"), "propagate", True)
    tune_logger = logging.getLogger("ray.tune.tune")
    with caplog.at_level(logging.WARNING, logger="ray.tune.tune"):
        with _without_tunes_restore_hint():
            tune_logger.warning(TUNES_HINT)
            tune_logger.warning("Tune's other warnings still show")
        tune_logger.warning(TUNES_HINT)
    assert [record.getMessage() for record in caplog.records] == ["Tune's other warnings still show", TUNES_HINT]
