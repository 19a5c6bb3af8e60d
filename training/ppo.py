"""PPO from stable-baselines3 on vectorised trading environments: the environments, the model (new, or resumed with
the sessions it has seen checked against the fold), the memory it needs, the learn loop."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psutil
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from training.callbacks import StepsPerSecond, TqdmProgressBar
from training.config import TrainConfig
from training.envs import EnvSettings, make_env
from training.envs.batched_env import NativeVecEnv
from training.folds import Fold
from training.market_data import SymbolSeries

logger = logging.getLogger(__name__)


class ModelFileError(ValueError):
    """The model zip given to --resume cannot be loaded for this run (another SB3 format, observation space, ...)."""


class ModelHasSeenHeldOutSessions(ModelFileError):
    """The model given to --resume trained on (or was selected on) sessions of this fold's test split."""


SESSIONS_SEEN_UNTIL = "sessions_seen_until"
"""Attribute of a model, saved in its zip, checkpoints included: the last session (ISO date) it trained on or was
selected on. --resume refuses a model whose sessions reach into the fold's test split."""


def mark_seen(model: PPO, last_session: date) -> None:
    """Record that ``model`` has now seen sessions up to ``last_session`` (never moves the mark back)."""
    seen = getattr(model, SESSIONS_SEEN_UNTIL, None)
    if seen is None or date.fromisoformat(seen) < last_session:
        setattr(model, SESSIONS_SEEN_UNTIL, last_session.isoformat())


def check_unseen(model: PPO, fold: Fold, path: Path) -> None:
    """Refuse to go on training ``model`` (from ``path``) on ``fold`` if it has seen any of the fold's test sessions:
    a later fold's checkpoint resumed on an earlier fold has trained on that fold's test sessions, and its test
    result would be look-ahead. Validation sessions seen make only the checkpoint selection optimistic: a warning."""
    seen = getattr(model, SESSIONS_SEEN_UNTIL, None)
    if seen is None:
        logger.warning(
            "--resume %s: the model does not say which sessions it has seen (it was not saved by this project's "
            "training): make sure none is on or after %s, where fold %d's test split begins",
            path,
            fold.test.start,
            fold.fold_id,
        )
        return
    try:
        last_seen = date.fromisoformat(seen)
    except (TypeError, ValueError):  # the zip's data is JSON anyone can edit: one line, not a traceback
        raise ModelFileError(
            f"--resume {path}: its {SESSIONS_SEEN_UNTIL} {seen!r} is not a date (YYYY-MM-DD)"
        ) from None
    if last_seen >= fold.test.start:
        raise ModelHasSeenHeldOutSessions(
            f"--resume {path}: the model has seen sessions up to {seen}, and fold {fold.fold_id}'s test split begins "
            f"on {fold.test.start}: resume it on the fold it was trained on (--fold) or a later one"
        )
    if last_seen >= fold.validation.start:
        logger.warning(
            "--resume %s: the model has seen sessions up to %s, in fold %d's validation split (from %s): the "
            "checkpoint selection on validation will be optimistic",
            path,
            seen,
            fold.fold_id,
            fold.validation.start,
        )


class SettingsTooLarge(MemoryError):
    """The settings ask for more memory than this machine has available (e.g. --n-envs 100000000)."""


#: Numbers SB3's rollout buffer holds per step besides the observation: action, reward, return, episode start,
#: value, log-probability and advantage.
ROLLOUT_NUMBERS_PER_STEP = 7
#: Bytes one environment costs besides its rollout (its state, random generator and SB3's bookkeeping): a
#: generous round figure; about 0.2 kB was measured for the batched environment's state.
BYTES_PER_ENVIRONMENT = 4096


def memory_needed(config: TrainConfig, observation_size: int) -> int:
    """Bytes one PPO training needs at least: its rollout buffer, twice (SB3 flattens a copy for the update), each
    environment's state, and the policy and value networks with their gradients and Adam's two moments (float32)."""
    rollout = config.n_steps * config.n_envs * (observation_size + ROLLOUT_NUMBERS_PER_STEP) * 4 * 2
    layers = [observation_size, *config.net_arch]
    parameters = 2 * sum((inputs + 1) * outputs for inputs, outputs in zip(layers, layers[1:], strict=False))
    activations = 2 * config.batch_size * sum(config.net_arch) * 4 * 3  # forward and backward, both networks
    return rollout + config.n_envs * BYTES_PER_ENVIRONMENT + parameters * 4 * 4 + activations


def check_memory(
    config: TrainConfig, observation_size: int, available: int | None = None, available_is: str = "is available"
) -> None:
    """Refuse settings that cannot fit in memory before anything is allocated.

    Without this an absurd value (a typo like --n-envs 100000000) ended in a NumPy traceback, or in the kernel's
    out-of-memory killer (status 137, no word) while the environments were being built. ``available_is`` says what
    ``available`` is (the Ray runner checks against the most memory any node of the cluster offers one task).
    """
    available = available_memory() if available is None else available
    needed = memory_needed(config, observation_size)
    if needed > available:
        raise SettingsTooLarge(
            f"PPO with n_envs {config.n_envs}, n_steps {config.n_steps}, batch_size {config.batch_size} and net_arch "
            f"{list(config.net_arch)} needs at least {size_text(needed)} of memory; {size_text(available)} {available_is}"
        )


CGROUP_ROOT = Path("/sys/fs/cgroup")
#: A container's memory limit and use: cgroup v2's files, then v1's. psutil sees only the host's memory.
CGROUP_MEMORY_FILES = (
    ("memory.max", "memory.current"),
    ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
)


def available_memory(cgroup_root: Path = CGROUP_ROOT) -> int:
    """Bytes this process may still allocate: the machine's available memory, or less in a container whose memory
    limit (cgroup) is nearer; the kernel kills a container's process at its limit, whatever the host has free."""
    available = psutil.virtual_memory().available
    for limit_file, usage_file in CGROUP_MEMORY_FILES:
        try:
            limit = (cgroup_root / limit_file).read_text().strip()
            usage = int((cgroup_root / usage_file).read_text())
        except (OSError, ValueError):
            continue
        if limit.isdigit():  # v2 writes "max" for no limit; v1 a number near 2^63
            available = min(available, max(int(limit) - usage, 0))
        break
    return available


def size_text(size: int) -> str:
    return f"{size / 2**30:,.1f} GiB" if size >= 2**30 else f"{size / 2**20:,.1f} MiB"


def make_training_env(config: TrainConfig, series: Sequence[SymbolSeries], settings: EnvSettings) -> VecEnv:
    """``config.n_envs`` environments over the train series, each sampling its own symbol per episode.

    'batched' is the native environment stepped in one NumPy call (envs/batched_env.py); 'dummy' and 'subproc' are
    SB3's own ``make_vec_env`` with its ``DummyVecEnv`` / ``SubprocVecEnv`` over single environments of
    ``config.env``. Seeding happens through the model (PPO(seed=s) seeds environment i with s + i).
    """
    series = list(series)
    if config.vec_env == "batched":
        return NativeVecEnv(series, settings, config.n_envs)
    return make_vec_env(
        make_env,
        n_envs=config.n_envs,
        env_kwargs={"kind": config.env, "series": series, "settings": settings},
        vec_env_cls=SubprocVecEnv if config.vec_env == "subproc" else DummyVecEnv,
    )


def build_model(
    config: TrainConfig, env: VecEnv, seed: int, tensorboard_dir: Path | None = None, resume: Path | None = None
) -> PPO:
    """A fresh PPO seeded with ``seed``, or the checkpoint ``resume`` attached to ``env`` and reseeded.

    A resumed model trains on with this run's hyperparameters (``--n-steps``, ``--learning-rate``, ...), the ones its
    configuration records; SB3 would keep the checkpoint's. Its network must be the one ``--net-arch`` describes.
    """
    tensorboard_log = str(tensorboard_dir) if tensorboard_dir is not None else None
    if resume is not None:
        logger.info("resuming from %s", resume)
        try:
            model = PPO.load(
                resume, env=env, device=config.device, tensorboard_log=tensorboard_log, **hyperparameters(config)
            )
        except Exception as error:  # noqa: BLE001 - whatever SB3 raises on this file, the file is what is wrong
            text = str(error).strip().splitlines()
            raise ModelFileError(
                f"--resume {resume}: stable-baselines3 cannot load this model for this run: "
                f"{type(error).__name__}: {text[0] if text else ''}"
            ) from None
        saved = list(model.policy_kwargs.get("net_arch") or [])
        if saved != list(config.net_arch):
            raise ModelFileError(
                f"--resume {resume}: the model's network has layers {saved}, not --net-arch {list(config.net_arch)}: "
                f"give --net-arch {' '.join(map(str, saved))}"
            )
        model.set_random_seed(seed)
        return _quiet(model)
    return _quiet(
        PPO(
            "MlpPolicy",
            env,
            **hyperparameters(config),
            policy_kwargs={"net_arch": list(config.net_arch)},
            tensorboard_log=tensorboard_log,
            seed=seed,
            device=config.device,
            verbose=0,
        )
    )


def _quiet(model: PPO) -> PPO:
    """A model that writes no log unless TensorBoard is asked for. SB3's default logger, silent at verbose 0, still
    creates an empty folder in the temporary directory (/tmp/SB3-<date>) at every learn(): one per task, for good."""
    if model.tensorboard_log is None:
        model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def hyperparameters(config: TrainConfig) -> dict[str, float | int]:
    """PPO's settings from the configuration: for a new model, and over a resumed one's."""
    return {
        "learning_rate": config.learning_rate,
        "n_steps": config.n_steps,
        "batch_size": config.batch_size,
        "n_epochs": config.n_epochs,
        "gamma": config.gamma,
        "gae_lambda": config.gae_lambda,
        "clip_range": config.clip_range,
        "ent_coef": config.ent_coef,
        "vf_coef": config.vf_coef,
        "max_grad_norm": config.max_grad_norm,
    }


@dataclass(frozen=True)
class TrainingStats:
    steps: int
    """Environment steps taken by this learn() call."""
    wall_seconds: float
    steps_per_second: float


def learn(
    model: PPO,
    timesteps: int,
    callbacks: Sequence[BaseCallback] = (),
    progress_bar: bool = False,
    resumed: bool = False,
) -> TrainingStats:
    """Train for ``timesteps`` more steps with a speed logger, an optional progress bar and ``callbacks``."""
    speed = StepsPerSecond()
    everything: list[BaseCallback] = [speed, *callbacks]
    if progress_bar:  # first, so that the bar is closed before the others log their last line
        everything.insert(0, TqdmProgressBar())
    model.learn(total_timesteps=timesteps, callback=everything, reset_num_timesteps=not resumed, tb_log_name="ppo")
    return TrainingStats(
        steps=speed.steps,
        wall_seconds=speed.wall_seconds,
        steps_per_second=speed.steps_per_second,
    )
