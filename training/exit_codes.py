"""The exit statuses of the training commands, defined once.

The CLIs return them and render :func:`exit_status_table` in ``--help``; docs/training.md holds
:func:`markdown_table`'s output (``tests/test_training_config.py`` checks it). Adding one: a member and its meaning
here, returned from the CLI, then paste :func:`markdown_table` into the docs.
"""

from __future__ import annotations

from enum import IntEnum

TABLE_HEADER = "training exit status"
"""The first column's heading in the documentation's table (how the test finds the table)."""


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    CONFIG = 2
    CONTRACT = 3
    WAREHOUSE = 4
    RAY = 5
    PARTIAL = 6
    INTERRUPTED = 130


MEANINGS = {
    ExitCode.OK: "the run finished; its results are in runs/<run_id>/ and the ml.walk_forward_* tables",
    ExitCode.FAILED: "anything else (every task failed, or a bug): the last line says what happened",
    ExitCode.CONFIG: "a bad flag, value, --config file, --resume model or sweep id, fold id or symbol (a malformed --ray-address "
    "or RAY_ADDRESS too), a run or sweep id whose folder is taken, a --runs-dir where the run folder cannot be created or "
    "written whole (a file, no permission, a full disk), a mart YAML (training_bars.yml, --mart-yaml) that cannot be read "
    "(a folder, a device, not YAML, columns that are not a list of named mappings) or whose column roles (meta.role) are missing or inconsistent, or settings too large for this machine's memory (on Ray: for every node's; for a sweep also when Ray killed a "
    "trial's worker for memory: its trials are kept, --resume continues it)",
    ExitCode.CONTRACT: "the mart or its folds break the data contract (every failed expectation is listed), or "
    "its history is too short for the planned folds (the message says how much to fetch), or a fold's split holds no "
    "symbol with window + min_episode_steps sessions (the message names it; nothing trained; for a sweep also after the "
    "search, when no completed trial's window fits every report fold: its trials are kept), or dbt kept writing the "
    "mart during the check",
    ExitCode.WAREHOUSE: "the warehouse is unreachable or not provisioned (the message says what to run), or cannot serve "
    "(a database not encoded UTF8, the trainer's login read-only), or a statement ran past its statement_timeout or the "
    "server ended the connection, or its disk filled up while the results landed (none did; the run folder keeps them)",
    ExitCode.RAY: "the Ray cluster at --ray-address / RAY_ADDRESS does not answer, or a local Ray cannot start (its "
    "RAY_TMPDIR is no writable directory)",
    ExitCode.PARTIAL: "some fold x seed tasks failed after their retry; the others landed and the report lists them",
    ExitCode.INTERRUPTED: "interrupted (Ctrl+C, SIGTERM from kill, or SIGHUP: the terminal hung up): a run lands no row; a sweep continues with --resume <sweep_id>, "
    "repeating no finished trial",
}


def exit_status_table() -> str:
    """The statuses as help text, one per line."""
    return "Exit status:\n" + "\n".join(f"  {int(code)}  {MEANINGS[code]}" for code in ExitCode)


def markdown_table() -> str:
    """The documentation's table of exit statuses."""
    rows = [f"| {TABLE_HEADER} | meaning |", "|---|---|"]
    rows += [f"| {int(code)} | {MEANINGS[code]} |" for code in ExitCode]
    return "\n".join(rows)
