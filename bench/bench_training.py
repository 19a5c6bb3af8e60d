"""Training speed, each figure a ratio against its baseline measured in the same run.

On one synthetic mart shaped like the demo's (150 symbols x 5 years of daily bars; one fold's train split), or with
--real-mart the configured warehouse's marts.training_bars (its latest fold):

1. environment steps per second with random actions, native vs TensorTrade (target: native >= 100x);
2. vector-environment steps per second at 8 environments: the batched native VecEnv vs SB3's DummyVecEnv over 8
   native environments (and at 64 environments, where batching matters more);
3. PPO steps per second with the default PPO settings at 8 environments, batched VecEnv vs DummyVecEnv
   (target: >= 2x; the update of the networks, not the environment, dominates: see the breakdown);
4. evaluation replays: one split of every symbol with the random baseline's draws, batched vs one single
   environment per episode.

    python bench/bench_training.py [--symbols 150] [--sessions 1260] [--real-mart]
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import _common
import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv

from command_line import OneLineParser, positive_int
from training.baselines import MatchedRandomPolicy
from training.config import TrainConfig
from training.envs import EnvSettings, make_env
from training.envs.batched_env import NativeVecEnv
from training.evaluation import replay, replay_episode
from training.fold_task import env_settings, prepare_fold, seed_everything
from training.market_data import MarketData
from training.ppo import build_model


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


def vec_env(kind: str, series: list, settings: EnvSettings, n_envs: int) -> VecEnv:
    if kind == "batched":
        return NativeVecEnv(series, settings, n_envs)
    return make_vec_env(make_env, n_envs=n_envs, env_kwargs={"kind": "native", "series": series, "settings": settings})


def vec_steps_per_second(kind: str, series: list, settings: EnvSettings, n_envs: int, vector_steps: int) -> float:
    env = vec_env(kind, series, settings, n_envs)
    env.seed(0)
    env.reset()
    actions = np.random.default_rng(0).integers(0, 2, size=(vector_steps, n_envs))
    started = time.perf_counter()
    for action in actions:
        env.step(action)
    elapsed = time.perf_counter() - started
    env.close()
    return vector_steps * n_envs / elapsed


def ppo_steps_per_second(kind: str, series: list, settings: EnvSettings, config: TrainConfig, steps: int) -> dict:
    """PPO steps/s, and the seconds spent collecting rollouts (environment + policy) and updating the networks."""
    env = vec_env(kind, series, settings, config.n_envs)
    try:
        model = build_model(config, env, seed=0)
        spent = {"collect": 0.0, "update": 0.0}
        collect, update = model.collect_rollouts, model.train

        def timed(part: str, method):
            def call(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return method(*args, **kwargs)
                finally:
                    spent[part] += time.perf_counter() - started

            return call

        model.collect_rollouts = timed("collect", collect)
        model.train = timed("update", update)
        started = time.perf_counter()
        model.learn(total_timesteps=steps)
        elapsed = time.perf_counter() - started
        return {"steps_per_second": model.num_timesteps / elapsed, **spent}
    finally:
        env.close()


def replay_seconds(series: list, settings: EnvSettings, draws: int) -> tuple[float, float]:
    """(batched, one environment per episode) seconds to replay every symbol ``draws`` times with random timing."""
    exposure, turnover = np.full(len(series), 0.5), np.full(len(series), 0.1)
    started = time.perf_counter()
    replay("test", series, settings, MatchedRandomPolicy(exposure, turnover, draws, (1,)))
    batched = time.perf_counter() - started
    env = make_env("native", series, settings)
    rng = np.random.default_rng(1)
    started = time.perf_counter()
    for _ in range(draws):
        for s in series:
            replay_episode(env, s, lambda obs, t: int(rng.integers(2)))
    return batched, time.perf_counter() - started


def load_mart(args: argparse.Namespace):
    """(MarketData, one fold, source description)."""
    from training.features import DEFAULT_MART_YAML, read_mart_schema

    if args.real_mart:
        from training.mart import read_mart
        from warehouse_db import resolve_settings

        schema = read_mart_schema(DEFAULT_MART_YAML)
        snapshot = read_mart(resolve_settings(), schema)
        fold = max(snapshot.folds, key=lambda f: f.fold_id)
        return MarketData.from_frame(snapshot.frame, schema.feature_names), fold, "marts.training_bars (latest fold)"
    from devtools.synthetic_mart import FEATURE_LOOKBACKS, lay_out_folds, synthetic_mart

    frame = synthetic_mart(args.symbols, args.sessions, seed=7)
    fold = lay_out_folds(frame["session_date"], folds=4, test_sessions=63, validation_sessions=63)[-1]
    source = f"synthetic, {args.symbols} symbols x {args.sessions} sessions (latest of 4 folds)"
    return MarketData.from_frame(frame, list(FEATURE_LOOKBACKS)), fold, source


def main() -> None:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=positive_int, default=150)
    parser.add_argument("--sessions", type=positive_int, default=1260, help="mart sessions per symbol (5 years: 1260)")
    parser.add_argument("--real-mart", action="store_true", help="use the configured warehouse's mart instead")
    parser.add_argument("--native-steps", type=positive_int, default=300_000)
    parser.add_argument("--tensortrade-steps", type=positive_int, default=10_000)
    parser.add_argument("--ppo-steps", type=positive_int, default=32_768)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    data, fold, source = load_mart(args)
    config = TrainConfig(n_envs=8)
    seed_everything(0, config.torch_threads)  # as a task does: one torch thread
    fold_series = prepare_fold(data, fold, config)
    train, test = fold_series.series["train"], fold_series.series["test"]
    settings = env_settings(config)
    print(f"mart: {source}; {len(train)} train series of ~{int(np.mean([len(s) for s in train]))} sessions")
    results: dict = {"mart": source, "cpu_count": os.cpu_count(), "window": config.window}

    native = env_steps_per_second("native", train, settings, args.native_steps)
    tensortrade = env_steps_per_second("tensortrade", train, settings, args.tensortrade_steps)
    results["env_steps_per_second"] = {"native": native, "tensortrade": tensortrade, "ratio": native / tensortrade}
    print(f"env steps/s, random actions:      native {native:>10,.0f}  tensortrade {tensortrade:>8,.0f}  "
          f"ratio {native / tensortrade:6.1f}x (target >= 100x)")  # fmt: skip

    for n_envs in (8, 64):
        batched = vec_steps_per_second("batched", train, settings, n_envs, 20_000 // n_envs * 8)
        dummy = vec_steps_per_second("dummy", train, settings, n_envs, 20_000 // n_envs * 8)
        results[f"vec_env_steps_per_second_{n_envs}"] = {"batched": batched, "dummy": dummy, "ratio": batched / dummy}
        print(f"vector env steps/s, {n_envs:>2} envs:     batched {batched:>10,.0f}  dummy {dummy:>13,.0f}  "
              f"ratio {batched / dummy:6.1f}x")  # fmt: skip

    ppo: dict[str, dict] = {}
    for _ in range(2):  # alternate and keep each one's best run: the machine is shared, noise is large
        for kind in ("dummy", "batched"):
            figures = ppo_steps_per_second(kind, train, settings, config, args.ppo_steps)
            if figures["steps_per_second"] > ppo.get(kind, {}).get("steps_per_second", 0):
                ppo[kind] = figures
    ratio = ppo["batched"]["steps_per_second"] / ppo["dummy"]["steps_per_second"]
    results["ppo_steps_per_second_8_envs"] = {**ppo, "ratio": ratio, "steps": args.ppo_steps}
    print(f"PPO steps/s, 8 envs (defaults):   batched {ppo['batched']['steps_per_second']:>10,.0f}  dummy "
          f"{ppo['dummy']['steps_per_second']:>13,.0f}  ratio {ratio:6.2f}x (target >= 2x)")  # fmt: skip
    for kind, figures in ppo.items():
        total = figures["collect"] + figures["update"]
        print(f"    {kind:>7}: collecting rollouts {figures['collect']:5.1f} s ({figures['collect'] / total:.0%}), "
              f"updating the networks {figures['update']:5.1f} s ({figures['update'] / total:.0%})")  # fmt: skip

    draws = 20
    batched, single = replay_seconds(test, settings, draws)
    results["replay_seconds"] = {"batched": batched, "single": single, "ratio": single / batched, "draws": draws}
    print(f"replay of {len(test)} test series x {draws} draws: batched {batched:6.2f} s  one env per episode "
          f"{single:6.2f} s  ratio {single / batched:6.1f}x")  # fmt: skip

    _common.write_results("bench_training", results)


if __name__ == "__main__":
    main()
