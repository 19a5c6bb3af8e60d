"""The dbt project on clean synthetic bars: builds green, features are exact and point-in-time, the mart keeps
every session after the warm-up, the walk-forward folds keep their rules (and their data tests catch broken folds),
incremental builds equal a full refresh, and only the marts are visible to trainer and analyst.

One database is built per module (embedded cluster) and copied (CREATE DATABASE ... TEMPLATE) for the
tests that change data, so each test starts from the same clean build.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest
import yaml

from devtools import dbt_harness, scratch_database, synthetic_bars
from devtools.documented_tables import documented_table
from devtools.reference_features import reference_features
from devtools.synthetic_mart import lay_out_folds, synthetic_mart, write_mart
from market_calendar import sessions_in_range
from training.features import KEY_COLUMNS, read_mart_schema
from training.folds import SPLITS, Fold
from training.mart import read_mart
from warehouse_db import connect, schemas
from warehouse_db.provision import provision
from warehouse_db.settings import REPO_ROOT, ConnectionSettings

MART_YAML = REPO_ROOT / "warehouse/models/marts/training_bars.yml"
MART_SCHEMA = read_mart_schema(MART_YAML)
FEATURES = MART_SCHEMA.feature_names
MART_COLUMNS = [*KEY_COLUMNS, *MART_SCHEMA.price_columns, *FEATURES, MART_SCHEMA.target, "dbt_loaded_at"]
SYMBOLS = ["SA", "SB", "SC", "SD"]
START, END = "2019-07-01", "2024-06-30"  # 5 years: the default walk-forward folds all fit
WARMUP = int(dbt_harness.dbt_project_var("warmup_sessions"))
TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def cluster(embedded_cluster: ConnectionSettings) -> ConnectionSettings:
    return embedded_cluster


@pytest.fixture(scope="module")
def base(cluster: ConnectionSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A database with clean bars for SYMBOLS plus 'brk.b' (normalised to BRK B), built from scratch."""
    settings = scratch_database.create_database(cluster, "test_dbt_build")
    dbt_harness.prepare_raw(settings)
    frame = synthetic_bars.generate_bars(synthetic_bars.SyntheticConfig([*SYMBOLS, "brk.b "], START, END, seed=11))
    with connect(settings) as conn:
        synthetic_bars.copy_bars(conn, frame)
    project = dbt_harness.DbtProject(settings, tmp_path_factory.mktemp("dbt_base"))
    result = project.run("build")
    yield {"settings": settings, "result": result, "frame": frame}
    scratch_database.drop_database(settings)


@pytest.fixture
def copy_of_base(base: dict, dbt_series: dbt_harness.ScratchSeries) -> Iterator[dbt_harness.DbtProject]:
    with dbt_series.database(template=base["settings"].dbname) as settings:
        yield dbt_series.project(settings)


def query(settings: ConnectionSettings, sql: str, params: tuple = ()) -> pd.DataFrame:
    with connect(settings) as conn:
        cursor = conn.execute(sql, params)
        columns = [column.name for column in cursor.description]
        return pd.DataFrame(cursor.fetchall(), columns=columns)


def test_build_is_green(base: dict) -> None:
    result: dbt_harness.DbtResult = base["result"]
    assert result.returncode == 0, result.output[-4000:]
    statuses = result.statuses()
    assert statuses, "dbt wrote no run_results.json"
    assert set(statuses.values()) <= {"success", "pass", "no-op"}, statuses  # no-op: the exposure
    for model in ("stg_ibkr__bars", "int_bars_deduplicated", "int_bars_featurized", "training_bars", "symbol_coverage"):
        assert statuses[model] == "success"


def test_custom_schemas_are_used_verbatim(base: dict) -> None:
    frame = query(
        base["settings"],
        "select table_schema, table_name from information_schema.tables"
        " where table_schema in ('staging', 'intermediate', 'marts', 'seeds')",
    )
    placed = set(map(tuple, frame.to_numpy()))
    assert ("staging", "stg_ibkr__bars") in placed
    assert ("intermediate", "int_bars_featurized") in placed
    assert ("marts", "training_bars") in placed
    assert ("seeds", "xnys_sessions") in placed
    assert ("seeds", "known_missing_sessions") in placed
    assert ("seeds", "verified_price_moves") in placed


def test_trainer_sees_only_marts(base: dict) -> None:
    settings = base["settings"]
    for relation in (
        "raw.ibkr_bars",
        "staging.stg_ibkr__bars",
        "intermediate.int_bars_featurized",
        "seeds.xnys_sessions",
        "seeds.known_missing_sessions",
        "seeds.verified_price_moves",
    ):
        with connect(settings, role="trainer") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f"select 1 from {relation} limit 1")
    for role in ("trainer", "analyst"):
        with connect(settings, role=role) as conn:
            for mart in ("training_bars", "symbol_coverage", "walk_forward_plan", "walk_forward_folds",
                         "walk_forward_fold_rows", "bar_corrections"):  # fmt: skip
                conn.execute(f"select * from marts.{mart} limit 1").fetchall()
            assert conn.execute("select count(*) from marts.training_bars").fetchone()[0] > 0


def test_every_documented_query_of_the_marts_runs_as_analyst(base: dict) -> None:
    """The example queries of README.md and docs/analysts.md that read only the marts, as an analyst would paste them
    (those that read the ml tables: tests/test_training_run.py)."""
    statements = [
        (page, statement)
        for page in ("README.md", "docs/analysts.md")
        for block in re.findall(r"```sql\n(.*?)```", (REPO_ROOT / page).read_text(encoding="utf-8"), re.DOTALL)
        for statement in block.split("\n\n")
        if "marts." in statement and "ml." not in statement
    ]
    assert len(statements) >= 4
    for page, statement in statements:
        with connect(base["settings"], role="analyst") as conn:
            try:
                conn.execute(statement).fetchall()
            except psycopg.Error as error:
                pytest.fail(f"{page}: {error}\n{statement}")


def test_mart_columns_and_yaml_meta(base: dict) -> None:
    frame = query(
        base["settings"],
        "select column_name, data_type from information_schema.columns"
        " where table_schema = 'marts' and table_name = 'training_bars' order by ordinal_position",
    )
    assert frame["column_name"].tolist() == MART_COLUMNS
    types = dict(zip(frame["column_name"], frame["data_type"], strict=True))
    assert all(types[column] == "double precision" for column in [*FEATURES, "target_log_return_next"])

    spec = yaml.safe_load((REPO_ROOT / "warehouse/models/marts/training_bars.yml").read_text(encoding="utf-8"))
    columns = spec["models"][0]["columns"]
    assert [c["name"] for c in columns] == MART_COLUMNS, "every mart column is described, in order"
    assert all(c.get("description") for c in columns)
    # Every column says what it is to the training job, which reads keys, prices, features and target by meta.role.
    assert {c["name"]: c.get("meta", {}).get("role") for c in columns} == {
        **dict.fromkeys(KEY_COLUMNS, "key"), **dict.fromkeys(MART_SCHEMA.price_columns, "price"),
        **dict.fromkeys(FEATURES, "feature"), MART_SCHEMA.target: "target", "dbt_loaded_at": "lineage",
    }  # fmt: skip
    features = [c for c in columns if c.get("meta", {}).get("role") == "feature"]
    assert [c["name"] for c in features] == FEATURES
    assert all(isinstance(c["meta"]["lookback_sessions"], int) for c in features)
    assert [c["name"] for c in columns if c.get("meta", {}).get("role") == "target"] == ["target_log_return_next"]
    # The warm-up (dbt var) is the longest feature lookback (YAML): no mart row has a feature still filling up.
    assert read_mart_schema(MART_YAML).longest_lookback == WARMUP


def test_every_model_has_a_yaml_beside_it_describing_each_built_column(base: dict) -> None:
    """Each model's SQL has a YAML of the same name beside it that describes the model and every column of the
    relation dbt built (no more, no fewer: a renamed or added column must be documented where the model is)."""
    built = query(
        base["settings"],
        "select table_schema, table_name, column_name from information_schema.columns"
        " where table_schema in ('staging', 'intermediate', 'marts')",
    )
    problems = []
    for sql_path in sorted((REPO_ROOT / "warehouse/models").glob("**/*.sql")):
        name, schema, yaml_path = sql_path.stem, sql_path.parent.name, sql_path.with_suffix(".yml")
        spec = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) if yaml_path.exists() else {}
        entries = [model for model in spec.get("models") or [] if model.get("name") == name]
        if not entries or not entries[0].get("description"):
            problems.append(f"{name}: no description in {yaml_path.name} beside it")
            continue
        described = {column["name"]: column.get("description") for column in entries[0].get("columns") or []}
        columns = set(built.loc[(built["table_schema"] == schema) & (built["table_name"] == name), "column_name"])
        if not columns:
            problems.append(f"{name}: dbt built no relation {schema}.{name}")
        if set(described) != columns:
            problems.append(
                f"{name}: undescribed {sorted(columns - set(described))}, not built {sorted(set(described) - columns)}"
            )
        if empty := [column for column, description in described.items() if not description]:
            problems.append(f"{name}: columns without a description {empty}")
    assert not problems, "\n".join(problems)


def test_the_documented_walk_forward_defaults_are_dbt_project_vars() -> None:
    """docs/warehouse.md's table of walk-forward vars, its worked example and the README's summary hold
    dbt_project.yml's defaults (the models' YAML names the vars or renders them, so the docs are the one other place
    their values appear)."""
    rows = [line.split("|")[1:3] for line in documented_table("dbt var").splitlines()[2:]]
    documented = {name.strip().strip("`"): value.strip() for name, value in rows}
    assert documented == {name: str(dbt_harness.dbt_project_var(name)) for name in documented}
    var = {name: int(value) for name, value in documented.items() if value.isdigit()}
    needed = (var["walk_forward_folds"] * var["walk_forward_test_sessions"]
              + 2 * (var["purge_sessions"] + var["embargo_sessions"])
              + var["walk_forward_validation_sessions"] + var["walk_forward_min_train_sessions"])  # fmt: skip
    page = (REPO_ROOT / "docs/warehouse.md").read_text(encoding="utf-8")
    assert f"= **{needed} sessions of the mart**" in page
    assert (
        f"plus the {var['warmup_sessions']}-session warm-up before them: {needed + var['warmup_sessions']} NYSE" in page
    )
    # The README's front-door summary restates the defaults in prose: it must say the same.
    readme = " ".join((REPO_ROOT / "README.md").read_text(encoding="utf-8").split())
    for claim in (
        f"by default {var['walk_forward_folds']} folds whose {var['walk_forward_test_sessions']}-session test splits",
        f"validates on the {var['walk_forward_validation_sessions']} sessions before its test split",
        f"a **purge** of {var['purge_sessions']} session",
        f"**embargo** of {var['embargo_sessions']} sessions",
    ):
        assert claim in readme, f"README.md does not say: {claim}"


def test_every_other_feature_list_derives_from_the_mart_yaml() -> None:
    """The YAML is the one list: the dbt macro reads it from dbt's graph, the training job and the synthetic mart
    through training.features; the pandas reference computes exactly those features; the docs table lists them."""
    macro = (REPO_ROOT / "warehouse/macros/training_features.sql").read_text(encoding="utf-8")
    assert "meta" in macro and not any(f"'{feature}'" in macro for feature in FEATURES), "the macro lists no feature"
    bars = synthetic_bars.generate_bars(synthetic_bars.SyntheticConfig(["SA"], "2024-01-01", "2024-03-01"))
    computed = list(reference_features(bars))
    assert computed == [*FEATURES, "target_log_return_next"], (
        f"devtools/reference_features.py must compute the YAML's features in its order: it lacks "
        f"{[f for f in FEATURES if f not in computed]}, has extra {[c for c in computed if c not in {*FEATURES, 'target_log_return_next'}]}"
    )
    tables = [documented_features(path) for path in (REPO_ROOT / "README.md", *sorted(REPO_ROOT.glob("docs/*.md")))]
    listed = [names for names in tables if names]
    assert len(listed) == 1, "exactly one page carries the feature table (| feature | definition |)"
    assert listed[0] == FEATURES, "the documented features are the YAML's, in its order"


def documented_features(path: Path) -> list[str]:
    """Feature names in the first column of the markdown table headed `| feature | definition |`, in order."""
    names: list[str] = []
    in_table = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.replace(" ", "").startswith("|feature|definition|"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        if in_table and not set(line) <= set("|-: "):
            names += [name.strip(" `") for name in line.split("|")[1].split(",")]
    return names


def test_the_mart_keeps_every_session_after_the_warmup(base: dict) -> None:
    settings = base["settings"]
    mart = query(settings, "select * from marts.training_bars")
    features = query(settings, "select * from intermediate.int_bars_featurized")
    assert set(mart["symbol"]) == {*SYMBOLS, "BRK B"}
    assert not mart[[c for c in MART_COLUMNS if c != "target_log_return_next"]].isna().any().any()
    # Every featurized bar after the warm-up with all its features is a mart row, and no other row is.
    expected = features[(features["session_number"] > WARMUP) & features[FEATURES].notna().all(axis=1)]
    assert sorted(zip(mart["symbol"], mart["session_date"], strict=True)) == sorted(
        zip(expected["symbol"], expected["session_date"], strict=True)
    )
    joined = mart.merge(features[["symbol", "session_date", "session_number"]], on=["symbol", "session_date"])
    assert joined["session_number"].min() == WARMUP + 1, "the first warmup_sessions bars of each symbol are warm-up"
    # Only each symbol's last session lacks its target (the next session has not happened yet).
    last = mart.groupby("symbol")["session_date"].transform("max")
    assert mart.loc[mart["session_date"] == last, "target_log_return_next"].isna().all()
    assert mart.loc[mart["session_date"] < last, "target_log_return_next"].notna().all()


def fold_tuples(settings: ConnectionSettings) -> tuple[list[Fold], pd.DataFrame]:
    rows = query(settings, "select * from marts.walk_forward_folds order by fold_id")
    return [Fold.from_row(row) for row in rows.to_dict("records")], rows


def test_default_folds_on_five_years(base: dict) -> None:
    """dbt's defaults on 5 years of bars: 4 folds of 126 test sessions tiling the latest history, expanding train
    splits from the first session, purge + embargo sessions between the splits, and no test session in any fold's
    train or validation rows (checked here in Python against the exchange calendar, independently of the SQL)."""
    settings = base["settings"]
    plan = query(settings, "select * from marts.walk_forward_plan").iloc[0]
    folds, rows = fold_tuples(settings)
    mart = query(settings, "select symbol, session_date from marts.training_bars")
    sessions = list(sessions_in_range(mart["session_date"].min(), mart["session_date"].max()).date)
    index = {session: position for position, session in enumerate(sessions)}

    assert (plan["folds_planned"], plan["folds_laid_out"], len(folds)) == (4, 4, 4)
    assert plan["history_sessions"] == len(sessions) and plan["sessions_needed"] <= len(sessions)
    assert [fold.fold_id for fold in folds] == [1, 2, 3, 4] and set(rows["scheme"]) == {"expanding"}
    assert folds[-1].test.end == sessions[-1]
    for fold, row in zip(folds, rows.to_dict("records"), strict=True):
        assert fold.train.start == sessions[0], "expanding: every fold trains from the first session"
        for split in SPLITS:
            assert row[f"{split}_sessions"] == index[fold.dates(split).end] - index[fold.dates(split).start] + 1
        assert row["test_sessions"] == 126 >= 60 and row["validation_sessions"] == 63
        gap = fold.purge_sessions + fold.embargo_sessions
        assert (fold.purge_sessions, fold.embargo_sessions) == (1, 5)
        assert index[fold.validation.start] - index[fold.train.end] - 1 == gap
        assert index[fold.test.start] - index[fold.validation.end] - 1 == gap
    for earlier, later in zip(folds, folds[1:], strict=False):
        assert index[later.test.start] == index[earlier.test.end] + 1, "test splits tile the later history"

    # The analyst view holds exactly the rows Fold.rows selects, and a fold's test rows are in none of its others.
    view = query(settings, "select fold_id, split, symbol, session_date from marts.walk_forward_fold_rows")
    for fold in folds:
        for split in SPLITS:
            from_view = view[(view["fold_id"] == fold.fold_id) & (view["split"] == split)]
            selected = fold.rows(mart, split)
            assert sorted(zip(from_view["symbol"], from_view["session_date"], strict=True)) == sorted(
                zip(selected["symbol"], selected["session_date"], strict=True)
            )
        of_fold = view[view["fold_id"] == fold.fold_id]
        test_sessions = set(of_fold.loc[of_fold["split"] == "test", "session_date"])
        assert test_sessions and not test_sessions & set(of_fold.loc[of_fold["split"] != "test", "session_date"])
    # The synthetic mart's fold double places the same folds.
    assert lay_out_folds(mart["session_date"], folds=4, test_sessions=126, validation_sessions=63) == tuple(folds)


def table_columns(settings: ConnectionSettings, table: str) -> list[tuple[str, str]]:
    frame = query(
        settings,
        "select column_name, data_type from information_schema.columns"
        " where table_schema = 'marts' and table_name = %s order by ordinal_position",
        (table,),
    )
    return [(name, kind) for name, kind in frame.to_numpy() if name != "dbt_loaded_at"]


def test_the_synthetic_mart_has_the_shape_dbt_builds(base: dict, cluster: ConnectionSettings) -> None:
    """Training tests run on devtools.synthetic_mart instead of dbt: its tables have dbt's columns and types."""
    settings = scratch_database.create_database(cluster, "test_synthetic_shape")
    try:
        with connect(settings) as conn:
            provision(conn)
            write_mart(conn, synthetic_mart(n_symbols=2, n_sessions=300))
        for table in ("training_bars", "walk_forward_folds", "walk_forward_plan"):
            assert table_columns(settings, table) == table_columns(base["settings"], table), table
    finally:
        scratch_database.drop_database(settings)


def test_fewer_folds_than_planned_and_the_rolling_scheme(copy_of_base: dbt_harness.DbtProject) -> None:
    """10 planned folds on 5 years: the 6 that fit are laid out and the plan's data test warns. Rolling: every
    train split holds walk_forward_train_sessions sessions at most and starts later for later folds."""
    result = copy_of_base.run(
        "build", "--select", "walk_forward_plan+", "--vars",
        "{walk_forward_folds: 10, walk_forward_scheme: rolling, walk_forward_train_sessions: 400}",
    )  # fmt: skip
    assert result.returncode == 0, result.output[-4000:]
    assert result.statuses()["walk_forward_plan_history_holds_every_planned_fold"] == "warn"
    plan = query(copy_of_base.settings, "select * from marts.walk_forward_plan").iloc[0]
    folds, rows = fold_tuples(copy_of_base.settings)
    # (history - 2 gaps - validation - shortest train) // test = (1208 - 12 - 63 - 252) // 126 = 6
    assert (plan["folds_planned"], plan["folds_laid_out"], len(folds)) == (10, 6, 6)
    assert plan["history_sessions"] == 1208 and plan["train_sessions"] == 400
    assert set(rows["scheme"]) == {"rolling"}
    assert rows["train_sessions"].tolist()[-1] == 400 and rows["train_sessions"].between(252, 400).all()
    assert [fold.train.start for fold in folds] == sorted(fold.train.start for fold in folds)
    assert folds[0].train.start < folds[-1].train.start


def test_fold_data_tests_fail_on_broken_folds(copy_of_base: dbt_harness.DbtProject) -> None:
    """Each data test on the folds (and on the mart's target) fails on the breakage it exists to catch, naming
    the fold: the tables of a clean build are broken by hand, then `dbt test` runs on them."""
    settings = copy_of_base.settings
    folds, _ = fold_tuples(settings)
    sessions = list(sessions_in_range(folds[0].train.start, folds[-1].test.end).date)
    index = {session: position for position, session in enumerate(sessions)}
    fold3_train_end = sessions[index[folds[2].train.end] + 3]  # 3 sessions later: the gap shrinks to 3 < 1 + 5
    fold4_test_start = sessions[index[folds[3].test.start] + 1]  # 1 session later: a hole between test splits
    fold1_validation_end = sessions[index[folds[0].validation.end] + 2]  # 2 later: 4 < 1 + 5 sessions before test
    breakages = {
        # train ends before it starts (with a consistent session count of 0): only the order is broken
        "walk_forward_folds_splits_in_order": (1, "update {f} set train_start = train_end + 1, train_sessions = 0 "
                                                  "where fold_id = 1"),
        "walk_forward_folds_purge_covers_the_target_horizon": (2, "update {f} set purge_sessions = 0, "
                                                                  "embargo_sessions = 6 where fold_id = 2"),
        "walk_forward_folds_validation_sessions_counted": (
            2, "update {f} set validation_sessions = validation_sessions + 1 where fold_id = 2"),
        "walk_forward_folds_gap_before_validation": (
            3, f"update {{f}} set train_end = '{fold3_train_end}', train_sessions = train_sessions + 3 "
               "where fold_id = 3"),
        "walk_forward_folds_gap_before_test": (
            1, f"update {{f}} set validation_end = '{fold1_validation_end}', "
               "validation_sessions = validation_sessions + 2 where fold_id = 1"),
        "walk_forward_folds_train_sessions_counted": (4, "update {f} set train_sessions = 0 where fold_id = 4"),
        "walk_forward_folds_test_sessions_counted": (3, "update {f} set test_sessions = 125 where fold_id = 3"),
        "walk_forward_folds_test_ranges_tile": (
            4, f"update {{f}} set test_start = '{fold4_test_start}', test_sessions = test_sessions - 1 "
               "where fold_id = 4"),
    }  # fmt: skip
    with connect(settings) as conn:
        for _, statement in breakages.values():
            conn.execute(statement.format(f="marts.walk_forward_folds"))
        conn.execute("update marts.walk_forward_plan set sessions_needed = sessions_needed + 1")
        conn.execute(
            "update marts.training_bars set target_log_return_next = null "
            "where symbol = 'SA' and session_date = (select min(session_date) from marts.training_bars)"
        )
    result = copy_of_base.run(
        "test", "--select", "walk_forward_folds walk_forward_plan training_bars", "--store-failures"
    )
    failed = result.failed()
    assert failed == {*breakages, "walk_forward_plan_sizes_are_consistent",
                      "training_bars_target_null_only_on_last_session"}, result.output[-3000:]  # fmt: skip
    for test, (fold_id, _) in breakages.items():
        assert result.by_name()[test]["failures"] == 1, test
        failing = query(settings, f'select * from dbt_test__audit."{test}"')
        named = failing["fold_id"] if "fold_id" in failing else failing["ordinal"]  # ranges_tile: the later fold
        assert named.tolist() == [fold_id], test
    target = query(settings, 'select symbol from dbt_test__audit."training_bars_target_null_only_on_last_session"')
    assert target["symbol"].tolist() == ["SA"]


def test_model_data_tests_fail_on_broken_rows(copy_of_base: dbt_harness.DbtProject) -> None:
    """The data tests on the deduplicated bars, the features, the mart, the fold rows, the coverage and the
    corrections each fail on the row they exist to catch. Clean rows cannot break these invariants, so the relations of a clean build are broken
    by hand (a view becomes a table of its rows first; a unique index goes), then `dbt test` runs on them."""
    settings = copy_of_base.settings
    first, last = "(select min(session_date) from {table})", "(select max(session_date) from {table})"
    breakages = {
        "int_bars_deduplicated_one_row_per_bar": (
            "SA", f"insert into {{table}} select * from {{table}} where symbol = 'SA' and session_date = {last}"),
        "int_bars_featurized_rsi_in_range": (
            "SA", f"update {{table}} set rsi_14 = 100.5 where symbol = 'SA' and session_date = {last}"),
        "int_bars_featurized_non_negative_dispersion": (
            "SB", f"update {{table}} set realized_vol_20 = -0.01 where symbol = 'SB' and session_date = {last}"),
        "int_bars_featurized_one_row_per_bar": (
            "SC", f"insert into {{table}} select * from {{table}} where symbol = 'SC' and session_date = {last}"),
        # A row an earlier release computed and no later build recomputed (its volume z-score of 20 equal volumes).
        "int_bars_featurized_features_present_after_warm_up": (
            "SD", f"update {{table}} set volume_zscore_20 = null where symbol = 'SD' and session_date = {last}"),
        "training_bars_one_row_per_symbol_session": (  # not the last session: its null target may appear once
            "SD", f"insert into {{table}} select * from {{table}} where symbol = 'SD' and session_date = {first}"),
        "walk_forward_fold_rows_one_split_per_fold_row": (
            "SA", "insert into {table} select * from {table} where symbol = 'SA' and fold_id = 1 and split = 'test' "
                  "order by session_date limit 1"),
        "symbol_coverage_counts_add_up": ("SB", "update {table} set sessions_missing = -1 where symbol = 'SB'"),
        "symbol_coverage_one_row_per_series": ("SC", "insert into {table} select * from {table} where symbol = 'SC'"),
        "int_bar_corrections_at_least_two_versions": (
            "SD", "insert into {table} (symbol, distinct_version_count) values ('SD', 1)"),
    }  # fmt: skip
    tables = {
        "int_bars_deduplicated": "intermediate.int_bars_deduplicated",
        "int_bars_featurized": "intermediate.int_bars_featurized",
        "training_bars": "marts.training_bars",
        "walk_forward_fold_rows": "marts.walk_forward_fold_rows",
        "symbol_coverage": "marts.symbol_coverage",
        "int_bar_corrections": "intermediate.int_bar_corrections",
    }
    with connect(settings) as conn:
        conn.execute(f"set role {schemas.TRANSFORMER_ROLE}")  # dbt reads (and owns) the relations as transformer
        for name in ("walk_forward_fold_rows", "symbol_coverage", "int_bar_corrections"):
            view = tables[name]
            conn.execute(f"create table {view}_rows as select * from {view}")
            conn.execute(f"drop view {view} cascade")
            conn.execute(f"alter table {view}_rows rename to {name}")
        unique_indexes = conn.execute(
            "select quote_ident(schemaname) || '.' || quote_ident(indexname) from pg_indexes "
            "where indexdef like 'CREATE UNIQUE INDEX%%' "
            "and schemaname || '.' || tablename in "
            "('intermediate.int_bars_deduplicated', 'intermediate.int_bars_featurized', 'marts.training_bars')"
        ).fetchall()
        assert len(unique_indexes) == 3
        for (index,) in unique_indexes:
            conn.execute(f"drop index {index}")
        for test, (_, statement) in breakages.items():
            model = next(name for name in tables if test.startswith(name))
            conn.execute(statement.format(table=tables[model]))
    result = copy_of_base.run("test", "--select", " ".join(tables), "--exclude", "test_type:unit", "--store-failures")
    assert result.failed() == set(breakages), result.output[-3000:]
    for test, (symbol, _) in breakages.items():
        assert result.by_name()[test]["failures"] == 1, test
        failing = query(settings, f'select * from dbt_test__audit."{test}"')
        assert failing["symbol"].tolist() == [symbol], test
    missing = query(
        settings, 'select missing_features from dbt_test__audit."int_bars_featurized_features_present_after_warm_up"'
    )
    assert missing["missing_features"].tolist() == ["volume_zscore_20"]


def assert_features_match(computed: pd.DataFrame, bars: pd.DataFrame) -> int:
    checked = 0
    for symbol, symbol_bars in bars.groupby("symbol"):
        ordered = symbol_bars.sort_values("session_date").reset_index(drop=True)
        expected = reference_features(ordered).assign(session_date=ordered["session_date"])
        actual = computed[computed["symbol"] == symbol].sort_values("session_date").reset_index(drop=True)
        assert actual["session_date"].tolist() == expected["session_date"].tolist()
        for column in [*FEATURES, "target_log_return_next"]:
            got, want = actual[column].astype(float).to_numpy(), expected[column].to_numpy()
            assert np.array_equal(np.isnan(got), np.isnan(want)), f"{symbol} {column}: null pattern differs"
            np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE, equal_nan=True, err_msg=f"{symbol} {column}")
            checked += int((~np.isnan(got)).sum())
    return checked


def test_features_match_an_independent_pandas_computation(base: dict) -> None:
    settings = base["settings"]
    bars = query(
        settings, "select symbol, session_date, open, high, low, close, volume from intermediate.int_bars_deduplicated"
    )
    computed = query(settings, "select * from intermediate.int_bars_featurized")
    assert assert_features_match(computed, bars) > 10_000
    # ...and the mart holds exactly those values.
    mart = query(settings, "select * from marts.training_bars")
    merged = mart.merge(computed, on=["symbol", "session_date"], suffixes=("", "_features"))
    assert len(merged) == len(mart)
    for column in [*FEATURES, "target_log_return_next"]:  # NaN only where both are null (the last targets)
        pd.testing.assert_series_equal(merged[column], merged[f"{column}_features"], check_names=False, obj=column)


def test_symbols_are_normalised(base: dict) -> None:
    symbols = query(base["settings"], "select distinct symbol from intermediate.int_bars_deduplicated")["symbol"]
    assert "BRK B" in set(symbols) and not any(s != s.strip().upper() or "." in s for s in symbols)


def test_features_are_point_in_time(base: dict, copy_of_base: dbt_harness.DbtProject) -> None:
    """Features of session t on the full history equal those computed after deleting every bar after t."""
    full = query(base["settings"], "select * from intermediate.int_bars_featurized")
    cutoff = sorted(full["session_date"].unique())[200]
    with connect(copy_of_base.settings) as conn:
        deleted = conn.execute("delete from raw.ibkr_bars where session_date > %s", (cutoff,)).rowcount
    assert deleted > 0
    copy_of_base.run("run", "--full-refresh", "--select", "+int_bars_featurized", check=True)
    truncated = query(copy_of_base.settings, "select * from intermediate.int_bars_featurized")
    assert truncated["session_date"].max() == cutoff
    before = full[full["session_date"] <= cutoff].set_index(["symbol", "session_date"]).sort_index()
    after = truncated.set_index(["symbol", "session_date"]).sort_index()
    assert before.index.equals(after.index)
    pd.testing.assert_frame_equal(before[FEATURES], after[FEATURES], check_exact=True)
    # The target of t is the only column that looks ahead: known before the cut, unknown at t after it.
    pd.testing.assert_series_equal(
        before["target_log_return_next"].drop(cutoff, level=1), after["target_log_return_next"].drop(cutoff, level=1)
    )
    assert after.xs(cutoff, level=1)["target_log_return_next"].isna().all()


def test_incremental_build_equals_full_refresh(base: dict, copy_of_base: dbt_harness.DbtProject) -> None:
    """Append new sessions, correct a past bar, backfill history and add a symbol; build incrementally;
    the marts (and the feature table) must be identical to a full refresh of the same raw data."""
    settings = copy_of_base.settings
    now = datetime.now(UTC)
    # Appended and backfilled bars continue the stored series' prices (no price gap where they meet).
    later = synthetic_bars.join_prices(
        synthetic_bars.generate_bars(
            synthetic_bars.SyntheticConfig([*SYMBOLS, "BRK B"], "2024-07-01", "2024-08-09", seed=12, ingested_at=now)
        ),
        base["frame"],
    )
    backfill = synthetic_bars.join_prices(
        synthetic_bars.generate_bars(
            synthetic_bars.SyntheticConfig(["SC"], "2019-04-01", "2019-06-28", seed=13, ingested_at=now)
        ),
        base["frame"],
    )
    newcomer = synthetic_bars.generate_bars(
        synthetic_bars.SyntheticConfig(["SNEW"], "2024-03-01", "2024-08-09", seed=14, ingested_at=now)
    )
    corrected = base["frame"].query("symbol == 'SB' and session_date == @pd.Timestamp('2024-03-15').date()").copy()
    corrected["close"] *= 1.01
    corrected["high"] = corrected[["high", "close"]].max(axis=1)
    corrected["ingested_at"] = now
    corrected["load_id"] = corrected["batch_id"] = uuid.uuid4()
    with connect(settings) as conn:
        for frame in (later, backfill, newcomer, corrected):
            synthetic_bars.copy_bars(conn, frame)

    incremental = copy_of_base.run("build")
    assert incremental.returncode == 0, incremental.output[-4000:]
    rows = {name: entry["adapter_response"].get("rows_affected") for name, entry in incremental.by_name().items()
            if name in ("int_bars_deduplicated", "int_bars_featurized")}  # fmt: skip
    assert rows["int_bars_deduplicated"] < len(base["frame"]) / 4, f"incremental path not taken: {rows}"

    after_incremental = dbt_harness.warehouse_digests(settings)
    corrections = query(settings, "select * from intermediate.int_bar_corrections where symbol = 'SB'")
    assert len(corrections) == 2 and corrections["is_current"].sum() == 1

    again = copy_of_base.run("run")  # nothing new: nothing changes
    assert again.returncode == 0
    assert dbt_harness.warehouse_digests(settings) == after_incremental

    full = copy_of_base.run("build", "--full-refresh")
    assert full.returncode == 0, full.output[-4000:]
    assert dbt_harness.warehouse_digests(settings) == after_incremental
    assert after_incremental["training_bars"][0] > 1000
    # The appended sessions moved the folds forward (their test splits end on the last session).
    with connect(settings) as conn:
        moved = conn.execute("select max(test_end), min(train_start) from marts.walk_forward_folds").fetchone()
    with connect(base["settings"]) as conn:
        before = conn.execute("select max(test_end), min(train_start) from marts.walk_forward_folds").fetchone()
    assert moved[0] > before[0] and moved[1] < before[1]  # later sessions, and SC's backfilled history


def test_the_mart_records_the_dbt_run_that_built_it(copy_of_base: dbt_harness.DbtProject) -> None:
    """The documented order, `dbt run` then `dbt test`: training records the run's invocation as the mart's builder,
    not the test's (whose run_results.json is the last one written); a full refresh records its own. Trainer reads
    the record with the mart, analyst can read it, and neither can change it."""
    settings = copy_of_base.settings
    run = copy_of_base.run("run", "--select", "training_bars", check=True)
    test = copy_of_base.run("test", "--select", "training_bars", check=True)
    assert run.invocation_id and test.invocation_id and run.invocation_id != test.invocation_id
    assert read_mart(settings, MART_SCHEMA).dbt.invocation_id == run.invocation_id

    refresh = copy_of_base.run("run", "--select", "training_bars", "--full-refresh", check=True)
    copy_of_base.run("test", "--select", "training_bars", check=True)
    provenance = read_mart(settings, MART_SCHEMA).dbt
    assert provenance.invocation_id == refresh.invocation_id
    started = datetime.fromisoformat(provenance.run_started_at)
    assert started.tzinfo is not None and abs((datetime.now(UTC) - started).total_seconds()) < 600
    with connect(settings, role="analyst") as conn:
        assert conn.execute("select model, dbt_invocation_id from marts.mart_builds").fetchall() == [
            ("training_bars", refresh.invocation_id)
        ]
    for role in ("trainer", "analyst"):
        with connect(settings, role=role) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("delete from marts.mart_builds")


INCREMENTAL_MODELS = {
    "int_bars_deduplicated": "intermediate.int_bars_deduplicated",
    "int_bars_featurized": "intermediate.int_bars_featurized",
    "training_bars": "marts.training_bars",
}


def loaded_at(settings: ConnectionSettings) -> dict[str, tuple]:
    """Per incremental model: its rows' earliest and latest dbt_loaded_at."""
    with connect(settings) as conn:
        return {
            name: conn.execute(f"select min(dbt_loaded_at), max(dbt_loaded_at) from {relation}").fetchone()
            for name, relation in INCREMENTAL_MODELS.items()
        }


def rebuilt_in_full_lines(output: str) -> dict[str, str]:
    """The guard's log lines, by model."""
    found = re.findall(r"(\w+): rebuilt in full, not incrementally: (.*)", output)
    assert len({model for model, _ in found}) == len(found), f"one line per model: {found}"
    return {model: reason.strip() for model, reason in found}


def spoil_rows_as_an_older_release(settings: ConnectionSettings) -> None:
    """Rows an older release's SQL computed differently: a feature of every row of one symbol, all models."""
    with connect(settings) as conn:
        conn.execute("update intermediate.int_bars_deduplicated set bar_count = bar_count + 1 where symbol = 'SA'")
        conn.execute("update intermediate.int_bars_featurized set rsi_14 = rsi_14 * 0.99 where symbol = 'SA'")
        conn.execute("update marts.training_bars set rsi_14 = rsi_14 * 0.99 where symbol = 'SA'")


def test_an_unchanged_build_stays_incremental(base: dict, copy_of_base: dbt_harness.DbtProject) -> None:
    """Nothing new and nothing changed: every incremental model keeps its rows (their dbt_loaded_at), says nothing
    of a rebuild, and each has its record of what it was built with."""
    settings = copy_of_base.settings
    assert rebuilt_in_full_lines(base["result"].output) == {}, "a first build is no rebuild"
    before = loaded_at(settings)
    again = copy_of_base.run("build", check=True)
    assert rebuilt_in_full_lines(again.output) == {}
    assert loaded_at(settings) == before
    with connect(settings) as conn:
        records = dict(conn.execute("select model, build_version from intermediate.incremental_builds").fetchall())
    assert records == {name: int(dbt_harness.dbt_project_var("build_version")) for name in INCREMENTAL_MODELS}


def test_a_build_within_the_lookback_of_a_load_rewrites_nothing_it_already_holds(
    base: dict, copy_of_base: dbt_harness.DbtProject
) -> None:
    """A symbol's history landed just now (as by make ingest) and built; a second build, nothing new landed, re-reads
    those bars (var raw_lookback) but rewrites none of them: no model recomputes a row. Before, it rewrote every bar of
    that load, and so every feature and mart row of its series, and took longer than the full build."""
    settings = copy_of_base.settings
    newcomer = synthetic_bars.generate_bars(
        synthetic_bars.SyntheticConfig(["SNEW"], "2023-01-01", "2024-06-30", seed=14, ingested_at=datetime.now(UTC))
    )
    with connect(settings) as conn:
        synthetic_bars.copy_bars(conn, newcomer)
    copy_of_base.run("build", check=True)
    before, digests = loaded_at(settings), dbt_harness.warehouse_digests(settings)
    again = copy_of_base.run("build", check=True)
    rows = {name: again.by_name()[name]["adapter_response"].get("rows_affected") for name in INCREMENTAL_MODELS}
    assert rows == dict.fromkeys(INCREMENTAL_MODELS, 0)
    assert loaded_at(settings) == before
    assert dbt_harness.warehouse_digests(settings) == digests


def test_a_bumped_build_version_recomputes_every_row_of_every_incremental_model(
    base: dict, copy_of_base: dbt_harness.DbtProject
) -> None:
    """A release whose SQL changes how rows are computed bumps build_version: the next plain build recomputes every
    row an older release computed (here: spoiled on purpose), not only the series that received bars; it says so once
    per model; the build after it is incremental again. Before, the spoiled rows stayed until --full-refresh."""
    settings = copy_of_base.settings
    spoil_rows_as_an_older_release(settings)
    bumped = f"{{build_version: {int(dbt_harness.dbt_project_var('build_version')) + 1}}}"
    build = copy_of_base.run("build", "--vars", bumped)
    assert build.returncode == 0, build.output[-4000:]
    lines = rebuilt_in_full_lines(build.output)
    assert set(lines) == set(INCREMENTAL_MODELS), build.output[-4000:]
    assert set(lines.values()) == {"build_version was 1, now 2 (this release changed how its rows are computed)"}
    assert dbt_harness.warehouse_digests(settings) == dbt_harness.warehouse_digests(base["settings"])
    # The mart views that read training_bars, which its swap dropped, are back.
    with connect(settings, role="analyst") as conn:
        conn.execute("select count(*) from marts.symbol_coverage").fetchone()
        conn.execute("select count(*) from marts.walk_forward_fold_rows").fetchone()

    after = loaded_at(settings)
    again = copy_of_base.run("build", "--vars", bumped, check=True)
    assert rebuilt_in_full_lines(again.output) == {}
    assert loaded_at(settings) == after


def test_a_rebuild_of_the_mart_alone_names_the_views_its_swap_drops(copy_of_base: dbt_harness.DbtProject) -> None:
    """`dbt run --select training_bars` after a bumped build_version rebuilds the mart in full, by a swap that drops
    the mart views reading it; they are not selected, so they stay missing: the log line says which, and what to
    select. `dbt build` (or `--select training_bars+`) brings them back."""
    settings = copy_of_base.settings
    bumped = f"{{build_version: {int(dbt_harness.dbt_project_var('build_version')) + 1}}}"
    alone = copy_of_base.run("run", "--select", "training_bars", "--vars", bumped, check=True)
    assert rebuilt_in_full_lines(alone.output)["training_bars"].endswith(
        "its swap drops the views that read it, and marts.symbol_coverage, marts.walk_forward_fold_rows are not "
        "selected: they stay missing until built (select training_bars+)"
    ), alone.output[-3000:]
    views = "select to_regclass('marts.symbol_coverage'), to_regclass('marts.walk_forward_fold_rows')"
    with connect(settings) as conn:
        assert conn.execute(views).fetchone() == (None, None)
    copy_of_base.run("build", "--vars", bumped, check=True)
    with connect(settings) as conn:
        assert None not in conn.execute(views).fetchone()


def test_a_changed_warmup_rebuilds_the_mart_as_a_fresh_build_would(
    base: dict, copy_of_base: dbt_harness.DbtProject, dbt_series: dbt_harness.ScratchSeries
) -> None:
    """`dbt run --vars '{warmup_sessions: 60}'` on a mart built with 50: training_bars is rebuilt in full (the rows of
    sessions 51 to 60 go), exactly as a fresh build with 60 gives it, and the log line names the var; the intermediate
    models, whose rows do not depend on it, stay incremental. Before, nothing changed: no bar had landed."""
    settings = copy_of_base.settings
    longer = f"{{warmup_sessions: {WARMUP + 10}}}"
    before = loaded_at(settings)
    run = copy_of_base.run("run", "--vars", longer)
    assert run.returncode == 0, run.output[-4000:]
    assert rebuilt_in_full_lines(run.output) == {"training_bars": f"warmup_sessions was {WARMUP}, now {WARMUP + 10}"}
    after = loaded_at(settings)
    assert after["int_bars_featurized"] == before["int_bars_featurized"]
    assert after["training_bars"][0] > before["training_bars"][1], "every mart row recomputed"
    with dbt_series.database() as fresh:
        dbt_harness.prepare_raw(fresh)
        with connect(fresh) as conn:
            synthetic_bars.copy_bars(conn, base["frame"])
        dbt_series.project(fresh).run("build", "--vars", longer, check=True)
        assert dbt_harness.warehouse_digests(settings) == dbt_harness.warehouse_digests(fresh)


def test_a_warehouse_built_before_the_record_is_rebuilt_once_then_incremental(
    base: dict, copy_of_base: dbt_harness.DbtProject
) -> None:
    """A warehouse whose incremental models were built before they recorded what they were built with: the first
    build rebuilds each in full (its rows could be any older release's), saying so; the next is incremental."""
    settings = copy_of_base.settings
    with connect(settings) as conn:
        conn.execute("drop table intermediate.incremental_builds")
    spoil_rows_as_an_older_release(settings)
    build = copy_of_base.run("build")
    assert build.returncode == 0, build.output[-4000:]
    lines = rebuilt_in_full_lines(build.output)
    assert set(lines) == set(INCREMENTAL_MODELS) and all("no record" in line for line in lines.values()), lines
    assert dbt_harness.warehouse_digests(settings) == dbt_harness.warehouse_digests(base["settings"])

    after = loaded_at(settings)
    again = copy_of_base.run("build", check=True)
    assert rebuilt_in_full_lines(again.output) == {}
    assert loaded_at(settings) == after


def test_calendar_seed_is_reproducible() -> None:
    """The committed seed is exactly what devtools/generate_calendar.py writes (2000..2030, XNYS)."""
    from devtools import generate_calendar

    assert generate_calendar.main(["--check"]) == 0
    seed = pd.read_csv(REPO_ROOT / "warehouse/seeds/xnys_sessions.csv")
    assert seed["session_date"].iloc[0] == "2000-01-03" and seed["session_date"].iloc[-1] == "2030-12-31"
    half_days = seed.loc[seed["is_half_day"], "session_date"]
    assert "2024-11-29" in set(half_days) and "2024-07-04" not in set(seed["session_date"])


def test_the_calendar_seed_loads_every_row_as_written(dbt_series: dbt_harness.ScratchSeries) -> None:
    """The project inserts seeds with a macro of its own (macros/load_csv_rows.sql: dbt's, with the placeholder
    rendered once per seed instead of once per value; bench/bench_fixed_costs.py measures what that saves): the rows
    it loads are the CSV file's, every one, each value in its column."""
    csv = pd.read_csv(REPO_ROOT / "warehouse/seeds/xnys_sessions.csv")
    with dbt_series.database() as settings:
        dbt_harness.prepare_raw(settings)
        dbt_series.project(settings).run("seed", "--select", "xnys_sessions", check=True)
        loaded = query(
            settings,
            "select session_date::text as session_date, open_at, close_at, is_half_day from seeds.xnys_sessions "
            "order by session_date",
        )
    assert len(loaded) == len(csv) > 7000
    assert loaded["session_date"].tolist() == csv["session_date"].tolist()
    for column in ("open_at", "close_at"):
        assert loaded[column].tolist() == pd.to_datetime(csv[column], utc=True).tolist(), column
    assert loaded["is_half_day"].tolist() == csv["is_half_day"].tolist()


def test_dbt_parses_the_project_once_for_a_series_of_scratch_databases(dbt_series: dbt_harness.ScratchSeries) -> None:
    """dbt's partial parsing starts over when the profile's database changes: every test's scratch database with a
    name of its own made each test's first dbt command parse the whole project again (about 2 s each)."""
    full_parse = "Unable to do partial parsing"
    with dbt_series.database() as settings:
        assert full_parse in dbt_series.project(settings).run("ls", "--resource-type", "seed", check=True).output
    with dbt_series.database() as settings:  # the next test's database
        listed = dbt_series.project(settings).run("ls", "--resource-type", "seed", check=True)
    assert full_parse not in listed.output and "known_missing_sessions" in listed.output, listed.output[-3000:]


def test_each_dbt_command_and_vars_keeps_a_target_directory_of_its_own(tmp_path: Path) -> None:
    """The profile sets application_name "dbt <command>", and dbt parses the whole project again when it or the --vars
    change: `dbt run` then `dbt test` in one target directory parsed twice, and again at every turn."""
    project = dbt_harness.DbtProject(ConnectionSettings(None, None, None, None, "unused", False), tmp_path)
    paths = {
        project.target_path("run"),
        project.target_path("test"),
        project.target_path("build", "--vars", "{a: 1}"),
        project.target_path("build", "--vars", "{a: 2}"),
        project.target_path("build"),
    }
    assert len(paths) == 5 and all(path.parent == tmp_path / "target" for path in paths)
    assert project.target_path("build", "--full-refresh", "--vars", "{a: 1}") == project.target_path(
        "build", "--vars", "{a: 1}", "--select", "x"
    )


def test_a_build_that_leaves_the_loaded_seeds_out_still_runs_every_data_test(tmp_path: Path) -> None:
    """The months-of-loads sequences and the data-test cases build copies whose seeds are loaded, leaving the seeds out.
    With dbt's default (eager) indirect selection, `--exclude resource_type:seed` also left out every test that reads
    a seed: no_missing_sessions, no_bad_ticks, no_bad_intraday_prices and session_date_is_exchange_session never ran
    in those builds, so the sequences could not see a gap or a bad tick."""
    project = dbt_harness.DbtProject(ConnectionSettings(None, None, None, None, "unused", False), tmp_path)

    def listed(*args: str) -> set[str]:
        result = project.run("ls", "--output", "name", "--quiet", *args, check=True)
        return {line.strip() for line in result.output.splitlines() if line.strip()}

    everything = listed()
    seeds = listed("--resource-type", "seed")
    data_tests = listed("--resource-type", "test")
    assert {"int_bars_deduplicated_no_missing_sessions", "int_bars_deduplicated_no_bad_ticks"} <= data_tests
    for left_out, seeds_left_out in (
        (dbt_harness.SKIP_FIXED_INPUTS, seeds),
        (dbt_harness.skip_loaded_seeds("xnys_sessions"), {"xnys_sessions"}),
    ):
        built = listed(*left_out)
        assert data_tests <= built, sorted(data_tests - built)
        assert everything - built == seeds_left_out | listed("--resource-type", "unit_test")


def test_dbt_in_the_tests_process_answers_as_the_dbt_program_does(dbt_series: dbt_harness.ScratchSeries) -> None:
    """The harness runs dbt's command line inside the test's process: starting the `dbt` program was about 1.5 s of
    imports per invocation, most of the time a test paid beyond the build itself. It answers as the program does (the
    same exit status and output, for a listing, a command that stops in a hook and a usage error), and leaves the test's
    environment, working directory, argv, log handlers and warning filters as they were."""

    def normalised(output: str) -> list[str]:
        """Without the clock, durations and the line about partial parsing (the program parsed first)."""
        return [
            re.sub(r"\d\d:\d\d:\d\d|\d+\.\d+ ?s(econds)?", "", line)
            for line in output.splitlines()
            if "partial pars" not in line
        ]

    before = (dict(os.environ), os.getcwd(), list(sys.argv), logging.getLogger().handlers[:], warnings.filters[:])
    with dbt_series.database() as settings:
        with connect(settings) as conn:
            provision(conn)
        for args, status in [(["ls", "--resource-type", "seed"], 0), (["run"], 2), (["ls", "--no-such-option"], 2)]:
            program = dbt_series.project(settings, in_process=False).run(*args)
            here = dbt_series.project(settings).run(*args)
            assert (here.returncode, normalised(here.output)) == (program.returncode, normalised(program.output))
            assert here.returncode == status, here.output[-3000:]
    after = (dict(os.environ), os.getcwd(), list(sys.argv), logging.getLogger().handlers[:], warnings.filters[:])
    assert after == before


def test_a_build_before_any_ingest_stops_at_once_and_says_to_ingest(dbt_series: dbt_harness.ScratchSeries):
    """`make db-up` provisions schemas but the loader creates the raw tables: dbt run then names the missing step."""
    with dbt_series.database() as settings:
        with connect(settings) as conn:
            provision(conn)
        result = dbt_series.project(settings).run("run")
    assert result.returncode != 0
    assert "raw.ibkr_bars does not exist yet: nothing was ingested. Run `make ingest`" in result.output
    assert not result.results  # no model ran


INTRADAY_BAR_SIZE = (
    "var daily_bar_size is '{}', an intraday bar size: marts.training_bars holds one bar per symbol and session, and "
    "would keep one arbitrary bar of each session's. Build it from daily bars (daily_bar_size '1 day', the default: "
    "drop the var); intraday bars stay in raw.ibkr_bars."
)
NOT_ONE_DAY = (
    "var daily_bar_size is '{}', not '1 day': marts.training_bars holds one bar per symbol and session, the daily bars "
    "raw.ibkr_bars holds as '1 day'; another value matches bars of a week or month, or none (an empty mart that passes "
    "every test). Drop the var: '1 day' is the default."
)


@pytest.fixture(scope="module")
def seeded_and_nothing_built(dbt_series: dbt_harness.ScratchSeries) -> Iterator[dbt_harness.DbtProject]:
    """A database with the raw tables and the seeds loaded, where `dbt run --select stg_ibkr__bars` would build
    staging. The tests of a run that stops before any model share it: such a run changes nothing in it (and one that
    did not stop would build staging, and fail its test, whichever ran first)."""
    with dbt_series.database(suffix="_seeded") as settings:
        dbt_harness.prepare_raw(settings)
        project = dbt_series.project(settings)
        project.run("seed", check=True)
        yield project


@pytest.mark.parametrize(
    ("var", "message"),
    [
        ("'1 hour'", INTRADAY_BAR_SIZE.format("1 hour")),
        ("'5 mins'", INTRADAY_BAR_SIZE.format("5 mins")),
        ("' 1 hour '", INTRADAY_BAR_SIZE.format(" 1 hour ")),
        ("'1 D'", NOT_ONE_DAY.format("1 D")),
        ("'1 week'", NOT_ONE_DAY.format("1 week")),
        ("1", NOT_ONE_DAY.format("1")),
    ],
)
def test_a_daily_bar_size_other_than_one_day_is_refused_in_one_line_naming_what_to_do(
    seeded_and_nothing_built: dbt_harness.DbtProject, var: str, message: str
) -> None:
    """The mart holds one bar per symbol and session: built with var daily_bar_size '1 hour' it passed every test and
    kept one arbitrary hourly bar of each session as its daily bar. Staging compares the var with raw's bar_size as
    it is: '1 D', a number or '1 week' (whose bars are not a session's) built, over daily bars, an empty mart that
    passed every test (a warning about the fold plan at most). Now dbt stops before any model."""
    project = seeded_and_nothing_built
    result = project.run("run", "--select", "stg_ibkr__bars", "--vars", f"{{daily_bar_size: {var}}}")
    assert result.returncode != 0, result.output[-3000:]
    assert message in result.output
    assert not result.results  # no model ran


def test_a_symbol_whose_volume_does_not_move_keeps_every_session(dbt_series: dbt_harness.ScratchSeries) -> None:
    """Weeks of zero volume (a thinly traded stock: IBKR serves the bars with volume 0) and bars that never change give
    a 20-session volume window without spread. Its z-score is 0 (the volume is its mean), like RSI's 50 without gains
    or losses: before, it was null, and the mart dropped those sessions from the middle of the symbol's history (an
    episode then stepped across them as if they were one session), and a symbol whose bars never change from it
    entirely, while the build stayed green."""
    frame = synthetic_bars.generate_bars(synthetic_bars.SyntheticConfig(["QUIET", "SAME"], START, "2020-06-30", seed=5))
    quiet = frame.index[frame["symbol"] == "QUIET"]
    frame.loc[quiet[120:160], "volume"] = 0.0  # 40 sessions without a trade, after the warm-up
    same = frame["symbol"] == "SAME"
    frame.loc[same, ["open", "high", "low", "close", "wap"]] = 42.0
    frame.loc[same, "volume"] = 1000.0
    with dbt_series.database() as settings:
        dbt_harness.prepare_raw(settings)
        with connect(settings) as conn:
            synthetic_bars.copy_bars(conn, frame)
        result = dbt_series.project(settings).run("build")
        assert result.returncode == 0, result.output[-4000:]
        mart = query(settings, "select * from marts.training_bars order by symbol, session_date")
        bars = query(settings, "select symbol, session_date, open, high, low, close, volume "
                               "from intermediate.int_bars_deduplicated")  # fmt: skip
        computed = query(settings, "select * from intermediate.int_bars_featurized")
    sessions = frame.groupby("symbol").size()
    assert mart.groupby("symbol").size().to_dict() == (sessions - WARMUP).to_dict(), "every session after the warm-up"
    quiet_rows = mart[mart["symbol"] == "QUIET"].set_index("session_date")
    silent = [frame.loc[i, "session_date"] for i in quiet[139:160]]  # the 20th session without a trade, and on
    assert (quiet_rows.loc[silent, "volume_zscore_20"] == 0.0).all()
    assert (mart.loc[mart["symbol"] == "SAME", FEATURES] == mart.loc[mart["symbol"] == "SAME", FEATURES].iloc[0]).all(
        axis=None
    ), "bars that never change give features that never change"
    assert mart.loc[mart["symbol"] == "SAME", "volume_zscore_20"].eq(0.0).all()
    assert assert_features_match(computed, bars) > 0  # the pandas twin agrees


def test_dbt_run_and_test_before_a_seed_is_loaded_stop_at_once_and_say_to_load_the_seeds(
    dbt_series: dbt_harness.ScratchSeries,
):
    """A warehouse built before known_missing_sessions was added, whose server kept running through the upgrade:
    `dbt run && dbt test` as typed (neither loads seeds) failed on the models and tests that read the seed with
    `relation "seeds.known_missing_sessions" does not exist`, one error per node, and nothing named the step. Now dbt
    stops before any model and says to load the seeds; `dbt build`, which loads them itself, is not stopped. The same
    for one built before verified_price_moves was added (the seeds of the release before it loaded)."""
    with dbt_series.database() as settings:
        dbt_harness.prepare_raw(settings)
        project = dbt_series.project(settings)
        project.run("seed", "--select", "xnys_sessions", check=True)  # the seed an older release had
        for command in ("run", "test"):
            result = project.run(command)
            assert result.returncode != 0
            assert (
                "seeds.known_missing_sessions, seeds.verified_price_moves do not exist yet: the seeds are not loaded "
                "(dbt run and dbt test do not load them). Run `make db-up` or `dbt seed` first" in result.output
            ), result.output[-3000:]
            assert "xnys_sessions" not in result.output.split("do not exist yet")[0].split("\n")[-1]
            assert not result.results  # no model or test ran
        project.run("seed", "--select", "known_missing_sessions", check=True)  # the seeds of the release before
        result = project.run("run")
        assert result.returncode != 0
        assert (
            "seeds.verified_price_moves does not exist yet: the seeds are not loaded (dbt run and dbt test do "
            "not load them). Run `make db-up` or `dbt seed` first" in result.output
        ), result.output[-3000:]
        assert not result.results
        built = project.run("build", "--exclude", "test_type:unit")
        assert built.returncode == 0, built.output[-3000:]
        assert built.statuses()["known_missing_sessions"] == built.statuses()["verified_price_moves"] == "success"


def test_dbt_test_before_dbt_run_stops_at_once_and_says_to_run_first(dbt_series: dbt_harness.ScratchSeries):
    """Commands in the wrong order on a fresh warehouse: `make db-up`, `make ingest`, then `dbt test` before `dbt run`
    failed 123 tests with "relation ... does not exist" and never said to run dbt run. Now dbt stops before any test
    with one line; a test whose model was built still runs."""
    with dbt_series.database() as settings:
        dbt_harness.prepare_raw(settings)
        project = dbt_series.project(settings)
        project.run("seed", check=True)
        result = project.run("test")
        assert result.returncode != 0
        assert "no model these tests read is built yet (intermediate." in result.output, result.output[-3000:]
        assert "Run `dbt run` first, then dbt test (or dbt build, which does both)." in result.output
        assert not result.results  # no test ran
        project.run("run", "--select", "stg_ibkr__bars", check=True)
        tested = project.run("test", "--select", "stg_ibkr__bars", check=True)
        ran = {entry["status"] for unique_id, entry in tested.results.items() if unique_id.startswith("test.")}
        assert ran == {"pass"}, tested.output[-3000:]


KNOWN_MISSING_GOOD = "symbol,session_date,reason\nSA,2024-03-15,halted all day\n"
SEED_FILE_MISTAKES = {
    "header misspelt": (
        "symbol,sesion_date,reason\nSB,2024-03-18,halted all day\n",
        "known_missing_sessions.csv line 1: the header is 'symbol,sesion_date,reason', expected the columns "
        "symbol,session_date,reason (unknown: sesion_date; missing: session_date)",
    ),
    "extra column": (
        "symbol,session_date,reason,note\nSB,2024-03-18,halted all day,x\n",
        "line 1: the header is 'symbol,session_date,reason,note', expected the columns symbol,session_date,reason "
        "(unknown: note; missing: none)",
    ),
    "month first": (  # the server's DateStyle read it (2026-11-27 on a month-first server), silently
        "symbol,session_date,reason\nSB,2024-03-18,halted all day\nSB,11/27/2026,halted all day\n",
        "known_missing_sessions.csv line 3: session_date '11/27/2026' is not a date written YYYY-MM-DD",
    ),
    "day first": (
        "symbol,session_date,reason\nSB,27/11/2026,halted all day\n",
        "line 2: session_date '27/11/2026' is not a date written YYYY-MM-DD",
    ),
    "no such day": (
        "symbol,session_date,reason\nSB,2023-02-29,halted all day\n",
        "line 2: session_date '2023-02-29' is not a date (YYYY-MM-DD)",
    ),
}


def test_a_seed_file_with_a_wrong_header_or_date_is_refused_naming_the_line_and_loads_nothing(
    cluster: ConnectionSettings, tmp_path: Path
) -> None:
    """An administrator's mistakes in warehouse/seeds/known_missing_sessions.csv stop `dbt seed` (so make db-up and
    dbt build) before anything is written, with a line naming the file, the line and the value; the rows loaded before
    stay. Before, a misspelt header or an extra column failed only as a database error on a loaded warehouse, and on a
    fresh one created the seed's table with the wrong columns; a date such as 11/27/2026 loaded as the server's
    DateStyle read it (03/04/2026: 4 March on a month-first server, 3 April on a day-first one)."""

    def rows(settings: ConnectionSettings) -> list[tuple] | None:
        with connect(settings) as conn:
            if conn.execute("select to_regclass('seeds.known_missing_sessions')").fetchone()[0] is None:
                return None
            return conn.execute(
                "select symbol, session_date::text, reason from seeds.known_missing_sessions"
            ).fetchall()

    name = "known_missing_sessions.csv"
    with scratch_database.scratch_database("test_dbt_seed_file", cluster) as settings:
        dbt_harness.prepare_raw(settings)
        copy = dbt_harness.copy_project(tmp_path / "project", {name: SEED_FILE_MISTAKES["header misspelt"][0]})
        project = dbt_harness.DbtProject(settings, tmp_path / "dbt", project_dir=copy)
        first = project.run("seed", "--select", "known_missing_sessions")  # a fresh warehouse: no table yet
        assert first.returncode != 0
        assert SEED_FILE_MISTAKES["header misspelt"][1] in first.output, first.output[-3000:]
        assert "Nothing was loaded; the previous rows stay." in first.output
        assert rows(settings) is None, "no table with the misspelt column"

        dbt_harness.copy_project(tmp_path / "project", {name: KNOWN_MISSING_GOOD})
        project.run("seed", "--select", "known_missing_sessions", check=True)
        for mistake, (csv_text, said) in SEED_FILE_MISTAKES.items():
            dbt_harness.copy_project(tmp_path / "project", {name: csv_text})
            result = project.run("seed", "--select", "known_missing_sessions")
            assert result.returncode != 0, mistake
            assert said in result.output, (mistake, result.output[-3000:])
            assert rows(settings) == [("SA", "2024-03-15", "halted all day")], f"{mistake}: the previous rows stay"
