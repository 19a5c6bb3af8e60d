"""`make demo`'s script end to end, twice, against a database of its own: what a new user runs first."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from warehouse_db import connect
from warehouse_db.settings import REPO_ROOT


def run_demo(env: dict[str, str]) -> str:
    try:
        result = subprocess.run(
            ["bash", "scripts/demo.sh"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=420
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"the demo took over 7 minutes; its output so far:\n{error.stdout}\n{error.stderr}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_runs_the_whole_pipeline_and_is_safe_to_run_again(warehouse):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "DATABASE_URL"}
    env.update(warehouse.libpq_env())

    first = run_demo(env)
    with connect(warehouse) as conn:
        symbols, batches = conn.execute(
            "select count(distinct symbol), count(*) from raw.load_batches where status = 'ok'"
        ).fetchone()
        mart_symbols = conn.execute("select count(distinct symbol) from marts.training_bars").fetchone()[0]
        folds = conn.execute("select count(*), min(test_sessions) from marts.walk_forward_folds").fetchone()
        runs = conn.execute("select count(*) from ml.training_runs where status = 'succeeded'").fetchone()[0]
    assert (symbols, batches) == (150, 150)
    assert mart_symbols == 150 and folds[0] >= 4 and folds[1] >= 60  # 5 years: the default walk-forward folds
    assert runs == 1
    report = re.search(r"(\S*runs/\S+/report\.html)", first)
    assert report, first[-3000:]
    assert (REPO_ROOT / report.group(1)).exists() or Path(report.group(1)).exists()

    second = run_demo(env)
    with connect(warehouse) as conn:
        batches_after = conn.execute("select count(*) from raw.load_batches").fetchone()[0]
        runs_after = conn.execute("select count(*) from ml.training_runs where status = 'succeeded'").fetchone()[0]
    assert batches_after == 150, "the second ingest must request (and record) nothing: every symbol is current"
    assert runs_after == 2
    assert "report" in second
