"""stable-baselines3 callbacks: a tqdm progress bar (SB3's own needs rich, which is not installed) and a
steps-per-second logger."""

from __future__ import annotations

import logging
import time

from stable_baselines3.common.callbacks import BaseCallback
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)


class TqdmProgressBar(BaseCallback):
    """A progress bar over the environment steps of this ``learn()`` call."""

    def __init__(self) -> None:
        super().__init__()
        self._bar: tqdm | None = None

    def _on_training_start(self) -> None:
        # learn() has already added the steps a resumed model had taken to total_timesteps.
        total = self.locals["total_timesteps"] - self.model.num_timesteps
        self._bar = tqdm(total=total, unit="step", dynamic_ncols=True, desc="PPO")

    def _on_step(self) -> bool:
        assert self._bar is not None
        self._bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        if self._bar is not None:
            self._bar.close()


class StepsPerSecond(BaseCallback):
    """Logs environment steps per second (whole learn() call, PPO updates included) after every rollout.

    The figure also goes to TensorBoard as ``time/steps_per_second``; ``steps_per_second`` holds the final value.
    """

    def __init__(self) -> None:
        super().__init__()
        self.steps_per_second = float("nan")
        self.wall_seconds = 0.0
        self.steps = 0

    def _on_training_start(self) -> None:
        self._started = time.perf_counter()
        self._first_step = self.model.num_timesteps

    def _on_step(self) -> bool:
        return True

    def _update(self) -> None:
        self.wall_seconds = time.perf_counter() - self._started
        self.steps = self.model.num_timesteps - self._first_step
        self.steps_per_second = self.steps / self.wall_seconds if self.wall_seconds > 0 else float("nan")

    def _on_rollout_end(self) -> None:
        self._update()
        self.logger.record("time/steps_per_second", self.steps_per_second)
        logger.debug("%d steps, %.0f steps/s", self.model.num_timesteps, self.steps_per_second)

    def _on_training_end(self) -> None:
        self._update()
        logger.info("trained %d steps in %.1f s: %.0f steps/s", self.steps, self.wall_seconds, self.steps_per_second)
