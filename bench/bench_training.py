"""Training speed: the native environment vs TensorTrade, PPO with each, and the wall time of `make train`.

All on the same mart, in one run: a synthetic mart shaped like the real one (150 symbols x one year of daily
bars: the warm-up sessions dropped, one walk-forward fold laid out over the rest), or with --real-mart the
configured warehouse's marts.training_bars and its latest fold (its dbt YAML gives the features).

1. environment steps per second with random actions (seeded), native vs TensorTrade (target: native >= 100x);
2. PPO steps per second with each environment (short runs of the default PPO settings);
3. the wall time of `python -m training` with the default configuration (what `make train` runs), as a separate
   process on a scratch copy of the mart (target: under 10 minutes on 2 cores).

    python bench/bench_training.py [--symbols 150] [--sessions 252] [--real-mart] [--skip-full-run]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from devtools.scratch_database import scratch_database
from devtools.synthetic_mart import WARMUP_SESSIONS, synthetic_mart, with_split, write_mart, write_mart_yaml
from training.config import TrainConfig
from training.envs import EnvSettings, make_env
from training.features import read_mart_schema
from training.folds import Fold
from training.job import seed_everything
from training.market_data import FeatureScaler, build_series
from training.ppo import build_model, make_vec_env
from warehouse_db import connect
from warehouse_db.provision import provision

RESULTS = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent


def env_steps_per_second(kind: str, series: list, settings: EnvSettings, steps: int, seed: int = 0) -> float:
    env = make_env(kind, series, settings)
    actions = np.random.default_rng(seed).integers(0, 2, steps).tolist()
    env.reset(seed=seed)
    started = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - started
    env.close()
    return steps / elapsed


def ppo_steps_per_second(kind: str, series: list, settings: EnvSettings, steps: int, config: TrainConfig) -> float:
    vec_env = make_vec_env(kind, series, settings, config.n_envs, config.vec_env)
    try:
        with tempfile.TemporaryDirectory() as folder:
            model = build_model(config, vec_env, Path(folder))
            started = time.perf_counter()
            model.learn(total_timesteps=steps)
            return model.num_timesteps / (time.perf_counter() - started)
    finally:
        vec_env.close()


def full_run_seconds(mart: pd.DataFrame, mart_yaml: Path, runs_dir: Path) -> tuple[float, int]:
    """Wall time of `python -m training` (defaults) against a scratch database holding ``mart``."""
    with scratch_database("bench_training") as settings:
        with connect(settings) as conn:
            provision(conn)
            write_mart(conn, mart)
        env = {**os.environ, **settings.libpq_env()}
        command = [
            sys.executable,
            "-m",
            "training",
            "--mart-yaml",
            str(mart_yaml),
            "--runs-dir",
            str(runs_dir),
            "--no-progress-bar",
        ]
        started = time.perf_counter()
        process = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if process.returncode != 0:
            raise RuntimeError(f"python -m training failed ({process.returncode}):\n{process.stderr[-4000:]}")
        return elapsed, process.returncode


def load_real_mart() -> tuple[pd.DataFrame, Path, Fold]:
    from training.features import DEFAULT_MART_YAML
    from training.mart import read_mart
    from warehouse_db import resolve_settings

    snapshot = read_mart(resolve_settings(), read_mart_schema(DEFAULT_MART_YAML))
    return snapshot.frame, DEFAULT_MART_YAML, snapshot.folds[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=150)
    parser.add_argument("--sessions", type=int, default=252, help="sessions of bars per symbol (one year: 252)")
    parser.add_argument("--real-mart", action="store_true", help="use the configured warehouse's mart instead")
    parser.add_argument("--native-steps", type=int, default=300_000)
    parser.add_argument("--tensortrade-steps", type=int, default=10_000)
    parser.add_argument("--ppo-steps", type=int, default=16_384)
    parser.add_argument("--skip-full-run", action="store_true", help="skip the wall time of the default run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    if args.real_mart:
        mart, mart_yaml, fold = load_real_mart()
        source = "marts.training_bars of the configured warehouse"
    else:
        # dbt drops the warm-up sessions: mart rows = sessions - warm-up.
        mart, fold = synthetic_mart(args.symbols, args.sessions - WARMUP_SESSIONS, seed=7), None
        mart_yaml = write_mart_yaml(Path(tempfile.mkdtemp()) / "training_bars.yml")
        source = f"synthetic, {args.symbols} symbols x {args.sessions} sessions of bars"
    schema = read_mart_schema(mart_yaml)
    config = TrainConfig(mart_yaml=mart_yaml)
    seed_everything(config.seed, config.torch_threads)  # as the job does: one torch thread
    labelled = with_split(mart, fold)  # the rows of the latest fold (synthetic: the one fold a year holds)
    scaler = FeatureScaler.fit(labelled[labelled["split"] == "train"], schema.feature_names, config.observation_clip)
    train = build_series(labelled, "train", scaler)
    settings = EnvSettings.from_bps(
        config.window, config.initial_cash, config.commission_bps, config.slippage_bps, config.observation_clip
    )
    rows = labelled.groupby("split").size().to_dict()
    print(
        f"mart: {source}; rows per split {rows}; {len(train)} train episodes of "
        f"{int(np.mean([len(s) for s in train])) - config.window} steps; window {config.window}, "
        f"{len(schema.feature_names)} features"
    )

    results: dict = {"mart": source, "rows_per_split": rows, "window": config.window, "cpu_count": os.cpu_count()}
    native = env_steps_per_second("native", train, settings, args.native_steps)
    tensortrade = env_steps_per_second("tensortrade", train, settings, args.tensortrade_steps)
    results["env_steps_per_second"] = {"native": native, "tensortrade": tensortrade, "ratio": native / tensortrade}
    print(
        f"env steps/s, random actions:  native {native:>10,.0f}   tensortrade {tensortrade:>8,.0f}   "
        f"ratio {native / tensortrade:6.1f}x (target >= 100x)"
    )

    ppo_native = ppo_steps_per_second("native", train, settings, args.ppo_steps, config)
    ppo_tensortrade = ppo_steps_per_second("tensortrade", train, settings, args.ppo_steps, config)
    results["ppo_steps_per_second"] = {
        "native": ppo_native,
        "tensortrade": ppo_tensortrade,
        "ratio": ppo_native / ppo_tensortrade,
        "n_envs": config.n_envs,
        "vec_env": config.vec_env,
        "steps": args.ppo_steps,
    }
    print(
        f"PPO steps/s ({config.n_envs} {config.vec_env} envs): native {ppo_native:>8,.0f}   "
        f"tensortrade {ppo_tensortrade:>8,.0f}   ratio {ppo_native / ppo_tensortrade:6.1f}x"
    )

    if not args.skip_full_run:
        with tempfile.TemporaryDirectory() as runs_dir:
            seconds, _ = full_run_seconds(mart, mart_yaml, Path(runs_dir))
        results["default_run"] = {"wall_seconds": seconds, "timesteps": config.timesteps, "env": config.env}
        print(
            f"`python -m training` with defaults ({config.timesteps:,} steps, {config.env}): {seconds:,.1f} s "
            f"= {seconds / 60:.2f} min; ratio to the 10-minute target {seconds / 600:.3f}"
        )

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"bench_training_{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
