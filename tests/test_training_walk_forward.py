"""The walk-forward on a local Ray with two worker processes: every fold x seed lands, Ray = serial, failures are
retried once and then reported while the others land, and an unreachable cluster fails fast."""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import html
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from devtools.synthetic_mart import lay_out_folds, mart_database, synthetic_mart, write_mart_yaml
from training import cli, results_schema
from training.config import TrainConfig, WalkForwardConfig, load_config
from training.exit_codes import ExitCode
from training.features import read_mart_schema
from training.fold_task import run_fold_seed
from training.mart import MartSnapshot, read_mart
from training.run_folder import RunFolderError
from training.single_run import run_training
from training.task_runners import (
    BadRayAddress,
    InProcessRunner,
    RayRunner,
    RayUnavailable,
    check_ray_address,
    interruptions_held,
)
from training.tradability import NotEnoughData
from training.walk_forward import WalkForwardResult, run_walk_forward
from warehouse_db import connect
from warehouse_db.errors import WarehouseError
from warehouse_db.settings import REPO_ROOT, ConnectionSettings

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("ray")]  # Ray, PPO and the warehouse

FOLDS, SEEDS = 2, 2


@pytest.fixture(scope="module")
def ray_with_two_workers() -> Iterator[None]:
    """One local Ray for the module: two CPUs, so two worker processes run tasks side by side."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING",
             _system_config={"worker_niceness": 0})  # fmt: skip
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def results_warehouse(embedded_cluster: ConnectionSettings) -> Iterator[ConnectionSettings]:
    """A provisioned database holding a synthetic mart with two folds."""
    frame = synthetic_mart(n_symbols=4, n_sessions=320, seed=61)
    folds = lay_out_folds(frame["session_date"], folds=FOLDS, test_sessions=40, validation_sessions=40)
    with mart_database("test_walk_forward", frame, folds, embedded_cluster) as settings:
        yield settings


@pytest.fixture(scope="module")
def snapshot(results_warehouse: ConnectionSettings, tmp_path_factory) -> MartSnapshot:
    """The mart as the driver reads it, for the runs that skip reading it again."""
    return read_mart(results_warehouse, read_mart_schema(write_mart_yaml(tmp_path_factory.mktemp("yaml") / "t.yml")))


def config(tmp_path: Path, **overrides) -> WalkForwardConfig:
    values = {
        "timesteps": 768, "eval_freq": 256, "n_envs": 4, "n_steps": 64, "batch_size": 128, "n_epochs": 1,
        "random_draws": 10, "bootstrap_samples": 200, "seeds": SEEDS, "progress_bar": False,
        "runs_dir": tmp_path / "runs", "mart_yaml": write_mart_yaml(tmp_path / "training_bars.yml"),
    }  # fmt: skip
    return WalkForwardConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def on_ray(ray_with_two_workers, results_warehouse: ConnectionSettings, tmp_path_factory) -> WalkForwardResult:
    """The walk-forward as the command runs it: contract, mart read once as trainer, tasks on Ray, ml.* rows."""
    tmp_path = tmp_path_factory.mktemp("on_ray")
    return run_walk_forward(config(tmp_path, run_id="on-ray"), results_warehouse, runner=RayRunner(progress_bar=False))


def test_every_fold_and_seed_lands_from_two_ray_workers(
    on_ray: WalkForwardResult, snapshot: MartSnapshot, results_warehouse: ConnectionSettings
) -> None:
    assert on_ray.mart_hash == snapshot.content_hash  # the driver read the mart and its folds
    assert sorted((r.fold_id, r.seed) for r in on_ray.results) == [(1, 42), (1, 43), (2, 42), (2, 43)]
    assert not on_ray.failures and all("/pid " in r.node for r in on_ray.results)
    with connect(results_warehouse, role="analyst") as conn:
        tasks = conn.execute(
            "select fold_id, seed, status, attempts, selected_step > 0 from ml.walk_forward_tasks "
            "where run_id = 'on-ray' order by fold_id, seed"
        ).fetchall()
        assert tasks == [(f, s, "succeeded", 1, True) for f in (1, 2) for s in (42, 43)]
        run = conn.execute(
            "select kind, status, folds, seeds, tasks_succeeded, tasks_failed, verdict, deflated_sharpe "
            "from ml.walk_forward_runs where run_id = 'on-ray'"
        ).fetchone()
        assert run[:6] == ("walk_forward", "succeeded", FOLDS, SEEDS, 4, 0)
        assert run[6] == on_ray.statistics.verdict and "2 folds × 2 seeds" in run[6]
        assert run[7] == pytest.approx(on_ray.statistics.deflated_sharpe.value)
        assert conn.execute(
            "select count(distinct (fold_id, seed, policy)) from ml.walk_forward_equity where run_id = 'on-ray'"
        ).fetchone() == (4 * 5,)
        folds = conn.execute("select count(*) from ml.walk_forward_folds where run_id = 'on-ray'").fetchone()
        assert folds == (FOLDS,)
    report = on_ray.report_path.read_text()
    assert on_ray.statistics.verdict.split(":")[0] in report and report.count("data:image/png;base64,") == 1 + FOLDS
    assert sorted(p.relative_to(on_ray.run_dir).as_posix() for p in on_ray.run_dir.rglob("model.zip")) == [
        f"folds/fold-{f}/seed-{s}/model.zip" for f in (1, 2) for s in (42, 43)
    ]


def test_an_analyst_finds_configurations_whose_lower_bound_beats_buy_and_hold(
    on_ray: WalkForwardResult, results_warehouse: ConnectionSettings
) -> None:
    """The query of the docs: runs whose Sharpe difference to buy-and-hold has a positive lower CI bound."""
    query = """
        select r.config_hash, r.run_id, c.difference, c.ci_low, c.ci_high, c.p_agent_better, c.folds, c.seeds
        from ml.walk_forward_comparisons c
        join ml.walk_forward_runs r using (run_id)
        where c.fold_id is null and c.baseline = 'buy_and_hold' and c.metric = 'sharpe'
        order by c.ci_low desc
    """
    with connect(results_warehouse, role="analyst") as conn:
        rows = {row[1]: row for row in conn.execute(query)}
    comparison = on_ray.statistics.comparison("buy_and_hold", "sharpe")
    row = rows["on-ray"]
    assert row[2:6] == pytest.approx(
        (
            comparison.difference.estimate,
            comparison.difference.low,
            comparison.difference.high,
            comparison.p_agent_better.estimate,
        )  # fmt: skip
    )
    assert row[6:] == (FOLDS, SEEDS) and row[0].startswith("sha256:")


@pytest.mark.parametrize("analysis", ["walk_forward_verdicts.sql", "run_metrics_vs_market.sql"])
def test_the_analyses_of_walk_forward_results_run_as_analyst(
    on_ray: WalkForwardResult, results_warehouse: ConnectionSettings, analysis: str
) -> None:
    query = (REPO_ROOT / "warehouse" / "analyses" / analysis).read_text()
    with connect(results_warehouse, role="analyst") as conn:
        cursor = conn.execute(query)
        columns = [column.name for column in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    mine = [row for row in rows if row["run_id"] == "on-ray"]
    if analysis == "walk_forward_verdicts.sql":
        (row,) = mine
        comparison = on_ray.statistics.comparison("buy_and_hold", "sharpe")
        assert row["evidence_of_beating_buy_and_hold"] == (comparison.difference.low > 0)
        assert row["verdict"] == on_ray.statistics.verdict and (row["folds"], row["seeds"]) == (FOLDS, SEEDS)
    else:
        assert len(mine) == FOLDS * SEEDS * 4 * 5  # folds x seeds x symbols x policies
        assert all(row["test_sessions"] == 40 and row["symbol_return"] is not None for row in mine)


def test_ray_and_serial_runs_give_identical_results(
    on_ray: WalkForwardResult, snapshot, results_warehouse: ConnectionSettings, tmp_path: Path
) -> None:
    serial = run_walk_forward(
        config(tmp_path, save_to_warehouse=False), results_warehouse, runner=InProcessRunner(), snapshot=snapshot
    )
    assert serial.statistics.verdict == on_ray.statistics.verdict
    for a, b in zip(serial.results, on_ray.results, strict=True):
        assert (a.fold_id, a.seed, a.selection_history) == (b.fold_id, b.seed, b.selection_history)
        for split, replays in a.replays.items():
            for policy, replay in replays.items():
                np.testing.assert_array_equal(replay.net_worth, b.replays[split][policy].net_worth)
    pd.testing.assert_frame_equal(
        pd.DataFrame(serial.statistics.policies).drop(columns="size"),
        pd.DataFrame(on_ray.statistics.policies).drop(columns="size"),
    )


ALWAYS_FAILS = "this task always fails: <script>alert('x')</script> & \"é漢\""


def test_a_failing_task_is_retried_once_then_reported_while_the_others_land(
    ray_with_two_workers, snapshot, results_warehouse: ConnectionSettings, tmp_path: Path
) -> None:
    marker = tmp_path / "fold-1-seed-43-failed-once"

    def flaky(config, data, fold, seed):
        """Fold 1 seed 43 fails on its first attempt only; fold 2 seed 42 always fails."""
        if (fold.fold_id, seed) == (1, 43) and not marker.exists():
            marker.touch()
            raise RuntimeError("transient trouble")
        if (fold.fold_id, seed) == (2, 42):
            raise RuntimeError(ALWAYS_FAILS)
        return run_fold_seed(config, data, fold, seed)

    result = run_walk_forward(
        config(tmp_path, run_id="flaky"),
        results_warehouse,
        runner=RayRunner(progress_bar=False, retries=1, task=flaky),
        snapshot=snapshot,
    )
    assert sorted((r.fold_id, r.seed, r.attempts) for r in result.results) == [(1, 42, 1), (1, 43, 2), (2, 43, 1)]
    (failure,) = result.failures
    assert (failure.fold_id, failure.seed, failure.attempts) == (2, 42, 2)
    assert failure.error == f"RuntimeError: {ALWAYS_FAILS}"
    assert result.statistics.size.tasks == 3
    with connect(results_warehouse) as conn:
        assert conn.execute(
            "select status, attempts, error from ml.walk_forward_tasks where run_id = 'flaky' and status = 'failed'"
        ).fetchall() == [("failed", 2, f"RuntimeError: {ALWAYS_FAILS}")]
        assert conn.execute(
            "select status, tasks_failed from ml.walk_forward_runs where run_id = 'flaky'"
        ).fetchone() == (
            "partial",
            1,
        )
    # What a researcher reads after a failed task: the sample adds up, each fold says which seeds it holds, and the
    # plots draw those seeds (before: "2 folds × 2 seeds = 3 fold x seed tasks", and no fold said it had one seed).
    report = result.report_path.read_text(encoding="utf-8")
    # The error is text from outside (any exception's message): escaped, and the page stays self-contained.
    assert f"RuntimeError: {html.escape(ALWAYS_FAILS)}" in report and "<script>" not in report
    assert not re.search(r"(?i)<(script|link|iframe|object|embed)\b|@import|url\(|(src|href)=['\"](?!data:)", report)
    assert "Sample: 2 folds × 1–2 seeds: 3 fold x seed tasks (1 more failed and is left out: fold 2 seed 42)," in report
    assert "(2 folds × 1–2 seeds, " in result.statistics.verdict and html.escape(result.statistics.verdict) in report
    assert "<tr><th>folds</th><td>1, 2</td></tr>" in report and "<tr><th>seeds</th><td>42, 43</td></tr>" in report
    sections = dict(re.findall(r"<section><h3>Fold (\d+)</h3><p>(.*?)</p>", report))
    assert sections["1"].startswith("Sample: 2 seeds (42, 43) × ")
    assert sections["2"].startswith("Sample: 1 seed (43) × ") and "1 seed (42) failed and is left out" in sections["2"]
    plots = re.findall(r"<img alt='([^']*)' src='data:image/png;base64,", report)
    assert len(plots) == 1 + FOLDS
    assert "x: fold (seeds in the statistics) (fold 1 2 seeds, fold 2 1 seed)" in plots[0]
    assert "y: test Sharpe ratio (annualised from " in plots[0]
    for plot, agent in zip(plots[1:], ["agent (2 seeds: 42, 43)", "agent (seed 43)"], strict=True):
        assert "x: test session (exchange date); y: net worth / net worth at the first close" in plot
        assert f"shown: {agent}, buy_and_hold" in plot


def test_a_disk_that_fills_up_during_the_run_is_one_line_and_status_2_and_nothing_lands(
    snapshot, results_warehouse: ConnectionSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing the run folder after the tasks (models, statistics, report) on a full disk was a traceback (status 1)
    that left a half-written folder behind."""

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("training.walk_forward.write_report_html", disk_full)
    with pytest.raises(RunFolderError) as error:
        run_walk_forward(
            config(tmp_path, run_id="disk-full", folds=(1,), seeds=1),
            results_warehouse,
            runner=InProcessRunner(),
            snapshot=snapshot,
        )
    assert str(error.value) == (
        f"cannot write the run folder {tmp_path / 'runs' / 'disk-full'} (No space left on device): free some space or "
        "choose another --runs-dir, and run again (nothing of this run landed in the warehouse)"
    )
    assert cli.user_error_status(error.value) == ExitCode.CONFIG
    assert list((tmp_path / "runs").iterdir()) == []  # the half-written folder is gone
    with connect(results_warehouse) as conn:
        assert conn.execute("select count(*) from ml.walk_forward_runs where run_id = 'disk-full'").fetchone() == (0,)


def test_a_warehouse_disk_that_fills_up_while_the_run_lands_is_one_line_and_status_4_and_nothing_lands(
    snapshot, results_warehouse: ConnectionSettings, tmp_path: Path
) -> None:
    """PostgreSQL's own full disk (SQLSTATE 53100) during the results transaction was a traceback after the whole run.
    A trigger raises it the way the server does, on the second table the transaction writes."""
    results_schema.ensure_tables(results_warehouse)
    with connect(results_warehouse) as conn:
        conn.execute(
            "create function raise_disk_full() returns trigger language plpgsql as $$ begin raise exception "
            "'could not extend file \"base/1/2\": No space left on device' using errcode = 'disk_full'; end $$;"
            "create trigger disk_full before insert on ml.walk_forward_tasks for each row execute function "
            "raise_disk_full()"
        )
    try:
        with pytest.raises(WarehouseError) as error:
            run_walk_forward(
                config(tmp_path, run_id="warehouse-full", folds=(1,), seeds=1),
                results_warehouse,
                runner=InProcessRunner(),
                snapshot=snapshot,
            )
    finally:
        with connect(results_warehouse) as conn:
            conn.execute("drop trigger disk_full on ml.walk_forward_tasks; drop function raise_disk_full()")
    run_dir = tmp_path / "runs" / "warehouse-full"
    assert str(error.value) == (
        'the warehouse\'s disk is full (could not extend file "base/1/2": No space left on device): nothing of run '
        f"'warehouse-full' landed in ml.*; its results are only in {run_dir.resolve()}; free some space on the "
        "database server"
    )
    assert cli.user_error_status(error.value) == ExitCode.WAREHOUSE
    assert (run_dir / "report.html").is_file()
    with connect(results_warehouse) as conn:
        assert conn.execute("select count(*) from ml.walk_forward_runs where run_id = 'warehouse-full'").fetchone() == (
            0,
        )


def test_a_task_killed_for_memory_is_retried_only_after_another_task_has_finished(
    ray_with_two_workers, snapshot, results_warehouse: ConnectionSettings, tmp_path: Path
) -> None:
    """Retried at once, a task that Ray's memory monitor killed met the pressure that killed it and failed twice."""
    import ray.exceptions

    events, running, killed = tmp_path / "events", tmp_path / "fold-2-seed-42-runs", tmp_path / "killed"

    # Defined here, not at module level: Ray ships the task to its workers by value, and they cannot import tests.
    def wait_for(path: Path, seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while not path.exists():
            assert time.monotonic() < deadline, f"{path.name} never appeared"
            time.sleep(0.05)

    def note(event: str) -> None:
        with events.open("a") as log:  # the tasks run in two worker processes: one short append each
            log.write(f"{event}\n")

    def under_pressure(config, data, fold, seed):
        """Fold 2 seed 43 is killed for memory on its first attempt, while fold 2 seed 42 runs beside it."""
        task = f"fold {fold.fold_id} seed {seed}"
        note(f"start {task}")
        if (fold.fold_id, seed) == (2, 43) and not killed.exists():
            wait_for(running)
            killed.touch()
            note(f"killed {task}")
            raise ray.exceptions.OutOfMemoryError("Task was killed due to the node running low on memory.")
        if (fold.fold_id, seed) == (2, 42):
            running.touch()
            wait_for(killed)
            time.sleep(1)  # a retry at once would start in the meantime, on the CPU the killed task left free
        result = run_fold_seed(config, data, fold, seed)
        note(f"end {task}")
        return result

    result = run_walk_forward(
        config(tmp_path, run_id="out-of-memory", timesteps=256, eval_freq=256),
        results_warehouse,
        runner=RayRunner(progress_bar=False, retries=1, task=under_pressure),
        snapshot=snapshot,
    )
    said = events.read_text().splitlines()
    killed_at = said.index("killed fold 2 seed 43")
    retried_at = said.index("start fold 2 seed 43", killed_at)
    assert any(event.startswith("end ") for event in said[killed_at:retried_at]), said
    assert sorted((r.fold_id, r.seed, r.attempts) for r in result.results) == [
        (1, 42, 1), (1, 43, 1), (2, 42, 1), (2, 43, 2)
    ]  # fmt: skip
    assert not result.failures
    with connect(results_warehouse) as conn:
        assert conn.execute(
            "select fold_id, seed, status, attempts from ml.walk_forward_tasks where run_id = 'out-of-memory' "
            "order by fold_id, seed"
        ).fetchall() == [(1, 42, "succeeded", 1), (1, 43, "succeeded", 1), (2, 42, "succeeded", 1),
                         (2, 43, "succeeded", 2)]  # fmt: skip


@pytest.fixture
def ray_cluster() -> Iterator[str]:
    """A Ray cluster started the way users start one (`ray start --head`), in its own process group, stopped after.

    Under a RAY_TMPDIR of its own: `ray start` records the cluster's address in <RAY_TMPDIR or /tmp>/ray/
    ray_current_cluster, which stopping it by a signal leaves behind; in /tmp/ray that file was this OS user's alone,
    and every other user's `ray start` then ended in a PermissionError."""
    port = _closed_port()
    ray_cli = Path(sys.executable).with_name("ray")
    temp_dir = tempfile.mkdtemp(prefix="ray-cluster-", dir="/tmp")  # short: Ray's sockets live under it
    process = subprocess.Popen(
        [
            str(ray_cli),
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--block",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "RAY_TMPDIR": temp_dir},
    )
    try:
        assert process.stdout is not None
        said: list[str] = []
        for line in process.stdout:
            said.append(line)
            if "--block" in line:  # "... will block until ... (--block)": the head node is up
                break
        else:  # `ray start` ended without starting a head (e.g. a port another Ray on this machine holds)
            pytest.fail(f"ray start --head --port={port} did not start a head node:\n{''.join(said)[-3000:]}")
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the whole group: ray start, its GCS, raylet and workers
        # `ray start --block` answers SIGTERM by draining the node for up to 30 s (waiting for it ran into the 5 s
        # timeout every time); its GCS, raylet and workers got the SIGTERM themselves and stop within seconds.
        process.kill()
        process.wait()
        deadline = time.monotonic() + 10
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_same_command_runs_on_an_existing_cluster(
    ray_cluster: str, results_warehouse: ConnectionSettings, tmp_path: Path
) -> None:
    """`python -m training.walk_forward --ray-address HOST:PORT`, as a user runs it (its own process, no local Ray)."""
    from ray._common.utils import get_ray_address_file

    shared = Path(get_ray_address_file(None))  # /tmp/ray/ray_current_cluster, or under the user's RAY_TMPDIR
    assert not (shared.exists() and shared.read_text(encoding="utf-8").endswith(":" + ray_cluster.split(":")[1]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "RAY_")) and k != "DATABASE_URL"}
    env.update(results_warehouse.libpq_env())
    command = [sys.executable, "-m", "training.walk_forward", "--ray-address", ray_cluster, "--run-id", "on-cluster",
               "--runs-dir", str(tmp_path / "runs"), "--mart-yaml", str(write_mart_yaml(tmp_path / "t.yml")),
               "--folds", "2", "--seeds", "2", "--timesteps", "256", "--eval-freq", "256", "--n-envs", "2",
               "--n-steps", "64", "--batch-size", "64", "--n-epochs", "1", "--random-draws", "5",
               "--bootstrap-samples", "100", "--no-progress-bar"]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == ExitCode.OK, result.stderr[-3000:]
    # One fold (--folds 2) x 2 seeds: never evidence, whatever the interval (training/statistics.py verdict).
    assert result.stdout.splitlines()[0].startswith("no evidence either way from two seeds of one fold"), result.stdout
    with connect(results_warehouse) as conn:
        assert conn.execute(
            "select ray_address, ray_nodes, tasks_succeeded from ml.walk_forward_runs where run_id = 'on-cluster'"
        ).fetchone() == (ray_cluster, 1, 2)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_ray_address_that_does_not_answer_fails_fast() -> None:
    started = time.perf_counter()
    with pytest.raises(RayUnavailable, match="no Ray cluster answers at 127.0.0.1:"):
        check_ray_address(f"127.0.0.1:{_closed_port()}", timeout=2)
    with pytest.raises(RayUnavailable, match="ray start --head"):
        check_ray_address(f"ray://127.0.0.1:{_closed_port()}", timeout=2)
    with pytest.raises(BadRayAddress, match="--ray-address 'nowhere' is not host:port"):  # a bad value: status 2
        check_ray_address("nowhere", timeout=2)
    assert time.perf_counter() - started < 10


def test_the_command_line_says_so_with_status_5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, results_warehouse
) -> None:
    for name, value in results_warehouse.libpq_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{_closed_port()}")
    started = time.perf_counter()
    status = cli.walk_forward_main(["--runs-dir", str(tmp_path), "--ray-connect-timeout", "2"])
    assert status == ExitCode.RAY == 5
    assert time.perf_counter() - started < 30
    errors = [record for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1 and "no Ray cluster answers" in errors[0].getMessage()
    assert not any(tmp_path.iterdir())  # nothing was started, nothing written


def test_ctrl_c_while_ray_shuts_down_interrupts_once_the_shutdown_is_done() -> None:
    """A ray.shutdown cut short leaves Ray's processes behind, and Ray then ended the run with status 1."""
    finished, handler = [], signal.getsignal(signal.SIGINT)  # not always Python's own: Ray Tune leaves its handler
    with pytest.raises(KeyboardInterrupt), interruptions_held():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)  # long enough for Python to run the handler
        finished.append("shutdown")
    assert finished == ["shutdown"] and signal.getsignal(signal.SIGINT) is handler


def test_sigterm_interrupts_a_run_as_ctrl_c_does(results_warehouse: ConnectionSettings, tmp_path: Path) -> None:
    """`kill PID` (SIGTERM) while the tasks run on the local Ray the command started: one line, status 130, no run
    folder and no row (Ray's own SIGTERM handling dumped a C++ stack and aborted with status 134)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "RAY_")) and k != "DATABASE_URL"}
    env.update(results_warehouse.libpq_env())
    command = [sys.executable, "-m", "training.walk_forward", "--run-id", "terminated", "--runs-dir",
               str(tmp_path / "runs"), "--mart-yaml", str(write_mart_yaml(tmp_path / "t.yml")), "--folds", "2",
               "--seeds", "1", "--timesteps", "1000000", "--n-envs", "2", "--ray-cpus", "1", "--no-progress-bar"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    said = []
    for line in process.stderr:
        said.append(line)
        if "on a local Ray (" in line:  # the line that says the tasks start
            process.send_signal(signal.SIGTERM)
            break
    try:
        rest = process.communicate(timeout=120)[1]
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the run did not stop on SIGTERM:\n{''.join(said)[-3000:]}")
    assert process.returncode == ExitCode.INTERRUPTED, "".join(said)[-3000:] + rest
    assert rest.strip().splitlines()[-1].endswith("interrupted: no row of this run was written "
                                                  "(a run lands in one transaction, at the end)"), rest  # fmt: skip
    assert "Traceback" not in rest and "SIGTERM received" not in rest
    assert not (tmp_path / "runs" / "terminated").exists()
    with connect(results_warehouse) as conn:
        assert conn.execute("select count(*) from ml.walk_forward_runs where run_id = 'terminated'").fetchone() == (0,)


def _on_a_terminal_of_its_own() -> None:
    """In the child, before exec: a session of its own whose controlling terminal is its standard input (a pty), as a
    shell over ssh gives its commands."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_a_terminal_that_hangs_up_interrupts_a_run_as_ctrl_c_does(
    results_warehouse: ConnectionSettings, tmp_path: Path
) -> None:
    """The ssh session drops while the tasks run: the terminal hangs up (SIGHUP to the command and its local Ray, and
    every later write to the terminal fails with EIO). The run ended at once (status -1), its half-written run folder
    stayed behind, and the same command again was refused ("run folder ... already exists"): now it stops as on
    Ctrl+C, status 130, no folder and no row, so that the same command can run again."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "RAY_")) and k != "DATABASE_URL"}
    env.update(results_warehouse.libpq_env())
    command = [sys.executable, "-m", "training.walk_forward", "--run-id", "hung-up", "--runs-dir",
               str(tmp_path / "runs"), "--mart-yaml", str(write_mart_yaml(tmp_path / "t.yml")), "--folds", "2",
               "--seeds", "1", "--timesteps", "1000000", "--n-envs", "2", "--ray-cpus", "1", "--no-progress-bar"]  # fmt: skip
    terminal, its_end = pty.openpty()
    process = subprocess.Popen(command, env=env, stdin=its_end, stdout=its_end, stderr=its_end,
                               preexec_fn=_on_a_terminal_of_its_own)  # fmt: skip
    os.close(its_end)
    said, deadline = b"", time.monotonic() + 180
    try:
        while b"on a local Ray (" not in said:  # the line that says the tasks start
            assert time.monotonic() < deadline and process.poll() is None, said.decode(errors="replace")[-3000:]
            if select.select([terminal], [], [], 1)[0]:
                said += os.read(terminal, 65536)
    finally:
        os.close(terminal)  # the terminal hangs up
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the run did not stop when its terminal hung up")
    assert process.returncode == ExitCode.INTERRUPTED, process.returncode
    assert not (tmp_path / "runs" / "hung-up").exists()
    with connect(results_warehouse) as conn:
        assert conn.execute("select count(*) from ml.walk_forward_runs where run_id = 'hung-up'").fetchone() == (0,)


def test_a_local_ray_starts_whatever_home_and_tmpdir_are(results_warehouse: ConnectionSettings, tmp_path: Path) -> None:
    """A read-only home (or HOME not a directory) and a TMPDIR that is missing, a file or read-only: Python's own
    temporary files pass such a TMPDIR over, but Ray wrote its token under ~/.ray and its session files under TMPDIR as
    given, and the walk-forward ended in an OSError traceback (status 1) after reading the mart. It now runs; an
    unusable RAY_TMPDIR (the user's own choice) is one line with status 5."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "RAY_")) and k != "DATABASE_URL"}
    env.update(results_warehouse.libpq_env(), HOME=str(a_file), TMPDIR=str(a_file))
    command = [sys.executable, "-m", "training.walk_forward", "--runs-dir", str(tmp_path / "runs"), "--mart-yaml",
               str(write_mart_yaml(tmp_path / "t.yml")), "--folds", "2", "--seeds", "1", "--timesteps", "128",
               "--n-envs", "1", "--n-steps", "64", "--batch-size", "64", "--ray-cpus", "1", "--no-progress-bar"]  # fmt: skip
    ran = subprocess.run([*command, "--run-id", "hostile-home"], env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == ExitCode.OK, ran.stderr[-3000:]
    assert f"WARNING training.task_runners: TMPDIR={a_file} is not a directory this run can write to" in ran.stderr
    env["RAY_TMPDIR"] = str(a_file)
    refused = subprocess.run([*command, "--run-id", "ray-tmpdir"], env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == ExitCode.RAY, refused.stderr[-3000:]
    assert "Traceback" not in refused.stderr
    assert (
        refused.stderr.strip()
        .splitlines()[-1]
        .endswith(
            f"ERROR training: could not start a local Ray: Not a directory: {a_file}/ray (Ray keeps its session files "
            "under RAY_TMPDIR, else TMPDIR, else /tmp: point RAY_TMPDIR at a writable directory)"
        )
    ), refused.stderr[-3000:]


def test_ray_workers_with_a_runtime_environment_start_under_a_path_with_a_space(tmp_path: Path) -> None:
    """A clone under ~/My Projects/: Ray starts a worker that has a runtime environment, as every Ray Tune trial does,
    through `bash -c "exec <python> ..."` with the path unquoted. Each trial's worker failed to start, five times, and
    `make sweep` ended after minutes with no trial scored (the walk-forward's plain tasks were fine)."""
    venv = tmp_path / "My Projects" / ".venv"  # this venv, reached through a path with a space
    (venv / "bin").mkdir(parents=True)
    (venv / "lib" / "python3.11").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_bytes((Path(sys.prefix) / "pyvenv.cfg").read_bytes())
    (venv / "bin" / "python").symlink_to(Path(sys.executable).resolve())
    (venv / "lib" / "python3.11" / "site-packages").symlink_to(Path(sysconfig.get_path("purelib")))
    program = """
import os, ray
from training.task_runners import RayRunner
RayRunner(cpus=1)._connect()
@ray.remote(runtime_env={"env_vars": {"LIKE_TUNE": "yes"}})
def trial():
    return os.environ["LIKE_TUNE"]
print(ray.get(trial.remote(), timeout=60))
ray.shutdown()
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    ran = subprocess.run([str(venv / "bin" / "python"), "-c", program], cwd=REPO_ROOT, env=env, capture_output=True,
                         text=True, timeout=180)  # fmt: skip
    assert (ran.returncode, ran.stdout) == (0, "yes\n"), ran.stderr[-3000:]


def test_a_fold_no_symbol_can_trade_is_refused_before_any_task_trains(embedded_cluster, tmp_path: Path) -> None:
    """Fold 1's train split holds 16 sessions of the mart (the contract's minimum is 10), but one symbol was delisted
    after its first 8 and the other listed 8 before its end: no symbol can trade there. The walk-forward says so, with
    the symbols' counts, before anything trains (before: every other fold trained first, then fold 1's tasks failed,
    twice each, and the run ended with status 6)."""
    frame = synthetic_mart(n_symbols=2, n_sessions=320, seed=62)
    folds = lay_out_folds(frame["session_date"], folds=FOLDS, test_sessions=40, validation_sessions=40)
    train = sorted(set(folds[0].rows(frame, "train")["session_date"]))
    delisted = (frame["symbol"] == "SYM000") & (frame["session_date"] > train[7])
    listed_late = (frame["symbol"] == "SYM001") & (frame["session_date"] < train[-8])
    frame = frame[~(delisted | listed_late)].reset_index(drop=True)
    trained: list[tuple[int, int]] = []

    def recorded(config, data, fold, seed):
        trained.append((fold.fold_id, seed))
        return run_fold_seed(config, data, fold, seed)

    with mart_database("test_untradable_fold", frame, folds, embedded_cluster) as settings:
        with pytest.raises(NotEnoughData) as raised:
            run_walk_forward(config(tmp_path, run_id="untradable"), settings, runner=InProcessRunner(task=recorded))
        assert not trained
        assert str(raised.value) == (
            f"fold 1: no symbol has 10 sessions (window + min_episode_steps) in its train split {train[0]} .. "
            f"{train[-1]} (the most: SYM000 8, SYM001 8): lower --window or --min-episode-steps, leave the fold out "
            "(--folds), or fetch more history"
        )
        assert cli.user_error_status(raised.value) == ExitCode.CONTRACT
        with connect(settings) as conn:
            assert conn.execute(
                "select count(*) from ml.walk_forward_tasks where run_id = 'untradable'"
            ).fetchone() == (0,)
        # make train names its own flag.
        shared = {field.name: getattr(config(tmp_path), field.name) for field in dataclasses.fields(TrainConfig)}
        single = load_config(None, {**shared, "run_id": "untradable-train", "fold": 1})
        with pytest.raises(
            NotEnoughData, match=r"\(the most: SYM000 8, SYM001 8\): .*train on another fold \(--fold\)"
        ):
            run_training(single, settings)
