"""Each fold x seed task declares PPO's memory estimate to Ray's scheduler (its `memory` resource): tasks that would
together need more than a node offers never run side by side, and a task no node can ever hold fails fast, in one
line, instead of waiting for ever."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from devtools.synthetic_mart import FEATURE_LOOKBACKS, lay_out_folds, synthetic_mart
from training import cli
from training.config import TrainConfig
from training.envs.spaces import observation_size
from training.exit_codes import ExitCode
from training.fold_task import run_fold_seed
from training.market_data import MarketData
from training.ppo import SettingsTooLarge, check_memory, memory_needed
from training.task_runners import RayRunner
from training.walk_forward import AllTasksFailed

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ray")]  # Ray and PPO

FEATURES = list(FEATURE_LOOKBACKS)
CONFIG = TrainConfig(
    timesteps=256, eval_freq=256, n_envs=4, n_steps=64, batch_size=128, n_epochs=1, random_draws=5,
    progress_bar=False, save_to_warehouse=False,
)  # fmt: skip
TASK_MEMORY = memory_needed(CONFIG, observation_size(CONFIG.window, len(FEATURES)))
NODE_MEMORY = TASK_MEMORY * 3 // 2
"""The local Ray's memory resource: room for one task of CONFIG, not two."""


@pytest.fixture(scope="module")
def ray_with_room_for_one_task() -> Iterator[None]:
    """A local Ray with two CPUs (two tasks could run at once) but memory for one task of CONFIG."""
    import ray

    ray.init(address="local", num_cpus=2, _memory=NODE_MEMORY, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING", _system_config={"worker_niceness": 0})  # fmt: skip
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_mart(n_symbols=4, n_sessions=320, seed=73)


def test_tasks_that_do_not_fit_together_never_run_side_by_side(
    ray_with_room_for_one_task, frame: pd.DataFrame, tmp_path: Path
) -> None:
    import ray

    assert ray.cluster_resources()["CPU"] == 2 and ray.cluster_resources()["memory"] == NODE_MEMORY

    def timed(config, data, fold, seed):
        """Each attempt writes when it started and ended (the workers are other processes)."""
        started = time.time()
        result = run_fold_seed(config, data, fold, seed)
        (tmp_path / f"seed-{seed}").write_text(f"{started} {time.time()}")
        return result

    fold = lay_out_folds(frame["session_date"], folds=1, test_sessions=40, validation_sessions=40)[0]
    seeds = (1, 2, 3)
    outcome = RayRunner(progress_bar=False, task=timed).run(
        CONFIG, MarketData.from_frame(frame, FEATURES), [(fold, seed) for seed in seeds]
    )
    assert sorted(result.seed for result in outcome.results) == list(seeds) and not outcome.failures
    spans = sorted(tuple(map(float, (tmp_path / f"seed-{seed}").read_text().split())) for seed in seeds)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, f"two tasks ran at once: {spans}"  # one ended before the next began


def test_a_task_that_no_node_can_hold_fails_fast_in_one_line(
    ray_with_room_for_one_task, frame: pd.DataFrame, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Ray leaves a task that asks for more memory than any node has pending for ever, without a word."""
    too_large = dataclasses.replace(CONFIG, n_envs=64)
    assert memory_needed(too_large, observation_size(CONFIG.window, len(FEATURES))) > NODE_MEMORY

    def must_not_run(config, data, fold, seed):
        (tmp_path / "ran").touch()
        return run_fold_seed(config, data, fold, seed)

    fold = lay_out_folds(frame["session_date"], folds=1, test_sessions=40, validation_sessions=40)[0]
    started = time.perf_counter()
    with pytest.raises(SettingsTooLarge) as refused:
        RayRunner(progress_bar=False, task=must_not_run).run(too_large, MarketData.from_frame(frame, FEATURES),
                                                              [(fold, 1)])  # fmt: skip
    assert time.perf_counter() - started < 10 and not (tmp_path / "ran").exists()
    # What the command says (training/cli.py): one line naming the settings and what Ray offers, status 2.
    with caplog.at_level(logging.ERROR):
        assert cli.report_user_error(refused.value) == ExitCode.CONFIG == 2
    (line,) = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert "\n" not in line
    assert "n_envs 64, n_steps 64, batch_size 128 and net_arch [64, 64] needs at least" in line, line
    assert "is the most a node of the Ray cluster offers (its memory resource" in line, line


def test_nodes_that_offer_no_memory_resource_get_no_declaration(frame: pd.DataFrame) -> None:
    """`ray start --memory 0` leaves a node without any memory resource: a task that declared memory would never
    start there, so none is declared (each task then checks its own machine); where nodes offer memory, the estimate
    is declared. The nodes are `ray.nodes()` entries as Ray reports them."""
    data = MarketData.from_frame(frame, FEATURES)
    without_memory = [{"Alive": True, "Resources": {"CPU": 2.0, "object_store_memory": 1e9}}]
    assert RayRunner._check_task_memory(CONFIG, data, without_memory) is None
    with_memory = [{"Alive": True, "Resources": {"CPU": 2.0, "memory": float(NODE_MEMORY)}}]
    assert RayRunner._check_task_memory(CONFIG, data, with_memory) == TASK_MEMORY


def test_a_worker_that_dies_is_reported_as_a_dead_worker_not_as_out_of_memory(
    ray_with_room_for_one_task, frame: pd.DataFrame, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker can die of a segfault, os._exit or a kill -9 as well as of the kernel's out-of-memory killer, and Ray
    says only that it died (WorkerCrashedError): its failure says so and names memory as one possible cause, while a
    task refused for memory (Ray's OutOfMemoryError) keeps its memory message."""
    import ray.exceptions

    def dies_or_runs_out_of_memory(config, data, fold, seed):
        (tmp_path / f"seed-{seed}-{os.getpid()}").touch()  # which worker process ran each attempt
        if seed == 1:
            os._exit(3)  # no Python error: the worker process just ends
        raise ray.exceptions.OutOfMemoryError("Task was killed due to the node running low on memory.")

    fold = lay_out_folds(frame["session_date"], folds=1, test_sessions=40, validation_sessions=40)[0]
    with caplog.at_level(logging.WARNING, logger="training.task_runners"):
        outcome = RayRunner(progress_bar=False, retries=1, task=dies_or_runs_out_of_memory).run(
            CONFIG, MarketData.from_frame(frame, FEATURES), [(fold, 1), (fold, 2)]
        )
    assert not outcome.results
    died, refused = sorted(outcome.failures, key=lambda failure: failure.seed)
    assert (died.seed, died.attempts, refused.seed, refused.attempts) == (1, 2, 2, 2)
    assert len(list(tmp_path.glob("seed-1-*"))) == 2  # each attempt's worker really ran it (and really died)
    assert died.error.startswith("WorkerCrashedError: the worker process running the task died without a Python error")
    assert "a crash (a segfault, os._exit), a kill -9, or the kernel's out-of-memory killer" in died.error
    assert refused.error == "OutOfMemoryError: Task was killed due to the node running low on memory."
    retried = [record.getMessage() for record in caplog.records if "retrying" in record.getMessage()]
    assert any("fold 1 seed 1 failed (WorkerCrashedError: the worker process" in line for line in retried), retried
    assert "\n" not in died.error


def test_a_walk_forward_whose_every_task_ran_out_of_memory_says_what_to_lower(
    ray_with_room_for_one_task, frame: pd.DataFrame
) -> None:
    """Every task out of memory, killed by Ray's memory monitor or refused by its own memory check (SettingsTooLarge:
    the machine had less free than the settings need when the task began): the run's one line said only the first
    task's words; it now says what to lower. The task's own check went without the advice (its line begins
    "SettingsTooLarge:", which the advice's test of the failure's words did not know). On a cluster the advice does not
    name --ray-cpus, which sizes only a local Ray. A run whose tasks failed for other reasons too gets no such advice."""
    import ray.exceptions

    def runs_out_of_memory(config, data, fold, seed):
        if seed == 1:
            raise ray.exceptions.OutOfMemoryError("Task was killed due to the node running low on memory.")
        if seed == 2:
            check_memory(config, observation_size(config.window, len(data.feature_names)), available=1)
        raise ValueError("a bug")

    fold = lay_out_folds(frame["session_date"], folds=1, test_sessions=40, validation_sessions=40)[0]
    outcome = RayRunner(progress_bar=False, retries=0, task=runs_out_of_memory).run(
        CONFIG, MarketData.from_frame(frame, FEATURES), [(fold, 1), (fold, 2), (fold, 3)]
    )
    by_seed = {failure.seed: failure for failure in outcome.failures}
    assert by_seed[2].error.startswith("SettingsTooLarge: PPO with n_envs"), by_seed[2]
    assert outcome.ray_address is None  # a local Ray: --ray-cpus sets how many run at once
    out_of_memory = str(AllTasksFailed([by_seed[1], by_seed[2]], outcome.ray_address))
    assert out_of_memory == (
        "all 2 fold x seed tasks failed; the first: OutOfMemoryError: Task was killed due to the node running low on "
        "memory.; every task ran out of memory: run fewer at once (--ray-cpus) or lower --n-envs, --n-steps, "
        "--batch-size or --net-arch"
    )
    assert str(AllTasksFailed([by_seed[2]])).endswith("; every task ran out of memory: run fewer at once (--ray-cpus) "
                                                      "or lower --n-envs, --n-steps, --batch-size or --net-arch")  # fmt: skip
    # On a cluster --ray-cpus is ignored: the advice does not name it.
    assert str(AllTasksFailed([by_seed[1]], "head:6380")).endswith(
        "; every task ran out of memory: lower --n-envs, --n-steps, --batch-size or --net-arch, or free memory on the "
        "cluster's nodes"
    )
    assert "every task ran out of memory" not in str(AllTasksFailed(outcome.failures))
    assert "every task ran out of memory" not in str(AllTasksFailed([by_seed[3]]))
