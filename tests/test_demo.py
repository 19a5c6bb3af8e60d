"""`make demo`'s script end to end, twice, against a database of its own: what a new user runs first.

Run folders, dbt's target/ and its logs go to a temporary directory (RUNS_DIR, DBT_TARGET_PATH, DBT_LOG_PATH), never
into the checkout.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from warehouse_db import connect
from warehouse_db.settings import REPO_ROOT

pytestmark = pytest.mark.xdist_group("ray")  # the demo's walk-forward starts a local Ray

CHECKOUT_OUTPUTS = ("runs", "target", "logs")


def run_demo(env: dict[str, str], *walk_forward_args: str) -> str:
    try:
        result = subprocess.run(
            ["bash", "scripts/demo.sh", *walk_forward_args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"the demo took over 10 minutes; its output so far:\n{error.stdout}\n{error.stderr}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


def _checkout_outputs() -> dict[str, float | None]:
    return {
        name: (REPO_ROOT / name).stat().st_mtime if (REPO_ROOT / name).exists() else None for name in CHECKOUT_OUTPUTS
    }


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_demo_runs_the_whole_pipeline_and_is_safe_to_run_again(warehouse, tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "RAY_")) and k != "DATABASE_URL"}
    env.update(warehouse.libpq_env())
    env.update(
        RUNS_DIR=str(tmp_path / "runs"),
        DBT_TARGET_PATH=str(tmp_path / "target"),
        DBT_LOG_PATH=str(tmp_path / "logs"),
    )
    before = _checkout_outputs()

    first = run_demo(env)
    with connect(warehouse) as conn:
        symbols, batches = conn.execute(
            "select count(distinct symbol), count(*) from raw.load_batches where status = 'ok'"
        ).fetchone()
        mart_symbols = conn.execute("select count(distinct symbol) from marts.training_bars").fetchone()[0]
        folds, shortest_test = conn.execute(
            "select count(*), min(test_sessions) from marts.walk_forward_folds"
        ).fetchone()
        run = conn.execute(
            "select run_id, kind, status, folds, seeds, tasks_succeeded, verdict from ml.walk_forward_runs"
        ).fetchall()
        recorded, built = conn.execute(
            "select r.dbt_invocation_id, b.dbt_invocation_id from ml.walk_forward_runs r, marts.mart_builds b "
            "where b.model = 'training_bars'"
        ).fetchone()
    assert (symbols, batches) == (150, 150)
    assert mart_symbols == 150 and folds >= 4 and shortest_test >= 60  # 5 years: the default walk-forward folds
    ((run_id, kind, status, run_folds, seeds, succeeded, verdict),) = run
    assert (kind, status, run_folds, seeds, succeeded) == ("walk_forward", "succeeded", folds, 2, 2 * folds)
    # The demo ends with the verdict and its confidence interval, then the report.
    assert verdict in first and "95% CI of the Sharpe difference" in verdict
    # The local Ray is protected by its token as Ray's default would, but stated (RAY_AUTH_MODE=token), so Ray does
    # not warn about it on every run.
    assert "Token authentication is" not in first, first[-3000:]
    report = re.search(r"report: (\S+report\.html)", first)
    assert report and Path(report.group(1)).is_file(), first[-3000:]
    assert Path(report.group(1)).is_relative_to(tmp_path / "runs")
    assert (tmp_path / "target" / "run_results.json").is_file()
    assert recorded == built is not None  # the run names the dbt build that wrote the mart it read

    # Again, with the smallest walk-forward (the demo's arguments go to it): re-running every step is safe. What the
    # second run proves is that each step runs again (no batch, a new run), not how well PPO learns: a few hundred steps.
    second = run_demo(env, "--seeds", "1", "--timesteps", "256", "--eval-freq", "256", "--n-envs", "2", "--n-steps",
                      "64", "--batch-size", "64", "--n-epochs", "1", "--random-draws", "5", "--bootstrap-samples", "100")  # fmt: skip
    with connect(warehouse) as conn:
        batches_after = conn.execute("select count(*) from raw.load_batches").fetchone()[0]
        runs_after = conn.execute(
            "select seeds, tasks_succeeded from ml.walk_forward_runs where status = 'succeeded' order by finished_at"
        ).fetchall()
    assert batches_after == 150, "the second ingest must request (and record) nothing: every symbol is current"
    assert runs_after == [(2, 2 * folds), (1, folds)]
    assert "report: " in second
    assert _checkout_outputs() == before, "the demo wrote runs/, target/ or logs/ into the checkout"
