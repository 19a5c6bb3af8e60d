"""Benchmark: two fixed costs that every dbt build and every training run pays, each against the way it was paid
before, measured in one run.

1. Seeding the NYSE calendar (warehouse/seeds/xnys_sessions.csv, about 7,800 sessions; every `dbt build`,
   `dbt seed` and `make db-up` does it, and every model that reads the calendar waits for it): with the project's
   warehouse/macros/load_csv_rows.sql (the placeholder rendered once per seed) vs dbt's own default__load_csv_rows
   (a macro rendered for every value), in a copy of the project without that file.
2. Great Expectations' suite for the data contract (every training run, walk-forward and sweep checks the mart):
   filled first and handed to the context once, as training/contract.py does, vs added to the context first and
   saved with each expectation (how it was). Only the suite is built; validating it is the same either way.

Both are CPU work in this process (dbt and Great Expectations run in it), timed as this process's CPU time, best of
three, so that other work on the machine does not count.

    .venv/bin/python bench/bench_fixed_costs.py

Results are also written to bench/results/bench_fixed_costs_<time>.json.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import _common

from command_line import OneLineParser
from devtools import dbt_harness, scratch_database
from training.contract import ContractTerms, build_expectations, build_fold_expectations
from training.features import read_mart_schema
from warehouse_db import embedded

REPEATS = 3
SEED_MACRO = "warehouse/macros/load_csv_rows.sql"


def best_cpu_seconds(run: Callable[..., object], prepare: Callable[[], tuple] = tuple) -> float:
    """Least CPU time of this process over REPEATS runs of ``run``, each given what ``prepare`` returns (untimed)."""
    times = []
    for _ in range(REPEATS):
        arguments = prepare()
        started = time.process_time()
        run(*arguments)
        times.append(time.process_time() - started)
    return min(times)


def calendar_seed_seconds() -> tuple[float, float]:
    """(CPU seconds to seed the calendar with the project's macro, with dbt's own), each less an empty seed's."""
    cluster = embedded.start()
    work_dir = Path(tempfile.mkdtemp(prefix="bench_fixed_costs_"))
    settings = scratch_database.create_database(cluster, "bench_fixed_costs")
    try:
        dbt_harness.prepare_raw(settings)
        ours = dbt_harness.DbtProject(settings, work_dir / "ours")
        copy = dbt_harness.copy_project(work_dir / "project", {})
        (copy / SEED_MACRO).unlink()  # dbt falls back to its own default__load_csv_rows
        dbts = dbt_harness.DbtProject(settings, work_dir / "dbts", project_dir=copy)
        figures = []
        for project in (ours, dbts):
            project.run("seed", "--select", "known_missing_sessions", check=True)  # parses the project
            calendar = best_cpu_seconds(lambda p=project: p.run("seed", "--select", "xnys_sessions", check=True))
            empty = best_cpu_seconds(lambda p=project: p.run("seed", "--select", "known_missing_sessions", check=True))
            figures.append(calendar - empty)
        return figures[0], figures[1]
    finally:
        scratch_database.drop_database(settings)


def contract_suite_seconds() -> tuple[float, float, int]:
    """(CPU seconds to build the contract's suites filled then added once, added then saved per expectation, the
    number of expectations)."""
    from training.contract import quiet_ephemeral_gx_context

    schema = read_mart_schema()
    terms = ContractTerms(
        feature_names=tuple(schema.feature_names), target=schema.target, price_columns=schema.price_columns,
        min_sessions_per_split=60, min_purge_sessions=schema.target_horizon_sessions,
    )  # fmt: skip
    gx, _ = quiet_ephemeral_gx_context()

    def fresh_expectations() -> tuple[dict[str, list]]:  # an expectation belongs to one suite
        return ({"training_bars": build_expectations(terms), "walk_forward_folds": build_fold_expectations(terms)},)

    def filled_then_added(tables: dict[str, list]) -> None:
        context = gx.get_context(mode="ephemeral")
        for table, expectations in tables.items():
            suite = gx.ExpectationSuite(name=f"{table} contract")
            for expectation in expectations:
                suite.add_expectation(expectation)
            context.suites.add(suite)

    def added_then_saved_each(tables: dict[str, list]) -> None:
        context = gx.get_context(mode="ephemeral")
        for table, expectations in tables.items():
            suite = context.suites.add(gx.ExpectationSuite(name=f"{table} contract"))
            for expectation in expectations:
                suite.add_expectation(expectation)

    count = sum(len(expectations) for expectations in fresh_expectations()[0].values())
    return (
        best_cpu_seconds(filled_then_added, fresh_expectations),
        best_cpu_seconds(added_then_saved_each, fresh_expectations),
        count,
    )


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    seed_ours, seed_dbts = calendar_seed_seconds()
    suite_once, suite_each, expectations = contract_suite_seconds()
    print()
    print(f"{'fixed cost (CPU s, best of 3)':<58}{'now':>8}{'before':>9}{'before/now':>12}")
    print(f"{'seed the calendar (project macro vs dbt default)':<58}"
          f"{seed_ours:>8.2f}{seed_dbts:>9.2f}{seed_dbts / seed_ours:>11.1f}x")  # fmt: skip
    print(f"{f'contract suites, {expectations} expectations (saved once vs each)':<58}"
          f"{suite_once:>8.2f}{suite_each:>9.2f}{suite_each / suite_once:>11.1f}x")  # fmt: skip
    _common.write_results(
        "bench_fixed_costs",
        {
            "calendar_seed_cpu_s": {"project_macro": round(seed_ours, 3), "dbt_default": round(seed_dbts, 3)},
            "contract_suites_cpu_s": {
                "expectations": expectations,
                "filled_then_added": round(suite_once, 3),
                "saved_per_expectation": round(suite_each, 3),
            },
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
