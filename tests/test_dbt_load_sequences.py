"""Months of loads in one fixed order through the real warehouse and real dbt (devtools.warehouse_months): after each
dbt command every incremental model and mart equals an independent pandas computation from raw, and at the end a
copy rebuilt with --full-refresh is identical to the incremental warehouse.

The long randomised run is a command (docs/warehouse.md, "Incremental builds over months of loads"):
``.venv/bin/python -m devtools.warehouse_months --sequences 50``. This test keeps one sequence that takes each kind
of event through the incremental paths, with as few dbt commands as that needs.
"""

from __future__ import annotations

from devtools import warehouse_months
from warehouse_db.settings import ConnectionSettings

EVERY_KIND_OF_LOAD = [
    # A split takes effect with the next session: the load re-fetches SA's whole history in the new units.
    ("split", "SA", 2.0),
    ("advance", 1, 0),
    # A load during the next session lands its bar so far; SB's answer lacks a session.
    ("partial",),
    ("hole", "SB"),
    ("advance", 5, 0),
    # dbt run runs no data test: the hole reaches the mart, and is filled in the middle of SB's series below.
    ("run",),
    # A load committed after the build read raw, stamped before it started; its overlap brings SB's missing session.
    ("late",),
    ("advance", 1),
    ("backfill", "SB", 10),
    ("revise", "SA", 3),
    ("duplicate",),
    ("add", "SC"),
    ("remove", "SB"),
    ("advance", 1, 0),
]


def test_every_kind_of_load_keeps_the_incremental_warehouse_equal_to_a_full_refresh(
    embedded_cluster: ConnectionSettings,
) -> None:
    outcome = warehouse_months.run_sequence(EVERY_KIND_OF_LOAD, cluster=embedded_cluster, seed=3)
    assert not outcome.problems, "\n".join(outcome.problems)
    assert outcome.builds == 3  # first build, the dbt run, the final build (the full refresh runs on a copy)
    # The incremental paths were taken: each command rebuilt the bars that landed since the one before, not all
    # of them (SA's re-adjusted history is the largest part).
    assert all(0 < rebuilt < 400 for rebuilt in outcome.bars_rebuilt), outcome.bars_rebuilt
