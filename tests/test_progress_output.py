"""Progress bars as `make demo`, `make train` and `make walk-forward` draw them: on a terminal only. Where stderr is a
log file or a pipe (`make demo 2>&1 | tee demo.log`, CI), every redraw landed there as a carriage return and another
copy of the bar (some 130 of them in one `make train`), glued to the log lines that already say what finished."""

from __future__ import annotations

import io
import logging
import sys
from types import SimpleNamespace

import pytest

from training.callbacks import TqdmProgressBar
from training.task_runners import _progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def draw_task_bar(stream: io.StringIO, monkeypatch: pytest.MonkeyPatch, enabled: bool = True) -> str:
    monkeypatch.setattr(sys, "stderr", stream)
    with _progress(3, enabled) as bar:
        for _ in range(3):
            bar.update(1)
    return stream.getvalue()


def test_the_task_bar_leaves_nothing_in_a_log(monkeypatch):
    assert draw_task_bar(io.StringIO(), monkeypatch) == ""


def test_the_task_bar_is_drawn_on_a_terminal_unless_turned_off(monkeypatch):
    drawn = draw_task_bar(Terminal(), monkeypatch)
    assert "fold x seed tasks" in drawn and "3/3" in drawn
    assert draw_task_bar(Terminal(), monkeypatch, enabled=False) == ""


def learn_with_bar(asked: int, n_steps: int = 64, n_envs: int = 4) -> TqdmProgressBar:
    """A real PPO (CartPole, a tiny network) learning ``asked`` steps with the bar as its callback."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=0)
    model = PPO("MlpPolicy", env, n_steps=n_steps, batch_size=64, n_epochs=1, policy_kwargs={"net_arch": [8]}, seed=0)
    bar = TqdmProgressBar()
    model.learn(total_timesteps=asked, callback=bar)
    return bar


def test_the_ppo_bar_leaves_nothing_in_a_log(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    learn_with_bar(512)
    assert log.getvalue() == ""


def test_the_ppo_bar_counts_to_the_steps_ppo_takes(monkeypatch):
    """PPO trains in whole rollouts: 600 steps asked for are 3 rollouts of 64 x 4 = 768 steps (200000 asked for are
    200704 at the project's 256 x 8). The bar's total was the steps asked for, and it ended past its end as
    'PPO: 200704step [00:24, ...]' without a percentage."""
    monkeypatch.setattr(sys, "stderr", Terminal())
    bar = learn_with_bar(600)
    assert (bar._bar.total, bar._bar.n) == (768, 768)
    bar = learn_with_bar(512)  # a whole number of rollouts: as asked
    assert (bar._bar.total, bar._bar.n) == (512, 512)


def test_log_lines_on_a_terminal_go_above_the_task_bar(monkeypatch):
    """A line logged while the bar is drawn starts a line of its own (it was appended to the bar's)."""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    handler = logging.StreamHandler(terminal)  # as logging.basicConfig sets it up: stderr
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [handler])
    monkeypatch.setattr(root, "level", logging.INFO)
    from training import task_runners

    queue = SimpleNamespace(unfinished=iter([True, False]).__next__, next_finished=lambda: (None, (None, 42, 1)))
    runner = task_runners.RayRunner()

    def collect(ready, fold, seed, attempt, queue, outcome, bar, selection_metric):
        logging.getLogger("training.task_runners").info("fold 1 seed %d finished", seed)
        bar.update(1)
        return True

    monkeypatch.setattr(runner, "_collect", collect)
    runner._collect_all(queue, 1, task_runners.RunnerOutcome(), "sharpe")
    lines = terminal.getvalue().replace("\r", "\n").splitlines()
    assert "fold 1 seed 42 finished" in lines, lines
