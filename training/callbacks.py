"""stable-baselines3 callbacks: model selection on validation, a tqdm progress bar (SB3's own needs rich, which is
not installed) and a steps-per-second logger."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from tqdm.auto import tqdm

from command_line import progress_disabled

logger = logging.getLogger(__name__)


class TqdmProgressBar(BaseCallback):
    """A progress bar over the environment steps of this ``learn()`` call."""

    def __init__(self) -> None:
        super().__init__()
        self._bar: tqdm | None = None

    def _on_training_start(self) -> None:
        # learn() has already added the steps a resumed model had taken to total_timesteps.
        total = self.locals["total_timesteps"] - self.model.num_timesteps
        # PPO trains in whole rollouts (n_steps x n_envs steps): 200000 asked for is 200704 at 8 x 256.
        rollout = self.model.n_steps * self.training_env.num_envs
        total = -(-total // rollout) * rollout
        self._bar = tqdm(total=total, unit="step", dynamic_ncols=True, desc="PPO", disable=progress_disabled(True))

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


class ValidationSelection(BaseCallback):
    """Model selection on validation, like SB3's EvalCallback: every ``eval_freq`` environment steps (and once at the
    end of training) the current policy is scored by ``score`` and the best weights so far are kept in memory.

    ``score`` replays the fold's validation sessions only; nothing here can reach a test session. A NaN score counts
    as worse than any number; ties keep the earlier checkpoint. :meth:`restore_best` loads the kept weights.
    """

    def __init__(self, score: Callable[[BaseAlgorithm], float], eval_freq: int) -> None:
        super().__init__()
        if eval_freq < 1:
            raise ValueError("eval_freq must be >= 1")
        self._score = score
        self.eval_freq = eval_freq
        self.history: list[tuple[int, float]] = []
        """(environment steps, validation score) of every checkpoint scored, in order."""
        self.best_step: int | None = None
        self.best_score = -math.inf
        self._best_state: dict[str, torch.Tensor] | None = None
        self._next_evaluation = 0

    def _on_training_start(self) -> None:
        self._start = self.model.num_timesteps
        self._next_evaluation = self._start + self.eval_freq

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next_evaluation:
            self._evaluate()
            periods = (self.num_timesteps - self._start) // self.eval_freq + 1
            self._next_evaluation = self._start + periods * self.eval_freq
        return True

    def _on_training_end(self) -> None:
        if not self.history or self.history[-1][0] != self.num_timesteps:
            self._evaluate()

    def _evaluate(self) -> None:
        score = float(self._score(self.model))
        self.history.append((int(self.num_timesteps), score))
        comparable = score if math.isfinite(score) else -math.inf
        if self._best_state is None or comparable > self.best_score:
            self.best_score = comparable
            self.best_step = int(self.num_timesteps)
            self._best_state = {name: value.detach().clone() for name, value in self.model.policy.state_dict().items()}
        logger.debug(
            "validation score %.4f at %d steps (best %.4f at %s)",
            score,
            self.num_timesteps,
            self.best_score,
            self.best_step,
        )

    def restore_best(self, model: BaseAlgorithm) -> None:
        if self._best_state is None:
            raise RuntimeError("no checkpoint was scored on validation (train for at least one step)")
        model.policy.load_state_dict(self._best_state)
