"""Run this dbt project against a throw-away database (see devtools.scratch_database), for tests and benchmarks.

Each database gets its own work directory (target and logs), so several can be built side by side without
clobbering each other's manifests, run_results.json or partial-parse state.

dbt's partial parsing (about 2 s of every command that has it) starts over whenever the profile's connection
fields, the --vars or the command change: the database name is a connection field, and so is application_name,
which the profile sets to "dbt <command>". So :meth:`DbtProject.run` keeps one target directory per command and
--vars inside the work directory, and :class:`ScratchSeries` gives databases made one after another (a test's,
then the next test's) one name and one work directory, so that dbt parses the project once for all of them.

dbt's command line runs in the calling process (the same ``cli`` the `dbt` program calls): the program's start, about
1.5 s of imports, was most of what a test paid per invocation beyond the build itself. A call from another thread (two
builds at once) starts the `dbt` program, as does ``DbtProject(..., in_process=False)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devtools import scratch_database
from warehouse_db import connect
from warehouse_db.provision import provision
from warehouse_db.settings import REPO_ROOT, ConnectionSettings

DBT = REPO_ROOT / ".venv" / "bin" / "dbt"
DBT_PROJECT_FILE = REPO_ROOT / "dbt_project.yml"
SKIP_UNIT_TESTS = ("--exclude", "test_type:unit")
"""dbt's unit tests (fixed inputs, not the data): tests/test_dbt_build.py runs them."""


def skip_loaded_seeds(*seeds: str) -> tuple[str, ...]:
    """Arguments of a `dbt build` that leaves out the unit tests and ``seeds`` (every seed when none is named): for a
    database whose seeds are loaded and unchanged, such as a copy of a built one. Reloading the calendar's 31,000 rows
    is a good part of a small build. Every data test still runs: with dbt's default (eager) indirect selection,
    excluding a seed also excluded each test that reads it, no_missing_sessions, no_bad_ticks and
    session_date_is_exchange_session among them."""
    return (*SKIP_UNIT_TESTS, *(seeds or ("resource_type:seed",)), "--indirect-selection", "empty")


SKIP_FIXED_INPUTS = skip_loaded_seeds()


def dbt_project_var(name: str) -> Any:
    """A var's value as dbt_project.yml sets it (what `dbt build` uses unless --vars overrides it)."""
    variables = (yaml.safe_load(DBT_PROJECT_FILE.read_text(encoding="utf-8")) or {}).get("vars") or {}
    if name not in variables:
        raise KeyError(f"{DBT_PROJECT_FILE} sets no var {name!r}")
    return variables[name]


@dataclass(frozen=True)
class DbtResult:
    """One dbt invocation: exit code, console output and the parsed run_results.json."""

    returncode: int
    output: str
    results: dict[str, dict]
    """unique_id → result entry (status, message, failures, adapter_response, ...)."""
    seconds: float
    invocation_id: str | None = None
    """The dbt invocation's id (run_results.json's metadata)."""

    def by_name(self) -> dict[str, dict]:
        """Result entries keyed by node name (test names are set in the YAML)."""
        return {unique_id.split(".")[2]: entry for unique_id, entry in self.results.items()}

    def statuses(self) -> dict[str, str]:
        return {name: entry["status"] for name, entry in self.by_name().items()}

    def failed(self) -> set[str]:
        return {name for name, status in self.statuses().items() if status in ("fail", "error")}


@dataclass
class DbtProject:
    """The repository's dbt project pointed at one database."""

    settings: ConnectionSettings
    work_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    project_dir: Path = REPO_ROOT
    """The dbt project (dbt_project.yml); another than the repository's is a copy (:func:`copy_project`)."""
    in_process: bool = True
    """Run dbt's command line in this process (see :func:`_run_in_process`); False, or a call from any thread but the
    main one, starts the `dbt` program instead."""

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL", "DBT_"))}
        env.update(self.settings.libpq_env())
        env["DO_NOT_TRACK"] = "1"
        env.update(self.extra_env)
        return env

    def target_path(self, *args: str) -> Path:
        """The target directory of a dbt command: one per command and --vars, so that each keeps its partial-parse
        state (changing either makes dbt parse the whole project again)."""
        variables = [value for flag, value in zip(args, args[1:], strict=False) if flag == "--vars"]
        key = args[0] if args else "dbt"
        if variables:
            key += "-" + hashlib.sha256("\0".join(variables).encode()).hexdigest()[:12]
        return self.work_dir / "target" / key

    def run(self, *args: str, check: bool = False, timeout: float = 1800) -> DbtResult:
        target_path = self.target_path(*args)
        command = [
            str(DBT), *args,
            "--project-dir", str(self.project_dir), "--profiles-dir", str(REPO_ROOT),
            "--target-path", str(target_path), "--log-path", str(self.work_dir / "logs"),
            # No debug log (logs/dbt.log): a line per event and query was about a tenth of a small build's CPU, and a
            # failing test shows dbt's console output. Drop this pair to read the log when debugging a test.
            "--log-level-file", "none",
        ]  # fmt: skip
        results_file = target_path / "run_results.json"
        results_file.unlink(missing_ok=True)  # ``timeout`` bounds a started `dbt` program only
        started = time.perf_counter()
        if self.in_process and threading.current_thread() is threading.main_thread():
            returncode, output = _run_in_process(command[1:], cwd=self.project_dir, env=self.env())
        else:
            process = subprocess.run(
                command, cwd=self.project_dir, env=self.env(), capture_output=True, text=True, timeout=timeout
            )
            returncode, output = process.returncode, process.stdout + process.stderr
        seconds = time.perf_counter() - started
        results: dict[str, dict] = {}
        invocation_id = None
        if results_file.exists():
            payload = json.loads(results_file.read_text(encoding="utf-8"))
            results = {entry["unique_id"]: entry for entry in payload.get("results", [])}
            invocation_id = (payload.get("metadata") or {}).get("invocation_id")
        result = DbtResult(returncode, output, results, seconds, invocation_id)
        if check and returncode != 0:
            raise AssertionError(f"dbt {' '.join(args)} failed:\n{result.output[-6000:]}")
        return result


def _run_in_process(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """``dbt args`` as the `dbt` program runs it (its console script calls the same ``cli``), in this process.

    For the call, the environment, working directory and sys.argv are the program's; stdout and stderr are captured;
    Python's warnings and the log records no handler takes go to stderr as in a fresh interpreter (not to pytest's
    capture); the exit status is click's SystemExit. dbt supports one invocation after another in a process (each
    resets its flags, invocation id, loggers and adapters); its deprecation warnings, which it prints once per
    process, are reset here too. What this saves is the program's start, about 1.5 s of imports per invocation.

    Only from the main thread, one at a time: the environment, working directory and argv are the whole process's.
    """
    global _program_warning_filters
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = [str(DBT), *args]  # dbt reads its own command line from sys.argv too (flags, invocation_command)
    root.handlers, root.level = [], logging.WARNING  # logging.lastResort writes to (the redirected) sys.stderr
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), warnings.catch_warnings():
            warnings.resetwarnings()
            warnings.filters.extend(_program_warning_filters)
            warnings.showwarning = _show_warning
            from dbt import deprecations  # the first call imports dbt here, under the program's filters
            from dbt.cli.main import cli

            deprecations.reset_deprecations()
            try:
                cli.main(args=args, prog_name="dbt")
                returncode = 0
            except SystemExit as exit_:
                code = exit_.code
                returncode = code if isinstance(code, int) else (0 if code is None else 1)
            finally:
                _program_warning_filters = warnings.filters[:]  # with those dbt's modules added as they were imported
    finally:
        root.handlers, root.level = saved_handlers, saved_level
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return returncode, stdout.getvalue() + stderr.getvalue()


_program_warning_filters: list = [
    ("default", None, DeprecationWarning, "__main__", 0),
    *((("ignore", None, category, None, 0)) for category in (DeprecationWarning, PendingDeprecationWarning,
                                                              ImportWarning, ResourceWarning)),
]  # fmt: skip
"""A fresh interpreter's warning filters (show each warning once, these never), then those of dbt's modules."""


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """Python's own way of showing a warning: on sys.stderr as it is now (the captured one)."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@dataclass(frozen=True)
class ScratchSeries:
    """Scratch databases made one after another under one name, each dropped after use, and one dbt work directory
    per database name: dbt parses the project once for the whole series instead of once per database.

    The name is ``<prefix>_<random>``, drawn once per series: two series (two xdist workers, two test sessions)
    never share one. Only one database of each ``suffix`` may exist at a time.
    """

    cluster: ConnectionSettings
    work_dir: Path
    name: str

    @classmethod
    def new(cls, cluster: ConnectionSettings, work_dir: Path, prefix: str) -> ScratchSeries:
        return cls(cluster, work_dir, f"{prefix}_{uuid.uuid4().hex[:10]}")

    @contextmanager
    def database(self, template: str | None = None, suffix: str = "") -> Iterator[ConnectionSettings]:
        """A new, empty database (or a provisioned copy of ``template``) named ``name + suffix``, dropped after the
        ``with`` block. One of that name left behind (a killed run) is dropped first."""
        name = self.name + suffix
        scratch_database.drop_database(self.cluster.with_database(name))
        if template:
            settings = scratch_database.clone_database(self.cluster, template, name=name)
        else:
            settings = scratch_database.create_database(self.cluster, name=name)
        try:
            yield settings
        finally:
            scratch_database.drop_database(settings)

    def project(self, settings: ConnectionSettings, **options: Any) -> DbtProject:
        """The dbt project pointed at ``settings`` (one of this series'), in the work directory of its name."""
        return DbtProject(settings, self.work_dir / settings.dbname, **options)


def copy_project(destination: Path, seeds: Mapping[str, str]) -> Path:
    """A copy of the repository's dbt project in ``destination`` whose seeds ``seeds`` (file name -> CSV text, e.g.
    ``known_missing_sessions.csv``) say what an administrator wrote in them; the repository is left as it is.
    Writing the same copy again keeps dbt's partial parsing (it notices a changed seed)."""
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy2(DBT_PROJECT_FILE, destination / DBT_PROJECT_FILE.name)
    shutil.copytree(REPO_ROOT / "warehouse", destination / "warehouse", dirs_exist_ok=True)
    for name, text in seeds.items():
        seed = destination / "warehouse" / "seeds" / name
        if not seed.exists():
            raise FileNotFoundError(f"the dbt project has no seed {name}")
        seed.write_text(text, encoding="utf-8")
    return destination


def prepare_raw(settings: ConnectionSettings) -> None:
    """Roles, schemas and the raw landing tables, exactly as ingest creates them."""
    from ingest.raw_tables import ensure_raw_tables

    with connect(settings) as conn:
        provision(conn)
        ensure_raw_tables(conn)


def table_digest(
    settings: ConnectionSettings, relation: str, columns: list[str], order_by: list[str]
) -> tuple[int, str]:
    """Row count and md5 of the ordered rows (text form of ``columns``) of ``relation``."""
    row = ", ".join(columns)
    order = ", ".join(order_by)
    # md5 of the ordered per-row md5s: exact, and stays far below PostgreSQL's 1 GB string limit.
    query = (
        f"select count(*), md5(coalesce(string_agg(md5(row({row})::text), '' order by {order}), '')) from {relation}"
    )
    with connect(settings) as conn:
        count, digest = conn.execute(query).fetchone()
    return count, digest


BAR_KEY = ["symbol", "bar_size", "what_to_show", "use_rth", "session_date"]
FEATURE_STATES = ["ema_12", "ema_26", "macd_signal_9", "avg_gain_14", "avg_loss_14", "atr_14"]


def warehouse_digests(settings: ConnectionSettings) -> dict[str, tuple[int, str]]:
    """Row count and md5 of every incremental model and every mart (lineage timestamps left out), by model.

    Two databases built from the same raw rows, one incrementally and one with ``--full-refresh``, must give
    equal digests.
    """
    from training.features import read_mart_schema

    schema = read_mart_schema()
    prices = ["open", "high", "low", "close", "volume"]
    mart_columns = ["symbol", "session_date", *schema.price_columns, *schema.feature_names, schema.target]
    feature_columns = [*BAR_KEY, "session_number", *prices, *schema.feature_names, schema.target, *FEATURE_STATES]
    bar_columns = [*BAR_KEY, *prices, "wap", "bar_count", "load_id", "batch_id", "ingested_at", "versions_landed",
                   "has_corrections"]  # fmt: skip
    return {
        "training_bars": table_digest(settings, "marts.training_bars", mart_columns, ["symbol", "session_date"]),
        "walk_forward_plan": table_digest(settings, "marts.walk_forward_plan t", ["t.*"], ["scheme"]),
        "walk_forward_folds": table_digest(settings, "marts.walk_forward_folds t", ["t.*"], ["fold_id"]),
        "walk_forward_fold_rows": table_digest(
            settings, "marts.walk_forward_fold_rows t", ["t.*"], ["fold_id", "split", "symbol", "session_date"]
        ),
        "symbol_coverage": table_digest(settings, "marts.symbol_coverage t", ["t.*"], BAR_KEY[:4]),
        "bar_corrections": table_digest(
            settings, "marts.bar_corrections t", ["t.*"], [*BAR_KEY, "first_landed_at", "close", "volume"]
        ),
        "int_bars_featurized": table_digest(settings, "intermediate.int_bars_featurized", feature_columns, BAR_KEY),
        "int_bars_deduplicated": table_digest(settings, "intermediate.int_bars_deduplicated", bar_columns, BAR_KEY),
    }
