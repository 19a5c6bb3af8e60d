"""The mart's data contract (Great Expectations, read as trainer): a clean mart passes, each breakage is named,
and training refuses a broken mart before it trains anything."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from devtools.scratch_database import create_database, drop_database
from devtools.synthetic_mart import FEATURE_LOOKBACKS, TARGET, synthetic_mart, write_mart, write_mart_yaml
from ingest.landing import ensure_landing_tables
from training import cli
from training.config import load_config
from training.contract import ContractTerms, ContractViolation, build_expectations, check_mart_contract
from training.job import run_training
from warehouse_db import connect
from warehouse_db.errors import WarehouseNotProvisioned
from warehouse_db.provision import provision
from warehouse_db.settings import ConnectionSettings

TERMS = ContractTerms(
    feature_names=tuple(FEATURE_LOOKBACKS), target=TARGET, embargo_sessions=50, min_sessions_per_split=15
)


@pytest.fixture(scope="module")
def mart() -> pd.DataFrame:
    return synthetic_mart(n_symbols=3, n_sessions=260, seed=21)


@pytest.fixture(scope="module")
def contract_database(embedded_cluster: ConnectionSettings) -> Iterator[ConnectionSettings]:
    """One provisioned database for the module (creating and dropping one per test costs seconds each)."""
    settings = create_database(embedded_cluster, "test_contract")
    with connect(settings) as conn:
        provision(conn)
        ensure_landing_tables(conn)
    yield settings
    drop_database(settings)


@pytest.fixture
def mart_warehouse(contract_database: ConnectionSettings, mart: pd.DataFrame) -> ConnectionSettings:
    """A freshly written (clean) mart for every test: each test breaks it in its own way."""
    with connect(contract_database) as conn:
        write_mart(conn, mart)
    return contract_database


def break_mart(settings: ConnectionSettings, statement: str) -> None:
    with connect(settings) as conn:
        conn.execute(statement)
        conn.commit()


def test_a_clean_mart_meets_the_contract(mart_warehouse: ConnectionSettings) -> None:
    report = check_mart_contract(mart_warehouse, TERMS)
    assert report.failed == []
    assert len(report.passed) == len(build_expectations(TERMS))


BREAKAGES = {
    "null feature": (
        "update marts.training_bars set rsi_14 = null "
        "where (symbol, session_date) = (select symbol, min(session_date) from marts.training_bars group by symbol "
        "order by symbol limit 1)",
        "rsi_14 has no nulls",
    ),
    "duplicate key": (
        "insert into marts.training_bars select * from marts.training_bars where split = 'test' limit 1",
        "(symbol, session_date) is unique",
    ),
    "split overlap": (
        "update marts.training_bars set split = 'train' where split = 'validation' "
        "and session_date = (select max(session_date) from marts.training_bars where split = 'validation')",
        "splits are contiguous date ranges in order: train < validation < test",
    ),
    "embargo too short": (
        "update marts.training_bars set split = 'validation' where split = 'train' "
        "and session_date > (select max(session_date) - 10 from marts.training_bars where split = 'train')",
        "at least 50 XNYS sessions of embargo between consecutive splits",
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
    "unknown split": (
        "update marts.training_bars set split = 'holdout' where split = 'test'",
        "split is one of train, validation, test",
    ),
    "missing split": (
        "delete from marts.training_bars where split = 'test'",
        "every split is present",
    ),
    "too few sessions for a symbol": (
        "delete from marts.training_bars where symbol = 'SYM001' and split = 'validation' "
        "and session_date > (select min(session_date) + 5 from marts.training_bars where split = 'validation')",
        "every symbol has at least 15 sessions in each split",
    ),
    "target null mid-series": (
        f"update marts.training_bars set {TARGET} = null "
        "where session_date = (select min(session_date) from marts.training_bars)",
        f"{TARGET} is null only on a symbol's last session",
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_each_breakage_is_named(mart_warehouse: ConnectionSettings, breakage: str) -> None:
    statement, expectation = BREAKAGES[breakage]
    break_mart(mart_warehouse, statement)
    with pytest.raises(ContractViolation) as refused:
        check_mart_contract(mart_warehouse, TERMS)
    names = [failure.split(" [")[0] for failure in refused.value.failures]
    assert expectation in names, refused.value.failures
    assert expectation in str(refused.value)


def test_a_null_target_on_the_last_session_is_allowed(mart_warehouse: ConnectionSettings) -> None:
    """The next session of the mart's last one is unknown; the target is never observed anyway."""
    break_mart(
        mart_warehouse,
        f"update marts.training_bars set {TARGET} = null "
        "where session_date = (select max(session_date) from marts.training_bars)",
    )
    assert check_mart_contract(mart_warehouse, TERMS).failed == []


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


@pytest.mark.parametrize("breakage", ["null feature", "duplicate key", "split overlap"])
def test_training_refuses_a_broken_mart(mart_warehouse: ConnectionSettings, tmp_path: Path, breakage: str) -> None:
    statement, expectation = BREAKAGES[breakage]
    break_mart(mart_warehouse, statement)
    config = _config(tmp_path)
    with pytest.raises(ContractViolation) as refused:
        run_training(config, mart_warehouse)
    assert any(failure.startswith(expectation) for failure in refused.value.failures)
    run_dir = tmp_path / "runs" / "refused"
    assert not (run_dir / "model.zip").exists()
    with connect(mart_warehouse) as conn:
        assert conn.execute("select count(*) from ml.training_runs").fetchone()[0] == 0


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
    assert status == cli.EXIT_CONTRACT
    assert "rsi_14 has no nulls" in caplog.text
    assert "(symbol, session_date) is unique" in caplog.text


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


def test_a_missing_mart_is_refused_with_a_hint(warehouse: ConnectionSettings) -> None:
    # Nothing built yet is a warehouse problem (the CLI's exit 4), not a broken contract.
    with pytest.raises(WarehouseNotProvisioned, match="marts.training_bars does not exist yet.*make ingest.*dbt"):
        check_mart_contract(warehouse, TERMS)
