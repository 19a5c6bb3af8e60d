"""A sweep whose trial Ray's memory monitor kills (the node ran low on memory), run as a user runs it:
`python -m training.sweep` in a process of its own, with its own local Ray told to kill workers at once
(RAY_memory_usage_threshold, RAY_memory_monitor_refresh_ms: Ray's own knobs, read by the raylet it starts)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.synthetic_mart import lay_out_folds, mart_database, synthetic_mart, write_mart_yaml
from training.exit_codes import ExitCode
from warehouse_db import connect
from warehouse_db.settings import ConnectionSettings

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ray")]  # Ray, PPO and the warehouse

KILL_EVERY_WORKER = {"RAY_memory_usage_threshold": "0.01", "RAY_memory_monitor_refresh_ms": "50"}
"""Ray's memory monitor, told that 1% of the node's memory in use is too much: it kills any worker that runs a task
or an actor within 50 ms (the driver, never: Ray kills only workers)."""


@pytest.fixture(scope="module")
def sweep_mart(embedded_cluster: ConnectionSettings) -> Iterator[ConnectionSettings]:
    frame = synthetic_mart(n_symbols=3, n_sessions=340, seed=65)
    folds = lay_out_folds(frame["session_date"], folds=3, test_sessions=40, validation_sessions=40)
    with mart_database("test_sweep_memory", frame, folds, embedded_cluster) as settings:
        yield settings


def sweep_command(tmp_path: Path, *flags: str) -> list[str]:
    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}\n", encoding="utf-8")
    return [sys.executable, "-m", "training.sweep", "--runs-dir", str(tmp_path / "runs"), "--space", str(space),
            "--mart-yaml", str(write_mart_yaml(tmp_path / "t.yml")), "--timesteps", "256", "--eval-freq", "256",
            "--n-envs", "2", "--n-steps", "64", "--batch-size", "64", "--n-epochs", "1", "--random-draws", "5",
            "--bootstrap-samples", "100", "--seeds", "1", "--ray-cpus", "1", "--no-progress-bar", *flags]  # fmt: skip


def users_env(settings: ConnectionSettings) -> dict[str, str]:
    """This environment without the test run's Ray, Tune and PostgreSQL settings, and the warehouse's libpq ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "RAY_", "TUNE_")) and k != "DATABASE_URL"}
    return {**env, **settings.libpq_env()}


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def killed_then_resumed(sweep_mart: ConnectionSettings, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Sweep "oom" of one trial, its worker killed for memory, then resumed: the commands' output and what ml.sweeps
    and ml.sweep_trials held after each. The finished sweep is also the one whose final walk-forward the last test
    has Ray kill (a search with one completed trial and no walk-forward yet)."""
    tmp_path = tmp_path_factory.mktemp("sweep_memory")
    env = users_env(sweep_mart)
    killed = run(sweep_command(tmp_path, "--sweep-id", "oom", "--trials", "1", "--max-concurrent", "2",
                               "--no-final-walk-forward"), {**env, **KILL_EVERY_WORKER})  # fmt: skip
    with connect(sweep_mart, role="analyst") as conn:
        killed_sweep = conn.execute("select status, error from ml.sweeps where sweep_id = 'oom'").fetchone()
        killed_trials = conn.execute("select state, error from ml.sweep_trials where sweep_id = 'oom'").fetchall()
    resumed = run(sweep_command(tmp_path, "--resume", "oom", "--max-concurrent", "1"), env)
    with connect(sweep_mart, role="analyst") as conn:
        resumed_sweep = conn.execute(
            "select status, error, trials_completed from ml.sweeps where sweep_id = 'oom'"
        ).fetchone()
        resumed_trials = conn.execute("select trial_number, state, params from ml.sweep_trials where sweep_id = 'oom' "
                                      "order by trial_number").fetchall()  # fmt: skip
    return {"tmp_path": tmp_path, "killed": killed, "killed_sweep": killed_sweep, "killed_trials": killed_trials,
            "resumed": resumed, "resumed_sweep": resumed_sweep, "resumed_trials": resumed_trials}  # fmt: skip


def test_a_trial_ray_kills_for_memory_ends_the_sweep_in_one_line_and_resume_continues_it(
    killed_then_resumed: dict,
) -> None:
    """Ray's memory monitor kills the trial's worker as its actor starts: Tune's traceback reached the terminal, the
    trial was recorded as failed with "unknown error" (it would never run again), and the sweep went on (here: no trial
    scored, status 1). Killed after its actor started, Tune itself raised "Caught unexpected exception" out of
    tuner.fit() (a traceback). Now the sweep stops in one line that says what happened, what to lower and how to
    continue, status 2; the trial is interrupted and runs again on --resume, which finishes the sweep. With one trial
    to run, --max-concurrent 2 ran one at a time: the line once advised --max-concurrent 1, which would change nothing."""
    killed = killed_then_resumed["killed"]
    assert "Traceback" not in killed.stderr, killed.stderr[-5000:]
    assert killed.returncode == ExitCode.CONFIG, killed.stderr[-5000:]
    line = killed.stderr.strip().splitlines()[-1]
    said = line.split(" ERROR training: ", 1)[1]
    assert re.fullmatch(
        r"sweep oom: Ray killed a trial's worker for memory, the node ran low on memory \(1 worker\(s\) were killed "
        r"due to the node running low on memory\. Memory on the node .* was .*GB used / .*GB limit .*\); the finished "
        r"trials stay in ml\.sweep_trials and the killed one runs again on resume: one trial ran at a time: free memory "
        r"on the node and continue with python -m training\.sweep --resume oom, or start a new sweep with settings "
        r"that need less memory \(--n-envs, --n-steps, --batch-size, --net-arch, or their ranges in the search "
        r"space\)",
        said,
    ), line
    assert killed_then_resumed["killed_sweep"] == ("failed", f"TrialKilledForMemory: {said}")
    trials = killed_then_resumed["killed_trials"]
    [(state, error)] = trials
    assert state == "interrupted" and error.startswith("OutOfMemoryError: 1 worker(s) were killed due to the node "
                                                       "running low on memory"), trials  # fmt: skip

    resumed = killed_then_resumed["resumed"]
    assert resumed.returncode == ExitCode.OK, resumed.stderr[-5000:]
    assert resumed.stdout.splitlines()[1].startswith("best trial 2: objective "), resumed.stdout
    assert killed_then_resumed["resumed_sweep"] == ("finished", None, 1)
    trials = killed_then_resumed["resumed_trials"]
    assert [(number, state) for number, state, _ in trials] == [(1, "interrupted"), (2, "completed")]
    assert trials[0][2] == trials[1][2]  # the killed trial ran again with the values it had


def test_tunes_own_error_for_a_worker_killed_for_memory_is_recognised() -> None:
    """Killed after its actor started, the trial's task resolves to Ray's OutOfMemoryError, which Ray Tune 2.60's actor
    manager raises out of tuner.fit() as RuntimeError("Caught unexpected exception: ...") from it (seen in a real run:
    RAY_memory_monitor_refresh_ms=6000 and a long trial; the monitor's first check after the actor starts cannot be
    timed, so the test above gets the kill as the actor starts). The search recognises both shapes, and nothing else."""
    import ray.exceptions

    from training.sweep_tune_logs import killed_for_memory

    oom = ray.exceptions.OutOfMemoryError("1 worker(s) were killed due to the node running low on memory.")
    try:
        raise RuntimeError(f"Caught unexpected exception: {oom}") from oom
    except RuntimeError as tunes:
        assert killed_for_memory(tunes) is oom
    assert killed_for_memory(oom) is oom
    assert killed_for_memory(RuntimeError("Caught unexpected exception: other")) is None
    assert killed_for_memory(None) is None


def test_the_advice_after_a_kill_halves_the_trials_that_ran_at_once() -> None:
    """Several trials at once: the line advises half as many (--max-concurrent); one at a time: freeing memory or less
    memory-hungry settings."""
    import ray.exceptions

    from training.sweep_search import _killed_for_memory_text

    oom = ray.exceptions.OutOfMemoryError("1 worker(s) were killed due to the node running low on memory.\nmore")
    four = _killed_for_memory_text("s 1", 4, oom)
    assert "(1 worker(s) were killed due to the node running low on memory.)" in four
    assert "continue with fewer trials at once: python -m training.sweep --resume 's 1' --max-concurrent 2;" in four
    assert "--max-concurrent 1;" in _killed_for_memory_text("s", 3, oom)
    one = _killed_for_memory_text("s", 1, oom)
    assert "--max-concurrent" not in one and "one trial ran at a time: free memory on the node" in one


def test_a_final_walk_forward_whose_every_task_ray_kills_says_how_to_continue_the_sweep(
    sweep_mart: ConnectionSettings, killed_then_resumed: dict
) -> None:
    """The search done, Ray kills every task of the final walk-forward (each retried once): the line advised
    lowering --n-envs and the like, which a --resume refuses (they define what a trial is), and did not say that
    --resume runs only the walk-forward again. It now says so, status 1; the resume finishes the sweep. The search is
    the finished sweep of the test above (one completed trial, started with --no-final-walk-forward)."""
    env = users_env(sweep_mart)
    tmp_path = killed_then_resumed["tmp_path"]
    searched = killed_then_resumed["resumed"]
    assert searched.returncode == ExitCode.OK, searched.stderr[-5000:]
    killed = run(sweep_command(tmp_path, "--resume", "oom", "--final-walk-forward"), {**env, **KILL_EVERY_WORKER})
    assert "Traceback" not in killed.stderr, killed.stderr[-5000:]
    assert killed.returncode == ExitCode.FAILED, killed.stderr[-5000:]
    said = killed.stderr.strip().splitlines()[-1].split(" ERROR training: ", 1)[1]
    assert re.fullmatch(
        r"all 2 fold x seed tasks failed; the first: OutOfMemoryError: 1 worker\(s\) were killed due to the node "
        r"running low on memory\. .*; every task ran out of memory: continue with fewer at once \(python -m "
        r"training\.sweep --resume oom --ray-cpus N\), which runs only the walk-forward, or start a new sweep with "
        r"settings that need less memory \(--n-envs, --n-steps, --batch-size, --net-arch, or their ranges in the "
        r"search space\)",
        said,
    ), said
    with connect(sweep_mart, role="analyst") as conn:
        sweep = conn.execute("select status, error from ml.sweeps where sweep_id = 'oom'").fetchone()
    assert sweep == ("failed", f"AllTasksFailed: {said}")

    resumed = run(sweep_command(tmp_path, "--resume", "oom", "--final-walk-forward"), env)
    assert resumed.returncode == ExitCode.OK, resumed.stderr[-5000:]
    with connect(sweep_mart, role="analyst") as conn:
        sweep = conn.execute("select status, final_run_id from ml.sweeps where sweep_id = 'oom'").fetchone()
        trials = conn.execute("select trial_number, state from ml.sweep_trials where sweep_id = 'oom' "
                              "order by trial_number").fetchall()  # fmt: skip
    assert sweep[0] == "finished" and sweep[1].startswith("oom-best")
    assert trials == [(1, "interrupted"), (2, "completed")]  # the walk-forward's resume runs no trial


def test_a_sweeps_final_walk_forward_that_failed_says_resume_runs_it_again() -> None:
    """Whatever its tasks failed of, a sweep's final walk-forward says how to run it again; out of memory on a cluster,
    it does not advise --ray-cpus (which sizes only a local Ray)."""
    from training.task_runners import TaskFailure
    from training.walk_forward import AllTasksFailed

    resume = "python -m training.sweep --resume wf"
    bug = str(AllTasksFailed([TaskFailure(1, 42, 2, "ValueError: a bug")], None, resume))
    assert bug.endswith("ValueError: a bug; the sweep's trials are kept: python -m training.sweep --resume wf runs only "
                        "the walk-forward again")  # fmt: skip
    oom = [TaskFailure(1, 42, 2, "OutOfMemoryError: killed", out_of_memory=True)]
    on_cluster = str(AllTasksFailed(oom, "head:6380", resume))
    assert "--ray-cpus" not in on_cluster
    assert "every task ran out of memory: free memory on the cluster's nodes and continue (python -m training.sweep " \
           "--resume wf), which runs only the walk-forward, or start a new sweep" in on_cluster  # fmt: skip
