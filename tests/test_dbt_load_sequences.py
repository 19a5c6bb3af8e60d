"""Months of loads in one fixed order through the real warehouse and real dbt (devtools.warehouse_months): after each
dbt command every incremental model and mart equals an independent pandas computation from raw, and at the end a
copy rebuilt with --full-refresh is identical to the incremental warehouse.

The long randomised run is a command (docs/warehouse.md, "Incremental builds over months of loads"):
``.venv/bin/python -m devtools.warehouse_months --sequences 50``. This test keeps one sequence that takes each kind
of event through the incremental paths, with as few dbt commands as that needs.
"""

from __future__ import annotations

import random
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from devtools import warehouse_months
from devtools.dbt_harness import ScratchSeries
from market_calendar import EXCHANGE_TZ

EVERY_KIND_OF_LOAD = [
    # A split takes effect with the next session: the load re-fetches SA's whole history in the new units.
    ("split", "SA", 2.0),
    # A reverse split on a day nobody loads (two sessions later): the week's load re-adjusts SA again.
    ("split", "SA", 0.2, 2),
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
    # A CSV file brings SC's next session (and re-delivers its last two), another one its older history.
    ("csv", "SC", 2),
    ("csv_backfill", "SC", 5),
    # A CSV file with a bar on a weekend or holiday is refused whole: in raw it would fail every later build.
    ("csv_bad_day", "SC"),
    # SA stops trading while on the watchlist: its loads fail from now on, through a skipped week over a holiday.
    ("delist", "SA"),
    ("skip_over", "holiday"),
]


def test_every_kind_of_load_keeps_the_incremental_warehouse_equal_to_a_full_refresh(
    dbt_series: ScratchSeries,
) -> None:
    outcome = warehouse_months.run_sequence(EVERY_KIND_OF_LOAD, cluster=dbt_series.cluster, series=dbt_series, seed=3)
    assert not outcome.problems, "\n".join(outcome.problems)
    assert outcome.builds == 3  # first build, the dbt run, the final build (the full refresh runs on a copy)
    # The incremental paths were taken: each command rebuilt the bars that landed since the one before, not all
    # of them (SA's re-adjusted history is the largest part).
    assert all(0 < rebuilt < 400 for rebuilt in outcome.bars_rebuilt), outcome.bars_rebuilt


def test_a_ticker_change_fails_the_build_until_the_old_tickers_bars_are_deleted(
    dbt_series: ScratchSeries,
) -> None:
    """SA becomes SAR with the next session (as FB became META). The load lands SAR's whole window under SA's contract
    id; the build fails int_bars_deduplicated_one_symbol_per_contract, the sequence deletes SA's bars as docs/ingest.md
    says and rebuilds with --full-refresh, and from then on (a split of the company, another load) the incremental
    warehouse equals the reference and a full refresh."""
    events = [("rename", "SA", "SAR"), ("advance", 1), ("build",), ("split", "SA", 2.0), ("advance", 1)]
    outcome = warehouse_months.run_sequence(events, cluster=dbt_series.cluster, series=dbt_series, seed=5)
    assert not outcome.problems, "\n".join(outcome.problems)
    assert outcome.ticker_change_clean_ups == 1
    assert outcome.builds == 4  # first build, the failing build, its --full-refresh after the clean-up, the final build


def test_a_failing_sequence_shrinks_to_the_events_that_matter() -> None:
    def fails(events: list[warehouse_months.Event]) -> bool:  # fails when a split is followed by a build
        kinds = [event[0] for event in events]
        return "split" in kinds and "build" in kinds[kinds.index("split") :]

    events = warehouse_months.random_events(random.Random(4), 40) + [("split", "SA", 2.0), ("build",)]
    shrunk = warehouse_months.shrink(events, fails, budget_seconds=60)
    assert fails(shrunk) and len(shrunk) == 2 and shrunk[0][0] == "split" and shrunk[1] == ("build",)


def test_the_reference_keeps_the_latest_final_version_of_each_bar() -> None:
    landed = datetime(2024, 3, 16, tzinfo=UTC)
    versions = [  # (session, close, ingested_at)
        (date(2024, 3, 15), 100.0, landed),
        (date(2024, 3, 15), 101.0, landed + timedelta(days=1)),  # a revision
        (date(2024, 3, 18), 99.0, datetime(2024, 3, 18, 11, 0, tzinfo=EXCHANGE_TZ)),  # the session so far
    ]
    raw = pd.DataFrame(
        [{"symbol": "SA", "session_date": session, "open": 100.0, "high": 102.0, "low": 98.0, "close": close,
          "volume": 1e6, "ingested_at": ingested, "load_id": uuid.uuid4(), "batch_id": uuid.uuid4()}
         for session, close, ingested in versions]
    )  # fmt: skip
    bars, mart = warehouse_months.reference_marts(raw, ["log_return_1"])
    assert bars[["session_date", "close"]].values.tolist() == [[date(2024, 3, 15), 101.0]]
    assert mart.empty  # one session is all warm-up


def test_a_recorded_halt_lets_every_build_through_and_symbol_coverage_counts_it(
    dbt_series: ScratchSeries,
) -> None:
    """SB is halted all day on the next session: no source ever serves that bar, and the administrator records it in
    warehouse/seeds/known_missing_sessions.csv. The next dbt command reloads the seed (dbt seed before a plain dbt
    run, then dbt build with the seeds), no_missing_sessions lets the gap through at threshold 0, the mart and
    symbol_coverage.sessions_known_missing equal the reference, and a second halt, recorded while the first is in the
    seed, reloads it again (the seed's rows are replaced in place)."""
    events = [("halt", "SB"), ("advance", 3), ("run",), ("advance", 1), ("halt", "SA"), ("advance", 2), ("build",),
              ("csv_bad_day", "SA")]  # fmt: skip
    outcome = warehouse_months.run_sequence(
        events, cluster=dbt_series.cluster, series=dbt_series, seed=11, missing_sessions_threshold=0
    )
    assert not outcome.problems, "\n".join(outcome.problems)
    assert outcome.builds == 4  # first build, the dbt run, the dbt build, the final build


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--replay", "nonsense"], "argument --replay: expected a Python list of events such as"),
        (["--replay", "[('bogus',)]"], "argument --replay: unknown event ('bogus',): an event is a tuple (kind,"),
        (["--replay", "[('advance', 5)"], "argument --replay: expected a Python list of events"),
        (["--replay", "[]"], "argument --replay: expected a non-empty list of events"),
        (["--sequences", "0"], "argument --sequences: expected a whole number >= 1, got '0'"),
        (["--events", "-1"], "argument --events: expected a whole number >= 1, got '-1'"),
    ],
)
def test_warehouse_months_refuses_a_bad_argument_in_one_line_before_anything_starts(argv, said, capsys) -> None:
    """docs/warehouse.md tells users to run it with --replay: a replay that was no Python literal ended in a traceback,
    an unknown event in one mid-sequence (after starting the warehouse and a first build), and --sequences 0 or -1 ran
    nothing and said '0 of 0 sequences failed' (status 0)."""
    with pytest.raises(SystemExit) as exit_info:
        warehouse_months.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert said in err, err
    assert "Traceback" not in err


def test_every_event_kind_the_sequences_apply_is_one_replay_accepts() -> None:
    """EVENT_KINDS, which --replay is checked against, holds every kind run_sequence and Loader.apply handle."""
    source = Path(warehouse_months.__file__).read_text(encoding="utf-8")
    handled = set(re.findall(r'(?:kind|event\[0\]) == "(\w+)"', source))
    for group in re.findall(r"kind in \(([^)]*)\)", source):
        handled |= set(re.findall(r'"(\w+)"', group))
    assert handled == warehouse_months.EVENT_KINDS
    drawn = {event[0] for seed in range(20) for event in warehouse_months.random_events(random.Random(seed), 40)}
    assert drawn <= warehouse_months.EVENT_KINDS
