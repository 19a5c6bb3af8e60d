"""The mart's data contract (Great Expectations, read as trainer): a clean mart passes, each breakage is named,
and training refuses a broken mart before it trains anything."""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from devtools import dbt_harness, synthetic_bars
from devtools.scratch_database import create_database, drop_database, scratch_database
from devtools.synthetic_mart import (
    FEATURE_LOOKBACKS,
    PRICE_COLUMNS,
    TARGET,
    lay_out_folds,
    synthetic_mart,
    write_mart,
    write_mart_yaml,
)
from ingest import cli as ingest_cli
from ingest.raw_tables import ensure_raw_tables
from training import cli
from training.config import TrainConfig, load_config
from training.contract import (
    ContractTerms,
    ContractViolation,
    HistoryTooShort,
    build_expectations,
    build_fold_expectations,
    check_mart_contract,
    history_too_short_message,
    months_to_fetch,
)
from training.exit_codes import ExitCode
from training.features import read_mart_schema
from training.folds import Fold
from training.single_run import run_training
from training.walk_forward import contract_terms
from warehouse_db import connect, schemas
from warehouse_db.errors import WarehouseNotProvisioned
from warehouse_db.provision import provision
from warehouse_db.settings import ConnectionSettings

TERMS = ContractTerms(
    feature_names=tuple(FEATURE_LOOKBACKS), target=TARGET, price_columns=PRICE_COLUMNS, min_sessions_per_split=15
)


@pytest.fixture(scope="module")
def mart() -> pd.DataFrame:
    return synthetic_mart(n_symbols=3, n_sessions=260, seed=21)


@pytest.fixture(scope="module")
def folds(mart: pd.DataFrame) -> tuple[Fold, ...]:
    """Two folds: 30 test and 25 validation sessions each, purge 1 and embargo 5."""
    return lay_out_folds(mart["session_date"], folds=2, test_sessions=30, validation_sessions=25)


@pytest.fixture(scope="module")
def contract_database(embedded_cluster: ConnectionSettings) -> Iterator[ConnectionSettings]:
    """One provisioned database for the module (creating and dropping one per test costs seconds each)."""
    settings = create_database(embedded_cluster, "test_contract")
    with connect(settings) as conn:
        provision(conn)
        ensure_raw_tables(conn)
    yield settings
    drop_database(settings)


@pytest.fixture
def mart_warehouse(
    contract_database: ConnectionSettings, mart: pd.DataFrame, folds: tuple[Fold, ...]
) -> ConnectionSettings:
    """A freshly written (clean) mart and folds for every test: each test breaks them in its own way."""
    with connect(contract_database) as conn:
        write_mart(conn, mart, folds)
    return contract_database


def break_mart(settings: ConnectionSettings, statement: str) -> None:
    with connect(settings) as conn:
        conn.execute(statement)
        conn.commit()


def test_a_clean_mart_meets_the_contract(mart_warehouse: ConnectionSettings) -> None:
    report = check_mart_contract(mart_warehouse, TERMS)
    assert report.failed == []
    assert len(report.passed) == len(build_expectations(TERMS)) + len(build_fold_expectations(TERMS))


FOLDS = "marts.walk_forward_folds"
BREAKAGES = {
    "null feature": (
        "update marts.training_bars set rsi_14 = null "
        "where (symbol, session_date) = (select symbol, min(session_date) from marts.training_bars group by symbol "
        "order by symbol limit 1)",
        "rsi_14 has no nulls",
    ),
    "duplicate key": (  # the second row disagrees on a value: the key alone must be unique
        "create temp table duplicate as select * from marts.training_bars "
        "where session_date = (select max(session_date) from marts.training_bars) limit 1; "
        "update duplicate set close = close * 1.01; insert into marts.training_bars select * from duplicate",
        "(symbol, session_date) is unique",
    ),
    "zero low, negative volume": (
        "update marts.training_bars set low = case when session_date = (select max(session_date) "
        "from marts.training_bars) then 0 else low end, volume = case when session_date = (select min(session_date) "
        "from marts.training_bars) then -1 else volume end",
        ("low is positive", "volume >= 0"),
    ),
    "infinite price": (
        "update marts.training_bars set close = 'Infinity' "
        "where session_date = (select max(session_date) from marts.training_bars)",
        "close is finite",
    ),
    "NaN feature": (
        "update marts.training_bars set macd_to_close = 'NaN' "
        "where session_date = (select min(session_date) from marts.training_bars)",
        "macd_to_close is finite",
    ),
    "feature too large for the scaler": (  # finite, but its square is not: the scaler zeroed it for the fold
        "update marts.training_bars set atr_14_to_close = 1e252 "
        "where session_date = (select min(session_date) from marts.training_bars)",
        "every feature within ±1e150 (the feature scaler squares it)",
    ),
    "non-positive open": (
        "update marts.training_bars set open = 0 "
        "where session_date = (select min(session_date) from marts.training_bars)",
        "open is positive",
    ),
    "missing feature column": (
        "alter table marts.training_bars drop column high_low_range",
        "the contract's columns exist",
    ),
    "wrong type": (
        "alter table marts.training_bars alter column volume type bigint",
        "volume is double precision",
    ),
    "target null mid-series": (
        f"update marts.training_bars set {TARGET} = null "
        "where session_date = (select min(session_date) from marts.training_bars)",
        f"{TARGET} is null only on a symbol's last session",
    ),
    "test session in validation": (
        f"update {FOLDS} set validation_end = test_start where fold_id = 2",
        "inside every fold: train < validation < test, so no test session is trained or validated on",
    ),
    "test session in train": (
        f"update {FOLDS} set train_end = test_start where fold_id = 1",
        "inside every fold: train < validation < test, so no test session is trained or validated on",
    ),
    "purge shorter than the target's horizon": (
        f"update {FOLDS} set purge_sessions = 0, embargo_sessions = 6 where fold_id = 1",
        "every purge covers the target's horizon (1 session)",
    ),
    "gap before validation shorter than purge + embargo": (
        f"update {FOLDS} set train_end = (select min(d)::date from generate_series(validation_start - 7, "
        "validation_start - 1, interval '1 day') d where extract(isodow from d) < 6) where fold_id = 2",
        "purge + embargo XNYS sessions lie between train and validation and between validation and test",
    ),
    "no gap before validation": (
        f"update {FOLDS} set train_end = validation_start - 1 where fold_id = 2",
        "purge + embargo XNYS sessions lie between train and validation and between validation and test",
    ),
    "gap before test shorter than purge + embargo": (
        f"update {FOLDS} set validation_end = (select min(d)::date from generate_series(test_start - 7, "
        "test_start - 1, interval '1 day') d where extract(isodow from d) < 6) where fold_id = 1",
        "purge + embargo XNYS sessions lie between train and validation and between validation and test",
    ),
    "overlapping test splits": (  # by one session: fold 1's test split ends on fold 2's first test session
        f"update {FOLDS} set test_end = (select test_start from {FOLDS} where fold_id = 2) where fold_id = 1",
        "test splits do not overlap and follow fold_id order",
    ),
    "folds out of order": (
        f"update {FOLDS} set fold_id = 3 - fold_id",
        "test splits do not overlap and follow fold_id order",
    ),
    "too few sessions in a split": (
        f"update {FOLDS} set validation_start = validation_end - 6 where fold_id = 1",
        "every fold's train, validation and test splits hold at least 15 sessions of the mart",
    ),
    "a fold id twice, a fold date missing, a fold count of another type": (
        f"update {FOLDS} set test_end = null where fold_id = 2; update {FOLDS} set fold_id = 1; "
        f"alter table {FOLDS} alter column embargo_sessions type bigint",
        ("fold_id is unique", "fold test_end has no nulls", "fold embargo_sessions is integer"),
    ),
    "no fold": (f"delete from {FOLDS}", "there is at least one fold"),
    "missing fold column": (f"alter table {FOLDS} drop column embargo_sessions", "the fold columns exist"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_each_breakage_is_named(mart_warehouse: ConnectionSettings, breakage: str) -> None:
    statement, named = BREAKAGES[breakage]
    break_mart(mart_warehouse, statement)
    with pytest.raises(ContractViolation) as refused:
        check_mart_contract(mart_warehouse, TERMS)
    names = [failure.split(" [")[0] for failure in refused.value.failures]
    for expectation in (named,) if isinstance(named, str) else named:
        assert expectation in names, refused.value.failures
        assert expectation in str(refused.value)


def test_a_feature_too_large_for_the_scaler_is_named_with_its_symbol_and_session(
    mart_warehouse: ConnectionSettings, mart: pd.DataFrame
) -> None:
    """A feature of 1e252 is finite, so "is finite" passed it, and the feature scaler's square overflowed: the
    feature read 0 on every row of the fold (a price of 1e-250 among prices of 100 gave such features before staging
    bounded prices). The refusal names the row, so that it can be found."""
    first = mart.sort_values(["symbol", "session_date"]).iloc[0]
    break_mart(
        mart_warehouse,
        f"update marts.training_bars set atr_14_to_close = -1e252 "
        f"where symbol = '{first['symbol']}' and session_date = '{first['session_date']}'",
    )
    with pytest.raises(ContractViolation) as refused:
        check_mart_contract(mart_warehouse, TERMS)
    (failure,) = [f for f in refused.value.failures if f.startswith("every feature within")]
    assert f"symbol: {first['symbol']}, session_date: {first['session_date']}, feature: atr_14_to_close" in failure
    assert "is finite" not in str(refused.value)


def test_the_sign_rules_follow_the_price_columns_the_yaml_declares(mart_warehouse: ConnectionSettings) -> None:
    """The price columns come from training_bars.yml (meta.role = price): a mart whose YAML and SQL both call its
    volume column otherwise meets the contract, and that column is still held to it (no nulls, finite)."""
    break_mart(mart_warehouse, "alter table marts.training_bars rename column volume to shares")
    renamed = replace(TERMS, price_columns=tuple("shares" if name == "volume" else name for name in PRICE_COLUMNS))
    report = check_mart_contract(mart_warehouse, renamed)
    assert report.failed == []
    assert {"shares has no nulls", "shares is finite", "open is positive"} <= set(report.passed)


def test_a_feature_and_target_named_as_sql_must_quote_them_are_checked(mart_warehouse: ConnectionSettings) -> None:
    """The mart reader quotes every column it names (sql.Identifier), so a mart YAML and SQL may call a feature
    ``Rsi 14's`` or ``order``; the contract's own queries (the feature bound, the target's nulls) wrote the names
    bare, and such a mart failed them as SQL errors instead of meeting the contract."""
    renames = {"rsi_14": "Rsi 14's", TARGET: "order"}
    for old, new in renames.items():
        break_mart(mart_warehouse, f'alter table marts.training_bars rename column {old} to "{new}"')
    terms = replace(
        TERMS, feature_names=tuple(renames.get(name, name) for name in TERMS.feature_names), target=renames[TARGET]
    )
    report = check_mart_contract(mart_warehouse, terms)
    assert report.failed == []
    assert {"every feature within ±1e150 (the feature scaler squares it)", "order is null only on a symbol's last "
            "session"} <= set(report.passed)  # fmt: skip
    break_mart(
        mart_warehouse,
        'update marts.training_bars set "Rsi 14\'s" = 1e200 '
        "where session_date = (select min(session_date) from marts.training_bars)",
    )
    with pytest.raises(ContractViolation) as refused:
        check_mart_contract(mart_warehouse, terms)
    (failure,) = [f for f in refused.value.failures if f.startswith("every feature within")]
    assert "feature: Rsi 14's" in failure, failure


def test_an_embargo_shorter_than_the_config_demands_is_refused(mart_warehouse: ConnectionSettings) -> None:
    demanding = ContractTerms(
        tuple(FEATURE_LOOKBACKS), TARGET, PRICE_COLUMNS, min_sessions_per_split=15, min_embargo_sessions=10
    )
    with pytest.raises(ContractViolation) as refused:
        check_mart_contract(mart_warehouse, demanding)
    assert [failure.split(" [")[0] for failure in refused.value.failures] == ["every embargo is at least 10 sessions"]


def test_the_job_demands_the_configured_embargo_and_the_targets_horizon() -> None:
    """What the job hands the contract: --embargo-sessions, and the target's horizon (meta.horizon_sessions in the mart
    YAML) as the shortest purge."""
    schema = replace(read_mart_schema(), target_horizon_sessions=3)
    terms = contract_terms(TrainConfig(embargo_sessions=10, window=6, min_episode_steps=20), schema)
    assert (terms.min_purge_sessions, terms.min_embargo_sessions, terms.min_sessions_per_split) == (3, 10, 26)
    assert (terms.target, terms.feature_names, terms.price_columns) == (
        schema.target,
        tuple(schema.feature_names),
        schema.price_columns,
    )
    assert contract_terms(TrainConfig(), schema).min_embargo_sessions == 0  # None: whatever dbt laid out


def test_a_null_target_on_the_last_session_is_allowed(mart_warehouse: ConnectionSettings) -> None:
    """The next session of the mart's last one is unknown; the target is never observed anyway."""
    with connect(mart_warehouse) as conn:
        nulls = conn.execute(
            f"select count(*), count(distinct symbol) from marts.training_bars where {TARGET} is null"
        ).fetchone()
    assert nulls == (3, 3)  # as dbt builds it: each symbol's last session
    assert check_mart_contract(mart_warehouse, TERMS).failed == []


def test_a_history_too_short_for_the_planned_folds_says_what_to_fetch(
    contract_database: ConnectionSettings, mart: pd.DataFrame, folds: tuple[Fold, ...]
) -> None:
    with connect(contract_database) as conn:
        write_mart(conn, mart, folds, folds_planned=4)
    with pytest.raises(HistoryTooShort) as refused:
        check_mart_contract(contract_database, TERMS)
    (failure,) = refused.value.failures
    assert "holds 2 of the 4 planned folds" in failure and "the mart has 260 sessions" in failure
    assert 'make ingest ARGS="--months ' in failure and "walk_forward_folds" in failure


def test_an_empty_mart_over_quote_bars_says_why_instead_of_what_to_fetch(
    embedded_cluster: ConnectionSettings, tmp_path: Path
) -> None:
    """Quote bars (MIDPOINT: a currency pair has no TRADES) carry no volume, so no row has volume_zscore_20 and dbt
    builds an empty mart, green. Training said the history was too short and to fetch 43 months of bars, although 18
    months were there and more would change nothing."""
    frame = synthetic_bars.generate_bars(
        synthetic_bars.SyntheticConfig(["EUR"], "2023-01-01", "2024-06-30", seed=3, what_to_show="MIDPOINT")
    )
    frame[["volume", "wap", "bar_count"]] = -1  # as IBKR sends quote bars (staging makes them null)
    with scratch_database("test_contract_quotes", embedded_cluster) as settings:
        dbt_harness.prepare_raw(settings)
        with connect(settings) as conn:
            synthetic_bars.copy_bars(conn, frame)
        result = dbt_harness.DbtProject(settings, tmp_path).run("build", "--vars", "{what_to_show: MIDPOINT}")
        assert result.returncode == 0, result.output[-3000:]
        with pytest.raises(ContractViolation) as refused:
            check_mart_contract(settings, TERMS)
        # Where trainer may not read marts.symbol_coverage (grants changed by hand), the check cannot tell why the
        # mart is empty: it says what the plan needs, in one line, instead of failing on the view.
        with connect(settings) as conn:
            conn.execute(f"revoke select on marts.symbol_coverage from {schemas.TRAINER_ROLE}")
        with pytest.raises(HistoryTooShort) as unexplained:
            check_mart_contract(settings, TERMS)
    (too_short,) = unexplained.value.failures
    assert too_short.startswith("the history is too short for the walk-forward folds: marts.walk_forward_folds")
    assert "symbol_coverage" not in too_short and too_short.endswith(" [precondition]"), too_short
    assert not isinstance(refused.value, HistoryTooShort)  # the history is long enough
    (failure,) = refused.value.failures
    assert failure == (
        "marts.training_bars is empty, although marts.symbol_coverage counts more sessions than the 50-session "
        "warm-up for EUR (374 sessions of 1 day MIDPOINT bars): none of their rows after the warm-up has every "
        "feature, or the mart is built from other bar settings (dbt vars daily_bar_size, what_to_show, use_rth). "
        "Quote bars (MIDPOINT, BID, ASK, BID_ASK) carry no volume, and a row without volume_zscore_20 is left out "
        "of the mart: build it from TRADES or ADJUSTED_LAST bars [precondition]"
    )


def test_the_months_to_fetch_for_the_default_folds() -> None:
    """dbt's defaults (4 x 126 test, 63 validation, 252 train, purge 1, embargo 5) after a 50-session warm-up."""
    plan = {"folds_planned": 4, "folds_laid_out": 0, "test_sessions": 126, "validation_sessions": 63,
            "min_train_sessions": 252, "purge_sessions": 1, "embargo_sessions": 5, "warmup_sessions": 50,
            "sessions_needed": 831, "history_sessions": 202, "first_session": "2024-03-14",
            "last_session": "2024-12-31"}  # fmt: skip
    assert months_to_fetch(plan) == 43  # 881 sessions / 21 a month, plus a month for holidays: under 5 years
    message = history_too_short_message(plan)
    assert message.startswith("the history is too short for the walk-forward folds: marts.walk_forward_folds holds")
    assert "0 of the 4 planned folds" in message and "202 sessions (2024-03-14 … 2024-12-31)" in message
    assert "need 831 (4 x 126 test + 2 x 6 purge and embargo + 63 validation + 252 train)" in message
    assert "\n" not in message
    # The hint runs as written, and fetches the mart's daily bars whatever bar size .env's IBKR_BAR_SIZE gives.
    command = shlex.split(re.search(r"\((make ingest [^)]*)\)", message).group(1))
    assert command[:2] == ["make", "ingest"] and command[2].startswith("ARGS=")
    hinted = ingest_cli.build_parser().parse_args(shlex.split(command[2].removeprefix("ARGS=")))
    assert (hinted.months, hinted.bar_size) == (43, "1 day")


def test_missing_folds_are_refused_with_a_hint(mart_warehouse: ConnectionSettings) -> None:
    break_mart(mart_warehouse, f"drop table {FOLDS}")
    with pytest.raises(WarehouseNotProvisioned, match="marts.walk_forward_folds does not exist yet.*make ingest.*dbt"):
        check_mart_contract(mart_warehouse, TERMS)


def test_folds_trainer_may_not_read_are_refused(mart_warehouse: ConnectionSettings) -> None:
    break_mart(mart_warehouse, f"revoke select on {FOLDS} from trainer")
    with pytest.raises(ContractViolation) as refused:
        check_mart_contract(mart_warehouse, TERMS)
    (failure,) = refused.value.failures
    assert failure.startswith(f"{FOLDS} exists and trainer may read it") and "make dbt-build" in failure


def _config(tmp_path: Path, **overrides: object):
    values = {
        "mart_yaml": write_mart_yaml(tmp_path / "training_bars.yml"),
        "runs_dir": tmp_path / "runs",
        "run_id": "refused",
        "timesteps": 256,
        "n_steps": 64,
        "batch_size": 64,
        "n_envs": 2,
        "progress_bar": False,
        "checkpoint_freq": 0,
    }
    values.update(overrides)
    return load_config(None, values)


@pytest.mark.parametrize("breakage", ["null feature", "duplicate key", "test session in validation"])
def test_training_refuses_a_broken_mart(mart_warehouse: ConnectionSettings, tmp_path: Path, breakage: str) -> None:
    statement, expectation = BREAKAGES[breakage]
    break_mart(mart_warehouse, statement)
    config = _config(tmp_path)
    with pytest.raises(ContractViolation) as refused:
        run_training(config, mart_warehouse)
    assert any(failure.startswith(expectation) for failure in refused.value.failures)
    run_dir = tmp_path / "runs" / "refused"
    assert not list(run_dir.rglob("model.zip"))
    with connect(mart_warehouse) as conn:
        assert conn.execute("select count(*) from ml.walk_forward_runs").fetchone()[0] == 0


def test_cli_exits_non_zero_listing_the_failed_expectations(
    mart_warehouse: ConnectionSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    break_mart(mart_warehouse, BREAKAGES["null feature"][0])
    break_mart(mart_warehouse, BREAKAGES["duplicate key"][0])
    for name, value in mart_warehouse.libpq_env().items():  # the CLI finds the test database like any server
        monkeypatch.setenv(name, value)
    yaml_path = write_mart_yaml(tmp_path / "training_bars.yml")
    with caplog.at_level(logging.ERROR):
        status = cli.main(
            [
                "--mart-yaml",
                str(yaml_path),
                "--runs-dir",
                str(tmp_path / "runs"),
                "--timesteps",
                "64",
                "--no-progress-bar",
            ]
        )
    assert status == ExitCode.CONTRACT
    assert "rsi_14 has no nulls" in caplog.text
    assert "(symbol, session_date) is unique" in caplog.text
    assert not any((tmp_path / "runs").iterdir()), "a run refused before training leaves no run folder behind"


def test_cli_names_a_fold_that_is_not_there_in_one_line(
    mart_warehouse: ConnectionSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name, value in mart_warehouse.libpq_env().items():
        monkeypatch.setenv(name, value)
    arguments = ["--mart-yaml", str(write_mart_yaml(tmp_path / "training_bars.yml")), "--fold", "7"]
    with caplog.at_level(logging.ERROR):
        status = cli.main([*arguments, "--runs-dir", str(tmp_path / "runs"), "--no-progress-bar"])
    assert status == ExitCode.CONFIG
    (record,) = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert (
        record.getMessage() == ("marts.walk_forward_folds has no fold 7 (its folds: [1, 2]): choose --fold")
        and record.exc_info is None
    )


def test_the_contract_reads_as_trainer(mart_warehouse: ConnectionSettings) -> None:
    import sqlalchemy

    from training.contract import gx_connection_string

    engine = sqlalchemy.create_engine(gx_connection_string(mart_warehouse))
    try:
        with engine.connect() as connection:
            assert connection.execute(sqlalchemy.text("select current_user")).scalar_one() == "trainer"
            with pytest.raises(sqlalchemy.exc.ProgrammingError) as denied:
                connection.execute(sqlalchemy.text("select * from raw.ibkr_bars limit 1"))
            assert isinstance(denied.value.orig, psycopg.errors.InsufficientPrivilege)
    finally:
        engine.dispose()


@pytest.mark.parametrize("password", ["pass word", "Wx9 p'a\"ss@w%rd:k/ey+", "tab\there é"])
def test_any_password_reaches_great_expectations(password: str) -> None:
    # SQLAlchemy renders a space in the login part unencoded, and Great Expectations then refused the URL
    # ("userinfo required in URL but missing"): training died with a traceback on a server whose password has one.
    import warnings

    from sqlalchemy.engine import make_url

    from training.contract import gx_connection_string

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from great_expectations.datasource.fluent import PostgresDatasource

    settings = ConnectionSettings(
        host="db.example.com", port=5432, user="quant user", password=password, dbname="warehouse", embedded=False
    )
    datasource = PostgresDatasource(name="warehouse", connection_string=gx_connection_string(settings))
    url = make_url(str(datasource.connection_string))
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "quant user",
        password,
        "db.example.com",
        5432,
        "warehouse",
    )
    # The project's session settings (DateStyle, float digits, time zone: warehouse_db.settings.SESSION_SETTINGS) first.
    assert url.query["options"] == f"{settings.session_options()} -c role=trainer -c search_path=marts"


@pytest.mark.parametrize("dbname", ["Trading DB", "my-warehouse", "o'brien", "entrepôt", "a?b#c/d%41e"])
def test_any_database_name_and_socket_directory_reach_great_expectations(dbname: str) -> None:
    # SQLAlchemy renders a space in the database name unencoded, and Great Expectations then refused the URL ("extra
    # characters found after valid URL"): training died with a pydantic traceback on a database named `Trading DB`.
    import warnings

    from sqlalchemy.engine import make_url

    from training.contract import gx_connection_string

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from great_expectations.datasource.fluent import PostgresDatasource

    settings = ConnectionSettings(
        host="/run/post gres", port=5433, user="Trainer Ü", password="-p w", dbname=dbname, embedded=False
    )
    datasource = PostgresDatasource(name="warehouse", connection_string=gx_connection_string(settings))
    url = make_url(str(datasource.connection_string))
    assert (url.username, url.password, url.port, url.database) == ("Trainer Ü", "-p w", 5433, dbname)
    assert url.query["host"] == "/run/post gres"  # libpq prefers it to the URL's stand-in localhost


def test_a_missing_mart_is_refused_with_a_hint(warehouse: ConnectionSettings) -> None:
    # Nothing built yet is a warehouse problem (the CLI's exit 4), not a broken contract.
    with pytest.raises(WarehouseNotProvisioned, match="marts.training_bars does not exist yet.*make ingest.*dbt"):
        check_mart_contract(warehouse, TERMS)


def test_a_mart_schema_that_a_stopped_dbt_run_left_is_a_missing_mart(warehouse: ConnectionSettings) -> None:
    """`dbt build` before anything was ingested stops at its first hook, after creating the marts schema and before
    its last step grants the trainer USAGE on it: the job's next run ended in a traceback ("permission denied for
    schema marts") instead of the line that says what to run."""
    from training.mart import read_build_marker

    with connect(warehouse, autocommit=True) as conn:
        conn.execute(f"set role {schemas.TRANSFORMER_ROLE}")
        conn.execute(f"create schema {schemas.MARTS}")
    assert read_build_marker(warehouse) is None
    with pytest.raises(WarehouseNotProvisioned, match="marts.training_bars does not exist yet.*make ingest.*dbt"):
        check_mart_contract(warehouse, TERMS)
