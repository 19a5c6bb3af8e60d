"""One training run, start to finish, in the order it happens (read this file top to bottom).

contract check -> read the mart and its folds -> pick one fold (the latest by default) -> fit the feature scaler on
its train range -> PPO -> replay validation/test with the agent and the baselines -> run folder (model, config,
metrics, plots, report) -> ml.* tables in one transaction.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from stable_baselines3.common.utils import set_random_seed

from training import results_store
from training.config import SPLITS, TrainConfig, dump_config
from training.contract import ContractTerms, check_mart_contract
from training.envs import EnvSettings
from training.evaluation import AGENT, Evaluation, agent_policy, baseline_policies, evaluate
from training.features import MartSchema, read_mart_schema
from training.folds import Fold, select_fold
from training.market_data import FeatureScaler, build_series
from training.mart import MartSnapshot, read_dbt_provenance, read_mart
from training.ppo import TrainingStats, build_model, learn, make_vec_env
from training.report import plot_split, write_metrics_json, write_report_html
from warehouse_db.settings import ConnectionSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    run_id: str
    run_dir: Path
    report_path: Path
    model_path: Path
    mart_hash: str
    evaluation: Evaluation


def new_run_id() -> str:
    # The suffix comes from the OS, not from a seeded generator: two runs with one seed still get two ids.
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def seed_everything(seed: int, torch_threads: int) -> None:
    """Python, NumPy and torch generators, and a fixed thread count (results are reproducible on CPU)."""
    random.seed(seed)
    np.random.seed(seed)
    set_random_seed(seed)
    torch.set_num_threads(torch_threads)


def contract_terms(config: TrainConfig, schema: MartSchema) -> ContractTerms:
    return ContractTerms(
        feature_names=tuple(schema.feature_names),
        target=schema.target,
        min_sessions_per_range=config.window + config.min_episode_steps,
        min_purge_sessions=schema.target_horizon_sessions,
        min_embargo_sessions=config.embargo_sessions or 0,
    )


def fold_rows(snapshot: MartSnapshot, config: TrainConfig) -> tuple[Fold, pd.DataFrame]:
    """The chosen fold and the mart rows in its ranges, with a ``split`` column naming each row's range.

    A symbol with fewer than window + min_episode_steps rows in a range (listed late, say) sits out that range.
    """
    fold = select_fold(snapshot.folds, config.fold)
    rows = fold.labelled_rows(snapshot.frame)
    sizes = rows.groupby(["split", "symbol"])["session_date"].transform("size")
    too_short = sizes < config.window + config.min_episode_steps
    for split, symbol in sorted(set(zip(rows.loc[too_short, "split"], rows.loc[too_short, "symbol"], strict=True))):
        logger.warning("%s has too few %s sessions in fold %d: left out of %s", symbol, split, fold.fold_id, split)
    logger.info(
        "fold %d of %d: train %s, validation %s, test %s",
        fold.fold_id,
        len(snapshot.folds),
        fold.train,
        fold.validation,
        fold.test,
    )
    return fold, rows[~too_short]


def _file_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def run_training(config: TrainConfig, settings: ConnectionSettings) -> RunResult:
    """Train and evaluate once; raises ContractViolation (before training) when the mart breaks its contract."""
    started_at = datetime.now(UTC)
    run_id = config.run_id or new_run_id()
    config = dataclasses.replace(config, run_id=run_id)  # the run folder's config.yaml names its run
    run_dir = config.runs_dir / run_id
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(f"run folder {run_dir} already exists and is not empty: choose another --run-id")
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = _file_log(run_dir)
    try:
        return _run(config, settings, run_id, run_dir, started_at)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def _run(
    config: TrainConfig, settings: ConnectionSettings, run_id: str, run_dir: Path, started_at: datetime
) -> RunResult:
    logger.info("run %s: %s environment, seed %d, %s", run_id, config.env, config.seed, settings.describe())
    dump_config(config, run_dir / "config.yaml")
    if config.save_to_warehouse:
        results_store.ensure_tables(settings)
        if results_store.run_exists(settings, run_id):
            raise FileExistsError(f"ml.training_runs already has a run {run_id!r}: choose another --run-id")

    # 1. The contract, then the rows (as trainer both times).
    schema = read_mart_schema(config.mart_yaml)
    check_mart_contract(settings, contract_terms(config, schema))
    snapshot = read_mart(settings, schema, config.symbols, config.symbols_limit)
    dbt = read_dbt_provenance(config.dbt_run_results)
    fold, frame = fold_rows(snapshot, config)

    # 2. What the environments see: features standardised with the fold's train-range statistics only.
    seed_everything(config.seed, config.torch_threads)
    scaler = FeatureScaler.fit(frame[frame["split"] == "train"], schema.feature_names, config.observation_clip)
    scaler.save(run_dir / "scaler.json")
    series = {split: build_series(frame, split, scaler) for split in SPLITS}
    env_settings = EnvSettings.from_bps(
        config.window, config.initial_cash, config.commission_bps, config.slippage_bps, config.observation_clip
    )

    # 3. PPO.
    train_env = make_vec_env(config.env, series["train"], env_settings, config.n_envs, config.vec_env)
    try:
        model = build_model(config, train_env, run_dir / "tb")
        stats = learn(model, config, run_dir / "checkpoints")
        model_path = run_dir / "model.zip"
        model.save(model_path)
    finally:
        train_env.close()

    # 4. Replays of whole splits: the agent against buy-and-hold, flat and random.
    policies = {AGENT: agent_policy(model, config.eval_deterministic), **baseline_policies(config.seed)}
    evaluation = evaluate(config.env, {split: series[split] for split in config.eval_splits}, env_settings, policies)

    # 5. The run folder.
    finished_at = datetime.now(UTC)
    summary = _summary(config, run_id, snapshot, fold, dbt.to_dict(), stats, started_at, finished_at)
    write_metrics_json(run_dir / "metrics.json", summary, evaluation)
    plots = {split: plot_split(evaluation, split, run_dir) for split in config.eval_splits}
    report_path = run_dir / "report.html"
    write_report_html(report_path, summary, evaluation, plots)
    _log_headline(evaluation, config.eval_splits)

    # 6. The warehouse, all or nothing.
    if config.save_to_warehouse:
        results_store.write_run(
            settings,
            results_store.RunRecord(
                run_id=run_id,
                started_at=started_at,
                finished_at=finished_at,
                status="succeeded",
                env=config.env,
                seed=config.seed,
                timesteps=stats.steps,
                total_timesteps=stats.total_steps,
                steps_per_second=stats.steps_per_second,
                symbols=len(snapshot.symbols),
                mart_rows=snapshot.row_count,
                mart_hash=snapshot.content_hash,
                dbt_invocation_id=dbt.invocation_id,
                dbt_generated_at=dbt.generated_at,
                resumed_from=str(config.resume) if config.resume else None,
                run_dir=str(run_dir.resolve()),
                config=config.to_dict(),
            ),
            evaluation,
        )
    logger.info("report: %s", report_path.resolve())
    return RunResult(run_id, run_dir, report_path, model_path, snapshot.content_hash, evaluation)


def _summary(
    config: TrainConfig,
    run_id: str,
    snapshot: MartSnapshot,
    fold: Fold,
    dbt: dict,
    stats: TrainingStats,
    started_at: datetime,
    finished_at: datetime,
) -> dict:
    return {
        "run_id": run_id,
        "env": config.env,
        "seed": config.seed,
        "symbols": len(snapshot.symbols),
        "mart_rows": snapshot.row_count,
        "mart_hash": snapshot.content_hash,
        "fold": fold.fold_id,
        **{f"{role}_range": str(fold.range(role)) for role in SPLITS},
        "dbt_invocation_id": dbt["invocation_id"],
        "dbt_generated_at": dbt["generated_at"],
        "timesteps": stats.steps,
        "total_timesteps": stats.total_steps,
        "training_seconds": round(stats.wall_seconds, 2),
        "steps_per_second": round(stats.steps_per_second, 1),
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "commission_bps": config.commission_bps,
        "slippage_bps": config.slippage_bps,
        "window": config.window,
        "dbt": dbt,
    }


def _log_headline(evaluation: Evaluation, splits: tuple[str, ...]) -> None:
    for split in splits:
        table: pd.DataFrame = evaluation.wide(split)
        for policy, row in table.iterrows():
            logger.info(
                "%-10s %-12s total return %+7.2f%%  sharpe %6.2f  max drawdown %6.2f%%  exposure %5.1f%%",
                split,
                policy,
                100 * row["total_return"],
                row["sharpe"],
                100 * row["max_drawdown"],
                100 * row["exposure"],
            )
