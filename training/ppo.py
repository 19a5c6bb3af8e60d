"""PPO from stable-baselines3 on vectorised trading environments: build, resume, learn, checkpoint."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from training.callbacks import StepsPerSecond, TqdmProgressBar
from training.config import TrainConfig
from training.envs import EnvSettings, make_env
from training.market_data import SymbolSeries

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "ppo"


def make_vec_env(
    kind: str, series: Sequence[SymbolSeries], settings: EnvSettings, n_envs: int, vec_env: str = "dummy"
) -> VecEnv:
    """``n_envs`` copies of the environment, each sampling its own symbol per episode, with episode statistics.

    Seeding happens through the model (PPO(seed=...) seeds copy i with seed + i).
    """
    series = list(series)

    def factory() -> Monitor:
        return Monitor(make_env(kind, series, settings))

    if vec_env == "subproc":
        return SubprocVecEnv([factory] * n_envs)
    return DummyVecEnv([factory] * n_envs)


def build_model(config: TrainConfig, env: VecEnv, tensorboard_dir: Path) -> PPO:
    """A fresh PPO, or the checkpoint at ``config.resume`` attached to ``env`` and reseeded."""
    if config.resume is not None:
        logger.info("resuming from %s", config.resume)
        model = PPO.load(config.resume, env=env, device=config.device, tensorboard_log=str(tensorboard_dir))
        model.set_random_seed(config.seed)
        return model
    return PPO(
        "MlpPolicy",
        env,
        learning_rate=config.learning_rate,
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_range,
        ent_coef=config.ent_coef,
        vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm,
        policy_kwargs={"net_arch": list(config.net_arch)},
        tensorboard_log=str(tensorboard_dir),
        seed=config.seed,
        device=config.device,
        verbose=0,
    )


@dataclass(frozen=True)
class TrainingStats:
    steps: int
    """Environment steps taken by this run."""
    total_steps: int
    """The model's step count (includes a resumed checkpoint's)."""
    wall_seconds: float
    steps_per_second: float


def learn(model: PPO, config: TrainConfig, checkpoint_dir: Path) -> TrainingStats:
    """Train for ``config.timesteps`` more steps with progress, speed and checkpoint callbacks."""
    speed = StepsPerSecond()
    callbacks: list[BaseCallback] = [speed]
    if config.progress_bar:
        callbacks.append(TqdmProgressBar())
    if config.checkpoint_freq > 0:
        callbacks.append(
            CheckpointCallback(
                save_freq=max(config.checkpoint_freq // config.n_envs, 1),
                save_path=str(checkpoint_dir),
                name_prefix=CHECKPOINT_PREFIX,
            )
        )
    model.learn(
        total_timesteps=config.timesteps,
        callback=callbacks,
        reset_num_timesteps=config.resume is None,
        tb_log_name="ppo",
    )
    return TrainingStats(
        steps=speed.steps,
        total_steps=int(model.num_timesteps),
        wall_seconds=speed.wall_seconds,
        steps_per_second=speed.steps_per_second,
    )
