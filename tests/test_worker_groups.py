"""`make test`'s two workers keep each test module on one worker, and the modules that start Ray one after another.

tests/conftest.py gives every module its own xdist_group and the Ray modules the group "ray"; `make test` runs
`--dist loadgroup`. That held only as long as pytest-xdist could tag the tests: with pytest 9.2 and pytest-xdist 3.8
the groups were silently ignored (xdist writes the group into a node id field pytest 9 no longer reads), modules
were spread over both workers and two Ray clusters started side by side. This runs a small suite the way
`make test` does and checks where each test ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from warehouse_db.settings import REPO_ROOT

RECORD = """
import json, os, pathlib, pytest

@pytest.mark.parametrize("case", range(6))
def test_case(case):
    line = {"module": __name__, "worker": os.environ["PYTEST_XDIST_WORKER"]}
    with open(pathlib.Path(__file__).parent / "where.jsonl", "a") as where:
        where.write(json.dumps(line) + "\\n")
"""


def test_make_tests_workers_keep_a_module_together_and_the_ray_modules_in_turn(tmp_path: Path) -> None:
    (tmp_path / "test_one.py").write_text(RECORD)
    (tmp_path / "test_two.py").write_text(RECORD)
    for name in ("test_ray_a.py", "test_ray_b.py"):
        (tmp_path / name).write_text('import pytest\npytestmark = pytest.mark.xdist_group("ray")\n' + RECORD)
    # The project's conftest as a plugin: its grouping is what is under test, not a copy of it.
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "tests")}
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup"]
        + ["-q", "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
    lines = [json.loads(line) for line in (tmp_path / "where.jsonl").read_text().splitlines()]
    assert len(lines) == 24
    workers: dict[str, set[str]] = {}
    for line in lines:
        workers.setdefault(line["module"], set()).add(line["worker"])
    assert all(len(ran_on) == 1 for ran_on in workers.values()), f"a module's tests ran on several workers: {workers}"
    assert workers["test_ray_a"] == workers["test_ray_b"], f"the Ray modules ran side by side: {workers}"
